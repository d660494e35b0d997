#!/usr/bin/env bash
# Side-by-side benchmark on this machine: Mosquitto, rumqttd and switchyard (plain MQTT) on
# loopback, the same `switchyard bench` scenarios against each, alternating A B C A B C for
# ROUNDS rounds with a fresh broker each time; then a table of medians and ratios.
#
# Usage: bash scripts/bench-compare.sh [OUT_DIR]
#   OUT_DIR   default target/bench-compare/<timestamp>; gets raw/*.json (one report per run),
#             summary.json and summary.md (the table).
# Environment:
#   ROUNDS (3)  DURATION (5 s measured per run)  WARMUP (1 s)  PROTOCOL (3 = MQTT 3.1.1, or 5)
#   IDLE_CONNECTIONS (2000)  BROKERS ("mosquitto rumqttd switchyard")
#   ONLY (every scenario): space-separated scenario ids to run, e.g. ONLY="idle fanout-q1-w100"
# Installs what is missing for the brokers compared: Debian's mosquitto, rumqttd (cargo install),
# the release build.
# Everything listens on 127.0.0.1 only; every run is bounded in time; brokers are stopped on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
PROTOCOL=${PROTOCOL:-3}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-2000}
BROKERS=${BROKERS:-"mosquitto rumqttd switchyard"}
ONLY=${ONLY:-}
OUT=${1:-$ROOT/target/bench-compare/$(date +%Y%m%d-%H%M%S)}
SUDO=
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive

WORK=$(mktemp -d /tmp/bench-compare.XXXXXX)
BROKER_PID=
cleanup() {
    stop_broker
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT/raw"

say() { printf '==> %s\n' "$*" >&2; }

# -- tools: only those of the brokers compared ----------------------------------------
wants() { case " $BROKERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
if wants mosquitto && [ ! -x "$MOSQUITTO" ]; then
    say "installing mosquitto"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends mosquitto
    MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
fi

RUMQTTD=$(command -v rumqttd || echo "${CARGO_HOME:-$HOME/.cargo}/bin/rumqttd")
if wants rumqttd && [ ! -x "$RUMQTTD" ]; then
    say "installing rumqttd (cargo install)"
    # Its locked dependency set no longer builds on current compilers; fall back to the newest
    # compatible versions when the locked install fails.
    cargo install rumqttd --locked || cargo install rumqttd
fi

say "building switchyard (release)"
cargo build --release -p switchyard-server --locked
SWITCHYARD=$ROOT/target/release/switchyard
# What was built: the commit, and whether the work tree differed from it.
BUILT="$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- crates ':!crates/bench' Cargo.toml 2>/dev/null || echo +changes)"

# 2000+ idle connections need as many descriptors, in the brokers and in the load tool.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNECTIONS + 1000)) ]; then
    say "ulimit -n is $(ulimit -n): too low for $IDLE_CONNECTIONS idle connections"
    exit 1
fi

# -- brokers ---------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    local port=$1
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    say "nothing listens on port $port"
    return 1
}

# start_broker NAME VARIANT: VARIANT is "clean" or "persistent" (only Mosquitto differs).
# Sets BROKER_PID and PORT.
start_broker() {
    local name=$1 variant=$2 dir
    dir=$(mktemp -d "$WORK/$name.XXXXXX")
    PORT=$(free_port)
    case $name in
    mosquitto)
        {
            echo "listener $PORT 127.0.0.1"
            echo "allow_anonymous true"
            # The same per-session bounds as switchyard's defaults, so both do the same work.
            echo "max_inflight_messages 32"
            echo "max_queued_messages 10000"
            echo "log_dest stderr"
            echo "log_type error"
            if [ "$variant" = persistent ]; then
                echo "persistence true"
                echo "persistence_location $dir/"
            else
                echo "persistence false"
            fi
        } >"$dir/mosquitto.conf"
        "$MOSQUITTO" -c "$dir/mosquitto.conf" 2>"$dir/log" &
        ;;
    rumqttd)
        local port5
        port5=$(free_port)
        if [ "$PROTOCOL" = 5 ]; then port5=$PORT; PORT=$(free_port); fi
        cat >"$dir/rumqttd.toml" <<EOF
id = 0

[router]
id = 0
max_connections = 20000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:$PORT"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true

[v5.1]
name = "v5-1"
listen = "127.0.0.1:$port5"
next_connection_delay_ms = 0
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
EOF
        if [ "$PROTOCOL" = 5 ]; then PORT=$port5; fi
        "$RUMQTTD" --quiet --config "$dir/rumqttd.toml" >"$dir/log" 2>&1 &
        ;;
    switchyard)
        printf '[mqtt]\nallow_anonymous = true\n' >"$dir/switchyard.toml"
        SWITCHYARD_LOG=warn "$SWITCHYARD" serve --config "$dir/switchyard.toml" --data-dir "$dir/data" \
            --mqtt-listen "127.0.0.1:$PORT" --http-listen "127.0.0.1:$(free_port)" 2>"$dir/log" &
        ;;
    esac
    BROKER_PID=$!
    wait_port "$PORT"
}

stop_broker() {
    [ -n "$BROKER_PID" ] || return 0
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=
}

# -- scenarios: "id|arguments" -----------------------------------------------------------
# Message runs are closed-loop (the tool's default --backlog 1000: publishers wait while 1000
# messages are not yet delivered), which measures what a broker sustains; "fanin-q1-open" is the
# same fan-in open-loop (--backlog 0), which measures how a broker copes with more than it can
# deliver. The "-w100" runs are what most device libraries do by default: MQTT 3.1.1 (whatever
# PROTOCOL says), QoS 1, 100 publishes in flight per publisher, beyond every broker's own window.
SCENARIOS=(
    "idle|idle -n $IDLE_CONNECTIONS --warmup 2 --duration 2"
    "fanin-q1|fan-in -n 20 --qos 1 --payload 100"
    "fanin-q1-open|fan-in -n 20 --qos 1 --payload 100 --backlog 0"
    "fanout-q1|fan-out -n 100 --qos 1 --payload 100"
    "fanin-q0|fan-in -n 20 --qos 0 --payload 100"
    "p2p-10k|p2p -n 10 --qos 1 --payload 100 --rate 10000"
    "fanin-q1-w100|fan-in -n 20 --qos 1 --payload 100 --inflight 100 --protocol 3"
    "fanout-q1-w100|fan-out -n 100 --qos 1 --payload 100 --inflight 100 --protocol 3"
)
PERSISTENT="fanin-q1-persistent|fan-in -n 20 --qos 1 --payload 100 --persistent --session-expiry 300"

run_one() { # broker round "id|arguments"
    local broker=$1 round=$2 id=${3%%|*} args=${3#*|}
    if [ -n "$ONLY" ] && [[ " $ONLY " != *" $id "* ]]; then return 0; fi
    local file="$OUT/raw/$broker-$id-r$round.json" timing= protocol=
    say "round $round  $broker  $id"
    # A scenario may set its own phases (idle does) and protocol; the others get WARMUP,
    # DURATION and PROTOCOL.
    [[ " $args " == *" --duration "* ]] || timing="--warmup $WARMUP --duration $DURATION"
    [[ " $args " == *" --protocol "* ]] || protocol="--protocol $PROTOCOL"
    # shellcheck disable=SC2086 # the arguments are split on purpose
    if ! timeout 180 "$SWITCHYARD" bench $args $timing $protocol --port "$PORT" \
        --broker-pid "$BROKER_PID" --label "$broker" --json \
        >"$file.tmp" 2>"$OUT/raw/$broker-$id-r$round.err"; then
        say "  failed: $(grep -m1 -i error "$OUT/raw/$broker-$id-r$round.err" || tail -1 "$OUT/raw/$broker-$id-r$round.err")"
        rm -f "$file.tmp"
        return 0
    fi
    mv "$file.tmp" "$file"
}

started=$SECONDS
for round in $(seq "$ROUNDS"); do
    for broker in $BROKERS; do
        start_broker "$broker" clean
        for scenario in "${SCENARIOS[@]}"; do
            run_one "$broker" "$round" "$scenario"
        done
        # QoS 1 into persistent sessions: Mosquitto restarts with persistence on; switchyard
        # stores every session anyway; rumqttd has no persistence (measured as is).
        if [ "$broker" = mosquitto ] && { [ -z "$ONLY" ] || [[ " $ONLY " == *" ${PERSISTENT%%|*} "* ]]; }; then
            stop_broker
            start_broker "$broker" persistent
        fi
        run_one "$broker" "$round" "$PERSISTENT"
        stop_broker
    done
done
say "runs done in $((SECONDS - started)) s"

# -- summary ------------------------------------------------------------------------------
{
    echo "nproc=$(nproc)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory=$(free -h | awk '/^Mem:/ {print $2}')"
    echo "kernel=$(uname -r)"
    echo "mosquitto=$("$MOSQUITTO" -h 2>/dev/null | head -1)"
    echo "rumqttd=$("$RUMQTTD" --version 2>/dev/null)"
    echo "switchyard=$BUILT"
    echo "protocol=$PROTOCOL rounds=$ROUNDS duration=${DURATION}s warmup=${WARMUP}s"
} >"$OUT/machine.txt"

python3 - "$OUT" "$BROKERS" <<'EOF'
import json, pathlib, statistics, sys

out = pathlib.Path(sys.argv[1])
brokers = sys.argv[2].split()
runs = {}
for f in sorted((out / "raw").glob("*.json")):
    r = json.loads(f.read_text())
    stem = f.stem.rsplit("-r", 1)[0]
    broker, scenario = r["label"], stem[len(r["label"]) + 1:]
    runs.setdefault((scenario, broker), []).append(r)

def flow(key):
    return lambda r: r["flow"][key]

def latency(p):
    return lambda r: (r["flow"].get("latency") or {}).get(p)

# (row label, scenario id, value of one report, unit, better)
rows = [
    ("QoS 1 fan-in 20->1, 100 B", "fanin-q1", flow("delivered_per_s"), "msg/s", "higher"),
    ("QoS 1 fan-in 20->1, open loop (overload)", "fanin-q1-open", flow("delivered_per_s"), "msg/s", "higher"),
    ("QoS 1 fan-out 1->100, 100 B", "fanout-q1", flow("delivered_per_s"), "msg/s", "higher"),
    ("QoS 1 fan-in 20->1, 3.1.1, 100 in flight", "fanin-q1-w100", flow("delivered_per_s"), "msg/s", "higher"),
    ("QoS 1 fan-out 1->100, 3.1.1, 100 in flight", "fanout-q1-w100", flow("delivered_per_s"), "msg/s", "higher"),
    ("QoS 0 fan-in 20->1, 100 B", "fanin-q0", flow("delivered_per_s"), "msg/s", "higher"),
    ("p2p QoS 1 at 10k msg/s: p50", "p2p-10k", latency("p50_us"), "us", "lower"),
    ("p2p QoS 1 at 10k msg/s: p99", "p2p-10k", latency("p99_us"), "us", "lower"),
    ("idle connections: RSS per connection", "idle", lambda r: r["idle"].get("broker_bytes_per_connection"), "bytes", "lower"),
    ("QoS 1 fan-in 20->1, persistent sessions", "fanin-q1-persistent", flow("delivered_per_s"), "msg/s", "higher"),
    ("QoS 1 fan-in, broker CPU", "fanin-q1", lambda r: (r.get("broker") or {}).get("cpu_percent"), "% core", "-"),
    ("QoS 1 fan-out, broker CPU", "fanout-q1", lambda r: (r.get("broker") or {}).get("cpu_percent"), "% core", "-"),
]

def median(scenario, broker, value):
    vals = [v for v in (value(r) for r in runs.get((scenario, broker), [])) if v is not None]
    return (statistics.median(vals), vals) if vals else (None, vals)

def fmt(v):
    return "n/a" if v is None else f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}"

summary = {"rows": [], "persistent_over_clean": {}, "problems": []}
head = "| measure | unit | " + " | ".join(brokers) + " | switchyard / mosquitto | switchyard / rumqttd |"
lines = [head, "|" + "---|" * (len(brokers) + 4)]
for label, scenario, value, unit, better in rows:
    med = {b: median(scenario, b, value) for b in brokers}
    def ratio(other):
        s, o = med.get("switchyard", (None,))[0], med.get(other, (None,))[0]
        return s / o if s is not None and o else None
    r_m, r_r = ratio("mosquitto"), ratio("rumqttd")
    cells = [fmt(med[b][0]) for b in brokers]
    rs = ["n/a" if x is None else f"{x:.2f}" for x in (r_m, r_r)]
    direction = f"{unit}, {better} is better" if better != "-" else f"{unit}, context"
    lines.append(f"| {label} | {direction} | " + " | ".join(cells) + f" | {rs[0]} | {rs[1]} |")
    summary["rows"].append({"measure": label, "scenario": scenario, "unit": unit, "better": better,
                            "median": {b: med[b][0] for b in brokers}, "samples": {b: med[b][1] for b in brokers},
                            "switchyard_over_mosquitto": r_m, "switchyard_over_rumqttd": r_r})
lines.append("")
lines.append("Persistent-session rate over clean-session rate (QoS 1 fan-in), per broker:")
for b in brokers:
    p = median("fanin-q1-persistent", b, flow("delivered_per_s"))[0]
    c = median("fanin-q1", b, flow("delivered_per_s"))[0]
    ratio = p / c if p is not None and c else None
    summary["persistent_over_clean"][b] = ratio
    lines.append(f"- {b}: {'n/a' if ratio is None else f'{ratio:.2f}'}")
lines.append("")
lines.append("Losses and errors (all rounds):")
for (scenario, broker), rs in sorted(runs.items()):
    lost = sum((r.get("flow") or {}).get("lost", 0) for r in rs)
    errors = sorted({e for r in rs for e in r.get("errors", [])})
    if lost or errors:
        text = f"- {broker} {scenario}: lost {lost}" + (f"; errors: {'; '.join(errors[:3])}" if errors else "")
        lines.append(text)
        summary["problems"].append(text)
missing = [f"{b} {s}" for _, s, *_ in rows for b in brokers if (s, b) not in runs]
for m in sorted(set(missing)):
    lines.append(f"- {m}: no successful run")
table = "\n".join(lines)
(out / "summary.md").write_text(table + "\n")
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(table)
EOF
echo
cat "$OUT/machine.txt"
say "results in $OUT"
