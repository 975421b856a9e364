//! Message attributes as SNS and SQS carry them, and the four standard ISLETS attributes.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Name of the attribute carrying the event type identifier (`sold`).
pub const EVENT_TYPE: &str = "event_type";
/// Name of the attribute carrying the aggregate (`listing`).
pub const AGGREGATE: &str = "aggregate";
/// Name of the attribute carrying the payload's semantic schema version.
pub const SCHEMA_VERSION: &str = "schema_version";
/// Name of the attribute carrying the publishing system.
pub const PRODUCER_SYSTEM: &str = "producer_system";
/// W3C trace context header, when producers propagate it as an attribute.
pub const TRACEPARENT: &str = "traceparent";
/// Correlation id, when producers send it as an attribute instead of in the payload.
pub const CORRELATION_ID: &str = "correlation_id";
/// Trace id, when producers send it as an attribute.
pub const TRACE_ID: &str = "trace_id";

/// One message attribute, in the shape SNS puts into its JSON envelope:
/// `{"Type": "String", "Value": "sold"}`. Binary values are kept base64-encoded, exactly as
/// SNS delivers them, so the archive can reproduce the original attribute byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeValue {
    /// `String`, `Number`, `Binary`, `String.Array`, or a custom `String.x` / `Number.x` type.
    #[serde(rename = "Type")]
    pub data_type: String,
    /// The value as text; base64 for binary types.
    #[serde(rename = "Value")]
    pub value: String,
}

impl AttributeValue {
    /// A `String` attribute.
    pub fn string(value: impl Into<String>) -> Self {
        AttributeValue {
            data_type: "String".to_owned(),
            value: value.into(),
        }
    }

    /// A binary attribute, base64-encoded as SNS delivers it.
    pub fn binary(data_type: impl Into<String>, bytes: &[u8]) -> Self {
        AttributeValue {
            data_type: data_type.into(),
            value: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// Whether the attribute holds binary data (its value is base64).
    pub fn is_binary(&self) -> bool {
        self.data_type == "Binary" || self.data_type.starts_with("Binary.")
    }

    /// The decoded bytes of a binary attribute.
    pub fn binary_bytes(&self) -> Option<Vec<u8>> {
        if !self.is_binary() {
            return None;
        }
        base64::engine::general_purpose::STANDARD
            .decode(&self.value)
            .ok()
    }
}

/// All attributes of one message, in a stable (sorted) order.
pub type Attributes = Vec<(String, AttributeValue)>;

/// The text value of a non-binary attribute.
pub fn text_attribute<'a>(attributes: &'a Attributes, name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|(key, value)| key == name && !value.is_binary())
        .map(|(_, value)| value.value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_attributes_round_trip_through_base64() {
        let attribute = AttributeValue::binary("Binary", &[0, 159, 146, 150]);
        assert!(attribute.is_binary());
        assert_eq!(attribute.binary_bytes(), Some(vec![0, 159, 146, 150]));
    }

    #[test]
    fn text_lookup_ignores_binary_attributes_of_the_same_name() {
        let attributes = vec![
            ("a".to_owned(), AttributeValue::binary("Binary", b"x")),
            ("b".to_owned(), AttributeValue::string("y")),
        ];
        assert_eq!(text_attribute(&attributes, "a"), None);
        assert_eq!(text_attribute(&attributes, "b"), Some("y"));
    }
}
