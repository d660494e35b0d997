"""Authorization of anonymous clients, packet size limits, and malformed input."""

import pytest

import rawmqtt as raw
from brokers import DENIED_SUBSCRIBE, MAX_PACKET_SIZE
from mqttc import V5, VERSIONS, Client, new_id

WIRE = {"3.1.1": 4, V5: 5}


def assert_broker_serves(broker, topic, version=V5):
    """A fresh client can still connect and round-trip a message."""
    with Client(broker, version) as c:
        c.subscribe(f"{topic}/alive", 1)
        c.publish(f"{topic}/alive", b"still here", 1)
        assert c.get().payload == b"still here"


@pytest.mark.parametrize("version", VERSIONS)
def test_anonymous_deny_subscribe(broker, topic, version):
    with Client(broker, version) as c:
        codes, props = c.subscribe(DENIED_SUBSCRIBE, 1, more=[(f"{topic}/ok", 1)], with_props=True)
        if version == V5:
            assert codes[0] >= 0x80, codes
            reason = props.get("ReasonString")
            assert reason is None or (isinstance(reason, str) and reason)
        else:
            assert codes[0] == 0x80, codes
        assert codes[1] == 1, "the other filter of the same SUBSCRIBE is granted"
        c.publish(f"{topic}/ok", b"fine", 1)  # the connection stays usable
        assert c.get().payload == b"fine"


@pytest.mark.parametrize("version", VERSIONS)
def test_packet_at_the_limit_is_accepted(broker, topic, version):
    t = f"{topic}/big"
    with Client(broker, version) as sub:
        sub.subscribe(t, 1)
        v = WIRE[version]
        with raw.RawClient("127.0.0.1", broker.mqtt_port, v) as c:
            c.connect(new_id())
            header = raw.publish(t, b"", version=v, qos=1, pid=1)
            body_len = len(header) - 2  # fixed header of the empty PUBLISH is 2 bytes
            # total size = 1 + len(varint(remaining)) + remaining, and remaining needs 3 bytes
            payload = b"p" * (MAX_PACKET_SIZE - 4 - body_len)
            packet = raw.publish(t, payload, version=v, qos=1, pid=1)
            assert len(packet) == MAX_PACKET_SIZE
            c.send(packet)
            assert c.expect(raw.PUBACK).fields["pid"] == 1
            c.send(raw.disconnect(v))
        assert len(sub.get().payload) == len(payload)


@pytest.mark.parametrize("version", VERSIONS)
def test_oversized_packet_closes_only_that_connection(broker, topic, version):
    t = f"{topic}/big"
    v = WIRE[version]
    with Client(broker, version) as bystander:
        bystander.subscribe(t, 1)
        with raw.RawClient("127.0.0.1", broker.mqtt_port, v) as c:
            c.connect(new_id())
            payload = b"o" * MAX_PACKET_SIZE
            c.try_send(raw.publish(t, payload, version=v, qos=1, pid=1))
            before = c.wait_closed()
            if version == V5:
                assert [(p.type, p.fields["reason"]) for p in before] in (
                    [(raw.DISCONNECT, 0x95)],
                    [],
                ), before
            else:
                assert before == []
        bystander.expect_none(0.2)
        with Client(broker, version) as pub:
            pub.publish(t, b"after", 1)
        assert bystander.get().payload == b"after"


def _connect(v):
    return raw.connect(new_id(), v)


def _bad_remaining_length(v):
    return bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])


def _second_connect(v):
    return _connect(v)


def _first_packet_not_connect(v):
    return raw.packet(raw.PINGREQ, 0, b"")


def _subscribe_reserved_flags(v):
    return raw.subscribe(1, [("a/b", 0)], version=v, flags=0)


def _publish_qos3(v):
    props = b"\x00" if v == 5 else b""
    return raw.packet(raw.PUBLISH, 0x06, raw.utf8("a/b") + b"\x00\x01" + props + b"x")


def _publish_wildcard_topic(v):
    return raw.publish("a/+/b", b"x", version=v)


def _publish_invalid_utf8(v):
    return raw.publish(b"a/\xff\xfe", b"x", version=v)


def _connect_reserved_flag(v):
    return raw.connect(new_id(), v, reserved_flag=True)


def _bad_protocol_name(v):
    return raw.connect(new_id(), v, protocol_name=b"MQTX")


def _subscribe_without_filters(v):
    return raw.subscribe(1, [], version=v)


def _reserved_packet_type(v):
    return raw.packet(0, 0, b"")


def _pubrel_reserved_flags(v):
    return raw.packet(raw.PUBREL, 0, b"\x00\x01")


# (the bad bytes, sent after a successful CONNECT?)
MALFORMED = [
    (_bad_remaining_length, True),
    (_second_connect, True),
    (_first_packet_not_connect, False),
    (_subscribe_reserved_flags, True),
    (_publish_qos3, True),
    (_publish_wildcard_topic, True),
    (_publish_invalid_utf8, True),
    (_connect_reserved_flag, False),
    (_bad_protocol_name, False),
    (_subscribe_without_filters, True),
    (_reserved_packet_type, True),
    (_pubrel_reserved_flags, True),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "make,valid_connect", MALFORMED, ids=[f.__name__.strip("_") for f, _ in MALFORMED]
)
def test_malformed_input_closes_the_connection(broker, topic, version, make, valid_connect):
    v = WIRE[version]
    with raw.RawClient("127.0.0.1", broker.mqtt_port, v) as c:
        if valid_connect:
            assert c.connect(new_id()).fields["reason"] == 0
        c.try_send(make(v))
        before = c.wait_closed()
    # Allowed before the close: a refusing CONNACK for a bad CONNECT, and on 5.0 a
    # DISCONNECT with an error reason code.
    for p in before:
        if p.type == raw.DISCONNECT:
            assert v == 5 and p.fields["reason"] >= 0x80, p
        else:
            assert p.type == raw.CONNACK and p.fields["reason"] != 0, p
    assert_broker_serves(broker, topic, version)
