"""The binary as a new user first runs it: `config example` as printed, a start from another
working directory, secret files others can read, and log levels from RUST_LOG."""

import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from brokers import HOST, START_TIMEOUT, STOP_TIMEOUT, free_ports, wait_for_port
from conftest import switchyard_bin


@pytest.fixture(autouse=True)
def _switchyard_only(broker_kind):
    if broker_kind != "switchyard":
        pytest.skip("switchyard's own command line")


class Server:
    """`switchyard serve ARGS` in `cwd` on free loopback ports (flags override the file)."""

    def __init__(self, cwd, *args, env=None):
        self.mqtt, self.http = free_ports(2)
        listen = ["--mqtt-listen", f"{HOST}:{self.mqtt}", "--http-listen", f"{HOST}:{self.http}"]
        self.proc = subprocess.Popen(
            [switchyard_bin(), "serve", *args, *listen],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            text=True,
        )

    def ready(self):
        wait_for_port(self.http, time.monotonic() + START_TIMEOUT, lambda: self.proc.poll() is None)
        with urllib.request.urlopen(f"http://{HOST}:{self.http}/health", timeout=5) as r:
            assert r.status == 200 and json.load(r)["status"] == "ok"

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=STOP_TIMEOUT)
        assert self.proc.returncode == 0, out
        return out


def test_config_example_runs_as_printed(tmp_path):
    example = subprocess.run([switchyard_bin(), "config", "example"], capture_output=True, text=True, check=True)
    (tmp_path / "s.toml").write_text(example.stdout)
    server = Server(tmp_path, "--config", "s.toml")
    server.ready()
    server.stop()
    assert (tmp_path / "data" / "initial-credentials.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "switchyard.key").stat().st_mode & 0o777 == 0o600


def test_started_from_another_directory_the_key_file_stays_beside_the_data(tmp_path):
    data = tmp_path / "srv" / "data"
    for cwd in ("first", "second"):
        (tmp_path / cwd).mkdir()
        server = Server(tmp_path / cwd, "--data-dir", str(data))
        server.ready()
        server.stop()
        assert list((tmp_path / cwd).iterdir()) == [], "nothing is created in the working directory"
    assert (tmp_path / "srv" / "switchyard.key").exists()


@pytest.mark.parametrize("secret", ["switchyard.key", "data/initial-credentials.json"])
def test_a_secret_file_others_can_read_refuses_the_start(tmp_path, secret):
    server = Server(tmp_path)
    server.ready()
    server.stop()
    path = tmp_path / secret
    path.chmod(0o644)
    refused = Server(tmp_path)
    out, _ = refused.proc.communicate(timeout=START_TIMEOUT)
    assert refused.proc.returncode != 0
    assert secret in out and "chmod 600" in out, out
    path.chmod(0o600)
    server = Server(tmp_path)
    server.ready()
    server.stop()


def test_rust_log_sets_the_levels(tmp_path):
    server = Server(tmp_path, env={"RUST_LOG": "warn", "SWITCHYARD_LOG": ""})
    server.ready()
    out = server.stop()
    assert "switchyard ready" not in out and "WARN" in out, out
    server = Server(tmp_path, env={"RUST_LOG": "warn", "SWITCHYARD_LOG": "info"})
    server.ready()
    assert "switchyard ready" in server.stop()
