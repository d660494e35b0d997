//! One bucket's running aggregates, fed point by point or a whole chunk [`Summary`] at a time,
//! and turned into the row's cells.
//!
//! Definitions (what `run` documents): `count` counts every point, text included; `min`, `max`,
//! `mean`, `sum`, `std`, `median` and `percentile` cover the numbers only and are null when the
//! bucket has none. `min`/`max` skip NaN. `std` is the sample standard deviation (n − 1; null
//! under two numbers), from each batch's mean and M2 (two-pass), merged across batches and
//! chunks by Chan's formula, so large offsets do not cancel. `percentile(p)` is exact over the non-NaN numbers:
//! linear interpolation between the closest ranks at rank p/100·(n − 1), as numpy's default;
//! `median` is `percentile(50)`. `first`/`last` are the points with the smallest and largest
//! timestamp, text or number.

use crate::chunk::Summary;
use crate::{Point, Value};

use super::{Aggregate, Cell};

#[derive(Debug, Clone)]
pub(crate) struct Acc {
    count: u64,
    n: u64,
    sum: f64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    first: Option<Point>,
    last: Option<Point>,
    /// Numbers not yet folded into `n`..`max`: folded [`BATCH`] at a time, two-pass, which is
    /// both faster and more precise than a division per point.
    pending: Vec<f64>,
    /// The numbers, kept only when a quantile is asked for.
    values: Option<Vec<f64>>,
}

/// Numbers folded at once.
const BATCH: usize = 1024;

impl Acc {
    pub(crate) fn new(keep_values: bool) -> Acc {
        Acc {
            count: 0,
            n: 0,
            sum: 0.0,
            mean: 0.0,
            m2: 0.0,
            min: f64::NAN,
            max: f64::NAN,
            first: None,
            last: None,
            pending: Vec::new(),
            values: keep_values.then(Vec::new),
        }
    }

    /// Adds a point; points arrive in timestamp order.
    pub(crate) fn add(&mut self, ts: i64, value: &Value) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(Point { ts, value: value.clone() });
        }
        self.last = Some(Point { ts, value: value.clone() });
        if let Value::Number(v) = *value {
            self.add_number(v);
            if let Some(values) = &mut self.values {
                values.push(v);
            }
        }
    }

    /// Adds numeric points, in timestamp order (`ts` and `values` of equal length, not empty).
    pub(crate) fn add_numbers(&mut self, ts: &[i64], values: &[f64]) {
        let last = ts.len() - 1;
        self.count += ts.len() as u64;
        if self.first.is_none() {
            self.first = Some(Point { ts: ts[0], value: Value::Number(values[0]) });
        }
        self.last = Some(Point { ts: ts[last], value: Value::Number(values[last]) });
        for batch in values.chunks(BATCH) {
            self.pending.extend_from_slice(batch);
            if self.pending.len() >= BATCH {
                self.flush();
            }
        }
        if let Some(kept) = &mut self.values {
            kept.extend_from_slice(values);
        }
    }

    fn add_number(&mut self, v: f64) {
        self.pending.push(v);
        if self.pending.len() >= BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let sum: f64 = self.pending.iter().sum();
        let mean = sum / self.pending.len() as f64;
        let m2 = self.pending.iter().map(|v| (v - mean) * (v - mean)).sum();
        let min = self.pending.iter().copied().fold(f64::NAN, f64::min);
        let max = self.pending.iter().copied().fold(f64::NAN, f64::max);
        self.merge(self.pending.len() as u64, sum, m2, min, max);
        self.pending.clear();
    }

    /// Folds in `nb` numbers given by their sum, M2, min and max (Chan et al.'s parallel
    /// variance: no sum of squares, so nothing cancels at large offsets).
    fn merge(&mut self, nb: u64, sum: f64, m2: f64, min: f64, max: f64) {
        if nb == 0 {
            return;
        }
        let mean_b = sum / nb as f64;
        if self.n == 0 {
            self.mean = mean_b;
            self.m2 = m2;
        } else {
            let (na, nb) = (self.n as f64, nb as f64);
            let n = na + nb;
            let delta = mean_b - self.mean;
            self.m2 += m2 + delta * delta * (na * nb / n);
            self.mean += delta * (nb / n);
        }
        self.n += nb;
        self.sum += sum;
        self.min = f64::min(self.min, min);
        self.max = f64::max(self.max, max);
    }

    /// Adds a whole chunk by its summary; `numbers` are its numeric values when quantiles are
    /// asked for (the caller decodes them).
    pub(crate) fn add_summary(&mut self, s: &Summary, numbers: Option<Vec<f64>>) {
        self.count += s.count;
        if self.first.is_none() {
            self.first = Some(s.first.clone());
        }
        self.last = Some(s.last.clone());
        self.merge(s.numbers, s.sum, s.m2, s.min, s.max);
        if let (Some(values), Some(numbers)) = (&mut self.values, numbers) {
            values.extend(numbers);
        }
    }

    /// How many numbers are kept for quantiles.
    pub(crate) fn kept(&self) -> usize {
        self.values.as_ref().map_or(0, Vec::len)
    }

    /// The cells for `aggregates`, in order.
    pub(crate) fn cells(mut self, aggregates: &[Aggregate]) -> Vec<Cell> {
        self.flush();
        if let Some(values) = &mut self.values {
            values.retain(|v| !v.is_nan());
        }
        let numeric = |v: f64| if self.n == 0 { Cell::Null } else { Cell::Number(v) };
        let point = |p: &Option<Point>| p.as_ref().map_or(Cell::Null, |p| Cell::from(&p.value));
        let mut out = Vec::with_capacity(aggregates.len());
        for a in aggregates {
            out.push(match a {
                Aggregate::Count => Cell::Number(self.count as f64),
                Aggregate::First => point(&self.first),
                Aggregate::Last => point(&self.last),
                Aggregate::Min => numeric(self.min),
                Aggregate::Max => numeric(self.max),
                Aggregate::Sum => numeric(self.sum),
                Aggregate::Mean => numeric(self.sum / self.n as f64),
                Aggregate::Std if self.n < 2 => Cell::Null,
                Aggregate::Std => Cell::Number((self.m2 / (self.n - 1) as f64).sqrt()),
                Aggregate::Median => quantile(self.values.as_deref_mut(), 50.0),
                Aggregate::Percentile(p) => quantile(self.values.as_deref_mut(), *p),
            });
        }
        out
    }
}

impl From<&Value> for Cell {
    fn from(v: &Value) -> Cell {
        match v {
            Value::Number(n) => Cell::Number(*n),
            Value::Text(t) => Cell::Text(t.clone()),
        }
    }
}

fn quantile(values: Option<&mut [f64]>, p: f64) -> Cell {
    match values {
        Some(values) if !values.is_empty() => Cell::Number(percentile(values, p)),
        _ => Cell::Null,
    }
}

/// The `p`th percentile (0–100) of non-NaN `values` (not empty), by linear interpolation
/// between the closest ranks. Reorders `values`.
pub(crate) fn percentile(values: &mut [f64], p: f64) -> f64 {
    let rank = p.clamp(0.0, 100.0) / 100.0 * (values.len() - 1) as f64;
    let lo = (rank.floor() as usize).min(values.len() - 1);
    let frac = rank - lo as f64;
    let (_, a, right) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let a = *a;
    match right.iter().copied().min_by(f64::total_cmp) {
        Some(b) if frac > 0.0 => a + (b - a) * frac,
        _ => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_like_numpy() {
        let v = || vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&mut v(), 0.0), 1.0);
        assert_eq!(percentile(&mut v(), 100.0), 4.0);
        assert_eq!(percentile(&mut v(), 50.0), 2.5);
        assert_eq!(percentile(&mut v(), 25.0), 1.75);
        assert_eq!(percentile(&mut [7.0], 90.0), 7.0);
    }

    #[test]
    fn merged_summaries_keep_variance_at_large_offsets() {
        let offset = 1e9;
        let xs: Vec<f64> = (0..1000).map(|i| offset + f64::from(i % 7) * 0.1).collect();
        let points: Vec<Point> =
            xs.iter().enumerate().map(|(i, v)| Point { ts: i as i64, value: Value::Number(*v) }).collect();
        let mut merged = Acc::new(false);
        for part in points.chunks(100) {
            let s = crate::chunk::Chunk::encode(part).summary().unwrap();
            merged.add_summary(&s, None);
        }
        let mean = xs.iter().map(|v| v - offset).sum::<f64>() / 1000.0;
        let var = xs.iter().map(|v| (v - offset - mean).powi(2)).sum::<f64>() / 999.0;
        let Cell::Number(std) = merged.cells(&[Aggregate::Std])[0] else { panic!() };
        assert!((std - var.sqrt()).abs() < 1e-6, "{std} vs {}", var.sqrt());
    }
}
