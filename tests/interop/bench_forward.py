"""Forwarding throughput to a local webhook: `python bench_forward.py [RECORDS]` (from
tests/interop, with a release binary built).

Stores RECORDS events over HTTP (batches of 1000, 20 resources) while the webhook takes them,
stops the broker, rewinds the sink with `switchyard forward replay --from 0`, starts the broker
again and times, from that start, until the receiver holds every record again: the rate of
draining a backlog from the outbox. The receiver (http.server, threaded) acknowledges without
parsing and counts `"id":` occurrences, so it costs little beside the broker.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from brokers import make_certs
from conftest import switchyard_bin
from hubkit import ForwardingBroker, basic, http
from test_forward import webhook_sink


def start_and_fill(b: ForwardingBroker, records: int, resources: int) -> None:
    """Starts `b` taking up to 1000 messages a request, then stores `records` events over HTTP in
    batches of 1000, spread over `resources` resources."""
    pipeline = "[pipeline]\nmax_messages_per_request = 1000\n"
    b.config.write_text(b.config.read_text().replace("[pipeline]\n", pipeline, 1))
    b.start()
    tenant = b.credentials()["tenant"]
    app = basic(tenant["api_key"], tenant["api_secret"])
    for first in range(0, records, 1000):
        batch = [{"seq": n} for n in range(first, min(first + 1000, records))]
        status, body, _ = http(b, "POST", f"/resources/r{first // 1000 % resources}/events", app, batch)
        assert status == 200, body


def main(records: int) -> None:
    count = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                count[0] += body.count(b'"id":')
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp) / "certs")
        b = ForwardingBroker(Path(tmp) / "b", certs, switchyard_bin(), webhook_sink(server.server_address[1]))
        start_and_fill(b, records, 20)
        while count[0] < records:
            time.sleep(0.05)
        b.stop()
        out = subprocess.run(
            [switchyard_bin(), "forward", "replay", "--sink", "hook", "--from", "0", "--config", str(b.config)],
            capture_output=True, text=True, check=True,
        )
        print(out.stdout.strip())
        with lock:
            count[0] = 0
        start = time.monotonic()
        b.start()
        while count[0] < records:
            time.sleep(0.01)
        elapsed = time.monotonic() - start
        b.stop()
    print(f"{records} records forwarded in {elapsed:.2f} s: {records / elapsed:,.0f} records/s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
