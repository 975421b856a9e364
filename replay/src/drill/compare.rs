//! What must arrive and what did: each received body is matched against the selection by
//! its payload and attributes (the replay markers aside), so an auditor reads which events
//! came back byte-identical, which came back altered, and which never came back.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A selected event as it must arrive: its payload and attributes, markers aside.
#[derive(Debug, Clone)]
pub(super) struct Expected {
    pub(super) payload: String,
    pub(super) attributes: BTreeMap<String, (String, String)>,
}

/// Attributes without the replay markers, for comparison.
pub(super) fn comparable(
    attributes: impl Iterator<Item = (String, (String, String))>,
) -> BTreeMap<String, (String, String)> {
    attributes
        .filter(|(name, _)| !name.starts_with("replay"))
        .collect()
}

/// The received bodies held against the selection.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    /// Selected ids that arrived byte-identical (payload and attributes).
    pub(super) intact: BTreeSet<String>,
    /// Selected ids that arrived with other bytes (an id may also have arrived intact:
    /// its altered copy is still reported).
    pub(super) altered: BTreeSet<String>,
    /// Selected ids that arrived neither intact nor altered.
    pub(super) missing: BTreeSet<String>,
    /// Bodies that match no selected event.
    pub(super) extra: u64,
    /// Exact repeats of an event that already arrived intact: SNS and SQS deliver at
    /// least once, so a repeat is reported but is not a failure.
    pub(super) duplicates: u64,
}

/// Matches SNS envelope bodies (as the drill's queue receives them) with `expected`.
pub(super) fn tally(expected: &HashMap<String, Expected>, bodies: &[String]) -> Tally {
    // Payload → selected ids with that payload (two events may share a payload).
    let mut by_payload: HashMap<&str, Vec<&String>> = HashMap::new();
    for (id, event) in expected {
        by_payload
            .entry(event.payload.as_str())
            .or_default()
            .push(id);
    }
    let mut result = Tally::default();
    let mut seen: HashSet<&String> = HashSet::new();
    for body in bodies {
        let envelope: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let payload = envelope["Message"].as_str().unwrap_or_default();
        let attributes = comparable(
            envelope["MessageAttributes"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, value)| {
                    (
                        name.clone(),
                        (
                            value["Type"].as_str().unwrap_or_default().to_owned(),
                            value["Value"].as_str().unwrap_or_default().to_owned(),
                        ),
                    )
                }),
        );
        let candidates = by_payload.get(payload).cloned().unwrap_or_default();
        let identical: Vec<&String> = candidates
            .iter()
            .copied()
            .filter(|id| expected[*id].attributes == attributes)
            .collect();
        if let Some(id) = identical.iter().find(|id| !seen.contains(**id)) {
            seen.insert(id);
            result.intact.insert((*id).clone());
            continue;
        }
        if !identical.is_empty() {
            result.duplicates += 1;
            continue;
        }
        // Not byte-identical to any selected event: altered if it names one (by the
        // payload's event_id, or by a payload shared with one), extra otherwise.
        let claimed = serde_json::from_str::<serde_json::Value>(payload)
            .ok()
            .and_then(|value| value["event_id"].as_str().map(str::to_owned))
            .filter(|id| expected.contains_key(id));
        match (claimed, candidates.first()) {
            (Some(id), _) => {
                result.altered.insert(id);
            }
            (None, Some(id)) => {
                result.altered.insert((*id).clone());
            }
            (None, None) => result.extra += 1,
        }
    }
    result.missing = expected
        .keys()
        .filter(|id| !result.intact.contains(*id) && !result.altered.contains(*id))
        .cloned()
        .collect();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (id, payload, attributes) of each selected event.
    type Selected<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    fn selected(events: &[Selected<'_>]) -> HashMap<String, Expected> {
        events
            .iter()
            .map(|(id, payload, attributes)| {
                (
                    (*id).to_owned(),
                    Expected {
                        payload: (*payload).to_owned(),
                        attributes: attributes
                            .iter()
                            .map(|(name, value)| {
                                (
                                    (*name).to_owned(),
                                    ("String".to_owned(), (*value).to_owned()),
                                )
                            })
                            .collect(),
                    },
                )
            })
            .collect()
    }

    fn envelope(payload: &str, attributes: &[(&str, &str)]) -> String {
        let attributes: serde_json::Map<String, serde_json::Value> = attributes
            .iter()
            .map(|(name, value)| {
                (
                    (*name).to_owned(),
                    serde_json::json!({"Type": "String", "Value": value}),
                )
            })
            .collect();
        serde_json::json!({"Type": "Notification", "Message": payload, "MessageAttributes": attributes})
            .to_string()
    }

    fn ids(set: &BTreeSet<String>) -> Vec<&str> {
        set.iter().map(String::as_str).collect()
    }

    const A: &str = r#"{"event_id":"a","n":1}"#;
    const B: &str = r#"{"event_id":"b","n":2}"#;
    const C: &str = r#"{"event_id":"c","n":3}"#;

    #[test]
    fn each_body_is_intact_altered_extra_or_a_repeat_and_the_rest_is_missing() {
        let expected = selected(&[
            ("a", A, &[("event_type", "sold")]),
            ("b", B, &[("event_type", "sold")]),
            ("c", C, &[]),
        ]);
        let bodies = vec![
            // a arrives intact, with the drill's markers (which do not count) ...
            envelope(A, &[("event_type", "sold"), ("replay_id", "D1")]),
            // ... and once more: a repeat, not an alteration.
            envelope(A, &[("event_type", "sold")]),
            // b arrives with one payload byte changed: altered, found by its event_id.
            envelope(r#"{"event_id":"b","n":20}"#, &[("event_type", "sold")]),
            // a body nobody selected.
            envelope(r#"{"event_id":"z"}"#, &[]),
        ];
        let got = tally(&expected, &bodies);
        assert_eq!(ids(&got.intact), ["a"]);
        assert_eq!(ids(&got.altered), ["b"]);
        assert_eq!(ids(&got.missing), ["c"]);
        assert_eq!((got.extra, got.duplicates), (1, 1));
    }

    #[test]
    fn the_same_payload_with_other_attributes_is_altered() {
        let expected = selected(&[("a", A, &[("event_type", "sold")])]);
        let got = tally(&expected, &[envelope(A, &[("event_type", "bought")])]);
        assert_eq!(ids(&got.altered), ["a"]);
        assert!(got.intact.is_empty() && got.missing.is_empty());
        // A payload without an event_id is matched by the payload alone.
        let expected = selected(&[("p", "plain text", &[("kind", "x")])]);
        let got = tally(&expected, &[envelope("plain text", &[])]);
        assert_eq!(ids(&got.altered), ["p"]);
    }

    #[test]
    fn two_events_with_one_payload_each_need_their_own_copy() {
        let expected = selected(&[("a1", A, &[]), ("a2", A, &[])]);
        let once = tally(&expected, &[envelope(A, &[])]);
        assert_eq!(once.intact.len(), 1);
        assert_eq!(once.missing.len(), 1);
        let twice = tally(&expected, &[envelope(A, &[]), envelope(A, &[])]);
        assert_eq!(ids(&twice.intact), ["a1", "a2"]);
        assert_eq!((twice.duplicates, twice.missing.len()), (0, 0));
    }

    #[test]
    fn bodies_that_are_not_envelopes_are_extra() {
        let expected = selected(&[("a", A, &[])]);
        let got = tally(&expected, &["not json".to_owned(), String::new()]);
        assert_eq!(got.extra, 2);
        assert_eq!(ids(&got.missing), ["a"]);
    }
}
