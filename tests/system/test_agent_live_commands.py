"""The agent's command handling against the real virtual board, over MQTT, as an operator sees it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from isopress.rig import BrokerHandle, OperatorClient, Station, StationSpec, open_broker, sim_config_text

pytestmark = [pytest.mark.mqtt, pytest.mark.micropython, pytest.mark.slow]

RECIPE = {
    "name": "live commands",
    "segments": [
        {"kind": "ramp", "target_mpa": 4.0, "rate_mpa_s": 2.0},
        {"kind": "hold", "duration_s": 1.0},
        {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.0},
    ],
}


async def _wait_state(
    sub: aiomqtt.Client, wanted: set[str], board_run_id: int | None = None
) -> dict[str, Any]:
    async with asyncio.timeout(60):
        async for message in sub.messages:
            if str(message.topic).endswith("/state") and isinstance(message.payload, bytes):
                state: dict[str, Any] = json.loads(message.payload)
                if board_run_id is not None and state["board_run_id"] != board_run_id:
                    continue
                if state["board_connected"] and state["state"] in wanted:
                    return state
    raise AssertionError("no state")


async def _load_then_start_at_once(
    broker: BrokerHandle, station: Station, rounds: int
) -> list[dict[str, Any]]:
    press = station.spec.press_id
    replies: list[dict[str, Any]] = []
    async with (
        aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as sub,
        OperatorClient(broker.host, broker.port, operator="alice") as alice,
    ):
        await sub.subscribe(f"isopress/{press}/state", qos=1)
        await _wait_state(sub, {"idle", "ready", "complete"})
        for _ in range(rounds):
            replies.append(await alice.command(press, "load-recipe", {"recipe": RECIPE}))
            replies.append(await alice.command(press, "start", {}))  # no wait for a sample
            assert replies[-1]["accepted"], (replies[-1], station.agent_log_text()[-3000:])
            run = replies[-1]["board"]["value"]
            replies.append(await alice.command(press, "abort", {}))
            await _wait_state(sub, {"ready", "complete"}, run)  # this run's abort done
            station.check_alive()
    return replies


def test_a_start_right_after_load_is_accepted_at_10_hz_telemetry(tmp_path: Path) -> None:
    """At 10 Hz the next sample comes up to 100 ms after the load-recipe ACK: the agent's
    view must say ready from the ACK on, or the start is refused as 'while idle'."""
    with open_broker(tmp_path, prefer="embedded") as broker:
        spec = StationSpec(
            press_id="live-10hz",
            workdir=tmp_path / "press",
            broker=broker,
            board_config_text=sim_config_text({"telemetry_decimation": 10}),
        )
        with Station(spec) as station:
            replies = asyncio.run(_load_then_start_at_once(broker, station, rounds=3))
    assert all(r["accepted"] for r in replies), [r for r in replies if not r["accepted"]]
    assert [r["verb"] for r in replies] == ["load-recipe", "start", "abort"] * 3
