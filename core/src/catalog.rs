//! The events catalog: `events/<aggregate>.yaml` files in the RFC's format, loaded once and
//! compiled into JSON Schema validators.
//!
//! ```yaml
//! # Owner: Listing Management Squad (@listing-mgmt-team)
//! # DLQ Alerts: #listing-mgmt-alerts
//! aggregate: listing
//! events:
//!   sold:
//!     description: "..."
//!     version: 1.0.0            # semantic version of the current schema
//!     consumers: [{team, service, queue, critical}]
//!     schema: {...}              # JSON Schema
//!     previous_versions:         # older MAJOR versions still accepted
//!       - {version: 0.9.0, deprecated: true, sunset: 2027-03-31, schema: {...}}
//! ```
//!
//! A message is validated against the schema whose MAJOR version equals its
//! `schema_version` attribute's MAJOR (minor and patch changes are backward compatible).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// The loaded catalog.
#[derive(Debug)]
pub struct Catalog {
    directory: PathBuf,
    aggregates: BTreeMap<String, AggregateSpec>,
}

/// One `events/<aggregate>.yaml` file.
#[derive(Debug)]
pub struct AggregateSpec {
    /// The aggregate's name (the file name, and the `<name>-events` topic).
    pub name: String,
    /// The YAML file it was read from.
    pub file: PathBuf,
    /// The `# Owner:` header line.
    pub owner: String,
    /// The `# DLQ Alerts:` header line, when present.
    pub dlq_alerts: Option<String>,
    /// Its event types, by name.
    pub events: BTreeMap<String, EventSpec>,
}

/// One event type of an aggregate.
#[derive(Debug)]
pub struct EventSpec {
    /// The event type (`listing.sold`).
    pub name: String,
    /// What the event means.
    pub description: String,
    /// Who consumes it.
    pub consumers: Vec<Consumer>,
    /// The current version first, then the previous MAJOR versions still accepted.
    pub versions: Vec<SchemaVersion>,
}

/// A registered consumer of an event type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// The consuming team.
    pub team: String,
    /// The consuming service.
    pub service: String,
    /// The consumer's queue name.
    pub queue: String,
    /// Whether a breaking change blocks a user-facing workflow of this consumer (the RFC).
    #[serde(default)]
    pub critical: bool,
}

/// One schema version of an event type.
#[derive(Debug)]
pub struct SchemaVersion {
    /// The schema's version.
    pub version: semver::Version,
    /// Whether producers should move to a newer version.
    pub deprecated: bool,
    /// When a deprecated version stops being accepted.
    pub sunset: Option<String>,
    /// The JSON Schema.
    pub schema: Value,
    validator: jsonschema::Validator,
}

/// Outcome of validating one payload against the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// The payload matches its schema.
    Valid,
    /// The payload does not match; the validator's message.
    Invalid(String),
}

/// How many individual schema violations are kept in the error text.
const MAX_REPORTED_VIOLATIONS: usize = 5;

impl Catalog {
    /// Loads every `*.yaml` / `*.yml` file of `directory`.
    pub fn load_dir(directory: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(directory).map_err(|source| {
            Error::catalog(format!(
                "cannot read the events directory {}: {source} (pass --events-dir or set ISLETS_EVENTS_DIR)",
                directory.display()
            ))
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "yaml" || extension == "yml")
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::catalog(format!(
                "no *.yaml files in {}",
                directory.display()
            )));
        }
        let mut aggregates = BTreeMap::new();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|source| Error::Io {
                path: file.clone(),
                source,
            })?;
            let aggregate = parse_aggregate_file(&file, &text)?;
            if let Some(previous) = aggregates.get(&aggregate.name) {
                let previous: &AggregateSpec = previous;
                return Err(Error::catalog(format!(
                    "{}: aggregate '{}' is already defined in {}",
                    file.display(),
                    aggregate.name,
                    previous.file.display()
                )));
            }
            aggregates.insert(aggregate.name.clone(), aggregate);
        }
        Ok(Catalog {
            directory: directory.to_owned(),
            aggregates,
        })
    }

    /// The directory the catalog was loaded from.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// All aggregates, by name.
    pub fn aggregates(&self) -> impl Iterator<Item = &AggregateSpec> {
        self.aggregates.values()
    }

    /// One aggregate.
    pub fn aggregate(&self, name: &str) -> Option<&AggregateSpec> {
        self.aggregates.get(name)
    }

    /// One event type.
    pub fn event(&self, aggregate: &str, event_type: &str) -> Option<&EventSpec> {
        self.aggregates.get(aggregate)?.events.get(event_type)
    }

    /// Validates a payload. `schema_version` is the message's attribute; the schema of the
    /// same MAJOR version is used.
    pub fn validate(
        &self,
        aggregate: &str,
        event_type: &str,
        schema_version: Option<&str>,
        payload: &Value,
    ) -> Validation {
        let Some(aggregate_spec) = self.aggregates.get(aggregate) else {
            return Validation::Invalid(format!(
                "aggregate '{aggregate}' is not in the events catalog"
            ));
        };
        let Some(event) = aggregate_spec.events.get(event_type) else {
            return Validation::Invalid(format!(
                "event type '{aggregate}.{event_type}' is not in the events catalog"
            ));
        };
        let Some(schema_version) = schema_version else {
            return Validation::Invalid("message has no schema_version attribute".to_owned());
        };
        let Ok(version) = semver::Version::parse(schema_version) else {
            return Validation::Invalid(format!(
                "schema_version '{schema_version}' is not a semantic version (MAJOR.MINOR.PATCH)"
            ));
        };
        let Some(spec) = event
            .versions
            .iter()
            .find(|candidate| candidate.version.major == version.major)
        else {
            let known: Vec<String> = event
                .versions
                .iter()
                .map(|v| v.version.to_string())
                .collect();
            return Validation::Invalid(format!(
                "schema_version {version} of '{aggregate}.{event_type}' has no schema in the catalog (known: {})",
                known.join(", ")
            ));
        };
        // The common case first: a boolean check collects no errors.
        if spec.validator.is_valid(payload) {
            return Validation::Valid;
        }
        let errors = spec.validator.iter_errors(payload);
        let mut message = String::new();
        let mut count = 0;
        for error in errors {
            count += 1;
            if count > MAX_REPORTED_VIOLATIONS {
                continue;
            }
            if !message.is_empty() {
                message.push_str("; ");
            }
            let path = error.instance_path().to_string();
            let location = if path.is_empty() { "/" } else { path.as_str() };
            let _ = write!(message, "at {location}: {error}");
        }
        if count > MAX_REPORTED_VIOLATIONS {
            let _ = write!(message, "; and {} more", count - MAX_REPORTED_VIOLATIONS);
        }
        Validation::Invalid(format!(
            "does not match schema {aggregate}.{event_type} {}: {message}",
            spec.version
        ))
    }
}

impl AggregateSpec {
    /// The SNS topic name of the aggregate, `<aggregate>-events` (RFC naming convention).
    pub fn topic_name(&self) -> String {
        format!("{}-events", self.name)
    }
}

impl EventSpec {
    /// The current schema version.
    pub fn current(&self) -> &SchemaVersion {
        &self.versions[0]
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAggregateFile {
    aggregate: String,
    events: BTreeMap<String, RawEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    description: String,
    version: String,
    #[serde(default)]
    consumers: Vec<Consumer>,
    schema: Value,
    #[serde(default)]
    previous_versions: Vec<RawPreviousVersion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreviousVersion {
    version: String,
    #[serde(default)]
    deprecated: bool,
    sunset: Option<String>,
    schema: Value,
}

fn parse_aggregate_file(file: &Path, text: &str) -> Result<AggregateSpec> {
    let at = |inner_path: &str, message: &dyn std::fmt::Display| {
        Error::catalog(format!("{}: {inner_path}: {message}", file.display()))
    };
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    let raw: RawAggregateFile =
        serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().to_string();
            let path = if path == "." {
                "(top level)".to_owned()
            } else {
                path
            };
            at(&path, error.inner())
        })?;

    let (owner, dlq_alerts) = parse_header(text);
    let owner = owner.ok_or_else(|| {
        at(
            "(header)",
            &"missing the '# Owner: <Squad Name> (@slack-handle)' header line",
        )
    })?;
    check_identifier(&raw.aggregate).map_err(|message| at("aggregate", &message))?;
    let stem = file
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or_default();
    if stem != raw.aggregate {
        return Err(at(
            "aggregate",
            &format!(
                "aggregate '{}' must live in a file named {}.yaml",
                raw.aggregate, raw.aggregate
            ),
        ));
    }
    if raw.events.is_empty() {
        return Err(at("events", &"no events are defined"));
    }

    let mut events = BTreeMap::new();
    for (name, raw_event) in raw.events {
        let event_path = format!("events.{name}");
        check_identifier(&name).map_err(|message| at(&event_path, &message))?;
        let mut versions = vec![
            compile_version(&raw_event.version, false, None, raw_event.schema)
                .map_err(|(field, message)| at(&format!("{event_path}.{field}"), &message))?,
        ];
        for (index, previous) in raw_event.previous_versions.into_iter().enumerate() {
            let version = compile_version(
                &previous.version,
                previous.deprecated,
                previous.sunset,
                previous.schema,
            )
            .map_err(|(field, message)| {
                at(
                    &format!("{event_path}.previous_versions[{index}].{field}"),
                    &message,
                )
            })?;
            if versions
                .iter()
                .any(|known: &SchemaVersion| known.version.major == version.version.major)
            {
                return Err(at(
                    &format!("{event_path}.previous_versions[{index}].version"),
                    &format!(
                        "MAJOR version {} is listed twice; keep one schema per MAJOR version",
                        version.version.major
                    ),
                ));
            }
            versions.push(version);
        }
        events.insert(
            name.clone(),
            EventSpec {
                name,
                description: raw_event.description,
                consumers: raw_event.consumers,
                versions,
            },
        );
    }
    Ok(AggregateSpec {
        name: raw.aggregate,
        file: file.to_owned(),
        owner,
        dlq_alerts,
        events,
    })
}

fn compile_version(
    version: &str,
    deprecated: bool,
    sunset: Option<String>,
    schema: Value,
) -> std::result::Result<SchemaVersion, (&'static str, String)> {
    let version = semver::Version::parse(version).map_err(|error| {
        (
            "version",
            format!("'{version}' is not a semantic version (MAJOR.MINOR.PATCH): {error}"),
        )
    })?;
    if deprecated && sunset.is_none() {
        return Err((
            "sunset",
            "a deprecated schema needs a sunset date (RFC: deprecated schemas are marked with their sunset date)".to_owned(),
        ));
    }
    if !schema.is_object() {
        return Err(("schema", "must be a JSON Schema object".to_owned()));
    }
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|error| ("schema", format!("invalid JSON Schema: {error}")))?;
    Ok(SchemaVersion {
        version,
        deprecated,
        sunset,
        schema,
        validator,
    })
}

/// Reads the RFC's ownership header: leading `# Key: value` comment lines.
fn parse_header(text: &str) -> (Option<String>, Option<String>) {
    let mut owner = None;
    let mut dlq_alerts = None;
    for line in text.lines() {
        let Some(comment) = line.trim_start().strip_prefix('#') else {
            if line.trim().is_empty() {
                continue;
            }
            break;
        };
        if let Some((key, value)) = comment.split_once(':') {
            let value = value.trim();
            match key.trim().to_ascii_lowercase().as_str() {
                "owner" if !value.is_empty() => owner = Some(value.to_owned()),
                "dlq alerts" if !value.is_empty() => dlq_alerts = Some(value.to_owned()),
                _ => {}
            }
        }
    }
    (owner, dlq_alerts)
}

fn check_identifier(name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a snake_case identifier (lowercase letters, digits and _)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_catalog() -> Catalog {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
        Catalog::load_dir(&directory).expect("the repository catalog loads")
    }

    fn load_one(file_name: &str, text: &str) -> Result<Catalog> {
        let directory = tempfile::tempdir().expect("tempdir");
        std::fs::write(directory.path().join(file_name), text).expect("write");
        Catalog::load_dir(directory.path())
    }

    #[test]
    fn the_repository_catalog_has_the_rfc_example_and_eight_event_types() {
        let catalog = repo_catalog();
        let count: usize = catalog.aggregates().map(|a| a.events.len()).sum();
        assert!(count >= 8, "{count} event types");
        let sold = catalog.event("listing", "sold").expect("listing.sold");
        assert_eq!(sold.consumers[0].queue, "portal-listing-queue");
        assert_eq!(
            catalog.aggregate("listing").map(|a| a.topic_name()),
            Some("listing-events".to_owned())
        );
    }

    #[test]
    fn validation_uses_the_schema_of_the_same_major_version() {
        let catalog = repo_catalog();
        let v1_payload = serde_json::json!({"listing_id": "L-1", "price": 10});
        assert_eq!(
            catalog.validate("listing", "price_changed", Some("1.0.4"), &v1_payload),
            Validation::Valid
        );
        let Validation::Invalid(error) =
            catalog.validate("listing", "price_changed", Some("2.1.0"), &v1_payload)
        else {
            panic!("a v1 payload is not a valid v2 payload");
        };
        assert!(error.contains("old_price"), "{error}");
        let Validation::Invalid(error) =
            catalog.validate("listing", "price_changed", Some("7.0.0"), &v1_payload)
        else {
            panic!("unknown major");
        };
        assert!(error.contains("known: 2.0.0, 1.3.0"), "{error}");
    }

    #[test]
    fn unknown_aggregates_types_and_bad_versions_are_reported_not_rejected() {
        let catalog = repo_catalog();
        let payload = serde_json::json!({});
        for (aggregate, event_type, version, expected) in [
            (
                "boat",
                "sold",
                Some("1.0.0"),
                "aggregate 'boat' is not in the events catalog",
            ),
            (
                "listing",
                "stolen",
                Some("1.0.0"),
                "'listing.stolen' is not in the events catalog",
            ),
            ("listing", "sold", None, "no schema_version"),
            ("listing", "sold", Some("one"), "not a semantic version"),
        ] {
            match catalog.validate(aggregate, event_type, version, &payload) {
                Validation::Invalid(error) => assert!(error.contains(expected), "{error}"),
                Validation::Valid => panic!("{aggregate}.{event_type} should be invalid"),
            }
        }
    }

    #[test]
    fn formats_are_checked() {
        let catalog = repo_catalog();
        let payload = serde_json::json!({
            "listing_id": "L-1", "price": 1, "agent_id": "A-1", "sold_at": "yesterday"
        });
        let Validation::Invalid(error) =
            catalog.validate("listing", "sold", Some("1.0.0"), &payload)
        else {
            panic!("sold_at is not a date-time");
        };
        assert!(error.contains("/sold_at"), "{error}");
    }

    #[test]
    fn malformed_files_name_the_file_and_the_path_inside_it() {
        let header = "# Owner: Team (@team)\n";
        let cases = [
            ("listing.yaml", format!("{header}aggregate: listing\nevents:\n  sold:\n    description: x\n    version: 1.0\n    schema: {{type: object}}\n"), "events.sold.version"),
            ("listing.yaml", format!("{header}aggregate: listing\nevents:\n  sold:\n    description: x\n    version: 1.x.0\n    schema: {{type: object}}\n"), "events.sold.version"),
            ("listing.yaml", format!("{header}aggregate: listing\nevents:\n  sold:\n    description: x\n    version: 1.0.0\n    schema: {{type: objekt}}\n"), "events.sold.schema"),
            ("listing.yaml", format!("{header}aggregate: listing\nevents:\n  sold:\n    descripton: x\n"), "events.sold"),
            ("listing.yaml", format!("{header}aggregate: listing\nevents: [\n"), "listing.yaml"),
            ("listing.yaml", format!("{header}aggregate: Listing\nevents: {{}}\n"), "aggregate"),
            ("listing.yaml", format!("{header}aggregate: company\nevents: {{}}\n"), "company.yaml"),
            ("listing.yaml", "aggregate: listing\nevents:\n  sold:\n    description: x\n    version: 1.0.0\n    schema: {type: object}\n".to_owned(), "Owner"),
            ("listing.yaml", format!("{header}aggregate: listing\nevents:\n  sold:\n    description: x\n    version: 2.0.0\n    schema: {{type: object}}\n    previous_versions:\n      - {{version: 1.0.0, deprecated: true, schema: {{type: object}}}}\n"), "events.sold.previous_versions[0].sunset"),
        ];
        for (file_name, text, expected) in cases {
            let error = load_one(file_name, &text).expect_err(&text).to_string();
            assert!(error.contains(file_name), "{error}");
            assert!(
                error.contains(expected),
                "expected '{expected}' in: {error}"
            );
        }
    }

    #[test]
    fn a_missing_or_empty_directory_says_how_to_fix_it() {
        let error = Catalog::load_dir(Path::new("/nonexistent/events")).expect_err("missing");
        assert!(error.to_string().contains("ISLETS_EVENTS_DIR"), "{error}");
        let empty = tempfile::tempdir().expect("tempdir");
        let error = Catalog::load_dir(empty.path()).expect_err("empty");
        assert!(error.to_string().contains("no *.yaml files"), "{error}");
    }
}
