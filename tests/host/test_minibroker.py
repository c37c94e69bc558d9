"""The demo's embedded MQTT broker against real clients: aiomqtt (MQTT 5) and the Mosquitto
command-line clients (MQTT 3.1.1 and 5)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from isopress.minibroker import MiniBroker


def _run(body: Callable[[MiniBroker], Awaitable[None]]) -> None:
    async def main() -> None:
        async with MiniBroker() as broker:
            await asyncio.wait_for(body(broker), 20)

    asyncio.run(main())


def _client(broker: MiniBroker, client_id: str = "", **kwargs: object) -> aiomqtt.Client:
    return aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=client_id or None,
        protocol=aiomqtt.ProtocolVersion.V5,
        **kwargs,  # type: ignore[arg-type]
    )


async def _next(client: aiomqtt.Client, timeout_s: float = 5.0) -> aiomqtt.Message:
    async with asyncio.timeout(timeout_s):
        async for message in client.messages:
            return message
    raise AssertionError("no message")


def _props(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def test_qos1_publish_reaches_a_wildcard_subscriber_with_its_properties() -> None:
    async def body(broker: MiniBroker) -> None:
        async with _client(broker) as sub, _client(broker) as pub:
            await sub.subscribe("isopress/+/cmd/#", qos=1)
            props = _props(PacketTypes.PUBLISH)
            props.ResponseTopic = "replies/alice"
            props.CorrelationData = b"\x01\x02"
            props.MessageExpiryInterval = 30
            await pub.publish("isopress/p1/cmd/alice/start", b'{"x":1}', qos=1, properties=props)
            message = await _next(sub)
            assert str(message.topic) == "isopress/p1/cmd/alice/start"
            assert message.payload == b'{"x":1}' and message.qos == 1 and not message.retain
            assert message.properties is not None
            assert message.properties.ResponseTopic == "replies/alice"
            assert message.properties.CorrelationData == b"\x01\x02"
            assert 29 <= message.properties.MessageExpiryInterval <= 30

    _run(body)


def test_retained_messages_reach_later_subscribers_and_an_empty_one_clears_them() -> None:
    async def body(broker: MiniBroker) -> None:
        async with _client(broker) as pub:
            await pub.publish("isopress/p1/status", b"online", qos=1, retain=True)
            await pub.publish("isopress/p2/status", b"online", qos=1, retain=True)
            await pub.publish("isopress/p2/status", b"", qos=1, retain=True)
        async with _client(broker) as sub:
            await sub.subscribe("isopress/+/status", qos=1)
            message = await _next(sub)
            assert (str(message.topic), message.payload, message.retain) == (
                "isopress/p1/status",
                b"online",
                True,
            )
            with pytest.raises(TimeoutError):
                await _next(sub, 0.3)

    _run(body)


def test_the_last_will_is_published_when_a_client_vanishes_not_when_it_disconnects() -> None:
    async def body(broker: MiniBroker) -> None:
        async with _client(broker) as watcher:
            await watcher.subscribe("isopress/p1/status", qos=1)
            will = aiomqtt.Will("isopress/p1/status", b"offline", qos=1, retain=True)
            async with _client(broker, "agent-clean", will=will):
                pass  # a clean DISCONNECT: no will
            with pytest.raises(TimeoutError):
                await _next(watcher, 0.3)
            # A vanishing client: a raw CONNECT with a will, then the socket just closes.
            reader, writer = await asyncio.open_connection(broker.host, broker.port)
            will_topic = b"isopress/p1/status"
            variable = b"\x00\x04MQTT\x04" + bytes([0x04 | 0x08 | 0x20]) + b"\x00\x3c"
            payload = b"\x00\x03raw" + len(will_topic).to_bytes(2, "big") + will_topic + b"\x00\x07offline"
            body_bytes = variable + payload
            writer.write(bytes([0x10, len(body_bytes)]) + body_bytes)
            assert (await reader.readexactly(4))[:2] == b"\x20\x02"
            writer.transport.abort()
            message = await _next(watcher)
            assert message.payload == b"offline" and str(message.topic) == "isopress/p1/status"

    _run(body)


def test_a_persistent_session_gets_what_was_published_while_it_was_away() -> None:
    async def body(broker: MiniBroker) -> None:
        connect = _props(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = 3600
        async with _client(broker, "logger", clean_start=False, properties=connect) as logger:
            await logger.subscribe("isopress/p1/telemetry", qos=1)
        async with _client(broker) as pub:
            for i in range(50):
                await pub.publish("isopress/p1/telemetry", str(i).encode(), qos=1)
        async with _client(broker, "logger", clean_start=False, properties=connect) as logger:
            got = []
            async with asyncio.timeout(5):
                async for message in logger.messages:
                    got.append(int(message.payload))  # type: ignore[arg-type]
                    if len(got) == 50:
                        break
            assert got == list(range(50))

    _run(body)


def test_no_local_and_retain_as_published_subscription_options() -> None:
    async def body(broker: MiniBroker) -> None:
        async with _client(broker) as me, _client(broker) as other:
            await me.subscribe("t/#", options=SubscribeOptions(qos=1, noLocal=True))
            await other.subscribe("t/#", options=SubscribeOptions(qos=1, retainAsPublished=True))
            await me.publish("t/a", b"mine", qos=1, retain=True)
            message = await _next(other)
            assert message.payload == b"mine" and message.retain  # retain as published
            with pytest.raises(TimeoutError):
                await _next(me, 0.3)  # no local

    _run(body)


def test_the_agent_runs_against_it(tmp_path: object) -> None:
    """The real agent (fake board) publishes status and telemetry through the embedded broker."""
    import tempfile
    from pathlib import Path

    from isopress.agent.config import parse_config
    from isopress.agent.fake_board import FakeBoard
    from isopress.agent.service import Agent

    async def body(broker: MiniBroker) -> None:
        folder = Path(tempfile.mkdtemp())
        config = parse_config(
            f"""
[agent]
press_id = "mini"
[serial]
port = "loop://"
[broker]
host = "{broker.host}"
port = {broker.port}
[spool]
path = "{folder / "spool.sqlite3"}"
[runs]
folder = "{folder / "runs"}"
"""
        )
        async with _client(broker) as sub:
            await sub.subscribe("isopress/mini/#", qos=1)
            board = FakeBoard(speed=1.0)
            async with Agent(config, board, board.updates()):
                seen: dict[str, int] = {}
                async with asyncio.timeout(10):
                    async for message in sub.messages:
                        kind = str(message.topic).rsplit("/", 1)[1]
                        seen[kind] = seen.get(kind, 0) + 1
                        if seen.get("status") and seen.get("telemetry", 0) >= 5:
                            break
                board.close()
            assert seen["status"] >= 1 and seen["telemetry"] >= 5

    _run(body)


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_mosquitto_clients_interoperate(version: str) -> None:
    async def body(broker: MiniBroker) -> None:
        sub = await asyncio.create_subprocess_exec(
            "mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-V", version,
            "-t", "demo/#", "-q", "1", "-C", "2", "-v",
            stdout=subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(0.5)
        for text in ("one", "two"):
            pub = await asyncio.create_subprocess_exec(
                "mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", version,
                "-t", "demo/x", "-q", "2", "-m", text,
            )  # fmt: skip
            assert await pub.wait() == 0
        out, _ = await asyncio.wait_for(sub.communicate(), 10)
        assert out.decode().splitlines() == ["demo/x one", "demo/x two"]

    _run(body)


def test_garbage_on_the_socket_closes_only_that_connection() -> None:
    async def body(broker: MiniBroker) -> None:
        async with _client(broker) as good:
            await good.subscribe("a", qos=1)
            reader, writer = await asyncio.open_connection(broker.host, broker.port)
            writer.write(b"\x10\xff\xff\xff\xff\x00garbage")  # a remaining length of 5 bytes
            assert await asyncio.wait_for(reader.read(10), 5) == b""  # closed by the broker
            writer.close()
            await good.publish("a", b"still here", qos=1)
            assert (await _next(good)).payload == b"still here"

    _run(body)
