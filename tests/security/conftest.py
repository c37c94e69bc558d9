"""A throw-away lab PKI, users and passwords, and a Mosquitto running the deployed secure config.

The PKI is made with ``deploy/mosquitto/isopress-pki.sh`` (the script docs/security.md tells
a lab to use); the broker runs ``deploy/mosquitto/isopress.conf`` with its TLS listener,
password file and ``deploy/mosquitto/isopress.acl`` exactly as deployed, on a loopback port.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from security_helpers import Lab, make_lab

from isopress.broker import BrokerError, Mosquitto, mosquitto_binary


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """The lab CA, a rogue CA, a certificate and a password for every user of the deployed ACL."""
    try:
        mosquitto_binary()
    except BrokerError as exc:
        pytest.fail(str(exc), pytrace=False)
    return make_lab(tmp_path_factory.mktemp("lab-pki"))


@pytest.fixture
def secure_broker(lab: Lab, tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh Mosquitto (no retained messages, no sessions) with the deployed security."""
    broker = Mosquitto(tmp_path / "secure-broker", secure=lab.secure_files())
    broker.start()
    yield broker
    broker.stop()
