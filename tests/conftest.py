"""Session-wide fixtures: a real Mosquitto broker started from deploy/'s config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from isopress.broker import BrokerError, Mosquitto, mosquitto_binary


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto for the whole test session, on a free loopback port.

    Built from ``deploy/mosquitto/isopress.conf`` (persistence on, autosave on changes).
    Tests may ``kill()`` and ``start()``/``restart()`` it; it comes back on the same port.
    A missing broker is an error, never a skip.
    """
    try:
        mosquitto_binary()
    except BrokerError as exc:
        pytest.fail(str(exc), pytrace=False)
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def broker(mosquitto: Mosquitto) -> Mosquitto:
    """The session broker, guaranteed running at the start of the test."""
    if not mosquitto.running:
        mosquitto.start()
    return mosquitto


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
