"""Forwarding to NATS JetStream end to end (SPEC §6; issue 10 "How it is checked").

The test starts its own nats-server with JetStream (`scripts/nats.sh`, which installs the Debian
package when missing) and the broker with a `jetstream` sink. A paho-mqtt device per resource
publishes events; nats-server is stopped, more events are published, the broker is SIGKILLed and
restarted on the same data directory, more events, then nats-server is started again on the same
port and store. Every event must then be in the stream exactly once per `id` (the stream drops
resends by `Nats-Msg-Id`), in order per resource, on `{prefix}.{escaped domain}.{resource}.events`.
The stream is read with nats-py, independently of the broker's code; then the sink's lag in
`/metrics` is back to zero and its retries counted.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid

import nats
import pytest

from brokers import poll, running
from conftest import REPO_ROOT, switchyard_bin
from hubkit import ForwardingBroker, caught_up, device_key
from mqttc import V5, Client

pytestmark = pytest.mark.not_mosquitto("forwarding is switchyard's")

NATS_SH = REPO_ROOT / "scripts" / "nats.sh"
STREAM = "INTEROP"
PREFIX = "sy"


class NatsServer:
    """A nats-server with JetStream in `workdir`, restartable on the same port and store."""

    def __init__(self, workdir):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port: int | None = None

    def start(self) -> None:
        args = ["bash", str(NATS_SH), "start", str(self.dir)]
        if self.port is not None:
            args.append(str(self.port))
        out = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"scripts/nats.sh start failed:\n{out.stderr}"
        match = re.search(r"SWITCHYARD_TEST_NATS_URL=nats://127\.0\.0\.1:(\d+)", out.stdout)
        assert match, out.stdout
        self.port = int(match.group(1))

    def stop(self) -> None:
        subprocess.run(["bash", str(NATS_SH), "stop", str(self.dir)], check=True, timeout=60)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


def jetstream_sink(nats_url: str) -> str:
    """The `[[forward]]` block of sink "js": stream STREAM on `nats_url`, subjects under PREFIX."""
    return (
        f'[[forward]]\nkind = "jetstream"\nname = "js"\nurl = "{nats_url}"\n'
        f'subject_prefix = "{PREFIX}"\nstream = "{STREAM}"\ntimeout_secs = 2\n'
    )


@pytest.fixture
def nats_server(broker_kind, tmp_path):
    with running(NatsServer(tmp_path / "nats")) as server:
        yield server


@pytest.fixture
def hub(broker_kind, certs, tmp_path, nats_server):
    with running(ForwardingBroker(tmp_path / "forward", certs, switchyard_bin(), jetstream_sink(nats_server.url))) as b:
        yield b


def escaped(token: str) -> str:
    """The sink's subject escaping, written independently: [A-Za-z0-9_-] stay, bytes become %HH."""
    ok = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
    return "".join(chr(b) if b in ok else f"%{b:02X}" for b in token.encode()) or "%"


def publish(hub, tenant, resources: list[str], start: int, count: int) -> None:
    """`count` events per resource from a paho-mqtt device each, QoS 1, every one acknowledged."""
    for resource in resources:
        key = device_key(tenant["master_key"], resource)
        topic = f"{tenant['domain']}/resources/{resource}/events"
        with Client(hub, V5, username=f"{tenant['domain']}/{resource}", password=key) as dev:
            for n in range(start, start + count):
                assert dev.publish(topic, json.dumps({"seq": n}), qos=1) == 0


async def read_stream(url: str) -> list[tuple[str, str, dict]]:
    """(subject, Nats-Msg-Id, record) of every message of the stream, in stream order."""
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        jsm = nc.jsm()
        info = await jsm.stream_info(STREAM)
        out = []
        if info.state.messages:
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await jsm.get_msg(STREAM, seq)
                out.append((msg.subject, (msg.headers or {}).get("Nats-Msg-Id"), json.loads(msg.data)))
        return out
    finally:
        await nc.close()


def test_every_event_arrives_once_through_a_nats_outage_and_a_crash(hub, nats_server):
    tenant = hub.credentials()["tenant"]
    resources = [f"j-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    total = 3 * 90

    publish(hub, tenant, resources, 0, 30)
    poll("the first events in the stream", lambda: len(asyncio.run(read_stream(nats_server.url))) >= 90)

    nats_server.stop()
    publish(hub, tenant, resources, 30, 30)
    hub.crash()
    hub.start()
    publish(hub, tenant, resources, 60, 30)
    nats_server.start()

    def complete():
        stored = asyncio.run(read_stream(nats_server.url))
        return len(stored) >= total and stored

    stored = poll("every event forwarded", complete)
    ids = [msg_id for _, msg_id, _ in stored]
    assert len(ids) == len(set(ids)) == total, "each id exactly once: the stream dropped the resends"
    for subject, msg_id, record in stored:
        assert msg_id == record["id"], "Nats-Msg-Id is the record id"
        assert record["domain"] == tenant["domain"] and record["channel"] == "events"
        assert subject == f"{PREFIX}.{escaped(tenant['domain'])}.{escaped(record['resource'])}.events"
    for resource in resources:
        mine = [record for _, _, record in stored if record["resource"] == resource]
        assert [r["message"]["seq"] for r in mine] == list(range(90)), f"{resource}: every event, in order"
        assert [r["id"] for r in mine] == sorted(r["id"] for r in mine), "ids grow with the order of storing"

    text = poll("lag back to zero", lambda: caught_up(hub, "js"))
    assert 'switchyard_forward_lag_seconds{sink="js"}' in text
    assert 'switchyard_forward_retries_total{sink="js"}' in text, "the outage was retried"
