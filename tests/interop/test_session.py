"""Sessions: queued messages, clean start, expiry, takeover, and surviving a restart."""

import time

import pytest

import rawmqtt as raw
from mqttc import V5, VERSIONS, Client, new_id

WIRE = {"3.1.1": 4, V5: 5}


def persistent(broker, version, client_id, **kw):
    """A client whose session outlives the connection (3.1.1 clean session 0; 5.0
    clean start 0 with a session expiry)."""
    extra = {"session_expiry": 300} if version == V5 else {}
    return Client(broker, version, client_id=client_id, clean=False, **extra, **kw)


def go_offline_subscribed(broker, version, client_id, topic_filter, qos=1):
    c = Client(
        broker,
        version,
        client_id=client_id,
        clean=True,
        **({"session_expiry": 300} if version == V5 else {}),
    )
    if version == "3.1.1":  # clean session 1 would drop the session at disconnect
        c.disconnect()
        c = persistent(broker, version, client_id)
    assert c.subscribe(topic_filter, qos) == [qos]
    c.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_messages_queued_while_offline(broker, topic, version):
    t, cid = f"{topic}/queued", new_id()
    go_offline_subscribed(broker, version, cid, t)
    with Client(broker, version) as pub:
        for i in range(3):
            pub.publish(t, f"m{i}", 1)
        pub.publish(t, b"qos0 may be dropped", 0)
    with persistent(broker, version, cid) as sub:
        assert sub.session_present
        got = [m.payload for m in sub.get_n(3)]
        assert got == [b"m0", b"m1", b"m2"]


@pytest.mark.parametrize("version", VERSIONS)
def test_clean_start_discards_the_session(broker, topic, version):
    t, cid = f"{topic}/clean", new_id()
    go_offline_subscribed(broker, version, cid, t)
    with Client(broker, version) as pub:
        pub.publish(t, b"queued", 1)
    with Client(broker, version, client_id=cid, clean=True) as sub:
        assert not sub.session_present
        sub.expect_none(0.3)
        with Client(broker, version) as pub:  # and the subscription is gone too
            pub.publish(t, b"live", 1)
        sub.expect_none(0.3)


@pytest.mark.parametrize(
    "version",
    [
        "3.1.1",
        pytest.param(
            V5,
            marks=pytest.mark.not_mosquitto(
                "2.0.11 does not restore MQTT 5 sessions from its persistence file"
            ),
        ),
    ],
)
def test_session_and_retained_survive_restart(fresh_broker, version):
    b, t, cid = fresh_broker, "persist/q", new_id()
    go_offline_subscribed(b, version, cid, t, qos=2)
    with Client(b, version) as pub:
        pub.publish(t, b"one", 1)
        pub.publish(t, b"two", 2)
        pub.publish("persist/retained", b"kept", 1, retain=True)
    b.restart()
    with persistent(b, version, cid) as sub:
        assert sub.session_present
        got = sub.get_n(2)
        assert [(m.payload, m.qos) for m in got] == [(b"one", 1), (b"two", 2)]
        with Client(b, version) as pub:  # the subscription itself survived
            pub.publish(t, b"three", 1)
        assert sub.get().payload == b"three"
    with Client(b, version) as late:
        late.subscribe("persist/#", 1)
        m = late.get()
        assert (m.topic, m.payload, m.retain) == ("persist/retained", b"kept", True)


@pytest.mark.parametrize("version", VERSIONS)
def test_acknowledged_messages_survive_sigkill(fresh_broker, version):
    """A PUBACK means the message is on disk: after SIGKILL and a restart, an offline
    persistent subscriber gets every acknowledged message, in order."""
    b, t, cid = fresh_broker, "crash/q", new_id()
    if b.kind == "mosquitto":
        pytest.skip("mosquitto acknowledges before writing (persistence is periodic)")
    go_offline_subscribed(b, version, cid, t)
    sent = [f"m{i}".encode() for i in range(200)]
    with Client(b, version) as pub:
        for payload in sent:
            assert pub.publish(t, payload, 1) in (0, None)
    b.crash()
    b.start()
    with persistent(b, version, cid) as sub:
        assert sub.session_present
        assert [m.payload for m in sub.get_n(len(sent))] == sent
        sub.expect_none(0.3)


def test_session_expiry_interval(broker, topic):
    t, cid = f"{topic}/expiring", new_id()
    with Client(broker, V5, client_id=cid, session_expiry=1) as c:
        c.subscribe(t, 1)
    time.sleep(2.2)
    with Client(broker, V5) as pub:
        pub.publish(t, b"nobody home", 1)
    with Client(broker, V5, client_id=cid, clean=False, session_expiry=60) as c:
        assert not c.session_present
        c.expect_none(0.3)


def test_queued_message_expires(broker, topic):
    t, cid = f"{topic}/message-expiry", new_id()
    go_offline_subscribed(broker, V5, cid, t)
    with Client(broker, V5) as pub:
        pub.publish(t, b"short-lived", 1, MessageExpiryInterval=1)
        pub.publish(t, b"long-lived", 1, MessageExpiryInterval=60)
        pub.publish(t, b"immortal", 1)
    time.sleep(2.2)
    with persistent(broker, V5, cid) as sub:
        got = sub.get_n(2)
        assert [m.payload for m in got] == [b"long-lived", b"immortal"]
        remaining = got[0].props.get("MessageExpiryInterval")
        assert remaining is not None and remaining < 60, "expiry must count the time queued"
        assert "MessageExpiryInterval" not in got[1].props
        sub.expect_none(0.3)


@pytest.mark.parametrize("version", VERSIONS)
def test_session_takeover(broker, topic, version):
    """A second connection with the same client id takes over; the first is closed
    (5.0: DISCONNECT 0x8E first) and, having no DISCONNECT, its will is published."""
    t, cid, v = f"{topic}/takeover", new_id(), WIRE[version]
    with Client(broker, version) as watcher:
        watcher.subscribe(t, 1)
        first = raw.RawClient("127.0.0.1", broker.mqtt_port, v)
        will = {"topic": t, "payload": b"first gone", "qos": 1}
        assert first.connect(cid, will=will).fields["reason"] == 0
        with first, raw.RawClient("127.0.0.1", broker.mqtt_port, v) as second:
            assert second.connect(cid).fields["reason"] == 0
            before_close = first.wait_closed()
            # mosquitto 2.0.11 closes the old connection without DISCONNECT 0x8E.
            if version == V5 and broker.kind != "mosquitto":
                assert [(p.type, p.fields["reason"]) for p in before_close] == [
                    (raw.DISCONNECT, 0x8E)
                ]
            assert watcher.get().payload == b"first gone"
            second.send(raw.packet(raw.PINGREQ, 0, b""))
            second.expect(raw.PINGRESP)
            second.send(raw.disconnect(v))


def test_sigterm_with_clients_connected_exits_cleanly(fresh_broker):
    b = fresh_broker
    clients = [Client(b, V5), Client(b, "3.1.1", transport="ws"), Client(b, V5, transport="tls")]
    with raw.RawClient("127.0.0.1", b.mqtt_port, 5) as idle:
        idle.connect(new_id())
        start = time.monotonic()
        status = b.stop()  # SIGTERM; SIGKILL after brokers.STOP_TIMEOUT
        assert status == 0, f"exit status {status} after {time.monotonic() - start:.1f}s"
        before = idle.wait_closed()
        assert all(p.type == raw.DISCONNECT for p in before), before
    for c in clients:
        assert c.disconnected.wait(5), "client still connected after shutdown"
        c.disconnect()
