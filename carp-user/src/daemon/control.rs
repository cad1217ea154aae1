//! The control socket server: one JSON request per line, one answer per line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::Handle;
use crate::api::{MAX_LINE_BYTES, Request, Response};

/// Clients served at once; more wait for a slot.
const MAX_CLIENTS: usize = 16;
/// A client that sends nothing for this long is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A client still being served when the agent exits gets this long to
/// receive its answer (`carpctl detach` waits for one).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The bound socket; removes its file when dropped.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    /// One permit per client being served.
    slots: Arc<Semaphore>,
}

impl ControlSocket {
    /// Binds `path`. A leftover file from a dead carpd is replaced; a live
    /// carpd answering there is an error, so two agents never fight.
    pub fn bind(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("control socket directory {}", dir.display()))?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!(
                    "{}: another carpd is already listening there",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale control socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("control socket {}", path.display()))?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            slots: Arc::new(Semaphore::new(MAX_CLIENTS)),
        })
    }

    /// Waits (a bounded time) until no client is being served: call it
    /// once the agent has stopped and `serve` is cancelled.
    pub fn drained(&self) -> impl Future<Output = ()> + 'static {
        let slots = Arc::clone(&self.slots);
        async move {
            let all = u32::try_from(MAX_CLIENTS).unwrap_or(u32::MAX);
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(all)).await;
        }
    }

    /// Serves clients until the agent stops.
    pub async fn serve(&self, handle: Handle) {
        let slots = Arc::clone(&self.slots);
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    super::accept_failed("control socket", &error).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                if let Err(error) = serve_client(stream, &handle).await {
                    tracing::debug!(%error, "control client");
                }
                drop(permit);
            });
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_client(stream: UnixStream, handle: &Handle) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let limit = u64::try_from(MAX_LINE_BYTES).unwrap_or(u64::MAX);
    loop {
        // Each line is read through its own limit, so no client can make us
        // buffer more than MAX_LINE_BYTES.
        let mut line = Vec::new();
        let mut limited = (&mut reader).take(limit + 1);
        let read = limited.read_until(b'\n', &mut line);
        match tokio::time::timeout(IDLE_TIMEOUT, read).await {
            Ok(Ok(0)) | Err(_) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error),
        }
        let too_long = line.last() != Some(&b'\n') && line.len() > MAX_LINE_BYTES;
        let response = if too_long {
            Response::Error {
                message: format!("request longer than {MAX_LINE_BYTES} bytes"),
            }
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(request) => handle.call(request).await,
                Err(error) => Response::Error {
                    message: format!("bad request: {error}"),
                },
            }
        };
        let mut answer = serde_json::to_vec(&response).unwrap_or_default();
        answer.push(b'\n');
        write.write_all(&answer).await?;
        if too_long {
            return Ok(());
        }
    }
}
