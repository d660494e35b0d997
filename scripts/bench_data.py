#!/usr/bin/env python3
"""Stored-data benchmark driver for scripts/bench-data.sh (standard library only).

Subcommands:
  gen     write the seeded data set in each peer's import format, cut in batches
  load    send one peer's batches (2 writers by default) and time it until acknowledged
  query   run the 168-bucket, ten-aggregate query on the long series; check it; median time
  report  gather the JSON results into a markdown table

The data set: DEVICES devices x 10 metrics at 1 Hz for HOURS hours from 2026-11-01 00:00 UTC,
plus one long series (7 days at 1 Hz from 2026-10-01 00:00 UTC) used only by the query test.
One message = one device's 10 metrics at one instant. Everything follows from --seed.
Peers: victoriametrics, influxdb, postgresql, and switchyard (POST /messages, then
GET /resources/long/series/value with the first tenant's application key).
"""

import argparse
import base64
import concurrent.futures
import datetime as dt
import http.client
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.parse

MAIN_START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
QUERY_START_MS = 1_790_812_800_000  # 2026-10-01T00:00:00Z
QUERY_HOURS = 168
BLOCK_SECONDS = 60  # one batch = every device's messages for one minute
PG_QUERY_SERIES = 0  # series ids: 1 + device * 10 + metric for the main set

# (name, kind, decimals): kinds drive both the generator and the per-peer encoding.
METRICS = [
    ("temperature", "walk", 1),  # 21.3-style, one decimal, slow random walk
    ("humidity", "walk", 2),  # two decimals
    ("pressure", "walk", 2),  # hPa, two decimals, very slow
    ("energy_wh", "counter", 0),  # monotonic, small steps
    ("packets", "counter", 0),  # monotonic, large steps
    ("door_open", "bool", 0),  # flips very rarely
    ("relay_on", "bool", 0),  # flips now and then
    ("vibration", "noise", None),  # full-precision noise around 0
    ("current_a", "noise", None),  # full-precision noise around a level
    ("rssi_dbm", "int", 0),  # small integer jitter
]


class Device:
    """Per-device generator state; values come from one shared seeded stream, in order."""

    def __init__(self, rng):
        self.t = round(rng.uniform(15, 28), 1)
        self.h = round(rng.uniform(30, 70), 2)
        self.p = round(rng.uniform(990, 1030), 2)
        self.e = rng.randrange(0, 1_000_000)
        self.k = rng.randrange(0, 10_000_000)
        self.door = 0
        self.relay = rng.randrange(2)
        self.level = rng.uniform(0.5, 8.0)
        self.rssi = rng.randrange(-90, -50)

    def step(self, rng):
        r = rng.random
        if r() < 0.2:
            self.t = round(min(40.0, max(-10.0, self.t + (0.1 if r() < 0.5 else -0.1))), 1)
        if r() < 0.3:
            self.h = round(min(99.0, max(1.0, self.h + rng.choice((-0.02, -0.01, 0.01, 0.02)))), 2)
        if r() < 0.05:
            self.p = round(self.p + (0.01 if r() < 0.5 else -0.01), 2)
        self.e += rng.randrange(0, 6)
        self.k += rng.randrange(0, 1000)
        if r() < 0.0005:
            self.door ^= 1
        if r() < 0.01:
            self.relay ^= 1
        vib = rng.gauss(0.0, 0.05)
        cur = self.level + rng.gauss(0.0, 0.1)
        rssi = self.rssi + rng.randrange(-3, 4)
        return (self.t, self.h, self.p, self.e, self.k, self.door, self.relay, vib, cur, rssi)


def fmt_value(kind, decimals, v):
    """Text of a value as a device would send it (JSON / line protocol / COPY)."""
    if kind == "walk":
        return f"{v:.{decimals}f}"
    if kind in ("counter", "bool", "int"):
        return str(int(v))
    return repr(float(v))


def influx_field(kind, decimals, v):
    if kind == "bool":
        return "true" if v else "false"
    if kind in ("counter", "int"):
        return f"{int(v)}i"
    return fmt_value(kind, decimals, v)


def json_field(kind, decimals, v):
    if kind == "bool":
        return "true" if v else "false"
    return fmt_value(kind, decimals, v)


def pg_ts(ms):
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S+00")


class BatchFile:
    """One output file plus the byte ranges of its batches (for HTTP peers)."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, "wb")
        self.ranges = []

    def batch(self, data: bytes):
        start = self.f.tell()
        self.f.write(data)
        self.ranges.append((start, len(data)))

    def close(self):
        self.f.close()
        with open(self.path + ".idx", "w") as f:
            json.dump(self.ranges, f)


def gen(args):
    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(args.seed)
    devices = [Device(rng) for _ in range(args.devices)]
    names = [f"d{i:05d}" for i in range(args.devices)]
    fmts = set(args.formats.split(","))
    vm = BatchFile(os.path.join(args.out, "main.vm.jsonl"))
    influx = BatchFile(os.path.join(args.out, "main.influx.lp"))
    sy = BatchFile(os.path.join(args.out, "main.sy.json"))
    pg = [open(os.path.join(args.out, f"main.pg.{w}.sql"), "w") for w in range(args.writers)]
    seconds = args.hours * 3600
    points = 0
    for block, b0 in enumerate(range(0, seconds, BLOCK_SECONDS)):
        n = min(BLOCK_SECONDS, seconds - b0)
        ts = [MAIN_START_MS + (b0 + i) * 1000 for i in range(n)]
        tstext = [pg_ts(t) for t in ts]
        # rows[d][i] = ten values of device d at second b0 + i
        rows = [[dev.step(rng) for _ in range(n)] for dev in devices]
        points += n * len(names) * len(METRICS)
        if "vm" in fmts:
            tsjson = json.dumps(ts, separators=(",", ":"))
            vm.batch("".join(
                f'{{"metric":{{"__name__":"{metric}","device":"{name}"}},'
                f'"values":[{",".join(fmt_value(kind, dec, r[m]) for r in rows[d])}],"timestamps":{tsjson}}}\n'
                for d, name in enumerate(names) for m, (metric, kind, dec) in enumerate(METRICS)
            ).encode())
        if "influx" in fmts:
            lines = [
                f"sensors,device={name} "
                + ",".join(f"{metric}={influx_field(kind, dec, r[m])}" for m, (metric, kind, dec) in enumerate(METRICS))
                + f" {ts[i]}\n"
                for d, name in enumerate(names) for i, r in enumerate(rows[d])
            ]
            # Batches of <= 5000 lines (50,000 points), the size its docs advise.
            for i in range(0, len(lines), 5000):
                influx.batch("".join(lines[i : i + 5000]).encode())
        if "pg" in fmts:
            # One COPY per batch, each its own transaction; batches dealt to the writers in turn.
            w = pg[block % args.writers]
            w.write("COPY points (series, ts, value) FROM STDIN;\n")
            w.write("".join(
                f"{1 + d * 10 + m}\t{tstext[i]}\t{fmt_value(kind, dec, r[m])}\n"
                for d in range(len(names)) for m, (metric, kind, dec) in enumerate(METRICS)
                for i, r in enumerate(rows[d])
            ))
            w.write("\\.\n")
        if "sy" in fmts:
            # POST /messages: one message per device and second, each naming its resource;
            # booleans as JSON booleans (stored as 0/1). Batches of 1000 messages, its most.
            msgs = [
                f'{{"resource":"{name}","timestamp":{ts[i]},'
                + ",".join(f'"{metric}":{json_field(kind, dec, r[m])}' for m, (metric, kind, dec) in enumerate(METRICS))
                + "}"
                for d, name in enumerate(names) for i, r in enumerate(rows[d])
            ]
            for i in range(0, len(msgs), 1000):
                sy.batch(("[" + ",".join(msgs[i : i + 1000]) + "]").encode())
    for f in (vm, influx, sy, *pg):
        f.close()
    gen_query(args.out, random.Random(args.seed + 1))
    meta = {
        "seed": args.seed,
        "devices": args.devices,
        "hours": args.hours,
        "metrics": len(METRICS),
        "points": points,
        "messages": points // len(METRICS),
        "writers": args.writers,
        "query_points": QUERY_HOURS * 3600,
    }
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(json.dumps(meta))


def gen_query(out, rng):
    """The long series: one temperature-like random walk, 7 days at 1 Hz; plus expected results."""
    dev = Device(rng)
    n = QUERY_HOURS * 3600
    values = [dev.step(rng)[0] for _ in range(n)]
    ts = [QUERY_START_MS + i * 1000 for i in range(n)]
    vm = BatchFile(os.path.join(out, "query.vm.jsonl"))
    influx = BatchFile(os.path.join(out, "query.influx.lp"))
    sy = BatchFile(os.path.join(out, "query.sy.json"))
    with open(os.path.join(out, "query.pg.sql"), "w") as pg:
        for h in range(QUERY_HOURS):
            sl = slice(h * 3600, (h + 1) * 3600)
            vals = ",".join(f"{v:.1f}" for v in values[sl])
            vm.batch(
                (
                    f'{{"metric":{{"__name__":"long_temperature","device":"long"}},"values":[{vals}],'
                    f'"timestamps":{json.dumps(ts[sl], separators=(",", ":"))}}}\n'
                ).encode()
            )
            influx.batch("".join(f"long value={v:.1f} {t}\n" for v, t in zip(values[sl], ts[sl])).encode())
            pg.write("COPY points (series, ts, value) FROM STDIN;\n")
            pg.write("".join(f"{PG_QUERY_SERIES}\t{pg_ts(t)}\t{v:.1f}\n" for v, t in zip(values[sl], ts[sl])))
            pg.write("\\.\n")
            for q in range(h * 3600, (h + 1) * 3600, 900):
                sy.batch(("[" + ",".join(f'{{"resource":"long","timestamp":{ts[i]},"value":{values[i]:.1f}}}'
                                         for i in range(q, q + 900)) + "]").encode())
    for f in (vm, influx, sy):
        f.close()
    expected = []
    for h in range(QUERY_HOURS):
        b = values[h * 3600 : (h + 1) * 3600]
        expected.append({"count": len(b), "min": min(b), "max": max(b), "mean": statistics.fmean(b), "sum": math.fsum(b),
                         "median": statistics.median(b), "first": b[0], "last": b[-1]})
    with open(os.path.join(out, "query.expected.json"), "w") as f:
        json.dump(expected, f)


# -- load ---------------------------------------------------------------------------------------


def http_request(port, method, path, body=None, headers=None, timeout=600):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {data[:300]!r}")
        return data
    finally:
        conn.close()


def sy_headers(args):
    """An application's credentials: the tenant key of switchyard's first start."""
    with open(args.credentials) as f:
        t = json.load(f)["tenant"]
    token = base64.b64encode(f"{t['api_key']}:{t['api_secret']}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def post_batches(port, path, file, writers, headers=None):
    with open(file + ".idx") as f:
        ranges = json.load(f)
    with open(file, "rb") as f:
        blob = f.read()

    def worker(w):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for start, length in ranges[w::writers]:
            conn.request("POST", path, body=blob[start : start + length], headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status >= 300:
                raise RuntimeError(f"POST {path}: HTTP {resp.status}: {data[:300]!r}")
        conn.close()

    with concurrent.futures.ThreadPoolExecutor(writers) as pool:
        for fut in [pool.submit(worker, w) for w in range(writers)]:
            fut.result()
    return len(ranges)


def psql_base(args):
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", args.pg_host, "-p", str(args.port),
            "-U", "postgres", "-d", "postgres"]


def load(args):
    meta = json.load(open(os.path.join(args.dir, "meta.json")))
    which = args.set
    points = meta["points"] if which == "main" else meta["query_points"]
    started = time.perf_counter()
    if args.peer == "victoriametrics":
        batches = post_batches(args.port, "/api/v1/import", os.path.join(args.dir, f"{which}.vm.jsonl"), args.writers)
        # Acknowledged rows sit in a buffer for up to a second; make them searchable.
        http_request(args.port, "GET", "/internal/force_flush")
    elif args.peer == "influxdb":
        batches = post_batches(args.port, "/write?db=bench&precision=ms",
                               os.path.join(args.dir, f"{which}.influx.lp"), args.writers)
    elif args.peer == "switchyard":
        batches = post_batches(args.port, "/messages", os.path.join(args.dir, f"{which}.sy.json"), args.writers,
                               sy_headers(args))
    elif args.peer == "postgresql":
        files = ([os.path.join(args.dir, f"main.pg.{w}.sql") for w in range(meta["writers"])]
                 if which == "main" else [os.path.join(args.dir, "query.pg.sql")])
        procs = [subprocess.Popen(psql_base(args) + ["-f", f], stdout=subprocess.DEVNULL) for f in files]
        for p in procs:
            if p.wait() != 0:
                raise RuntimeError("psql COPY failed")
        batches = None
    else:
        raise SystemExit(f"unknown peer {args.peer}")
    seconds = time.perf_counter() - started
    out = {"peer": args.peer, "set": which, "points": points, "seconds": seconds,
           "points_per_s": points / seconds, "messages_per_s": points / len(METRICS) / seconds,
           "batches": batches}
    print(json.dumps(out))


# -- query --------------------------------------------------------------------------------------


def q_victoriametrics(args, start_ms, end_ms):
    # Prometheus-style windows: the value at t covers (t - 1h, t], so evaluating 1 ms before each
    # bucket's end covers exactly [start, end) of the bucket (timestamps are whole milliseconds).
    # All ten aggregates in one request: a MetricsQL union of label_set-tagged results.
    sel = 'long_temperature{device="long"}[1h]'
    parts = {
        "min": f"min_over_time({sel})", "max": f"max_over_time({sel})", "mean": f"avg_over_time({sel})",
        "median": f"quantile_over_time(0.5, {sel})", "sum": f"sum_over_time({sel})",
        "count": f"count_over_time({sel})", "first": f"first_over_time({sel})",
        "last": f"last_over_time({sel})", "std": f"stddev_over_time({sel})",
        "p95": f"quantile_over_time(0.95, {sel})",
    }
    q = "(" + ", ".join(f'label_set({e}, "agg", "{k}")' for k, e in parts.items()) + ")"
    params = urllib.parse.urlencode({"query": q, "start": (start_ms + 3_600_000 - 1) / 1000,
                                     "end": (end_ms - 1) / 1000,
                                     "step": "1h", "nocache": "1"})
    path = "/api/v1/query_range?" + params

    def run():
        data = json.loads(http_request(args.port, "GET", path))
        res = {}
        for s in data["data"]["result"]:
            res[s["metric"].get("agg")] = [float(v) for _, v in s["values"]]
        return res

    return run


def q_influxdb(args, start_ms, end_ms):
    q = ("SELECT min(value), max(value), mean(value), median(value), sum(value), count(value), first(value), "
         "last(value), stddev(value), percentile(value, 95) FROM long "
         f"WHERE time >= {start_ms}ms AND time < {end_ms}ms GROUP BY time(1h)")
    path = "/query?" + urllib.parse.urlencode({"db": "bench", "q": q, "epoch": "ms"})
    names = ["min", "max", "mean", "median", "sum", "count", "first", "last", "std", "p95"]

    def run():
        data = json.loads(http_request(args.port, "GET", path))
        rows = data["results"][0]["series"][0]["values"]
        return {n: [r[i + 1] for r in rows] for i, n in enumerate(names)}

    return run


def q_postgresql(args, start_ms, end_ms):
    s, e = pg_ts(start_ms), pg_ts(end_ms)
    sql = (
        "SELECT date_bin('1 hour', ts, timestamptz '2000-01-01 00:00:00+00') AS bucket, min(value), max(value), "
        "avg(value), percentile_cont(0.5) WITHIN GROUP (ORDER BY value), sum(value), count(*), "
        "(array_agg(value ORDER BY ts))[1], (array_agg(value ORDER BY ts DESC))[1], stddev_samp(value), "
        "percentile_cont(0.95) WITHIN GROUP (ORDER BY value) "
        f"FROM points WHERE series = {PG_QUERY_SERIES} AND ts >= '{s}' AND ts < '{e}' GROUP BY 1 ORDER BY 1"
    )
    names = ["min", "max", "mean", "median", "sum", "count", "first", "last", "std", "p95"]

    def run_many(n):
        # One session; psql's own client-side timing of each round trip (rows sent to a file).
        script = "\\pset format unaligned\n\\pset tuples_only on\n\\timing on\n"
        script += f"\\o {args.tmp}/pg-query.out\n" + (sql + ";\n") * n
        out = subprocess.run(psql_base(args), input=script, capture_output=True, text=True, check=True).stdout
        times = [float(line.split()[1]) for line in out.splitlines() if line.startswith("Time:")]
        rows = [r.split("|") for r in open(f"{args.tmp}/pg-query.out").read().splitlines() if r][-QUERY_HOURS:]
        res = {n_: [float(r[i + 1]) for r in rows] for i, n_ in enumerate(names)}
        return times, res

    return run_many


def q_switchyard(args, start_ms, end_ms):
    params = urllib.parse.urlencode({"from": start_ms, "until": end_ms, "grouping": "1h",
                                     "aggregates": "min,max,mean,median,sum,count,first,last,std,percentile(95)"})
    path = "/resources/long/series/value?" + params
    headers = sy_headers(args)
    names = ["min", "max", "mean", "median", "sum", "count", "first", "last", "std", "p95"]

    def run():
        rows = json.loads(http_request(args.port, "GET", path, headers=headers))["series"]
        return {n: [r[i + 1] for r in rows] for i, n in enumerate(names)}

    return run


def check(res, expected):
    """The peer's buckets against the generator's own figures. Not checked: std (population in
    MetricsQL, sample in InfluxQL and SQL here) and p95 (nearest rank in InfluxQL, interpolated in
    the others)."""
    problems = []
    for key in ("count", "min", "max", "mean", "median", "sum", "first", "last"):
        got = res.get(key)
        if got is None or len(got) != len(expected):
            problems.append(f"{key}: {0 if got is None else len(got)} buckets, expected {len(expected)}")
            continue
        bad = sum(1 for g, x in zip(got, expected) if not math.isclose(g, x[key], rel_tol=1e-9, abs_tol=1e-9))
        if bad:
            problems.append(f"{key}: {bad} buckets differ")
    return problems


def query(args):
    expected = json.load(open(os.path.join(args.dir, "query.expected.json")))
    start_ms, end_ms = QUERY_START_MS, QUERY_START_MS + QUERY_HOURS * 3_600_000
    if args.peer == "postgresql":
        times, res = q_postgresql(args, start_ms, end_ms)(args.runs + 1)
        times = times[1:]  # the first run warms the cache
    else:
        run = {"victoriametrics": q_victoriametrics, "influxdb": q_influxdb, "switchyard": q_switchyard}[args.peer](
            args, start_ms, end_ms)
        res = run()  # warm-up
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            res = run()
            times.append((time.perf_counter() - t0) * 1000)
    problems = check(res, expected)
    out = {"peer": args.peer, "runs": len(times), "median_ms": statistics.median(times), "min_ms": min(times),
           "max_ms": max(times), "buckets": len(res.get("count") or []), "problems": problems}
    print(json.dumps(out))


# -- report -------------------------------------------------------------------------------------


def report(args):
    meta = json.load(open(os.path.join(args.dir, "meta.json")))
    peers = args.peers.split()
    res = {}
    for p in peers:
        path = os.path.join(args.dir, f"result.{p}.json")
        if os.path.exists(path):
            res[p] = json.load(open(path))

    def cell(p, f):
        r = res.get(p)
        try:
            return f(r) if r else "n/a"
        except (KeyError, TypeError, ZeroDivisionError):
            return "n/a"

    pts = meta["points"]
    rows = [
        ("ingest, points/s", lambda r: f"{r['load']['points_per_s']:,.0f}"),
        ("ingest, messages/s (10 points each)", lambda r: f"{r['load']['messages_per_s']:,.0f}"),
        ("load time, s", lambda r: f"{r['load']['seconds']:.1f}"),
        ("bytes per point on disk after compaction: samples", lambda r: f"{r['disk_bytes']['data'] / pts:.2f}"),
        ("bytes per point: samples + series index", lambda r: f"{sum(r['disk_bytes'].values()) / pts:.2f}"),
        ("bytes on disk: samples + series index", lambda r: f"{r['disk_bytes']['data']:,} + {r['disk_bytes']['index']:,}"),
        ("query 168 x 1 h, ten aggregates: median ms", lambda r: f"{r['query']['median_ms']:.1f}"),
        ("query: min-max ms", lambda r: f"{r['query']['min_ms']:.1f}-{r['query']['max_ms']:.1f}"),
        ("query result check", lambda r: "ok" if not r["query"]["problems"] else "; ".join(r["query"]["problems"])),
    ]
    lines = [
        f"Data set: {meta['devices']} devices x {meta['metrics']} metrics at 1 Hz for {meta['hours']} h = "
        f"{meta['points']:,} points ({meta['messages']:,} messages), seed {meta['seed']}; "
        f"query series: 1 metric, 7 days at 1 Hz = {meta['query_points']:,} points.",
        "",
        "| measure | " + " | ".join(peers) + " |",
        "|---|" + "---|" * len(peers),
    ]
    for label, f in rows:
        lines.append(f"| {label} | " + " | ".join(cell(p, f) for p in peers) + " |")
    for p in peers:
        if p not in res:
            lines.append(f"\n{p}: no result (see its log).")
    text = "\n".join(lines)
    with open(os.path.join(args.dir, "summary.md"), "w") as f:
        f.write(text + "\n")
    print(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--devices", type=int, default=100)
    g.add_argument("--hours", type=int, default=3)
    g.add_argument("--seed", type=int, default=9)
    g.add_argument("--writers", type=int, default=2)
    g.add_argument("--out", required=True)
    g.add_argument("--formats", default="vm,influx,pg,sy", help="of: vm, influx, pg, sy (switchyard)")
    for name in ("load", "query"):
        s = sub.add_parser(name)
        s.add_argument("peer", choices=["victoriametrics", "influxdb", "postgresql", "switchyard"])
        s.add_argument("--credentials", help="switchyard: its initial-credentials.json")
        s.add_argument("--dir", required=True)
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--pg-host", default="127.0.0.1")
        if name == "load":
            s.add_argument("--set", choices=["main", "query"], default="main")
            s.add_argument("--writers", type=int, default=2)
        else:
            s.add_argument("--runs", type=int, default=7)
            s.add_argument("--tmp", default="/tmp")
    r = sub.add_parser("report")
    r.add_argument("--dir", required=True)
    r.add_argument("--peers", default="victoriametrics influxdb postgresql switchyard")
    args = ap.parse_args()
    {"gen": gen, "load": load, "query": query, "report": report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
