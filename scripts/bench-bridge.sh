#!/usr/bin/env bash
# Issue #10, "Speed": messages across protocols, and intake while a forwarding sink is down.
#
# 1. `switchyard bench bridge` for each --path (http-mqtt, mqtt-sse, mqtt-ws) at RATE msg/s,
#    ROUNDS rounds, one fresh release broker (fresh data directory) per run.
# 2. `switchyard bench ingest` with no forwarding sink, with a webhook sink that answers every
#    batch at once (up: a Python receiver here), and with one whose port is closed (down), same
#    parameters, alternating, a fresh broker per run; the sink's lag gauges are read from
#    /metrics after each run with a sink. "Intake unchanged while a sink is down" is down / up.
# Then a table of medians. Everything listens on 127.0.0.1 only; brokers are stopped on exit.
#
# Usage: bash scripts/bench-bridge.sh [OUT_DIR]   (default target/bench-bridge/<timestamp>)
# Environment: ROUNDS (3)  RATE (10000)  DEVICES (10)  DURATION (10)  WARMUP (2)
#   INGEST_DEVICES (100)  ONLY ("bridge sink"): which parts to run
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-10000}
DEVICES=${DEVICES:-10}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
INGEST_DEVICES=${INGEST_DEVICES:-100}
ONLY=${ONLY:-"bridge sink"}
OUT=${1:-$ROOT/target/bench-bridge/$(date +%Y%m%d-%H%M%S)}
SB=$ROOT/target/release/switchyard
MQTT_PORT=21883
HTTP_PORT=28080
# Nothing listens here: the webhook sink is down for the whole run.
DOWN_PORT=29999
# A receiver answering 204 to every batch: the webhook sink is up.
UP_PORT=29998

WORK=$(mktemp -d /tmp/bench-bridge.XXXXXX)
PID=
RECEIVER=
stop_broker() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=
    fi
}
cleanup() {
    stop_broker
    if [ -n "$RECEIVER" ]; then kill "$RECEIVER" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT/raw"

cargo build --release --locked -p switchyard-server

# Start a broker on a fresh data directory with the configuration file $1 (may be empty).
start_broker() {
    stop_broker
    rm -rf "$WORK/data"
    local config=()
    if [ -n "$1" ]; then config=(--config "$1"); fi
    "$SB" serve "${config[@]}" --data-dir "$WORK/data" --mqtt-listen 127.0.0.1:$MQTT_PORT \
        --http-listen 127.0.0.1:$HTTP_PORT >"$WORK/broker.log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do
        [ -f "$WORK/data/initial-credentials.json" ] && curl -sf "http://127.0.0.1:$HTTP_PORT/health" >/dev/null && break
        sleep 0.1
    done
    python3 - "$WORK" <<'EOF'
import json, sys
work = sys.argv[1]
t = json.load(open(f"{work}/data/initial-credentials.json"))["tenant"]
open(f"{work}/master.key", "w").write(t["master_key"])
open(f"{work}/apikey", "w").write(t["api_key"] + ":" + t["api_secret"])
EOF
}

printf '[[forward]]\nkind = "webhook"\nname = "down"\nurl = "http://127.0.0.1:%s/hook"\n' $DOWN_PORT >"$WORK/sink.toml"
printf '[[forward]]\nkind = "webhook"\nname = "up"\nurl = "http://127.0.0.1:%s/hook"\n' $UP_PORT >"$WORK/up.toml"
printf '' >"$WORK/none.toml"
if [[ " $ONLY " == *" sink "* ]]; then
    python3 - $UP_PORT <<'RECV' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
RECV
    RECEIVER=$!
fi

uptime | tee "$OUT/uptime.txt"
for round in $(seq "$ROUNDS"); do
    if [[ " $ONLY " == *" bridge "* ]]; then
        for path in http-mqtt mqtt-sse mqtt-ws; do
            start_broker "$WORK/none.toml"
            SWITCHYARD_BENCH_API_KEY=$(cat "$WORK/apikey") "$SB" bench bridge --path "$path" -n "$DEVICES" \
                --rate "$RATE" --port $MQTT_PORT --http-port $HTTP_PORT --master-key-file "$WORK/master.key" \
                --tenant localhost --broker-pid "$PID" --warmup "$WARMUP" --duration "$DURATION" --json \
                >"$OUT/raw/bridge-$path-$round.json"
            uptime >>"$OUT/uptime.txt"
        done
    fi
    if [[ " $ONLY " == *" sink "* ]]; then
        for sink in none up down; do
            config=$WORK/none.toml
            if [ $sink = up ]; then config=$WORK/up.toml; fi
            if [ $sink = down ]; then config=$WORK/sink.toml; fi
            start_broker "$config"
            SWITCHYARD_BENCH_API_KEY=$(cat "$WORK/apikey") "$SB" bench ingest -n "$INGEST_DEVICES" --protocol 3 \
                --port $MQTT_PORT --http-port $HTTP_PORT --master-key-file "$WORK/master.key" --tenant localhost \
                --broker-pid "$PID" --warmup "$WARMUP" --duration "$DURATION" --json \
                >"$OUT/raw/ingest-$sink-$round.json"
            curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | grep -E '^switchyard_forward_(lag|refused)' \
                >"$OUT/raw/ingest-$sink-$round.metrics" || true
            uptime >>"$OUT/uptime.txt"
        done
    fi
done
stop_broker

python3 - "$OUT" <<'EOF' | tee "$OUT/summary.md"
import glob, json, os, statistics, sys
out = sys.argv[1]
def runs(pattern):
    return [json.load(open(f)) for f in sorted(glob.glob(os.path.join(out, "raw", pattern)))]
def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")
print("| path | sent/s | received/s | lost | p50 µs | p99 µs | p99.9 µs | max µs | broker CPU % |")
print("|---|---|---|---|---|---|---|---|---|")
for path in ["http-mqtt", "mqtt-sse", "mqtt-ws"]:
    rs = [r for r in runs(f"bridge-{path}-*.json")]
    if not rs:
        continue
    b = [r["bridge"] for r in rs]
    lat = lambda k: med([x["latency"][k] if x["latency"] else None for x in b])
    print(f"| {path} | {med([x['sent_per_s'] for x in b]):.0f} | {med([x['received_per_s'] for x in b]):.0f} "
          f"| {sum(x['lost'] for x in b)} | {lat('p50_us'):.0f} | {lat('p99_us'):.0f} | {lat('p999_us'):.0f} "
          f"| {lat('max_us'):.0f} | {med([r['broker']['cpu_percent'] for r in rs if r.get('broker')]):.0f} |")
print()
sinks = {name: runs(f"ingest-{name}-*.json") for name in ["none", "up", "down"]}
rate = {name: med([r["ingest"]["messages_per_s"] for r in rs]) for name, rs in sinks.items() if rs}
if rate:
    print("| forwarding sink | durable acks/s (median) | runs |")
    print("|---|---|---|")
    labels = {"none": "none", "up": "webhook, up", "down": "webhook, down"}
    for name, rs in sinks.items():
        if rs:
            print(f"| {labels[name]} | {rate[name]:.0f} | {', '.join(str(round(r['ingest']['messages_per_s'])) for r in rs)} |")
    if "down" in rate and "up" in rate:
        print(f"\nratio down / up: {rate['down'] / rate['up']:.2f}")
    if "down" in rate and "none" in rate:
        print(f"ratio down / none: {rate['down'] / rate['none']:.2f}")
    for f in sorted(glob.glob(os.path.join(out, "raw", "ingest-*.metrics"))):
        print(f"{os.path.basename(f)}: " + " ".join(l.strip() for l in open(f)))
EOF
echo "raw reports in $OUT/raw"
