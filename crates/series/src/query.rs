//! Answers a series query (SPEC §5: `from/until/aggregates/grouping/order/limit`) from the blocks
//! a store returns: sealed chunks, whose summaries answer non-quantile aggregates of buckets they
//! lie within, and raw points not yet sealed.
//!
//! Semantics (each aggregate is defined in the `acc` module's documentation):
//! - Points in `[from, until)` count. Blocks come oldest write first; where blocks overlap in
//!   time, a point of a later block replaces every point of earlier blocks at the same timestamp
//!   (duplicates within one block are all kept). Blocks that overlap nothing are taken as they
//!   are (no merge).
//! - No aggregates: the points themselves, one cell each (the value; text as [`Cell::Text`]);
//!   grouping is ignored.
//! - Aggregates with grouping `none`: one row for the whole range, at `from` (none when the range
//!   holds no point). With buckets: each bucket starts at a multiple of its width since the Unix
//!   epoch (UTC), the row's timestamp is the bucket start (so the first may precede an unaligned
//!   `from`, though only points from `from` on count), empty buckets are omitted. `auto`
//!   picks the width from a ladder ([`parse::auto_width`]: at most 500 buckets).
//! - A sealed chunk that lies within the range and within one bucket and overlaps no other block
//!   is answered from its header summary; only quantiles then decode its numbers (never its
//!   timestamps).
//! - Rows ascend by timestamp, or descend under `order=desc`; `limit` applies after ordering
//!   (raw points stop decoding once `limit` rows are found).

use std::sync::Arc;

use crate::chunk::{Chunk, ChunkError};
use crate::{Point, Value};

mod acc;
pub mod parse;

use acc::Acc;

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
    /// 0–100, exact: linear interpolation between the closest ranks (numpy's default).
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
    validate(query)?;
    if query.aggregates.is_empty() {
        return raw(query, blocks);
    }
    let mut rows = aggregate(query, blocks)?;
    if query.order == Order::Desc {
        rows.reverse();
    }
    if let Some(limit) = query.limit {
        rows.truncate(limit);
    }
    Ok(rows)
}

/// The points themselves, in the asked order, decoding no more pieces than `limit` needs.
fn raw(query: &Query, blocks: Vec<Block>) -> Result<Vec<Row>, QueryError> {
    let desc = query.order == Order::Desc;
    let limit = query.limit.unwrap_or(usize::MAX);
    let mut pieces = pieces(query, blocks)?;
    if desc {
        pieces.reverse();
    }
    let mut rows = Vec::new();
    for piece in pieces {
        if rows.len() >= limit {
            break;
        }
        let mut points = piece.points(query)?;
        if desc {
            points.reverse();
        }
        let take = limit - rows.len();
        rows.extend(points.into_iter().take(take).map(|p| Row { ts: p.ts, cells: vec![Cell::from(&p.value)] }));
    }
    Ok(rows)
}

fn validate(query: &Query) -> Result<(), QueryError> {
    if query.from > query.until {
        return Err(QueryError::Invalid("from is after until".into()));
    }
    if let Grouping::Every { ms } = query.grouping
        && !(1..=parse::MAX_BUCKET_MS).contains(&ms)
    {
        return Err(QueryError::Invalid(format!("bucket width {ms} ms is out of range")));
    }
    for a in &query.aggregates {
        if let Aggregate::Percentile(p) = a
            && !(0.0..=100.0).contains(p)
        {
            return Err(QueryError::Invalid(format!("percentile {p} is outside 0–100")));
        }
    }
    Ok(())
}

/// Maps a timestamp to its bucket's start.
#[derive(Clone, Copy)]
enum Buckets {
    Whole(i64),
    Every(i64),
}

impl Buckets {
    fn of(query: &Query) -> Buckets {
        match query.grouping {
            Grouping::None => Buckets::Whole(query.from),
            Grouping::Auto => Buckets::Every(parse::auto_width(query.from, query.until)),
            Grouping::Every { ms } => Buckets::Every(ms),
        }
    }

    fn start(self, ts: i64) -> i64 {
        match self {
            Buckets::Whole(from) => from,
            Buckets::Every(w) => ts.saturating_sub(ts.rem_euclid(w)),
        }
    }

    /// Where the bucket holding `ts` ends (exclusive; saturating at the end of time).
    fn end(self, ts: i64) -> i64 {
        match self {
            Buckets::Whole(_) => i64::MAX,
            Buckets::Every(w) => {
                let end = i128::from(ts) - i128::from(ts.rem_euclid(w)) + i128::from(w);
                i64::try_from(end).unwrap_or(i64::MAX)
            }
        }
    }
}

fn aggregate(query: &Query, blocks: Vec<Block>) -> Result<Vec<Row>, QueryError> {
    let buckets = Buckets::of(query);
    let mut rows = Rows::new(&query.aggregates, MAX_QUANTILE_POINTS);
    for piece in pieces(query, blocks)? {
        if let Piece::Alone(Block::Sealed(chunk), (lo, hi)) = &piece
            && *lo >= query.from
            && *hi < query.until
            && buckets.start(*lo) == buckets.start(*hi)
        {
            let numbers = if rows.quantiles { Some(chunk.numbers()?) } else { None };
            rows.bucket(buckets.start(*lo))?.add_summary(&chunk.summary()?, numbers);
            continue;
        }
        let mut current = (i64::MAX, i64::MIN); // the bucket last used: [start, end)
        let mut add = |ts: i64, value: &Value| {
            if !(current.0..current.1).contains(&ts) {
                current = (buckets.start(ts), buckets.end(ts));
            }
            rows.bucket(current.0).map(|acc| acc.add(ts, value))
        };
        match piece {
            Piece::Alone(Block::Sealed(chunk), _) => {
                let columns = chunk.decode()?;
                if columns.texts.is_empty() {
                    // Numbers only: whole runs of a bucket at once.
                    let ts = &columns.ts;
                    let lo = ts.partition_point(|t| *t < query.from);
                    let hi = ts.partition_point(|t| *t < query.until);
                    let mut i = lo;
                    while i < hi {
                        let end = buckets.end(ts[i]);
                        let j = (i + ts[i..hi].partition_point(|t| *t < end)).max(i + 1);
                        rows.bucket(buckets.start(ts[i]))?.add_numbers(&ts[i..j], &columns.numbers[i..j]);
                        i = j;
                    }
                    continue;
                }
                for (ts, value) in columns.into_values() {
                    if (query.from..query.until).contains(&ts) {
                        add(ts, &value)?;
                    }
                }
            }
            other => {
                for p in other.points(query)? {
                    add(p.ts, &p.value)?;
                }
            }
        }
    }
    rows.finish()
}

/// Exact quantiles keep a bucket's numbers in memory (8 bytes each): a bucket holding more is
/// refused, as [`QueryError::Invalid`] (narrow the range or use smaller buckets).
pub const MAX_QUANTILE_POINTS: usize = 10_000_000;

/// The rows made so far and the open bucket. Pieces come in timestamp order and do not overlap,
/// so a bucket once left is complete: its row is made then, and its numbers freed.
struct Rows<'q> {
    aggregates: &'q [Aggregate],
    quantiles: bool,
    limit: usize,
    done: Vec<Row>,
    open: Option<(i64, Acc)>,
}

impl<'q> Rows<'q> {
    fn new(aggregates: &'q [Aggregate], limit: usize) -> Rows<'q> {
        let quantiles = aggregates.iter().any(|a| matches!(a, Aggregate::Median | Aggregate::Percentile(_)));
        Rows { aggregates, quantiles, limit, done: Vec::new(), open: None }
    }

    /// The bucket starting at `start`: the open one, or a new one after it.
    fn bucket(&mut self, start: i64) -> Result<&mut Acc, QueryError> {
        if self.open.as_ref().is_none_or(|(s, _)| *s != start) {
            self.close()?;
            self.open = Some((start, Acc::new(self.quantiles)));
        }
        let kept = self.open.as_ref().map_or(0, |(_, acc)| acc.kept());
        self.check(kept)?;
        Ok(&mut self.open.as_mut().expect("just opened").1)
    }

    fn check(&self, kept: usize) -> Result<(), QueryError> {
        if kept > self.limit {
            return Err(QueryError::Invalid(format!(
                "an exact quantile over more than {} points in one bucket; narrow the range or use smaller buckets",
                self.limit
            )));
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), QueryError> {
        if let Some((ts, acc)) = self.open.take() {
            self.check(acc.kept())?;
            self.done.push(Row { ts, cells: acc.cells(self.aggregates) });
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<Row>, QueryError> {
        self.close()?;
        Ok(self.done)
    }
}

/// A block that overlaps no other (with its span), or the merged points of blocks that overlap.
enum Piece {
    Alone(Block, (i64, i64)),
    Merged(Vec<Point>),
}

impl Piece {
    /// The points within the query's range, in timestamp order.
    fn points(self, query: &Query) -> Result<Vec<Point>, QueryError> {
        let mut points = match self {
            Piece::Alone(Block::Sealed(chunk), _) => chunk.points()?,
            Piece::Alone(Block::Raw(points), _) | Piece::Merged(points) => points,
        };
        let in_range = |p: &Point| (query.from..query.until).contains(&p.ts);
        if !points.first().is_some_and(in_range) || !points.last().is_some_and(in_range) {
            points.retain(in_range);
        }
        Ok(points)
    }
}

/// Sorts raw blocks, drops blocks outside the range, and merges blocks whose spans overlap (the
/// later block winning each shared timestamp). The pieces come in timestamp order.
fn pieces(query: &Query, blocks: Vec<Block>) -> Result<Vec<Piece>, QueryError> {
    let mut spanned = Vec::with_capacity(blocks.len());
    for block in blocks {
        let (block, span) = match block {
            Block::Sealed(chunk) => {
                let span = chunk.span()?;
                (Block::Sealed(chunk), span)
            }
            Block::Raw(mut points) => {
                if !points.is_sorted_by_key(|p| p.ts) {
                    points.sort_by_key(|p| p.ts);
                }
                let (Some(first), Some(last)) = (points.first(), points.last()) else {
                    continue;
                };
                let span = (first.ts, last.ts);
                (Block::Raw(points), span)
            }
        };
        if span.1 >= query.from && span.0 < query.until {
            spanned.push((span, block));
        }
    }
    // Stable: equal starts keep write order, which merging relies on.
    let mut order: Vec<usize> = (0..spanned.len()).collect();
    order.sort_by_key(|i| spanned[*i].0.0);
    let mut slots: Vec<Option<((i64, i64), Block)>> = spanned.into_iter().map(Some).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        let mut hi = slots[order[i]].as_ref().expect("unused").0.1;
        while j < order.len() && slots[order[j]].as_ref().expect("unused").0.0 <= hi {
            hi = hi.max(slots[order[j]].as_ref().expect("unused").0.1);
            j += 1;
        }
        if j == i + 1 {
            let (span, block) = slots[order[i]].take().expect("unused");
            out.push(Piece::Alone(block, span));
        } else {
            let mut members: Vec<usize> = order[i..j].to_vec();
            members.sort_unstable();
            let blocks = members.iter().map(|m| slots[*m].take().expect("unused").1);
            out.push(Piece::Merged(merge(blocks)?));
        }
        i = j;
    }
    Ok(out)
}

/// Merges overlapping blocks given oldest first: at each timestamp, only the points of the
/// latest block holding that timestamp survive.
fn merge(blocks: impl Iterator<Item = Block>) -> Result<Vec<Point>, QueryError> {
    let mut tagged: Vec<(usize, Point)> = Vec::new();
    for (age, block) in blocks.enumerate() {
        let points = match block {
            Block::Sealed(chunk) => chunk.points()?,
            Block::Raw(points) => points,
        };
        tagged.extend(points.into_iter().map(|p| (age, p)));
    }
    tagged.sort_by_key(|(age, p)| (p.ts, *age));
    let mut out: Vec<Point> = Vec::with_capacity(tagged.len());
    let mut k = 0;
    while k < tagged.len() {
        let ts = tagged[k].1.ts;
        let mut end = k;
        while end < tagged.len() && tagged[end].1.ts == ts {
            end += 1;
        }
        let newest = tagged[end - 1].0;
        out.extend(tagged[k..end].iter().filter(|(age, _)| *age == newest).map(|(_, p)| p.clone()));
        k = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_buckets_are_capped_and_closed_buckets_freed() {
        let aggregates = [Aggregate::Median];
        let mut rows = Rows::new(&aggregates, 3);
        for ts in 0..3 {
            rows.bucket(0).unwrap().add(ts, &crate::Value::Number(1.0));
        }
        // A new bucket closes the full one: allowed, it holds exactly the limit.
        rows.bucket(10).unwrap().add(10, &crate::Value::Number(2.0));
        assert_eq!(rows.done.len(), 1);
        for ts in 11..14 {
            rows.bucket(10).unwrap().add(ts, &crate::Value::Number(2.0));
        }
        assert!(matches!(rows.finish(), Err(QueryError::Invalid(_))));
        // Without quantiles nothing is kept, so nothing is capped.
        let mut rows = Rows::new(&[Aggregate::Mean], 3);
        for ts in 0..10 {
            rows.bucket(0).unwrap().add(ts, &crate::Value::Number(1.0));
        }
        assert_eq!(rows.finish().unwrap().len(), 1);
    }
}
