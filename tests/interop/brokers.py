"""Start and stop the broker under test: switchyard, or mosquitto as a reference.

Each broker gets free loopback ports (plain MQTT, MQTT over TLS, HTTP with MQTT over
WebSocket at /mqtt), a data directory and a log file in its own temporary directory. Also the
waiting every test shares: `poll` for a condition, `running` for a process started and stopped.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

HOST = "127.0.0.1"
MAX_PACKET_SIZE = 262144
DENIED_SUBSCRIBE = "test/nosubscribe"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
POLL_TIMEOUT = 60.0  # generous: two shared cores, a release broker restarting on its data


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_certs(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost.

    Returns (ca.pem, server.pem, server.key)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl CLI is needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
    )

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)

    ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    run("genpkey", *ec, "-out", str(ca_key))
    run(
        "req",
        "-x509",
        "-new",
        "-key",
        str(ca_key),
        "-sha256",
        "-days",
        "2",
        "-subj",
        "/CN=Switchyard interop test CA",
        "-out",
        str(ca),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    run("genpkey", *ec, "-out", str(key))
    run("req", "-new", "-key", str(key), "-subj", "/CN=localhost", "-out", str(csr))
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-sha256",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    return ca, cert, key


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the test process dies, so a killed
    test run leaves no broker behind (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def poll(what: str, check, timeout: float = POLL_TIMEOUT):
    """`check()` until it returns something true, which is returned; fails the test after
    `timeout` seconds, with the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s (last: {value!r})")
        time.sleep(0.2)


@contextmanager
def running(broker):
    """`broker` started, and stopped on the way out."""
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def wait_for_port(port: int, deadline: float, alive) -> None:
    while True:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            if not alive():
                raise RuntimeError("broker exited during start-up") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"broker did not listen on {HOST}:{port} in time") from None
            time.sleep(0.02)


class Broker:
    """A broker process in `workdir`; `restart()` keeps its data directory and ports."""

    kind = "?"

    def __init__(self, workdir: Path, certs: tuple[Path, Path, Path], deny: bool = True):
        self.deny = deny  # the anonymous_deny rule for DENIED_SUBSCRIBE
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ca_file, self.cert_file, self.key_file = certs
        # https_port: HTTP over TLS, which switchyard serves whenever [tls] is set.
        self.mqtt_port, self.tls_port, self.http_port, self.https_port = free_ports(4)
        self.log_file = workdir / "broker.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def port(self, transport: str) -> int:
        return {"tcp": self.mqtt_port, "tls": self.tls_port, "ws": self.http_port}[transport]

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict:
        return dict(os.environ)

    def start(self) -> None:
        assert self.proc is None, "already running"
        self.starts += 1
        log = open(self.log_file, "ab")
        log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env(),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        try:
            for port in (self.mqtt_port, self.tls_port, self.http_port):
                wait_for_port(port, deadline, self.alive)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{self.kind}: {e}\n{self.log_tail()}") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; returns the exit status."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait(STOP_TIMEOUT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def crash(self) -> None:
        """SIGKILL: no shutdown, no final flush."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            proc.kill()
            proc.wait(STOP_TIMEOUT)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no broker log)"
        return "\n".join(text[-lines:])


class Switchyard(Broker):
    """`switchyard serve` with anonymous access, TLS and WebSocket enabled (SPEC §7)."""

    kind = "switchyard"

    def __init__(self, workdir: Path, certs, binary: str, deny: bool = True):
        super().__init__(workdir, certs, deny)
        self.binary = binary
        self.config = workdir / "switchyard.toml"
        q = json.dumps  # a JSON string is a valid TOML basic string
        lines = [
            "[server]",
            f"data_dir = {q(str(self.data_dir))}",
            "[mqtt]",
            f"listen = {q(f'{HOST}:{self.mqtt_port}')}",
            f"tls_listen = {q(f'{HOST}:{self.tls_port}')}",
            "allow_anonymous = true",
            f"max_packet_size = {MAX_PACKET_SIZE}",
        ]
        if deny:
            lines += ["[[mqtt.anonymous_deny]]", f"subscribe = {q(DENIED_SUBSCRIBE)}"]
        lines += [
            "[tls]",
            f"cert = {q(str(self.cert_file))}",
            f"key = {q(str(self.key_file))}",
            "[http]",
            f"listen = {q(f'{HOST}:{self.http_port}')}",
            f"tls_listen = {q(f'{HOST}:{self.https_port}')}",
        ]
        self.config.write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [
            self.binary, "serve",
            "--config", str(self.config),
            "--data-dir", str(self.data_dir),
            "--mqtt-listen", f"{HOST}:{self.mqtt_port}",
            "--http-listen", f"{HOST}:{self.http_port}",
        ]  # fmt: skip

    def env(self) -> dict:
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("NO_COLOR", "1")
        return env


class Mosquitto(Broker):
    """Eclipse Mosquitto configured like the switchyard above, as a reference broker."""

    kind = "mosquitto"

    def __init__(self, workdir: Path, certs, deny: bool = True):
        super().__init__(workdir, certs, deny)
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        # The dynamic-security plugin can refuse a subscription (an acl_file only
        # filters deliveries); anonymous clients get the anonymous group's role.
        dynsec = workdir / "dynamic-security.json"
        dynsec.write_text(
            json.dumps(
                {
                    "defaultACLAccess": {
                        "publishClientSend": True,
                        "publishClientReceive": True,
                        "subscribe": True,
                        "unsubscribe": True,
                    },
                    "clients": [],
                    "groups": [{"groupname": "anonymous", "roles": [{"rolename": "anonymous"}]}],
                    "roles": [
                        {
                            "rolename": "anonymous",
                            "acls": [
                                {
                                    "acltype": "subscribePattern",
                                    "topic": DENIED_SUBSCRIBE,
                                    "allow": False,
                                },
                            ]
                            if deny
                            else [],
                        }
                    ],
                    "anonymousGroup": "anonymous",
                }
            )
        )
        plugins = glob.glob("/usr/lib/*/mosquitto_dynamic_security.so") + glob.glob(
            "/usr/lib/mosquitto_dynamic_security.so"
        )
        if not plugins:
            raise RuntimeError("mosquitto_dynamic_security.so not found")
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            "user root\n"
            "per_listener_settings false\n"
            "allow_anonymous true\n"
            f"plugin {plugins[0]}\n"
            f"plugin_opt_config_file {dynsec}\n"
            "persistence true\n"
            f"persistence_location {self.data_dir}/\n"
            f"max_packet_size {MAX_PACKET_SIZE}\n"
            "log_dest stdout\n"
            "log_type all\n"
            f"listener {self.mqtt_port} {HOST}\n"
            f"listener {self.tls_port} {HOST}\n"
            f"cafile {self.ca_file}\n"
            f"certfile {self.cert_file}\n"
            f"keyfile {self.key_file}\n"
            f"listener {self.http_port} {HOST}\n"
            "protocol websockets\n"
        )

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.config)]
