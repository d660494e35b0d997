"""A real browser bridged to an MQTT device (issue 10): headless Chromium loads `/demo`, types an
application's key and secret and a resource, and

- sends a command over the publish WebSocket: a paho-mqtt device subscribed to its commands topic
  receives it, and the page's commands stream shows it;
- the paho device publishes an event: the page's events stream shows it.

Chromium is driven over the DevTools protocol (a WebSocket, websocket-client). Without a
`chromium` binary the module is skipped, unless `CI` is set: there scripts/test.sh installs it
and the test must run.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import websocket

from brokers import HOST
from conftest import switchyard_bin
from hubkit import IdentityBroker, device_key
from mqttc import V5, Client
from wsdata import fresh_key

pytestmark = pytest.mark.not_mosquitto("the demo page is switchyard's")

WAIT = 30.0  # upper bound of every wait; each returns as soon as its condition holds


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/test.sh installs Debian's chromium)")
        pytest.skip("chromium is not installed")
    return found


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, binary: str):
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        args = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}", "about:blank",
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port = self._devtools_port()
        pages = json.loads(urllib.request.urlopen(f"http://{HOST}:{port}/json/list", timeout=10).read())
        page = next(p for p in pages if p["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=WAIT, suppress_origin=True)
        self.ids = itertools.count(1)

    def _devtools_port(self) -> int:
        active = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:]
                if os.environ.get("CI"):
                    pytest.fail(f"chromium exited: {err}")
                pytest.skip(f"chromium cannot run here: {err}")
            if active.exists() and active.read_text().strip():
                return int(active.read_text().splitlines()[0])
            time.sleep(0.05)
        raise AssertionError("chromium did not open its DevTools port")

    def call(self, method: str, **params) -> dict:
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == ident:
                assert "error" not in reply, reply
                return reply["result"]

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait(self, expression: str, what: str):
        """Polls `expression` in the page until it is truthy; returns its value."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.05)
        page = self.eval("document.body.innerText")
        raise AssertionError(f"{what}: not within {WAIT}s; the page shows:\n{page}")

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(broker_kind, certs, tmp_path_factory):
    b = IdentityBroker(tmp_path_factory.mktemp("browser"), certs, switchyard_bin())
    b.start()
    yield b
    b.stop()


@pytest.fixture
def browser():
    b = Browser(chromium())
    yield b
    b.close()


def text(element: str) -> str:
    return f"document.getElementById({json.dumps(element)}).textContent"


def test_a_command_from_the_browser_reaches_an_mqtt_device_and_its_events_reach_the_page(hub, tenant, browser):
    resource = f"lamp-{uuid.uuid4().hex[:8]}"
    domain = tenant["domain"]
    key = device_key(tenant["master_key"], resource)
    with Client(hub, V5, username=f"{domain}/{resource}", password=key) as device:
        assert device.subscribe(f"{domain}/resources/{resource}/commands", 1) == [1]

        browser.call("Page.enable")
        browser.call("Page.navigate", url=f"http://{HOST}:{hub.http_port}/demo?resource={resource}")
        browser.wait("document.readyState === 'complete' && !!document.getElementById('connect')", "page loaded")
        assert browser.eval("document.getElementById('resource').value") == resource, "resource from the URL"
        browser.eval(
            f"document.getElementById('apiKey').value = {json.dumps(tenant['api_key'])};"
            f"document.getElementById('apiSecret').value = {json.dumps(tenant['api_secret'])};"
            "document.getElementById('connect').click();"
        )
        for state in ("eventsState", "commandsState", "commandPubState", "eventPubState"):
            browser.wait(f"{text(state)} === 'open'", f"{state} socket open")

        # Browser -> WebSocket -> MQTT device.
        marker = uuid.uuid4().hex
        command = json.dumps({"action": "lights", "on": True, "marker": marker})
        browser.eval(
            f"document.getElementById('command').value = {json.dumps(command)};"
            "document.getElementById('sendCommand').click();"
        )
        m = device.get(timeout=WAIT)
        assert m.topic == f"{domain}/resources/{resource}/commands"
        got = json.loads(m.payload)
        assert got["marker"] == marker and got["action"] == "lights" and got["resource"] == resource, got
        browser.wait(f"{text('answers')}.includes('command 1: 1 message stored')", "the command's ack")
        browser.wait(f"{text('commands')}.includes({json.dumps(marker)})", "the command in the commands stream")

        # MQTT device -> broker -> the page's events stream.
        reading = uuid.uuid4().hex
        assert device.publish(f"{domain}/resources/{resource}/events", json.dumps({"reading": reading}), qos=1) == 0
        browser.wait(f"{text('events')}.includes({json.dumps(reading)})", "the device's event on the page")


def test_the_page_shows_refused_credentials(hub, tenant, app, browser):
    browser.call("Page.navigate", url=f"http://{HOST}:{hub.http_port}/demo?resource=r1")
    browser.wait("document.readyState === 'complete' && !!document.getElementById('connect')", "page loaded")
    browser.eval(
        f"document.getElementById('apiKey').value = {json.dumps(fresh_key(hub, app))};"
        "document.getElementById('apiSecret').value = 'wrong';"
        "document.getElementById('connect').click();"
    )
    browser.wait(f"{text('eventsState')}.startsWith('closed')", "the refused socket shown as closed")
    assert browser.eval(f"{text('eventsState')}") != "open"
