//! Reading one of the program's ring buffers from tokio.

use std::io;

use aya::maps::{MapData, RingBuf};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tracing::warn;

pub struct RingReader {
    ring: AsyncFd<RingBuf<MapData>>,
    /// For the log line about a record that does not decode.
    name: &'static str,
}

impl RingReader {
    pub fn new(ring: RingBuf<MapData>, name: &'static str) -> io::Result<Self> {
        // SAFETY: the ring buffer owns its map fd and moves into the AsyncFd,
        // so the fd stays open for as long as it is registered.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }?;
        Ok(Self { ring, name })
    }

    /// The next record `decode` accepts; others are logged and skipped.
    /// Cancel-safe: a record is consumed only in the poll that returns it.
    pub async fn next<T>(&mut self, decode: impl Fn(&[u8]) -> Option<T>) -> io::Result<T> {
        loop {
            let mut guard = self.ring.readable_mut().await?;
            while let Some(record) = guard.get_inner_mut().next() {
                if let Some(value) = decode(&record) {
                    return Ok(value);
                }
                warn!(
                    "ignoring a {}-byte record from the {} ring buffer",
                    record.len(),
                    self.name
                );
            }
            guard.clear_ready();
        }
    }
}

/// `T` from a record of exactly its size.
///
/// # Safety
/// `T` must be plain data (integers and byte arrays, no padding) so that
/// every bit pattern is a valid `T`.
pub unsafe fn plain<T: Copy>(record: &[u8]) -> Option<T> {
    if record.len() != size_of::<T>() {
        return None;
    }
    // SAFETY: the length matches; the caller vouches for T; read_unaligned
    // needs no alignment.
    Some(unsafe { record.as_ptr().cast::<T>().read_unaligned() })
}
