//! The Glue/Athena definition of the `events` table, generated from the one Arrow schema of
//! `islets-core` (`schema::events_schema`): the columns, the `date`/`hour` partition keys
//! with partition projection, and the Athena DDL (`infra/athena/events.sql` is a copy,
//! compared with this by a test).

use std::collections::BTreeMap;

use islets_core::layout::Table;
use islets_core::schema::{events_schema, hive_type};

/// Name of the table in the Glue database.
pub(crate) const TABLE_NAME: &str = "events";
/// The bucket in the checked-in DDL (`infra/athena/events.sql`), a placeholder as in the
/// IAM policies of `infra/iam/`.
pub(crate) const BUCKET_PLACEHOLDER: &str = "${BucketName}";
/// Glue's limit on a column comment.
const MAX_COMMENT_CHARS: usize = 255;

pub(crate) const TABLE_DESCRIPTION: &str = "One row per archived event message (duplicates from SQS redelivery share event_id). Partitioned by the UTC hour of published_at.";
pub(crate) const DATABASE_DESCRIPTION: &str =
    "Islets Audit archive (Parquet, Hive partitions date=/hour=)";
pub(crate) const INPUT_FORMAT: &str =
    "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
pub(crate) const OUTPUT_FORMAT: &str =
    "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
pub(crate) const SERDE_LIBRARY: &str =
    "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";
/// First day partition projection covers. A fixed start rather than "NOW minus the
/// retention": raising the retention, or Object Lock, never hides data from Athena.
pub(crate) const PROJECTION_START: &str = "2025-01-01";

/// One column (or partition key) of the Glue table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// Hive type (`string`, `timestamp`, `map<string,struct<...>>`).
    pub hive_type: String,
    /// What the column holds (the Glue column comment).
    pub comment: Option<String>,
}

/// Where the table's data lives: `s3://BUCKET/PREFIX/events/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLocation {
    pub bucket: String,
    /// Without slashes at either end.
    pub prefix: String,
}

impl TableLocation {
    /// The table's `LOCATION`.
    pub fn location(&self) -> String {
        format!(
            "s3://{}/{}/{}/",
            self.bucket,
            self.prefix,
            Table::Events.prefix()
        )
    }

    /// The partition projection's `storage.location.template`.
    pub fn location_template(&self) -> String {
        format!("{}date=${{date}}/hour=${{hour}}/", self.location())
    }
}

/// The data columns, in the Arrow schema's order, with its descriptions as comments.
pub fn columns() -> Vec<Column> {
    events_schema()
        .fields()
        .iter()
        .map(|field| Column {
            name: field.name().clone(),
            hive_type: hive_type(field.data_type()),
            comment: field
                .metadata()
                .get("description")
                .map(|description| truncate(description, MAX_COMMENT_CHARS)),
        })
        .collect()
}

/// The partition keys: the UTC date and hour of `published_at` (`islets_core::layout`).
pub(crate) fn partition_keys() -> Vec<Column> {
    vec![
        Column {
            name: "date".to_owned(),
            hive_type: "string".to_owned(),
            comment: Some("UTC date of published_at (yyyy-MM-dd)".to_owned()),
        },
        Column {
            name: "hour".to_owned(),
            hive_type: "string".to_owned(),
            comment: Some("UTC hour of published_at (00-23)".to_owned()),
        },
    ]
}

/// The table's parameters: Parquet, and partition projection over the layout's
/// `date=yyyy-MM-dd/hour=HH` directories, so Athena never needs `MSCK REPAIR`.
pub(crate) fn table_parameters(location: &TableLocation) -> BTreeMap<String, String> {
    let hours: Vec<String> = (0..24).map(|hour| format!("{hour:02}")).collect();
    [
        ("classification", "parquet".to_owned()),
        ("EXTERNAL", "TRUE".to_owned()),
        ("projection.enabled", "true".to_owned()),
        ("projection.date.type", "date".to_owned()),
        ("projection.date.format", "yyyy-MM-dd".to_owned()),
        ("projection.date.range", format!("{PROJECTION_START},NOW")),
        ("projection.date.interval", "1".to_owned()),
        ("projection.date.interval.unit", "DAYS".to_owned()),
        ("projection.hour.type", "enum".to_owned()),
        ("projection.hour.values", hours.join(",")),
        ("storage.location.template", location.location_template()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

/// The SerDe's parameters.
pub(crate) fn serde_parameters() -> BTreeMap<String, String> {
    BTreeMap::from([("serialization.format".to_owned(), "1".to_owned())])
}

/// The Athena `CREATE EXTERNAL TABLE` statement of the same table (no SQL comments: it is
/// pasted as is into Athena's editor or StartQueryExecution).
pub(crate) fn events_ddl(database: &str, location: &TableLocation) -> String {
    let render = |column: &Column| {
        let comment = column
            .comment
            .as_deref()
            .map(|comment| format!(" COMMENT '{}'", quote(comment)))
            .unwrap_or_default();
        format!("  `{}` {}{comment}", column.name, column.hive_type)
    };
    let columns: Vec<String> = columns().iter().map(render).collect();
    let partitions: Vec<String> = partition_keys().iter().map(render).collect();
    // EXTERNAL is what CREATE EXTERNAL TABLE sets itself.
    let properties: Vec<String> = table_parameters(location)
        .iter()
        .filter(|(key, _)| key.as_str() != "EXTERNAL")
        .map(|(key, value)| format!("  '{}'='{}'", quote(key), quote(value)))
        .collect();
    format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{TABLE_NAME}` (\n{}\n)\n\
         COMMENT '{}'\n\
         PARTITIONED BY (\n{}\n)\n\
         ROW FORMAT SERDE '{SERDE_LIBRARY}'\n\
         STORED AS INPUTFORMAT '{INPUT_FORMAT}'\n\
         OUTPUTFORMAT '{OUTPUT_FORMAT}'\n\
         LOCATION '{}'\n\
         TBLPROPERTIES (\n{}\n);\n",
        columns.join(",\n"),
        quote(TABLE_DESCRIPTION),
        partitions.join(",\n"),
        location.location(),
        properties.join(",\n"),
    )
}

/// A Hive string literal's body: backslash and quote escaped.
fn quote(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\'', "\\'")
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn infra_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn default_location() -> TableLocation {
        TableLocation {
            bucket: BUCKET_PLACEHOLDER.to_owned(),
            prefix: "islets".to_owned(),
        }
    }

    #[test]
    fn the_checked_in_ddl_is_the_generated_one() {
        let path = infra_dir().join("athena/events.sql");
        let regenerate =
            "cargo run --bin islets-audit -- provision --print-ddl > infra/athena/events.sql";
        let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|error| {
            panic!(
                "cannot read {}: {error}; generate it with\n  {regenerate}",
                path.display()
            )
        });
        let generated = events_ddl("islets_audit", &default_location());
        assert!(
            checked_in == generated,
            "infra/athena/events.sql differs from the DDL generated from the Arrow schema; regenerate it with\n  \
             {regenerate}\ngenerated:\n{generated}"
        );
    }

    #[test]
    fn columns_follow_the_arrow_schema() {
        let columns = columns();
        let schema = events_schema();
        assert_eq!(columns.len(), schema.fields().len());
        assert_eq!(columns[0].name, "event_id");
        let attributes = columns
            .iter()
            .find(|column| column.name == "attributes")
            .expect("attributes");
        assert_eq!(
            attributes.hive_type,
            "map<string,struct<data_type:string,value:string>>"
        );
        assert!(columns.iter().all(|column| {
            column.comment.as_ref().is_some_and(|comment| {
                !comment.is_empty() && comment.chars().count() <= MAX_COMMENT_CHARS
            })
        }));
        assert!(
            columns
                .iter()
                .all(|column| !column.hive_type.starts_with("unsupported"))
        );
    }

    #[test]
    fn projection_covers_the_layout() {
        let location = TableLocation {
            bucket: "audit-archive".into(),
            prefix: "prod/islets".into(),
        };
        let parameters = table_parameters(&location);
        assert_eq!(
            parameters["storage.location.template"],
            "s3://audit-archive/prod/islets/events/date=${date}/hour=${hour}/"
        );
        // The layout's own directory for an hour matches the template.
        let partition = islets_core::layout::Partition::for_timestamp_ms(
            Table::Events,
            1_795_449_600_000 + 16 * 3_600_000,
        );
        let (date, hour) = partition
            .relative_dir()
            .strip_prefix("events/")
            .and_then(|rest| rest.split_once('/'))
            .map(|(date, hour)| (date.to_owned(), hour.to_owned()))
            .expect("date=/hour=");
        let expanded = parameters["storage.location.template"]
            .replace("date=${date}", &date)
            .replace("hour=${hour}", &hour);
        assert_eq!(
            expanded,
            format!(
                "s3://audit-archive/prod/islets/{}/",
                partition.relative_dir()
            )
        );
        assert_eq!(parameters["projection.hour.values"].split(',').count(), 24);
    }

    #[test]
    fn comments_are_quoted_for_hive() {
        assert_eq!(quote(r"it's a \ test"), r"it\'s a \\ test");
        assert_eq!(truncate("añb", 2), "añ");
        let ddl = events_ddl("islets_audit", &default_location());
        assert!(ddl.contains("subject\\'s key"), "{ddl}");
        assert!(ddl.contains("  `date` string COMMENT"), "{ddl}");
    }
}
