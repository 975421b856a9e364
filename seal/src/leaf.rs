//! One archived event as a Merkle leaf.
//!
//! The leaf's bytes (docs/ARCHIVE.md, "Sealing"), all lengths as 4-byte big-endian
//! unsigned integers:
//!
//! ```text
//! len(event_id) || event_id (UTF-8)
//! || SHA-256(payload bytes as archived)
//! || SHA-256(attributes)
//! attributes = for each attribute, sorted by name (bytewise):
//!              len(name) || name || len(type) || type || len(value) || value
//! ```
//!
//! The payload hash is over the bytes the archive holds, so an erasure that destroys a
//! data key (sensitive data) changes no leaf.

use islets_core::record::EventRecord;
use sha2_merkle::{Digest as _, Sha256};

use crate::tree::Digest;

/// One event's leaf: what an inclusion proof commits to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventLeaf {
    /// The event's id.
    pub event_id: String,
    /// SHA-256 of the payload bytes as archived.
    pub payload_sha256: Digest,
    /// SHA-256 of the attributes' encoding.
    pub attributes_sha256: Digest,
}

fn push_field(bytes: &mut Vec<u8>, field: &[u8]) {
    let length = u32::try_from(field.len()).unwrap_or(u32::MAX);
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(field);
}

impl EventLeaf {
    /// The leaf of an archived record.
    pub fn of(record: &EventRecord) -> Self {
        let mut attributes: Vec<(&str, &str, &str)> = record
            .attributes
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str(),
                    value.data_type.as_str(),
                    value.value.as_str(),
                )
            })
            .collect();
        attributes.sort_unstable();
        let mut encoded = Vec::new();
        for (name, data_type, value) in attributes {
            push_field(&mut encoded, name.as_bytes());
            push_field(&mut encoded, data_type.as_bytes());
            push_field(&mut encoded, value.as_bytes());
        }
        EventLeaf {
            event_id: record.event_id.clone(),
            payload_sha256: Sha256::digest(record.payload.as_bytes()).into(),
            attributes_sha256: Sha256::digest(&encoded).into(),
        }
    }

    /// The leaf's bytes, as hashed into the tree (`SHA-256(0x00 || bytes)`).
    pub fn bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(4 + self.event_id.len() + 64);
        push_field(&mut bytes, self.event_id.as_bytes());
        bytes.extend_from_slice(&self.payload_sha256);
        bytes.extend_from_slice(&self.attributes_sha256);
        bytes
    }

    /// Parses [`EventLeaf::bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (length, rest) = bytes.split_first_chunk::<4>()?;
        let length = usize::try_from(u32::from_be_bytes(*length)).ok()?;
        if rest.len() != length + 64 {
            return None;
        }
        let (id, hashes) = rest.split_at(length);
        let (payload, attributes) = hashes.split_at(32);
        Some(EventLeaf {
            event_id: String::from_utf8(id.to_vec()).ok()?,
            payload_sha256: payload.try_into().ok()?,
            attributes_sha256: attributes.try_into().ok()?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use islets_core::attributes::AttributeValue;
    use islets_core::record::{DeliveryMode, IngestSource};

    use super::*;

    pub(crate) fn record(id: &str, payload: &str, attributes: &[(&str, &str)]) -> EventRecord {
        EventRecord {
            event_id: id.to_owned(),
            event_type: Some("sold".to_owned()),
            aggregate: Some("listing".to_owned()),
            schema_version: None,
            producer_system: None,
            correlation_id: None,
            trace_id: None,
            traceparent: None,
            occurred_at_ms: None,
            published_at_ms: 1_795_168_800_000,
            ingested_at_ms: 1_795_168_800_100,
            topic_arn: None,
            sns_message_id: None,
            sqs_message_id: None,
            delivery: DeliveryMode::Raw,
            source: IngestSource::Sqs,
            attributes: attributes
                .iter()
                .map(|(name, value)| ((*name).to_owned(), AttributeValue::string(*value)))
                .collect(),
            payload: payload.to_owned(),
            schema_valid: true,
            schema_error: None,
            conflict: false,
        }
    }

    #[test]
    fn the_leaf_encoding_is_the_documented_one() {
        let leaf = EventLeaf::of(&record("e-1", r#"{"a":1}"#, &[("b", "2"), ("a", "1")]));
        let bytes = leaf.bytes();
        assert_eq!(&bytes[..4], &[0, 0, 0, 3]);
        assert_eq!(&bytes[4..7], b"e-1");
        assert_eq!(
            hex::encode(&bytes[7..39]),
            hex::encode(Sha256::digest(br#"{"a":1}"#)),
            "the payload's bytes, as archived"
        );
        // Attributes sorted by name, each field length-prefixed.
        let mut attributes = Vec::new();
        for field in ["a", "String", "1", "b", "String", "2"] {
            attributes.extend_from_slice(&(field.len() as u32).to_be_bytes());
            attributes.extend_from_slice(field.as_bytes());
        }
        assert_eq!(
            hex::encode(&bytes[39..]),
            hex::encode(Sha256::digest(&attributes))
        );
        assert_eq!(EventLeaf::from_bytes(&bytes), Some(leaf));
        assert_eq!(EventLeaf::from_bytes(&bytes[1..]), None);
        assert_eq!(EventLeaf::from_bytes(&[0, 0, 0, 200, 1]), None);
    }

    #[test]
    fn any_change_of_payload_attributes_or_id_changes_the_leaf() {
        let base = EventLeaf::of(&record("e-1", "p", &[("a", "1")]));
        for other in [
            record("e-2", "p", &[("a", "1")]),
            record("e-1", "p ", &[("a", "1")]),
            record("e-1", "p", &[("a", "2")]),
            record("e-1", "p", &[("a", "1"), ("b", "1")]),
            record("e-1", "p", &[]),
        ] {
            assert_ne!(EventLeaf::of(&other), base, "{other:?}");
        }
        // Order of attributes as delivered does not matter; fields cannot be shifted.
        assert_eq!(
            EventLeaf::of(&record("e", "p", &[("a", "1"), ("b", "2")])),
            EventLeaf::of(&record("e", "p", &[("b", "2"), ("a", "1")]))
        );
        assert_ne!(
            EventLeaf::of(&record("e", "p", &[("ab", "c")])),
            EventLeaf::of(&record("e", "p", &[("a", "bc")]))
        );
    }
}
