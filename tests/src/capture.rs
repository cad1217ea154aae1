//! tcpdump in a namespace, its decoded lines delivered to the test as they
//! arrive, so a test can await "the next advertisement from gw2".

use std::io::{BufRead as _, BufReader, Read};
use std::process::{ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::process::Process;

/// tcpdump opens the interface and compiles the filter in well under this.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// A running tcpdump that has said it is listening: what it decodes comes
/// on `stdout`, what it says (its statistics at exit, say) in `said`.
pub struct Tcpdump {
    pub process: Process,
    pub stdout: ChildStdout,
    pub said: Arc<Mutex<String>>,
}

impl Tcpdump {
    /// Starts `command` (a tcpdump; its stdio is set here) and returns once
    /// tcpdump says it is listening, so no packet sent afterwards is missed.
    pub fn start(label: &str, command: &mut Command) -> Result<Self> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = Process::spawn(label, command)?;
        let (Some(stdout), Some(stderr)) = (process.take_stdout(), process.take_stderr()) else {
            return Err(Error::Topology(format!("{label}: no output pipes")));
        };
        let said = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready) = mpsc::channel();
        let said_by_tcpdump = Arc::clone(&said);
        thread::spawn(move || watch_stderr(stderr, &said_by_tcpdump, &ready_tx));
        match ready.recv_timeout(START_TIMEOUT) {
            Ok(()) => Ok(Self {
                process,
                stdout,
                said,
            }),
            // stderr closed before "listening on": tcpdump gave up (a bad
            // filter, no such interface); say what it said.
            Err(RecvTimeoutError::Disconnected) => {
                let status = process.wait_exit(Duration::from_secs(1))?;
                Err(Error::Command {
                    command: label.to_owned(),
                    status,
                    output: said.lock().unwrap_or_else(PoisonError::into_inner).clone(),
                })
            }
            Err(RecvTimeoutError::Timeout) => Err(Error::Timeout {
                what: format!("{label} to start listening"),
                after: START_TIMEOUT,
            }),
        }
    }
}

pub struct Capture {
    label: String,
    process: Process,
    incoming: Receiver<String>,
    /// Every line received so far, oldest first.
    history: Vec<String>,
    /// Lines before this index were consumed by an earlier `wait_for`.
    cursor: usize,
}

impl Capture {
    /// Starts `tcpdump -l -n -e` on `interface` with a pcap `filter` ("" for
    /// everything) and returns once tcpdump says it is listening, so no
    /// packet sent after this returns is missed.
    pub fn start(netns: &Netns, interface: &str, filter: &str) -> Result<Self> {
        let label = format!("tcpdump on {} {interface}", netns.name());
        let mut command = netns.command("tcpdump");
        // --immediate-mode: hand over each packet at once instead of when
        // the kernel's capture buffer block fills or times out.
        command.args(["-l", "-n", "-e", "--immediate-mode", "-i", interface]);
        if !filter.is_empty() {
            command.arg(filter);
        }
        let Tcpdump {
            process, stdout, ..
        } = Tcpdump::start(&label, &mut command)?;
        let (line_tx, incoming) = mpsc::channel();
        thread::spawn(move || forward_lines(stdout, &line_tx));
        Ok(Self {
            label,
            process,
            incoming,
            history: Vec::new(),
            cursor: 0,
        })
    }

    /// The next line (after those an earlier call consumed) for which
    /// `matches` holds, waiting at most `timeout` for it.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut matches: impl FnMut(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        self.drain();
        loop {
            if let Some(offset) = self.history[self.cursor..].iter().position(|l| matches(l)) {
                let index = self.cursor + offset;
                self.cursor = index + 1;
                return Ok(self.history[index].clone());
            }
            self.cursor = self.history.len();
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(remaining) {
                Ok(line) => self.history.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::Timeout {
                        what: format!(
                            "a matching line from {} ({} lines seen, last: {:?})",
                            self.label,
                            self.history.len(),
                            self.history.last().map_or("", String::as_str)
                        ),
                        after: timeout,
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.process.wait_exit(Duration::from_secs(1))?;
                    return Err(Error::Exited {
                        process: self.label.clone(),
                        status,
                    });
                }
            }
        }
    }

    /// Every line captured so far.
    pub fn lines(&mut self) -> &[String] {
        self.drain();
        &self.history
    }

    /// How many lines so far satisfy `matches` (e.g. adverts from one MAC).
    pub fn count(&mut self, mut matches: impl FnMut(&str) -> bool) -> usize {
        self.lines().iter().filter(|line| matches(line)).count()
    }

    /// Marks everything captured so far as consumed: the next `wait_for`
    /// only looks at what arrives after this call.
    pub fn discard_pending(&mut self) {
        self.drain();
        self.cursor = self.history.len();
    }

    fn drain(&mut self) {
        self.history.extend(self.incoming.try_iter());
    }
}

fn forward_lines(stdout: impl Read, lines: &Sender<String>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if lines.send(line).is_err() {
            break;
        }
    }
}

/// Keeps what tcpdump says (for errors) and reports its "listening on" line.
/// Returning drops `ready`, which tells `start` that tcpdump is gone.
fn watch_stderr(stderr: impl Read, said: &Mutex<String>, ready: &Sender<()>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let listening = line.contains("listening on");
        {
            let mut said = said.lock().unwrap_or_else(PoisonError::into_inner);
            said.push_str(&line);
            said.push('\n');
        }
        if listening {
            // The test may have gone; nobody to tell then.
            let _ = ready.send(());
        }
    }
}
