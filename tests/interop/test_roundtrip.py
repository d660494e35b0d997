"""Publish/subscribe round trips at every QoS, both protocol versions, every transport."""

import pytest

from mqttc import VERSIONS, Client


@pytest.mark.parametrize("transport", ["tcp", "tls", "ws"])
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_round_trip(broker, topic, transport, version, qos):
    t = f"{topic}/round-trip"
    with (
        Client(broker, version, transport=transport) as sub,
        Client(broker, version, transport=transport) as pub,
    ):
        assert sub.subscribe(t, qos) == [qos]
        rc = pub.publish(t, b"payload \x00\xff", qos)
        assert rc in (None, 0)
        m = sub.get()
        assert (m.topic, m.payload, m.qos, m.retain) == (t, b"payload \x00\xff", qos, False)
        sub.expect_none(0.2)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("sub_qos,pub_qos", [(0, 2), (1, 2), (2, 1), (1, 0)])
def test_delivered_qos_is_the_minimum(broker, topic, version, sub_qos, pub_qos):
    t = f"{topic}/downgrade"
    with Client(broker, version) as sub, Client(broker, version) as pub:
        sub.subscribe(t, sub_qos)
        pub.publish(t, b"x", pub_qos)
        assert sub.get().qos == min(sub_qos, pub_qos)


@pytest.mark.parametrize("version", VERSIONS)
def test_clients_on_different_transports_see_each_other(broker, topic, version):
    t = f"{topic}/mixed"
    with (
        Client(broker, version, transport="ws") as ws,
        Client(broker, version, transport="tls") as tls,
        Client(broker, version) as tcp,
    ):
        ws.subscribe(t, 1)
        tls.subscribe(t, 1)
        tcp.publish(t, b"from tcp", 1)
        assert ws.get().payload == b"from tcp"
        assert tls.get().payload == b"from tcp"


@pytest.mark.parametrize("version", VERSIONS)
def test_unsubscribe_stops_delivery(broker, topic, version):
    t = f"{topic}/unsub"
    with Client(broker, version) as sub, Client(broker, version) as pub:
        sub.subscribe(t, 1)
        pub.publish(t, b"1", 1)
        assert sub.get().payload == b"1"
        sub.unsubscribe(t)
        pub.publish(t, b"2", 1)
        sub.expect_none(0.3)
