//! What the benchmark reads off the wire: one tcpdump line (`-i any -tt
//! --time-stamp-precision=nano -n -e`, Linux cooked v2 framing) becomes an
//! [`Event`]: an advertisement, a gratuitous ARP, an echo request or an echo
//! reply, stamped with the kernel's capture time and the switch port it
//! entered by (so which node sent it, whatever MAC it used).

use std::net::Ipv4Addr;

/// Nanoseconds since the Unix epoch: tcpdump's `-tt` stamps and the instants
/// the benchmark acts at are both on the wall clock (see `capture::now`).
pub type Nanos = u64;

const NANOS_PER_SEC: u64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at: Nanos,
    /// The switch-side port it entered by: `<node>-<ifname>`.
    pub port: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A CARP or VRRP advertisement. `leaving`: the sender is going away
    /// (CARP's bow-out with advbase 255, VRRP's priority 0).
    Advert {
        source: Ipv4Addr,
        leaving: bool,
    },
    /// An ARP request whose sender and target are the same address.
    Garp {
        address: Ipv4Addr,
    },
    EchoRequest {
        to: Ipv4Addr,
        seq: u16,
    },
    EchoReply {
        from: Ipv4Addr,
        seq: u16,
    },
}

/// The event a tcpdump line shows, or `None` for anything else (IGMP, ARP
/// who-has from a host, tcpdump's own messages, a line cut short).
pub fn parse(line: &str) -> Option<Event> {
    let mut words = line.split_whitespace();
    let at = parse_timestamp(words.next()?)?;
    let port = words.next()?.to_owned();
    let (_, rest) = line.split_once(" ethertype ")?;
    let (ethertype, rest) = rest.split_once(' ')?;
    // ", length 76: " ends the link-layer part.
    let (_, payload) = rest.split_once(": ")?;
    let kind = match ethertype {
        "ARP" => parse_arp(payload)?,
        "IPv4" => parse_ipv4(payload)?,
        _ => return None,
    };
    Some(Event { at, port, kind })
}

/// `1795675246.984335838` (any number of fraction digits up to nine).
pub fn parse_timestamp(word: &str) -> Option<Nanos> {
    let (secs, fraction) = word.split_once('.')?;
    if fraction.is_empty() || fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let scale = 10u64.pow(u32::try_from(9 - fraction.len()).ok()?);
    let nanos = fraction.parse::<u64>().ok()? * scale;
    secs.parse::<u64>()
        .ok()?
        .checked_mul(NANOS_PER_SEC)?
        .checked_add(nanos)
}

/// `Request who-has 10.0.9.1 (ff:ff:ff:ff:ff:ff) tell 10.0.9.1, length 28`
/// (the MAC in brackets only when the target hardware address is not zero).
fn parse_arp(payload: &str) -> Option<Kind> {
    let rest = payload.strip_prefix("Request who-has ")?;
    let (target, rest) = rest.split_once(' ')?;
    let (_, sender) = rest.split_once("tell ")?;
    let sender = sender.split([',', ' ']).next()?;
    let target: Ipv4Addr = target.parse().ok()?;
    (sender.parse::<Ipv4Addr>().ok()? == target).then_some(Kind::Garp { address: target })
}

/// `10.0.9.2 > 224.0.0.18: CARPv2-advertise 36: vhid=1 advbase=1 advskew=0 ...`,
/// `10.0.9.2 > 224.0.0.18: VRRPv3, Advertisement, vrid 1, prio 200, intvl 1cs, ...`,
/// `10.0.9.100 > 10.0.9.1: ICMP echo request, id 7, seq 12, length 64`.
fn parse_ipv4(payload: &str) -> Option<Kind> {
    let (addresses, body) = payload.split_once(": ")?;
    let (source, destination) = addresses.split_once(" > ")?;
    let source: Ipv4Addr = source.parse().ok()?;
    if body.starts_with("CARPv2-advertise") {
        // OpenBSD's bow-out: advbase 255 (and advskew 255).
        let leaving = field(body, "advbase=") == Some("255");
        return Some(Kind::Advert { source, leaving });
    }
    if body.starts_with("VRRPv2, Advertisement") || body.starts_with("VRRPv3, Advertisement") {
        // RFC 5798: priority 0 means the master stops.
        let leaving = field(body, "prio ") == Some("0");
        return Some(Kind::Advert { source, leaving });
    }
    let seq = field(body, "seq ").and_then(|seq| seq.parse().ok());
    if body.starts_with("ICMP echo request") {
        let to = destination.parse().ok()?;
        return Some(Kind::EchoRequest { to, seq: seq? });
    }
    if body.starts_with("ICMP echo reply") {
        return Some(Kind::EchoReply {
            from: source,
            seq: seq?,
        });
    }
    None
}

/// The word after `key` (`advbase=` -> `1`, `prio ` -> `200`).
fn field<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    let (_, rest) = body.split_once(key)?;
    rest.split([',', ' ']).next()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 1);
    const GW1: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 2);

    fn kind(line: &str) -> Option<Kind> {
        parse(line).map(|event| event.kind)
    }

    #[test]
    fn reads_the_time_and_the_port() {
        let event = parse(
            "1795675246.984335838 gw1-eth0 M   ifindex 3 7e:a5:ac:d5:bd:c1 ethertype IPv4 (0x0800), length 76: 10.0.9.2 > 224.0.0.18: CARPv2-advertise 36: vhid=1 advbase=1 advskew=0 authlen=7 counter=18242919790981378346",
        )
        .expect("a CARP advertisement");
        assert_eq!(event.at, 1_795_675_246_984_335_838);
        assert_eq!(event.port, "gw1-eth0");
        assert_eq!(
            event.kind,
            Kind::Advert {
                source: GW1,
                leaving: false
            }
        );
    }

    #[test]
    fn microsecond_stamps_are_scaled() {
        assert_eq!(parse_timestamp("12.5"), Some(12_500_000_000));
        assert_eq!(parse_timestamp("12.000001"), Some(12_000_001_000));
        assert_eq!(parse_timestamp("12"), None);
        assert_eq!(parse_timestamp("12.1234567890"), None);
        assert_eq!(parse_timestamp("x.5"), None);
    }

    #[test]
    fn carp_bow_out_is_leaving() {
        assert_eq!(
            kind(
                "1.0 gw1-eth0 M   ifindex 3 7e:a5:ac:d5:bd:c1 ethertype IPv4 (0x0800), length 76: 10.0.9.2 > 224.0.0.18: CARPv2-advertise 36: vhid=1 advbase=255 advskew=255 authlen=7 counter=1"
            ),
            Some(Kind::Advert {
                source: GW1,
                leaving: true
            })
        );
    }

    #[test]
    fn vrrp_priority_zero_is_leaving() {
        let v2 = "1.0 gw1-eth0 M   ifindex 3 7e:a5:ac:d5:bd:c1 ethertype IPv4 (0x0800), length 60: 10.0.9.2 > 224.0.0.18: VRRPv2, Advertisement, vrid 1, prio 200, authtype none, intvl 1s, length 20";
        assert_eq!(
            kind(v2),
            Some(Kind::Advert {
                source: GW1,
                leaving: false
            })
        );
        let v3_leaving = "1.0 gw1-eth0 M   ifindex 3 7e:a5:ac:d5:bd:c1 ethertype IPv4 (0x0800), length 46: 10.0.9.2 > 224.0.0.18: VRRPv3, Advertisement, vrid 1, prio 0, intvl 1cs, length 12";
        assert_eq!(
            kind(v3_leaving),
            Some(Kind::Advert {
                source: GW1,
                leaving: true
            })
        );
    }

    #[test]
    fn gratuitous_arp_with_or_without_target_mac() {
        let keepalived = "1.0 gw1-eth0 B   ifindex 3 7e:a5:ac:d5:bd:c1 ethertype ARP (0x0806), length 48: Request who-has 10.0.9.1 (ff:ff:ff:ff:ff:ff) tell 10.0.9.1, length 28";
        let carpd = "1.0 gw2-eth0 B   ifindex 4 00:00:5e:00:01:01 ethertype ARP (0x0806), length 48: Request who-has 10.0.9.1 tell 10.0.9.1, length 28";
        assert_eq!(kind(keepalived), Some(Kind::Garp { address: VIP }));
        assert_eq!(kind(carpd), Some(Kind::Garp { address: VIP }));
    }

    #[test]
    fn ordinary_arp_is_not_an_event() {
        let who_has = "1.0 client-eth0 B   ifindex 5 9a:9d:12:5d:e5:7a ethertype ARP (0x0806), length 48: Request who-has 10.0.9.1 tell 10.0.9.100, length 28";
        let reply = "1.0 gw1-eth0 P   ifindex 3 7e:a5:ac:d5:bd:c1 ethertype ARP (0x0806), length 48: Reply 10.0.9.1 is-at 7e:a5:ac:d5:bd:c1, length 28";
        assert_eq!(kind(who_has), None);
        assert_eq!(kind(reply), None);
    }

    #[test]
    fn echo_requests_and_replies_carry_their_sequence() {
        let request = "1.0 client-eth0 P   ifindex 5 9a:9d:12:5d:e5:7a ethertype IPv4 (0x0800), length 104: 10.0.9.100 > 10.0.9.1: ICMP echo request, id 14128, seq 65535, length 64";
        let reply = "1.0 gw1-eth0 P   ifindex 3 7e:a5:ac:d5:bd:c1 ethertype IPv4 (0x0800), length 104: 10.0.9.1 > 10.0.9.100: ICMP echo reply, id 14128, seq 1, length 64";
        assert_eq!(
            kind(request),
            Some(Kind::EchoRequest {
                to: VIP,
                seq: 65535
            })
        );
        assert_eq!(kind(reply), Some(Kind::EchoReply { from: VIP, seq: 1 }));
    }

    #[test]
    fn other_lines_are_ignored() {
        for line in [
            "",
            "listening on any, link-type LINUX_SLL2 (Linux cooked v2), snapshot length 262144 bytes",
            "1.0 gw1-eth0 M   ifindex 3 7e:a5:ac:d5:bd:c1 ethertype IPv4 (0x0800), length 60: 10.0.9.2 > 224.0.0.22: igmp v3 report, 1 group record(s)",
            "1.0 gw1-eth0 M   ifindex 3 7e:a5:ac:d5:bd:c1 ethertype IPv6 (0x86dd), length 76: fe80::1 > ff02::2: ICMP6, router solicitation, length 16",
            "1.0 gw1-eth0 P   ifindex 3 7e:a5:ac:d5:bd:c1 ethertype IPv4 (0x0800), length 104: 10.0.9.1 > 10.0.9.100: ICMP echo reply, id 14128, seq x",
            "1.0 gw1-eth0 P   ifindex 3 7e:a5:ac:d5:bd:c1 ethertype IPv4 (0x08",
        ] {
            assert_eq!(parse(line), None, "{line}");
        }
    }
}
