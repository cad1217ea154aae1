//! The ctnetlink numbers this module speaks, as in the kernel's uapi headers
//! (`linux/netfilter/nfnetlink.h`, `nfnetlink_conntrack.h`,
//! `nf_conntrack_common.h`, `nf_conntrack_tcp.h`). One place, so the parser,
//! the encoder and the socket cannot disagree.

/// `NFNL_SUBSYS_CTNETLINK`: the high byte of a ctnetlink message type.
pub const NFNL_SUBSYS_CTNETLINK: u8 = 1;
/// `IPCTNL_MSG_CT_*`: the low byte of a ctnetlink message type.
pub const IPCTNL_MSG_CT_NEW: u8 = 0;
pub const IPCTNL_MSG_CT_GET: u8 = 1;
pub const IPCTNL_MSG_CT_DELETE: u8 = 2;

/// `NFNLGRP_CONNTRACK_*`: multicast groups (1-based, as `NETLINK_ADD_MEMBERSHIP` takes them).
pub const NFNLGRP_CONNTRACK_NEW: u32 = 1;
pub const NFNLGRP_CONNTRACK_UPDATE: u32 = 2;
pub const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;

/// `NFPROTO_*` in `nfgenmsg.nfgen_family` (the same numbers as `AF_*`).
pub const NFPROTO_UNSPEC: u8 = 0;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_IPV6: u8 = 10;

/// `enum ctattr_type`: top-level attributes of a conntrack message.
pub const CTA_TUPLE_ORIG: u16 = 1;
pub const CTA_TUPLE_REPLY: u16 = 2;
pub const CTA_STATUS: u16 = 3;
pub const CTA_PROTOINFO: u16 = 4;
pub const CTA_TIMEOUT: u16 = 7;
pub const CTA_MARK: u16 = 8;
pub const CTA_ZONE: u16 = 18;

/// `enum ctattr_tuple`.
pub const CTA_TUPLE_IP: u16 = 1;
pub const CTA_TUPLE_PROTO: u16 = 2;
pub const CTA_TUPLE_ZONE: u16 = 3;

/// `enum ctattr_ip`.
pub const CTA_IP_V4_SRC: u16 = 1;
pub const CTA_IP_V4_DST: u16 = 2;
pub const CTA_IP_V6_SRC: u16 = 3;
pub const CTA_IP_V6_DST: u16 = 4;

/// `enum ctattr_l4proto`.
pub const CTA_PROTO_NUM: u16 = 1;
pub const CTA_PROTO_SRC_PORT: u16 = 2;
pub const CTA_PROTO_DST_PORT: u16 = 3;
pub const CTA_PROTO_ICMP_ID: u16 = 4;
pub const CTA_PROTO_ICMP_TYPE: u16 = 5;
pub const CTA_PROTO_ICMP_CODE: u16 = 6;
pub const CTA_PROTO_ICMPV6_ID: u16 = 7;
pub const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
pub const CTA_PROTO_ICMPV6_CODE: u16 = 9;

/// `enum ctattr_protoinfo` and `enum ctattr_protoinfo_tcp`.
pub const CTA_PROTOINFO_TCP: u16 = 1;
pub const CTA_PROTOINFO_TCP_STATE: u16 = 1;
pub const CTA_PROTOINFO_TCP_WSCALE_ORIGINAL: u16 = 2;
pub const CTA_PROTOINFO_TCP_WSCALE_REPLY: u16 = 3;
pub const CTA_PROTOINFO_TCP_FLAGS_ORIGINAL: u16 = 4;
pub const CTA_PROTOINFO_TCP_FLAGS_REPLY: u16 = 5;

/// `TCP_CONNTRACK_MAX`: states are 0 (`NONE`) ..= 9 (`SYN_SENT2`).
pub const TCP_CONNTRACK_MAX: u8 = 10;

/// `IP_CT_TCP_FLAG_*`: per-direction TCP tracking flags.
pub const IP_CT_TCP_FLAG_WINDOW_SCALE: u8 = 0x01;
pub const IP_CT_TCP_FLAG_SACK_PERM: u8 = 0x02;
pub const IP_CT_TCP_FLAG_CLOSE_INIT: u8 = 0x04;
pub const IP_CT_TCP_FLAG_BE_LIBERAL: u8 = 0x08;
pub const IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED: u8 = 0x10;
pub const IP_CT_TCP_FLAG_SIMULTANEOUS_OPEN: u8 = 0x80;

/// `IPS_*`: the conntrack status bits an install sends (see
/// `convert::INSTALL_STATUS` for the others).
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
pub const IPS_ASSURED: u32 = 1 << 2;
pub const IPS_CONFIRMED: u32 = 1 << 3;

/// IP protocols with per-protocol conntrack state (`CTA_PROTOINFO_DCCP`,
/// `CTA_PROTOINFO_SCTP`) that [`crate::sync::Flow`] has no room for.
pub const PROTO_DCCP: u8 = 33;
pub const PROTO_SCTP: u8 = 132;
