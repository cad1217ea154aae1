//! Advertisements the XDP program accepted, read from its ring buffer.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::{MapData, RingBuf};
use carp_common::{AdvertEvent, CARP_HEADER_LEN, FAMILY_INET, FAMILY_INET6};

use super::ring::{RingReader, plain};
use crate::clock::{self, Mono};

/// One accepted advertisement, as the agent uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedAdvert {
    /// Kernel reception time, on the agent's monotonic clock.
    pub timestamp: Mono,
    /// The carpdev it arrived on.
    pub ifindex: u32,
    pub source: IpAddr,
    /// Sent to 224.0.0.18 / `ff02::12` rather than to us alone.
    pub multicast: bool,
    pub header: [u8; CARP_HEADER_LEN],
}

impl ReceivedAdvert {
    /// Decodes a ring-buffer record; `None` for a record that is not an
    /// `AdvertEvent` the program could have written.
    pub fn from_record(record: &[u8]) -> Option<Self> {
        // SAFETY: AdvertEvent is plain data (integers and byte arrays).
        let event: AdvertEvent = unsafe { plain(record)? };
        let source = match event.family {
            FAMILY_INET => IpAddr::V4(Ipv4Addr::new(
                event.source[0],
                event.source[1],
                event.source[2],
                event.source[3],
            )),
            FAMILY_INET6 => IpAddr::V6(Ipv6Addr::from(event.source)),
            _ => return None,
        };
        Some(Self {
            timestamp: clock::from_kernel_ns(event.timestamp_ns),
            ifindex: event.ifindex,
            source,
            multicast: event.multicast != 0,
            header: event.header,
        })
    }
}

pub struct AdvertReceiver {
    ring: RingReader,
}

impl AdvertReceiver {
    pub(super) fn new(ring: RingBuf<MapData>) -> io::Result<Self> {
        Ok(Self {
            ring: RingReader::new(ring, "advertisement")?,
        })
    }

    /// The next advertisement. Cancel-safe.
    pub async fn recv(&mut self) -> io::Result<ReceivedAdvert> {
        self.ring.next(ReceivedAdvert::from_record).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: &AdvertEvent) -> Vec<u8> {
        // SAFETY: AdvertEvent is repr(C) plain data without implicit padding.
        unsafe {
            std::slice::from_raw_parts(
                std::ptr::from_ref(event).cast::<u8>(),
                size_of::<AdvertEvent>(),
            )
        }
        .to_vec()
    }

    fn event(family: u8) -> AdvertEvent {
        let mut source = [0u8; 16];
        source[..4].copy_from_slice(&[192, 0, 2, 7]);
        let mut header = [0u8; CARP_HEADER_LEN];
        header[1] = 5;
        AdvertEvent {
            timestamp_ns: 1_500_000_000,
            ifindex: 3,
            family,
            multicast: 1,
            pad: [0; 2],
            source,
            header,
            pad2: [0; 4],
        }
    }

    #[test]
    fn decodes_an_ipv4_record() {
        let advert = ReceivedAdvert::from_record(&record(&event(FAMILY_INET))).expect("decodes");
        assert_eq!(advert.source, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!(advert.timestamp, std::time::Duration::from_millis(1500));
        assert_eq!(advert.ifindex, 3);
        assert!(advert.multicast);
        assert_eq!(advert.header[1], 5);
    }

    #[test]
    fn decodes_an_ipv6_record() {
        let advert = ReceivedAdvert::from_record(&record(&event(FAMILY_INET6))).expect("decodes");
        assert!(advert.source.is_ipv6());
    }

    #[test]
    fn rejects_records_it_cannot_trust() {
        assert_eq!(ReceivedAdvert::from_record(&record(&event(5))), None);
        let mut short = record(&event(FAMILY_INET));
        short.pop();
        assert_eq!(ReceivedAdvert::from_record(&short), None);
        assert_eq!(ReceivedAdvert::from_record(&[]), None);
    }
}
