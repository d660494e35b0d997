"""Data in, end to end (SPEC §3, §4.1, §5): a device's MQTT events and HTTP posts go through one
pipeline into the store before they are acknowledged, and live to subscribers as normalized.

- paho 5.0: JSON on the events topic is stored (read back over HTTP once PUBACK came) and
  delivered with `timestamp` and `resource`; invalid JSON is answered PUBACK 0x99 and the
  connection stays.
- paho 3.1.1: invalid JSON is dropped (PUBACK, nothing stored) and the connection stays.
- HTTP: POST /resources/{id}/events → 200 with the stored content, received by an MQTT
  subscriber; bad JSON → 400 with details; wrong credentials → 401; a device token posting for
  another resource → 403.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import switchyard_bin
from hubkit import IdentityBroker, basic, device_key, http, token
from mqttc import V5, V311, Client

pytestmark = pytest.mark.not_mosquitto("the data pipeline is switchyard's")

PAYLOAD_FORMAT_INVALID = 0x99


@pytest.fixture(scope="module")
def hub(broker_kind, certs, tmp_path_factory):
    b = IdentityBroker(tmp_path_factory.mktemp("ingest"), certs, switchyard_bin())
    b.start()
    yield b
    b.stop()


def rid() -> str:
    return f"d-{uuid.uuid4().hex[:8]}"


def device(hub, tenant, resource: str, version: str = V5) -> Client:
    key = device_key(tenant["master_key"], resource)
    return Client(hub, version, username=f"{tenant['domain']}/{resource}", password=key)


def application(hub, tenant) -> Client:
    return Client(hub, V5, username=f"{tenant['domain']}/apikey/{tenant['api_key']}", password=tenant["api_secret"])


def post_raw(hub, path: str, auth: str, data: bytes):
    """(status, parsed body) of a POST with a body sent exactly as given."""
    req = urllib.request.Request(hub.url(path), data=data, method="POST")
    req.add_header("Authorization", auth)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_mqtt_5_events_are_stored_before_puback_and_invalid_json_gets_0x99(hub, tenant, app):
    resource = rid()
    topic = f"{tenant['domain']}/resources/{resource}/events"
    with application(hub, tenant) as sub, device(hub, tenant, resource) as dev:
        assert sub.subscribe(topic, 1) == [1]
        assert dev.publish(topic, json.dumps({"temp": 21.5}), qos=1) == 0
        # Acknowledged, so on disk: readable at once.
        status, current, _ = http(hub, "GET", f"/resources/{resource}/current", app)
        assert status == 200, current
        assert current["temp"] == 21.5 and current["resource"] == resource
        assert abs(current["timestamp"] - time.time() * 1000) < 60_000
        live = json.loads(sub.get().payload)
        assert live == current, "delivered as stored: normalized, with timestamp and resource"

        assert dev.publish(topic, b"{not json", qos=1) == PAYLOAD_FORMAT_INVALID
        assert dev.publish(topic, b"[1, 2]", qos=1) == PAYLOAD_FORMAT_INVALID
        assert dev.publish(topic, json.dumps({"resource": "someone-else"}), qos=1) == PAYLOAD_FORMAT_INVALID
        assert dev.publish(topic, json.dumps({"temp": 22}), qos=1) == 0, "the connection stays"
        assert not dev.disconnected.is_set()
        assert json.loads(sub.get().payload)["temp"] == 22
        sub.expect_none(0.3)
    status, messages, _ = http(hub, "GET", f"/resources/{resource}/messages", app)
    assert [m["temp"] for m in messages] == [22, 21.5]


def test_mqtt_3_1_1_invalid_json_is_dropped_and_the_connection_kept(hub, tenant, app):
    resource = rid()
    topic = f"{tenant['domain']}/resources/{resource}/events"
    with device(hub, tenant, resource, V311) as dev:
        assert dev.publish(topic, b"not json at all", qos=1) == 0, "3.1.1 has no negative PUBACK"
        assert dev.publish(topic, json.dumps({"ok": 1, "timestamp": 1_700_000_000_000}), qos=1) == 0
        assert not dev.disconnected.is_set()
    status, messages, _ = http(hub, "GET", f"/resources/{resource}/messages", app)
    assert status == 200
    assert messages == [{"ok": 1, "timestamp": 1_700_000_000_000, "resource": resource}]


def test_http_events_are_stored_and_delivered_over_mqtt(hub, tenant, app):
    resource = rid()
    with application(hub, tenant) as sub:
        assert sub.subscribe(f"{tenant['domain']}/resources/+/events", 1) == [1]
        status, body, _ = http(hub, "POST", f"/resources/{resource}/events", app, {"hum": 40, "timestamp": 1000})
        assert status == 200, body
        expected = {"hum": 40, "timestamp": 1000, "resource": resource}
        assert body["content"] == expected and body["message"]
        m = sub.get()
        assert m.topic == f"{tenant['domain']}/resources/{resource}/events"
        assert json.loads(m.payload) == expected
        assert http(hub, "GET", f"/resources/{resource}/current", app)[1] == expected

        other = rid()
        status, body, _ = http(hub, "POST", "/messages", app, [{"resource": other, "x": 1}])
        assert status == 200, body
        assert json.loads(sub.get().payload)["resource"] == other


def test_http_bad_input_and_credentials(hub, tenant, app):
    resource = rid()
    status, body = post_raw(hub, f"/resources/{resource}/events", app, b'{"temp": ')
    assert status == 400, body
    assert body["error"] and body["details"], body
    status, body = post_raw(hub, f"/resources/{resource}/events", app, b'{"resource": "elsewhere"}')
    assert status == 400 and any("resource" in d for d in body["details"]), body

    wrong = basic(tenant["api_key"], "not-the-secret")
    status, body = post_raw(hub, f"/resources/{resource}/events", wrong, b"{}")
    assert status == 401, body

    key = device_key(tenant["master_key"], resource)
    bearer = "Bearer " + token(key, tenant["domain"], resource)
    status, body = post_raw(hub, f"/resources/{resource}/events", bearer, b'{"mine": 1}')
    assert status == 200, body
    status, body = post_raw(hub, f"/resources/{rid()}/events", bearer, b'{"theirs": 1}')
    assert status == 403, body
    status, messages, _ = http(hub, "GET", f"/resources/{resource}/messages", app)
    assert [m.get("mine") for m in messages] == [1]
