//! Compiled SQL in Athena's form: `?` for each `$n`, the values as SQL literals for
//! `ExecutionParameters` (Athena binds them; nothing is spliced into the text here).

use datafusion::common::ScalarValue;

use crate::error::{Error, Result};
use crate::sql::CompiledQuery;

/// SQL text with `?` placeholders and the values as Athena execution parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AthenaStatement {
    /// The query text, `?` for each value.
    pub sql: String,
    /// The values, as SQL literals, in order (Athena's ExecutionParameters).
    pub parameters: Vec<String>,
}

/// Converts compiled SQL to Athena's form: each `$n` (in order, each once) becomes `?`,
/// and each value an SQL literal for `ExecutionParameters`.
pub fn to_athena(compiled: &CompiledQuery) -> Result<AthenaStatement> {
    let mut sql = String::with_capacity(compiled.sql.len());
    let mut rest = compiled.sql.as_str();
    let mut expected = 1;
    while let Some(position) = rest.find('$') {
        sql.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let index: usize = after[..digits].parse().map_err(|_| {
            Error::Engine(format!("unexpected '$' in compiled SQL: {}", compiled.sql))
        })?;
        if index != expected {
            return Err(Error::Engine(format!(
                "placeholder ${index} out of order (expected ${expected}): Athena binds by position"
            )));
        }
        expected += 1;
        sql.push('?');
        rest = &after[digits..];
    }
    sql.push_str(rest);
    if expected - 1 != compiled.parameters.len() {
        return Err(Error::Engine(format!(
            "{} placeholders for {} parameters",
            expected - 1,
            compiled.parameters.len()
        )));
    }
    let parameters = compiled
        .parameters
        .iter()
        .map(literal)
        .collect::<Result<Vec<_>>>()?;
    Ok(AthenaStatement { sql, parameters })
}

/// A value as the SQL literal Athena binds to a `?`.
fn literal(value: &ScalarValue) -> Result<String> {
    match value {
        ScalarValue::Utf8(Some(text)) => Ok(format!("'{}'", text.replace('\'', "''"))),
        ScalarValue::Boolean(Some(flag)) => Ok(flag.to_string()),
        ScalarValue::TimestampMillisecond(Some(ms), _) => {
            let time = chrono::DateTime::from_timestamp_millis(*ms)
                .ok_or_else(|| Error::Engine(format!("timestamp out of range: {ms}")))?;
            Ok(format!(
                "TIMESTAMP '{}'",
                time.format("%Y-%m-%d %H:%M:%S%.3f")
            ))
        }
        other => Err(Error::Engine(format!(
            "no Athena literal for parameter {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::QueryEngine;
    use crate::model::parse_event_query;
    use crate::sql::{Dialect, compile_correlation, compile_page};

    #[test]
    fn placeholders_become_question_marks_and_values_literals() {
        let pairs = vec![
            ("correlation_id".to_owned(), "x' OR '1'='1".to_owned()),
            ("since".to_owned(), "2026-11-20T10:00:00Z".to_owned()),
            ("schema_valid".to_owned(), "true".to_owned()),
        ];
        let query = parse_event_query(&pairs, &[], chrono::Utc::now()).expect("valid");
        let statement = to_athena(&compile_page(&query, Dialect::Athena)).expect("athena");
        assert!(!statement.sql.contains('$'), "{}", statement.sql);
        assert!(!statement.sql.contains("1'='1"), "{}", statement.sql);
        assert_eq!(
            statement.sql.matches('?').count(),
            statement.parameters.len()
        );
        assert_eq!(
            statement.parameters,
            vec![
                // The days the copies are compared in (Athena's partitions) ...
                "'2026-11-20'".to_owned(),
                // ... the events the filter names ...
                "'2026-11-20'".to_owned(),
                "'x'' OR ''1''=''1'".to_owned(),
                "TIMESTAMP '2026-11-20 10:00:00.000'".to_owned(),
                "true".to_owned(),
                // ... and the same filter on the copy that won.
                "'x'' OR ''1''=''1'".to_owned(),
                "TIMESTAMP '2026-11-20 10:00:00.000'".to_owned(),
                "true".to_owned(),
            ]
        );
        assert!(
            statement.sql.contains("\"date\" >= ?"),
            "partition predicate: {}",
            statement.sql
        );
    }

    /// What Athena does with a statement before running it: binds each `?` to its
    /// literal. The select list goes back to the plain columns, the one documented
    /// difference between the dialects.
    fn bind_like_athena(statement: &AthenaStatement) -> String {
        let mut parameters = statement.parameters.iter();
        let mut bound = String::new();
        for character in statement.sql.chars() {
            if character == '?' {
                bound.push_str(parameters.next().expect("a parameter for each ?"));
            } else {
                bound.push(character);
            }
        }
        assert!(parameters.next().is_none(), "every parameter is used");
        bound
            .replace(crate::sql::ATHENA_ATTRIBUTES, "\"attributes\"")
            .replace(crate::sql::ATHENA_CIPHERTEXT, "\"payload_ciphertext\"")
    }

    #[tokio::test]
    async fn the_athena_text_selects_what_the_datafusion_engine_selects() {
        use crate::engine::DataFusionEngine;
        use crate::test_support::{HOUR, START, fixture, ids, query};
        let fixture = fixture().await;
        let engine = DataFusionEngine::new(fixture.archive.clone()).expect("engine");
        let time = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .expect("time")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let cases = [
            String::new(),
            "event_id=event-002&event_id=event-016".to_owned(),
            "correlation_id=corr-1&order=desc".to_owned(),
            "event_type=listing.registered&schema_valid=true".to_owned(),
            "producer_system=company-api".to_owned(),
            format!(
                "since={}&until={}",
                time(START + HOUR + 1),
                time(START + 4 * HOUR)
            ),
            "correlation_id=x' OR '1'='1".to_owned(),
        ];
        let mut compared = 0;
        for text in cases {
            for limit in [4, 1000] {
                let first = query(&format!("{text}&limit={limit}"));
                let expected = engine.events(&first).await.expect("datafusion");
                let statement = to_athena(&compile_page(&first, Dialect::Athena)).expect("athena");
                let mut got = engine
                    .run_text(&bind_like_athena(&statement))
                    .await
                    .expect("the Athena text runs");
                got.truncate(limit);
                assert_eq!(ids(&got), ids(&expected.events), "{text} limit {limit}");
                assert_eq!(got, expected.events, "whole rows: {text}");
                compared += got.len();
                // The second page, from the cursor of the first.
                if let Some(cursor) = expected.next_cursor {
                    let next = query(&format!("{text}&limit={limit}&cursor={cursor}"));
                    let expected = engine.events(&next).await.expect("datafusion");
                    let statement =
                        to_athena(&compile_page(&next, Dialect::Athena)).expect("athena");
                    let mut got = engine
                        .run_text(&bind_like_athena(&statement))
                        .await
                        .expect("the Athena text runs");
                    got.truncate(limit);
                    assert_eq!(ids(&got), ids(&expected.events), "{text} page 2");
                }
            }
        }
        assert!(compared > 50, "the cases select events: {compared}");
        let flow = compile_correlation("corr-2", 100, Dialect::Athena);
        let got = engine
            .run_text(&bind_like_athena(&to_athena(&flow).expect("athena")))
            .await
            .expect("runs");
        let expected = engine.correlation("corr-2", 100).await.expect("flow");
        assert_eq!(ids(&got), ids(&expected));
        assert!(!expected.is_empty());
    }
}
