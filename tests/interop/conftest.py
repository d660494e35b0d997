"""Fixtures for the end-to-end interoperability suite.

`--broker switchyard` (default, or env BROKER) runs `$SWITCHYARD_BIN serve`;
`--broker mosquitto` runs Eclipse Mosquitto with an equivalent configuration, which
is how the tests themselves are validated.

Fixtures:
- `broker`: one broker shared by the whole session (tests isolate themselves by topic
  prefix and client id); a test that makes it exit fails, and the next test gets a new one.
- `fresh_broker`: a broker of the test's own, for restarts and root-level wildcards.
- `make_broker`: a factory of brokers, all stopped at the end of the session.
- `topic`: a unique topic prefix for the test.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from brokers import Mosquitto, Switchyard, make_certs
from hubkit import basic
from mqttc import V5, Client

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKERS = ("switchyard", "mosquitto")


def pytest_addoption(parser):
    parser.addoption(
        "--broker",
        choices=BROKERS,
        default=os.environ.get("BROKER", "switchyard"),
        help="broker under test (default: env BROKER, else switchyard)",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "not_mosquitto(reason): skip when validating against mosquitto, saying why"
    )
    config.addinivalue_line("markers", "broker_options(**kw): options for fresh_broker")


def pytest_report_header(config):
    kind = config.getoption("--broker")
    if kind == "switchyard":
        return f"broker: switchyard ({switchyard_bin()})"
    return "broker: mosquitto"


def switchyard_bin() -> str:
    return os.environ.get("SWITCHYARD_BIN") or str(REPO_ROOT / "target/release/switchyard")


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("not_mosquitto")
    if marker and item.config.getoption("--broker") == "mosquitto":
        pytest.skip(f"mosquitto: {marker.args[0]}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)
    if report.failed:
        for name in ("fresh_broker", "broker"):
            b = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if b is not None:
                report.sections.append((f"{b.kind} log (tail)", b.log_tail()))
                break


@pytest.fixture(scope="session")
def broker_kind(pytestconfig) -> str:
    return pytestconfig.getoption("--broker")


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def make_broker(broker_kind, certs, tmp_path_factory):
    """A factory of started brokers; all are stopped at the end of the session."""
    started = []
    if broker_kind == "switchyard" and not os.access(switchyard_bin(), os.X_OK):
        pytest.exit(
            f"switchyard binary not found at {switchyard_bin()}: build it "
            "(cargo build --release -p switchyard-server) or set SWITCHYARD_BIN",
            returncode=4,
        )

    def make(deny: bool = True):
        workdir = tmp_path_factory.mktemp(broker_kind)
        if broker_kind == "switchyard":
            b = Switchyard(workdir, certs, switchyard_bin(), deny=deny)
        else:
            b = Mosquitto(workdir, certs, deny=deny)
        started.append(b)
        b.start()
        return b

    yield make
    for b in started:
        b.stop()


@pytest.fixture(scope="session")
def _shared(make_broker):
    return {"broker": None}


def serves(b) -> bool:
    try:
        Client(b, V5, timeout=3).disconnect()
        return True
    except Exception:
        return False


@pytest.fixture
def broker(request, _shared, make_broker):
    b = _shared["broker"]
    if b is None or not b.alive():
        b = _shared["broker"] = make_broker()
    yield b
    if not b.alive():
        pytest.fail(f"{b.kind} exited during this test:\n{b.log_tail()}")
    call = getattr(request.node, "report_call", None)
    if call is not None and call.failed and not serves(b):
        # Don't let one broken broker fail every later test: start a new one.
        print(f"{b.kind} no longer accepts connections after this test; restarting it")
        b.stop()
        _shared["broker"] = None


@pytest.fixture
def fresh_broker(request, make_broker):
    """A broker of the test's own; `@pytest.mark.broker_options(deny=False)` drops the
    anonymous_deny rule."""
    marker = request.node.get_closest_marker("broker_options")
    b = make_broker(**(marker.kwargs if marker else {}))
    yield b
    died = b.proc is not None and not b.alive()
    b.stop()
    if died:
        pytest.fail(f"{b.kind} exited during this test:\n{b.log_tail()}")


@pytest.fixture
def topic() -> str:
    """A topic prefix no other test uses."""
    return f"it/{uuid.uuid4().hex[:10]}"


# For modules that start a tenant broker of their own as a module-scoped `hub` fixture.
@pytest.fixture(scope="module")
def tenant(hub) -> dict:
    """The first tenant of the module's `hub`, as its initial credentials give it."""
    return hub.credentials()["tenant"]


@pytest.fixture(scope="module")
def app(tenant) -> str:
    """`Authorization` of the first tenant's application key."""
    return basic(tenant["api_key"], tenant["api_secret"])
