"""Forwarding throughput to NATS JetStream with acks: `python bench_forward_jetstream.py
[RECORDS] [RESOURCES]` (from tests/interop, with a release binary built; nats-server through
scripts/nats.sh).

Stores RECORDS events over HTTP (batches of 1000 over RESOURCES resources) while the sink
publishes them, stops the broker, deletes the stream (so its duplicate window forgets the ids),
rewinds the sink with `switchyard forward replay --from 0`, starts the broker again and times,
from that start, until the stream (created again by the sink) holds every record: the rate of
draining a backlog from the outbox, each record acknowledged by a PubAck.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats

from bench_forward import start_and_fill
from brokers import make_certs
from conftest import switchyard_bin
from hubkit import ForwardingBroker
from test_forward_jetstream import STREAM, NatsServer, jetstream_sink


async def stored(url: str) -> int:
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        return (await nc.jsm().stream_info(STREAM)).state.messages
    except nats.js.errors.NotFoundError:
        return 0
    finally:
        await nc.close()


async def delete_stream(url: str) -> None:
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        await nc.jsm().delete_stream(STREAM)
    finally:
        await nc.close()


def wait_for(url: str, records: int) -> None:
    while asyncio.run(stored(url)) < records:
        time.sleep(0.05)


def main(records: int, resources: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats")
        server.start()
        try:
            certs = make_certs(Path(tmp) / "certs")
            b = ForwardingBroker(Path(tmp) / "b", certs, switchyard_bin(), jetstream_sink(server.url))
            start_and_fill(b, records, resources)
            wait_for(server.url, records)
            b.stop()
            asyncio.run(delete_stream(server.url))
            out = subprocess.run(
                [switchyard_bin(), "forward", "replay", "--sink", "js", "--from", "0", "--config", str(b.config)],
                capture_output=True, text=True, check=True,
            )
            print(out.stdout.strip())
            start = time.monotonic()
            b.start()
            wait_for(server.url, records)
            elapsed = time.monotonic() - start
            b.stop()
        finally:
            server.stop()
    print(f"{records} records ({resources} resources) published with acks in {elapsed:.2f} s: "
          f"{records / elapsed:,.0f} records/s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000, int(sys.argv[2]) if len(sys.argv) > 2 else 20)
