"""Will messages: abrupt close, clean DISCONNECT, keep-alive expiry, 5.0 will delay."""

import time

import pytest

import rawmqtt as raw
from mqttc import V5, VERSIONS, Client, new_id

WIRE = {"3.1.1": 4, V5: 5}


def connect_with_will(
    broker,
    version,
    will_topic,
    *,
    client_id=None,
    keepalive=30,
    will_props=None,
    props=None,
    clean=True,
    retain=False,
):
    c = raw.RawClient("127.0.0.1", broker.mqtt_port, WIRE[version])
    will = {
        "topic": will_topic,
        "payload": b"gone",
        "qos": 1,
        "retain": retain,
        "props": will_props,
    }
    connack = c.connect(
        client_id or new_id(), keepalive=keepalive, will=will, props=props, clean=clean
    )
    assert connack.fields["reason"] == 0, connack
    return c


@pytest.mark.parametrize("version", VERSIONS)
def test_will_published_on_abrupt_close(broker, topic, version):
    t = f"{topic}/will"
    with Client(broker, version) as sub:
        sub.subscribe(t, 1)
        c = connect_with_will(broker, version, t, retain=True)
        c.close()  # no DISCONNECT
        m = sub.get()
        assert (m.topic, m.payload, m.qos) == (t, b"gone", 1)
    with Client(broker, version) as late:  # a retained will stays retained
        late.subscribe(t, 1)
        m = late.get()
        assert (m.payload, m.retain) == (b"gone", True)
        late.publish(t, b"", 1, retain=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_no_will_after_clean_disconnect(broker, topic, version):
    t = f"{topic}/will"
    with Client(broker, version) as sub:
        sub.subscribe(t, 1)
        c = connect_with_will(broker, version, t)
        c.send(raw.disconnect(WIRE[version], reason=0))
        c.wait_closed()
        c.close()
        sub.expect_none(0.5)


def test_disconnect_with_will_message_publishes_it(broker, topic):
    """5.0 DISCONNECT reason 0x04 asks the server to publish the will."""
    t = f"{topic}/will"
    with Client(broker, V5) as sub:
        sub.subscribe(t, 1)
        c = connect_with_will(broker, V5, t)
        c.send(raw.disconnect(5, reason=0x04))
        assert sub.get().payload == b"gone"
        c.close()


def test_keep_alive_expiry_closes_and_publishes_will(broker, topic):
    """1.5 x keep-alive without a packet closes the connection (and sends the will);
    a client that pings in time stays connected."""
    t = f"{topic}/will"
    # mosquitto 2.0 checks keep-alive only every few seconds (seen once past 7 s under CI),
    # so it gets more slack; switchyard's sweep runs every 100 ms.
    limit = 12.0 if broker.kind == "mosquitto" else 3.0
    with Client(broker, V5) as sub:
        sub.subscribe(t, 1)
        start = time.monotonic()
        idle = {v: connect_with_will(broker, v, t, keepalive=1) for v in VERSIONS}
        pinger = connect_with_will(broker, V5, f"{t}/pinger", keepalive=1)
        closed_at = {}
        while len(closed_at) < len(idle):
            assert time.monotonic() - start < limit, f"still open after {limit}s: {idle}"
            pinger.send(raw.packet(raw.PINGREQ, 0, b""))
            assert pinger.expect(raw.PINGRESP, timeout=1).type == raw.PINGRESP
            for v, c in idle.items():
                if v not in closed_at:
                    try:
                        c.recv(timeout=0.4)
                    except raw.Closed:
                        closed_at[v] = time.monotonic() - start
                    except TimeoutError:
                        pass
        for v, elapsed in closed_at.items():
            assert elapsed >= 1.0, f"{v}: closed after {elapsed:.2f}s for keep-alive 1s"
        assert [m.payload for m in sub.get_n(2)] == [b"gone", b"gone"]
        pinger.send(raw.packet(raw.PINGREQ, 0, b""))  # still connected
        pinger.expect(raw.PINGRESP, timeout=1)
        pinger.send(raw.disconnect(5))
        for c in [*idle.values(), pinger]:
            c.close()


def test_will_delay_postpones_the_will(broker, topic):
    t = f"{topic}/will"
    with Client(broker, V5) as sub:
        sub.subscribe(t, 1)
        c = connect_with_will(
            broker, V5, t, will_props={"will_delay": 2}, props={"session_expiry": 30}
        )
        start = time.monotonic()
        c.close()
        sub.expect_none(1.2)
        assert sub.get(timeout=4).payload == b"gone"
        assert time.monotonic() - start >= 1.5


def test_will_delay_cancelled_by_reconnect(broker, topic):
    t, cid = f"{topic}/will", new_id()
    with Client(broker, V5) as sub:
        sub.subscribe(t, 1)
        c = connect_with_will(
            broker, V5, t, client_id=cid, will_props={"will_delay": 2}, props={"session_expiry": 30}
        )
        c.close()
        time.sleep(0.3)
        with raw.RawClient("127.0.0.1", broker.mqtt_port, 5) as again:
            connack = again.connect(cid, clean=False, props={"session_expiry": 30})
            assert connack.fields["reason"] == 0
            assert connack.fields["session_present"]
            sub.expect_none(2.5)  # past the 2 s delay
            again.send(raw.disconnect(5))


def test_will_published_when_session_ends_before_the_delay(broker, topic):
    t = f"{topic}/will"
    with Client(broker, V5) as sub:
        sub.subscribe(t, 1)
        c = connect_with_will(
            broker, V5, t, will_props={"will_delay": 60}, props={"session_expiry": 1}
        )
        c.close()
        assert sub.get(timeout=4).payload == b"gone"
