//! The archive layout: the one place that maps a record to its object key and back.
//!
//! ```text
//! <prefix>/events/date=YYYY-MM-DD/hour=HH/part-<ULID>.parquet      archived events
//! <prefix>/quarantine/date=YYYY-MM-DD/hour=HH/part-<ULID>.parquet  undecodable messages
//! ```
//!
//! * Events are partitioned by the hour of `published_at` (the time SNS accepted the
//!   message, set by AWS, not by the producer's clock), in UTC. Quarantined messages, which
//!   may have no trustworthy time at all, by `ingested_at`.
//! * File names are ULIDs: unique without coordination (any number of ingesters write side
//!   by side) and sortable by creation time.
//! * Files are immutable. Later capabilities add prefixes beside these two and never
//!   rewrite a file: `manifests/` (sealing), `index/` (id lookups), `replays/` (the replay
//!   ledger), `keys/` (sensitive-data keys).

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
use object_store::path::Path;
use ulid::Ulid;

/// The tables of the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// One row per delivered event message.
    Events,
    /// One row per message that could not be decoded as an event.
    Quarantine,
}

impl Table {
    /// The table's prefix below the store root.
    pub fn prefix(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Quarantine => "quarantine",
        }
    }

    fn from_prefix(prefix: &str) -> Option<Self> {
        match prefix {
            "events" => Some(Table::Events),
            "quarantine" => Some(Table::Quarantine),
            _ => None,
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// One hour partition of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    /// The table.
    pub table: Table,
    /// The UTC day.
    pub date: NaiveDate,
    /// The UTC hour (0-23).
    pub hour: u32,
}

impl Partition {
    /// The partition holding a record whose partitioning time is `timestamp_ms`
    /// (milliseconds since the Unix epoch, UTC).
    pub fn for_timestamp_ms(table: Table, timestamp_ms: i64) -> Self {
        let time = Utc
            .timestamp_millis_opt(timestamp_ms)
            .single()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        Partition {
            table,
            date: time.date_naive(),
            hour: time.hour(),
        }
    }

    /// Start of the partition's hour.
    pub fn start(&self) -> DateTime<Utc> {
        let naive = self
            .date
            .and_hms_opt(self.hour, 0, 0)
            .unwrap_or_else(|| self.date.and_time(chrono::NaiveTime::MIN));
        Utc.from_utc_datetime(&naive)
    }

    /// `events/date=2026-11-23/hour=16`, relative to the store root.
    pub fn relative_dir(&self) -> String {
        format!(
            "{}/date={:04}-{:02}-{:02}/hour={:02}",
            self.table.prefix(),
            self.date.year(),
            self.date.month(),
            self.date.day(),
            self.hour
        )
    }
}

impl Partition {
    /// Parses [`Partition::relative_dir`]; `None` for anything else.
    pub fn parse_relative_dir(text: &str) -> Option<Self> {
        let mut parts = text.split('/');
        let table = Table::from_prefix(parts.next()?)?;
        let date =
            NaiveDate::parse_from_str(parts.next()?.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
        let hour_text = parts.next()?.strip_prefix("hour=")?;
        if parts.next().is_some() || hour_text.len() != 2 {
            return None;
        }
        let hour = hour_text.parse().ok().filter(|hour| *hour < 24)?;
        let partition = Partition { table, date, hour };
        (partition.relative_dir() == text).then_some(partition)
    }
}

/// Identity of one Parquet object in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataFile {
    /// The partition it lies in.
    pub partition: Partition,
    /// Its ULID (the file name, sortable by creation time).
    pub id: Ulid,
}

impl DataFile {
    /// A new, unique file in `partition`.
    pub fn new(partition: Partition) -> Self {
        DataFile {
            partition,
            id: Ulid::new(),
        }
    }

    /// The object key below `root` (the store prefix).
    pub fn key(&self, root: &Path) -> Path {
        let relative = format!("{}/part-{}.parquet", self.partition.relative_dir(), self.id);
        join(root, &relative)
    }

    /// Parses an object key written by [`DataFile::key`]; `None` for any other object.
    pub fn parse(root: &Path, key: &Path) -> Option<Self> {
        let relative: Vec<_> = key.prefix_match(root)?.collect();
        let [table, date, hour, file] = relative.as_slice() else {
            return None;
        };
        let table = Table::from_prefix(table.as_ref())?;
        let date =
            NaiveDate::parse_from_str(date.as_ref().strip_prefix("date=")?, "%Y-%m-%d").ok()?;
        let hour_text = hour.as_ref().strip_prefix("hour=")?;
        if hour_text.len() != 2 {
            return None;
        }
        let hour: u32 = hour_text.parse().ok().filter(|hour| *hour < 24)?;
        let id = file
            .as_ref()
            .strip_prefix("part-")?
            .strip_suffix(".parquet")?
            .parse()
            .ok()?;
        Some(DataFile {
            partition: Partition { table, date, hour },
            id,
        })
    }
}

/// Appends a relative `a/b/c` path to `root`.
pub fn join(root: &Path, relative: &str) -> Path {
    relative
        .split('/')
        .filter(|part| !part.is_empty())
        .fold(root.clone(), |path, part| path.join(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_maps_to_its_hour_partition_in_utc() {
        // 2026-11-23T16:59:59.999Z
        let partition = Partition::for_timestamp_ms(Table::Events, 1_795_453_199_999);
        assert_eq!(partition.relative_dir(), "events/date=2026-11-23/hour=16");
        assert_eq!(partition.start().to_rfc3339(), "2026-11-23T16:00:00+00:00");
        assert_eq!(
            Partition::parse_relative_dir("events/date=2026-11-23/hour=16"),
            Some(partition)
        );
        for bad in [
            "events/date=2026-11-23/hour=24",
            "events/date=2026-11-23/hour=6",
            "events/date=2026-11-23/hour=16/x",
            "other/date=2026-11-23/hour=16",
            "events/date=2026-1-23/hour=16",
        ] {
            assert_eq!(Partition::parse_relative_dir(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_round_trip_and_foreign_objects_are_rejected() {
        let root = Path::from("audit/prod");
        let file = DataFile::new(Partition::for_timestamp_ms(Table::Quarantine, 0));
        let key = file.key(&root);
        assert!(
            key.as_ref()
                .starts_with("audit/prod/quarantine/date=1970-01-01/hour=00/part-")
        );
        assert_eq!(DataFile::parse(&root, &key), Some(file));

        for foreign in [
            "audit/prod/events/date=2026-11-23/hour=16/notes.txt",
            "audit/prod/events/date=2026-11-23/hour=24/part-01JAAAAAAAAAAAAAAAAAAAAAAA.parquet",
            "audit/prod/manifests/x.json",
            "other/events/date=2026-11-23/hour=16/part-01JAAAAAAAAAAAAAAAAAAAAAAA.parquet",
        ] {
            assert_eq!(
                DataFile::parse(&root, &Path::from(foreign)),
                None,
                "{foreign}"
            );
        }
    }
}
