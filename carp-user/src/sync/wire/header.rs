//! The fixed 36-byte header (layout in the module comment of `wire`).

/// The first four bytes of every sync datagram.
pub const MAGIC: [u8; 4] = *b"CSYN";
/// The only version this code speaks.
pub const VERSION: u8 = 1;
/// Header bytes before the body.
pub const HEADER_LEN: usize = 36;

/// What a datagram carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Update,
    BulkRequest,
    BulkStart,
    BulkRecords,
    BulkEnd,
    Heartbeat,
    BulkProgress,
}

/// The two sequence spaces of a sender session: losing a control message
/// (heartbeat, bulk request) loses no state, losing a state message does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Control,
    State,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Update,
        Kind::BulkRequest,
        Kind::BulkStart,
        Kind::BulkRecords,
        Kind::BulkEnd,
        Kind::Heartbeat,
        Kind::BulkProgress,
    ];

    /// The kind byte on the wire.
    pub const fn code(self) -> u8 {
        match self {
            Kind::Update => 1,
            Kind::BulkRequest => 2,
            Kind::BulkStart => 3,
            Kind::BulkRecords => 4,
            Kind::BulkEnd => 5,
            Kind::Heartbeat => 6,
            Kind::BulkProgress => 7,
        }
    }

    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Kind::Update),
            2 => Some(Kind::BulkRequest),
            3 => Some(Kind::BulkStart),
            4 => Some(Kind::BulkRecords),
            5 => Some(Kind::BulkEnd),
            6 => Some(Kind::Heartbeat),
            7 => Some(Kind::BulkProgress),
            _ => None,
        }
    }

    pub const fn channel(self) -> Channel {
        match self {
            Kind::Heartbeat | Kind::BulkRequest | Kind::BulkProgress => Channel::Control,
            Kind::Update | Kind::BulkStart | Kind::BulkRecords | Kind::BulkEnd => Channel::State,
        }
    }

    /// For metrics: one label per kind.
    pub const fn label(self) -> &'static str {
        match self {
            Kind::Update => "update",
            Kind::BulkRequest => "bulk_request",
            Kind::BulkStart => "bulk_start",
            Kind::BulkRecords => "bulk_records",
            Kind::BulkEnd => "bulk_end",
            Kind::Heartbeat => "heartbeat",
            Kind::BulkProgress => "bulk_progress",
        }
    }
}

/// The header as read, before anything but its length is trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RawHeader {
    pub magic: [u8; 4],
    pub version: u8,
    pub kind: u8,
    pub flags: u16,
    pub sender_session: u64,
    pub peer_session: u64,
    pub seq: u64,
    pub body_len: u32,
}

impl RawHeader {
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.magic);
        out.push(self.version);
        out.push(self.kind);
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.sender_session.to_be_bytes());
        out.extend_from_slice(&self.peer_session.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.body_len.to_be_bytes());
    }

    /// The header at the start of `bytes`; `None` if there are fewer than
    /// [`HEADER_LEN`] bytes.
    pub fn read(bytes: &[u8]) -> Option<Self> {
        let header: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        let u64_at = |at: usize| {
            let mut field = [0u8; 8];
            field.copy_from_slice(&header[at..at + 8]);
            u64::from_be_bytes(field)
        };
        Some(Self {
            magic: [header[0], header[1], header[2], header[3]],
            version: header[4],
            kind: header[5],
            flags: u16::from_be_bytes([header[6], header[7]]),
            sender_session: u64_at(8),
            peer_session: u64_at(16),
            seq: u64_at(24),
            body_len: u32::from_be_bytes([header[32], header[33], header[34], header[35]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_codes_round_trip_and_nothing_else_decodes() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_code(kind.code()), Some(kind));
        }
        let known = (0..=u8::MAX)
            .filter(|code| Kind::from_code(*code).is_some())
            .count();
        assert_eq!(known, Kind::ALL.len());
    }

    #[test]
    fn channels() {
        let control: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|kind| kind.channel() == Channel::Control)
            .collect();
        assert_eq!(
            control,
            [Kind::BulkRequest, Kind::Heartbeat, Kind::BulkProgress]
        );
    }

    #[test]
    fn header_round_trip() {
        let header = RawHeader {
            magic: MAGIC,
            version: VERSION,
            kind: 6,
            flags: 0x0102,
            sender_session: 0x1122_3344_5566_7788,
            peer_session: 9,
            seq: 10,
            body_len: 0x0a0b_0c0d,
        };
        let mut bytes = Vec::new();
        header.write(&mut bytes);
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(RawHeader::read(&bytes), Some(header));
        assert_eq!(RawHeader::read(&bytes[..HEADER_LEN - 1]), None);
    }
}
