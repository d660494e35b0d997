//! Decode and encode throughput for the packets that dominate broker traffic: a QoS 1 PUBLISH
//! with a 100-byte payload (both protocols) and a CONNECT.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use switchyard_codec::{Connect, Packet, Properties, Protocol, Publish, QoS, Will, decode, encode, encoded_len};

fn publish() -> Packet {
    Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: "app.example.com/resources/sensor-0042/events".into(),
        packet_id: 42,
        payload: Bytes::from(vec![b'x'; 100]),
        ..Publish::default()
    })
}

fn connect() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive: 60,
        client_id: "sensor-0042".into(),
        will: Some(Will {
            topic: "app.example.com/resources/sensor-0042/events".into(),
            payload: Bytes::from_static(b"{\"online\":false}"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        }),
        username: Some("app.example.com/sensor-0042".into()),
        password: Some(Bytes::from_static(b"k2V8bXq3n0Yt5LwR7pZsC1aHdE9fGjUi4oNmQ6rTyBc")),
        properties: Properties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(32),
            ..Properties::default()
        },
    }))
}

fn bench_packet(c: &mut Criterion, name: &str, packet: &Packet, protocol: Protocol) {
    let mut wire = BytesMut::new();
    encode(packet, protocol, &mut wire).expect("encodable");
    let wire = wire.freeze();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("decode", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&wire[..]),
            |buf| decode(buf, Some(protocol), usize::MAX).expect("valid"),
            BatchSize::SmallInput,
        )
    });
    let mut out = BytesMut::with_capacity(encoded_len(packet, protocol) * 64);
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            encode(black_box(packet), protocol, &mut out).expect("encodable");
            black_box(out.len())
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_packet(c, "publish_qos1_100b_v311", &publish(), Protocol::V311);
    bench_packet(c, "publish_qos1_100b_v5", &publish(), Protocol::V5);
    bench_packet(c, "connect_v5", &connect(), Protocol::V5);
}

criterion_group!(codec, benches);
criterion_main!(codec);
