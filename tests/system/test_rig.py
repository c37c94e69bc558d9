"""The rig the demo, the fleet and the soak are built from: a station (virtual board + agent
process) on either broker, commanded by the operator client."""

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
    "name": "rig",
    "segments": [
        {"kind": "ramp", "target_mpa": 4.0, "rate_mpa_s": 2.0},
        {"kind": "hold", "duration_s": 1.0},
        {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.0},
    ],
}


async def _press_a_recipe(broker: BrokerHandle, station: Station) -> dict[str, Any]:
    """Load and start RECIPE as alice; collect telemetry and the run summary."""
    press = station.spec.press_id
    seen: dict[str, Any] = {"seqs": set(), "peak": 0.0, "states": set(), "run": None}
    async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as sub:
        await sub.subscribe(f"isopress/{press}/#", qos=1)
        async with OperatorClient(broker.host, broker.port, operator="alice") as alice:
            async with asyncio.timeout(60):
                async for message in sub.messages:
                    topic = str(message.topic)
                    assert isinstance(message.payload, bytes)
                    if topic.endswith("/state"):
                        state = json.loads(message.payload)
                        if state["board_connected"] and state["state"] == "idle" and "load" not in seen:
                            seen["load"] = await alice.command(press, "load-recipe", {"recipe": RECIPE})
                            seen["start"] = await alice.command(press, "start", {})
                    elif topic.endswith("/telemetry"):
                        for s in json.loads(message.payload)["samples"]:
                            seen["seqs"].add((s["boot_count"], s["seq"]))
                            seen["peak"] = max(seen["peak"], s["pressure_mpa"])
                            seen["states"].add(s["state"])
                    elif "/run/" in topic:
                        seen["run"] = json.loads(message.payload)
                        break
            station.check_alive()
    return seen


@pytest.mark.parametrize("kind", ["mosquitto", "embedded"])
def test_a_station_presses_a_recipe_commanded_over_mqtt(kind: str, tmp_path: Path) -> None:
    with open_broker(tmp_path, prefer=kind) as broker:
        assert broker.kind == kind
        spec = StationSpec(press_id=f"rig-{kind}", workdir=tmp_path / "press", broker=broker, boot_count=2)
        with Station(spec) as station:
            seen = asyncio.run(_press_a_recipe(broker, station))
        log = station.agent_log_text()
    assert seen["load"]["accepted"] and seen["start"]["accepted"], (seen.get("load"), seen.get("start"), log)
    assert seen["run"]["outcome"] == "complete" and seen["run"]["operator"] == "alice"
    assert 3.0 < seen["peak"] < 5.0
    assert {"pressurising", "holding", "depressurising"} <= seen["states"]
    seqs = sorted(seq for boot, seq in seen["seqs"] if boot == 2)
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "every sample from the board reached the subscriber"
    assert station.agent is not None and station.agent.returncode == 0  # SIGTERM: a clean stop
    assert (station.runs_folder).is_dir() and any(station.runs_folder.iterdir())


def test_sim_config_text_applies_overrides_and_reseals() -> None:
    from isopress.firmware_build import config_checksum

    text = sim_config_text({"telemetry_decimation": 10, "profile": {"host_lost_timeout_ms": 3000}})
    doc = json.loads(text)
    assert doc["telemetry_decimation"] == 10 and doc["profile"]["host_lost_timeout_ms"] == 3000
    assert doc["profile"]["max_working_mpa"] == 400.0  # the rest of the section kept
    assert doc["checksum"] == config_checksum(text)
