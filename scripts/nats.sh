#!/usr/bin/env bash
# A NATS server with JetStream for the tests, on a free port of 127.0.0.1.
#   bash scripts/nats.sh start DIR [PORT]
#                                    installs the Debian package nats-server when missing, starts
#                                    it in the background (store DIR/js, pid DIR/nats.pid, log
#                                    DIR/nats.log), waits until it accepts connections and prints
#                                    `export SWITCHYARD_TEST_NATS_URL=nats://127.0.0.1:PORT`;
#                                    on PORT if given (a restart on the same store), else a free one
#   bash scripts/nats.sh stop DIR    stops the server started in DIR
# Usage from a script: eval "$(bash scripts/nats.sh start "$dir")"
set -euo pipefail

usage() { echo "usage: $0 start DIR [PORT] | stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || [ $# -eq 3 ] || usage
action=$1
dir=$2
port=${3:-}
pidfile=$dir/nats.pid

case $action in
start)
    if ! command -v nats-server >/dev/null; then
        sudo=
        if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then sudo=sudo; fi
        echo "installing: nats-server" >&2
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get update -qq >&2
        $sudo apt-get install -y -qq --no-install-recommends nats-server >&2
    fi
    mkdir -p "$dir/js"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "nats-server already running in $dir (pid $(cat "$pidfile"))" >&2
        exit 1
    fi
    [ -n "$port" ] || port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    nats-server -a 127.0.0.1 -p "$port" -js -sd "$dir/js" >"$dir/nats.log" 2>&1 &
    echo $! > "$pidfile"
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "export SWITCHYARD_TEST_NATS_URL=nats://127.0.0.1:$port"
            exit 0
        fi
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "nats-server did not start; its log:" >&2
    cat "$dir/nats.log" >&2
    exit 1
    ;;
stop)
    if [ -f "$pidfile" ]; then
        pid=$(cat "$pidfile")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$pidfile"
    fi
    ;;
*) usage ;;
esac
