//! Time series for the metrics store (SPEC §4.3): the [`Point`] every backend stores, the sealed
//! [`chunk`] format with its per-chunk [`chunk::Summary`], and [`query`], which answers a series
//! query (range, aggregates, grouping) from chunks and raw points. Pure: no I/O, no clocks, so
//! every backend stores the same bytes and answers the same way.

use std::sync::Arc;

pub mod chunk;
pub mod query;

/// One value of a series: numbers (booleans arrive as 0/1) or text, which is counted but never
/// averaged.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Text(Arc<str>),
}

/// One point: a timestamp in epoch milliseconds and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub ts: i64,
    pub value: Value,
}
