"""Who gets in: the deployed listener takes only lab certificates plus a right password.

Every refusal is paired with the same attempt done right, so each test fails if the
broker let the wrong one in or if the right one could not connect for another reason.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest
from security_helpers import Lab, agent_config, connect_error, mqtt_client, running_agent

from isopress.agent.mqtt import MqttLink
from isopress.agent.spool import Spool
from isopress.broker import Mosquitto

pytestmark = pytest.mark.mqtt


def _errors(*clients: Callable[[], aiomqtt.Client]) -> list[str | None]:
    """Connect with each client in turn (made inside the loop, as aiomqtt needs)."""

    async def attempt() -> list[str | None]:
        return [await connect_error(make()) for make in clients]

    return asyncio.run(attempt())


def test_the_deployed_config_runs_with_its_tls_listener_and_acl(secure_broker: Mosquitto) -> None:
    text = secure_broker.config_path.read_text()
    listener = text.index(f"listener {secure_broker.port} 127.0.0.1")
    assert "allow_anonymous false" in text and "allow_anonymous true" not in text
    assert "require_certificate true" in text[listener:]  # a listener option: after its listener line
    assert str(secure_broker.secure.acl_file if secure_broker.secure else "?").endswith(
        "deploy/mosquitto/isopress.acl"
    )


def test_an_anonymous_client_is_refused(secure_broker: Mosquitto, lab: Lab) -> None:
    anonymous, alice = _errors(
        lambda: mqtt_client(secure_broker, lab, None, cert_of="alice"),  # a lab certificate, but no login
        lambda: mqtt_client(secure_broker, lab, "alice"),
    )
    assert alice is None
    assert anonymous is not None and "Not authorized" in anonymous


def test_a_wrong_password_or_an_unknown_user_is_refused(secure_broker: Mosquitto, lab: Lab) -> None:
    wrong, bob_as_alice, unknown, empty, right = _errors(
        lambda: mqtt_client(secure_broker, lab, "alice", password="not-the-password"),
        lambda: mqtt_client(secure_broker, lab, "alice", password=lab.passwords["bob"]),
        lambda: mqtt_client(secure_broker, lab, "mallory", cert_of="alice", password=lab.passwords["alice"]),
        lambda: mqtt_client(secure_broker, lab, "alice", password=""),
        lambda: mqtt_client(secure_broker, lab, "alice"),
    )
    assert right is None
    for error in (wrong, bob_as_alice, unknown, empty):
        assert error is not None and "Not authorized" in error, error


def test_plain_mqtt_to_the_tls_port_gets_nowhere(secure_broker: Mosquitto) -> None:
    with socket.create_connection((secure_broker.host, secure_broker.port), timeout=5) as sock:
        # An MQTT 3.1.1 CONNECT, clean session, keepalive 60, client id "x", in the clear.
        sock.sendall(bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 1]) + b"x")
        try:
            answer = sock.recv(16)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert not answer.startswith(b"\x20"), "the TLS listener answered a clear-text CONNECT with a CONNACK"


def test_a_client_certificate_from_another_ca_is_refused(secure_broker: Mosquitto, lab: Lab) -> None:
    # Mutual TLS (require_certificate true): the right user name and password are not
    # enough without a certificate signed by the lab's CA.
    rogue, none, right = _errors(
        # TLS 1.3: the broker's refusal comes after the client's side of the handshake, so
        # the client only sees the connection go nowhere; the broker's log says why.
        lambda: mqtt_client(secure_broker, lab, "alice", rogue_cert=True, timeout_s=2),
        lambda: mqtt_client(secure_broker, lab, "alice", cert_of=None, timeout_s=2),
        lambda: mqtt_client(secure_broker, lab, "alice"),
    )
    assert right is None
    assert rogue is not None and none is not None
    log = secure_broker.log_text()
    assert "certificate verify failed" in log, log[-2000:]  # refused for the certificate, not by chance
    assert "peer did not return a certificate" in log, log[-2000:]


def test_the_client_does_not_trust_a_server_certificate_from_another_ca(
    secure_broker: Mosquitto, lab: Lab, tmp_path: Path
) -> None:
    # A client that trusts some other CA does not talk to the lab broker...
    (distrust,) = _errors(lambda: mqtt_client(secure_broker, lab, "alice", trust_rogue=True))
    assert distrust is not None and "CERTIFICATE_VERIFY_FAILED" in distrust, distrust
    # ...and an impostor broker with a certificate from another CA gets nothing from the
    # agent: it never connects, so it never sends its password there.
    impostor = Mosquitto(tmp_path / "impostor", secure=lab.secure_files(rogue_server=True))
    impostor.start()
    try:
        config = agent_config(impostor, lab, tmp_path / "agent", "press-01")

        async def try_link() -> tuple[bool, str]:
            with Spool(config.spool.path) as spool:
                async with MqttLink(config, spool) as link:
                    try:
                        await asyncio.wait_for(link.connected.wait(), 2.0)
                    except TimeoutError:
                        return False, link.stats.last_error
                    return True, ""

        connected, error = asyncio.run(try_link())
        assert not connected and "CERTIFICATE_VERIFY_FAILED" in error, error
        assert "agent-press-01" not in impostor.log_text()  # no login ever reached it
    finally:
        impostor.stop()
    # The same agent config pointed at the real broker connects (over mutual TLS).
    good = agent_config(secure_broker, lab, tmp_path / "agent-good", "press-01")

    async def real() -> bool:
        async with running_agent(good) as (agent, _board):
            return agent.link.connected.is_set()

    assert asyncio.run(real())


def test_the_ssl_module_agrees_the_lab_certificates_are_valid(lab: Lab) -> None:
    # Guard against a test PKI that only "works" because verification is off somewhere.
    context = ssl.create_default_context(cafile=str(lab.ca))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
