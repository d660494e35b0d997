"""Commands and live streams, end to end (SPEC §5): curl reads SSE and NDJSON while paho-mqtt
devices and applications publish, and commands posted over HTTP reach paho devices.

- An MQTT device's event reaches an SSE stream of its resource (with `id:`) and the tenant's
  NDJSON firehose.
- `POST /resources/{id}/commands` reaches a paho device subscribed to its commands topic (with
  the ttl as message expiry), is listed by `GET /resources/{id}/commands`, and is queued for a
  device offline with a persistent session; an application's MQTT command is stored too.
- `Last-Event-ID` resumes from the cache, then live, without gap or duplicate.
- Wrong credentials: 401; a device token for another resource, or sending commands: 403; a
  stream-only route without a streaming Accept: 406.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import uuid

import pytest

from conftest import switchyard_bin
from hubkit import IdentityBroker, device_key, http, token
from mqttc import V5, Client

pytestmark = pytest.mark.not_mosquitto("streams are switchyard's")

WAIT = 10.0


@pytest.fixture(scope="module")
def hub(broker_kind, certs, tmp_path_factory):
    b = IdentityBroker(tmp_path_factory.mktemp("streams"), certs, switchyard_bin())
    b.start()
    yield b
    b.stop()


def rid() -> str:
    return f"d-{uuid.uuid4().hex[:8]}"


def device(hub, tenant, resource: str, **kwargs) -> Client:
    key = device_key(tenant["master_key"], resource)
    return Client(hub, V5, username=f"{tenant['domain']}/{resource}", password=key, **kwargs)


def application(hub, tenant) -> Client:
    return Client(hub, V5, username=f"{tenant['domain']}/apikey/{tenant['api_key']}", password=tenant["api_secret"])


class Stream:
    """`curl -N` reading a stream; records (SSE events or NDJSON lines) arrive on a queue."""

    def __init__(self, hub, path: str, auth: str, accept: str, last_event_id: str | None = None):
        cmd = ["curl", "-sS", "-N", "-i", "-H", f"Authorization: {auth}", "-H", f"Accept: {accept}"]
        if last_event_id is not None:
            cmd += ["-H", f"Last-Event-ID: {last_event_id}"]
        self.proc = subprocess.Popen(cmd + [hub.url(path)], stdout=subprocess.PIPE, text=True)
        self.records: queue.Queue[str] = queue.Queue()
        status = self.proc.stdout.readline()
        self.status = int(status.split()[1])
        while self.proc.stdout.readline().strip():
            pass  # headers: once they came, the stream listens
        self.sse = accept == "text/event-stream"
        threading.Thread(target=self._read, daemon=True).start()
        if self.status == 200:
            opening = self.next()
            assert opening in (": keep-alive", "{}"), f"a stream opens with its keep-alive: {opening!r}"

    def _read(self) -> None:
        lines: list[str] = []
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if not self.sse:
                self.records.put(line)
            elif line:
                lines.append(line)
            elif lines:
                self.records.put("\n".join(lines))
                lines = []

    def next(self) -> str:
        try:
            return self.records.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError("no record on the stream") from None

    def message(self) -> tuple[int | None, dict]:
        """The next message: (SSE id or None, JSON)."""
        record = self.next()
        if not self.sse:
            return None, json.loads(record)
        fields = dict(line.split(": ", 1) for line in record.split("\n") if not line.startswith(":"))
        return int(fields["id"]), json.loads(fields["data"])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def curl(hub, method: str, path: str, auth: str, body: str | None = None, accept: str | None = None):
    """(status, body text) of one curl request."""
    cmd = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-H", f"Authorization: {auth}"]
    if accept:
        cmd += ["-H", f"Accept: {accept}"]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", body]
    out = subprocess.run(cmd + [hub.url(path)], capture_output=True, text=True, timeout=WAIT, check=True).stdout
    text, _, status = out.rpartition("\n")
    return int(status), text


def test_a_device_event_reaches_sse_and_the_ndjson_firehose(hub, tenant, app):
    resource = rid()
    sse = Stream(hub, f"/resources/{resource}/events", app, "text/event-stream")
    firehose = Stream(hub, "/messages", app, "application/x-ndjson")
    try:
        assert (sse.status, firehose.status) == (200, 200)
        with device(hub, tenant, resource) as dev:
            topic = f"{tenant['domain']}/resources/{resource}/events"
            assert dev.publish(topic, json.dumps({"temp": 21.5}), qos=1) == 0
        seq, event = sse.message()
        assert seq > 0 and event["temp"] == 21.5 and event["resource"] == resource
        while True:
            _, line = firehose.message()
            if line.get("resource") == resource:
                break
        assert line == event, "the firehose carries the message as stored"
    finally:
        sse.close()
        firehose.close()


def test_a_posted_command_reaches_the_paho_device_and_the_history(hub, tenant, app):
    resource = rid()
    topic = f"{tenant['domain']}/resources/{resource}/commands"
    stream = Stream(hub, f"/resources/{resource}/commands", app, "application/x-ndjson")
    try:
        with device(hub, tenant, resource) as dev:
            assert dev.subscribe(topic, 1) == [1]
            status, body = curl(hub, "POST", f"/resources/{resource}/commands?ttl=60", app, '{"led": "on"}')
            assert status == 200, body
            m = dev.get()
            assert m.topic == topic and json.loads(m.payload)["led"] == "on"
            assert 0 < m.props["MessageExpiryInterval"] <= 60, m.props
        assert stream.message()[1]["led"] == "on", "stream listeners get it too"
    finally:
        stream.close()
    status, body = curl(hub, "GET", f"/resources/{resource}/commands?limit=10", app)
    assert status == 200 and [c["led"] for c in json.loads(body)] == ["on"], body
    status, events, _ = http(hub, "GET", f"/resources/{resource}/messages", app)
    assert (status, events) == (200, []), "not among the events"

    own = "Bearer " + token(device_key(tenant["master_key"], resource), tenant["domain"], resource)
    assert curl(hub, "GET", f"/resources/{resource}/commands", own)[0] == 200
    assert curl(hub, "GET", f"/resources/{rid()}/commands", own)[0] == 403
    assert curl(hub, "POST", f"/resources/{resource}/commands", own, "{}")[0] == 403
    assert curl(hub, "POST", f"/resources/{resource}/commands", "Basic d3Jvbmc6d3Jvbmc=", "{}")[0] == 401
    assert curl(hub, "GET", f"/resources/{resource}/events", app, accept="application/json")[0] == 406


def test_an_offline_device_gets_its_commands_when_it_returns(hub, tenant, app):
    resource = rid()
    topic = f"{tenant['domain']}/resources/{resource}/commands"
    with device(hub, tenant, resource, client_id=resource, clean=False, session_expiry=300) as dev:
        assert dev.subscribe(topic, 1) == [1]
    status, body = curl(hub, "POST", f"/resources/{resource}/commands", app, '{"reboot": true}')
    assert status == 200, body
    with device(hub, tenant, resource, client_id=resource, clean=False, session_expiry=300) as dev:
        assert dev.session_present
        m = dev.get()
        assert m.topic == topic and m.qos == 1 and json.loads(m.payload)["reboot"] is True


def test_an_application_command_over_mqtt_is_stored_and_streamed(hub, tenant, app):
    resource = rid()
    stream = Stream(hub, f"/resources/{resource}/commands", app, "text/event-stream")
    try:
        with application(hub, tenant) as a:
            topic = f"{tenant['domain']}/resources/{resource}/commands"
            assert a.publish(topic, json.dumps({"speed": 3}), qos=1) == 0
            assert a.publish(topic, b"not json", qos=1) == 0x99
        assert stream.message()[1]["speed"] == 3
    finally:
        stream.close()
    status, body = curl(hub, "GET", f"/resources/{resource}/commands", app)
    assert status == 200 and [c["speed"] for c in json.loads(body)] == [3]


def test_last_event_id_resumes_without_gap_or_duplicate(hub, tenant, app):
    resource = rid()
    first = Stream(hub, f"/resources/{resource}/events", app, "text/event-stream")
    try:
        for n in (1, 2, 3):
            assert curl(hub, "POST", f"/resources/{resource}/events", app, json.dumps({"n": n}))[0] == 200
        ids = [first.message()[0] for _ in range(3)]
    finally:
        first.close()
    resumed = Stream(hub, f"/resources/{resource}/events", app, "text/event-stream", last_event_id=str(ids[0]))
    try:
        assert curl(hub, "POST", f"/resources/{resource}/events", app, json.dumps({"n": 4}))[0] == 200
        seen = [resumed.message() for _ in range(3)]
        assert [m["n"] for _, m in seen] == [2, 3, 4]
        assert [s for s, _ in seen][:2] == ids[1:]
        assert seen[2][0] > ids[2]
    finally:
        resumed.close()
    bad = Stream(hub, f"/resources/{resource}/events", "Basic d3Jvbmc6d3Jvbmc=", "text/event-stream")
    assert bad.status == 401
    bad.close()
