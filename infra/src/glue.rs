//! The Glue database and the `events` table (definition in [`crate::table`]).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_glue::Client;
use aws_sdk_glue::types::{
    Column as GlueColumn, DatabaseInput, SerDeInfo, StorageDescriptor, Table as GlueTable,
    TableInput,
};

use crate::config::ProvisionConfig;
use crate::error::{Result, aws};
use crate::plan::Plan;
use crate::table::{self, Column, TABLE_NAME};

const TABLE_TYPE: &str = "EXTERNAL_TABLE";

/// The parts of a table this command manages, compared as one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableShape {
    description: Option<String>,
    table_type: Option<String>,
    columns: Vec<Column>,
    partition_keys: Vec<Column>,
    location: Option<String>,
    input_format: Option<String>,
    output_format: Option<String>,
    serde_library: Option<String>,
    serde_parameters: BTreeMap<String, String>,
    /// Only the keys this command sets; Glue or Athena may add others.
    parameters: BTreeMap<String, String>,
}

impl TableShape {
    fn desired(config: &ProvisionConfig) -> Self {
        TableShape {
            description: Some(table::TABLE_DESCRIPTION.to_owned()),
            table_type: Some(TABLE_TYPE.to_owned()),
            columns: table::columns(),
            partition_keys: table::partition_keys(),
            location: Some(config.table_location().location()),
            input_format: Some(table::INPUT_FORMAT.to_owned()),
            output_format: Some(table::OUTPUT_FORMAT.to_owned()),
            serde_library: Some(table::SERDE_LIBRARY.to_owned()),
            serde_parameters: table::serde_parameters(),
            parameters: table::table_parameters(&config.table_location()),
        }
    }

    fn current(table: &GlueTable, managed_keys: &BTreeMap<String, String>) -> Self {
        let descriptor = table.storage_descriptor();
        let serde = descriptor.and_then(StorageDescriptor::serde_info);
        let parameters = table.parameters().cloned().unwrap_or_default();
        TableShape {
            description: table.description().map(str::to_owned),
            table_type: table.table_type().map(str::to_owned),
            columns: descriptor
                .map(|descriptor| descriptor.columns().iter().map(column_of).collect())
                .unwrap_or_default(),
            partition_keys: table.partition_keys().iter().map(column_of).collect(),
            location: descriptor.and_then(|d| d.location()).map(str::to_owned),
            input_format: descriptor.and_then(|d| d.input_format()).map(str::to_owned),
            output_format: descriptor
                .and_then(|d| d.output_format())
                .map(str::to_owned),
            serde_library: serde
                .and_then(SerDeInfo::serialization_library)
                .map(str::to_owned),
            serde_parameters: serde
                .and_then(SerDeInfo::parameters)
                .map(|parameters| {
                    parameters
                        .iter()
                        .map(|(key, value)| (key.clone(), value.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            parameters: parameters
                .into_iter()
                .filter(|(key, _)| managed_keys.contains_key(key))
                .collect(),
        }
    }

    /// What differs, for the plan line.
    fn differences(&self, desired: &TableShape) -> Vec<&'static str> {
        let mut parts = Vec::new();
        if self.columns != desired.columns {
            parts.push("columns");
        }
        if self.partition_keys != desired.partition_keys {
            parts.push("partition keys");
        }
        if self.parameters != desired.parameters {
            parts.push("partition projection parameters");
        }
        if self.location != desired.location {
            parts.push("location");
        }
        if self.input_format != desired.input_format
            || self.output_format != desired.output_format
            || self.serde_library != desired.serde_library
            || self.serde_parameters != desired.serde_parameters
            || self.table_type != desired.table_type
        {
            parts.push("storage format");
        }
        if self.description != desired.description {
            parts.push("description");
        }
        parts
    }
}

fn column_of(column: &GlueColumn) -> Column {
    Column {
        name: column.name().to_owned(),
        hive_type: column.r#type().unwrap_or_default().to_owned(),
        comment: column.comment().map(str::to_owned),
    }
}

fn glue_column(column: &Column) -> Result<GlueColumn> {
    GlueColumn::builder()
        .name(&column.name)
        .r#type(&column.hive_type)
        .set_comment(column.comment.clone())
        .build()
        .map_err(|error| aws(format!("building Glue column {}", column.name), &error))
}

/// The TableInput of the desired shape; `extra_parameters` (set by others) are kept.
fn table_input(
    shape: &TableShape,
    extra_parameters: HashMap<String, String>,
) -> Result<TableInput> {
    let mut parameters = extra_parameters;
    parameters.extend(shape.parameters.clone());
    let columns = shape
        .columns
        .iter()
        .map(glue_column)
        .collect::<Result<Vec<_>>>()?;
    let partition_keys = shape
        .partition_keys
        .iter()
        .map(glue_column)
        .collect::<Result<Vec<_>>>()?;
    let descriptor = StorageDescriptor::builder()
        .set_columns(Some(columns))
        .set_location(shape.location.clone())
        .set_input_format(shape.input_format.clone())
        .set_output_format(shape.output_format.clone())
        .serde_info(
            SerDeInfo::builder()
                .set_serialization_library(shape.serde_library.clone())
                .set_parameters(Some(shape.serde_parameters.clone().into_iter().collect()))
                .build(),
        )
        .build();
    TableInput::builder()
        .name(TABLE_NAME)
        .set_description(shape.description.clone())
        .set_table_type(shape.table_type.clone())
        .set_parameters(Some(parameters))
        .set_partition_keys(Some(partition_keys))
        .storage_descriptor(descriptor)
        .build()
        .map_err(|error| aws("building the Glue table input", &error))
}

/// Creates or updates the database and the `events` table.
pub(crate) async fn apply(
    glue: &Client,
    config: &ProvisionConfig,
    plan: &mut Plan<'_>,
) -> Result<()> {
    let database = config.glue_database.as_str();
    let current_database = match glue.get_database().name(database).send().await {
        Ok(output) => output.database().cloned(),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|service| service.is_entity_not_found_exception()) =>
        {
            None
        }
        Err(error) => return Err(aws(format!("GetDatabase {database}"), &error)),
    };
    match &current_database {
        None => {
            if plan.change(format!("create Glue database {database}")) {
                let input = DatabaseInput::builder()
                    .name(database)
                    .description(table::DATABASE_DESCRIPTION)
                    .build()
                    .map_err(|error| aws("building the Glue database input", &error))?;
                glue.create_database()
                    .database_input(input)
                    .send()
                    .await
                    .map_err(|error| aws(format!("CreateDatabase {database}"), &error))?;
            } else {
                // Dry run: the table cannot exist in a database that does not.
                plan.change(describe_new_table(config));
                return Ok(());
            }
        }
        Some(existing) if existing.description() != Some(table::DATABASE_DESCRIPTION) => {
            if plan.change(format!("set description of Glue database {database}")) {
                let input = DatabaseInput::builder()
                    .name(database)
                    .description(table::DATABASE_DESCRIPTION)
                    .set_location_uri(existing.location_uri().map(str::to_owned))
                    .set_parameters(existing.parameters().cloned())
                    .build()
                    .map_err(|error| aws("building the Glue database input", &error))?;
                glue.update_database()
                    .name(database)
                    .database_input(input)
                    .send()
                    .await
                    .map_err(|error| aws(format!("UpdateDatabase {database}"), &error))?;
            }
        }
        Some(_) => {}
    }

    let desired = TableShape::desired(config);
    let current_table = match glue
        .get_table()
        .database_name(database)
        .name(TABLE_NAME)
        .send()
        .await
    {
        Ok(output) => output.table().cloned(),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|service| service.is_entity_not_found_exception()) =>
        {
            None
        }
        Err(error) => return Err(aws(format!("GetTable {database}.{TABLE_NAME}"), &error)),
    };
    match current_table {
        None => {
            if plan.change(describe_new_table(config)) {
                glue.create_table()
                    .database_name(database)
                    .table_input(table_input(&desired, HashMap::new())?)
                    .send()
                    .await
                    .map_err(|error| aws(format!("CreateTable {database}.{TABLE_NAME}"), &error))?;
            }
        }
        Some(existing) => {
            let current = TableShape::current(&existing, &desired.parameters);
            let differences = current.differences(&desired);
            if !differences.is_empty()
                && plan.change(format!(
                    "update Glue table {database}.{TABLE_NAME}: {}",
                    differences.join(", ")
                ))
            {
                let extra: HashMap<String, String> = existing
                    .parameters()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(key, _)| !desired.parameters.contains_key(key))
                    .collect();
                glue.update_table()
                    .database_name(database)
                    .table_input(table_input(&desired, extra)?)
                    .send()
                    .await
                    .map_err(|error| aws(format!("UpdateTable {database}.{TABLE_NAME}"), &error))?;
            }
        }
    }
    Ok(())
}

fn describe_new_table(config: &ProvisionConfig) -> String {
    format!(
        "create Glue table {}.{TABLE_NAME}: {} columns from the Arrow schema, partitions date/hour with partition projection, Parquet at {}",
        config.glue_database,
        table::columns().len(),
        config.table_location().location()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_reads_back_equal_to_what_is_created() {
        let config = crate::config::sample_config();
        let desired = TableShape::desired(&config);
        let input =
            table_input(&desired, HashMap::from([("owner".into(), "x".into())])).expect("input");
        // What Glue answers is the input plus its own fields.
        let table = GlueTable::builder()
            .name(input.name())
            .set_description(input.description().map(str::to_owned))
            .set_table_type(input.table_type().map(str::to_owned))
            .set_parameters(input.parameters().cloned())
            .set_partition_keys(Some(input.partition_keys().to_vec()))
            .set_storage_descriptor(input.storage_descriptor().cloned())
            .build()
            .expect("table");
        let current = TableShape::current(&table, &desired.parameters);
        assert_eq!(current, desired);
        assert!(current.differences(&desired).is_empty());

        let mut moved = config.clone();
        moved.prefix = "elsewhere".into();
        let differences = current.differences(&TableShape::desired(&moved));
        assert_eq!(
            differences,
            ["partition projection parameters", "location"],
            "{differences:?}"
        );
    }
}
