"""Clients of switchyard's data WebSockets (docs/websockets.md) for the interop tests.

`Socket` is one WebSocket (websocket-client) with a deadline on every read; `refused` opens
one that must be refused and returns the HTTP status of the refusal.
"""

from __future__ import annotations

import json
import time

import websocket

from brokers import HOST
from hubkit import http

TIMEOUT = 10.0


def url(broker, path: str, query: str = "") -> str:
    return f"ws://{HOST}:{broker.http_port}{path}" + (f"?{query}" if query else "")


def app_query(tenant: dict) -> str:
    """`apiKey=…&apiSecret=…` of the tenant's application key (as a browser sends it)."""
    return f"apiKey={tenant['api_key']}&apiSecret={tenant['api_secret']}"


class Socket:
    """One data WebSocket, open on construction."""

    def __init__(self, broker, path: str, *, auth: str | None = None, query: str = "", origin: str | None = None):
        header = [f"Authorization: {auth}"] if auth else []
        self.ws = websocket.create_connection(url(broker, path, query), header=header, timeout=TIMEOUT, origin=origin)

    def send(self, message) -> None:
        self.ws.send(message if isinstance(message, str) else json.dumps(message))

    def recv(self, timeout: float = TIMEOUT) -> dict:
        self.ws.settimeout(timeout)
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            raise AssertionError(f"no frame within {timeout}s") from None

    def answer(self, message) -> dict:
        """Sends one frame on a publish socket and returns its answer (ack or error)."""
        self.send(message)
        return self.recv()

    def until(self, match, timeout: float = TIMEOUT) -> dict:
        """The first stream frame `match(frame)` accepts, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(max(0.01, deadline - time.monotonic()))
            if match(frame):
                return frame

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def refused(broker, path: str, *, auth: str | None = None, query: str = "", origin: str | None = None) -> int:
    """The HTTP status with which the upgrade of `path` is refused (`origin`: the page's web
    origin a browser would send; websocket-client's default is the server's own)."""
    header = [f"Authorization: {auth}"] if auth else []
    try:
        ws = websocket.create_connection(url(broker, path, query), header=header, timeout=TIMEOUT, origin=origin)
    except websocket.WebSocketBadStatusException as e:
        return e.status_code
    ws.close()
    raise AssertionError(f"{path}: the upgrade was accepted")


def fresh_key(broker, app: str) -> str:
    """A new API key id of the tenant (`app`: its `Authorization`). Failed attempts count per
    claimed key, so a test that presents wrong secrets claims its own key and never locks the
    shared one out."""
    status, body, _ = http(broker, "POST", "/apikeys", app, {})
    assert status == 201, body
    return body["api_key"]
