//! VIPs claimed by a foreign MAC while we own them, from the program's
//! `CARP_CLAIMS` ring buffer.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::{MapData, RingBuf};
use carp_common::{ClaimEvent, FAMILY_INET, FAMILY_INET6, VipKey};

use super::ring::{RingReader, plain};
use crate::clock::{self, Mono};

/// Another MAC than the virtual one answered for one of our VIPs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipConflict {
    pub timestamp: Mono,
    pub ifindex: u32,
    pub vhid: u8,
    pub vip: IpAddr,
    pub mac: [u8; 6],
}

/// The address in a `VipKey`, if its family is one we write.
fn vip_address(key: &VipKey) -> Option<IpAddr> {
    match key.family {
        FAMILY_INET => Some(IpAddr::V4(Ipv4Addr::new(
            key.address[0],
            key.address[1],
            key.address[2],
            key.address[3],
        ))),
        FAMILY_INET6 => Some(IpAddr::V6(Ipv6Addr::from(key.address))),
        _ => None,
    }
}

impl VipConflict {
    pub fn from_record(record: &[u8]) -> Option<Self> {
        // SAFETY: ClaimEvent is plain data (integers and byte arrays).
        let event: ClaimEvent = unsafe { plain(record)? };
        Some(Self {
            timestamp: clock::from_kernel_ns(event.timestamp_ns),
            ifindex: event.vip.ifindex,
            vhid: event.vhid,
            vip: vip_address(&event.vip)?,
            mac: event.mac,
        })
    }
}

pub struct ClaimReceiver {
    ring: RingReader,
}

impl ClaimReceiver {
    pub(super) fn new(ring: RingBuf<MapData>) -> io::Result<Self> {
        Ok(Self {
            ring: RingReader::new(ring, "VIP claim")?,
        })
    }

    /// The next conflict. Cancel-safe.
    pub async fn recv(&mut self) -> io::Result<VipConflict> {
        self.ring.next(VipConflict::from_record).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_claim_and_rejects_odd_records() {
        let event = ClaimEvent {
            timestamp_ns: 2_000_000_000,
            vip: VipKey::v4(4, [192, 0, 2, 1]),
            mac: [2, 0, 0, 0, 0, 9],
            vhid: 3,
            pad: 0,
        };
        // SAFETY: ClaimEvent is repr(C) plain data without implicit padding.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                std::ptr::from_ref(&event).cast::<u8>(),
                size_of::<ClaimEvent>(),
            )
        };
        let conflict = VipConflict::from_record(bytes).expect("decodes");
        assert_eq!(conflict.vip, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!((conflict.ifindex, conflict.vhid), (4, 3));
        assert_eq!(conflict.mac, [2, 0, 0, 0, 0, 9]);
        assert_eq!(conflict.timestamp, std::time::Duration::from_secs(2));
        assert_eq!(VipConflict::from_record(&bytes[1..]), None);
        let mut odd = event;
        odd.vip.family = 9;
        // SAFETY: as above.
        let odd_bytes = unsafe {
            std::slice::from_raw_parts(
                std::ptr::from_ref(&odd).cast::<u8>(),
                size_of::<ClaimEvent>(),
            )
        };
        assert_eq!(VipConflict::from_record(odd_bytes), None);
    }
}
