//! The sealed chunk: a run of one series' points in time order, compressed, with a [`Summary`]
//! in its header so that aggregates other than quantiles never decode the points.
//!
//! INTERFACE ONLY — the format is being written.

use bytes::Bytes;

use crate::Point;

/// Why stored bytes are not a chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt chunk: {0}")]
pub struct ChunkError(pub String);

/// What a chunk holds, readable from its header alone. `min`, `max`, `sum`, `sum_sq` cover the
/// numeric points only (`numbers` of them); `first`/`last` are the points with the smallest and
/// largest timestamp, whatever their value.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub numbers: u64,
    pub sum: f64,
    pub sum_sq: f64,
    pub min: f64,
    pub max: f64,
    pub first: Point,
    pub last: Point,
}

/// An encoded chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk(Bytes);

impl Chunk {
    /// Encodes `points` (any order; they are sorted by timestamp, stable, duplicates kept).
    /// Panics on an empty slice: a chunk holds at least one point.
    pub fn encode(points: &[Point]) -> Chunk {
        let _ = points;
        todo!("chunk format")
    }
    /// Checks the header of stored bytes.
    pub fn from_bytes(bytes: Bytes) -> Result<Chunk, ChunkError> {
        Ok(Chunk(bytes))
    }
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
    /// The header's summary, without decoding the points.
    pub fn summary(&self) -> Result<Summary, ChunkError> {
        todo!("chunk format")
    }
    /// The smallest and largest timestamp, from the header.
    pub fn span(&self) -> Result<(i64, i64), ChunkError> {
        todo!("chunk format")
    }
    /// Decodes every point, in timestamp order.
    pub fn points(&self) -> Result<Vec<Point>, ChunkError> {
        todo!("chunk format")
    }
}
