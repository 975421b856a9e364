//! Bounds on the values `/v1/sql` may compute.
//!
//! DataFusion's memory pool accounts for what operators hold (sorts, joins, aggregates),
//! but not for the values scalar functions allocate, and constant folding evaluates those
//! at planning time. `SELECT repeat('x', 2147483647)` would allocate 2 GB before any pool
//! or timeout sees it. So every scalar function of a SQL session is wrapped:
//!
//! - **before** it runs, functions whose output can outgrow their input (`repeat`, `lpad`,
//!   `rpad`, `replace`, `regexp_replace`, `array_repeat`, `array_resize`, `range`,
//!   `generate_series`) have the size of their output estimated from their arguments, and
//!   are refused when one value would exceed [`MAX_VALUE_BYTES`] or one batch
//!   [`MAX_BATCH_BYTES`];
//! - **after** any function runs, its output is measured against the same bounds, so a
//!   chain of functions that each grow their input a little (`concat(x, x)` nested in
//!   subqueries) stops at the first step past the bound, having allocated at most a few
//!   times the bound.
//!
//! The `||` operator is not a function DataFusion lets us wrap, so [`refuse_unbounded`]
//! refuses it in `/v1/sql` (`concat` does the same for strings, bounded).

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ExprSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExpressionPlacement, LogicalPlan, Operator,
    ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping,
};
use datafusion::prelude::SessionContext;

/// Largest single value (a string, a list) a SQL function may produce.
pub(crate) const MAX_VALUE_BYTES: usize = 8 * 1024 * 1024;
/// Largest output of one function over one batch of rows.
pub(crate) const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// Why a value was refused; carried inside DataFusion's error so the API can name it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{function}() would produce {what} of about {bytes} bytes, over the {limit}-byte limit of /v1/sql: ask for less"
)]
pub(crate) struct ValueTooLarge {
    /// The function.
    pub function: String,
    /// "one value" or "one batch".
    pub what: &'static str,
    /// The estimated or measured size.
    pub bytes: u128,
    /// The bound.
    pub limit: usize,
}

/// Finds a [`ValueTooLarge`] in a DataFusion error, however deeply it was wrapped.
pub(crate) fn value_too_large(error: &DataFusionError) -> Option<&ValueTooLarge> {
    let mut current: &(dyn std::error::Error + 'static) = error;
    loop {
        if let Some(found) = current.downcast_ref::<ValueTooLarge>() {
            return Some(found);
        }
        if let Some(DataFusionError::External(inner)) = current.downcast_ref::<DataFusionError>()
            && let Some(found) = inner.downcast_ref::<ValueTooLarge>()
        {
            return Some(found);
        }
        current = current.source()?;
    }
}

/// Replaces every scalar function of `context` with its bounded version.
pub(crate) fn bound_functions(context: &SessionContext) {
    let functions: Vec<Arc<ScalarUDF>> = context
        .state()
        .scalar_functions()
        .values()
        .cloned()
        .collect();
    for function in functions {
        let inner: &dyn Any = function.inner().as_ref();
        if inner.is::<Bounded>() {
            continue;
        }
        context.register_udf(bounded(function.inner().clone()));
    }
}

fn bounded(inner: Arc<dyn ScalarUDFImpl>) -> ScalarUDF {
    ScalarUDF::new_from_impl(Bounded {
        growth: Growth::of(inner.name()),
        inner: inner.into(),
    })
}

/// Refuses plans that compute values no bound can see: the `||` operator.
pub(crate) fn refuse_unbounded(plan: &LogicalPlan) -> std::result::Result<(), String> {
    let mut refused = None;
    let _ = plan.apply_with_subqueries(|node| {
        let _ = node.apply_expressions(|expr| {
            expr.apply(|expr| {
                if let Expr::BinaryExpr(binary) = expr
                    && binary.op == Operator::StringConcat
                {
                    refused = Some(
                        "the || operator is not available in /v1/sql: use concat(a, b) (strings) or array_concat(a, b) (arrays)"
                            .to_owned(),
                    );
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        });
        Ok(if refused.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    refused.map_or(Ok(()), Err)
}

/// How a function's output size follows from its arguments, for the check before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// Output no larger than a small multiple of the input: measured afterwards only.
    Linear,
    /// `repeat(text, n)`: len(text) × n.
    Repeat,
    /// `lpad/rpad(text, n [, fill])`: n characters (up to 4 bytes each).
    Pad,
    /// `replace(text, from, to)`: every occurrence of `from` becomes `to`.
    Replace,
    /// `regexp_replace(text, pattern, replacement [, flags])`: up to one replacement per
    /// character.
    RegexpReplace,
    /// `array_repeat(element, n)`: n elements.
    ArrayRepeat,
    /// `array_resize(array, n [, value])`: n elements.
    ArrayResize,
    /// `range/generate_series(start, stop [, step])`.
    Series,
}

impl Growth {
    fn of(name: &str) -> Self {
        match name {
            "repeat" => Growth::Repeat,
            "lpad" | "rpad" => Growth::Pad,
            "replace" => Growth::Replace,
            "regexp_replace" => Growth::RegexpReplace,
            "array_repeat" => Growth::ArrayRepeat,
            "array_resize" => Growth::ArrayResize,
            "range" | "generate_series" => Growth::Series,
            _ => Growth::Linear,
        }
    }
}

/// One argument, row by row: a scalar repeats for every row.
struct Column<'a> {
    value: &'a ColumnarValue,
}

impl Column<'_> {
    /// The byte length of the argument at `row` as text or bytes (0 when null).
    fn byte_len(&self, row: usize) -> u128 {
        match self.value {
            ColumnarValue::Scalar(scalar) => scalar_len(scalar),
            ColumnarValue::Array(array) => array_value_len(array, row),
        }
    }

    /// The argument at `row` as an integer (None when null or not an integer).
    fn int(&self, row: usize) -> Option<i128> {
        match self.value {
            ColumnarValue::Scalar(scalar) => scalar_int(scalar),
            ColumnarValue::Array(array) => {
                if array.is_null(row) {
                    return None;
                }
                ScalarValue::try_from_array(array, row)
                    .ok()
                    .and_then(|scalar| scalar_int(&scalar))
            }
        }
    }

    fn is_integer(&self) -> bool {
        let data_type = match self.value {
            ColumnarValue::Scalar(scalar) => scalar.data_type(),
            ColumnarValue::Array(array) => array.data_type().clone(),
        };
        data_type.is_integer() || data_type == DataType::Null
    }
}

fn scalar_int(scalar: &ScalarValue) -> Option<i128> {
    match scalar.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(Some(value)) => Some(i128::from(value)),
        _ => None,
    }
}

fn scalar_len(scalar: &ScalarValue) -> u128 {
    match scalar {
        ScalarValue::Utf8(Some(text))
        | ScalarValue::LargeUtf8(Some(text))
        | ScalarValue::Utf8View(Some(text)) => text.len() as u128,
        ScalarValue::Binary(Some(bytes))
        | ScalarValue::LargeBinary(Some(bytes))
        | ScalarValue::BinaryView(Some(bytes)) => bytes.len() as u128,
        other if other.is_null() => 0,
        other => other.size() as u128,
    }
}

fn array_value_len(array: &ArrayRef, row: usize) -> u128 {
    if array.is_null(row) {
        return 0;
    }
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).len() as u128,
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).len() as u128,
        DataType::Utf8View => array.as_string_view().value(row).len() as u128,
        DataType::Binary => array.as_binary::<i32>().value(row).len() as u128,
        DataType::LargeBinary => array.as_binary::<i64>().value(row).len() as u128,
        DataType::BinaryView => array.as_binary_view().value(row).len() as u128,
        _ => array.slice(row, 1).get_array_memory_size() as u128,
    }
}

/// The largest value of an array and the whole array's size, in bytes.
fn measure(value: &ColumnarValue) -> (u128, u128) {
    match value {
        ColumnarValue::Scalar(scalar) => {
            let size = scalar_len(scalar);
            (size, size)
        }
        ColumnarValue::Array(array) => {
            let total = array.get_array_memory_size() as u128;
            let largest = match array.data_type() {
                DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView => (0..array.len())
                    .map(|row| array_value_len(array, row))
                    .max()
                    .unwrap_or(0),
                // Lists and others: the whole array bounds each value.
                _ => 0,
            };
            (largest, total)
        }
    }
}

/// A scalar function whose output is bounded (see the module documentation).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
    growth: Growth,
}

impl Bounded {
    fn refuse(&self, what: &'static str, bytes: u128, limit: usize) -> DataFusionError {
        DataFusionError::External(Box::new(ValueTooLarge {
            function: self.inner.name().to_owned(),
            what,
            bytes,
            limit,
        }))
    }

    /// The estimated (largest value, whole batch) of the output, before it is computed.
    fn estimate(&self, args: &ScalarFunctionArgs) -> Result<(u128, u128)> {
        let columns: Vec<Column<'_>> = args.args.iter().map(|value| Column { value }).collect();
        let rows = match args
            .args
            .iter()
            .any(|a| matches!(a, ColumnarValue::Array(_)))
        {
            true => args.number_rows.max(1),
            false => 1,
        };
        let int = |column: usize, row: usize| {
            columns
                .get(column)
                .and_then(|c| c.int(row))
                .unwrap_or(0)
                .max(0) as u128
        };
        let len = |column: usize, row: usize| columns.get(column).map_or(0, |c| c.byte_len(row));
        if self.growth == Growth::Series && !columns.iter().all(Column::is_integer) {
            return Err(DataFusionError::Plan(format!(
                "{}() over dates or timestamps is not available in /v1/sql; use integers",
                self.inner.name()
            )));
        }
        let mut largest = 0u128;
        let mut total = 0u128;
        for row in 0..rows {
            let size = match self.growth {
                Growth::Linear => return Ok((0, 0)),
                Growth::Repeat => len(0, row).saturating_mul(int(1, row)),
                Growth::Pad => int(1, row).saturating_mul(4),
                Growth::Replace => {
                    let text = len(0, row);
                    let occurrences = text / len(1, row).max(1) + 1;
                    text.saturating_add(occurrences.saturating_mul(len(2, row)))
                }
                Growth::RegexpReplace => {
                    let text = len(0, row);
                    text.saturating_add((text + 1).saturating_mul(len(2, row)))
                }
                Growth::ArrayRepeat => len(0, row).max(8).saturating_mul(int(1, row)),
                Growth::ArrayResize => int(1, row).saturating_mul(16),
                Growth::Series => {
                    let (start, stop) = match columns.len() {
                        1 => (0, columns[0].int(row).unwrap_or(0)),
                        _ => (
                            columns[0].int(row).unwrap_or(0),
                            columns[1].int(row).unwrap_or(0),
                        ),
                    };
                    let step = columns
                        .get(2)
                        .and_then(|c| c.int(row))
                        .unwrap_or(1)
                        .unsigned_abs()
                        .max(1);
                    ((stop - start).unsigned_abs() / step + 1).saturating_mul(8)
                }
            };
            largest = largest.max(size);
            total = total.saturating_add(size);
        }
        Ok((largest, total))
    }

    fn check(&self, (largest, total): (u128, u128)) -> Result<()> {
        if largest > MAX_VALUE_BYTES as u128 {
            return Err(self.refuse("one value", largest, MAX_VALUE_BYTES));
        }
        if total > MAX_BATCH_BYTES as u128 {
            return Err(self.refuse("one batch of values", total, MAX_BATCH_BYTES));
        }
        Ok(())
    }
}

#[warn(clippy::missing_trait_methods)]
impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn display_name(&self, args: &[Expr]) -> Result<String> {
        #[expect(deprecated, reason = "delegated as DataFusion's own wrappers do")]
        self.inner.display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        self.inner
            .with_updated_config(config)
            .map(|updated| bounded(updated.inner().clone()))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        #[expect(deprecated, reason = "delegated as DataFusion's own wrappers do")]
        self.inner.is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(self.estimate(&args)?)?;
        let output = self.inner.invoke_with_args(args)?;
        self.check(measure(&output))?;
        Ok(output)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<PreimageResult> {
        self.inner.preimage(args, lit_expr, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.conditional_arguments(args)
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.inner.propagate_constraints(interval, inputs)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<StructFieldMapping> {
        self.inner.struct_field_mapping(literal_args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.inner.placement(args)
    }
}
