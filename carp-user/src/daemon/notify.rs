//! systemd's readiness notification (`sd_notify(READY=1)`), so units ordered
//! after carpd start once the boot interlock is released. Without
//! `NOTIFY_SOCKET` (not started by systemd with Type=notify) it does nothing.

use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use tracing::{debug, warn};

const READY: &[u8] = b"READY=1\nSTATUS=ready\n";

pub fn ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    match send(&path, READY) {
        Ok(()) => debug!("notified systemd: READY=1"),
        Err(error) => warn!("cannot notify systemd at {path}: {error}"),
    }
}

/// One datagram to a local socket: it never blocks the event loop. A
/// leading '@' names a socket in the abstract namespace.
fn send(path: &str, message: &[u8]) -> io::Result<()> {
    let address = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(path)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    socket.send_to_addr(message, &address)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_ready_to_a_path_socket() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("notify");
        let systemd = UnixDatagram::bind(&path)?;
        send(&path.to_string_lossy(), READY)?;
        let mut buffer = [0u8; 64];
        let n = systemd.recv(&mut buffer)?;
        assert_eq!(&buffer[..n], READY);
        Ok(())
    }

    #[test]
    fn sends_ready_to_an_abstract_socket() -> io::Result<()> {
        let name = format!("carpd-notify-test-{}", std::process::id());
        let systemd = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)?;
        send(&format!("@{name}"), READY)?;
        let mut buffer = [0u8; 64];
        let n = systemd.recv(&mut buffer)?;
        assert_eq!(&buffer[..n], READY);
        Ok(())
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        assert!(send("/nonexistent/carpd-notify", READY).is_err());
    }
}
