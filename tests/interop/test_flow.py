"""Flow control with a third-party client: MQTT 3.1.1 has no receive maximum, so a publisher
with more QoS 1 messages in flight than the broker's window is slowed, never disconnected."""

from mqttc import V311, Client

BURST = 600
WINDOW = 100


def test_v311_publisher_with_a_window_of_100_is_slowed_not_disconnected(broker, topic):
    t = f"{topic}/burst"
    with Client(broker, V311) as sub:
        sub.subscribe(t, 1)
        with Client(broker, V311, max_inflight=WINDOW) as pub:
            mids = [pub.publish(t, str(i).encode(), 1, wait=False) for i in range(BURST)]
            for mid in mids:
                assert pub.wait_published(mid) == 0
            assert not pub.disconnected.is_set(), f"disconnected: {pub.disconnect_rc:#04x}"
        got = sub.get_n(BURST, timeout=30)
        assert [m.payload for m in got] == [str(i).encode() for i in range(BURST)]
