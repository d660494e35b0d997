#!/usr/bin/env bash
# Runs every Switchyard test on a Debian machine: installs what the tests need (only
# what is missing), then formatting, lints, the Rust tests, the release build, the
# end-to-end interoperability suite (validated against Mosquitto, then run against
# switchyard) and a short fuzz run. Usage: bash scripts/test.sh
#
# Environment: FUZZ_SECONDS (default 30) bounds the fuzz run of each target.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=$ROOT/.venv
REQUIREMENTS=$ROOT/tests/interop/requirements.txt
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
SUDO=
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s  (t=%ds)\n' "$*" "$SECONDS"; }
# On any exit: stop the services this script started, then say how it ended.
cleanup() {
    local status=$?
    if [ -n "${NATS_DIR:-}" ]; then
        bash "$ROOT/scripts/nats.sh" stop "$NATS_DIR" || true
        rm -rf "$NATS_DIR"
    fi
    if [ -n "${PG_DIR:-}" ]; then
        bash "$ROOT/scripts/postgres.sh" stop "$PG_DIR" || true
        rm -rf "$PG_DIR"
    fi
    [ $status -eq 0 ] || printf '\n==> FAILED (exit %d) after %ds\n' $status $SECONDS
}
trap cleanup EXIT

# -- 1. system packages -------------------------------------------------------------
step "system packages: mosquitto, mosquitto-clients, openssl"
installed() { dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^ii'; }
apt_install() {
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "$@"
}
missing=()
for pkg in mosquitto mosquitto-clients openssl; do
    installed "$pkg" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt_install "${missing[@]}"
    # The tests start their own brokers; don't leave Debian's on port 1883.
    if [[ " ${missing[*]} " == *" mosquitto "* ]] && command -v systemctl >/dev/null \
        && systemctl is-active --quiet mosquitto 2>/dev/null; then
        $SUDO systemctl disable --now mosquitto || true
    fi
else
    echo "all present"
fi
# Headless Chromium drives the browser test (tests/interop/test_browser.py).
if ! installed chromium; then
    echo "installing: chromium"
    apt_install chromium >/dev/null
fi

# -- 2. Python environment for the interoperability suite ---------------------------
step "python venv .venv (tests/interop/requirements.txt)"
want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
have=$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)
if [ "$want" != "$have" ] || ! "$VENV/bin/python" -c 'import paho.mqtt, pytest, pytest_timeout' 2>/dev/null; then
    if [ ! -x "$VENV/bin/python" ]; then
        rm -rf "$VENV"
        if ! python3 -m venv "$VENV" 2>/dev/null; then
            # Debian's python3 needs python3-venv for ensurepip.
            rm -rf "$VENV"
            installed python3-venv || apt_install python3-venv
            /usr/bin/python3 -m venv "$VENV"
        fi
    fi
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQUIREMENTS"
    echo "$want" > "$VENV/.requirements.sha256"
else
    echo "up to date"
fi
"$VENV/bin/python" -c 'import sys, paho.mqtt, pytest; print("python", sys.version.split()[0], "paho-mqtt", paho.mqtt.__version__, "pytest", pytest.__version__)'

# -- 3. interoperability suite against Mosquitto: proves the tests themselves ------
step "interop suite against mosquitto (validates the tests)"
"$VENV/bin/python" -m pytest tests/interop --broker mosquitto -q

# -- 4. Rust: format, lints, tests ---------------------------------------------------
step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
if [ -f fuzz/Cargo.toml ]; then
    # The fuzz targets live in their own workspace: lint them here so an API change that
    # breaks one fails in seconds, not after the whole suite.
    step "cargo clippy fuzz targets -D warnings"
    cargo clippy --manifest-path fuzz/Cargo.toml --bins --locked -- -D warnings
fi

# The JetStream sink's tests need a nats-server (SWITCHYARD_TEST_NATS_URL); the interop suite's
# JetStream test starts its own through the same script.
step "nats-server with JetStream (scripts/nats.sh)"
NATS_DIR=$(mktemp -d)
eval "$(bash scripts/nats.sh start "$NATS_DIR")"

step "PostgreSQL for the storage-postgres tests (scripts/postgres.sh)"
PG_DIR=$(mktemp -d)
PG_ENV=$(bash scripts/postgres.sh start "$PG_DIR")
eval "$PG_ENV"
export SWITCHYARD_TEST_PG_URL SWITCHYARD_TEST_PG_CA

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace"
    cargo nextest run --workspace --locked --no-tests=warn
    step "cargo test --doc --workspace"
    cargo test --doc --workspace --locked
else
    step "cargo test --workspace"
    cargo test --workspace --locked
fi

# -- 5. the broker binary and the interoperability suite against it ----------------
step "cargo build --release -p switchyard-server"
cargo build --release -p switchyard-server --locked
SWITCHYARD_BIN=$ROOT/target/release/switchyard
test -x "$SWITCHYARD_BIN"

step "interop suite against switchyard ($SWITCHYARD_BIN)"
SWITCHYARD_BIN=$SWITCHYARD_BIN "$VENV/bin/python" -m pytest tests/interop --broker switchyard -q

# -- 6. a short, bounded fuzz run ----------------------------------------------------
if [ -f fuzz/Cargo.toml ]; then
    step "cargo fuzz (${FUZZ_SECONDS}s per target)"
    if ! cargo fuzz --version >/dev/null 2>&1; then
        cargo install cargo-fuzz --locked
    fi
    (
        cd fuzz
        # `-s none` passes no -Z flag to rustc, so this builds on the stable toolchain.
        for target in $(cargo fuzz list); do
            cargo fuzz run -s none "$target" -- -max_total_time="$FUZZ_SECONDS" -timeout=10
        done
    )
fi

step "done: every step passed in ${SECONDS}s"
