"""Durability and the data lifecycle end to end (issue 9 "How it is checked"; SPEC §4.4, §5).

- Crash: a paho device publishes QoS 1 events with 100 in flight while an HTTP client posts
  batches; the broker is SIGKILLed mid-stream and restarted on the same data directory. Every
  event whose PUBACK (reason 0) or 2xx arrived is in the message cache and its point in the
  series. Events sent but not acknowledged may be stored too (the answer was lost with the
  process), so the store holds at least, never fewer than, what was acknowledged.
- Idempotency: one `messageId` sent over HTTP, again over HTTP and then over MQTT is stored once
  (one message, one point); the same id on another resource is another message. A duplicate is
  not an error: HTTP answers 200 with "... already stored (messageId)" in `message`, MQTT 5.0
  answers PUBACK 0x00, and nothing new is stored.
- TTL: messages and points posted with `?ttl=2s` disappear from every read (polled, never a
  fixed sleep); points and messages without a TTL stay. That expired data is deleted from disk
  (not only hidden) is checked in the embedded store's own tests, where disk use is observable.
- Retention (`[pipeline] retention = "1h"`): data timestamped older than that is deleted by the
  broker's maintenance (every 10 s), newer data stays.
- Per-tenant settings (`message_cache`, `retention_s` on `/admin/tenants`): a tenant's resources
  keep its own number of messages, and its data expires that long after it was received; 0
  returns to the server's defaults; values out of bounds are refused and create nothing.
- Deletion over real HTTP (`metrics`, `onlytimeseries`, range) is in test_data.py; here: bad
  input is refused over both protocols, naming the field: HTTP 400 in `details`, MQTT 5.0 PUBACK
  0x99 in its reason string, with the connection kept; nothing is stored.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import rawmqtt
from brokers import poll
from conftest import switchyard_bin
from hubkit import V5 as RAW_V5
from hubkit import IdentityBroker, basic, device_key, http, raw_connect
from mqttc import V5, Client

pytestmark = pytest.mark.not_mosquitto("the data pipeline is switchyard's")

PAYLOAD_FORMAT_INVALID = 0x99
IN_FLIGHT = 100
MQTT_EVENTS = 3000
HTTP_BATCH = 25
HTTP_EVENTS = 15_000  # at most: within the message cache below
WAIT = 60.0  # generous: two shared cores, a release broker restarting on its data


class DataBroker(IdentityBroker):
    """The hub broker with a message cache large enough to hold every event of the crash test,
    and optionally a retention."""

    def __init__(self, workdir, certs, binary, retention: str | None = None):
        super().__init__(workdir, certs, binary)
        # paho does not limit itself to the Receive Maximum the server advertises (default 32):
        # allow the IN_FLIGHT a device SDK may use, else the server rightly disconnects (0x93).
        text = self.config.read_text().replace("[mqtt]\n", f"[mqtt]\nreceive_maximum = {IN_FLIGHT}\n", 1)
        self.config.write_text(text)
        with open(self.config, "a") as f:
            f.write("[pipeline]\nmessage_cache = 20000\n")
            if retention:
                f.write(f'retention = "{retention}"\n')


@pytest.fixture
def hub(broker_kind, certs, tmp_path):
    """A broker of the test's own, restartable on the same data directory and ports."""
    b = DataBroker(tmp_path / "durable", certs, switchyard_bin())
    b.start()
    yield b
    b.stop()


def rid() -> str:
    return f"d-{uuid.uuid4().hex[:8]}"


def creds(hub) -> tuple[dict, str]:
    tenant = hub.credentials()["tenant"]
    return tenant, basic(tenant["api_key"], tenant["api_secret"])


def all_messages(hub, auth: str, resource: str) -> list[dict]:
    """Every cached message of `resource`, paging newest first by `until` (timestamps distinct)."""
    out: list[dict] = []
    until = ""
    while True:
        status, page, _ = http(hub, "GET", f"/resources/{resource}/messages?limit=1000{until}", auth)
        assert status == 200, page
        out += page
        if len(page) < 1000:
            return out
        until = f"&until={page[-1]['timestamp']}"


def raw_points(hub, auth: str, resource: str, metric: str, frm: int, until: int) -> list:
    status, body, _ = http(hub, "GET", f"/resources/{resource}/series/{metric}?from={frm}&until={until}&limit=100000", auth)
    assert status == 200, body
    return body["series"]


def count(hub, auth: str, resource: str, metric: str, frm: int, until: int) -> int:
    status, body, _ = http(hub, "GET", f"/resources/{resource}/series/{metric}?from={frm}&until={until}&aggregates=count", auth)
    if status == 404 or not body["series"]:
        return 0
    assert status == 200, body
    return body["series"][0][1]


class Device:
    """A paho QoS 1 publisher with up to IN_FLIGHT unacknowledged messages, as a device's SDK
    would run it; records the packet ids whose PUBACK said success."""

    def __init__(self, hub, tenant: dict, resource: str):
        self.acked: list[int] = []  # list.append is atomic: safe from paho's thread
        self.refused: list[tuple[int, int]] = []
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"crash-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5)
        self.c.username_pw_set(f"{tenant['domain']}/{resource}", device_key(tenant["master_key"], resource))
        self.c.max_inflight_messages_set(IN_FLIGHT)
        self.c.max_queued_messages_set(0)
        self.c.on_publish = self._on_publish
        connected = threading.Event()
        self.c.on_connect = lambda *_a: connected.set()
        self.c.connect("127.0.0.1", hub.mqtt_port, keepalive=30)
        self.c.loop_start()
        assert connected.wait(WAIT), "device did not connect"

    def _on_publish(self, _c, _u, mid, rc, _props) -> None:
        code = rc if isinstance(rc, int) else rc.value
        if code == 0:
            self.acked.append(mid)
        else:
            self.refused.append((mid, code))

    def stop(self) -> None:
        """No reconnection to the restarted broker: paho would resend what is in flight."""
        self.c.loop_stop()
        try:
            self.c.disconnect()
        except Exception:
            pass


def post(hub, path: str, auth: str, body) -> int | None:
    """The status of a POST, or None when the connection failed (the broker is gone)."""
    req = urllib.request.Request(hub.url(path), data=json.dumps(body).encode(), method="POST")
    req.add_header("Authorization", auth)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, urllib.error.URLError):
        return None


def test_nothing_acknowledged_is_lost_on_sigkill(hub):
    tenant, app = creds(hub)
    mqtt_res, http_res = rid(), rid()
    base = int(time.time() * 1000) - 3_600_000
    topic = f"{tenant['domain']}/resources/{mqtt_res}/events"

    # HTTP: batches of HTTP_BATCH events, `seq` distinct, until the broker is gone.
    http_acked: list[int] = []
    http_errors: list[int] = []
    http_stop = threading.Event()

    def poster() -> None:
        seq = 0
        while not http_stop.is_set() and seq < HTTP_EVENTS:
            batch = [{"timestamp": base + seq + i, "seq": seq + i} for i in range(HTTP_BATCH)]
            status = post(hub, f"/resources/{http_res}/events", app, batch)
            if status is None:
                return  # the broker is gone
            if status != 200:
                http_errors.append(status)
                return
            http_acked.extend(range(seq, seq + HTTP_BATCH))
            seq += HTTP_BATCH

    dev = Device(hub, tenant, mqtt_res)
    sent: dict[int, int] = {}  # packet id -> seq
    thread = threading.Thread(target=poster, daemon=True)
    thread.start()
    try:
        for seq in range(MQTT_EVENTS):
            info = dev.c.publish(topic, json.dumps({"timestamp": base + seq, "seq": seq}), qos=1)
            assert info.rc == paho.MQTT_ERR_SUCCESS, info.rc
            sent[info.mid] = seq
        # Kill while acknowledgements are still coming on both protocols.
        poll("a third of the QoS 1 events acknowledged", lambda: len(dev.acked) >= MQTT_EVENTS // 3)
        poll("HTTP batches acknowledged", lambda: len(http_acked) >= 4 * HTTP_BATCH)
        hub.crash()
    finally:
        http_stop.set()
        dev.stop()
    thread.join(WAIT)
    assert not http_errors and not dev.refused, (http_errors, dev.refused)
    mqtt_acked = sorted(sent[mid] for mid in list(dev.acked))
    acked_http = sorted(http_acked)
    assert mqtt_acked and acked_http
    print(f"acknowledged before SIGKILL: {len(mqtt_acked)}/{MQTT_EVENTS} over MQTT, {len(acked_http)} over HTTP")

    hub.start()
    for resource, acked, total in ((mqtt_res, mqtt_acked, MQTT_EVENTS), (http_res, acked_http, HTTP_EVENTS)):
        stored = all_messages(hub, app, resource)
        seqs = [m["seq"] for m in stored]
        assert len(seqs) == len(set(seqs)), "no message stored twice"
        missing = set(acked) - set(seqs)
        assert not missing, f"{resource}: {len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:10]}"
        assert all(m["timestamp"] == base + m["seq"] and m["resource"] == resource for m in stored)
        assert len(seqs) <= total
        # Every stored message has its point, and no point is there without its message.
        until = base + max(seqs) + 1
        points = raw_points(hub, app, resource, "seq", base, until)
        assert sorted(v for _, v in points) == sorted(seqs)
        assert count(hub, app, resource, "seq", base, until) == len(seqs)

    # The restarted broker takes new data as before.
    status, body, _ = http(hub, "POST", f"/resources/{http_res}/events", app, {"after": 1})
    assert status == 200, body


def test_message_id_is_stored_once_over_both_protocols(hub):
    tenant, app = creds(hub)
    resource, other = rid(), rid()
    mid = f"m-{uuid.uuid4().hex}"
    ts = int(time.time() * 1000) - 60_000
    event = {"messageId": mid, "timestamp": ts, "temp": 21.5}

    status, body, _ = http(hub, "POST", f"/resources/{resource}/events", app, event)
    assert status == 200, body
    assert body["message"] == "1 message stored", body

    # A duplicate is answered like a success, says so, and stores nothing.
    again = {**event, "temp": 99}
    status, body, _ = http(hub, "POST", f"/resources/{resource}/events", app, again)
    assert status == 200, body
    assert "already stored" in body["message"] and "messageId" in body["message"], body

    key = device_key(tenant["master_key"], resource)
    with Client(hub, V5, username=f"{tenant['domain']}/{resource}", password=key) as dev:
        topic = f"{tenant['domain']}/resources/{resource}/events"
        assert dev.publish(topic, json.dumps(again), qos=1) == 0, "a duplicate is not refused"

    # In a batch with a new id: the new one is stored, the old one reported.
    fresh = {"messageId": f"{mid}-2", "timestamp": ts + 1, "temp": 22}
    status, body, _ = http(hub, "POST", f"/resources/{resource}/events", app, [again, fresh])
    assert status == 200, body
    assert body["message"] == "1 message stored, 1 already stored (messageId)", body

    messages = all_messages(hub, app, resource)
    assert [(m["messageId"], m["temp"]) for m in messages] == [(f"{mid}-2", 22), (mid, 21.5)]
    assert raw_points(hub, app, resource, "temp", ts, ts + 2) == [[ts, 21.5], [ts + 1, 22]]

    # Ids are per resource.
    status, body, _ = http(hub, "POST", f"/resources/{other}/events", app, again)
    assert status == 200 and body["message"] == "1 message stored", body
    assert [m["temp"] for m in all_messages(hub, app, other)] == [99]


def test_ttl_expires_messages_and_points(hub):
    _, app = creds(hub)
    resource = rid()
    now = int(time.time() * 1000)
    short = [{"timestamp": now - 1000 * i, "temp": 20 + i, "note": "x"} for i in range(5)]
    status, body, _ = http(hub, "POST", f"/resources/{resource}/events?ttl=2s", app, short)
    assert status == 200, body
    keep = {"timestamp": now - 10_000, "hum": 40}
    status, body, _ = http(hub, "POST", f"/resources/{resource}/events", app, keep)
    assert status == 200, body
    frm, until = now - 60_000, now + 1

    # Readable until the TTL passes (unless this machine was slower than 2 s already).
    poll("the TTL messages expire", lambda: len(all_messages(hub, app, resource)) == 1)
    assert all_messages(hub, app, resource) == [{**keep, "resource": resource}]
    poll("the TTL points expire", lambda: count(hub, app, resource, "temp", frm, until) == 0)
    assert raw_points(hub, app, resource, "temp", frm, until) == []
    assert raw_points(hub, app, resource, "note", frm, until) == []
    status, body, _ = http(hub, "GET", f"/resources/{resource}/series", app)
    assert status == 200 and body == [{"name": "hum", "latest": {"timestamp": keep["timestamp"], "value": 40}}], body
    status, body, _ = http(hub, "GET", f"/resources/{resource}/current", app)
    assert status == 200 and body["hum"] == 40, body


def test_retention_deletes_data_older_than_it(certs, tmp_path):
    hub = DataBroker(tmp_path / "retention", certs, switchyard_bin(), retention="1h")
    hub.start()
    try:
        _, app = creds(hub)
        resource = rid()
        now = int(time.time() * 1000)
        old = [{"timestamp": now - 3 * 3_600_000 + 60_000 * i, "temp": i} for i in range(30)]
        recent = [{"timestamp": now - 600_000 + 1000 * i, "temp": 100 + i} for i in range(5)]
        status, body, _ = http(hub, "POST", f"/resources/{resource}/events", app, old + recent)
        assert status == 200, body
        frm, until = now - 4 * 3_600_000, now + 1
        poll("data older than the retention deleted", lambda: len(all_messages(hub, app, resource)) == len(recent))
        assert [m["temp"] for m in all_messages(hub, app, resource)] == [104, 103, 102, 101, 100]
        poll("points older than the retention deleted", lambda: count(hub, app, resource, "temp", frm, until) == len(recent))
        assert [v for _, v in raw_points(hub, app, resource, "temp", frm, until)] == [100, 101, 102, 103, 104]
    finally:
        hub.stop()


def puback(conn, pid: int) -> tuple[int, dict]:
    """(reason, properties) of the PUBACK for `pid`."""
    p = conn.expect(rawmqtt.PUBACK, timeout=WAIT)
    assert p.fields["pid"] == pid, p
    props = rawmqtt.decode_props(p.body, 3)[0] if len(p.body) > 3 else {}
    return p.fields["reason"], props


BAD = [
    # (name, body, a word the error must contain: the field, where there is one)
    ("timestamp of the wrong type", {"timestamp": True, "temp": 1}, "timestamp"),
    ("timestamp not a date", {"timestamp": "yesterday", "temp": 1}, "timestamp"),
    ("resource of another", {"resource": "someone-else", "temp": 1}, "resource"),
    ("too deep", None, "levels"),  # the whole message: no one field to name
    ("messageId not a string", {"messageId": {"x": 1}, "temp": 1}, "messageId"),
]


@pytest.mark.parametrize("name, body, field", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_the_field_over_http_and_mqtt_5(hub, name, body, field):
    tenant, app = creds(hub)
    resource = rid()
    if body is None:
        body = nested(64)  # the default limit is 32

    status, answer, _ = http(hub, "POST", f"/resources/{resource}/events", app, body)
    assert status == 400, answer
    assert answer["error"] and answer["details"], answer
    assert any(field.lower() in d.lower() for d in answer["details"]), answer

    key = device_key(tenant["master_key"], resource)
    conn, code = raw_connect(hub, RAW_V5, f"{tenant['domain']}/{resource}", key, client_id=f"bad-{uuid.uuid4().hex[:8]}")
    assert code == 0
    try:
        topic = f"{tenant['domain']}/resources/{resource}/events"
        conn.send(rawmqtt.publish(topic, json.dumps(body).encode(), qos=1, pid=7))
        reason, props = puback(conn, 7)
        assert reason == PAYLOAD_FORMAT_INVALID
        assert field.lower() in props.get("reason_string", "").lower(), props
        # The connection stays, and good data still goes in.
        conn.send(rawmqtt.publish(topic, b'{"ok": 1}', qos=1, pid=8))
        assert puback(conn, 8)[0] == 0
    finally:
        conn.close()
    assert [m["ok"] for m in all_messages(hub, app, resource)] == [1], "nothing of the bad input stored"


def nested(depth: int) -> dict:
    """{"a": {"a": ... 1}} `depth` objects deep, built without recursion."""
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value  # type: ignore[return-value]


def test_tenant_message_cache_and_retention(hub):
    admin = f"Bearer {hub.credentials()['admin_token']}"
    domain = f"t{uuid.uuid4().hex[:8]}.example"
    wanted = {"domain": domain, "message_cache": 3, "retention_s": 2}
    status, made, _ = http(hub, "POST", "/admin/tenants", admin, wanted)
    assert status == 201, made
    status, shown, _ = http(hub, "GET", f"/admin/tenants/{domain}", admin)
    assert (shown["message_cache"], shown["retention_s"]) == (3, 2), shown
    app = basic(made["api_key"], made["api_secret"])
    resource = rid()
    now = int(time.time() * 1000)
    events = [{"timestamp": now - 1000 * i, "temp": i} for i in range(5)]
    status, body, _ = http(hub, "POST", f"/resources/{resource}/events", app, events)
    assert status == 200, body
    # The cache keeps the tenant's 3 newest; the points all arrive, then expire with the messages.
    frm, until = now - 60_000, now + 1
    kept = all_messages(hub, app, resource)
    assert [m["temp"] for m in kept] in ([0, 1, 2], []), kept  # [] only if 2 s passed already
    poll("the tenant's retention expires its messages", lambda: all_messages(hub, app, resource) == [])
    poll("the tenant's retention expires its points", lambda: count(hub, app, resource, "temp", frm, until) == 0)

    # Back to the server's defaults (this broker's message_cache is 20000, no retention).
    status, shown, _ = http(hub, "PATCH", f"/admin/tenants/{domain}", admin, {"message_cache": 0, "retention_s": 0})
    assert status == 200 and (shown["message_cache"], shown["retention_s"]) == (None, None), shown
    status, body, _ = http(hub, "POST", f"/resources/{resource}/events", app, events)
    assert status == 200, body
    assert [m["temp"] for m in all_messages(hub, app, resource)] == [0, 1, 2, 3, 4]

    for bad in ({"message_cache": 100_001}, {"retention_s": 101 * 365 * 86_400}):
        status, body, _ = http(hub, "PATCH", f"/admin/tenants/{domain}", admin, bad)
        assert status == 400, body
        other = f"t{uuid.uuid4().hex[:8]}.example"
        status, body, _ = http(hub, "POST", "/admin/tenants", admin, {"domain": other, **bad})
        assert status == 400, body
        assert http(hub, "GET", f"/admin/tenants/{other}", admin)[0] == 404
