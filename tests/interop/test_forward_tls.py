"""Forwarding to an `https://` webhook (SPEC §6): a receiver served by Python's `ssl` with a
certificate from the suite's throwaway CA, which the broker trusts only through `ca_file`.

Events posted over HTTP arrive at the receiver over TLS, signed (checked here with Python's
hmac). A second sink to the same receiver without `ca_file` never gets a batch through (the
handshake fails, the batch is retried) and its lag grows in `/metrics`, while the trusting
sink delivers.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from brokers import poll
from conftest import switchyard_bin
from hubkit import ForwardingBroker, basic, caught_up, http, metrics, webhook_signed

pytestmark = pytest.mark.not_mosquitto("forwarding is switchyard's")

SECRET = "tls-secret"


class TlsReceiver:
    """An HTTPS webhook receiver keeping each batch whose signature is valid."""

    def __init__(self, cert: str, key: str):
        self.lock = threading.Lock()
        self.records: list[dict] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    if webhook_signed(self.headers, body, SECRET):
                        receiver.records.extend(json.loads(body))
                    else:
                        receiver.bad_signatures += 1
                self.send_response(204)
                self.end_headers()

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(certs):
    _ca, cert, key = certs
    r = TlsReceiver(str(cert), str(key))
    yield r
    r.close()


@pytest.fixture
def hub(certs, tmp_path, receiver):
    ca = certs[0]
    url = f"https://localhost:{receiver.port}/hook"
    sinks = (
        f'[[forward]]\nkind = "webhook"\nname = "trusting"\nurl = "{url}"\nsecret = "{SECRET}"\nca_file = "{ca}"\n'
        f'[[forward]]\nkind = "webhook"\nname = "untrusting"\nurl = "{url}"\nsecret = "{SECRET}"\n'
    )
    b = ForwardingBroker(tmp_path / "forward-tls", certs, switchyard_bin(), sinks)
    b.start()
    yield b
    b.stop()


def lag_records(hub, sink: str) -> float | None:
    for line in metrics(hub).splitlines():
        if line.startswith(f'switchyard_forward_lag_records{{sink="{sink}"}} '):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_an_https_webhook_trusted_through_ca_file(hub, receiver):
    tenant = hub.credentials()["tenant"]
    app = basic(tenant["api_key"], tenant["api_secret"])
    resource = f"tls-{uuid.uuid4().hex[:6]}"
    for first in range(0, 50, 10):
        batch = [{"seq": n} for n in range(first, first + 10)]
        status, body, _ = http(hub, "POST", f"/resources/{resource}/events", app, batch)
        assert status == 200, body

    def arrived():
        with receiver.lock:
            return sorted({r["message"]["seq"] for r in receiver.records if r["resource"] == resource})

    assert poll("every event over TLS", lambda: len(arrived()) == 50 and arrived()) == list(range(50))
    with receiver.lock:
        assert receiver.bad_signatures == 0
    # The sink without ca_file has all 50 still to send: its handshakes fail and are retried.
    poll("the untrusting sink's lag", lambda: (lag_records(hub, "untrusting") or 0) >= 50)
    poll("the trusting sink has no lag", lambda: caught_up(hub, "trusting"))
