"""Interoperability with the Mosquitto command-line clients (mosquitto_pub / mosquitto_sub)."""

import queue
import shutil
import subprocess
import threading
import time

import pytest

from mqttc import V5, VERSIONS, Client

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None, reason="mosquitto-clients is not installed"
)
CLI_VERSION = {V5: "mqttv5", "3.1.1": "mqttv311"}


def cli_args(broker, version, transport):
    args = ["-h", "127.0.0.1", "-p", str(broker.port(transport)), "-V", CLI_VERSION[version]]
    if transport == "tls":
        args += ["--cafile", str(broker.ca_file)]
    return args


class Sub:
    """mosquitto_sub in the background, its output read line by line."""

    FMT = ">>%t|%q|%r|%P|%p"

    def __init__(self, args):
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", "mosquitto_sub", "-d", "-F", self.FMT, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, predicate, timeout=5.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"mosquitto_sub said: {self.output}") from None
            self.output.append(line)
            if predicate(line):
                return line

    def finish(self, timeout=10.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("transport", ["tcp", "tls"])
@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_pub_to_paho(broker, topic, version, transport, qos):
    t = f"{topic}/from-cli"
    with Client(broker, version) as sub:
        sub.subscribe(t, 2)
        args = cli_args(broker, version, transport) + ["-t", t, "-m", "from cli", "-q", str(qos)]
        if version == V5:
            args += ["-D", "publish", "user-property", "origin", "cli"]
        done = subprocess.run(["mosquitto_pub", *args], capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        m = sub.get()
        assert (m.topic, m.payload, m.qos, m.retain) == (t, b"from cli", qos, False)
        if version == V5:
            assert m.props.get("UserProperty") == [("origin", "cli")]


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("transport", ["tcp", "tls"])
@pytest.mark.parametrize("version", VERSIONS)
def test_paho_to_mosquitto_sub(broker, topic, version, transport, qos):
    t = f"{topic}/to-cli"
    sub = Sub(
        cli_args(broker, version, transport) + ["-t", t, "-q", str(qos), "-C", "1", "-W", "5"]
    )
    try:
        sub.wait_for(lambda line: "received SUBACK" in line)
        with Client(broker, version) as pub:
            extra = {"UserProperty": [("origin", "paho")]} if version == V5 else {}
            pub.publish(t, b"to cli", qos, **extra)
            line = sub.wait_for(lambda line: line.startswith(">>"))
    finally:
        rc = sub.finish()
    got_topic, got_qos, got_retain, user_props, payload = line[2:].split("|", 4)
    assert (got_topic, got_qos, got_retain, payload) == (t, str(qos), "0", "to cli")
    if version == V5:
        assert user_props == "origin:paho"
    assert rc == 0, sub.output


@pytest.mark.parametrize("version", VERSIONS)
def test_retained_set_and_cleared_by_cli(broker, topic, version):
    t = f"{topic}/retained-cli"
    base = cli_args(broker, version, "tcp") + ["-t", t]
    done = subprocess.run(
        ["mosquitto_pub", *base, "-m", "kept", "-q", "1", "-r"], capture_output=True, timeout=10
    )
    assert done.returncode == 0, done.stderr
    got = subprocess.run(
        ["mosquitto_sub", *base, "-C", "1", "-W", "5", "-F", "%r|%p"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "1|kept"
    done = subprocess.run(["mosquitto_pub", *base, "-n", "-r"], capture_output=True, timeout=10)
    assert done.returncode == 0, done.stderr
    with Client(broker, version) as sub:
        sub.subscribe(t, 1)
        sub.expect_none(0.5)
