"""Topic matching: + and #, $-topics, shared subscriptions."""

import time

import pytest

from mqttc import V5, VERSIONS, Client

TOPICS = ["x", "x/y", "x/y/z", "x/", "xy", "w/y", "x//z"]
CASES = {  # filter -> the TOPICS it matches
    "x": ["x"],
    "x/+": ["x/y", "x/"],
    "+/y": ["x/y", "w/y"],
    "x/+/z": ["x/y/z", "x//z"],
    "x/#": ["x", "x/y", "x/y/z", "x/", "x//z"],
    "+": ["x", "xy"],
    "#": TOPICS,
    "+/+": ["x/y", "x/", "w/y"],
}


def collect_until_sentinel(client, deadline_s=5.0):
    deadline = time.monotonic() + deadline_s
    got = []
    while True:
        m = client.get(timeout=max(0.0, deadline - time.monotonic()))
        if m.payload == b"sentinel":
            return got
        got.append(m)


@pytest.mark.parametrize("rel_filter", list(CASES))
def test_wildcards(broker, topic, rel_filter):
    with Client(broker, V5) as sub, Client(broker, "3.1.1") as pub:
        assert sub.subscribe(f"{topic}/{rel_filter}", 1) == [1]
        for t in TOPICS:
            pub.publish(f"{topic}/{t}", t, 1)
        pub.publish(f"{topic}/{CASES[rel_filter][0]}", b"sentinel", 1)
        got = collect_until_sentinel(sub)
        assert sorted(m.topic for m in got) == sorted(f"{topic}/{t}" for t in CASES[rel_filter])
        assert all(m.payload.decode() == m.topic[len(topic) + 1 :] for m in got)


@pytest.mark.broker_options(deny=False)  # no deny rule that a root `#` would cover
def test_dollar_topics_not_matched_by_root_wildcards(fresh_broker):
    """`#` and `+` at the first level match neither the broker's own (retained) `$SYS`
    topics nor other `$` topics a client publishes to, where the broker allows that."""
    b = fresh_broker
    with Client(b, V5) as control, Client(b, V5) as pub:
        assert control.subscribe("$SYS/#", 0) == [0]  # retained broker figures, if any
        if control.subscribe("$itest/#", 1) == [1]:
            pub.publish("$itest/x", b"dollar", 1)
            seen = [m.topic for m in control.get_until("$itest/x")]
        else:
            try:
                seen = [control.get(timeout=2).topic]
            except AssertionError:
                seen = []
        assert seen, "no $-topic message to test with"
        wild = []
        try:
            for f in ("#", "+/x", "+/#"):
                wild.append(Client(b, V5))
                assert wild[-1].subscribe(f, 1) == [1]
            if "$itest/x" in seen:
                pub.publish("$itest/x", b"dollar", 1)
            pub.publish("plain/x", b"sentinel", 1)
            for c in wild:
                assert [m.topic for m in collect_until_sentinel(c)] == []
        finally:
            for c in wild:
                c.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_shared_subscription_splits_messages(broker, topic, version):
    t, n = f"{topic}/shared", 20
    members = [Client(broker, version) for _ in range(2)]
    try:
        with Client(broker, version) as plain, Client(broker, version) as pub:
            for m in members:
                assert m.subscribe(f"$share/g/{t}", 1) == [1]
            plain.subscribe(t, 1)
            for i in range(n):
                pub.publish(t, str(i), 1)
            assert sorted(int(m.payload) for m in plain.get_n(n)) == list(range(n))
            received = {id(m): [] for m in members}
            deadline = time.monotonic() + 5
            while sum(map(len, received.values())) < n and time.monotonic() < deadline:
                for m in members:
                    while not m.messages.empty():
                        received[id(m)].append(int(m.get().payload))
                time.sleep(0.02)
            for m in members:
                m.expect_none(0.2)
            everything = sorted(sum(received.values(), []))
            assert everything == list(range(n)), "each message exactly once in the group"
            assert all(received.values()), f"one member got nothing: {received}"
    finally:
        for m in members:
            m.disconnect()


@pytest.mark.not_mosquitto("it closes the connection on a too-deep SUBSCRIBE, without SUBACK")
@pytest.mark.parametrize("version", VERSIONS)
def test_deep_topic_is_refused_and_the_broker_survives(broker, broker_kind, topic, version):
    """60,001 levels once overflowed the stack of a broker that walks topics recursively."""
    deep = "a" + "/" * 60000
    with Client(broker, version) as c:
        codes = c.subscribe(deep, 0)
        # Not through `publish`, which asserts the packet was written: paho writes it itself and
        # then sees the broker close the connection in answer, which is what this test expects.
        c.paho.publish(deep, b"deep", 0)
        if broker_kind == "switchyard":
            assert codes == [0x8F if version == V5 else 0x80]
            assert c.disconnected.wait(c.timeout), "a too-deep PUBLISH topic closes the connection"
            if version == V5:
                assert c.disconnect_rc == 0x90
    with Client(broker, V5) as sub, Client(broker, version) as pub:
        assert sub.subscribe(f"{topic}/alive", 1) == [1]
        pub.publish(f"{topic}/alive", b"ok", 1)
        assert sub.get().payload == b"ok", "the broker still serves"
