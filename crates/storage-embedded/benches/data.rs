//! Size on disk and durable write rate of the embedded data store on a generated 1 Hz mix.
//!
//! `cargo bench -p switchyard-storage-embedded --bench data -- [HOURS] [DEVICES]` (default 2 h,
//! 100 devices). Each device sends one message a second with ten metrics: three smooth decimal
//! readings (temperature 0.1, humidity 0.1, pressure 0.01 resolution), two counters (an integer
//! and an energy meter with 3 decimals), two booleans (a door changing rarely, motion often), two
//! noisy readings (2 decimals of jitter, and an accelerometer at 4 decimals) and one text state.
//! Written as the pipeline does: one `write` per second of data (one message per device, so
//! batches of DEVICES messages), each durable before the next. Then `maintain` seals every head;
//! the report gives the sizes as idle maintenance leaves them, then after a major compaction
//! (one run per table): bytes per point for the sealed series alone (chunks and series index)
//! and for the whole directory (message cache, 100 per device, included).
//!
//! A plain `main`, not a test: nothing here asserts a duration.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use switchyard_storage::data::{DataStore, Ingest, ResourceKey, Value};
use switchyard_storage_embedded::{DataConfig, EmbeddedDataStore};

const METRICS: [&str; 10] =
    ["temp", "humidity", "pressure", "count", "energy", "door", "motion", "jitter", "accel", "state"];
const START: i64 = 1_700_000_000_000;

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One device's running state.
struct Device {
    rng: Rng,
    count: f64,
    energy: f64,
    door: f64,
    motion: f64,
    phase: f64,
}

fn round(v: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (v * scale).round() / scale
}

impl Device {
    fn values(&mut self, second: i64) -> Vec<Value> {
        let t = second as f64 / 3600.0 + self.phase;
        self.count += (self.rng.next() % 3) as f64;
        self.energy = round(self.energy + 0.001 * (1 + self.rng.next() % 5) as f64, 3);
        if self.rng.next().is_multiple_of(600) {
            self.door = 1.0 - self.door;
        }
        if self.rng.next().is_multiple_of(20) {
            self.motion = 1.0 - self.motion;
        }
        let state = if self.rng.next().is_multiple_of(1000) { "alarm" } else { "ok" };
        vec![
            Value::Number(round(21.0 + 4.0 * (t * std::f64::consts::TAU / 24.0).sin(), 1)),
            Value::Number(round(55.0 + 10.0 * (t / 5.0).cos(), 1)),
            Value::Number(round(1013.25 + 3.0 * (t / 11.0).sin(), 2)),
            Value::Number(self.count),
            Value::Number(self.energy),
            Value::Number(self.door),
            Value::Number(self.motion),
            Value::Number(round(12.0 + self.rng.unit() - 0.5, 2)),
            Value::Number(round((self.rng.unit() - 0.5) * 0.2, 4)),
            Value::Text(state.into()),
        ]
    }
}

fn body(resource: &str, ts: i64, values: &[Value]) -> Bytes {
    let mut out = format!("{{\"timestamp\":{ts},\"resource\":\"{resource}\"");
    for (name, value) in METRICS.iter().zip(values) {
        match value {
            Value::Number(n) => out.push_str(&format!(",\"{name}\":{n}")),
            Value::Text(s) => out.push_str(&format!(",\"{name}\":\"{s}\"")),
        }
    }
    out.push('}');
    Bytes::from(out)
}

/// CPU seconds (user and system) this process has used so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime: fields 14 and 15 of the line, 11 and 12 counted from after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Bytes of the files under `path`.
fn directory_size(path: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).expect("read directory").flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() { directory_size(&entry.path()) } else { meta.len() };
    }
    total
}

fn main() {
    let args: Vec<f64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let hours = args.first().copied().unwrap_or(2.0);
    let devices = args.get(1).copied().unwrap_or(100.0) as i64;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let store = EmbeddedDataStore::open(dir.path(), DataConfig::default()).expect("open");
    let names: Vec<Arc<str>> = METRICS.iter().map(|m| Arc::from(*m)).collect();
    let mut fleet: Vec<(ResourceKey, Device)> = (0..devices)
        .map(|d| {
            let key = ResourceKey { tenant: "bench".into(), resource: format!("device-{d:04}").into() };
            let device = Device {
                rng: Rng(0x9E37_79B9_7F4A_7C15 ^ (d as u64 + 1)),
                count: 0.0,
                energy: 100.0 * d as f64,
                door: 0.0,
                motion: 0.0,
                phase: d as f64 * 0.37,
            };
            (key, device)
        })
        .collect();

    let seconds = (hours * 3600.0) as i64;
    let mut writing = std::time::Duration::ZERO;
    let mut maintaining = std::time::Duration::ZERO;
    let cpu_before = cpu_seconds();
    for second in 0..seconds {
        let ts = START + second * 1000;
        let batch: Vec<Ingest> = (fleet.iter_mut())
            .map(|(key, device)| {
                let values = device.values(second);
                Ingest {
                    resource: key.clone(),
                    ts,
                    message_id: None,
                    body: body(&key.resource, ts, &values),
                    expires_at: None,
                    keep: 100,
                    points: names.iter().cloned().zip(values).collect(),
                    channel: switchyard_storage::data::Channel::Events,
                    forward: true,
                }
            })
            .collect();
        let started = Instant::now();
        store.write(&batch, ts).expect("write");
        writing += started.elapsed();
        if second % 600 == 599 {
            let started = Instant::now();
            store.maintain(ts).expect("maintain");
            maintaining += started.elapsed();
        }
    }
    let cpu = cpu_seconds() - cpu_before;
    let messages = (seconds * devices) as f64;
    let points = messages * METRICS.len() as f64;
    let started = Instant::now();
    store.maintain(START + seconds * 1000 + 2 * 3_600_000).expect("final maintain");
    maintaining += started.elapsed();
    // Idle maintenance as the server runs it: the memtables flushed, then what deletions left
    // compacted (see the store's `compact` module).
    let idle = START + seconds * 1000 + 2 * 3_600_000;
    for _ in 0..3 {
        store.maintain(idle).expect("idle maintain");
    }
    let left = directory_size(dir.path()) as f64;
    println!("as maintenance leaves it (no explicit compaction):");
    for (name, bytes) in store.disk_usage().expect("disk usage") {
        println!("  {name}: {bytes} bytes");
    }
    println!("  files in the data directory: {left:.0} bytes, {:.3} B/point", left / (seconds * devices * 10) as f64);
    store.compact().expect("compact");
    let series = store.series_disk_space() as f64;
    let total = directory_size(dir.path()) as f64;
    println!("data set: {hours} h x {devices} devices x 10 metrics at 1 Hz = {points} points, {messages} messages");
    println!(
        "durable writes of {devices} messages ({} points): {:.0} messages/s, {:.0} points/s ({:.2} ms per write)",
        devices * 10,
        messages / writing.as_secs_f64(),
        points / writing.as_secs_f64(),
        writing.as_secs_f64() * 1000.0 / seconds as f64
    );
    println!(
        "CPU of the whole run (writes, sealing, fjall's background work, data generation): {cpu:.1} s, {:.1} us per message",
        cpu * 1e6 / messages
    );
    println!("maintenance (sealing) in all: {:.1} s", maintaining.as_secs_f64());
    println!("after maintain and major compaction:");
    println!("  series (chunks + series index): {:.0} bytes, {:.3} B/point", series, series / points);
    for (name, bytes) in store.disk_usage().expect("disk usage") {
        println!("  {name}: {bytes} bytes");
    }
    println!(
        "  files in the data directory (message cache, indexes, journal): {:.0} bytes, {:.3} B/point",
        total,
        total / points
    );
}
