#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server for the PostgreSQL backend's tests
# (crates/storage-postgres). Usage:
#   source <(bash scripts/postgres.sh start DIR)   # prints: export SWITCHYARD_TEST_PG_URL=...
#   bash scripts/postgres.sh stop DIR
# `start` installs the Debian package postgresql-15 when its binaries are missing, creates a
# fresh cluster in DIR (owned by the postgres user; trust authentication on loopback only, the
# unix socket inside DIR, a free TCP port on 127.0.0.1), starts it and waits until it accepts
# connections. The server also speaks TLS with a self-signed certificate for 127.0.0.1, made
# with openssl in DIR, whose path is exported as SWITCHYARD_TEST_PG_CA for the TLS tests.
# Starting a cluster that already runs in DIR prints its exports again; `stop` on a stopped or
# missing cluster does nothing. Progress goes to stderr, the export lines to stdout.
set -euo pipefail

PG_VERSION=15
BIN=/usr/lib/postgresql/$PG_VERSION/bin
PG_USER=postgres

die() { echo "postgres.sh: $*" >&2; exit 1; }
say() { echo "postgres.sh: $*" >&2; }

usage() { die "usage: $0 start DIR | stop DIR"; }

as_pg() {
    if [ "$(id -un)" = "$PG_USER" ]; then
        "$@"
    elif [ "$(id -u)" -eq 0 ]; then
        runuser -u "$PG_USER" -- "$@"
    else
        sudo -u "$PG_USER" -- "$@"
    fi
}

ensure_installed() {
    [ -x "$BIN/initdb" ] && [ -x "$BIN/pg_ctl" ] && command -v openssl >/dev/null && return
    say "installing postgresql-$PG_VERSION and openssl"
    local sudo=
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >&2
    $sudo apt-get install -y -qq --no-install-recommends "postgresql-$PG_VERSION" openssl >&2
    [ -x "$BIN/initdb" ] || die "postgresql-$PG_VERSION installed but $BIN/initdb is missing"
    # Debian starts a cluster of its own; the tests never use it.
    if command -v pg_ctlcluster >/dev/null; then
        $sudo pg_ctlcluster "$PG_VERSION" main stop >/dev/null 2>&1 || true
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

exports() {
    echo "export SWITCHYARD_TEST_PG_URL=postgres://$PG_USER@127.0.0.1:$1/postgres"
    echo "export SWITCHYARD_TEST_PG_CA=$2/server.crt"
}

# A self-signed certificate naming 127.0.0.1, the key readable by the server alone.
certificate() {
    local dir=$1
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
        -addext "subjectAltName=IP:127.0.0.1" -addext "basicConstraints=critical,CA:FALSE" \
        -keyout "$dir/server.key" -out "$dir/server.crt" >"$dir/openssl.log" 2>&1 \
        || { cat "$dir/openssl.log" >&2; die "openssl could not make a certificate in $dir"; }
    chown "$PG_USER" "$dir/server.key" "$dir/server.crt"
    chmod 0600 "$dir/server.key"
    chmod 0644 "$dir/server.crt"
}

start() {
    local dir=$1 data=$1/data port
    ensure_installed
    if [ -f "$data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        port=$(cat "$dir/port")
        say "already running in $dir on port $port"
        exports "$port" "$dir"
        return
    fi
    mkdir -p "$dir"
    rm -rf "$data"
    chown "$PG_USER" "$dir"
    chmod 0700 "$dir"
    as_pg "$BIN/initdb" -D "$data" -U "$PG_USER" --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed in $data"; }
    certificate "$dir"
    port=$(free_port)
    echo "$port" >"$dir/port"
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$dir'"
        echo "max_connections = 200"
        echo "fsync = on"
        echo "ssl = on"
        echo "ssl_cert_file = '$dir/server.crt'"
        echo "ssl_key_file = '$dir/server.key'"
    } >>"$data/postgresql.conf"
    # Trust only the loopback address and the socket inside DIR; nothing else may connect.
    {
        echo "local all all trust"
        echo "host all all 127.0.0.1/32 trust"
    } >"$data/pg_hba.conf"
    as_pg "$BIN/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start >&2 \
        || { cat "$dir/server.log" >&2 || true; die "PostgreSQL did not start (log: $dir/server.log)"; }
    local tries=0
    until as_pg "$BIN/pg_isready" -q -h 127.0.0.1 -p "$port"; do
        tries=$((tries + 1))
        [ $tries -lt 60 ] || die "PostgreSQL on port $port is not ready after 30 s (log: $dir/server.log)"
        sleep 0.5
    done
    say "PostgreSQL $PG_VERSION running in $dir on 127.0.0.1:$port (plain and TLS)"
    exports "$port" "$dir"
}

stop() {
    local data=$1/data
    [ -d "$data" ] || { say "nothing to stop in $1"; return; }
    ensure_installed
    if [ -f "$data/postmaster.pid" ]; then
        as_pg "$BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >&2 || die "PostgreSQL in $1 did not stop"
    else
        say "not running in $1"
    fi
}

[ $# -eq 2 ] || usage
case $1 in
    start) start "$2" ;;
    stop) stop "$2" ;;
    *) usage ;;
esac
