"""The MQTT link against a real Mosquitto: PUBACK before delete, outages, restarts, status."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Literal

import aiomqtt
import pytest
from agent_helpers import Subscriber, eventually, make_config, make_sample, with_subscriber
from paho.mqtt.enums import MQTTErrorCode

from isopress.agent.mqtt import MqttLink
from isopress.agent.payloads import TelemetryBatch, sample_outgoing
from isopress.agent.spool import Spool
from isopress.agent.topics import PressTopics
from isopress.broker import Mosquitto, free_port

pytestmark = pytest.mark.mqtt


class _Frozen:
    """SIGSTOP the broker: it keeps its sockets but answers nothing (no PUBACK)."""

    def __init__(self, broker: Mosquitto) -> None:
        assert broker.pid is not None
        self.pid = broker.pid

    def __enter__(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


def test_aiomqtt_qos1_publish_returns_only_after_the_puback(broker: Mosquitto) -> None:
    # What the spool relies on: aiomqtt 2.5's publish() at QoS 1 waits for on_publish,
    # which paho fires on PUBACK. A frozen broker sends none, so publish() times out;
    # QoS 0 "succeeds" at once, which is why telemetry is never published at QoS 0.
    async def scenario() -> tuple[bool, bool]:
        async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
            with _Frozen(broker):
                await client.publish("isopress/puback/qos0", b"x", qos=0, timeout=1.0)
                qos0_returned = True
                try:
                    await client.publish("isopress/puback/qos1", b"x", qos=1, timeout=1.0)
                    qos1_returned = True
                except aiomqtt.MqttError:
                    qos1_returned = False
            await client.publish("isopress/puback/qos1", b"y", qos=1, timeout=5.0)  # thawed: acknowledged
        return qos0_returned, qos1_returned

    assert asyncio.run(scenario()) == (True, False)


def test_rows_leave_the_spool_only_after_the_broker_acknowledged(broker: Mosquitto, tmp_path: Path) -> None:
    config = make_config(broker, tmp_path)
    topics = PressTopics(config.agent.press_id)

    async def body(sub: Subscriber) -> None:
        with Spool(config.spool.path) as spool:
            async with MqttLink(config, spool) as link:
                await asyncio.wait_for(link.connected.wait(), 5)
                with _Frozen(broker):
                    spool.append([sample_outgoing(topics, make_sample(i)) for i in range(10)])
                    await asyncio.sleep(1.0)
                    assert spool.rows == 10, "rows deleted before the broker acknowledged them"
                await eventually(lambda: spool.rows == 0, 10, "spool drained after the broker thawed")
                await eventually(lambda: len(sub.samples()) == 10, 5, "subscriber got the samples")

    sub = asyncio.run(with_subscriber(broker, topics.telemetry, body))
    assert [s["seq"] for s in sub.samples()] == list(range(10))


def test_broker_sigkilled_mid_stream_loses_no_sample(broker: Mosquitto, tmp_path: Path) -> None:
    config = make_config(broker, tmp_path)
    topics = PressTopics(config.agent.press_id)
    total = 600  # 6 s at 100 Hz

    async def body(sub: Subscriber) -> None:
        with Spool(config.spool.path) as spool:
            async with MqttLink(config, spool) as link:
                await asyncio.wait_for(link.connected.wait(), 5)
                for seq in range(total):
                    spool.append([sample_outgoing(topics, make_sample(seq))])
                    if seq == 150:
                        await asyncio.to_thread(broker.kill)
                    if seq == 300:
                        await asyncio.to_thread(broker.start)
                    await asyncio.sleep(0.01)
                await eventually(lambda: spool.rows == 0, 20, "spool drained after the outage")
                assert link.stats.connects >= 2
            await eventually(
                lambda: {s["seq"] for s in sub.samples()} >= set(range(total)), 20, "every sample"
            )

    sub = asyncio.run(with_subscriber(broker, topics.telemetry, body))
    samples = sub.samples()
    unique = {(s["boot_count"], s["seq"]): s for s in samples}
    assert sorted(seq for _, seq in unique) == list(range(total)), "a sample is missing"
    for s in samples:
        TelemetryBatch.model_validate({"press_id": config.agent.press_id, "samples": [s]})
    # Samples spooled while the broker was down were replayed and say so.
    assert all(unique[(1, seq)]["historical"] for seq in range(200, 290))
    assert not unique[(1, 10)]["historical"]


def test_the_spool_survives_an_agent_restart_and_is_replayed_as_historical(
    broker: Mosquitto, tmp_path: Path
) -> None:
    dead = make_config(broker, tmp_path, port=free_port())  # nothing listens there
    config = make_config(broker, tmp_path, press_id=dead.agent.press_id)
    topics = PressTopics(config.agent.press_id)

    async def first_agent() -> None:
        with Spool(dead.spool.path) as spool:
            async with MqttLink(dead, spool) as link:
                spool.append([sample_outgoing(topics, make_sample(i)) for i in range(50)])
                await asyncio.sleep(0.3)
                assert not link.connected.is_set()
            assert spool.rows == 50

    asyncio.run(first_agent())

    async def body(sub: Subscriber) -> None:
        with Spool(config.spool.path) as spool:
            assert spool.rows == 50
            async with MqttLink(config, spool):
                await eventually(lambda: spool.rows == 0, 10, "replay")
                spool.append([sample_outgoing(topics, make_sample(50))])
                await eventually(lambda: len(sub.samples()) == 51, 5, "51 samples")

    sub = asyncio.run(with_subscriber(broker, topics.telemetry, body))
    samples = sub.samples()
    assert [s["seq"] for s in samples] == list(range(51))
    assert all(s["historical"] for s in samples[:50])
    assert samples[50]["historical"] is False


def test_status_is_retained_online_then_offline_on_a_clean_exit(broker: Mosquitto, tmp_path: Path) -> None:
    config = make_config(broker, tmp_path)
    topics = PressTopics(config.agent.press_id)

    async def body(sub: Subscriber) -> None:
        with Spool(config.spool.path) as spool:
            async with MqttLink(config, spool) as link:
                await asyncio.wait_for(link.connected.wait(), 5)
                link.set_state('{"state":"idle"}')
                await eventually(lambda: sub.on("/state") == [{"state": "idle"}], 5, "state")
                link.set_state('{"state":"idle"}')  # unchanged: not published again
                link.set_state('{"state":"ready"}')
                await eventually(lambda: len(sub.on("/state")) == 2, 5, "second state")
        await eventually(lambda: sub.on("/status")[-1:] == ["offline"], 5, "offline")

    sub = asyncio.run(with_subscriber(broker, f"{topics.base}/#", body))
    assert sub.on("/status") == ["online", "offline"]
    assert sub.on("/state") == [{"state": "idle"}, {"state": "ready"}]

    async def retained() -> list[tuple[str, object, bool, object]]:
        late = Subscriber(broker, f"{topics.base}/#")
        task = asyncio.create_task(late.run())
        await eventually(lambda: len(late.messages) >= 2, 5, "retained messages")
        task.cancel()
        return late.messages

    got = {topic.rsplit("/", 1)[1]: (data, retain) for topic, data, retain, _ in asyncio.run(retained())}
    assert got["status"] == ("offline", True)
    assert got["state"] == ({"state": "ready"}, True)


def test_the_link_waits_for_a_broker_that_is_not_there_yet(tmp_path: Path) -> None:
    later = Mosquitto(tmp_path / "late-broker")
    config = make_config(later, tmp_path)

    async def scenario() -> int:
        with Spool(config.spool.path) as spool:
            async with MqttLink(config, spool) as link:
                await asyncio.sleep(0.5)
                assert not link.connected.is_set()
                assert "refused" in link.stats.last_error.lower() or link.stats.last_error
                await asyncio.to_thread(later.start)
                await asyncio.wait_for(link.connected.wait(), 5)
                return link.stats.connects

    try:
        assert asyncio.run(scenario()) == 1
    finally:
        later.stop()


def test_publishes_are_written_in_the_call_and_a_partial_write_finishes_later(
    broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The link's client writes a packet in publish() itself (no writer callback, no
    # self-pipe wake-up); what the socket does not take waits for the writable callback.
    import socket

    from isopress.agent.mqtt import _DirectWriteClient

    writer_registrations: list[str] = []
    register = aiomqtt.Client._on_socket_register_write

    def counting(self: aiomqtt.Client, *args: object) -> None:
        writer_registrations.append(type(self).__name__)
        register(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(aiomqtt.Client, "_on_socket_register_write", counting)

    big = bytes(range(256)) * 3000  # 768 kB: far more than the shrunk send buffer below

    async def scenario() -> tuple[bool, bool, bytes]:
        async with (
            aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as sub,
            _DirectWriteClient(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client,
        ):
            await sub.subscribe("isopress/direct/#", qos=1)
            before = writer_registrations.count("_DirectWriteClient")
            await client.publish("isopress/direct/small", b"x", qos=1, timeout=5.0)
            small_needed_writer = writer_registrations.count("_DirectWriteClient") > before
            paho_sock = client._client.socket()
            assert isinstance(paho_sock, socket.socket)
            paho_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            before = writer_registrations.count("_DirectWriteClient")
            await client.publish("isopress/direct/big", big, qos=1, timeout=10.0)
            big_went_through_writer = writer_registrations.count("_DirectWriteClient") > before
            assert not client._client.want_write()
            # The drain's own publish: written straight to the socket, the rest queued.
            before = writer_registrations.count("_DirectWriteClient")
            await asyncio.wait_for(client.publish_acked(b"isopress/direct/big-acked", big), 10)
            big_acked_went_through_writer = writer_registrations.count("_DirectWriteClient") > before
            await asyncio.wait_for(client.publish_acked(b"isopress/direct/small-acked", b"y"), 5)
            assert not client._client.want_write()
            got: dict[str, bytes] = {}
            async with asyncio.timeout(10):
                async for message in sub.messages:
                    assert isinstance(message.payload, bytes)
                    got[str(message.topic).rsplit("/", 1)[1]] = message.payload
                    if "small-acked" in got:
                        break
            assert big_acked_went_through_writer, "the big publish_acked should have needed the writer"
            return small_needed_writer, big_went_through_writer, got

    small_needed_writer, big_done, got = asyncio.run(scenario())
    assert not small_needed_writer, "a small publish should not need the writer callback"
    assert big_done, "the big publish should have needed the writer callback (partial write)"
    assert got == {"small": b"x", "big": big, "big-acked": big, "small-acked": b"y"}, (
        "a partially written packet did not arrive intact, or not in order"
    )


def test_publish_acked_is_done_only_after_its_puback_and_the_packet_arrives_intact(broker: Mosquitto) -> None:
    # The drain's own QoS 1 publish (packet built by the link, PUBACK straight to a future):
    # not done while the broker is frozen, done once it answers; remaining lengths of one,
    # two and three bytes, the retain flag, and aiomqtt's publish on the same client (its
    # PUBACK still goes to paho) all as they should be.
    from isopress.agent.mqtt import _DirectWriteClient

    payloads = {"empty": b"", "small": b"x", "medium": bytes(range(200)), "large": bytes(range(256)) * 80}

    async def scenario() -> dict[str, tuple[bytes, bool]]:
        got: dict[str, tuple[bytes, bool]] = {}
        async with (
            aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as sub,
            _DirectWriteClient(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client,
        ):
            await sub.subscribe("isopress/acked/#", qos=1)
            with _Frozen(broker):
                acked = client.publish_acked(b"isopress/acked/frozen", b"f")
                await asyncio.sleep(0.5)
                assert not acked.done(), "done before the broker acknowledged"
            await asyncio.wait_for(acked, 5)
            for name, payload in payloads.items():
                topic = f"isopress/acked/{name}".encode()
                await asyncio.wait_for(client.publish_acked(topic, payload, retain=name == "medium"), 5)
            await client.publish("isopress/acked/aiomqtt", b"a", qos=1, timeout=5.0)
            assert not client._client._out_messages, "paho still waits for a PUBACK"
            async with asyncio.timeout(10):
                async for message in sub.messages:
                    assert isinstance(message.payload, bytes)
                    got[str(message.topic).rsplit("/", 1)[1]] = (message.payload, bool(message.retain))
                    if "aiomqtt" in got:
                        break
        return got

    got = asyncio.run(scenario())
    assert got == {
        "frozen": (b"f", False),
        **{name: (payload, False) for name, payload in payloads.items()},
        "aiomqtt": (b"a", False),
    }
    # The retained one is kept by the broker (retain shows only to a later subscriber).

    async def retained() -> tuple[bytes, bool]:
        async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as late:
            await late.subscribe("isopress/acked/medium", qos=1)
            async with asyncio.timeout(5):
                async for message in late.messages:
                    assert isinstance(message.payload, bytes)
                    return message.payload, bool(message.retain)
        raise AssertionError("no retained message")

    assert asyncio.run(retained()) == (payloads["medium"], True)


def test_a_publish_unacknowledged_for_publish_timeout_ends_the_connection(
    broker: Mosquitto, tmp_path: Path
) -> None:
    base = make_config(broker, tmp_path)
    config = base.model_copy(update={"broker": base.broker.model_copy(update={"publish_timeout_s": 0.5})})
    topics = PressTopics(config.agent.press_id)

    async def body(sub: Subscriber) -> None:
        with Spool(config.spool.path) as spool:
            async with MqttLink(config, spool) as link:
                await asyncio.wait_for(link.connected.wait(), 5)
                with _Frozen(broker):
                    spool.append([sample_outgoing(topics, make_sample(i)) for i in range(3)])
                    # Within 3 s: paho's keepalive (5 s) would take twice that to give up.
                    await eventually(lambda: not link.connected.is_set(), 3, "the link gave up on the broker")
                    assert spool.rows == 3
                    await eventually(lambda: "no PUBACK" in link.stats.last_error, 5, "the reason")
                await eventually(lambda: spool.rows == 0, 15, "spool drained after the broker thawed")
                assert link.stats.connects >= 2
                await eventually(lambda: len(sub.samples()) >= 3, 5, "subscriber got the samples")

    sub = asyncio.run(with_subscriber(broker, topics.telemetry, body))
    assert {s["seq"] for s in sub.samples()} == {0, 1, 2}


def test_a_puback_of_ours_is_taken_whole_and_any_other_goes_to_paho(
    broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Mosquitto acknowledges a publish that reaches a subscriber with a bare 4-byte PUBACK
    # (read in one peek and one read, without paho's decoding) and one that reaches nobody
    # with reason code 0x10 (5 bytes: paho reads it, the link's handler settles it). Either
    # way the future is done, and aiomqtt's own publish still gets its PUBACK from paho.
    from isopress.agent.mqtt import _AckedPahoClient, _DirectWriteClient

    decoded: list[bytes] = []
    handle = _AckedPahoClient._handle_pubackcomp

    def counting(self: _AckedPahoClient, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        decoded.append(bytes(self._in_packet["packet"]))
        return handle(self, cmd)

    monkeypatch.setattr(_AckedPahoClient, "_handle_pubackcomp", counting)

    async def scenario() -> None:
        async with (
            aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as sub,
            _DirectWriteClient(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client,
        ):
            await sub.subscribe("isopress/whole/#", qos=1)
            await asyncio.wait_for(client.publish_acked(b"isopress/whole/heard", b"x"), 5)
            assert decoded == [], "a bare PUBACK of ours went through paho's decoding"
            await asyncio.wait_for(client.publish_acked(b"isopress/nobody/hears", b"x"), 5)
            assert [packet[2:] for packet in decoded] == [b"\x10"], decoded
            await client.publish("isopress/whole/aiomqtt", b"a", qos=1, timeout=5.0)
            assert not client._client._out_messages

    asyncio.run(scenario())
