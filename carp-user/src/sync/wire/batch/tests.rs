use std::num::NonZeroU64;

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::sync::wire::{DEFAULT_MTU_PAYLOAD, Envelope, SyncKey, strategies};

fn datagram_len(message: &Message) -> usize {
    let key = SyncKey::new(&[1; 16]).expect("valid key");
    let envelope = Envelope {
        sender_session: NonZeroU64::MAX,
        peer_session: u64::MAX,
        seq: NonZeroU64::MAX,
        message: message.clone(),
    };
    envelope.encode(&key).expect("batches encode").len()
}

#[test]
fn limits() {
    assert_eq!(MIN_BATCH_LIMIT, 167);
    assert_eq!(
        UpdateBatcher::new(MIN_BATCH_LIMIT - 1).err(),
        Some(LimitError::TooSmall(166))
    );
    assert_eq!(
        RecordBatcher::new(MAX_DATAGRAM + 1, 1).err(),
        Some(LimitError::TooLarge(MAX_DATAGRAM + 1))
    );
    assert!(UpdateBatcher::new(MAX_DATAGRAM).is_ok());
    assert!(RecordBatcher::new(MIN_BATCH_LIMIT, 1).is_ok());
}

#[test]
fn nothing_pushed_nothing_flushed() {
    let mut updates = UpdateBatcher::new(DEFAULT_MTU_PAYLOAD).expect("limit");
    assert_eq!(updates.flush(), None);
    let records = RecordBatcher::new(DEFAULT_MTU_PAYLOAD, 9).expect("limit");
    assert_eq!(
        records.finish(),
        (
            None,
            Message::BulkEnd {
                request_id: 9,
                records: 0
            }
        )
    );
}

#[test]
fn invalid_flows_are_refused_and_not_counted() {
    let mut records = RecordBatcher::new(DEFAULT_MTU_PAYLOAD, 9).expect("limit");
    let tuple = crate::sync::Tuple {
        src: "10.0.0.1".parse().expect("address"),
        dst: "10.0.0.2".parse().expect("address"),
        proto: 6,
        l4: crate::sync::L4::None,
    };
    let flow = Flow {
        original: tuple,
        reply: tuple,
        zone: 0,
        status: 0,
        timeout_secs: 1,
        mark: 0,
        tcp: None,
    };
    assert_eq!(records.push(flow), Err(FlowError::L4Mismatch(6)));
    assert_eq!(records.records(), 0);
    let mut updates = UpdateBatcher::new(DEFAULT_MTU_PAYLOAD).expect("limit");
    assert_eq!(
        updates.push(Change::Delete(flow.key())),
        Err(FlowError::L4Mismatch(6))
    );
    assert_eq!(updates.flush(), None);
}

proptest! {
    /// Every message fits the limit, no change is lost, duplicated or
    /// reordered, and only the last message can be partly empty.
    #[test]
    fn updates_fit_and_keep_every_change(
        changes in vec(strategies::change(), 0..120),
        limit in MIN_BATCH_LIMIT..2000,
    ) {
        let mut batcher = UpdateBatcher::new(limit).expect("limit");
        let mut messages = Vec::new();
        for change in &changes {
            messages.extend(batcher.push(*change).expect("valid change"));
        }
        let full = messages.len();
        messages.extend(batcher.flush());
        let mut out = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            let len = datagram_len(message);
            prop_assert!(len <= limit, "{} > {}", len, limit);
            let Message::Update(batch) = message else {
                return Err(TestCaseError::fail("not an update"));
            };
            prop_assert!(!batch.is_empty());
            if i < full {
                // It was closed because the next change did not fit.
                let next = changes[out.len() + batch.len()].encoded_len();
                prop_assert!(len + next > limit);
            }
            out.extend_from_slice(batch);
        }
        prop_assert_eq!(out, changes);
    }

    #[test]
    fn bulk_records_fit_and_are_counted(
        flows in vec(strategies::flow(), 0..120),
        limit in MIN_BATCH_LIMIT..2000,
        request_id: u32,
    ) {
        let mut batcher = RecordBatcher::new(limit, request_id).expect("limit");
        let mut messages = Vec::new();
        for flow in &flows {
            messages.extend(batcher.push(*flow).expect("valid flow"));
        }
        prop_assert_eq!(batcher.request_id(), request_id);
        let (last, end) = batcher.finish();
        messages.extend(last);
        let mut out = Vec::new();
        for message in &messages {
            prop_assert!(datagram_len(message) <= limit);
            let Message::BulkRecords { request_id: id, flows: batch } = message else {
                return Err(TestCaseError::fail("not bulk records"));
            };
            prop_assert_eq!(*id, request_id);
            prop_assert!(!batch.is_empty());
            out.extend_from_slice(batch);
        }
        prop_assert_eq!(&out, &flows);
        let records = u32::try_from(flows.len()).expect("few flows");
        prop_assert_eq!(end, Message::BulkEnd { request_id, records });
    }
}
