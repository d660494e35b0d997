"""A minimal MQTT 3.1.1 / 5.0 packet writer and reader for raw-socket tests.

Just enough to say what no well-behaved client library will say: abrupt closes,
duplicate QoS 2 PUBLISHes, oversized and malformed packets. Writers return bytes
so a test can corrupt them; `RawClient` reads whole packets with a deadline.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT, AUTH = 12, 13, 14, 15

NAMES = {
    CONNECT: "CONNECT",
    CONNACK: "CONNACK",
    PUBLISH: "PUBLISH",
    PUBACK: "PUBACK",
    PUBREC: "PUBREC",
    PUBREL: "PUBREL",
    PUBCOMP: "PUBCOMP",
    SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK",
    UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK",
    PINGREQ: "PINGREQ",
    PINGRESP: "PINGRESP",
    DISCONNECT: "DISCONNECT",
    AUTH: "AUTH",
}

# name -> (identifier, wire type); only the properties these tests use or may receive.
PROPERTIES = {
    "payload_format": (0x01, "byte"),
    "message_expiry": (0x02, "u32"),
    "content_type": (0x03, "str"),
    "response_topic": (0x08, "str"),
    "correlation_data": (0x09, "bin"),
    "subscription_id": (0x0B, "varint"),
    "session_expiry": (0x11, "u32"),
    "assigned_client_id": (0x12, "str"),
    "server_keep_alive": (0x13, "u16"),
    "authentication_method": (0x15, "str"),
    "authentication_data": (0x16, "bin"),
    "request_problem_information": (0x17, "byte"),
    "will_delay": (0x18, "u32"),
    "request_response_information": (0x19, "byte"),
    "response_information": (0x1A, "str"),
    "server_reference": (0x1C, "str"),
    "reason_string": (0x1F, "str"),
    "receive_maximum": (0x21, "u16"),
    "topic_alias_maximum": (0x22, "u16"),
    "topic_alias": (0x23, "u16"),
    "maximum_qos": (0x24, "byte"),
    "retain_available": (0x25, "byte"),
    "user_property": (0x26, "pair"),
    "maximum_packet_size": (0x27, "u32"),
    "wildcard_subscription_available": (0x28, "byte"),
    "subscription_identifier_available": (0x29, "byte"),
    "shared_subscription_available": (0x2A, "byte"),
}
_BY_ID = {ident: (name, kind) for name, (ident, kind) in PROPERTIES.items()}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def encode_props(props: dict | None) -> bytes:
    body = bytearray()
    for name, value in (props or {}).items():
        ident, kind = PROPERTIES[name]
        values = value if kind in ("pair", "varint") and isinstance(value, list) else [value]
        for v in values:
            body += varint(ident)
            if kind == "byte":
                body += bytes([v])
            elif kind == "u16":
                body += struct.pack(">H", v)
            elif kind == "u32":
                body += struct.pack(">I", v)
            elif kind == "varint":
                body += varint(v)
            elif kind in ("str", "bin"):
                body += utf8(v)
            elif kind == "pair":
                body += utf8(v[0]) + utf8(v[1])
    return varint(len(body)) + bytes(body)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    for _ in range(4):
        byte = buf[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("variable byte integer longer than 4 bytes")


def decode_props(buf: bytes, pos: int) -> tuple[dict, int]:
    length, pos = _read_varint(buf, pos)
    end, props = pos + length, {}
    while pos < end:
        ident, pos = _read_varint(buf, pos)
        name, kind = _BY_ID.get(ident, (f"0x{ident:02x}", "unknown"))
        if kind == "byte":
            v, pos = buf[pos], pos + 1
        elif kind == "u16":
            (v,), pos = struct.unpack_from(">H", buf, pos), pos + 2
        elif kind == "u32":
            (v,), pos = struct.unpack_from(">I", buf, pos), pos + 4
        elif kind == "varint":
            v, pos = _read_varint(buf, pos)
        elif kind in ("str", "bin", "pair"):
            parts = []
            for _ in range(2 if kind == "pair" else 1):
                (n,) = struct.unpack_from(">H", buf, pos)
                parts.append(bytes(buf[pos + 2 : pos + 2 + n]))
                pos += 2 + n
            v = parts[0] if kind == "bin" else tuple(p.decode() for p in parts)
            v = v[0] if kind == "str" else v
        else:
            raise ValueError(f"unknown property identifier 0x{ident:02x}")
        if kind in ("pair", "varint"):
            props.setdefault(name, []).append(v)
        else:
            props[name] = v
    return props, end


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def connect(
    client_id: str,
    version: int = 5,
    *,
    clean: bool = True,
    keepalive: int = 30,
    will: dict | None = None,
    props: dict | None = None,
    reserved_flag: bool = False,
    protocol_name: bytes = b"MQTT",
) -> bytes:
    """CONNECT; `will` = {topic, payload, qos, retain, props}."""
    flags = (0x02 if clean else 0) | (0x01 if reserved_flag else 0)
    payload = utf8(client_id)
    if will:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
        if version == 5:
            payload += encode_props(will.get("props"))
        payload += utf8(will["topic"]) + utf8(will["payload"])
    body = utf8(protocol_name) + bytes([version, flags]) + struct.pack(">H", keepalive)
    if version == 5:
        body += encode_props(props)
    return packet(CONNECT, 0, body + payload)


def publish(
    topic: str | bytes,
    payload: bytes,
    *,
    version: int = 5,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    pid: int | None = None,
    props: dict | None = None,
) -> bytes:
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = utf8(topic)
    if qos:
        body += struct.pack(">H", pid)
    if version == 5:
        body += encode_props(props)
    return packet(PUBLISH, flags, body + payload)


def ack(ptype: int, pid: int) -> bytes:
    """PUBACK / PUBREC / PUBREL / PUBCOMP with reason Success (valid for both versions)."""
    return packet(ptype, 0x02 if ptype == PUBREL else 0, struct.pack(">H", pid))


def subscribe(
    pid: int, filters: list[tuple[str, int]], *, version: int = 5, flags: int = 0x02
) -> bytes:
    body = struct.pack(">H", pid) + (encode_props(None) if version == 5 else b"")
    for topic_filter, options in filters:
        body += utf8(topic_filter) + bytes([options])
    return packet(SUBSCRIBE, flags, body)


def disconnect(version: int = 5, reason: int | None = None) -> bytes:
    if version == 5 and reason is not None:
        return packet(DISCONNECT, 0, bytes([reason]))
    return packet(DISCONNECT, 0, b"")


@dataclass
class Packet:
    type: int
    flags: int
    body: bytes
    version: int
    fields: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return NAMES.get(self.type, f"type{self.type}")

    def __repr__(self) -> str:
        return f"<{self.name} flags={self.flags:#x} {self.fields or self.body[:32]!r}>"


def parse(ptype: int, flags: int, body: bytes, version: int) -> Packet:
    """Decode the few fields the tests look at."""
    p = Packet(ptype, flags, body, version)
    f = p.fields
    if ptype == CONNACK:
        f["session_present"] = bool(body[0] & 1)
        f["reason"] = body[1]
        if version == 5 and len(body) > 2:
            f["props"], _ = decode_props(body, 2)
    elif ptype == PUBLISH:
        (n,) = struct.unpack_from(">H", body, 0)
        f["topic"] = body[2 : 2 + n].decode()
        pos, qos = 2 + n, (flags >> 1) & 3
        f["qos"], f["retain"], f["dup"] = qos, bool(flags & 1), bool(flags & 8)
        if qos:
            (f["pid"],) = struct.unpack_from(">H", body, pos)
            pos += 2
        if version == 5:
            f["props"], pos = decode_props(body, pos)
        f["payload"] = body[pos:]
    elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK):
        (f["pid"],) = struct.unpack_from(">H", body, 0)
        f["reason"] = body[2] if len(body) > 2 else 0
    elif ptype == SUBACK:
        (f["pid"],) = struct.unpack_from(">H", body, 0)
        pos = 2
        if version == 5:
            f["props"], pos = decode_props(body, pos)
        f["codes"] = list(body[pos:])
    elif ptype == DISCONNECT:
        f["reason"] = body[0] if body else 0
        if version == 5 and len(body) > 1:
            f["props"], _ = decode_props(body, 1)
    return p


class Closed(Exception):
    """The peer closed the connection."""


class RawClient:
    """A TCP connection that speaks MQTT one packet at a time."""

    def __init__(self, host: str, port: int, version: int = 5, timeout: float = 5.0):
        self.version = version
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Send, tolerating a peer that has already hung up; False if it had."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete packet before the deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no complete packet before the deadline") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise Closed()
        self.buf += chunk

    def recv(self, timeout: float | None = None) -> Packet:
        """The next packet; raises Closed on EOF, TimeoutError past the deadline."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self.buf) >= 2:
                try:
                    length, pos = _read_varint(self.buf, 1)
                except IndexError:
                    length = None
                if length is not None and len(self.buf) >= pos + length:
                    first = self.buf[0]
                    body = bytes(self.buf[pos : pos + length])
                    del self.buf[: pos + length]
                    return parse(first >> 4, first & 0x0F, body, self.version)
            self._fill(deadline)

    def expect(self, ptype: int, timeout: float | None = None) -> Packet:
        p = self.recv(timeout)
        assert p.type == ptype, f"expected {NAMES[ptype]}, got {p!r}"
        return p

    def connect(self, client_id: str, **kw) -> Packet:
        self.send(connect(client_id, self.version, **kw))
        return self.expect(CONNACK)

    def wait_closed(self, timeout: float = 5.0) -> list[Packet]:
        """Read until the broker closes the connection; return what it sent first.

        Fails the test if the connection is still open after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        seen: list[Packet] = []
        while True:
            try:
                seen.append(self.recv(max(0.0, deadline - time.monotonic())))
            except Closed:
                return seen
            except TimeoutError:
                raise AssertionError(
                    f"broker kept the connection open for {timeout}s; it sent {seen!r}"
                ) from None

    def close(self) -> None:
        """Close the socket without DISCONNECT."""
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
