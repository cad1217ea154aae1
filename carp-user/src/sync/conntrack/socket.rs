//! The request socket: dumps, lookups, and batched installs and deletes over
//! `NETLINK_NETFILTER`, non-blocking and driven by tokio readiness
//! (`AsyncFd`), so the runtime thread never sleeps in a syscall.
//!
//! A `sendmsg` to the kernel runs the ctnetlink handler for every message in
//! it before it returns (netlink delivers to kernel sockets synchronously):
//! batches are sized so that this work stays short (a few hundred entries,
//! around a millisecond) and their worst-case replies fit the receive queue.
//!
//! Like `packet_socket`, this module calls `setsockopt` itself once:
//! neither netlink-sys nor socket2 sets `SO_RCVBUFFORCE`.

use std::io;
use std::os::fd::AsRawFd;

use netlink_packet_netfilter::conntrack::ConntrackAttribute;
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP_INTR, NLM_F_REQUEST};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::convert::{
    EncodeError, TcpWindow, family_of, flow_from_attributes, key_attributes, new_attributes,
};
use super::message::{Replies, Reply, push_dump_request, push_request, request_ack};
use super::report::{BatchReport, Cause, ConntrackError, Dump, DumpStats};
use super::uapi::{
    IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_NEW, NFPROTO_IPV4, NFPROTO_IPV6,
    NFPROTO_UNSPEC,
};
use crate::sync::flow::{Flow, FlowKey};

/// Room for the largest datagram the kernel sends us: dump datagrams are at
/// most 32 KiB (`netlink_recvmsg` caps `max_recvmsg_len`), an event fits in
/// `NLMSG_GOODSIZE`.
const RECEIVE_CAPACITY: usize = 64 * 1024;
/// The request socket's receive queue: room for the replies of a batch in
/// which every entry fails.
const REQUEST_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;
/// Requests per `sendmsg`, in bytes; well under the default `SO_SNDBUF`
/// (`netlink_sendmsg` refuses a datagram larger than it).
const BATCH_BYTES: usize = 64 * 1024;
const BATCH_ENTRIES: usize = 512;
/// What one error reply costs in the receive queue (`skb->truesize` of a
/// small skb, rounded up).
const REPLY_TRUESIZE: usize = 2048;

/// Which entries a dump returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Any,
    Ipv4,
    Ipv6,
}

impl Family {
    fn nfproto(self) -> u8 {
        match self {
            Self::Any => NFPROTO_UNSPEC,
            Self::Ipv4 => NFPROTO_IPV4,
            Self::Ipv6 => NFPROTO_IPV6,
        }
    }
}

/// A ctnetlink request socket. One operation at a time (`&mut self`); an
/// operation cancelled half-way (its future dropped) leaves replies behind
/// that the next operation drains first.
pub struct Conntrack {
    socket: AsyncFd<Socket>,
    port_id: u32,
    next_seq: u32,
    receive: Vec<u8>,
    send: Vec<u8>,
    window: TcpWindow,
    batch_entries: usize,
    /// An operation started and did not finish: its replies may be queued.
    dirty: bool,
}

impl Conntrack {
    /// Opens a request socket in the calling thread's network namespace.
    /// Must be called inside a tokio runtime.
    pub fn open() -> Result<Self, ConntrackError> {
        let (socket, port_id) = open_socket()?;
        let granted = set_receive_buffer(&socket, REQUEST_RECEIVE_BUFFER)
            .map_err(ConntrackError::io("set the receive buffer"))?;
        // The queue holds `granted` bytes of skb truesize; half of it for
        // one batch's replies leaves room for stragglers of a cancelled one.
        let batch_entries = (granted / 2 / REPLY_TRUESIZE).clamp(1, BATCH_ENTRIES);
        Ok(Self {
            socket: async_fd(socket)?,
            port_id,
            next_seq: 1,
            receive: Vec::with_capacity(RECEIVE_CAPACITY),
            send: Vec::with_capacity(BATCH_BYTES + 1024),
            window: TcpWindow::default(),
            batch_entries,
            dirty: false,
        })
    }

    /// The netlink port id of this socket: the `nlmsg_pid` of the events
    /// its installs and deletes cause (see `EventSocket::mark_ours`).
    pub fn port_id(&self) -> u32 {
        self.port_id
    }

    /// How installed TCP flows are window-checked ([`TcpWindow::Liberal`]
    /// unless set).
    pub fn set_tcp_window(&mut self, window: TcpWindow) {
        self.window = window;
    }

    /// Every entry of `family`, with what was skipped.
    pub async fn dump(&mut self, family: Family) -> Result<Dump, ConntrackError> {
        let mut flows = Vec::new();
        let stats = self.dump_each(family, |flow| flows.push(flow)).await?;
        Ok(Dump { flows, stats })
    }

    /// Every entry of `family`, handed to `each` as the kernel sends them
    /// (a datagram of about a hundred entries at a time): a table of any
    /// size in constant memory.
    pub async fn dump_each(
        &mut self,
        family: Family,
        mut each: impl FnMut(Flow),
    ) -> Result<DumpStats, ConntrackError> {
        const WHAT: &str = "dump";
        self.begin().await?;
        let seq = self.take_seq();
        self.send.clear();
        push_dump_request(&mut self.send, seq, family.nfproto());
        send_datagram(&self.socket, &self.send)
            .await
            .map_err(ConntrackError::io(WHAT))?;
        let mut stats = DumpStats::default();
        loop {
            receive(&self.socket, &mut self.receive, WHAT).await?;
            for reply in Replies::new(&self.receive) {
                let reply = reply.map_err(ConntrackError::malformed(WHAT))?;
                match reply {
                    Reply::Conntrack {
                        seq: s,
                        kind: IPCTNL_MSG_CT_NEW | IPCTNL_MSG_CT_GET,
                        flags,
                        attributes,
                        ..
                    } if s == seq => {
                        stats.interrupted |= flags & NLM_F_DUMP_INTR != 0;
                        match flow_from_attributes(attributes) {
                            Ok(flow) => {
                                stats.flows += 1;
                                each(flow);
                            }
                            Err(skip) => stats.skip(skip),
                        }
                    }
                    Reply::Done { seq: s, errno } if s == seq => {
                        self.dirty = false;
                        return if errno < 0 {
                            Err(ConntrackError::Kernel {
                                what: WHAT,
                                errno: -errno,
                            })
                        } else {
                            Ok(stats)
                        };
                    }
                    Reply::Ack { seq: s, errno } if s == seq && errno != 0 => {
                        self.dirty = false;
                        return Err(ConntrackError::Kernel {
                            what: WHAT,
                            errno: -errno,
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    /// The entry `key` names, if the kernel has it.
    pub async fn get(&mut self, key: &FlowKey) -> Result<Option<Flow>, ConntrackError> {
        const WHAT: &str = "get";
        let encode = |source| ConntrackError::Encode { what: WHAT, source };
        let family = family_of(&key.original).map_err(encode)?;
        let attributes = key_attributes(key).map_err(encode)?;
        self.begin().await?;
        let seq = self.take_seq();
        self.send.clear();
        push_request(
            &mut self.send,
            IPCTNL_MSG_CT_GET,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            family,
            attributes,
        );
        send_datagram(&self.socket, &self.send)
            .await
            .map_err(ConntrackError::io(WHAT))?;
        let mut found = None;
        loop {
            receive(&self.socket, &mut self.receive, WHAT).await?;
            for reply in Replies::new(&self.receive) {
                let reply = reply.map_err(ConntrackError::malformed(WHAT))?;
                match reply {
                    Reply::Conntrack {
                        seq: s,
                        kind: IPCTNL_MSG_CT_NEW | IPCTNL_MSG_CT_GET,
                        attributes,
                        ..
                    } if s == seq => {
                        found = Some(flow_from_attributes(attributes).map_err(|source| {
                            ConntrackError::Unrepresentable { what: WHAT, source }
                        }));
                    }
                    Reply::Ack { seq: s, errno } if s == seq => {
                        self.dirty = false;
                        return match errno {
                            0 => found.transpose(),
                            errno if -errno == libc::ENOENT => Ok(None),
                            errno => Err(ConntrackError::Kernel {
                                what: WHAT,
                                errno: -errno,
                            }),
                        };
                    }
                    _ => {}
                }
            }
        }
    }

    /// Creates each flow, or updates the entry with its original tuple and
    /// zone (`NLM_F_CREATE` without `NLM_F_EXCL`). Entries the kernel
    /// refuses are counted, the first one reported; the rest still apply.
    pub async fn install(&mut self, flows: &[Flow]) -> Result<BatchReport, ConntrackError> {
        let window = self.window;
        self.batch(
            Operation::Install,
            flows,
            |flow| {
                Ok(Request {
                    message_type: IPCTNL_MSG_CT_NEW,
                    flags: NLM_F_REQUEST | NLM_F_CREATE,
                    family: family_of(&flow.original)?,
                    attributes: new_attributes(flow, window)?,
                })
            },
            Flow::key,
        )
        .await
    }

    /// Deletes the entries `keys` name. Entries already gone count as
    /// `absent`, not as failures.
    pub async fn delete(&mut self, keys: &[FlowKey]) -> Result<BatchReport, ConntrackError> {
        self.batch(
            Operation::Delete,
            keys,
            |key| {
                Ok(Request {
                    message_type: IPCTNL_MSG_CT_DELETE,
                    flags: NLM_F_REQUEST,
                    family: family_of(&key.original)?,
                    attributes: key_attributes(key)?,
                })
            },
            |key| *key,
        )
        .await
    }

    /// Sends `items` as requests, many per datagram, and reads the outcome.
    ///
    /// ACK strategy: only the last request of a datagram asks for an ACK.
    /// `netlink_rcv_skb` answers every failed request with an error whatever
    /// its flags, in order, so once the last one is answered every error of
    /// the datagram is in the queue before it: one reply to read per
    /// datagram when all goes well, one more per failed entry.
    async fn batch<T>(
        &mut self,
        operation: Operation,
        items: &[T],
        encode: impl Fn(&T) -> Result<Request, EncodeError>,
        key_of: impl Fn(&T) -> FlowKey,
    ) -> Result<BatchReport, ConntrackError> {
        let what = operation.name();
        self.begin().await?;
        let mut report = BatchReport {
            requested: items.len(),
            ..BatchReport::default()
        };
        // Item index of each request in the datagram being built; request
        // `i` has sequence number `base + i`.
        let mut sent: Vec<usize> = Vec::with_capacity(self.batch_entries);
        let mut next = 0;
        while next < items.len() {
            self.send.clear();
            sent.clear();
            let base = self.next_seq;
            let mut last_start = 0;
            while next < items.len()
                && sent.len() < self.batch_entries
                && self.send.len() < BATCH_BYTES
            {
                match encode(&items[next]) {
                    Ok(request) => {
                        let seq = base.wrapping_add(u32::try_from(sent.len()).unwrap_or(u32::MAX));
                        last_start = push_request(
                            &mut self.send,
                            request.message_type,
                            request.flags,
                            seq,
                            request.family,
                            request.attributes,
                        );
                        sent.push(next);
                    }
                    Err(error) => report.fail(next, key_of(&items[next]), Cause::Encode(error)),
                }
                next += 1;
            }
            let Some(count) = u32::try_from(sent.len()).ok().filter(|&n| n > 0) else {
                continue;
            };
            self.next_seq = base.wrapping_add(count);
            request_ack(&mut self.send, last_start);
            send_datagram(&self.socket, &self.send)
                .await
                .map_err(ConntrackError::io(what))?;
            self.await_replies(operation, base, &sent, items, &key_of, &mut report)
                .await?;
        }
        self.dirty = false;
        Ok(report)
    }

    /// Reads replies to the datagram of requests `base..base + sent.len()`
    /// until the last one is answered.
    async fn await_replies<T>(
        &mut self,
        operation: Operation,
        base: u32,
        sent: &[usize],
        items: &[T],
        key_of: &impl Fn(&T) -> FlowKey,
        report: &mut BatchReport,
    ) -> Result<(), ConntrackError> {
        let what = operation.name();
        loop {
            receive(&self.socket, &mut self.receive, what).await?;
            for reply in Replies::new(&self.receive) {
                let reply = reply.map_err(ConntrackError::malformed(what))?;
                let Reply::Ack { seq, errno } = reply else {
                    continue;
                };
                // Replies of a cancelled operation have other numbers.
                let Some(&index) = usize::try_from(seq.wrapping_sub(base))
                    .ok()
                    .and_then(|offset| sent.get(offset))
                else {
                    continue;
                };
                match -errno {
                    0 => {}
                    libc::ENOENT if operation == Operation::Delete => report.absent += 1,
                    errno => report.fail(index, key_of(&items[index]), Cause::Kernel(errno)),
                }
                if seq == base.wrapping_add(u32::try_from(sent.len() - 1).unwrap_or(0)) {
                    return Ok(());
                }
            }
        }
    }

    fn take_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        seq
    }

    /// Drains what a cancelled operation left (including the rest of a dump:
    /// the kernel produces the next part of a dump on each read, until
    /// done, then the queue is empty), then marks an operation as running.
    async fn begin(&mut self) -> Result<(), ConntrackError> {
        /// Datagrams read between yields to the runtime: the rest of a
        /// large dump can take seconds to drain.
        const DRAIN_BURST: usize = 64;
        let mut drained = 0usize;
        while self.dirty {
            self.receive.clear();
            match self
                .socket
                .get_ref()
                .recv(&mut self.receive, libc::MSG_DONTWAIT)
            {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                // Replies of the cancelled operation were lost: nothing to
                // drain of them any more.
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(error) => return Err(ConntrackError::io("drain")(error)),
            }
            drained += 1;
            if drained.is_multiple_of(DRAIN_BURST) {
                tokio::task::yield_now().await;
            }
        }
        self.dirty = true;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Install,
    Delete,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Self::Install => "install",
            Self::Delete => "delete",
        }
    }
}

/// One encoded request of a batch.
struct Request {
    message_type: u8,
    flags: u16,
    family: u8,
    attributes: Vec<ConntrackAttribute>,
}

/// A bound, non-blocking `NETLINK_NETFILTER` socket that answers with
/// capped ACKs (the error without the request echoed), and its port id.
pub(super) fn open_socket() -> Result<(Socket, u32), ConntrackError> {
    let mut socket =
        Socket::new(NETLINK_NETFILTER).map_err(ConntrackError::io("socket(NETLINK_NETFILTER)"))?;
    let address = socket
        .bind_auto()
        .map_err(ConntrackError::io("bind the netlink socket"))?;
    socket
        .set_non_blocking(true)
        .map_err(ConntrackError::io("make the socket non-blocking"))?;
    socket
        .set_cap_ack(true)
        .map_err(ConntrackError::io("set NETLINK_CAP_ACK"))?;
    Ok((socket, address.port_number()))
}

pub(super) fn async_fd(socket: Socket) -> Result<AsyncFd<Socket>, ConntrackError> {
    // Registering panics outside a runtime; say so instead.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ConntrackError::Io {
            what: "register with tokio",
            source: io::Error::other("not inside a tokio runtime"),
        });
    }
    // SAFETY: the socket owns its fd and moves into the AsyncFd, so the fd
    // stays open, and the same, for as long as it is registered.
    unsafe { AsyncFd::register(socket) }
        .map_err(|error| ConntrackError::io("register with tokio")(io::Error::from(error)))
}

/// Sets the receive queue to `bytes`: `SO_RCVBUFFORCE` (root, beyond
/// `net.core.rmem_max`), else `SO_RCVBUF`. Returns what the kernel granted
/// (it doubles the value for its bookkeeping).
pub(super) fn set_receive_buffer(socket: &Socket, bytes: usize) -> io::Result<usize> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if setsockopt_int(socket, libc::SO_RCVBUFFORCE, value).is_err() {
        socket.set_rx_buf_sz(value)?;
    }
    socket.get_rx_buf_sz()
}

fn setsockopt_int(socket: &Socket, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    #[expect(clippy::cast_possible_truncation, reason = "sizeof(int) is 4")]
    let length = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: passes a pointer to a live c_int and its size; the kernel
    // only reads it.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw const value).cast(),
            length,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(super) async fn send_datagram(socket: &AsyncFd<Socket>, datagram: &[u8]) -> io::Result<()> {
    let sent = socket
        .async_io(Interest::WRITABLE, |socket| socket.send(datagram, 0))
        .await?;
    if sent != datagram.len() {
        return Err(io::Error::other(format!(
            "sent {sent} of {} bytes",
            datagram.len()
        )));
    }
    Ok(())
}

/// Reads one datagram into `buffer` (replacing its contents).
pub(super) async fn receive_datagram(
    socket: &AsyncFd<Socket>,
    buffer: &mut Vec<u8>,
) -> io::Result<()> {
    // MSG_TRUNC: the datagram's real length, to notice a truncation.
    let length = socket
        .async_io(Interest::READABLE, |socket| {
            buffer.clear();
            socket.recv(buffer, libc::MSG_TRUNC)
        })
        .await?;
    if length > buffer.len() {
        return Err(io::Error::other(format!(
            "datagram of {length} bytes truncated to {}",
            buffer.len()
        )));
    }
    Ok(())
}

/// `receive_datagram` for replies to a request: ENOBUFS means they were lost.
async fn receive(
    socket: &AsyncFd<Socket>,
    buffer: &mut Vec<u8>,
    what: &'static str,
) -> Result<(), ConntrackError> {
    receive_datagram(socket, buffer).await.map_err(|error| {
        if error.raw_os_error() == Some(libc::ENOBUFS) {
            ConntrackError::RepliesLost { what }
        } else {
            ConntrackError::Io {
                what,
                source: error,
            }
        }
    })
}
