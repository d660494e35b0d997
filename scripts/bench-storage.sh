#!/usr/bin/env bash
# Single node on PostgreSQL vs embedded (issue 11): `switchyard bench ingest` (durable MQTT
# ingest, BENCHMARKS.md "MQTT ingest") against a fresh server on each backend, the backends
# alternating round by round with the same parameters; prints each run and the medians.
#
# Usage: bash scripts/bench-storage.sh [ROUNDS] [DEVICES] [SECONDS]   (default 3 100 10)
# Environment: SWITCHYARD_TEST_PG_URL (required; `source <(bash scripts/postgres.sh start DIR)`
#   prints it), SWITCHYARD_BIN (default target/release/switchyard), SWITCHYARD_BIN_BASE (optional:
#   another build, e.g. of the main branch, also run on postgres each round as "postgres-base",
#   for a before/after comparison in the same run). Each postgres run uses a schema of its own;
#   each run a data directory of its own, removed on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS=${1:-3}
DEVICES=${2:-100}
DURATION=${3:-10}
SB=${SWITCHYARD_BIN:-target/release/switchyard}
MQTT=127.0.0.1:21883
HTTP=127.0.0.1:28080
[ -x "$SB" ] || { echo "bench-storage.sh: no $SB (cargo build --release -p switchyard-server)" >&2; exit 1; }
BASE=${SWITCHYARD_BIN_BASE:-}
[ -z "$BASE" ] || [ -x "$BASE" ] || { echo "bench-storage.sh: no $BASE" >&2; exit 1; }
[ -n "${SWITCHYARD_TEST_PG_URL:-}" ] || { echo "bench-storage.sh: set SWITCHYARD_TEST_PG_URL" >&2; exit 1; }

WORK=$(mktemp -d)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# run LABEL ROUND [BIN]: one server (BIN, default $SB; postgres unless LABEL is embedded), one
# bench; appends "LABEL msg/s p50_us p99_us" to results.
run() {
    local backend=$1 round=$2 bin=${3:-$SB} dir=$WORK/$1-$2 storage=()
    mkdir -p "$dir"
    if [ "$backend" != embedded ]; then
        storage=(SWITCHYARD_STORAGE_BACKEND=postgres "SWITCHYARD_STORAGE_URL=$SWITCHYARD_TEST_PG_URL"
            "SWITCHYARD_STORAGE_SCHEMA=bench_${backend//-/_}_${round}_$$")
    fi
    env "${storage[@]}" "$bin" serve --data-dir "$dir/data" --mqtt-listen $MQTT --http-listen $HTTP 2>"$dir/log" &
    PID=$!
    for _ in $(seq 300); do
        [ -f "$dir/data/initial-credentials.json" ] && curl -sf "http://$HTTP/health" >/dev/null && break
        kill -0 "$PID" 2>/dev/null || { cat "$dir/log" >&2; exit 1; }
        sleep 0.1
    done
    jq -r .tenant.master_key "$dir/data/initial-credentials.json" >"$dir/master.key"
    local key
    key=$(jq -r '.tenant.api_key + ":" + .tenant.api_secret' "$dir/data/initial-credentials.json")
    echo "== $backend, round $round (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    SWITCHYARD_BENCH_API_KEY=$key "$SB" bench ingest -n "$DEVICES" --protocol 3 --port "${MQTT#*:}" \
        --master-key-file "$dir/master.key" --tenant localhost --broker-pid "$PID" \
        --http-port "${HTTP#*:}" --warmup 2 --duration "$DURATION" | tee "$dir/out"
    kill -TERM "$PID"
    wait "$PID" || true
    PID=
    awk -v b="$backend" '/durable acks/ {rate=$3} /PUBACK after/ {p50=$4; p99=$7} END {print b, rate, p50, p99}' \
        "$dir/out" >>"$WORK/results"
}

for round in $(seq "$ROUNDS"); do
    run embedded "$round"
    run postgres "$round"
    if [ -n "$BASE" ]; then run postgres-base "$round" "$BASE"; fi
done

echo "== results (msg/s, PUBACK p50 µs, p99 µs)"
cat "$WORK/results"
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
embedded=$(awk '$1=="embedded" {print $2}' "$WORK/results" | median)
postgres=$(awk '$1=="postgres" {print $2}' "$WORK/results" | median)
echo "median embedded $embedded msg/s, postgres $postgres msg/s, ratio $(awk -v p="$postgres" -v e="$embedded" 'BEGIN {printf "%.2f", p/e}')"
if [ -n "$BASE" ]; then
    base=$(awk '$1=="postgres-base" {print $2}' "$WORK/results" | median)
    echo "median postgres-base $base msg/s, ratio to embedded $(awk -v p="$base" -v e="$embedded" 'BEGIN {printf "%.2f", p/e}')"
fi
