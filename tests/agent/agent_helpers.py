"""Helpers for agent tests: configs pointing at the test broker, persistent subscribers, samples."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from isopress.agent.config import AgentConfig, parse_config
from isopress.agent.model import BoardInfo, CommandResult, DeviceProfile, Sample
from isopress.agent.recipe import Recipe
from isopress.broker import Mosquitto


def unique_press_id(prefix: str = "test") -> str:
    """A press id no other test uses (the session broker keeps retained messages)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_config(
    broker: Mosquitto | None,
    tmp_path: Path,
    *,
    press_id: str | None = None,
    port: int | None = None,
    extra: str = "",
) -> AgentConfig:
    """An agent config for tests: fast reconnects, spool and runs under tmp_path."""
    host = broker.host if broker else "127.0.0.1"
    port = port if port is not None else (broker.port if broker else 1)
    text = f"""
[agent]
press_id = "{press_id or unique_press_id()}"
log_level = "debug"
[serial]
port = "loop://"
[broker]
host = "{host}"
port = {port}
keepalive_s = 5
publish_timeout_s = 5.0
connect_timeout_s = 3.0
[broker.reconnect]
initial_s = 0.05
max_s = 0.5
[spool]
path = "{tmp_path / "spool.sqlite3"}"
[runs]
folder = "{tmp_path / "runs"}"
{extra}
"""
    return parse_config(text, environ={})


def make_sample(
    seq: int, *, boot_count: int = 1, state: int = 3, run_id: int = 1, pressure: float = 0.0
) -> Sample:
    return Sample(
        boot_count=boot_count,
        seq=seq,
        board_ms=seq * 10,
        wall_time=datetime.now(UTC),
        pressure_mpa=pressure if pressure else seq * 0.01,
        setpoint_mpa=seq * 0.01,
        pump_duty=1000,
        vent_duty=0,
        faults=0,
        state=state,
        flags=0x1F,
        segment=0,
        run_id=run_id,
    )


def v5_persistent(expiry_s: int = 3600) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = expiry_s
    return props


@dataclass
class Subscriber:
    """A dashboard-like persistent subscriber that reconnects on its own."""

    broker: Mosquitto
    topic: str
    client_id: str = field(default_factory=lambda: f"sub-{uuid.uuid4().hex[:8]}")
    messages: list[tuple[str, Any, bool, Any]] = field(default_factory=list)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    connects: int = 0

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    identifier=self.client_id,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    clean_start=False,
                    properties=v5_persistent(),
                    timeout=3,
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.connects += 1
                    self.subscribed.set()
                    async for m in client.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else b""
                        try:
                            data: Any = json.loads(payload)
                        except ValueError:
                            data = payload.decode(errors="replace")
                        self.messages.append((str(m.topic), data, bool(m.retain), m.properties))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    def samples(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for topic, data, _retain, _props in self.messages:
            if topic.endswith("/telemetry"):
                out.extend(data["samples"])
        return out

    def on(self, suffix: str) -> list[Any]:
        """Payloads on topics ending with ``suffix`` (or containing it, when it ends with '/')."""
        if suffix.endswith("/"):
            return [data for topic, data, _r, _p in self.messages if suffix in topic]
        return [data for topic, data, _r, _p in self.messages if topic.endswith(suffix)]


async def eventually(check: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


async def with_subscriber(
    broker: Mosquitto, topic: str, body: Callable[[Subscriber], Awaitable[None]]
) -> Subscriber:
    sub = Subscriber(broker, topic)
    task = asyncio.create_task(sub.run())
    try:
        await asyncio.wait_for(sub.subscribed.wait(), 5)
        await body(sub)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return sub


def make_info(boot_count: int = 1, **profile: Any) -> BoardInfo:
    """Board info with the design brief's default device profile."""
    values: dict[str, Any] = {
        "max_working_mpa": 400.0,
        "trip_mpa": 420.0,
        "max_ramp_up_mpa_s": 2.0,
        "max_ramp_down_mpa_s": 1.0,
        "max_hold_s": 3600.0,
        "margin_mpa": 10.0,
        "host_lost_timeout_ms": 5000,
        "host_lost_policy": 1,
    }
    values.update(profile)
    return BoardInfo(
        firmware_version="1.0.0",
        protocol_major=1,
        protocol_minor=0,
        board_id="E6614103E7452D2F",
        board_kind="sim",
        profile_hash=0x1234ABCD,
        calibration_id="sim-factory",
        calibration_date="2026-11-25",
        boot_count=boot_count,
        reset_cause=1,
        profile=DeviceProfile(**values),
    )


@dataclass
class RecordingBoard:
    """A BoardPort fake: records every call, answers with ``result`` (or raises ``error``)."""

    result: CommandResult = field(default_factory=lambda: CommandResult(ok=True, value=7))
    error: Exception | None = None
    delay_s: float = 0.0
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    async def _call(self, name: str, *args: Any) -> CommandResult:
        self.calls.append((name, args))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return self.result

    async def load_recipe(self, recipe: Recipe, recipe_id: int) -> CommandResult:
        return await self._call("load_recipe", recipe, recipe_id)

    async def start(self, recipe_id: int) -> CommandResult:
        return await self._call("start", recipe_id)

    async def pause(self) -> CommandResult:
        return await self._call("pause")

    async def resume(self) -> CommandResult:
        return await self._call("resume")

    async def abort(self) -> CommandResult:
        return await self._call("abort")

    async def reset_faults(self) -> CommandResult:
        return await self._call("reset_faults")


GOOD_RECIPE: dict[str, Any] = {
    "name": "250 MPa cycle",
    "segments": [
        {"kind": "ramp", "target_mpa": 250.0, "rate_mpa_s": 1.0},
        {"kind": "hold", "duration_s": 300.0},
        {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 0.5},
    ],
}


async def send_command(
    broker: Mosquitto,
    press_id: str,
    operator: str,
    verb: str,
    payload: dict[str, Any] | bytes,
    *,
    retain: bool = False,
    expiry_s: int | None = None,
    timeout_s: float = 5.0,
) -> dict[str, Any] | None:
    """Publish a command like an operator's tool; return the reply (None if none came)."""
    if isinstance(payload, dict):
        fresh = {"command_id": uuid.uuid4().hex, "sent_at": datetime.now(UTC).isoformat()}
        payload = json.dumps({**fresh, **payload}).encode()
    # The agent answers only under reply/<operator> (any other response topic is replaced).
    reply_topic = f"isopress/{press_id}/reply/{operator}/{uuid.uuid4().hex[:8]}"
    correlation = uuid.uuid4().bytes
    async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(reply_topic, qos=1)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = reply_topic
        props.CorrelationData = correlation
        if expiry_s is not None:
            props.MessageExpiryInterval = expiry_s
        topic = f"isopress/{press_id}/cmd/{operator}/{verb}"
        await client.publish(topic, payload, qos=1, retain=retain, properties=props)
        try:
            async with asyncio.timeout(timeout_s):
                async for message in client.messages:
                    assert message.properties is not None
                    assert message.properties.CorrelationData == correlation
                    assert isinstance(message.payload, bytes)
                    reply: dict[str, Any] = json.loads(message.payload)
                    return reply
        except TimeoutError:
            return None
    return None
