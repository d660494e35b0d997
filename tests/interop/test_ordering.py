"""Packets from different connections are handled in the order they reach the broker.

The request/response and No Local checks of the Eclipse Paho 5.0 interoperability suite
subscribe a second client and publish from the first without waiting for the second SUBACK;
the SUBSCRIBE, written first, must be in place when the PUBLISH right behind it is routed.
"""

from __future__ import annotations

import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions

from mqttc import TIMEOUT, V5, Client, props, props_dict, rc_value


class Stepped:
    """A 5.0 paho client driven from the test's thread (no network thread), so each call
    writes its packet before returning: two clients' packets leave back to back."""

    def __init__(self, broker, client_id: str):
        self.paho = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.connack: int | None = None
        self.subacks: dict[int, list[int]] = {}
        self.pubacks: dict[int, int] = {}
        self.messages: list[tuple[str, bytes, dict]] = []
        self.paho.on_connect = lambda _c, _u, _f, rc, _p: setattr(self, "connack", rc_value(rc))
        self.paho.on_subscribe = lambda _c, _u, mid, codes, _p: self.subacks.update(
            {mid: [rc_value(c) for c in codes]}
        )
        self.paho.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.update({mid: rc_value(rc)})
        self.paho.on_message = lambda _c, _u, m: self.messages.append(
            (m.topic, bytes(m.payload), props_dict(getattr(m, "properties", None)))
        )
        self.paho.connect("127.0.0.1", broker.port("tcp"), 60, clean_start=True)
        pump([self], lambda: self.connack is not None)
        assert self.connack == 0, f"CONNACK {self.connack}"

    def subscribe_no_local(self, topic: str) -> int:
        rc, mid = self.paho.subscribe([(topic, SubscribeOptions(qos=2, noLocal=True))])
        assert rc == paho.MQTT_ERR_SUCCESS
        return mid

    def publish(self, topic: str, payload: bytes, **properties) -> int:
        info = self.paho.publish(topic, payload, 1, properties=props(PacketTypes.PUBLISH, **properties))
        assert info.rc == paho.MQTT_ERR_SUCCESS
        return info.mid

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop(timeout=0.1)


def pump(clients: list[Stepped], done, timeout: float = TIMEOUT) -> None:
    """Drive every client's network I/O until `done()`, within `timeout`."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        for c in clients:
            c.paho.loop(timeout=0.01)


# The race is between two sockets: a few rounds make a broker that loses it fail reliably.
ROUNDS = 10


def test_subscribe_written_just_before_another_clients_publish_receives_it(fresh_broker):
    # The suite's class setup: both client ids connect and leave, and a client subscribed to
    # everything clears retained messages.
    for client_id in ("myclientid", "myclientid2"):
        Client(fresh_broker, V5, client_id=client_id).disconnect()
    with Client(fresh_broker, V5, client_id="clean retained") as cleaner:
        cleaner.subscribe("#", 0)
        for m in list(cleaner.messages.queue):
            cleaner.publish(m.topic, b"", 0, retain=True)

    for n in range(ROUNDS):
        a, b = Stepped(fresh_broker, "myclientid"), Stepped(fresh_broker, "myclientid2")
        try:
            request_response(a, b, n)
        finally:
            a.close()
            b.close()


def request_response(a: Stepped, b: Stepped, n: int) -> None:
    """test_request_response, as the suite runs it."""
    mid = a.subscribe_no_local("TopicA")
    pump([a, b], lambda: mid in a.subacks)
    assert a.subacks[mid] == [2]
    # b's SUBSCRIBE, then a's request at once, without waiting for b's SUBACK.
    b_mid = b.subscribe_no_local("TopicA")
    request = a.publish("TopicA", b"request", ResponseTopic="TopicA", CorrelationData=b"334")
    pump([a, b], lambda: request in a.pubacks and b_mid in b.subacks)
    assert a.pubacks[request] == 0, f"round {n}: routed before b's subscription (0x10: no subscribers)"
    assert b.subacks[b_mid] == [2]
    pump([a, b], lambda: b.messages)
    topic, payload, p = b.messages[0]
    assert (topic, payload) == ("TopicA", b"request")
    assert (p.get("ResponseTopic"), p.get("CorrelationData")) == ("TopicA", b"334")

    # b answers on the response topic; No Local keeps each side's own message from it.
    response = b.publish(p["ResponseTopic"], b"response", CorrelationData=p["CorrelationData"])
    pump([a, b], lambda: response in b.pubacks and a.messages)
    assert [(t, m) for t, m, _ in a.messages] == [("TopicA", b"response")]
    assert a.messages[0][2].get("CorrelationData") == b"334"
    deadline = time.monotonic() + 0.2
    pump([a, b], lambda: time.monotonic() > deadline)
    assert len(a.messages) == 1 and len(b.messages) == 1, (a.messages, b.messages)
