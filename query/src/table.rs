//! A DataFusion table over a pre-selected list of archive files: no LIST or HEAD per
//! query (the engine keeps its own listing), while DataFusion still prunes row groups by
//! statistics and bloom filters, pages by the page index, and caches footers.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, project_schema};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use object_store::ObjectMeta;

/// The files of one query.
#[derive(Debug)]
pub(crate) struct ArchiveFiles {
    pub(crate) schema: SchemaRef,
    pub(crate) store_url: ObjectStoreUrl,
    pub(crate) files: Vec<ObjectMeta>,
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
            .filter(|meta| meta.size > 0)
            .map(|meta| PartitionedFile::new_from_meta(meta.clone()))
            .collect();
        if files.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(
                &self.schema,
                projection,
            )?)));
        }
        let groups = FileGroup::new(files).split_files(state.config().target_partitions());
        let options = state.default_table_options().parquet;
        let source =
            ParquetSource::new(self.schema.clone()).with_table_parquet_options(options.clone());
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
