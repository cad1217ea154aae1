//! carp-tcp: TCP traffic for the state sync tests, with one verdict: did
//! every connection survive (no reset, no lost byte)?
//!
//! `carp-tcp serve PORT` echoes every connection. `carp-tcp client ADDR:PORT
//! --flows N --seconds S` opens one streaming connection and N idle ones,
//! then for S seconds exchanges a numbered message on the stream every
//! `--interval-ms` and on each idle flow once a second. It prints one
//! `progress` line a second and exits 0 if every exchange came back intact,
//! 1 with the reason at the first one that did not (a reset, a close, a
//! wrong byte, or nothing for `--timeout-s`).
//!
//! ```text
//! ip netns exec server carp-tcp client 10.0.1.100:7000 --flows 20 --seconds 20
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "carp-tcp")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Echo every connection on PORT until killed.
    Serve { port: u16 },
    /// Stream through one connection and keep N more alive.
    Client {
        address: SocketAddr,
        #[arg(long, default_value_t = 10)]
        flows: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
        /// How long one exchange may wait (a failover pauses traffic).
        #[arg(long, default_value_t = 30)]
        timeout_s: u64,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Serve { port } => serve(port),
        Command::Client {
            address,
            flows,
            seconds,
            interval_ms,
            timeout_s,
        } => client(
            address,
            flows,
            Duration::from_secs(seconds),
            Duration::from_millis(interval_ms),
            Duration::from_secs(timeout_s),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            println!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port)).context("listen")?;
    println!("listening on {port}");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        thread::spawn(move || {
            let Ok(mut writer) = stream.try_clone() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if writer.write_all(line.as_bytes()).is_err() {
                    return;
                }
                line.clear();
            }
        });
    }
    Ok(())
}

/// One connection and what it exchanged.
struct Flow {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    sent: u64,
}

impl Flow {
    fn open(address: SocketAddr, timeout: Duration) -> anyhow::Result<Self> {
        let stream = TcpStream::connect_timeout(&address, timeout).context("connect")?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
            sent: 0,
        })
    }

    /// Sends message number n and checks it comes back as sent.
    fn exchange(&mut self, id: usize) -> anyhow::Result<()> {
        self.sent += 1;
        let message = format!("flow {id} message {}\n", self.sent);
        self.writer
            .write_all(message.as_bytes())
            .with_context(|| format!("flow {id}: send {}", self.sent))?;
        let mut echo = String::new();
        let read = self
            .reader
            .read_line(&mut echo)
            .with_context(|| format!("flow {id}: reply to {}", self.sent))?;
        if read == 0 {
            bail!(
                "flow {id}: closed by the peer after {} messages",
                self.sent - 1
            );
        }
        if echo != message {
            bail!("flow {id}: sent {message:?}, got {echo:?}");
        }
        Ok(())
    }
}

fn client(
    address: SocketAddr,
    idle: usize,
    duration: Duration,
    interval: Duration,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut flows = Vec::with_capacity(idle + 1);
    for id in 0..=idle {
        let mut flow = Flow::open(address, timeout).with_context(|| format!("flow {id}"))?;
        flow.exchange(id)?;
        flows.push(flow);
    }
    println!("ready {} flows", flows.len());
    let start = Instant::now();
    let mut last_round = Instant::now();
    let mut last_report = Instant::now();
    let mut longest_wait = Duration::ZERO;
    while start.elapsed() < duration {
        let began = Instant::now();
        flows[0].exchange(0)?;
        longest_wait = longest_wait.max(began.elapsed());
        if last_round.elapsed() >= Duration::from_secs(1) {
            for (id, flow) in flows.iter_mut().enumerate().skip(1) {
                flow.exchange(id)?;
            }
            last_round = Instant::now();
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            println!(
                "progress {:.1}s stream {} longest wait {} ms",
                start.elapsed().as_secs_f64(),
                flows[0].sent,
                longest_wait.as_millis()
            );
            last_report = Instant::now();
        }
        thread::sleep(interval);
    }
    // Every flow once more at the end.
    for (id, flow) in flows.iter_mut().enumerate() {
        flow.exchange(id)?;
    }
    println!(
        "done {} flows, stream {} messages, longest wait {} ms",
        flows.len(),
        flows[0].sent,
        longest_wait.as_millis()
    );
    // Unread input left would make the close a reset; there is none.
    let mut rest = [0u8; 1];
    let _ = flows[0].reader.get_mut().set_nonblocking(true);
    let _ = flows[0].reader.read(&mut rest);
    Ok(())
}
