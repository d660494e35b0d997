"""Device certificates (mTLS, SPEC §2.5): third-party clients on MQTTS with a client
certificate and no password.

One switchyard of the module's own with `client_auth = "optional"` and a CA registered for
the first tenant. Certificates are made with the openssl CLI: a device certificate's CN is its
resource id. Clients: mosquitto_pub (`--cert --key`) and paho-mqtt (`tls_set(certfile=,
keyfile=)`); the application that watches is paho with the tenant's API key on plain TCP.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from brokers import Switchyard
from conftest import switchyard_bin
from mqttc import V5, V311, VERSIONS, Client, ConnectRefused

pytestmark = [
    pytest.mark.not_mosquitto("tenant CAs for device certificates are switchyard's"),
    pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients is not installed"),
]
CLI_VERSION = {V311: "mqttv311", V5: "mqttv5"}


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


EC = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    key, pem = d / f"{name}.key", d / f"{name}.pem"
    openssl("genpkey", *EC, "-out", str(key))
    openssl(
        "req", "-x509", "-new", "-key", str(key), "-sha256", "-days", "2",
        "-subj", f"/CN={name}", "-out", str(pem),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return key, pem


def issue(d: Path, ca: tuple[Path, Path], cn: str) -> tuple[Path, Path]:
    """A device certificate with this CN, signed by `ca`: (cert, key)."""
    ca_key, ca_pem = ca
    key, csr, cert, ext = d / f"{cn}.key", d / f"{cn}.csr", d / f"{cn}.pem", d / f"{cn}.ext"
    ext.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = clientAuth\n"
    )
    openssl("genpkey", *EC, "-out", str(key))
    openssl("req", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-out", str(csr))
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    return cert, key


class MtlsBroker(Switchyard):
    """switchyard as in the shared suite, asking MQTTS clients for a certificate and trusting
    `device_ca` for the first tenant's devices."""

    def __init__(self, workdir, certs, binary, device_ca: Path):
        super().__init__(workdir, certs, binary)
        text = self.config.read_text().replace("[tls]\n", '[tls]\nclient_auth = "optional"\n', 1)
        text += f'[[tls.client_ca]]\ndomain = "localhost"\nca = {json.dumps(str(device_ca))}\n'
        self.config.write_text(text)

    def tenant(self) -> dict:
        return json.loads((self.data_dir / "initial-credentials.json").read_text())["tenant"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("device-pki")
    return {"dir": d, "ca": make_ca(d, "devices"), "stranger": make_ca(d, "stranger")}


@pytest.fixture(scope="module")
def mtls(pki, certs, tmp_path_factory):
    b = MtlsBroker(tmp_path_factory.mktemp("mtls"), certs, switchyard_bin(), pki["ca"][1])
    b.start()
    yield b
    b.stop()


def app(b: MtlsBroker, version: str) -> Client:
    t = b.tenant()
    return Client(b, version, username=f"{t['domain']}/apikey/{t['api_key']}", password=t["api_secret"])


def mosquitto_pub(b, version: str, cert: tuple[Path, Path], topic: str, message: str):
    args = [
        "-h", "127.0.0.1", "-p", str(b.tls_port), "-V", CLI_VERSION[version],
        "--cafile", str(b.ca_file), "--cert", str(cert[0]), "--key", str(cert[1]),
        "-t", topic, "-m", message, "-q", "1",
    ]  # fmt: skip
    return subprocess.run(["mosquitto_pub", *args], capture_output=True, text=True, timeout=10)


@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_pub_publishes_with_a_device_certificate_and_no_password(mtls, pki, version):
    rid = f"dev-{uuid.uuid4().hex[:8]}"
    cert = issue(pki["dir"], pki["ca"], rid)
    events = f"localhost/resources/{rid}/events"
    with app(mtls, version) as watcher:
        watcher.subscribe(events, 1)
        done = mosquitto_pub(mtls, version, cert, events, '{"by": "certificate"}')
        assert done.returncode == 0, done.stderr
        m = watcher.get()
        # Delivered through the pipeline: normalized, naming the device.
        assert m.topic == events
        assert json.loads(m.payload)["by"] == "certificate" and json.loads(m.payload)["resource"] == rid


@pytest.mark.parametrize("version", VERSIONS)
def test_paho_connects_as_the_device_its_certificate_names(mtls, pki, version):
    rid = f"dev-{uuid.uuid4().hex[:8]}"
    cert, key = issue(pki["dir"], pki["ca"], rid)
    with Client(mtls, version, transport="tls", certfile=str(cert), keyfile=str(key)) as device:
        assert device.subscribe(f"localhost/resources/{rid}/commands", 1) == [1]
        refused = 0x87 if version == V5 else 0x80
        assert device.subscribe("localhost/resources/other/commands", 1) == [refused]
    # A username naming another device than the certificate is refused.
    with pytest.raises(ConnectRefused):
        Client(mtls, version, transport="tls", certfile=str(cert), keyfile=str(key), username="localhost/other")


def test_a_certificate_from_a_ca_no_tenant_registered_is_refused(mtls, pki):
    rid = f"dev-{uuid.uuid4().hex[:8]}"
    cert = issue(pki["dir"], pki["stranger"], rid)
    done = mosquitto_pub(mtls, V5, cert, f"localhost/resources/{rid}/events", "nope")
    assert done.returncode != 0
