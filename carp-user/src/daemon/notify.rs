//! systemd's readiness notification (`sd_notify(READY=1)`), so units ordered
//! after carpd start once the boot interlock is released. Without
//! `NOTIFY_SOCKET` (not started by systemd with Type=notify) it does nothing.

use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use tracing::{debug, warn};

pub fn ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    // A leading '@' names a socket in the abstract namespace.
    let address = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    // One datagram to a local socket: it never blocks the event loop.
    let sent = address.and_then(|address| {
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        socket.send_to_addr(b"READY=1\nSTATUS=ready\n", &address)
    });
    match sent {
        Ok(_) => debug!("notified systemd: READY=1"),
        Err(error) => warn!("cannot notify systemd at {path}: {error}"),
    }
}
