"""MQTT 5.0 features: aliases, identifiers, subscription options, properties, flow control."""

import pytest

import rawmqtt as raw
from brokers import MAX_PACKET_SIZE
from mqttc import V5, VERSIONS, Client, new_id
from test_topics import collect_until_sentinel


def test_connack_advertises_capabilities(broker):
    with Client(broker, V5) as c:
        p = c.connack_props
        assert p.get("MaximumPacketSize") == MAX_PACKET_SIZE
        assert p.get("TopicAliasMaximum", 0) >= 1
        assert p.get("MaximumQoS", 2) == 2
        for flag in (
            "RetainAvailable",
            "WildcardSubscriptionAvailable",
            "SubscriptionIdentifierAvailable",
            "SharedSubscriptionAvailable",
        ):
            assert p.get(flag, 1) == 1, flag
        assert 1 <= p.get("ReceiveMaximum", 65535) <= 65535


def test_topic_alias_from_client(broker, topic):
    with Client(broker, V5) as sub, Client(broker, V5) as pub:
        assert pub.connack_props.get("TopicAliasMaximum", 0) >= 1
        sub.subscribe(f"{topic}/#", 1)
        pub.publish(f"{topic}/one", b"a", 1, TopicAlias=1)
        pub.publish("", b"b", 1, TopicAlias=1)
        pub.publish(f"{topic}/two", b"c", 1, TopicAlias=1)  # remap alias 1
        pub.publish("", b"d", 1, TopicAlias=1)
        got = [(m.topic, m.payload) for m in sub.get_n(4)]
        assert got == [
            (f"{topic}/one", b"a"),
            (f"{topic}/one", b"b"),
            (f"{topic}/two", b"c"),
            (f"{topic}/two", b"d"),
        ]


@pytest.mark.parametrize("case", ["alias-above-maximum", "unknown-alias"])
def test_bad_topic_alias_closes_the_connection(broker, topic, case):
    with raw.RawClient("127.0.0.1", broker.mqtt_port, 5) as c:
        maximum = c.connect(new_id()).fields["props"].get("topic_alias_maximum", 0)
        if case == "alias-above-maximum":
            c.send(raw.publish(f"{topic}/a", b"x", props={"topic_alias": maximum + 1}))
        else:
            c.send(raw.publish("", b"x", props={"topic_alias": 1}))
        before = c.wait_closed()
        assert all(p.type == raw.DISCONNECT and p.fields["reason"] >= 0x80 for p in before)


def test_server_respects_client_topic_alias_maximum(broker, topic):
    topics = [f"{topic}/t{i}" for i in range(3)]
    with (
        Client(broker, V5) as none,
        Client(broker, V5, topic_alias_maximum=2) as two,
        Client(broker, V5) as pub,
    ):
        none.subscribe(f"{topic}/#", 1)
        two.subscribe(f"{topic}/#", 1)
        sent = [(topics[i % 3], f"m{i}".encode()) for i in range(9)]
        for t, payload in sent:
            pub.publish(t, payload, 1)
        for m in none.get_n(9):
            assert "TopicAlias" not in m.props and m.wire_topic == m.topic
        got = two.get_n(9)
        assert [(m.topic, m.payload) for m in got] == sent
        assert not two.alias_errors
        assert all(1 <= m.props.get("TopicAlias", 1) <= 2 for m in got)


def test_subscription_identifiers(broker, topic):
    with Client(broker, V5) as sub, Client(broker, V5) as pub:
        sub.subscribe(f"{topic}/a/#", 1, sub_id=7)
        sub.subscribe(f"{topic}/+/b", 1, sub_id=9)
        sub.subscribe(f"{topic}/plain", 1)
        for t in ("a/c", "z/b", "a/b", "plain"):
            pub.publish(f"{topic}/{t}", t, 1)
        pub.publish(f"{topic}/plain", b"sentinel", 1)
        ids = {}
        for m in collect_until_sentinel(sub):
            ids.setdefault(m.topic[len(topic) + 1 :], []).extend(
                m.props.get("SubscriptionIdentifier", [])
            )
        assert {k: sorted(v) for k, v in ids.items()} == {
            "a/c": [7],
            "z/b": [9],
            "a/b": [7, 9],
            "plain": [],
        }


def _overlap(broker, topic, version):
    with Client(broker, version) as sub, Client(broker, version) as pub:
        assert sub.subscribe(f"{topic}/a/#", 0) == [0]
        assert sub.subscribe(f"{topic}/a/b", 1) == [1]
        pub.publish(f"{topic}/a/b", b"once", 1)
        pub.publish(f"{topic}/a/b", b"sentinel", 1)
        got = collect_until_sentinel(sub)
        extra = []
        try:
            while True:
                extra.append(sub.get(timeout=0.2))
        except AssertionError:
            return got, extra


@pytest.mark.parametrize("version", VERSIONS)
def test_overlapping_subscriptions(broker, topic, version):
    """MQTT allows a copy per matching subscription; at least one copy must carry the
    highest QoS of the matching subscriptions."""
    got, extra = _overlap(broker, topic, version)
    assert [m.payload for m in got] in ([b"once"], [b"once", b"once"])
    assert max(m.qos for m in got) == 1
    assert [m.payload for m in extra] in ([], [b"sentinel"])


@pytest.mark.not_mosquitto("sends a copy per matching subscription, as MQTT 5 permits")
def test_overlapping_subscriptions_deliver_one_copy_on_v5(broker, topic):
    """Switchyard's contract: one copy, at the highest matching QoS."""
    got, extra = _overlap(broker, topic, V5)
    assert [(m.payload, m.qos) for m in got] == [(b"once", 1)]
    assert extra == []


def test_no_local(broker, topic):
    t = f"{topic}/no-local"
    with Client(broker, V5) as me, Client(broker, V5) as other, Client(broker, V5) as control:
        me.subscribe(t, 1, no_local=True)
        control.subscribe(t, 1)
        me.publish(t, b"mine", 1)
        other.publish(t, b"theirs", 1)
        assert sorted(m.payload for m in control.get_n(2)) == [b"mine", b"theirs"]
        assert me.get().payload == b"theirs"
        me.expect_none(0.3)


def test_retain_as_published(broker, topic):
    t = f"{topic}/rap"
    with Client(broker, V5) as keep, Client(broker, V5) as clear, Client(broker, V5) as pub:
        keep.subscribe(t, 1, retain_as_published=True)
        clear.subscribe(t, 1)
        pub.publish(t, b"r", 1, retain=True)
        assert keep.get().retain is True
        assert clear.get().retain is False
        pub.publish(t, b"live", 1)
        assert keep.get().retain is False
        pub.publish(t, b"", 1, retain=True)


def test_retain_handling(broker, topic):
    t = f"{topic}/rh"
    with Client(broker, V5) as pub:
        pub.publish(t, b"retained", 1, retain=True)
        try:
            with Client(broker, V5) as c:
                c.subscribe(t, 1, retain_handling=0)
                assert c.get().payload == b"retained"
                c.subscribe(t, 1, retain_handling=0)  # 0: on every subscribe
                assert c.get().payload == b"retained"
            with Client(broker, V5) as c:
                c.subscribe(t, 1, retain_handling=1)  # 1: only for a new subscription
                assert c.get().payload == b"retained"
                c.subscribe(t, 1, retain_handling=1)
                pub.publish(t, b"sentinel", 1)
                assert [m.payload for m in collect_until_sentinel(c)] == []
            with Client(broker, V5) as c:
                c.subscribe(t, 1, retain_handling=2)  # 2: never
                pub.publish(t, b"sentinel", 1)
                assert [m.payload for m in collect_until_sentinel(c)] == []
                c.expect_none(0.2)
        finally:
            pub.publish(t, b"", 1, retain=True)


def test_properties_forwarded_and_request_response(broker, topic):
    req, resp = f"{topic}/request", f"{topic}/response"
    user = [("a", "1"), ("b", "2"), ("a", "3")]  # order and repeats preserved
    with Client(broker, V5) as requester, Client(broker, V5) as responder:
        responder.subscribe(req, 1)
        requester.subscribe(resp, 1)
        requester.publish(
            req,
            b"{}",
            1,
            UserProperty=user,
            ResponseTopic=resp,
            CorrelationData=b"\x00corr\xff",
            ContentType="application/json",
            PayloadFormatIndicator=1,
        )
        m = responder.get()
        assert m.props.get("UserProperty") == user
        assert m.props.get("ResponseTopic") == resp
        assert m.props.get("CorrelationData") == b"\x00corr\xff"
        assert m.props.get("ContentType") == "application/json"
        assert m.props.get("PayloadFormatIndicator") == 1
        responder.publish(
            m.props["ResponseTopic"], b"answer", 1, CorrelationData=m.props["CorrelationData"]
        )
        r = requester.get()
        assert (r.payload, r.props.get("CorrelationData")) == (b"answer", b"\x00corr\xff")


def test_assigned_client_identifier(broker):
    with Client(broker, V5, client_id="") as a, Client(broker, V5, client_id="") as b:
        ids = [c.connack_props.get("AssignedClientIdentifier") for c in (a, b)]
        assert all(isinstance(i, str) and i for i in ids), ids
        assert ids[0] != ids[1]


@pytest.mark.parametrize("clean,expected", [(True, 0x00), (False, 0x02)])
def test_empty_client_id_on_311(broker, clean, expected):
    """3.1.1: an empty client id is allowed only with clean session 1."""
    with raw.RawClient("127.0.0.1", broker.mqtt_port, 4) as c:
        assert c.connect("", clean=clean).fields["reason"] == expected
        if expected:
            c.wait_closed()


def test_receive_maximum_limits_inflight(broker, topic):
    t = f"{topic}/flow"
    with Client(broker, V5, receive_maximum=2, manual_ack=True) as sub, Client(broker, V5) as pub:
        sub.subscribe(t, 1)
        for i in range(5):
            pub.publish(t, str(i), 1)
        first = sub.get_n(2)
        sub.expect_none(0.4)  # two unacknowledged: the window is full
        got = list(first)
        for m in first:
            sub.ack(m.mid, 1)
        got += sub.get_n(2)
        for m in got[2:]:
            sub.ack(m.mid, 1)
        got += sub.get_n(1)
        sub.ack(got[-1].mid, 1)
        assert [m.payload for m in got] == [str(i).encode() for i in range(5)]


def test_client_maximum_packet_size(broker, topic):
    """The server must not send a packet larger than the client's Maximum Packet Size."""
    t = f"{topic}/small"
    with Client(broker, V5, maximum_packet_size=512) as sub, Client(broker, V5) as pub:
        sub.subscribe(t, 1)
        pub.publish(t, b"x" * 2000, 1)
        pub.publish(t, b"small", 1)
        assert sub.get().payload == b"small"
        sub.expect_none(0.2)
