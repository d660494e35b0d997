//! A data store for the data API's tests: messages and points in maps, every scan one raw block.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use switchyard_storage::StorageError;
use switchyard_storage::data::{
    Block, DataStore, Ingest, MessageStore, Point, ResourceKey, SeriesInfo, SeriesStore, StoredMessage, TimeRange,
    Value, Written,
};

type Series = BTreeMap<Arc<str>, BTreeMap<i64, Value>>;

#[derive(Default)]
pub struct MemoryDataStore {
    data: Mutex<BTreeMap<ResourceKey, (BTreeMap<i64, StoredMessage>, Series)>>,
}

fn within(range: TimeRange, ts: i64) -> bool {
    range.from.is_none_or(|f| ts >= f) && range.until.is_none_or(|u| ts < u)
}

impl MessageStore for MemoryDataStore {
    fn messages(
        &self,
        r: &ResourceKey,
        range: TimeRange,
        limit: usize,
        _: i64,
    ) -> Result<Vec<StoredMessage>, StorageError> {
        let data = self.data.lock().unwrap();
        let Some((messages, _)) = data.get(r) else { return Ok(vec![]) };
        Ok(messages.values().rev().filter(|m| within(range, m.ts)).take(limit).cloned().collect())
    }

    fn current(&self, r: &ResourceKey, _: i64) -> Result<Option<StoredMessage>, StorageError> {
        Ok(self.data.lock().unwrap().get(r).and_then(|(m, _)| m.values().next_back().cloned()))
    }

    fn delete_messages(&self, r: &ResourceKey, range: TimeRange) -> Result<u64, StorageError> {
        let mut data = self.data.lock().unwrap();
        let Some((messages, _)) = data.get_mut(r) else { return Ok(0) };
        let before = messages.len();
        messages.retain(|ts, _| !within(range, *ts));
        Ok((before - messages.len()) as u64)
    }
}

impl SeriesStore for MemoryDataStore {
    fn series(&self, r: &ResourceKey, _: i64) -> Result<Vec<SeriesInfo>, StorageError> {
        let data = self.data.lock().unwrap();
        let Some((_, series)) = data.get(r) else { return Ok(vec![]) };
        Ok(series
            .iter()
            .filter_map(|(m, points)| {
                let (ts, value) = points.iter().next_back()?;
                Some(SeriesInfo { metric: m.clone(), latest: Point { ts: *ts, value: value.clone() } })
            })
            .collect())
    }

    fn scan(&self, r: &ResourceKey, metric: &str, range: TimeRange, _: i64) -> Result<Vec<Block>, StorageError> {
        let data = self.data.lock().unwrap();
        let Some(points) = data.get(r).and_then(|(_, s)| s.get(metric)) else { return Ok(vec![]) };
        let raw = points
            .iter()
            .filter(|(ts, _)| within(range, **ts))
            .map(|(ts, value)| Point { ts: *ts, value: value.clone() })
            .collect();
        Ok(vec![Block::Raw(raw)])
    }

    fn delete_points(
        &self,
        r: &ResourceKey,
        range: TimeRange,
        metrics: Option<&[String]>,
    ) -> Result<u64, StorageError> {
        let mut data = self.data.lock().unwrap();
        let Some((_, series)) = data.get_mut(r) else { return Ok(0) };
        let mut deleted = 0;
        for (name, points) in series.iter_mut() {
            if metrics.is_none_or(|m| m.iter().any(|n| **n == **name)) {
                let before = points.len();
                points.retain(|ts, _| !within(range, *ts));
                deleted += (before - points.len()) as u64;
            }
        }
        series.retain(|_, points| !points.is_empty());
        Ok(deleted)
    }
}

impl DataStore for MemoryDataStore {
    fn write(&self, batch: &[Ingest], _: i64) -> Result<Vec<Written>, StorageError> {
        let mut data = self.data.lock().unwrap();
        for i in batch {
            let (messages, series) = data.entry(i.resource.clone()).or_default();
            messages.insert(i.ts, StoredMessage { ts: i.ts, body: i.body.clone() });
            for (name, value) in &i.points {
                series.entry(name.clone()).or_default().insert(i.ts, value.clone());
            }
        }
        Ok(vec![Written::Stored; batch.len()])
    }

    fn drop_tenant(&self, tenant: &str) -> Result<(), StorageError> {
        self.data.lock().unwrap().retain(|k, _| &*k.tenant != tenant);
        Ok(())
    }

    fn maintain(&self, _: i64) -> Result<(), StorageError> {
        Ok(())
    }
}
