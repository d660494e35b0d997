"""A synchronous test wrapper around a paho-mqtt 2.x client.

Every wait has a deadline. Received messages go to a queue; topic aliases sent by
the broker are resolved here (paho leaves that to the application).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import dataclass, field

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

V311 = "3.1.1"
V5 = "5.0"
VERSIONS = [V311, V5]
TIMEOUT = 5.0


def new_id(prefix: str = "it") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def props(packet_type: int, **values) -> Properties:
    """paho Properties from keyword arguments named as in paho (UserProperty=...)."""
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def props_dict(p: Properties | None) -> dict:
    """paho Properties -> {"UserProperty": [...], "TopicAlias": 3, ...}."""
    if p is None:
        return {}
    out = {}
    for name in p.names:
        attr = name.replace(" ", "")
        if hasattr(p, attr):
            out[attr] = getattr(p, attr)
    return out


def rc_value(rc) -> int:
    """A paho ReasonCode (or int) as an int."""
    return rc if isinstance(rc, int) else rc.value


@dataclass
class Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    props: dict = field(default_factory=dict)
    wire_topic: str = ""  # the topic as sent, "" when the broker used an alias alone


class ConnectRefused(AssertionError):
    def __init__(self, rc: int, props: dict):
        super().__init__(f"CONNACK refused: reason {rc:#04x} {props}")
        self.rc, self.props = rc, props


class Client:
    """One paho client on its own network thread, connected on construction."""

    def __init__(
        self,
        broker,
        version: str = V5,
        *,
        client_id: str | None = None,
        transport: str = "tcp",
        clean: bool = True,
        session_expiry: int | None = None,
        keepalive: int = 30,
        topic_alias_maximum: int | None = None,
        receive_maximum: int | None = None,
        maximum_packet_size: int | None = None,
        manual_ack: bool = False,
        max_inflight: int | None = None,
        timeout: float = TIMEOUT,
        username: str | None = None,
        password: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
    ):
        self.version = version
        self.timeout = timeout
        self.client_id = new_id() if client_id is None else client_id
        v5 = version == V5
        self.paho = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else clean,
            transport="websockets" if transport == "ws" else "tcp",
            manual_ack=manual_ack,
        )
        if username is not None or password is not None:
            self.paho.username_pw_set(username, password)
        if max_inflight is not None:
            self.paho.max_inflight_messages_set(max_inflight)
        if transport == "ws":
            self.paho.ws_set_options(path="/mqtt")
        if transport == "tls":
            self.paho.tls_set(ca_certs=broker.ca_file, certfile=certfile, keyfile=keyfile)
        self.messages: queue.Queue[Msg] = queue.Queue()
        self.aliases: dict[int, str] = {}
        self.alias_errors: list[str] = []
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.disconnect_rc: int | None = None
        self.disconnect_props: dict = {}
        self.connack_rc: int | None = None
        self.connack_props: dict = {}
        self.session_present: bool | None = None
        self._lock = threading.Condition()
        self._subacks: dict[int, tuple[list[int], dict]] = {}
        self._unsubacks: dict[int, list[int]] = {}
        self._pubacks: dict[int, int] = {}
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_unsubscribe = self._on_unsubscribe
        self.paho.on_publish = self._on_publish

        connect_props = None
        if v5:
            values = {}
            if session_expiry is not None:
                values["SessionExpiryInterval"] = session_expiry
            if topic_alias_maximum is not None:
                values["TopicAliasMaximum"] = topic_alias_maximum
            if receive_maximum is not None:
                values["ReceiveMaximum"] = receive_maximum
            if maximum_packet_size is not None:
                values["MaximumPacketSize"] = maximum_packet_size
            connect_props = props(PacketTypes.CONNECT, **values) if values else None
        port = broker.port(transport)
        kwargs = {"clean_start": clean, "properties": connect_props} if v5 else {}
        self.paho.connect("127.0.0.1", port, keepalive, **kwargs)
        self.paho.loop_start()
        if not self.connected.wait(timeout):
            self._stop()
            raise AssertionError(f"no CONNACK within {timeout}s ({transport}, {version})")
        if self.connack_rc is None:
            self._stop()
            raise AssertionError(f"connection closed before CONNACK ({transport}, {version})")
        if self.connack_rc != 0:
            self._stop()
            raise ConnectRefused(self.connack_rc, self.connack_props)

    # paho callbacks (network thread)
    def _on_connect(self, _c, _u, flags, rc, properties) -> None:
        self.connack_rc = rc_value(rc)
        self.session_present = bool(flags.session_present)
        self.connack_props = props_dict(properties)
        self.connected.set()

    def _on_disconnect(self, client, _u, _flags, rc, properties) -> None:
        self.disconnect_rc = rc_value(rc)
        self.disconnect_props = props_dict(properties)
        # Never let paho reconnect behind the test's back.
        client.loop_stop()
        self.disconnected.set()
        self.connected.set()

    def _on_message(self, _c, _u, m) -> None:
        p = props_dict(getattr(m, "properties", None))
        wire_topic, topic = m.topic, m.topic
        alias = p.get("TopicAlias")
        if alias is not None:
            if wire_topic:
                self.aliases[alias] = wire_topic
            elif alias in self.aliases:
                topic = self.aliases[alias]
            else:
                self.alias_errors.append(f"unknown alias {alias}")
        self.messages.put(
            Msg(topic, bytes(m.payload), m.qos, bool(m.retain), bool(m.dup), m.mid, p, wire_topic)
        )

    def _on_subscribe(self, _c, _u, mid, codes, properties) -> None:
        with self._lock:
            self._subacks[mid] = ([rc_value(c) for c in codes], props_dict(properties))
            self._lock.notify_all()

    def _on_unsubscribe(self, _c, _u, mid, codes, _properties) -> None:
        with self._lock:
            self._unsubacks[mid] = [rc_value(c) for c in codes]
            self._lock.notify_all()

    def _on_publish(self, _c, _u, mid, rc, _properties) -> None:
        with self._lock:
            self._pubacks[mid] = rc_value(rc)
            self._lock.notify_all()

    def _wait_for(self, table: dict, mid: int, what: str):
        with self._lock:
            ok = self._lock.wait_for(lambda: mid in table, self.timeout)
            assert ok, f"no {what} for packet id {mid} within {self.timeout}s"
            return table.pop(mid)

    # test-facing API
    def subscribe(
        self,
        topic_filter: str,
        qos: int = 0,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
        sub_id: int | None = None,
        more: list[tuple[str, int]] = (),
        with_props: bool = False,
    ):
        """Subscribe and wait for SUBACK; returns the reason codes (and properties)."""
        if self.version == V5:
            opts = SubscribeOptions(
                qos=qos,
                noLocal=no_local,
                retainAsPublished=retain_as_published,
                retainHandling=retain_handling,
            )
            filters = [(topic_filter, opts)] + [(f, SubscribeOptions(qos=q)) for f, q in more]
            p = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=sub_id) if sub_id else None
            rc, mid = self.paho.subscribe(filters, properties=p)
        else:
            rc, mid = self.paho.subscribe([(topic_filter, qos)] + list(more))
        assert rc == paho.MQTT_ERR_SUCCESS, f"subscribe not sent: {rc}"
        codes, sub_props = self._wait_for(self._subacks, mid, "SUBACK")
        return (codes, sub_props) if with_props else codes

    def unsubscribe(self, topic_filter: str) -> list[int]:
        rc, mid = self.paho.unsubscribe(topic_filter)
        assert rc == paho.MQTT_ERR_SUCCESS
        return self._wait_for(self._unsubacks, mid, "UNSUBACK")

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        *,
        wait: bool = True,
        **properties,
    ) -> int | None:
        """Publish; for QoS > 0 waits for PUBACK/PUBCOMP and returns its reason code.

        With wait=False, returns the packet id for `wait_published`."""
        p = props(PacketTypes.PUBLISH, **properties) if properties else None
        info = self.paho.publish(topic, payload, qos, retain, properties=p)
        assert info.rc == paho.MQTT_ERR_SUCCESS, f"publish not sent: {info.rc}"
        if not wait:
            return info.mid
        if qos:
            return self.wait_published(info.mid)
        return None

    def wait_published(self, mid: int) -> int:
        """The reason code of the PUBACK/PUBCOMP for packet id `mid`."""
        return self._wait_for(self._pubacks, mid, "PUBACK/PUBCOMP")

    def get(self, timeout: float | None = None) -> Msg:
        try:
            return self.messages.get(timeout=self.timeout if timeout is None else timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout or self.timeout}s") from None

    def get_n(self, n: int, timeout: float | None = None) -> list[Msg]:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        out = []
        while len(out) < n:
            remaining = deadline - time.monotonic()
            try:
                out.append(self.messages.get(timeout=max(0.0, remaining)))
            except queue.Empty:
                raise AssertionError(f"got {len(out)} of {n} messages: {out}") from None
        return out

    def get_until(self, topic: str, timeout: float | None = None) -> list[Msg]:
        """All messages up to and including the first one on `topic` (a sentinel)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        out = []
        while True:
            try:
                m = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"sentinel {topic} not received; got {out}") from None
            out.append(m)
            if m.topic == topic:
                return out

    def expect_none(self, within: float = 0.5) -> None:
        try:
            m = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message {m}")

    def ack(self, mid: int, qos: int) -> None:
        self.paho.ack(mid, qos)

    def disconnect(self, reason: int | None = None, **properties) -> None:
        """A clean DISCONNECT (optionally with a 5.0 reason code and properties)."""
        if not self.disconnected.is_set():
            kwargs = {}
            if self.version == V5 and (reason is not None or properties):
                from paho.mqtt.reasoncodes import ReasonCode

                kwargs["reasoncode"] = ReasonCode(PacketTypes.DISCONNECT, identifier=reason or 0)
                if properties:
                    kwargs["properties"] = props(PacketTypes.DISCONNECT, **properties)
            self.paho.disconnect(**kwargs)
            self.disconnected.wait(self.timeout)
        self._stop()

    def _stop(self) -> None:
        self.paho.loop_stop()
        try:
            self.paho.socket() and self.paho.socket().close()
        except OSError:
            pass

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()
