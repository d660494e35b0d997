//! What an `ingest` device publishes: a JSON event of ten metrics whose values behave like a
//! real sensor's (smooth decimals, counters, rare and frequent booleans, full-precision noise and
//! a status string), written straight into the connection's output buffer as a QoS 1 PUBLISH.
//!
//! Every device draws from its own seeded generator, so a run's data set depends only on the
//! device index. Each event carries an explicit `timestamp`: the run's start plus one second per
//! event, as a device sampling at 1 Hz would send, so no two events of a device share a
//! timestamp however fast they are published, and a count of stored points can be checked
//! against the count of acknowledged events.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use switchyard_codec::Protocol;

/// Metrics in every event.
pub const METRICS: u64 = 10;
/// Milliseconds between the timestamps of a device's consecutive events.
pub const STEP_MS: i64 = 1000;
/// The numeric metric the verification counts.
pub const CHECKED_METRIC: &str = "temperature";

/// One device's sensor state and random stream.
#[derive(Debug, Clone)]
pub struct Sensor {
    rng: u64,
    /// Tenths of a degree.
    temperature: i64,
    /// Hundredths of a percent.
    humidity: i64,
    /// Hundredths of a hectopascal.
    pressure: i64,
    energy_wh: u64,
    packets: u64,
    door_open: bool,
    relay_on: bool,
    level: f64,
    /// Reused text of the event being built.
    text: String,
}

impl Sensor {
    /// The sensor of device `index`.
    pub fn new(index: usize) -> Sensor {
        let mut s = Sensor {
            rng: (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d,
            temperature: 0,
            humidity: 0,
            pressure: 0,
            energy_wh: 0,
            packets: 0,
            door_open: false,
            relay_on: false,
            level: 0.0,
            text: String::with_capacity(256),
        };
        s.temperature = 150 + s.below(130) as i64;
        s.humidity = 3000 + s.below(4000) as i64;
        s.pressure = 99_000 + s.below(4000) as i64;
        s.energy_wh = s.below(1_000_000);
        s.packets = s.below(10_000_000);
        s.relay_on = s.below(2) == 1;
        s.level = 0.5 + s.unit() * 7.5;
        s
    }

    /// xorshift64*: plenty for test data, and a few nanoseconds a draw.
    fn next(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Advance one sample and return the event's JSON text, timestamped `ts_ms`.
    pub fn event(&mut self, ts_ms: i64) -> &str {
        if self.chance(0.2) {
            self.temperature = (self.temperature + if self.chance(0.5) { 1 } else { -1 }).clamp(-100, 400);
        }
        if self.chance(0.3) {
            self.humidity = (self.humidity + self.below(5) as i64 - 2).clamp(100, 9900);
        }
        if self.chance(0.05) {
            self.pressure += if self.chance(0.5) { 1 } else { -1 };
        }
        self.energy_wh += self.below(6);
        self.packets += self.below(1000);
        if self.chance(0.0005) {
            self.door_open = !self.door_open;
        }
        if self.chance(0.01) {
            self.relay_on = !self.relay_on;
        }
        let vibration = (self.unit() - 0.5) * 0.02;
        let current = self.level + (self.unit() - 0.5) * 0.1;
        let state = if self.relay_on { "running" } else { "idle" };
        let mut t = std::mem::take(&mut self.text);
        t.clear();
        // Writing to a String cannot fail.
        let _ = write!(t, "{{\"timestamp\":{ts_ms},\"temperature\":");
        fixed(&mut t, self.temperature, 1);
        t.push_str(",\"humidity\":");
        fixed(&mut t, self.humidity, 2);
        t.push_str(",\"pressure\":");
        fixed(&mut t, self.pressure, 2);
        let _ = write!(
            t,
            ",\"energy_wh\":{},\"packets\":{},\"door_open\":{},\"relay_on\":{},\"vibration\":{vibration},\
             \"current_a\":{current},\"state\":\"{state}\"}}",
            self.energy_wh, self.packets, self.door_open, self.relay_on
        );
        self.text = t;
        &self.text
    }
}

/// `value / 10^decimals` written with exactly `decimals` digits, without float rounding noise.
fn fixed(out: &mut String, value: i64, decimals: u32) {
    let scale = 10i64.pow(decimals);
    let sign = if value < 0 { "-" } else { "" };
    let (whole, frac) = (value.unsigned_abs() / scale as u64, value.unsigned_abs() % scale as u64);
    let _ = write!(out, "{sign}{whole}.{frac:0width$}", width = decimals as usize);
}

/// Append a QoS 1 PUBLISH of `payload` to `topic` with `packet_id` (no properties in 5.0).
pub fn write_publish(out: &mut BytesMut, protocol: Protocol, topic: &[u8], packet_id: u16, payload: &[u8]) {
    let properties = usize::from(protocol == Protocol::V5);
    let remaining = 2 + topic.len() + 2 + properties + payload.len();
    out.reserve(5 + remaining);
    out.put_u8(0x32);
    let mut len = remaining;
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        if len == 0 {
            out.put_u8(byte);
            break;
        }
        out.put_u8(byte | 0x80);
    }
    out.put_u16(topic.len() as u16);
    out.put_slice(topic);
    out.put_u16(packet_id);
    if properties == 1 {
        out.put_u8(0);
    }
    out.put_slice(payload);
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use switchyard_codec::{Packet, QoS};

    use super::*;

    #[test]
    fn events_are_ten_metrics_of_the_promised_kinds() {
        let mut s = Sensor::new(3);
        let mut previous = None;
        for i in 0..2000 {
            let v: Value = serde_json::from_str(s.event(1_000 + i)).unwrap();
            let o = v.as_object().unwrap();
            assert_eq!(o.len() as u64, METRICS + 1, "{v}");
            assert_eq!(o["timestamp"], 1_000 + i);
            let t = o["temperature"].as_f64().unwrap();
            assert!((-10.0..=40.0).contains(&t) && ((t * 10.0).round() - t * 10.0).abs() < 1e-9, "{t}");
            assert!(o["door_open"].is_boolean() && o["relay_on"].is_boolean());
            assert!(o["state"].is_string() && o["vibration"].is_f64());
            let energy = o["energy_wh"].as_u64().unwrap();
            assert!(previous.is_none_or(|p| energy >= p));
            previous = Some(energy);
        }
        // Devices differ; a device's stream depends on its index alone.
        assert_ne!(Sensor::new(1).event(0).to_owned(), Sensor::new(2).event(0).to_owned());
        assert_eq!(Sensor::new(1).event(0).to_owned(), Sensor::new(1).event(0).to_owned());
    }

    #[test]
    fn fixed_point_text() {
        for (v, d, text) in [(213, 1, "21.3"), (-5, 1, "-0.5"), (101_325, 2, "1013.25"), (7, 2, "0.07"), (0, 1, "0.0")]
        {
            let mut s = String::new();
            fixed(&mut s, v, d);
            assert_eq!(s, text);
        }
    }

    #[test]
    fn publishes_decode_in_both_protocols() {
        for protocol in [Protocol::V311, Protocol::V5] {
            for size in [10, 200, 20_000] {
                let payload = vec![b'x'; size];
                let mut out = BytesMut::new();
                write_publish(&mut out, protocol, b"a.example/resources/d1/events", 4242, &payload);
                let Packet::Publish(p) = switchyard_codec::decode(&mut out, Some(protocol), 1 << 20).unwrap().unwrap()
                else {
                    panic!("not a PUBLISH")
                };
                assert_eq!(
                    (p.topic.as_str(), p.qos, p.packet_id),
                    ("a.example/resources/d1/events", QoS::AtLeastOnce, 4242)
                );
                assert_eq!(&p.payload[..], &payload[..]);
                assert!(out.is_empty());
            }
        }
    }
}
