"""The data pipeline end to end (SPEC §4, §5): events posted over HTTP and published over MQTT
(paho, QoS 1) are read back through the HTTP API; hourly aggregates are compared with Python's
statistics module over data that spans hour edges; deletion by range and metric; tenant
isolation; bad parameters.

The independent definitions: `std` is the sample standard deviation (statistics.stdev);
`percentile(p)` interpolates linearly between the closest ranks (statistics.quantiles with
method="inclusive"); `median` is statistics.median.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid

import pytest

from conftest import switchyard_bin
from hubkit import IdentityBroker, basic, device_key, http
from mqttc import V5, Client

pytestmark = pytest.mark.not_mosquitto("the data API is switchyard's")

HOUR = 3_600_000
STEP = 37_000  # ms between readings: hours start mid-way between two of them
AGGREGATES = ["min", "max", "mean", "median", "sum", "count", "first", "last", "std", "percentile(95)"]


@pytest.fixture(scope="module")
def hub(broker_kind, certs, tmp_path_factory):
    b = IdentityBroker(tmp_path_factory.mktemp("data"), certs, switchyard_bin())
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def other(hub) -> str:
    """The `Basic` credentials of a second tenant."""
    admin = f"Bearer {hub.credentials()['admin_token']}"
    status, body, _ = http(hub, "POST", "/admin/tenants", admin, {"domain": f"t{uuid.uuid4().hex[:8]}.example"})
    assert status == 201, body
    return basic(body["api_key"], body["api_secret"])


def rid() -> str:
    return f"r-{uuid.uuid4().hex[:8]}"


def readings(start: int, n: int) -> list[tuple[int, float]]:
    """Decimals that are not in order, one every STEP ms from `start`."""
    return [(start + i * STEP, round((i * 7919) % 1000 / 10 - 20, 1)) for i in range(n)]


def post_events(hub, auth: str, resource: str, points, batch: int = 100) -> None:
    for i in range(0, len(points), batch):
        events = [{"timestamp": ts, "temp": v, "state": "on" if v > 0 else "off"} for ts, v in points[i : i + batch]]
        status, body, _ = http(hub, "POST", f"/resources/{resource}/events", auth, events)
        assert status == 200, body


def expected(values: list[float]) -> list[float]:
    return [
        min(values),
        max(values),
        statistics.fmean(values),
        statistics.median(values),
        sum(values),
        len(values),
        values[0],
        values[-1],
        statistics.stdev(values),
        statistics.quantiles(values, n=100, method="inclusive")[94],
    ]


def series(hub, auth, resource, metric, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return http(hub, "GET", f"/resources/{resource}/series/{metric}?{query}", auth)


def test_hourly_aggregates_match_statistics(hub, app):
    resource = rid()
    start = (int(time.time() * 1000) // HOUR - 30) * HOUR - 25 * 60_000
    points = readings(start, 400)
    post_events(hub, app, resource, points)
    frm, until = start + 10 * 60_000, points[-1][0] - 5 * 60_000
    status, body, _ = series(hub, app, resource, "temp", aggregates=",".join(AGGREGATES), grouping="1h", **{"from": frm, "until": until})
    assert status == 200, body
    assert body["query"]["aggregates"] == AGGREGATES
    inside = [(ts, v) for ts, v in points if frm <= ts < until]
    buckets: dict[int, list[float]] = {}
    for ts, v in inside:
        buckets.setdefault(ts - ts % HOUR, []).append(v)
    assert [row[0] for row in body["series"]] == sorted(buckets)
    for row in body["series"]:
        want = expected(buckets[row[0]])
        assert row[1:] == pytest.approx(want, rel=1e-9, abs=1e-9), row[0]

    # Text points are counted, never averaged.
    status, body, _ = series(hub, app, resource, "state", aggregates="count,last", **{"from": frm, "until": until})
    assert status == 200, body
    assert body["series"][0][1:] == [len(inside), "on" if inside[-1][1] > 0 else "off"]

    # Raw points, newest first.
    status, body, _ = series(hub, app, resource, "temp", order="desc", limit=5, **{"from": frm, "until": until})
    assert body["series"] == [[ts, v] for ts, v in reversed(inside)][:5]


def test_messages_current_and_delete(hub, app):
    resource = rid()
    start = int(time.time() * 1000) - 3 * HOUR
    points = readings(start, 30)
    post_events(hub, app, resource, points, batch=7)
    status, body, _ = http(hub, "GET", f"/resources/{resource}/current", app)
    assert status == 200, body
    assert (body["timestamp"], body["temp"], body["resource"]) == (points[-1][0], points[-1][1], resource)
    status, body, _ = http(hub, "GET", f"/resources/{resource}/messages?limit=5&until={points[10][0]}", app)
    assert [m["timestamp"] for m in body] == [ts for ts, _ in reversed(points[5:10])]
    status, body, _ = http(hub, "POST", "/messages/query", app, {"resources": [resource, rid()], "limit": 2})
    assert status == 200, body
    assert [m["timestamp"] for m in body[resource]] == [points[-1][0], points[-2][0]]

    # Points of one metric in a range; then only series; then everything.
    cut = f"from={points[10][0]}&until={points[20][0]}"
    status, body, _ = http(hub, "DELETE", f"/resources/{resource}?{cut}&metrics=temp", app)
    assert (status, body) == (200, {"messages": 0, "points": 10})
    status, body, _ = series(hub, app, resource, "temp", aggregates="count", **{"from": start})
    assert body["series"][0][1] == 20
    status, body, _ = http(hub, "DELETE", f"/resources/{resource}?{cut}&onlytimeseries=true", app)
    assert body == {"messages": 0, "points": 10}  # the `state` points
    status, body, _ = http(hub, "DELETE", f"/resources/{resource}?{cut}", app)
    assert body == {"messages": 10, "points": 0}
    status, body, _ = http(hub, "DELETE", f"/resources/{resource}/messages", app)
    assert body == {"deleted": 20}
    assert http(hub, "GET", f"/resources/{resource}/current", app)[0] == 404


def test_mqtt_events_are_read_back(hub, tenant, app):
    resource = rid()
    key = device_key(tenant["master_key"], resource)
    now = int(time.time() * 1000)
    with Client(hub, V5, username=f"{tenant['domain']}/{resource}", password=key) as c:
        for i in range(5):
            payload = json.dumps({"timestamp": now - 1000 * i, "hum": 40 + i})
            assert c.publish(f"{tenant['domain']}/resources/{resource}/events", payload, qos=1) in (0, None)
    status, body, _ = http(hub, "GET", f"/resources/{resource}/series", app)
    assert status == 200, body
    assert body == [{"name": "hum", "latest": {"timestamp": now, "value": 40}}]
    status, body, _ = http(hub, "GET", f"/resources/{resource}/series/hum/latest", app)
    assert body == {"timestamp": now, "value": 40}
    status, body, _ = series(hub, app, resource, "hum", aggregates="mean,count")
    assert body["series"][0][1:] == [42, 5]


def test_tenants_do_not_see_each_other(hub, app, other):
    resource = rid()
    post_events(hub, app, resource, readings(int(time.time() * 1000) - HOUR, 3))
    assert http(hub, "GET", f"/resources/{resource}/current", app)[0] == 200
    assert http(hub, "GET", f"/resources/{resource}/current", other)[0] == 404
    assert http(hub, "GET", f"/resources/{resource}/series", other)[1] == []
    assert http(hub, "DELETE", f"/resources/{resource}", other)[1] == {"messages": 0, "points": 0}
    assert http(hub, "GET", f"/resources/{resource}/current", app)[0] == 200


@pytest.mark.parametrize(
    "path",
    [
        "/resources/r1/series/temp?aggregates=avg",
        "/resources/r1/series/temp?grouping=3x",
        "/resources/r1/series/temp?from=yesterday",
        "/resources/r1/messages?limit=0",
    ],
)
def test_bad_parameters(hub, app, path):
    status, body, _ = http(hub, "GET", path, app)
    assert status == 400, body
    assert body["error"] and body["details"], body


def test_openapi_lists_the_data_paths(hub):
    status, doc, _ = http(hub, "GET", "/openapi.json")
    assert status == 200
    for path in ["/resources/{id}/series/{metric}", "/series/query", "/messages/query", "/resources/{id}"]:
        assert path in doc["paths"], path
