//! Conntrack events: the NEW, UPDATE and DESTROY multicast groups of
//! ctnetlink as [`Event`]s, each marked with who caused it.
//!
//! The kernel drops events when the socket's receive queue is full and
//! reports it once as ENOBUFS on the next read: that is [`Event::Overrun`],
//! after which the caller must resync (dump) rather than carry on with a
//! table that silently diverged. A large queue (`SO_RCVBUFFORCE`) makes it
//! rare; nothing makes it impossible.

use netlink_sys::Socket;
use tokio::io::unix::AsyncFd;

use super::convert::{Skip, flow_from_attributes, key_from_attributes};
use super::message::{Replies, Reply};
use super::report::ConntrackError;
use super::socket::{Conntrack, async_fd, open_socket, receive_datagram, set_receive_buffer};
use super::uapi::{
    IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_NEW, NFNLGRP_CONNTRACK_DESTROY, NFNLGRP_CONNTRACK_NEW,
    NFNLGRP_CONNTRACK_UPDATE,
};
use crate::sync::flow::{Flow, FlowKey, PROTO_TCP};

/// A receive queue for a busy gateway: tens of thousands of events.
pub const DEFAULT_EVENT_BUFFER: usize = 32 * 1024 * 1024;

/// Who caused an event, from its `nlmsg_pid`: ctnetlink stamps events that a
/// request caused with the port id of the requesting socket, and events of
/// packets and timeouts with 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Packets, timeouts, the kernel itself: local changes to replicate.
    Kernel,
    /// One of our own sockets (see [`EventSocket::mark_ours`]): state we
    /// were given, not to echo back to where it came from.
    Ours,
    /// Another netlink socket (the `conntrack` tool, another daemon).
    Process(u32),
}

/// A change of the conntrack table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An entry was created or changed; `flow` is the whole entry.
    Upsert { flow: Flow, origin: Origin },
    /// An entry was destroyed.
    Delete { key: FlowKey, origin: Origin },
    /// The kernel dropped events (ENOBUFS): resync with a dump.
    Overrun,
}

/// A socket subscribed to conntrack events.
pub struct EventSocket {
    socket: AsyncFd<Socket>,
    receive: Vec<u8>,
    /// Bytes of `receive` already handed out as events.
    read: usize,
    own_ports: Vec<u32>,
    /// Fetches the whole entry for TCP updates that came without their TCP
    /// state (see [`EventSocket::next`]).
    lookup: Conntrack,
    skipped: u64,
    first_skip: Option<Skip>,
    completed: u64,
    /// An upsert whose completion was under way when `next` was cancelled.
    incomplete: Option<Event>,
}

impl EventSocket {
    /// Subscribes to NEW, UPDATE and DESTROY events of the calling thread's
    /// network namespace with a receive queue of `receive_buffer` bytes
    /// (e.g. [`DEFAULT_EVENT_BUFFER`]). Must be called inside a tokio
    /// runtime.
    pub fn subscribe(receive_buffer: usize) -> Result<Self, ConntrackError> {
        let (socket, _port_id) = open_socket()?;
        set_receive_buffer(&socket, receive_buffer)
            .map_err(ConntrackError::io("set the event receive buffer"))?;
        for group in [
            NFNLGRP_CONNTRACK_NEW,
            NFNLGRP_CONNTRACK_UPDATE,
            NFNLGRP_CONNTRACK_DESTROY,
        ] {
            socket
                .add_membership(group)
                .map_err(ConntrackError::io("join a conntrack event group"))?;
        }
        Ok(Self {
            socket: async_fd(socket)?,
            receive: Vec::with_capacity(64 * 1024),
            read: 0,
            own_ports: Vec::new(),
            lookup: Conntrack::open()?,
            skipped: 0,
            first_skip: None,
            completed: 0,
            incomplete: None,
        })
    }

    /// Marks the events caused by the socket with port id `port_id` (see
    /// [`Conntrack::port_id`]) as [`Origin::Ours`].
    pub fn mark_ours(&mut self, port_id: u32) {
        if port_id != 0 && !self.own_ports.contains(&port_id) {
            self.own_ports.push(port_id);
        }
    }

    /// Has the kernel drop, before they are queued, the events caused by
    /// the socket with port id `port_id`: a bulk update installs entries by
    /// the hundred thousand, and their events would only fill the queue
    /// (and overrun it, which costs the peer a resync). A classic BPF
    /// socket filter on the `nlmsg_pid` of each event (one per datagram).
    pub fn ignore_ours(&mut self, port_id: u32) -> Result<(), ConntrackError> {
        self.mark_ours(port_id);
        // `ld [12]` reads nlmsg_pid in network order; the kernel wrote it in
        // host order.
        let wire_port = u32::from_be_bytes(port_id.to_ne_bytes());
        let filter = [
            sock_filter(BPF_LD_W_ABS, 0, 0, NLMSG_PID_OFFSET),
            sock_filter(BPF_JEQ_K, 0, 1, wire_port),
            sock_filter(BPF_RET_K, 0, 0, 0),
            sock_filter(BPF_RET_K, 0, 0, u32::MAX),
        ];
        socket2::SockRef::from(self.socket.get_ref())
            .attach_filter(&filter)
            .map_err(ConntrackError::io("filter our own events"))
    }

    /// The receive queue the kernel granted, in bytes (twice what was asked:
    /// the kernel counts its bookkeeping).
    pub fn receive_buffer(&self) -> Result<usize, ConntrackError> {
        self.socket
            .get_ref()
            .get_rx_buf_sz()
            .map_err(ConntrackError::io("read the receive buffer"))
    }

    /// Events about entries that are not replicable (see [`Skip`]), left out.
    pub fn skipped(&self) -> (u64, Option<Skip>) {
        (self.skipped, self.first_skip)
    }

    /// TCP updates that came without their TCP state and were completed
    /// with a lookup (see [`EventSocket::next`]).
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Whether events already read from the kernel wait to be handed out:
    /// the rest of a burst that arrived in one datagram.
    pub fn has_buffered(&self) -> bool {
        self.read < self.receive.len()
    }

    /// The next event.
    ///
    /// ctnetlink sends a TCP entry's state (`CTA_PROTOINFO`) only in events
    /// where that state changed; for one without it (a mark, status or
    /// timeout change) this fetches the whole entry, so every `Upsert`
    /// carries a complete flow. If the entry is gone by then, the event is
    /// dropped: its DESTROY follows.
    ///
    /// Cancel-safe: an event is consumed only by the call that returns it.
    pub async fn next(&mut self) -> Result<Event, ConntrackError> {
        if let Some(event) = self.incomplete {
            let completed = self.complete(event).await;
            self.incomplete = None;
            if let Some(event) = completed? {
                return Ok(event);
            }
        }
        loop {
            if self.read >= self.receive.len() {
                self.read = 0;
                match receive_datagram(&self.socket, &mut self.receive).await {
                    Ok(()) => {}
                    Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                        self.receive.clear();
                        return Ok(Event::Overrun);
                    }
                    Err(source) => {
                        return Err(ConntrackError::Io {
                            what: "read events",
                            source,
                        });
                    }
                }
            }
            let mut replies = Replies::new(&self.receive[self.read..]);
            let reply = replies.next();
            let parsed = match reply {
                Some(Ok(Reply::Conntrack {
                    kind,
                    port,
                    attributes,
                    ..
                })) => {
                    let origin = self.origin(port);
                    match kind {
                        IPCTNL_MSG_CT_NEW => Some(
                            flow_from_attributes(attributes)
                                .map(|flow| Event::Upsert { flow, origin }),
                        ),
                        IPCTNL_MSG_CT_DELETE => Some(
                            key_from_attributes(attributes)
                                .map(|key| Event::Delete { key, origin }),
                        ),
                        _ => None,
                    }
                }
                Some(Ok(_)) | None => None,
                Some(Err(error)) => {
                    self.receive.clear();
                    return Err(ConntrackError::malformed("read events")(error));
                }
            };
            self.read = self.receive.len() - replies.remaining();
            match parsed {
                Some(Ok(event)) => {
                    // Kept until completed, in case this call is cancelled.
                    self.incomplete = Some(event);
                    let completed = self.complete(event).await;
                    self.incomplete = None;
                    if let Some(event) = completed? {
                        return Ok(event);
                    }
                }
                Some(Err(skip)) => {
                    self.skipped += 1;
                    self.first_skip.get_or_insert(skip);
                }
                None => {}
            }
        }
    }

    fn origin(&self, port: u32) -> Origin {
        match port {
            0 => Origin::Kernel,
            port if self.own_ports.contains(&port) => Origin::Ours,
            port => Origin::Process(port),
        }
    }

    /// Fills in the TCP state of an upsert that came without it.
    async fn complete(&mut self, event: Event) -> Result<Option<Event>, ConntrackError> {
        match event {
            // Our own installs are never replicated back: nothing to fetch.
            Event::Upsert { flow, origin }
                if origin != Origin::Ours
                    && flow.original.proto == PROTO_TCP
                    && flow.tcp.is_none() =>
            {
                self.completed += 1;
                match self.lookup.get(&flow.key()).await {
                    Ok(found) => Ok(found.map(|flow| Event::Upsert { flow, origin })),
                    Err(ConntrackError::Unrepresentable { source, .. }) => {
                        self.skipped += 1;
                        self.first_skip.get_or_insert(source);
                        Ok(None)
                    }
                    Err(error) => Err(error),
                }
            }
            event => Ok(Some(event)),
        }
    }
}

/// Offset of `nlmsg_pid` in a netlink message header.
const NLMSG_PID_OFFSET: u32 = 12;
/// Classic BPF opcodes (linux/filter.h): `BPF_LD | BPF_W | BPF_ABS` (load
/// a word at an absolute offset), `BPF_JMP | BPF_JEQ | BPF_K` (jump if equal
/// to k), `BPF_RET | BPF_K` (return k).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;

fn sock_filter(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}
