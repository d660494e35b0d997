"""Helpers for the Device Hub end-to-end tests (test_identity.py).

Device keys and connection tokens are computed here from the published algorithm
(docs/device-keys.md, SPEC §2.2-2.3) with Python's hmac/hashlib/base64 only, never by
calling switchyard. Also: a raw MQTT CONNECT with username/password (exact 3.1.1 and 5.0
CONNACK codes, optionally from another loopback source address), a small HTTP client, and
a switchyard broker with the test's authentication limits, also with one forwarding sink (and
its `/metrics`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import struct
import time
import urllib.error
import urllib.request

import rawmqtt
from brokers import HOST, Switchyard

V311, V5 = 4, 5  # protocol levels on the wire

# Authentication limits of the test broker: per (address, identity) low (so one test can trip it),
# per address high (every test connects from 127.0.0.1), lock-out long enough to observe.
FAILURES_PER_IDENTITY = 5
FAILURES_PER_ADDRESS = 200
ROTATION_GRACE_SECS = 3600


def b64e(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def device_key(master_key: str, resource_id: str) -> str:
    """SPEC §2.2: base64url_nopad(HMAC-SHA256(master, "switchyard/device/v1:" + id))."""
    mk = b64d(master_key)
    assert len(mk) == 32
    msg = b"switchyard/device/v1:" + resource_id.encode()
    return b64e(hmac.new(mk, msg, hashlib.sha256).digest())


def token(
    key: str,
    iss: str,
    sub: str,
    *,
    iat: int | None = None,
    ttl: int = 3600,
    header: dict | None = None,
    extra: dict | None = None,
) -> str:
    """SPEC §2.3: a compact JWT signed HS256 with the device key's 32 raw bytes."""
    iat = int(time.time()) if iat is None else iat
    claims = {"iss": iss, "sub": sub, "iat": iat, "exp": iat + ttl, **(extra or {})}
    parts = [header or {"alg": "HS256", "typ": "JWT"}, claims]
    signing = ".".join(b64e(json.dumps(p, separators=(",", ":")).encode()) for p in parts)
    sig = hmac.new(b64d(key), signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64e(sig)


def verify_token(tok: str, key: str) -> dict:
    """Checks a server-issued token's signature here; returns its claims."""
    signing, _, sig = tok.rpartition(".")
    want = hmac.new(b64d(key), signing.encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(b64d(sig), want), "token signature does not verify"
    header = json.loads(b64d(signing.split(".")[0]))
    assert header["alg"] == "HS256"
    return json.loads(b64d(signing.split(".")[1]))


class IdentityBroker(Switchyard):
    """switchyard with anonymous access (as the shared suite) plus the limits above."""

    def __init__(self, workdir, certs, binary):
        super().__init__(workdir, certs, binary)
        with open(self.config, "a") as f:
            f.write(
                "[tenant]\n"
                f"key_rotation_grace_secs = {ROTATION_GRACE_SECS}\n"
                "[auth]\n"
                f"max_failures_per_address = {FAILURES_PER_ADDRESS}\n"
                f"max_failures_per_identity = {FAILURES_PER_IDENTITY}\n"
                "failure_window_secs = 60\n"
                "lockout_secs = 300\n"
            )

    def credentials(self) -> dict:
        return json.loads((self.data_dir / "initial-credentials.json").read_text())

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.http_port}{path}"


class ForwardingBroker(IdentityBroker):
    """The broker above with a message cache and one forwarding sink: `sink` is its
    `[[forward]]` block."""

    def __init__(self, workdir, certs, binary, sink: str):
        super().__init__(workdir, certs, binary)
        with open(self.config, "a") as f:
            f.write("[pipeline]\nmessage_cache = 5000\n" + sink)


def webhook_signed(headers, body: bytes, secret: str) -> bool:
    """Whether a webhook request carries a valid Standard Webhooks v1 signature made with
    `secret`, checked with Python's hmac, independently of the broker's code."""
    msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
    mac = hmac.new(secret.encode(), f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode() in headers.get("webhook-signature", "").split(" ")


def metrics(broker) -> str:
    """The broker's `GET /metrics` text."""
    with urllib.request.urlopen(broker.url("/metrics"), timeout=10) as resp:
        return resp.read().decode()


def caught_up(broker, sink: str) -> str | bool:
    """The `/metrics` text once forwarding sink `sink` lags by no record, else False."""
    text = metrics(broker)
    return f'switchyard_forward_lag_records{{sink="{sink}"}} 0' in text and text


def basic(key_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key_id}:{secret}".encode()).decode()


def http(broker, method: str, path: str, auth: str | None = None, body=None):
    """(status, parsed JSON body or None, headers)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(broker.url(path), data=data, method=method)
    if auth:
        req.add_header("Authorization", auth)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw, headers = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as e:
        status, raw, headers = e.code, e.read(), e.headers
    return status, (json.loads(raw) if raw else None), headers


class Raw(rawmqtt.RawClient):
    """A raw MQTT connection, optionally from another loopback address."""

    def __init__(self, port: int, version: int = V5, source: str = HOST, timeout: float = 5.0):
        self.version = version
        self.timeout = timeout
        self.sock = socket.create_connection((HOST, port), timeout=timeout, source_address=(source, 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()


def connect_bytes(client_id: str, version: int, username, password) -> bytes:
    """CONNECT with username and/or password (str or bytes)."""
    flags = 0x02
    tail = b""
    if username is not None:
        flags |= 0x80
        tail += rawmqtt.utf8(username)
    if password is not None:
        flags |= 0x40
        tail += rawmqtt.utf8(password)
    name = rawmqtt.utf8(b"MQTT")
    body = name + bytes([version, flags]) + struct.pack(">H", 30)
    if version == V5:
        body += rawmqtt.encode_props(None)
    return rawmqtt.packet(rawmqtt.CONNECT, 0, body + rawmqtt.utf8(client_id) + tail)


def raw_connect(broker, version, username, password, client_id="raw", source=HOST):
    """Connects; returns (client, CONNACK code), code None if closed without CONNACK."""
    c = Raw(broker.mqtt_port, version, source)
    c.send(connect_bytes(client_id, version, username, password))
    try:
        return c, c.expect(rawmqtt.CONNACK).fields["reason"]
    except rawmqtt.Closed:
        return c, None


def connack(broker, version, username, password, client_id=None, source=HOST):
    """The CONNACK code only; the connection is closed afterwards. Each probe uses a fresh
    client id unless one is given, so back-to-back probes of different identities do not race
    the server noticing the previous close (a session belongs to the identity that made it)."""
    client_id = client_id or f"raw-{time.monotonic_ns()}"
    c, code = raw_connect(broker, version, username, password, client_id, source)
    c.close()
    return code


# (5.0 code, 3.1.1 code) pairs the server answers with.
BAD_CREDENTIALS = {V5: 0x86, V311: 0x04}
NOT_AUTHORIZED = {V5: 0x87, V311: 0x05}
BANNED = {V5: 0x8A, V311: 0x05}
RATE_EXCEEDED = {V5: 0x9F, V311: 0x03}
ID_IN_USE = {V5: 0x85, V311: 0x02}
