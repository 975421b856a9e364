//! A DataFusion table over a pre-selected list of archive files: no LIST or HEAD per
//! query (the engine keeps its own listing), while DataFusion still prunes row groups by
//! statistics and bloom filters, pages by the page index, and caches footers.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, project_schema};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;

use crate::sql::PARTITION_COLUMNS;

/// The files of one query, with the partition columns `date` and `hour` (strings, as the
/// Hive keys and the Glue table have them) after the file columns.
#[derive(Debug)]
pub(crate) struct ArchiveFiles {
    file_schema: SchemaRef,
    /// The file columns, then the partition columns.
    schema: SchemaRef,
    store_url: ObjectStoreUrl,
    files: Vec<PartitionedFile>,
}

impl ArchiveFiles {
    /// `files` carry their partition values in [`PARTITION_COLUMNS`] order.
    pub(crate) fn new(
        file_schema: SchemaRef,
        store_url: ObjectStoreUrl,
        files: Vec<PartitionedFile>,
    ) -> Self {
        let mut fields: Vec<FieldRef> = file_schema.fields().iter().cloned().collect();
        fields.extend(partition_fields());
        let schema = Arc::new(Schema::new_with_metadata(
            fields,
            file_schema.metadata().clone(),
        ));
        ArchiveFiles {
            file_schema,
            schema,
            store_url,
            files,
        }
    }
}

fn partition_fields() -> Vec<FieldRef> {
    PARTITION_COLUMNS
        .iter()
        .map(|name| Arc::new(Field::new(*name, DataType::Utf8, false)))
        .collect()
}

#[async_trait]
impl TableProvider for ArchiveFiles {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: DataFusion keeps the filter above the scan for exactness and pushes it
        // into the Parquet source for statistics, bloom-filter and page-index pruning.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let files: Vec<PartitionedFile> = self
            .files
            .iter()
            .filter(|file| file.object_meta.size > 0)
            .cloned()
            .collect();
        if files.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(
                &self.schema,
                projection,
            )?)));
        }
        let groups = FileGroup::new(files).split_files(state.config().target_partitions());
        let options = state.default_table_options().parquet;
        let source = ParquetSource::new(
            TableSchema::builder(self.file_schema.clone())
                .with_table_partition_cols(partition_fields())
                .build(),
        )
        .with_table_parquet_options(options.clone());
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        // Through ParquetFormat so the reader uses the session's footer cache.
        ParquetFormat::default()
            .with_options(options)
            .create_physical_plan(state, config)
            .await
    }
}
