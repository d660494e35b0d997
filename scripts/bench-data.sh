#!/usr/bin/env bash
# Stored data, side by side (issue 9, "Speed, size and scale"): the same seeded IoT data set
# loaded into VictoriaMetrics, InfluxDB 1.x and PostgreSQL 15 (a plain (series, ts, value) table),
# each on loopback with its own temporary data directory; for each: ingest rate, bytes per point
# on disk after compaction, and the 168-bucket, ten-aggregate query over one 7-day series.
#
# Usage: bash scripts/bench-data.sh [OUT_DIR]
#   OUT_DIR   default target/bench-data/<timestamp>; gets result.<peer>.json, logs, summary.md
# Environment:
#   DEVICES (100)  HOURS (3)  SEED (9)  WRITERS (2 concurrent loaders)  RUNS (7 query runs)
#   PEERS ("victoriametrics influxdb postgresql"; add "switchyard" for its row, see below)
#   KEEP_DATA (0; 1 keeps the generated files)
#   SWITCHYARD (target/release/switchyard, built when missing): the binary measured as "switchyard"
# Installs what is missing (Debian packages victoria-metrics, influxdb, postgresql-15) and stops
# and disables the system services those packages set up; nothing is left listening on its
# default port. Every server here listens on 127.0.0.1 on a free port and is stopped on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DEVICES=${DEVICES:-100}
HOURS=${HOURS:-3}
SEED=${SEED:-9}
WRITERS=${WRITERS:-2}
RUNS=${RUNS:-7}
PEERS=${PEERS:-"victoriametrics influxdb postgresql"}
KEEP_DATA=${KEEP_DATA:-0}
SWITCHYARD=${SWITCHYARD:-}
OUT=${1:-$ROOT/target/bench-data/$(date +%Y%m%d-%H%M%S)}
SUDO=
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
PGBIN=/usr/lib/postgresql/15/bin
DRIVER=(python3 "$ROOT/scripts/bench_data.py")

WORK=$(mktemp -d /tmp/bench-data.XXXXXX)
chmod 755 "$WORK" # PostgreSQL runs as its own user when this script runs as root
SERVER_PID=
SERVER_KIND=
SERVER_DIR=
cleanup() {
    stop_server
    if [ "$KEEP_DATA" = 1 ]; then say "generated data kept in $WORK/data"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT"

say() { printf '==> %s\n' "$*" >&2; }

# -- tools -----------------------------------------------------------------------------------
# Packages this run installs get their system service stopped and disabled right away.
installed=()
need() { # package binary
    if [ ! -x "$2" ]; then
        say "installing $1"
        if [ ${#installed[@]} -eq 0 ]; then $SUDO apt-get update -qq; fi
        $SUDO apt-get install -y -qq --no-install-recommends "$1" >/dev/null
        installed+=("$1")
    fi
}
need curl /usr/bin/curl
for peer in $PEERS; do
    case $peer in
    victoriametrics) need victoria-metrics /usr/bin/victoria-metrics ;;
    influxdb) need influxdb /usr/bin/influxd ;;
    postgresql) need postgresql-15 "$PGBIN/postgres" ;;
    switchyard)
        if [ -z "$SWITCHYARD" ]; then
            say "building switchyard (release)"
            cargo build --release -p switchyard-server --locked
            SWITCHYARD=$ROOT/target/release/switchyard
        fi
        ;;
    *) say "unknown peer $peer"; exit 2 ;;
    esac
done
for pkg in "${installed[@]}"; do
    [ "$pkg" != curl ] || continue
    service=${pkg%-15}
    if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || true
    else
        $SUDO service "$service" stop >/dev/null 2>&1 || true
    fi
done
command -v psql >/dev/null || { say "psql is missing (package postgresql-client-15)"; exit 1; }

# -- servers ---------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    local port=$1
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || { say "server exited; log: $SERVER_DIR/log"; tail -5 "$SERVER_DIR/log" >&2; return 1; }
        sleep 0.1
    done
    say "nothing listens on port $port"
    return 1
}

as_pg() { # PostgreSQL refuses to run as root: run its tools as the postgres user then
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_server PEER: sets SERVER_PID (or SERVER_KIND=postgresql), SERVER_DIR and PORT.
start_server() {
    local peer=$1
    SERVER_DIR=$(mktemp -d "$WORK/$peer.XXXXXX")
    chmod 755 "$SERVER_DIR"
    PORT=$(free_port)
    SERVER_KIND=$peer
    case $peer in
    victoriametrics)
        # Fixed dates in 2026: a long retention so nothing is dropped as too old.
        /usr/bin/victoria-metrics -storageDataPath="$SERVER_DIR/store" -httpListenAddr="127.0.0.1:$PORT" \
            -retentionPeriod=100y -loggerLevel=ERROR >"$SERVER_DIR/log" 2>&1 &
        SERVER_PID=$!
        wait_port "$PORT"
        ;;
    influxdb)
        # Short cold durations so the cache is snapshotted and the shards fully compacted soon
        # after the load; no self-monitoring database (it would grow the data directory).
        cat >"$SERVER_DIR/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$(free_port)"
[meta]
  dir = "$SERVER_DIR/meta"
[data]
  dir = "$SERVER_DIR/data"
  wal-dir = "$SERVER_DIR/wal"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "5s"
  compact-full-write-cold-duration = "10s"
[http]
  bind-address = "127.0.0.1:$PORT"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
EOF
        /usr/bin/influxd -config "$SERVER_DIR/influxdb.conf" >"$SERVER_DIR/log" 2>&1 &
        SERVER_PID=$!
        wait_port "$PORT"
        curl -fsS -XPOST "http://127.0.0.1:$PORT/query" --data-urlencode "q=CREATE DATABASE bench" >/dev/null
        ;;
    postgresql)
        chown postgres "$SERVER_DIR" 2>/dev/null || true
        as_pg "$PGBIN/initdb" -D "$SERVER_DIR/pg" -A trust -U postgres -E UTF8 >"$SERVER_DIR/log" 2>&1
        # Defaults otherwise (fsync and synchronous_commit on).
        as_pg "$PGBIN/pg_ctl" -D "$SERVER_DIR/pg" -l "$SERVER_DIR/pg.log" -w -t 60 start \
            -o "-p $PORT -c listen_addresses=127.0.0.1 -k $SERVER_DIR" >>"$SERVER_DIR/log" 2>&1
        SERVER_PID=$(head -1 "$SERVER_DIR/pg/postmaster.pid")
        psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres >/dev/null <<'EOF'
CREATE TABLE points (series int NOT NULL, ts timestamptz NOT NULL, value double precision NOT NULL);
CREATE INDEX points_series_ts ON points (series, ts);
EOF
        ;;
    switchyard)
        # Its defaults otherwise: every 2xx answer means the messages and points are on disk.
        printf '[mqtt]\nallow_anonymous = false\n' >"$SERVER_DIR/switchyard.toml"
        SWITCHYARD_LOG=warn,switchyard_storage_embedded=debug "$SWITCHYARD" serve --config "$SERVER_DIR/switchyard.toml" --data-dir "$SERVER_DIR/store" \
            --mqtt-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:$PORT" >"$SERVER_DIR/log" 2>&1 &
        SERVER_PID=$!
        wait_port "$PORT"
        for _ in $(seq 100); do [ -f "$SERVER_DIR/store/initial-credentials.json" ] && break; sleep 0.1; done
        ;;
    esac
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    if [ "$SERVER_KIND" = postgresql ]; then
        as_pg "$PGBIN/pg_ctl" -D "$SERVER_DIR/pg" -m fast -w stop >/dev/null 2>&1 || true
    fi
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 300); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# Bytes allocated on disk (not apparent sizes: some files are preallocated sparse).
du_bytes() { du -s -B1 "$@" | awk '{s += $1} END {print s + 0}'; }

# The merge runs in the background: wait until no merge is active three times in a row.
wait_vm_merges() {
    local idle=0
    for _ in $(seq 300); do
        if curl -fsS "http://127.0.0.1:$PORT/metrics" |
            awk '/^vm_active_merges/ {s += $2} END {exit !(s == 0)}'; then
            idle=$((idle + 1))
            [ "$idle" -ge 3 ] && return 0
        else
            idle=0
        fi
        sleep 1
    done
}

# compact PEER: whatever each peer offers to bring its files to their final size; prints
# "DATA_BYTES INDEX_BYTES" for the main data set (samples; series index and the rest).
compact() {
    case $1 in
    victoriametrics)
        # Rows acknowledged last reach the disk as a part of their own a few seconds later, after
        # a merge may have begun: merge again until the number of parts stops changing.
        local parts last=-1
        for _ in $(seq 6); do
            curl -fsS "http://127.0.0.1:$PORT/internal/force_flush" >/dev/null
            sleep 6
            curl -fsS "http://127.0.0.1:$PORT/internal/force_merge" >/dev/null
            wait_vm_merges
            parts=$(curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '/^vm_parts\{type="storage/ {s += $2} END {print s + 0}')
            [ "$parts" != "$last" ] || break
            last=$parts
        done
        say "victoriametrics: parts $(curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '/^vm_parts\{/ {printf "%s ", $0}')"
        echo "$(du_bytes "$SERVER_DIR/store/data") $(du_bytes "$SERVER_DIR/store/indexdb")"
        ;;
    influxdb)
        # Wait for the full compaction: every shard down to one TSM file, no temporary files,
        # the write-ahead log emptied into them (at most 3 minutes).
        local db=$SERVER_DIR/data/bench shards tsm tmp wal all data
        for _ in $(seq 180); do
            shards=$(find "$db" -mindepth 2 -maxdepth 2 -type d -not -path "$db/_series/*" | wc -l)
            tsm=$(find "$db" -name '*.tsm' | wc -l)
            tmp=$(find "$db" -name '*.tmp' | wc -l)
            wal=$(du_bytes "$SERVER_DIR/wal/bench")
            if [ "$shards" -gt 0 ] && [ "$tsm" -eq "$shards" ] && [ "$tmp" -eq 0 ] && [ "$wal" -lt 65536 ]; then
                break
            fi
            sleep 1
        done
        say "influxdb: $shards shard(s), $tsm TSM file(s), WAL $wal bytes"
        all=$(du_bytes "$db" "$SERVER_DIR/wal/bench")
        data=$(find "$db" -name '*.tsm' -exec du -B1 {} + | awk '{s += $1} END {print s + 0}')
        echo "$data $((all - data))"
        ;;
    switchyard)
        # Its own maintenance (every 10 s) seals the points into chunks, drops the head partitions
        # it sealed, flushes its memtables once idle and compacts keyspaces that deletions doubled:
        # wait until the data directory has not changed for 30 s (three maintenance runs; at most
        # 4 minutes). Its debug log line "data store on disk" gives the bytes per keyspace:
        # samples = chunks + series index (the series store), index = the rest of the directory
        # (message cache, head, ids, the journal's file).
        local last=-1 size same=0 line chunks series
        for _ in $(seq 48); do
            size=$(du_bytes "$SERVER_DIR/store/data")
            if [ "$size" = "$last" ]; then same=$((same + 1)); else same=0; fi
            [ "$same" -ge 6 ] && break
            last=$size
            sleep 5
        done
        say "switchyard: $(cd "$SERVER_DIR/store/data" && du -s -B1 -- * | tr '\t\n' '= ')"
        line=$(grep 'data store on disk' "$SERVER_DIR/log" | tail -1)
        say "switchyard: ${line##*bytes=}"
        chunks=$(sed -n 's/.*chunks:\([0-9]*\).*/\1/p' <<<"$line")
        series=$(sed -n 's/.* series:\([0-9]*\).*/\1/p' <<<"$line")
        echo "$((chunks + series)) $((size - chunks - series))"
        ;;
    postgresql)
        psql -X -q -At -F ' ' -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres \
            -c "VACUUM (FULL, ANALYZE) points" \
            -c "SELECT pg_table_size('points'), pg_indexes_size('points')"
        ;;
    esac
}

# -- the data set ----------------------------------------------------------------------------
say "generating $DEVICES devices x 10 metrics x ${HOURS} h (seed $SEED)"
formats=$(for peer in $PEERS; do
    case $peer in victoriametrics) echo vm ;; influxdb) echo influx ;; postgresql) echo pg ;; switchyard) echo sy ;; esac
done | paste -sd, -)
"${DRIVER[@]}" gen --devices "$DEVICES" --hours "$HOURS" --seed "$SEED" --writers "$WRITERS" \
    --formats "$formats" --out "$WORK/data" >"$OUT/meta.json"
chmod -R a+rX "$WORK/data"
cp "$WORK/data/meta.json" "$OUT/meta.json"

# -- runs ------------------------------------------------------------------------------------
started=$SECONDS
for peer in $PEERS; do
    say "$peer: start"
    start_server "$peer"
    cred=()
    [ "$peer" != switchyard ] || cred=(--credentials "$SERVER_DIR/store/initial-credentials.json")
    if ! {
        say "$peer: loading the data set"
        "${DRIVER[@]}" load "$peer" --dir "$WORK/data" --port "$PORT" --writers "$WRITERS" "${cred[@]}" >"$OUT/$peer.load.json" &&
            say "$peer: $(cat "$OUT/$peer.load.json")" &&
            say "$peer: compacting" &&
            compact "$peer" >"$OUT/$peer.disk" &&
            say "$peer: $(cat "$OUT/$peer.disk") bytes on disk" &&
            say "$peer: loading the long series for the query" &&
            "${DRIVER[@]}" load "$peer" --set query --dir "$WORK/data" --port "$PORT" --writers "$WRITERS" "${cred[@]}" \
                >"$OUT/$peer.load-query.json" &&
            say "$peer: compacting again, so the query reads compacted files" &&
            compact "$peer" >/dev/null &&
            say "$peer: querying ($RUNS runs)" &&
            "${DRIVER[@]}" query "$peer" --dir "$WORK/data" --port "$PORT" --runs "$RUNS" --tmp "$WORK" "${cred[@]}" \
                >"$OUT/$peer.query.json" &&
            say "$peer: $(cat "$OUT/$peer.query.json")"
    }; then
        say "$peer: failed (logs in $OUT/$peer.log)"
    else
        python3 - "$OUT" "$peer" <<'EOF'
import json, pathlib, sys
out, peer = pathlib.Path(sys.argv[1]), sys.argv[2]
r = {"peer": peer, "load": json.loads((out / f"{peer}.load.json").read_text()),
     "disk_bytes": dict(zip(("data", "index"), map(int, (out / f"{peer}.disk").read_text().split()))),
     "query": json.loads((out / f"{peer}.query.json").read_text())}
(out / f"result.{peer}.json").write_text(json.dumps(r, indent=2) + "\n")
EOF
    fi
    stop_server
    cp "$SERVER_DIR/log" "$OUT/$peer.log" 2>/dev/null || true
    [ ! -f "$SERVER_DIR/pg.log" ] || cp "$SERVER_DIR/pg.log" "$OUT/$peer.log"
    rm -rf "$SERVER_DIR"
done
say "runs done in $((SECONDS - started)) s"

# -- summary ---------------------------------------------------------------------------------
{
    echo "nproc=$(nproc)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory=$(free -h | awk '/^Mem:/ {print $2}')"
    echo "kernel=$(uname -r)"
    echo "victoriametrics=$(dpkg-query -W -f '${Version}' victoria-metrics 2>/dev/null || echo -)"
    echo "influxdb=$(dpkg-query -W -f '${Version}' influxdb 2>/dev/null || echo -)"
    echo "postgresql=$("$PGBIN/postgres" --version 2>/dev/null || echo -)"
    [ -z "$SWITCHYARD" ] || echo "switchyard=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")$(git -C "$ROOT" diff --quiet HEAD -- crates Cargo.toml 2>/dev/null || echo +changes)"
    echo "devices=$DEVICES hours=$HOURS seed=$SEED writers=$WRITERS runs=$RUNS"
} >"$OUT/machine.txt"
"${DRIVER[@]}" report --dir "$OUT" --peers "$PEERS"
echo
cat "$OUT/machine.txt"
say "results in $OUT"
