"""One switchyard node on PostgreSQL storage (`[storage] backend = "postgres"`, issue 11, SPEC §7).

Each test starts its own broker on a fresh schema (`t_<random>`) of the database at
`SWITCHYARD_TEST_PG_URL` (`source <(bash scripts/postgres.sh start DIR)` prints it; without it
the tests are skipped, saying so):

- a device's QoS 1 event over MQTT (paho) is read back over HTTP, from the message cache and as
  a series;
- an application's command over HTTP reaches the device's MQTT subscription;
- after SIGKILL and a restart on the same schema, everything acknowledged is there: the events,
  the QoS 1 command queued for a persistent-session device while it was offline (delivered when
  it comes back), and the registry (the same API key and device key still work);
- forwarding reads the outbox in the database: with the webhook refusing, intake is refused
  (503) once the tenant's outbox is at its bound, and once the webhook takes batches every
  accepted event arrives and intake is accepted again.

The URL is given a password when it has none (trust authentication ignores it): the broker's
log must never show it.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import urllib.parse
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from brokers import poll
from conftest import switchyard_bin
from hubkit import IdentityBroker, basic, device_key, http
from test_forward import Receiver, webhook_sink

pytestmark = pytest.mark.not_mosquitto("PostgreSQL storage is switchyard's")

PG_URL = os.environ.get("SWITCHYARD_TEST_PG_URL")
WAIT = 30.0  # generous: two shared cores


class PgBroker(IdentityBroker):
    """The hub broker with its stores in `schema` of the database at `url`."""

    def __init__(self, workdir, certs, binary, url: str, schema: str, extra: str = ""):
        super().__init__(workdir, certs, binary)
        url, self.password = with_password(url)
        with open(self.config, "a") as f:
            f.write(f'[storage]\nbackend = "postgres"\nurl = {json.dumps(url)}\nschema = "{schema}"\npool_size = 4\n')
            f.write(extra)


def with_password(url: str) -> tuple[str, str | None]:
    """`url` with a password (its own, or an added one) and that password."""
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        return url, parts.password
    if not parts.username:
        return url, None
    secret = f"pw-{uuid.uuid4().hex}"
    return url.replace(f"//{parts.username}@", f"//{parts.username}:{secret}@", 1), secret


def start(certs, tmp_path, extra: str = "") -> PgBroker:
    if not PG_URL:
        pytest.skip("SWITCHYARD_TEST_PG_URL is not set: source <(bash scripts/postgres.sh start DIR) first")
    b = PgBroker(tmp_path / "pg", certs, switchyard_bin(), PG_URL, f"t_{uuid.uuid4().hex[:12]}", extra)
    b.start()
    return b


@pytest.fixture
def hub(certs, tmp_path):
    b = start(certs, tmp_path)
    yield b
    b.stop()


@pytest.fixture
def receiver():
    r = Receiver()  # refuses every batch (503) until `failing` is cleared
    yield r
    r.close()


@pytest.fixture
def forwarding_hub(certs, tmp_path, receiver):
    b = start(certs, tmp_path, "[pipeline]\nmax_outbox_bytes = 2000\n" + webhook_sink(receiver.port))
    yield b
    b.stop()


def creds(hub) -> tuple[dict, str]:
    tenant = hub.credentials()["tenant"]
    return tenant, basic(tenant["api_key"], tenant["api_secret"])


def rid() -> str:
    return f"d-{uuid.uuid4().hex[:8]}"


class Device:
    """A paho MQTT 5.0 device: QoS 1 publishes waited for by their PUBACK, and the commands it
    receives in a queue."""

    def __init__(self, hub, tenant: dict, resource: str, client_id: str | None = None, clean: bool = True):
        self.topic = f"{tenant['domain']}/resources/{resource}"
        self.received: queue.Queue = queue.Queue()
        self.acked: dict[int, threading.Event] = {}
        self.lock = threading.Lock()
        self.c = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"pg-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5
        )
        self.c.username_pw_set(f"{tenant['domain']}/{resource}", device_key(tenant["master_key"], resource))
        self.c.on_message = lambda _c, _u, m: self.received.put(m)
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = lambda *_a: self.subscribed.set()
        self.subscribed = threading.Event()
        connected: queue.Queue = queue.Queue()
        self.c.on_connect = lambda _c, _u, flags, rc, _p: connected.put((flags.session_present, rc.value))
        props = paho.Properties(paho.PacketTypes.CONNECT)
        if not clean:
            props.SessionExpiryInterval = 3600
        self.c.connect("127.0.0.1", hub.mqtt_port, keepalive=30, clean_start=clean, properties=props)
        self.c.loop_start()
        self.session_present, code = connected.get(timeout=WAIT)
        assert code == 0, f"CONNACK {code:#x}"

    def _on_publish(self, _c, _u, mid, rc, _props) -> None:
        assert rc.value == 0, f"PUBACK {rc.value:#x}"
        with self.lock:
            self.acked.setdefault(mid, threading.Event()).set()

    def publish(self, body: dict) -> None:
        """A QoS 1 event, returning once its PUBACK said success."""
        info = self.c.publish(f"{self.topic}/events", json.dumps(body), qos=1)
        assert info.rc == paho.MQTT_ERR_SUCCESS, info.rc
        with self.lock:
            done = self.acked.setdefault(info.mid, threading.Event())
        assert done.wait(WAIT), "no PUBACK"

    def subscribe_commands(self) -> None:
        self.subscribed.clear()
        self.c.subscribe(f"{self.topic}/commands", qos=1)
        assert self.subscribed.wait(WAIT), "no SUBACK"

    def command(self) -> dict:
        message = self.received.get(timeout=WAIT)
        assert message.topic == f"{self.topic}/commands"
        return json.loads(message.payload)

    def stop(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_event_over_mqtt_reads_back_over_http(hub):
    tenant, app = creds(hub)
    resource = rid()
    at = int(time.time() * 1000) - 60_000
    dev = Device(hub, tenant, resource)
    try:
        dev.publish({"timestamp": at, "temperature": 21.5, "door": {"open": False}})
    finally:
        dev.stop()
    status, messages, _ = http(hub, "GET", f"/resources/{resource}/messages", app)
    assert status == 200, messages
    assert [(m["timestamp"], m["temperature"]) for m in messages] == [(at, 21.5)]
    status, body, _ = http(hub, "GET", f"/resources/{resource}/series/temperature?from={at}&until={at + 1}", app)
    assert status == 200, body
    assert body["series"] == [[at, 21.5]]
    status, body, _ = http(hub, "GET", f"/resources/{resource}/series", app)
    assert status == 200, body
    assert "temperature" in json.dumps(body) and "door.open" in json.dumps(body)


def test_command_over_http_reaches_the_mqtt_subscriber(hub):
    tenant, app = creds(hub)
    resource = rid()
    dev = Device(hub, tenant, resource)
    try:
        dev.subscribe_commands()
        status, answer, _ = http(hub, "POST", f"/resources/{resource}/commands", app, {"on": True})
        assert status == 200, answer
        command = dev.command()
        assert command["on"] is True and command["resource"] == resource
    finally:
        dev.stop()


def test_everything_acknowledged_survives_sigkill(hub):
    tenant, app = creds(hub)
    resource, offline = rid(), rid()
    at = int(time.time() * 1000) - 60_000

    # A persistent-session device subscribes, leaves, and a QoS 1 command is queued for it.
    client_id = f"pg-persistent-{uuid.uuid4().hex[:8]}"
    sleeper = Device(hub, tenant, offline, client_id=client_id, clean=False)
    sleeper.subscribe_commands()
    sleeper.stop()
    status, answer, _ = http(hub, "POST", f"/resources/{offline}/commands", app, {"seq": 1})
    assert status == 200, answer

    # Events acknowledged over MQTT (PUBACK) and over HTTP (200).
    dev = Device(hub, tenant, resource)
    try:
        for i in range(20):
            dev.publish({"timestamp": at + i, "seq": i})
    finally:
        dev.stop()
    status, answer, _ = http(hub, "POST", f"/resources/{resource}/events", app, [{"timestamp": at + 20 + i, "seq": 20 + i} for i in range(5)])
    assert status == 200, answer

    hub.crash()
    hub.start()
    log = hub.log_file.read_text(errors="replace")
    assert log.count("storage opened") == 2 and 'backend="postgres"' in log, hub.log_tail()
    if hub.password:
        assert hub.password not in log, "the URL's password is in the log"

    # The registry: the same API key reads, the same device key connects.
    status, messages, _ = http(hub, "GET", f"/resources/{resource}/messages?limit=100", app)
    assert status == 200, messages
    assert sorted(m["seq"] for m in messages) == list(range(25))
    status, body, _ = http(hub, "GET", f"/resources/{resource}/series/seq?from={at}&until={at + 25}&aggregates=count", app)
    assert status == 200, body
    assert body["series"][0][1] == 25
    status, keys, _ = http(hub, "GET", "/apikeys", app)
    assert status == 200 and tenant["api_key"] in json.dumps(keys), keys

    # The queued command is delivered when the persistent session resumes.
    sleeper = Device(hub, tenant, offline, client_id=client_id, clean=False)
    try:
        assert sleeper.session_present
        command = sleeper.command()
        assert command["seq"] == 1 and command["resource"] == offline
    finally:
        sleeper.stop()


def test_forwarding_and_the_outbox_bound(forwarding_hub, receiver):
    hub = forwarding_hub
    _tenant, app = creds(hub)
    resource = rid()
    accepted: list[int] = []

    def post_until_refused() -> bool:
        n = len(accepted)
        status, body, _ = http(hub, "POST", f"/resources/{resource}/events", app, {"seq": n})
        assert status in (200, 503), body
        if status == 200:
            accepted.append(n)
        return status == 503

    # ~100 bytes a record: the bound is reached within a few dozen posts.
    poll("intake refused at the outbox bound", post_until_refused)
    assert accepted, "events were accepted before the bound"

    receiver.failing = False
    poll("every accepted event forwarded", lambda: set(forwarded(receiver, resource)) >= set(accepted))
    assert not receiver.bad_signatures
    poll(
        "intake accepted again",
        lambda: http(hub, "POST", f"/resources/{resource}/events", app, {"seq": -1})[0] == 200,
    )


def forwarded(receiver, resource: str) -> list[int]:
    with receiver.lock:
        return [r["message"]["seq"] for r in receiver.records if r["resource"] == resource]
