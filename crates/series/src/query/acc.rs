//! One bucket's running aggregates, fed point by point or a whole chunk [`Summary`] at a time,
//! and turned into the row's cells.
//!
//! Definitions (what `run` documents): `count` counts every point, text included; `min`, `max`,
//! `mean`, `sum`, `std`, `median` and `percentile` cover the numbers only and are null when the
//! bucket has none. `min`/`max` skip NaN. `std` is the sample standard deviation (n − 1; null
//! under two numbers), from a running mean and M2 (Welford, merged across chunks by Chan's
//! formula), so large offsets do not cancel. `percentile(p)` is exact over the non-NaN numbers:
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
    /// The numbers, kept only when a quantile is asked for.
    values: Option<Vec<f64>>,
}

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
            values: keep_values.then(Vec::new),
        }
    }

    /// Adds a point; points arrive in timestamp order.
    pub(crate) fn add(&mut self, p: &Point) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(p.clone());
        }
        self.last = Some(p.clone());
        if let Value::Number(v) = p.value {
            self.add_number(v);
            if let Some(values) = &mut self.values {
                values.push(v);
            }
        }
    }

    fn add_number(&mut self, v: f64) {
        self.n += 1;
        self.sum += v;
        let delta = v - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (v - self.mean);
        self.min = f64::min(self.min, v);
        self.max = f64::max(self.max, v);
    }

    /// Adds a whole chunk by its summary; `numbers` are its numeric values when quantiles are
    /// asked for (the caller decodes them).
    pub(crate) fn add_summary(&mut self, s: &Summary, numbers: Option<Vec<f64>>) {
        self.count += s.count;
        if self.first.is_none() {
            self.first = Some(s.first.clone());
        }
        self.last = Some(s.last.clone());
        if s.numbers > 0 {
            let (na, nb) = (self.n as f64, s.numbers as f64);
            let mean_b = s.sum / nb;
            if self.n == 0 {
                self.mean = mean_b;
                self.m2 = s.m2;
            } else {
                let n = na + nb;
                let delta = mean_b - self.mean;
                self.m2 += s.m2 + delta * delta * (na * nb / n);
                self.mean += delta * (nb / n);
            }
            self.n += s.numbers;
            self.sum += s.sum;
            self.min = f64::min(self.min, s.min);
            self.max = f64::max(self.max, s.max);
        }
        if let (Some(values), Some(numbers)) = (&mut self.values, numbers) {
            values.extend(numbers);
        }
    }

    /// The cells for `aggregates`, in order.
    pub(crate) fn cells(mut self, aggregates: &[Aggregate]) -> Vec<Cell> {
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
