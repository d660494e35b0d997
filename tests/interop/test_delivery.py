"""QoS 1/2 delivery guarantees and retained messages."""

import pytest

import rawmqtt as raw
from mqttc import V5, VERSIONS, Client, new_id

WIRE = {"3.1.1": 4, V5: 5}


@pytest.mark.parametrize("version", VERSIONS)
def test_qos2_stream_arrives_exactly_once_in_order(broker, topic, version):
    t = f"{topic}/qos2"
    with Client(broker, version) as sub, Client(broker, version) as pub:
        sub.subscribe(t, 2)
        mids = [pub.publish(t, str(i), 2, wait=False) for i in range(20)]
        assert [pub.wait_published(mid) for mid in mids] == [0] * 20  # all got PUBCOMP
        got = sub.get_n(20)
        assert [m.payload for m in got] == [str(i).encode() for i in range(20)]
        assert all(m.qos == 2 for m in got)
        sub.expect_none(0.3)


@pytest.mark.parametrize("version", VERSIONS)
def test_qos2_resent_publish_is_delivered_once(broker, topic, version):
    """A QoS 2 PUBLISH sent again (DUP) before PUBREL must not be delivered twice."""
    t = f"{topic}/qos2-dup"
    v = WIRE[version]
    with Client(broker, version) as sub, raw.RawClient("127.0.0.1", broker.mqtt_port, v) as c:
        sub.subscribe(t, 2)
        assert c.connect(new_id()).fields["reason"] == 0
        c.send(raw.publish(t, b"once", version=v, qos=2, pid=7))
        assert c.expect(raw.PUBREC).fields == {"pid": 7, "reason": 0}
        c.send(raw.publish(t, b"once", version=v, qos=2, pid=7, dup=True))
        assert c.expect(raw.PUBREC).fields["pid"] == 7
        c.send(raw.ack(raw.PUBREL, 7))
        assert c.expect(raw.PUBCOMP).fields == {"pid": 7, "reason": 0}
        # Once completed, the packet id is free and names a new message.
        c.send(raw.publish(t, b"again", version=v, qos=2, pid=7))
        assert c.expect(raw.PUBREC).fields["pid"] == 7
        c.send(raw.ack(raw.PUBREL, 7))
        assert c.expect(raw.PUBCOMP).fields["pid"] == 7
        c.send(raw.disconnect(v))
        assert [m.payload for m in sub.get_n(2)] == [b"once", b"again"]
        sub.expect_none(0.3)


def _persistent_raw(broker, v, client_id):
    c = raw.RawClient("127.0.0.1", broker.mqtt_port, v)
    props = {"session_expiry": 60} if v == 5 else None
    return c, c.connect(client_id, clean=False, props=props)


@pytest.mark.parametrize("version", VERSIONS)
def test_unacknowledged_qos1_is_resent_on_reconnect(broker, topic, version):
    t, v, cid = f"{topic}/redeliver", WIRE[version], new_id()
    c, _ = _persistent_raw(broker, v, cid)
    with c, Client(broker, version) as pub:
        c.send(raw.subscribe(1, [(t, 1)], version=v))
        assert c.expect(raw.SUBACK).fields["codes"] == [1]
        pub.publish(t, b"ack me", 1)
        first = c.expect(raw.PUBLISH).fields
        assert (first["payload"], first["qos"], first["dup"]) == (b"ack me", 1, False)
    # closed without PUBACK
    c, connack = _persistent_raw(broker, v, cid)
    with c:
        assert connack.fields["session_present"]
        again = c.expect(raw.PUBLISH).fields
        assert (again["payload"], again["qos"], again["dup"]) == (b"ack me", 1, True)
        assert again["pid"] == first["pid"]
        c.send(raw.ack(raw.PUBACK, again["pid"]))
        c.send(raw.disconnect(v))


@pytest.mark.parametrize("version", VERSIONS)
def test_qos2_pubrel_is_resent_on_reconnect(broker, topic, version):
    t, v, cid = f"{topic}/pubrel", WIRE[version], new_id()
    c, _ = _persistent_raw(broker, v, cid)
    with c, Client(broker, version) as pub:
        c.send(raw.subscribe(1, [(t, 2)], version=v))
        assert c.expect(raw.SUBACK).fields["codes"] == [2]
        pub.publish(t, b"exactly once", 2)
        p = c.expect(raw.PUBLISH).fields
        assert (p["payload"], p["qos"]) == (b"exactly once", 2)
        c.send(raw.ack(raw.PUBREC, p["pid"]))
        assert c.expect(raw.PUBREL).fields["pid"] == p["pid"]
    # closed without PUBCOMP: the broker must resume with PUBREL, not the PUBLISH
    c, connack = _persistent_raw(broker, v, cid)
    with c:
        assert connack.fields["session_present"]
        assert c.expect(raw.PUBREL).fields["pid"] == p["pid"]
        c.send(raw.ack(raw.PUBCOMP, p["pid"]))
        c.send(raw.disconnect(v))


@pytest.mark.parametrize("version", VERSIONS)
def test_retained_set_replaced_and_cleared(broker, topic, version):
    t = f"{topic}/retained"
    with Client(broker, version) as pub:
        pub.publish(t, b"first", 1, retain=True)
        with Client(broker, version) as early:
            early.subscribe(t, 1)
            m = early.get()
            assert (m.payload, m.retain, m.qos) == (b"first", True, 1)
            pub.publish(t, b"second", 1, retain=True)
            live = early.get()
            # Delivered to an existing subscription: retain flag cleared (3.1.1 and
            # 5.0 without retain-as-published).
            assert (live.payload, live.retain) == (b"second", False)
            with Client(broker, version) as late:
                late.subscribe(t, 2)
                m = late.get()
                assert (m.payload, m.retain, m.qos) == (b"second", True, 1)
                late.expect_none(0.2)
            pub.publish(t, b"", 1, retain=True)
            cleared = early.get()  # the empty retained message is still forwarded
            assert (cleared.payload, cleared.retain) == (b"", False)
        with Client(broker, version) as after:
            after.subscribe(t, 1)
            after.expect_none(0.5)


@pytest.mark.parametrize("version", VERSIONS)
def test_retained_messages_match_wildcards(broker, topic, version):
    with Client(broker, version) as pub:
        for leaf in ("a", "b", "c/d"):
            pub.publish(f"{topic}/w/{leaf}", leaf, 1, retain=True)
        with Client(broker, version) as sub:
            sub.subscribe(f"{topic}/w/+", 1)
            got = sub.get_n(2)
            assert sorted((m.topic, m.retain) for m in got) == [
                (f"{topic}/w/a", True),
                (f"{topic}/w/b", True),
            ]
            sub.expect_none(0.3)
        for leaf in ("a", "b", "c/d"):
            pub.publish(f"{topic}/w/{leaf}", b"", 1, retain=True)
