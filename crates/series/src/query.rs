//! Answers a series query (SPEC §5: `from/until/aggregates/grouping/order/limit`) from the blocks
//! a store returns: sealed chunks, whose summaries answer non-quantile aggregates of buckets they
//! lie within, and raw points not yet sealed.
//!
//! INTERFACE ONLY — the engine is being written.

use std::sync::Arc;

use crate::Point;
use crate::chunk::{Chunk, ChunkError};

/// One aggregate column, as named in `aggregates=` (`percentile(95)`, `median`, ...).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregate {
    Min,
    Max,
    Mean,
    Median,
    Sum,
    Count,
    First,
    Last,
    Std,
    /// 0–100, exact (nearest-rank or interpolated: documented where implemented).
    Percentile(f64),
}

/// `grouping=`: none, auto (chosen from the range), or fixed buckets of `ms` milliseconds aligned
/// to multiples of `ms` since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    None,
    Auto,
    Every { ms: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// What a store hands the engine for one series and range, oldest write first. Blocks may
/// overlap in time; where two points share a timestamp the later block's point wins.
#[derive(Debug, Clone)]
pub enum Block {
    Sealed(Chunk),
    Raw(Vec<Point>),
}

/// A parsed query over `[from, until)` (epoch ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub from: i64,
    pub until: i64,
    pub aggregates: Vec<Aggregate>,
    pub grouping: Grouping,
    pub order: Order,
    pub limit: Option<usize>,
}

/// One output cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Number(f64),
    Text(Arc<str>),
    Null,
}

/// One output row: a timestamp (the point's, or the bucket start) and one cell per aggregate in
/// request order (one cell, the value, when no aggregate was asked for).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub ts: i64,
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("invalid query: {0}")]
    Invalid(String),
    #[error(transparent)]
    Chunk(#[from] ChunkError),
}

/// Runs `query` over `blocks`.
pub fn run(query: &Query, blocks: Vec<Block>) -> Result<Vec<Row>, QueryError> {
    let _ = (query, blocks);
    todo!("query engine")
}
