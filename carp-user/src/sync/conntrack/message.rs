//! Netlink framing for ctnetlink, without I/O: requests packed many to a
//! datagram (the kernel's `netlink_rcv_skb` walks every message of a
//! `sendmsg`), and the messages of a received datagram read in place.
//!
//! ```text
//!  0               4       6       8               12              16
//! +---------------+-------+-------+---------------+---------------+
//! | nlmsg_len     | type  | flags | nlmsg_seq     | nlmsg_pid     |  host order
//! +-------+-------+-------+-------+---------------+---------------+
//! |family |version| res_id (BE)   | attributes ...                   nfgenmsg
//! +-------+-------+---------------+
//! ```
//! `type` is `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_*`. Replies to a
//! request carry its `nlmsg_seq`; events carry seq 0 and, in `nlmsg_pid`,
//! the port of the socket whose request caused them (0 for the kernel).

use netlink_packet_netfilter::conntrack::{ConntrackAttribute, ConntrackMessage};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLMSG_DONE, NLMSG_ERROR, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};

use super::uapi::{
    IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_NEW, NFNL_SUBSYS_CTNETLINK,
};

const HEADER_LEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
/// Offset of `nlmsg_flags` in a message.
const FLAGS_AT: usize = 6;

/// Appends one ctnetlink request to `datagram`; returns where it starts.
pub fn push_request(
    datagram: &mut Vec<u8>,
    message_type: u8,
    flags: u16,
    seq: u32,
    family: u8,
    attributes: Vec<ConntrackAttribute>,
) -> usize {
    let inner = match message_type {
        IPCTNL_MSG_CT_NEW => ConntrackMessage::New(attributes),
        IPCTNL_MSG_CT_DELETE => ConntrackMessage::Delete(attributes),
        _ => ConntrackMessage::Get(attributes),
    };
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut message = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::from(family), 0, 0),
            inner,
        )),
    );
    message.finalize();
    let start = datagram.len();
    // Every ctnetlink message is a multiple of 4 bytes long, so the next one
    // starts aligned (`NLMSG_ALIGN`).
    datagram.resize(start + message.buffer_len(), 0);
    message.serialize(&mut datagram[start..]);
    start
}

/// Adds `NLM_F_ACK` to the message at `start` of `datagram`.
pub fn request_ack(datagram: &mut [u8], start: usize) {
    if let Some(field) = datagram.get_mut(start + FLAGS_AT..start + FLAGS_AT + 2) {
        let flags = u16::from_ne_bytes([field[0], field[1]]) | NLM_F_ACK;
        field.copy_from_slice(&flags.to_ne_bytes());
    }
}

/// One message of a datagram from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `NLMSG_ERROR`: `errno` is 0 for an ACK, else a negative errno.
    Ack { seq: u32, errno: i32 },
    /// `NLMSG_DONE`, the end of a dump; `errno` < 0 if the dump failed.
    Done { seq: u32, errno: i32 },
    /// A ctnetlink message: a dump entry, a GET reply or an event.
    Conntrack {
        seq: u32,
        /// `nlmsg_pid`: in an event, the port that caused it (0: the kernel).
        port: u32,
        /// `IPCTNL_MSG_CT_*`.
        kind: u8,
        flags: u16,
        family: u8,
        attributes: &'a [u8],
    },
    /// Anything else (`NLMSG_NOOP`, other subsystems): ignored.
    Other { seq: u32 },
}

/// A datagram that does not parse as netlink messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed netlink datagram: {0}")]
pub struct Malformed(pub &'static str);

/// The messages of one received datagram.
pub struct Replies<'a> {
    rest: &'a [u8],
}

impl<'a> Replies<'a> {
    pub fn new(datagram: &'a [u8]) -> Self {
        Self { rest: datagram }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }
}

impl<'a> Iterator for Replies<'a> {
    type Item = Result<Reply<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = parse_one(self.rest);
        match parsed {
            Ok((reply, length)) => {
                self.rest = self.rest.get(length.next_multiple_of(4)..).unwrap_or(&[]);
                Some(Ok(reply))
            }
            Err(error) => {
                self.rest = &[];
                Some(Err(error))
            }
        }
    }
}

fn parse_one(bytes: &[u8]) -> Result<(Reply<'_>, usize), Malformed> {
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or(Malformed("shorter than a header"))?;
    let field = |at: usize| {
        u32::from_ne_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let length = usize::try_from(field(0)).map_err(|_| Malformed("length"))?;
    let message = bytes
        .get(..length)
        .filter(|_| length >= HEADER_LEN)
        .ok_or(Malformed("length beyond the datagram"))?;
    let message_type = u16::from_ne_bytes([header[4], header[5]]);
    let flags = u16::from_ne_bytes([header[6], header[7]]);
    let seq = field(8);
    let port = field(12);
    let payload = &message[HEADER_LEN..];
    let errno = || {
        payload.get(..4).map_or(0, |code| {
            i32::from_ne_bytes([code[0], code[1], code[2], code[3]])
        })
    };
    let reply = match message_type {
        NLMSG_ERROR => {
            if payload.len() < 4 {
                return Err(Malformed("NLMSG_ERROR without an error code"));
            }
            Reply::Ack {
                seq,
                errno: errno(),
            }
        }
        // A zero-length NLMSG_DONE is allowed and means success.
        NLMSG_DONE => Reply::Done {
            seq,
            errno: errno(),
        },
        _ if message_type >> 8 == u16::from(NFNL_SUBSYS_CTNETLINK) => {
            let family = *payload
                .first()
                .ok_or(Malformed("ctnetlink message without nfgenmsg"))?;
            let attributes = payload
                .get(NFGENMSG_LEN..)
                .ok_or(Malformed("ctnetlink message without nfgenmsg"))?;
            #[expect(
                clippy::cast_possible_truncation,
                reason = "the low byte is the message"
            )]
            let kind = message_type as u8;
            Reply::Conntrack {
                seq,
                port,
                kind,
                flags,
                family,
                attributes,
            }
        }
        _ => Reply::Other { seq },
    };
    Ok((reply, length))
}

/// A dump request for every entry of `family` (`NFPROTO_UNSPEC`: all).
pub fn push_dump_request(datagram: &mut Vec<u8>, seq: u32, family: u8) -> usize {
    use rtnetlink::packet_core::{NLM_F_DUMP, NLM_F_REQUEST};
    push_request(
        datagram,
        IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        family,
        Vec::new(),
    )
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_REQUEST};

    use super::super::uapi::{CTA_MARK, NFPROTO_IPV4, NFPROTO_IPV6};
    use super::*;

    #[test]
    fn packs_requests_back_to_back_and_reads_them_again() {
        let mut datagram = Vec::new();
        let first = push_request(
            &mut datagram,
            IPCTNL_MSG_CT_NEW,
            NLM_F_REQUEST | NLM_F_CREATE,
            7,
            NFPROTO_IPV4,
            vec![ConntrackAttribute::CtaMark(5)],
        );
        let second = push_request(
            &mut datagram,
            IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST,
            8,
            NFPROTO_IPV6,
            Vec::new(),
        );
        request_ack(&mut datagram, second);
        assert_eq!(first, 0);
        // header 16 + nfgenmsg 4 + CTA_MARK 8
        assert_eq!(second, 28);
        let replies: Vec<Reply<'_>> = Replies::new(&datagram)
            .collect::<Result<_, _>>()
            .expect("parses");
        assert_eq!(
            replies,
            [
                Reply::Conntrack {
                    seq: 7,
                    port: 0,
                    kind: IPCTNL_MSG_CT_NEW,
                    flags: NLM_F_REQUEST | NLM_F_CREATE,
                    family: NFPROTO_IPV4,
                    attributes: &[8, 0, CTA_MARK.to_ne_bytes()[0], 0, 0, 0, 0, 5],
                },
                Reply::Conntrack {
                    seq: 8,
                    port: 0,
                    kind: IPCTNL_MSG_CT_DELETE,
                    flags: NLM_F_REQUEST | NLM_F_ACK,
                    family: NFPROTO_IPV6,
                    attributes: &[],
                },
            ]
        );
    }

    fn message(message_type: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let length = u32::try_from(HEADER_LEN + payload.len()).expect("fits");
        let mut bytes = length.to_ne_bytes().to_vec();
        bytes.extend_from_slice(&message_type.to_ne_bytes());
        bytes.extend_from_slice(&0u16.to_ne_bytes());
        bytes.extend_from_slice(&seq.to_ne_bytes());
        bytes.extend_from_slice(&1234u32.to_ne_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn reads_acks_errors_and_done() {
        let mut datagram = message(NLMSG_ERROR, 3, &(-2i32).to_ne_bytes());
        datagram.extend(message(NLMSG_ERROR, 4, &0i32.to_ne_bytes()));
        datagram.extend(message(NLMSG_DONE, 5, &[]));
        datagram.extend(message(NLMSG_DONE, 6, &(-16i32).to_ne_bytes()));
        let replies: Vec<Reply<'_>> = Replies::new(&datagram)
            .collect::<Result<_, _>>()
            .expect("parses");
        assert_eq!(
            replies,
            [
                Reply::Ack { seq: 3, errno: -2 },
                Reply::Ack { seq: 4, errno: 0 },
                Reply::Done { seq: 5, errno: 0 },
                Reply::Done { seq: 6, errno: -16 },
            ]
        );
    }

    #[test]
    fn stops_at_a_length_beyond_the_datagram() {
        let mut datagram = message(NLMSG_DONE, 1, &[]);
        let mut broken = message(NLMSG_DONE, 2, &[0; 4]);
        broken[0] = 200;
        datagram.extend(broken);
        let replies: Vec<_> = Replies::new(&datagram).collect();
        assert_eq!(
            replies,
            [
                Ok(Reply::Done { seq: 1, errno: 0 }),
                Err(Malformed("length beyond the datagram")),
            ]
        );
        assert_eq!(
            Replies::new(&[1, 2, 3]).collect::<Vec<_>>(),
            [Err(Malformed("shorter than a header"))]
        );
    }

    #[test]
    fn an_error_without_a_code_is_malformed() {
        let datagram = message(NLMSG_ERROR, 1, &[]);
        assert_eq!(
            Replies::new(&datagram).collect::<Vec<_>>(),
            [Err(Malformed("NLMSG_ERROR without an error code"))]
        );
    }
}
