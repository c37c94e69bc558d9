"""The real-broker fixture: publish and receive through it, kill and restart it."""

from __future__ import annotations

import asyncio
import socket
import time

import aiomqtt
import pytest

from isopress.broker import Mosquitto

pytestmark = pytest.mark.mqtt


async def _publish_and_receive(broker: Mosquitto, topic: str, payload: bytes) -> bytes:
    async with aiomqtt.Client(broker.host, broker.port, identifier="smoke-sub") as sub:
        await sub.subscribe(topic, qos=1)
        async with aiomqtt.Client(broker.host, broker.port, identifier="smoke-pub") as pub:
            await pub.publish(topic, payload, qos=1)
        async with asyncio.timeout(5):
            async for message in sub.messages:
                assert isinstance(message.payload, bytes)
                return message.payload
    raise AssertionError("no message")


def test_publish_and_receive_through_the_real_broker(broker: Mosquitto) -> None:
    got = asyncio.run(_publish_and_receive(broker, "isopress/smoke/telemetry", b'{"p_mpa": 250.0}'))
    assert got == b'{"p_mpa": 250.0}'


def test_broker_config_comes_from_deploy(broker: Mosquitto) -> None:
    text = broker.config_path.read_text()
    assert "persistence true" in text
    assert "autosave_on_changes true" in text
    assert f"listener {broker.port} 127.0.0.1" in text


async def _retain(broker: Mosquitto, topic: str, payload: bytes) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.publish(topic, payload, qos=1, retain=True)


async def _read_retained(broker: Mosquitto, topic: str) -> bytes:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                return message.payload
    raise AssertionError("no retained message")


def test_killed_broker_restarts_on_the_same_port_with_its_persisted_state(broker: Mosquitto) -> None:
    port = broker.port
    asyncio.run(_retain(broker, "isopress/smoke/status", b"online"))
    # Mosquitto acknowledges first and saves on its next loop pass (~10 ms later): wait for
    # the save, else the SIGKILL races it and the test is flaky.
    db = broker.workdir / "mosquitto.db"
    deadline = time.monotonic() + 5
    while not (db.exists() and b"isopress/smoke/status" in db.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.01)
    pid = broker.pid
    broker.kill()  # SIGKILL: no orderly save; autosave_on_changes already wrote it
    assert not broker.running
    with pytest.raises(OSError), socket.create_connection((broker.host, port), timeout=0.5):
        pass
    broker.start()
    assert broker.port == port and broker.pid != pid
    assert asyncio.run(_read_retained(broker, "isopress/smoke/status")) == b"online"
