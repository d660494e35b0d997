"""Protocol bridging, end to end (SPEC §5, issue 10): every way in reaches every way out.

Events of a resource, sent over HTTP (API key or device token), the publish WebSocket (API key
or device token in the URL), `/socket`, MQTT 3.1.1, 5.0 or MQTT over WebSocket by the device,
reach MQTT subscribers (3.1.1, 5.0, over WebSocket), the subscribe WebSocket, SSE and NDJSON
streams and the tenant's NDJSON firehose, normalized and stored. Commands sent over HTTP, the
publish WebSocket, `/socket` or by an MQTT application reach the device over MQTT (3.1.1, 5.0,
WebSocket), the commands WebSocket and the SSE commands stream (the device's own token or an API
key). Wrong or missing credentials are refused on every path: 401 (403 for a device reaching
past its own resource) before any WebSocket upgrade, CONNACK refusals over MQTT.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from brokers import HOST
from conftest import switchyard_bin
from hubkit import IdentityBroker, basic, device_key, http, token
from mqttc import V5, V311, Client, ConnectRefused
from test_streams import Stream
from wsdata import Socket, app_query, fresh_key, refused

pytestmark = pytest.mark.not_mosquitto("protocol bridging is switchyard's")


@pytest.fixture(scope="module")
def hub(broker_kind, certs, tmp_path_factory):
    b = IdentityBroker(tmp_path_factory.mktemp("bridge"), certs, switchyard_bin())
    b.start()
    yield b
    b.stop()


def rid() -> str:
    return f"b-{uuid.uuid4().hex[:8]}"


def topic(tenant, resource: str, channel: str) -> str:
    return f"{tenant['domain']}/resources/{resource}/{channel}"


def device_mqtt(hub, tenant, resource: str, version: str, transport: str = "tcp") -> Client:
    key = device_key(tenant["master_key"], resource)
    return Client(hub, version, transport=transport, username=f"{tenant['domain']}/{resource}", password=key)


def app_mqtt(hub, tenant, version: str, transport: str = "tcp") -> Client:
    username = f"{tenant['domain']}/apikey/{tenant['api_key']}"
    return Client(hub, version, transport=transport, username=username, password=tenant["api_secret"])


def device_token(tenant, resource: str) -> str:
    return token(device_key(tenant["master_key"], resource), tenant["domain"], resource)


# ---- events: device or application in, every listener out ---------------------------------


def send_event(how: str, hub, tenant, app: str, resource: str, body: dict) -> None:
    """Sends `body` as an event of `resource` the way `how` names; returns once acknowledged."""
    tok = device_token(tenant, resource)
    if how in ("http", "http-token"):
        auth = app if how == "http" else f"Bearer {tok}"
        status, answer, _ = http(hub, "POST", f"/resources/{resource}/events", auth, body)
        assert status == 200, answer
    elif how in ("ws", "ws-token"):
        query = app_query(tenant) if how == "ws" else f"token={tok}"
        with Socket(hub, f"/resources/{resource}/events/publish", query=query) as ws:
            answer = ws.answer(body)
            assert answer == {"type": "ack", "frame": 1, "message": "1 message stored"}, answer
    elif how == "ws-socket":
        with Socket(hub, "/socket", query=app_query(tenant)) as ws:
            answer = ws.answer([{**body, "resource": resource}])
            assert answer["type"] == "ack", answer
    else:
        version, transport = {"mqtt-3.1.1": (V311, "tcp"), "mqtt-5.0": (V5, "tcp"), "mqtt-ws": (V5, "ws")}[how]
        with device_mqtt(hub, tenant, resource, version, transport) as dev:
            assert dev.publish(topic(tenant, resource, "events"), json.dumps(body), qos=1) == 0


EVENT_SOURCES = ["http", "http-token", "ws", "ws-token", "ws-socket", "mqtt-3.1.1", "mqtt-5.0", "mqtt-ws"]


@pytest.mark.parametrize("source", EVENT_SOURCES)
def test_an_event_reaches_every_listener(hub, tenant, app, source):
    resource = rid()
    events = topic(tenant, resource, "events")
    marker = uuid.uuid4().hex
    subscribers = [app_mqtt(hub, tenant, V311), app_mqtt(hub, tenant, V5), app_mqtt(hub, tenant, V5, "ws")]
    sockets = [
        Socket(hub, f"/resources/{resource}/events/subscribe", query=app_query(tenant)),
        Socket(hub, f"/resources/{resource}/events/subscribe", auth=app),
    ]
    streams = [
        Stream(hub, f"/resources/{resource}/events", app, "text/event-stream"),
        Stream(hub, f"/resources/{resource}/events", app, "application/x-ndjson"),
        Stream(hub, "/messages", app, "application/x-ndjson"),
    ]
    try:
        for s in subscribers:
            assert s.subscribe(events, 1) == [1]
        send_event(source, hub, tenant, app, resource, {"marker": marker, "temp": 20.5})

        for s in subscribers:
            m = s.get()
            assert m.topic == events, (s.version, m.topic)
            got = json.loads(m.payload)
            assert got["marker"] == marker and got["resource"] == resource and "timestamp" in got, got
        for ws in sockets:
            frame = ws.until(lambda f: f["type"] == "message")
            assert frame["resource"] == resource and frame["channel"] == "events", frame
            assert frame["message"]["marker"] == marker and isinstance(frame["seq"], int), frame
        for stream in streams:
            _, got = stream.message()
            while got.get("resource") != resource:  # the firehose carries the whole tenant
                _, got = stream.message()
            assert got["marker"] == marker, got
        status, current, _ = http(hub, "GET", f"/resources/{resource}/current", app)
        assert status == 200 and current["marker"] == marker, current
    finally:
        for s in subscribers:
            s.disconnect()
        for ws in sockets:
            ws.close()
        for stream in streams:
            stream.close()


# ---- commands: application in, the device and command listeners out -----------------------


def send_command(how: str, hub, tenant, resource: str, body: dict) -> None:
    if how == "http":
        status, answer, _ = http(hub, "POST", f"/resources/{resource}/commands", app_auth(tenant), body)
        assert status == 200, answer
    elif how == "ws":
        with Socket(hub, f"/resources/{resource}/commands/publish", query=app_query(tenant)) as ws:
            answer = ws.answer(body)
            assert answer["type"] == "ack", answer
    elif how == "ws-socket":
        with Socket(hub, "/socket", query=app_query(tenant)) as ws:
            answer = ws.answer({**body, "resource": resource, "channel": "commands"})
            assert answer["type"] == "ack", answer
    else:
        version, transport = {"mqtt-3.1.1": (V311, "tcp"), "mqtt-5.0": (V5, "tcp"), "mqtt-ws": (V5, "ws")}[how]
        with app_mqtt(hub, tenant, version, transport) as a:
            assert a.publish(topic(tenant, resource, "commands"), json.dumps(body), qos=1) in (0, None)


def app_auth(tenant) -> str:
    return basic(tenant["api_key"], tenant["api_secret"])


COMMAND_SOURCES = ["http", "ws", "ws-socket", "mqtt-3.1.1", "mqtt-5.0", "mqtt-ws"]


@pytest.mark.parametrize("source", COMMAND_SOURCES)
def test_a_command_reaches_the_device_over_every_protocol(hub, tenant, app, source):
    resource = rid()
    commands = topic(tenant, resource, "commands")
    marker = uuid.uuid4().hex
    devices = [
        device_mqtt(hub, tenant, resource, V311),
        device_mqtt(hub, tenant, resource, V5),
        device_mqtt(hub, tenant, resource, V5, "ws"),
    ]
    sockets = [
        Socket(hub, f"/resources/{resource}/commands/subscribe", query=f"token={device_token(tenant, resource)}"),
        Socket(hub, f"/resources/{resource}/commands/subscribe", query=app_query(tenant)),
    ]
    tok = device_token(tenant, resource)
    streams = [
        Stream(hub, f"/resources/{resource}/commands", f"Bearer {tok}", "text/event-stream"),
        Stream(hub, f"/resources/{resource}/commands", app, "application/x-ndjson"),
    ]
    try:
        for d in devices:
            assert d.subscribe(commands, 1) == [1]
        send_command(source, hub, tenant, resource, {"marker": marker, "action": "on"})
        for d in devices:
            m = d.get()
            assert m.topic == commands
            assert json.loads(m.payload)["marker"] == marker
        # Stored in the commands history, so command listeners hear it.
        for ws in sockets:
            frame = ws.until(lambda f: f["type"] == "message")
            assert frame["channel"] == "commands" and frame["message"]["marker"] == marker, frame
        for stream in streams:
            assert stream.message()[1]["marker"] == marker
    finally:
        for d in devices:
            d.disconnect()
        for ws in sockets:
            ws.close()
        for stream in streams:
            stream.close()


def test_a_command_is_not_an_event(hub, tenant, app):
    resource = rid()
    with Socket(hub, f"/resources/{resource}/events/subscribe", query=app_query(tenant)) as events:
        send_command("ws", hub, tenant, resource, {"action": "off"})
        send_event("ws", hub, tenant, app, resource, {"after": 1})
        frame = events.until(lambda f: f["type"] == "message")
        assert frame["message"]["after"] == 1, "the command was not heard as an event"
    status, current, _ = http(hub, "GET", f"/resources/{resource}/current", app)
    assert status == 200 and "action" not in current


# ---- wrong credentials on every path -------------------------------------------------------

WS_PATHS = [
    "/resources/{r}/events/subscribe",
    "/resources/{r}/commands/subscribe",
    "/resources/{r}/events/publish",
    "/resources/{r}/commands/publish",
    "/socket",
]


@pytest.mark.parametrize("path", WS_PATHS)
def test_websockets_refuse_wrong_credentials_before_the_upgrade(hub, tenant, app, path):
    resource = rid()
    path = path.format(r=resource)
    key = fresh_key(hub, app)
    wrong_secret = f"apiKey={key}&apiSecret={'A' * 43}"
    other_key = device_key(tenant["master_key"], rid())
    forged = token(other_key, tenant["domain"], resource)  # signed with another device's key
    assert refused(hub, path) == 401
    assert refused(hub, path, query=wrong_secret) == 401
    assert refused(hub, path, auth=basic(key, "wrong")) == 401
    assert refused(hub, path, query=f"token={forged}") == 401
    assert refused(hub, path, auth=f"Bearer {forged}") == 401
    assert refused(hub, path, query=f"token={device_token(tenant, resource)[:-2]}") == 401


def test_pages_on_other_web_origins_cannot_send_with_cached_credentials(hub, tenant, app):
    """A browser attaches Basic credentials it cached for the broker to requests any page makes it
    send: a WebSocket handshake or a POST from another web origin is refused (403) before it is
    authenticated; the broker's own origin and clients that send no Origin (curl) pass."""
    resource = rid()
    path = f"/resources/{resource}/commands/publish"
    evil = "https://evil.example"
    assert refused(hub, path, auth=app, origin=evil) == 403
    Socket(hub, path, auth=app, origin=f"http://{HOST}:{hub.http_port}").close()
    url = f"http://{HOST}:{hub.http_port}/resources/{resource}/commands"
    user = f"{tenant['api_key']}:{tenant['api_secret']}"

    def curl(*extra: str) -> str:
        args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", user, *extra]
        args += ["-H", "Content-Type: application/json", "-d", '{"c": 1}', url]
        return subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout

    assert curl("-H", f"Origin: {evil}") == "403"
    assert curl() == "200"


def test_a_device_token_reaches_only_its_own_streams(hub, tenant):
    resource, other = rid(), rid()
    query = f"token={device_token(tenant, resource)}"
    for path in [
        f"/resources/{resource}/events/subscribe",
        f"/resources/{resource}/commands/publish",
        f"/resources/{other}/commands/subscribe",
        f"/resources/{other}/events/publish",
    ]:
        assert refused(hub, path, query=query) == 403, path
    with Socket(hub, "/socket", query=query) as ws:
        answer = ws.answer({"resource": other, "x": 1})
        assert answer["type"] == "error" and answer["status"] == 403, answer
        answer = ws.answer({"resource": resource, "channel": "commands"})
        assert answer["type"] == "error" and answer["status"] == 403, answer
        assert ws.answer({"resource": resource, "x": 1})["type"] == "ack"


@pytest.mark.parametrize("version,transport", [(V311, "tcp"), (V5, "tcp"), (V5, "ws")])
def test_mqtt_refuses_wrong_credentials(hub, tenant, app, version, transport):
    resource = rid()
    with pytest.raises(ConnectRefused):
        Client(hub, version, transport=transport, username=f"{tenant['domain']}/{resource}", password="A" * 43)
    with pytest.raises(ConnectRefused):
        username = f"{tenant['domain']}/apikey/{fresh_key(hub, app)}"
        Client(hub, version, transport=transport, username=username, password="wrong")


def test_http_refuses_wrong_credentials(hub, tenant, app):
    resource = rid()
    for auth in [None, basic(fresh_key(hub, app), "wrong"), f"Bearer {device_token(tenant, rid())}"]:
        status, _, _ = http(hub, "POST", f"/resources/{resource}/events", auth, {"x": 1})
        assert status == (403 if auth and auth.startswith("Bearer") else 401), auth
    wrong = basic(fresh_key(hub, app), "wrong")
    for path, accept in [
        (f"/resources/{resource}/events", "text/event-stream"),
        (f"/resources/{resource}/commands", "application/x-ndjson"),
        ("/messages", "application/x-ndjson"),
    ]:
        stream = Stream(hub, path, wrong, accept)
        stream.close()
        assert stream.status == 401, path
    status, _, _ = http(hub, "POST", f"/resources/{resource}/commands", wrong, {"on": True})
    assert status == 401


def test_publish_errors_name_the_field_and_keep_the_socket(hub, tenant):
    resource = rid()
    with Socket(hub, f"/resources/{resource}/events/publish", query=app_query(tenant)) as ws:
        answer = ws.answer([{"x": 1}, {"x": 2, "timestamp": "later"}])
        assert answer["type"] == "error" and answer["status"] == 400, answer
        assert answer["details"][0].startswith("[1].timestamp"), answer
        answer = ws.answer("{not json")
        assert answer["type"] == "error" and answer["frame"] == 2, answer
        assert ws.answer({"x": 3}) == {"type": "ack", "frame": 3, "message": "1 message stored"}
