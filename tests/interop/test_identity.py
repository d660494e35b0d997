"""Device identity end to end (SPEC §2, §5 Device Hub, §7 admin API and bootstrap).

One switchyard of the module's own: the first tenant comes from
`DATA_DIR/initial-credentials.json`, a second one from the admin API. Device keys and tokens are
computed in the test (hubkit.py) from the published algorithm. Clients: paho-mqtt 3.1.1 and 5.0
for flows, raw sockets where exact CONNACK codes matter (paho rewrites 3.1.1 codes), urllib for
HTTP. The last test reads the server log for every secret the module saw.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import time
import uuid

import pytest

import rawmqtt
from conftest import switchyard_bin
from hubkit import (
    BAD_CREDENTIALS,
    BANNED,
    FAILURES_PER_ADDRESS,
    FAILURES_PER_IDENTITY,
    ID_IN_USE,
    NOT_AUTHORIZED,
    RATE_EXCEEDED,
    V5,
    V311,
    IdentityBroker,
    basic,
    connack,
    device_key,
    http,
    raw_connect,
    token,
    verify_token,
)
from mqttc import Client, ConnectRefused, new_id

pytestmark = pytest.mark.not_mosquitto("the Device Hub is switchyard's")
BOTH = [V311, V5]
PAHO = {V311: "3.1.1", V5: "5.0"}
SECRETS: set[str] = set()  # everything the log must not contain


def wrong_secret() -> str:
    """A well-formed secret (32 random bytes) that matches nothing."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def uid(prefix: str = "d") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Tenant:
    def __init__(self, domain, master_key, api_key, api_secret):
        self.domain, self.master_key = domain, master_key
        self.api_key, self.api_secret = api_key, api_secret
        SECRETS.update([master_key, api_secret])

    def key(self, rid: str) -> str:
        k = device_key(self.master_key, rid)
        SECRETS.add(k)
        return k

    def token(self, rid: str, **kw) -> str:
        t = token(self.key(rid), self.domain, rid, **kw)
        SECRETS.add(t)
        return t

    @property
    def app_user(self) -> str:
        return f"{self.domain}/apikey/{self.api_key}"

    @property
    def basic(self) -> str:
        return basic(self.api_key, self.api_secret)

    def device(self, rid, version=V5, *, use_token=False, **kw) -> Client:
        password = self.token(rid) if use_token else self.key(rid)
        return Client(broker_of(self), PAHO[version], username=f"{self.domain}/{rid}", password=password, **kw)

    def app(self, version=V5, **kw) -> Client:
        return Client(broker_of(self), PAHO[version], username=self.app_user, password=self.api_secret, **kw)


_BROKERS: dict[str, IdentityBroker] = {}


def broker_of(t: Tenant) -> IdentityBroker:
    return _BROKERS["b"]


@pytest.fixture(scope="module")
def hub(broker_kind, certs, tmp_path_factory):
    b = IdentityBroker(tmp_path_factory.mktemp("identity"), certs, switchyard_bin())
    b.start()
    _BROKERS["b"] = b
    yield b
    b.stop()


@pytest.fixture(scope="module")
def admin(hub) -> str:
    t = hub.credentials()["admin_token"]
    SECRETS.add(t)
    return f"Bearer {t}"


@pytest.fixture(scope="module")
def first(hub) -> Tenant:
    c = hub.credentials()["tenant"]
    return Tenant(c["domain"], c["master_key"], c["api_key"], c["api_secret"])


def new_tenant(hub, admin, domain=None) -> Tenant:
    domain = domain or f"t{uuid.uuid4().hex[:8]}.example"
    status, body, _ = http(hub, "POST", "/admin/tenants", admin, {"domain": domain})
    assert status == 201, body
    assert set(body) == {"domain", "master_key", "api_key", "api_secret"}
    return Tenant(body["domain"], body["master_key"], body["api_key"], body["api_secret"])


@pytest.fixture(scope="module")
def second(hub, admin) -> Tenant:
    return new_tenant(hub, admin, "second.example")


def test_initial_credentials_file(hub, first, admin):
    path = hub.data_dir / "initial-credentials.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    c = hub.credentials()
    assert set(c) == {"admin_token", "tenant"}
    assert set(c["tenant"]) == {"domain", "master_key", "api_key", "api_secret"}
    assert c["tenant"]["domain"] == "localhost"
    for s in (c["admin_token"], c["tenant"]["master_key"], c["tenant"]["api_secret"]):
        assert len(s) == 43 and len(base64.urlsafe_b64decode(s + "=")) == 32
    assert "initial-credentials.json" in hub.log_file.read_text()
    status, body, _ = http(hub, "GET", "/admin/tenants", admin)
    assert status == 200 and [t["domain"] for t in body["tenants"]] == ["localhost"]
    assert "master_key" not in str(body)


@pytest.mark.parametrize("version", BOTH)
@pytest.mark.parametrize("use_token", [False, True])
def test_device_and_application_exchange_messages(hub, first, version, use_token):
    rid = uid()
    events, commands = f"{first.domain}/resources/{rid}/events", f"{first.domain}/resources/{rid}/commands"
    with first.app(version) as app, first.device(rid, version, use_token=use_token) as dev:
        assert app.subscribe(f"{first.domain}/resources/+/events", 1) == [1]
        assert dev.subscribe(commands, 1) == [1]
        dev.publish(events, b'{"t": 1}', 1)
        m = app.get()
        # Events go through the pipeline: delivered normalized (SPEC §4.1).
        assert m.topic == events
        delivered = json.loads(m.payload)
        assert delivered["t"] == 1 and delivered["resource"] == rid and "timestamp" in delivered
        app.publish(commands, b'{"cmd": "go"}', 1)
        assert dev.get().topic == commands


def test_cli_matches_the_published_algorithm(hub, first, tmp_path):
    mk = tmp_path / "master.key"
    mk.write_text(first.master_key + "\n")
    for rid in ("sensor-1", "a:b.c-d_e", "X" * 128):
        out = subprocess.run(
            [switchyard_bin(), "device", "key", "--master-key-file", str(mk), rid],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert out.stdout.strip() == first.key(rid)
    key = first.key("cli-dev")
    out = subprocess.run(
        [switchyard_bin(), "device", "token", "--key", key, "--domain", first.domain, "cli-dev", "--ttl", "10m"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    tok = out.stdout.strip()
    SECRETS.add(tok)
    claims = verify_token(tok, key)
    assert (claims["iss"], claims["sub"], claims["exp"] - claims["iat"]) == (first.domain, "cli-dev", 600)
    for version in BOTH:
        assert connack(hub, version, f"{first.domain}/cli-dev", tok) == 0


@pytest.mark.parametrize("version", BOTH)
def test_devices_subscribe_only_to_their_commands(hub, first, second, version):
    rid = uid()
    refused = 0x87 if version == V5 else 0x80
    with first.device(rid, version) as dev:
        for f in [
            f"{first.domain}/resources/{rid}/events",
            f"{first.domain}/resources/other/commands",
            f"{first.domain}/resources/+/commands",
            f"{first.domain}/resources/{rid}/#",
            f"{first.domain}/#",
            f"{second.domain}/resources/{rid}/commands",
            "#",
            "+/resources/+/commands",
            "$SYS/#",
            f"$share/g/{first.domain}/resources/{rid}/commands/x",
        ]:
            assert dev.subscribe(f, 0) == [refused], f
        assert dev.subscribe(f"{first.domain}/resources/{rid}/commands", 0) == [0]


FORBIDDEN_DEVICE_PUBLISH = [
    "{d}/resources/other/events",
    "{d}/resources/{r}/commands",
    "{d}/resources/{r}/events/more",
    "{d}/anything",
    "{o}/resources/{r}/events",
    "$SYS/broker/x",
    "elsewhere",
]


@pytest.mark.parametrize("version", BOTH)
@pytest.mark.parametrize("pattern", FORBIDDEN_DEVICE_PUBLISH)
def test_forbidden_publish_closes_the_connection(hub, first, second, version, pattern):
    rid = uid()
    c, code = raw_connect(hub, version, f"{first.domain}/{rid}", first.key(rid), client_id=rid)
    assert code == 0
    c.send(rawmqtt.publish(pattern.format(d=first.domain, o=second.domain, r=rid), b"{}", version=version, qos=1, pid=1))
    sent = c.wait_closed()
    if version == V5:
        assert [(p.name, p.fields.get("reason")) for p in sent] == [("DISCONNECT", 0x87)]
    else:
        assert sent == [], "3.1.1: closed without any answer"


@pytest.mark.parametrize("version", BOTH)
def test_applications_stay_in_their_tenant(hub, first, second, version):
    refused = 0x87 if version == V5 else 0x80
    with first.app(version) as app:
        assert app.subscribe(f"{first.domain}/#", 0) == [0]
        assert app.subscribe(f"$share/g/{first.domain}/resources/+/events", 0) == [0]
        for f in [f"{second.domain}/#", "#", "+/resources/+/events", f"{first.domain}.evil/#"]:
            assert app.subscribe(f, 0) == [refused], f
        # The broker closes at once: paho may see the close before publish() returns, so its
        # return code is not asserted; the disconnect below is the check.
        app.paho.publish(f"{second.domain}/resources/x/commands", b"{}", 0)
        assert app.disconnected.wait(5)
        if version == V5:
            assert app.disconnect_rc == 0x87


def test_two_tenants_share_nothing(hub, first, second):
    rid = "same-id"
    assert first.key(rid) != second.key(rid)
    for version in BOTH:
        assert connack(hub, version, f"{second.domain}/{rid}", first.key(rid)) == BAD_CREDENTIALS[version]
        assert connack(hub, version, f"{second.domain}/apikey/{first.api_key}", first.api_secret) == BAD_CREDENTIALS[version]
    with first.app() as a, second.app() as b, Client(hub, "5.0") as anonymous:
        assert anonymous.subscribe("#", 0) == [0]
        assert anonymous.subscribe(f"{first.domain}/#", 0) == [0]
        assert b.subscribe(f"{second.domain}/#", 0) == [0]
        assert a.subscribe(f"{first.domain}/#", 0) == [0]
        with first.device(rid) as dev:
            dev.publish(f"{first.domain}/resources/{rid}/events", b"{}", 1)
        assert a.get().topic == f"{first.domain}/resources/{rid}/events"
        b.expect_none(0.5)
        anonymous.expect_none(0.2)


BAD_TOKENS = {
    "expired": lambda t, r: t.token(r, iat=int(time.time()) - 7200, ttl=3600),
    "future": lambda t, r: t.token(r, iat=int(time.time()) + 3600, ttl=600),
    "too long-lived": lambda t, r: t.token(r, ttl=2 * 86400),
    "foreign key": lambda t, r: token(device_key("A" * 43, r), t.domain, r),
    "other device": lambda t, r: t.token(r + "x"),
    "wrong issuer": lambda t, r: token(t.key(r), "other.example", r),
    "alg none": lambda t, r: token(t.key(r), t.domain, r, header={"alg": "none"}),
    "alg HS512": lambda t, r: token(t.key(r), t.domain, r, header={"alg": "HS512", "typ": "JWT"}),
    "garbage": lambda t, r: "a.b.c",
    "truncated": lambda t, r: t.token(r)[:-5],
}


@pytest.mark.parametrize("version", BOTH)
@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_tokens_are_refused(hub, first, version, case):
    rid = uid()
    tok = BAD_TOKENS[case](first, rid)
    SECRETS.add(tok)
    assert connack(hub, version, f"{first.domain}/{rid}", tok) == BAD_CREDENTIALS[version]


@pytest.mark.parametrize("version", BOTH)
def test_wrong_secrets_and_bad_input(hub, first, version):
    d = first.domain
    cases = [
        (f"{d}/{uid()}", first.key("someone-else")),
        (f"{d}/{uid()}", "not-a-key"),
        (f"{d}/{uid()}", b"\xff\xfe" * 10),
        (f"{d}/{uid()}", "A" * 5000),
        (f"{d}/apikey/{first.api_key}x", first.api_secret),
        (f"{d}/apikey/{first.api_key}", wrong_secret()),
        (f"{d}/apikey/{uid()}", first.api_secret),
        (f"{d}/apikey/bad.id", first.api_secret),
        (f"{d}/" + "r" * 129, first.key("r")),
        ("x" * 600, "pw"),
        (f"{d}/a/b/c", "pw"),
        (f"Localhost/{uid()}", first.key("x")),
        (f"unknown.example/{uid()}", first.key("x")),
    ]
    for username, password in cases:
        assert connack(hub, version, username, password) == BAD_CREDENTIALS[version], username[:80]
    # No credentials: the anonymous namespace (plain-MQTT mode of this broker), never a tenant.
    assert connack(hub, version, None, None) == 0


def test_http_credentials(hub, first, admin):
    assert http(hub, "GET", "/devices", first.basic)[0] == 200
    for auth in [None, basic(first.api_key, wrong_secret()), "Basic !!!", admin, "Bearer " + wrong_secret(), "Digest x"]:
        status, body, headers = http(hub, "GET", "/devices", auth)
        assert status in (401, 403), auth
        assert set(body) == {"error", "details"}
    assert http(hub, "GET", "/admin/tenants", first.basic)[0] == 403
    assert http(hub, "GET", "/admin/tenants", "Bearer " + wrong_secret())[0] == 401


def test_device_hub_api(hub, first):
    auth = first.basic
    status, created, _ = http(hub, "POST", "/devices", auth, {"id": "hub-dev", "name": "Pump", "metadata": {"floor": 2}})
    assert status == 201 and set(created) == {"resource", "key", "token", "expires"}
    assert created["key"] == first.key("hub-dev")
    SECRETS.update([created["key"], created["token"]])
    assert verify_token(created["token"], created["key"])["sub"] == "hub-dev"
    assert http(hub, "POST", "/devices", auth, {"id": "hub-dev"})[0] == 409
    status, generated, _ = http(hub, "POST", "/devices", auth)
    assert status == 201 and len(generated["resource"]) == 36 and generated["key"] == first.key(generated["resource"])
    SECRETS.update([generated["key"], generated["token"]])
    for bad in [{"id": "a/b"}, {"id": "."}, {"metadata": [1]}, {"nope": 1}, {"name": "x" * 300}]:
        status, body, _ = http(hub, "POST", "/devices", auth, bad)
        assert status == 400 and body["error"], bad

    status, dev, _ = http(hub, "GET", "/devices/hub-dev", auth)
    assert status == 200 and dev["name"] == "Pump" and dev["metadata"] == {"floor": 2} and not dev["blocked"]
    assert "key" not in dev and "token" not in dev
    status, dev, _ = http(hub, "PATCH", "/devices/hub-dev", auth, {"name": None, "metadata": {"floor": 3}})
    assert status == 200 and dev["name"] is None and dev["metadata"] == {"floor": 3}
    assert http(hub, "PATCH", "/devices/hub-dev", auth, {"blocked": True})[0] == 400
    assert http(hub, "GET", "/devices/nope", auth)[0] == 404

    status, issued, _ = http(hub, "POST", "/devices/hub-dev/token?ttl=15m", auth)
    assert status == 200 and set(issued) == {"token", "expires"}
    SECRETS.add(issued["token"])
    claims = verify_token(issued["token"], first.key("hub-dev"))
    assert claims["exp"] - claims["iat"] == 900 and issued["expires"] == claims["exp"] * 1000
    assert http(hub, "POST", "/devices/hub-dev/token?ttl=2d", auth)[0] == 400
    assert http(hub, "POST", "/devices/hub-dev/token?ttl=soon", auth)[0] == 400

    # Last seen and message count follow the device's traffic.
    with first.device("hub-dev") as dev:
        for _ in range(3):
            dev.publish(f"{first.domain}/resources/hub-dev/events", b"{}", 1)
    status, dev, _ = http(hub, "GET", "/devices/hub-dev", auth)
    assert dev["message_count"] >= 3 and dev["last_seen"] >= dev["created"]

    for i in range(5):
        assert http(hub, "POST", "/devices", auth, {"id": f"page-{i}"})[0] == 201
    seen, after = [], None
    while True:
        q = "/devices?limit=2" + (f"&after={after}" if after else "")
        status, page, _ = http(hub, "GET", q, auth)
        assert status == 200 and len(page["devices"]) <= 2
        seen += [d["resource"] for d in page["devices"]]
        after = page["next"]
        if after is None:
            break
    assert seen == sorted(seen) and {f"page-{i}" for i in range(5)} <= set(seen) and "hub-dev" in seen
    assert http(hub, "DELETE", "/devices/page-0", auth)[0] == 204
    assert http(hub, "DELETE", "/devices/page-0", auth)[0] == 404
    assert http(hub, "GET", "/devices?limit=0", auth)[0] == 400


def test_blocking_drops_live_connections_and_refuses_every_form(hub, first):
    rid = uid()
    by_key, by_token = first.device(rid, V5), first.device(rid, V311, use_token=True, client_id=new_id())
    started = time.monotonic()
    status, body, _ = http(hub, "POST", f"/devices/{rid}/block", first.basic)
    assert status == 200 and body["blocked"]
    assert by_key.disconnected.wait(1.0) and by_token.disconnected.wait(1.0)
    assert time.monotonic() - started < 1.5
    assert by_key.disconnect_rc == 0x98
    for version in BOTH:
        assert connack(hub, version, f"{first.domain}/{rid}", first.key(rid)) == BANNED[version]
        assert connack(hub, version, f"{first.domain}/{rid}", first.token(rid)) == BANNED[version]
    assert http(hub, "POST", f"/devices/{rid}/token", first.basic)[0] == 403
    assert http(hub, "POST", f"/devices/{rid}/unblock", first.basic)[0] == 200
    assert connack(hub, V5, f"{first.domain}/{rid}", first.key(rid)) == 0


def test_rotation_accepts_old_and_new_keys(hub, admin):
    t = new_tenant(hub, admin)
    rid = "rotating"
    old_key, old_token = t.key(rid), t.token(rid)
    live = t.device(rid, V5)
    status, body, _ = http(hub, "POST", f"/admin/tenants/{t.domain}/rotate-master-key", admin)
    assert status == 200 and set(body) == {"domain", "master_key", "previous_key_retires"}
    retires = body["previous_key_retires"] / 1000
    assert abs(retires - (time.time() + 3600)) < 60
    new = Tenant(t.domain, body["master_key"], t.api_key, t.api_secret)
    assert new.key(rid) != old_key
    for version in BOTH:
        for password in (old_key, old_token, new.key(rid), new.token(rid)):
            assert connack(hub, version, f"{t.domain}/{rid}", password, client_id=new_id()) == 0
    assert not live.disconnected.is_set(), "rotation must not drop connections"
    live.disconnect()
    status, created, _ = http(hub, "POST", "/devices", t.basic, {"id": "after-rotation"})
    SECRETS.update([created["key"], created["token"]])
    assert created["key"] == new.key("after-rotation")


@pytest.mark.parametrize("version", BOTH)
def test_another_identity_cannot_take_a_session(hub, first, second, version):
    cid = new_id("steal")
    owner, code = raw_connect(hub, version, f"{first.domain}/victim", first.key("victim"), client_id=cid)
    assert code == 0
    assert connack(hub, version, f"{first.domain}/thief", first.key("thief"), client_id=cid) == ID_IN_USE[version]
    assert connack(hub, version, first.app_user, first.api_secret, client_id=cid) == ID_IN_USE[version]
    # Another tenant's client with that id has a session of its own.
    assert connack(hub, version, f"{second.domain}/victim", second.key("victim"), client_id=cid) == 0
    owner.close()


def test_rate_limiting(hub, first):
    rid = uid("rl")
    user = f"{first.domain}/{rid}"
    for _ in range(FAILURES_PER_IDENTITY):
        assert connack(hub, V5, user, first.key("wrong")) == BAD_CREDENTIALS[V5]
    for version in BOTH:
        assert connack(hub, version, user, first.key(rid)) == RATE_EXCEEDED[version]
        # The lock holds for the failing address only: the device itself connects from another.
        assert connack(hub, version, user, first.key(rid), source="127.0.0.2") == 0
    assert connack(hub, V5, f"{first.domain}/{uid()}", first.key("x")) == BAD_CREDENTIALS[V5]
    # Per source address: another loopback address sprays usernames until it is locked out.
    source = "127.0.0.3"
    for i in range(FAILURES_PER_ADDRESS):
        connack(hub, V5, f"{first.domain}/spray-{i}", "bad", source=source)
    fresh = uid()
    assert connack(hub, V5, f"{first.domain}/{fresh}", first.key(fresh), source=source) == RATE_EXCEEDED[V5]
    assert connack(hub, V5, f"{first.domain}/{fresh}", first.key(fresh)) == 0
    # HTTP: the same limits, answered 429 with Retry-After.
    status, k, _ = http(hub, "POST", "/apikeys", first.basic)
    SECRETS.add(k["api_secret"])
    for _ in range(FAILURES_PER_IDENTITY):
        assert http(hub, "GET", "/devices", basic(k["api_key"], wrong_secret()))[0] == 401
    status, body, headers = http(hub, "GET", "/devices", basic(k["api_key"], k["api_secret"]))
    assert status == 429 and int(headers["Retry-After"]) > 0


def test_registration_deletion_and_api_keys(hub, admin):
    t = new_tenant(hub, admin)
    assert http(hub, "PATCH", f"/admin/tenants/{t.domain}", admin, {"require_registration": True})[0] == 200
    for version in BOTH:
        assert connack(hub, version, f"{t.domain}/unregistered", t.key("unregistered")) == NOT_AUTHORIZED[version]
    assert http(hub, "POST", "/devices", t.basic, {"id": "registered"})[0] == 201
    dev = t.device("registered", V5)
    assert http(hub, "DELETE", "/devices/registered", t.basic)[0] == 204
    assert dev.disconnected.wait(1.5) and dev.disconnect_rc == 0x98
    assert connack(hub, V5, f"{t.domain}/registered", t.key("registered")) == NOT_AUTHORIZED[V5]

    status, k, _ = http(hub, "POST", "/apikeys", t.basic)
    assert status == 201 and set(k) == {"api_key", "api_secret"}
    extra = Tenant(t.domain, t.master_key, k["api_key"], k["api_secret"])
    app = extra.app(V5)
    listed = http(hub, "GET", "/apikeys", t.basic)[1]["api_keys"]
    assert {x["api_key"] for x in listed} == {t.api_key, k["api_key"]} and "api_secret" not in str(listed)
    assert http(hub, "DELETE", f"/apikeys/{k['api_key']}", t.basic)[0] == 204
    assert app.disconnected.wait(1.5) and app.disconnect_rc == 0x98
    assert connack(hub, V5, extra.app_user, extra.api_secret) == BAD_CREDENTIALS[V5]


def test_disabled_and_deleted_tenants(hub, admin, second):
    t = new_tenant(hub, admin)
    dev, app = t.device("d1", V5), t.app(V311)
    status, body, _ = http(hub, "POST", f"/admin/tenants/{t.domain}/disable", admin)
    assert status == 200 and body["disabled"]
    assert dev.disconnected.wait(1.5) and app.disconnected.wait(1.5) and dev.disconnect_rc == 0x98
    for version in BOTH:
        assert connack(hub, version, f"{t.domain}/d1", t.key("d1")) == NOT_AUTHORIZED[version]
        assert connack(hub, version, t.app_user, t.api_secret) == NOT_AUTHORIZED[version]
    assert http(hub, "GET", "/devices", t.basic)[0] == 403
    assert http(hub, "POST", f"/admin/tenants/{t.domain}/enable", admin)[0] == 200
    dev = t.device("d1", V5)
    assert http(hub, "DELETE", f"/admin/tenants/{t.domain}", admin)[0] == 204
    assert dev.disconnected.wait(1.5)
    for version in BOTH:
        assert connack(hub, version, f"{t.domain}/d1", t.key("d1")) == BAD_CREDENTIALS[version]
    assert http(hub, "GET", "/devices", t.basic)[0] == 401
    assert http(hub, "DELETE", f"/admin/tenants/{t.domain}", admin)[0] == 404
    assert http(hub, "POST", "/admin/tenants", admin, {"domain": "bad_domain"})[0] == 400
    assert http(hub, "POST", "/admin/tenants", admin, {"domain": "second.example"})[0] == 409


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_and_metrics(hub, first):
    out = subprocess.run(
        ["curl", "-s", "-u", f"{first.api_key}:{first.api_secret}", hub.url("/devices?limit=1")],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert '"devices"' in out.stdout
    text = subprocess.run(["curl", "-s", hub.url("/metrics")], capture_output=True, text=True, timeout=30).stdout
    for needle in [
        'switchyard_auth_success_total{protocol="mqtt",kind="device"}',
        'switchyard_auth_failure_total{protocol="mqtt",reason="bad_device_key"}',
        'switchyard_auth_failure_total{protocol="mqtt",reason="throttled"}',
        'switchyard_auth_failure_total{protocol="http",reason="bad_api_secret"}',
        "switchyard_authz_denied_total",
    ]:
        assert needle in text, needle


def test_tenant_create_offline(certs, tmp_path_factory):
    """`switchyard tenant create` against a stopped server's store; the server then admits it."""
    b = IdentityBroker(tmp_path_factory.mktemp("offline"), certs, switchyard_bin())
    cmd = [switchyard_bin(), "tenant", "create", "Offline.Example", "--config", str(b.config)]
    out = subprocess.run(cmd, cwd=b.workdir, capture_output=True, text=True, timeout=30, check=True)
    created = json.loads(out.stdout)
    assert set(created) == {"domain", "master_key", "api_key", "api_secret"}
    assert created["domain"] == "offline.example"
    t = Tenant(created["domain"], created["master_key"], created["api_key"], created["api_secret"])
    b.start()
    try:
        for version in BOTH:
            assert connack(b, version, f"{t.domain}/dev", t.key("dev")) == 0
            assert connack(b, version, t.app_user, t.api_secret) == 0
        assert "offline.example" not in out.stderr
        busy = subprocess.run(cmd, cwd=b.workdir, capture_output=True, text=True, timeout=30)
        assert busy.returncode != 0 and "POST /admin/tenants" in busy.stderr
        assert set(b.credentials()) == {"admin_token", "tenant"}, "the configured tenant is still bootstrapped"
        SECRETS.add(b.credentials()["admin_token"])
    finally:
        b.stop()
    log = b.log_file.read_text()
    assert t.master_key not in log and t.api_secret not in log


def test_zz_log_contains_no_secret(hub):
    """Runs last in this module: nothing secret the module handled is in the server log."""
    log = hub.log_file.read_text(errors="replace")
    assert "authenticated" in log and "authentication refused" in log
    leaked = [s[:8] + "…" for s in SECRETS if len(s) >= 20 and s in log]
    assert not leaked, f"secrets in the server log: {leaked}"
