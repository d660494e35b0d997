"""Forwarding to a webhook end to end (SPEC §6; issue 10 "How it is checked").

A Python webhook receiver (http.server) refuses every batch for a while (503 with
`Retry-After`), and the broker is SIGKILLed and restarted in between, on the same data
directory; events are posted over HTTP before and after the crash. Once the receiver accepts
again, every acknowledged event arrives: in order per resource (after dropping repeats by `id`),
every batch signed as Standard Webhooks v1 with the configured secret (checked here with
Python's hmac, independently of the broker's code), and repeats recognisable by `id`.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from brokers import poll, running
from conftest import switchyard_bin
from hubkit import ForwardingBroker, basic, caught_up, http, metrics, webhook_signed

pytestmark = pytest.mark.not_mosquitto("forwarding is switchyard's")

SECRET = "interop-secret"
WAIT = 60.0


class Receiver:
    """A webhook receiver: answers 503 while `failing`, else checks and keeps each batch."""

    def __init__(self):
        self.failing = True
        self.lock = threading.Lock()
        self.records: list[dict] = []
        self.bad_signatures: list[str] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.failing:
                    with receiver.lock:
                        receiver.refused += 1
                    self.send_response(503)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with receiver.lock:
                    if not webhook_signed(self.headers, body, SECRET):
                        receiver.bad_signatures.append(self.headers["webhook-id"])
                    receiver.records.extend(json.loads(body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def webhook_sink(port: int) -> str:
    """The `[[forward]]` block of sink "hook": the receiver on `port`, batches signed with SECRET."""
    return f'[[forward]]\nkind = "webhook"\nname = "hook"\nurl = "http://127.0.0.1:{port}/hook"\nsecret = "{SECRET}"\n'


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hub(broker_kind, certs, tmp_path, receiver):
    with running(ForwardingBroker(tmp_path / "forward", certs, switchyard_bin(), webhook_sink(receiver.port))) as b:
        yield b


def post_events(hub, app: str, resources: list[str], start: int, count: int) -> None:
    """`count` events per resource, `seq` from `start`, in batches of 10, each acknowledged."""
    for first in range(start, start + count, 10):
        for resource in resources:
            batch = [{"seq": n} for n in range(first, min(first + 10, start + count))]
            status, body, _ = http(hub, "POST", f"/resources/{resource}/events", app, batch)
            assert status == 200, body


def test_every_event_arrives_through_failures_and_a_crash(hub, receiver):
    tenant = hub.credentials()["tenant"]
    app = basic(tenant["api_key"], tenant["api_secret"])
    resources = [f"f-{uuid.uuid4().hex[:6]}" for _ in range(3)]

    post_events(hub, app, resources, 0, 100)
    poll("the receiver refused a retried batch", lambda: receiver.refused >= 2)
    hub.crash()
    hub.start()
    post_events(hub, app, resources, 100, 100)
    receiver.failing = False

    def complete():
        with receiver.lock:
            ids = {r["id"] for r in receiver.records}
            return len(ids) >= 600 and ids

    poll("every event forwarded", complete)
    with receiver.lock:
        records = list(receiver.records)
        assert receiver.bad_signatures == [], "every batch is signed with the secret"
    first: dict[str, dict] = {}
    for record in records:
        first.setdefault(record["id"], record)
    for resource in resources:
        mine = [r for r in first.values() if r["resource"] == resource]
        assert all(r["domain"] == tenant["domain"] and r["channel"] == "events" for r in mine)
        assert [r["message"]["seq"] for r in mine] == list(range(200)), f"{resource}: every event, in order"
        ids = [r["id"] for r in mine]
        assert ids == sorted(ids), "ids grow with the order of storing"
    # Repeats (a resend after the crash, or of a batch whose answer was lost) carry the same id
    # and the same message.
    for record in records:
        assert first[record["id"]] == record


def test_forward_false_lag_metrics_and_replay(hub, receiver):
    tenant = hub.credentials()["tenant"]
    app = basic(tenant["api_key"], tenant["api_secret"])
    receiver.failing = False
    resource = f"f-{uuid.uuid4().hex[:6]}"
    status, body, _ = http(hub, "POST", f"/resources/{resource}/events?forward=false", app, {"seq": 0})
    assert status == 200, body
    status, body, _ = http(hub, "POST", f"/resources/{resource}/events", app, {"seq": 1})
    assert status == 200, body

    def arrived():
        with receiver.lock:
            return [r["message"]["seq"] for r in receiver.records if r["resource"] == resource]

    assert poll("the forwarded event", arrived) == [1]

    text = poll("lag back to zero", lambda: caught_up(hub, "hook"))
    assert 'switchyard_forward_lag_seconds{sink="hook"}' in text
    assert 'switchyard_forward_records_total{sink="hook"}' in text

    # Replay through the admin endpoint: the record arrives again, with the same id.
    admin = f"Bearer {hub.credentials()['admin_token']}"
    status, body, _ = http(hub, "POST", "/admin/forward/hook/replay?from=0", admin)
    assert status == 200 and body["sink"] == "hook", body
    assert poll("the replayed record", lambda: arrived() == [1, 1] and arrived()) == [1, 1]
    with receiver.lock:
        ids = [r["id"] for r in receiver.records if r["resource"] == resource]
    assert ids[0] == ids[1], "a replayed record keeps its id"
    assert http(hub, "POST", "/admin/forward/nope/replay?from=0", admin)[0] == 404
    assert http(hub, "POST", "/admin/forward/hook/replay?from=someday", admin)[0] == 400
    assert http(hub, "POST", "/admin/forward/hook/replay?from=0", app)[0] == 403, "admin only"


class BoundedBroker(ForwardingBroker):
    """A broker whose tenants may hold only a few records for the sinks."""

    def __init__(self, workdir, certs, binary, hook_port: int):
        super().__init__(workdir, certs, binary, webhook_sink(hook_port))
        text = self.config.read_text().replace("[pipeline]\n", "[pipeline]\nmax_outbox_bytes = 2000\n", 1)
        self.config.write_text(text)


def test_a_full_outbox_refuses_intake_over_http_and_mqtt(certs, tmp_path, receiver):
    import threading as _threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from hubkit import device_key

    b = BoundedBroker(tmp_path / "bounded", certs, switchyard_bin(), receiver.port)
    b.start()
    try:
        tenant = b.credentials()["tenant"]
        app = basic(tenant["api_key"], tenant["api_secret"])
        resource = f"f-{uuid.uuid4().hex[:6]}"
        statuses = []
        for n in range(100):  # ~100 bytes a record: the bound is reached well before
            status, _, _ = http(b, "POST", f"/resources/{resource}/events", app, {"seq": n})
            statuses.append(status)
            if status == 503:
                break
        assert statuses[-1] == 503 and set(statuses[:-1]) == {200}, statuses
        status, body, _ = http(b, "POST", f"/resources/{resource}/events?forward=false", app, {"seq": -1})
        assert status == 200, "a message not forwarded is still taken"

        codes: list[int] = []
        done = _threading.Event()

        def on_publish(_c, _u, _mid, rc, _props):
            codes.append(rc if isinstance(rc, int) else rc.value)
            done.set()

        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bound-{resource}", protocol=paho.MQTTv5)
        c.username_pw_set(f"{tenant['domain']}/{resource}", device_key(tenant["master_key"], resource))
        c.on_publish = on_publish
        c.connect("127.0.0.1", b.mqtt_port, keepalive=30)
        c.loop_start()
        try:
            c.publish(f"{tenant['domain']}/resources/{resource}/events", json.dumps({"seq": 1000}), qos=1)
            assert done.wait(WAIT), "no PUBACK"
        finally:
            c.loop_stop()
            c.disconnect()
        assert codes == [0x97], "quota exceeded"

        # Once the receiver takes the records, intake is accepted again.
        receiver.failing = False
        poll(
            "intake accepted again",
            lambda: http(b, "POST", f"/resources/{resource}/events", app, {"seq": 2000})[0] == 200,
        )
        assert "switchyard_forward_refused_total" in metrics(b)
    finally:
        b.stop()
