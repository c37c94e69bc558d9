"""End to end: ``isopress agent`` (a process) -> serial session -> the REAL virtual board.

The firmware runs under the MicroPython unix port in an RP2040-sized heap, in real time,
its serial link on a pty (:class:`isopress.virtual_board.VirtualBoard`); the agent talks to
it through the pty exactly as to a USB board, and to a real Mosquitto. Commands go in on
the agent's MQTT command topic, telemetry is checked at an MQTT subscriber.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import Subscriber, eventually, send_command, unique_press_id, with_subscriber

from isopress.agent.payloads import EventPayload, RunSummary, StatePayload, TelemetryBatch
from isopress.broker import Mosquitto
from isopress.virtual_board import VirtualBoard
from isoproto import codes

pytestmark = [pytest.mark.mqtt, pytest.mark.micropython, pytest.mark.slow]

ISOPRESS = str(Path(sys.executable).parent / "isopress")

# About 8 s on the sim press (its pump gives about 2 MPa/s at low pressure).
RECIPE: dict[str, Any] = {
    "name": "virtual board e2e",
    "segments": [
        {"kind": "ramp", "target_mpa": 4.0, "rate_mpa_s": 2.0},
        {"kind": "hold", "duration_s": 2.0},
        {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.0},
    ],
}


@pytest.fixture
def board() -> Iterator[VirtualBoard]:
    vb = VirtualBoard(boot_count=3)
    vb.start()
    try:
        yield vb
    finally:
        vb.stop()


def _config(broker: Mosquitto, tmp_path: Path, press_id: str, port: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f"""
[agent]
press_id = "{press_id}"
log_level = "debug"
[serial]
port = "{port}"
heartbeat_period_ms = 250
heartbeat_timeout_ms = 2000
[serial.reconnect]
initial_s = 0.1
max_s = 0.5
[broker]
host = "{broker.host}"
port = {broker.port}
keepalive_s = 5
[broker.reconnect]
initial_s = 0.1
max_s = 1.0
[spool]
path = "{tmp_path / "spool.sqlite3"}"
[runs]
folder = "{tmp_path / "runs"}"
""")
    return path


def _start(config: Path) -> subprocess.Popen[bytes]:
    with (config.parent / "agent.log").open("ab") as log:
        return subprocess.Popen(
            [ISOPRESS, "agent", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log
        )


def _state(sub: Subscriber) -> StatePayload | None:
    states = sub.on("/state")
    return StatePayload.model_validate(states[-1]) if states else None


def _log(config: Path, board: VirtualBoard) -> str:
    return (config.parent / "agent.log").read_text()[-4000:] + "\n--- board ---\n" + board.log_text()[-2000:]


def _seqs(sub: Subscriber, boot: int) -> list[int]:
    return sorted({s["seq"] for s in sub.samples() if s["boot_count"] == boot})


def _holes(seqs: list[int]) -> list[int]:
    return sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))[:20] if seqs else [-1]


async def _load_and_start(broker: Mosquitto, press_id: str) -> dict[str, Any]:
    load = await send_command(broker, press_id, "alice", "load-recipe", {"recipe": RECIPE})
    assert load is not None and load["accepted"], load
    start = await send_command(broker, press_id, "alice", "start", {})
    assert start is not None and start["accepted"], start
    return start


def test_a_recipe_through_mqtt_on_the_virtual_board_survives_an_agent_sigkill(
    broker: Mosquitto, tmp_path: Path, board: VirtualBoard
) -> None:
    press_id = unique_press_id("vb")
    config = _config(broker, tmp_path, press_id, board.port)
    got: dict[str, Any] = {}

    async def body(sub: Subscriber) -> None:
        proc = _start(config)
        try:
            await eventually(
                lambda: (s := _state(sub)) is not None and s.board_connected and s.state == "idle",
                20,
                f"idle over the session {_log(config, board)}",
            )
            state = _state(sub)
            assert state is not None and state.board is not None
            assert state.board.board_kind == "sim" and state.board.boot_count == 3
            got["start"] = await _load_and_start(broker, press_id)
            await eventually(lambda: any(s["state"] == "holding" for s in sub.samples()), 15, "holding")
            os.kill(proc.pid, signal.SIGKILL)  # mid-run, in the hold
            proc.wait(10)
            got["killed_after"] = max(_seqs(sub, 3))
            await asyncio.sleep(1.0)  # the board runs on alone
            proc = _start(config)
            await eventually(lambda: bool(sub.on("/run/")), 30, f"run summary {_log(config, board)}")
            newest = max(_seqs(sub, 3))
            await eventually(lambda: _holes(_seqs(sub, 3)) == [], 15, f"no gap up to {newest}")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    sub = asyncio.run(with_subscriber(broker, f"isopress/{press_id}/#", body))
    board.check_alive()
    assert got["start"]["board"]["value"] == 1  # the board's run id
    for batch in sub.on("/telemetry"):
        TelemetryBatch.model_validate(batch)
    seqs = _seqs(sub, 3)
    assert _holes(seqs) == [], "a sample was lost between the transducer and the subscriber"
    killed_after = got["killed_after"]
    assert seqs[-1] > killed_after + 150  # the outage (1 s + the agent's start) is inside
    backfilled = {s["seq"] for s in sub.samples() if s["historical"]}
    assert killed_after + 50 in backfilled  # what nobody heard came from the board's history
    summary = RunSummary.model_validate(sub.on("/run/")[-1])
    assert summary.outcome == "complete" and summary.operator == "alice"
    assert summary.board is not None and summary.board.board_kind == "sim"
    assert summary.peak_mpa is not None and 3.0 < summary.peak_mpa < 5.0
    kinds = [EventPayload.model_validate(e).kind for e in sub.on("/event")]
    assert "run_started" in kinds and "run_ended" in kinds and kinds.count("board_connected") == 2
    assert "records_lost" not in kinds


def test_a_virtual_board_reset_mid_run_is_reported_and_the_agent_resynchronises(
    broker: Mosquitto, tmp_path: Path, board: VirtualBoard
) -> None:
    press_id = unique_press_id("vb")
    config = _config(broker, tmp_path, press_id, board.port)

    async def body(sub: Subscriber) -> None:
        proc = _start(config)
        try:
            await eventually(
                lambda: (s := _state(sub)) is not None and s.state == "idle",
                20,
                f"idle {_log(config, board)}",
            )
            await _load_and_start(broker, press_id)
            await eventually(lambda: any(s["state"] == "pressurising" for s in sub.samples()), 10, "running")
            await asyncio.sleep(0.5)
            await asyncio.to_thread(board.restart, codes.RESET_WATCHDOG)
            await eventually(
                lambda: any(e.get("kind") == "board_reset" for e in sub.on("/event")),
                20,
                f"reset event {_log(config, board)}",
            )
            await eventually(
                lambda: (
                    (s := _state(sub)) is not None
                    and s.board is not None
                    and s.board.boot_count == 4
                    and s.state == "idle"
                ),
                10,
                "resynchronised state",
            )
            await eventually(lambda: len(_seqs(sub, 4)) >= 100, 10, "boot 4 telemetry")
            await eventually(lambda: _holes(_seqs(sub, 4)) == [], 10, "boot 4 without gaps")
            # the new boot takes commands through the agent again
            reply = await send_command(broker, press_id, "bob", "load-recipe", {"recipe": RECIPE})
            assert reply is not None and reply["accepted"], reply
            # the interrupted run's summary follows its metrics and plot (a worker thread)
            await eventually(lambda: bool(sub.on("/run/")), 15, f"run summary {_log(config, board)}")
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 15)

    sub = asyncio.run(with_subscriber(broker, f"isopress/{press_id}/#", body))
    reset = next(e for e in sub.on("/event") if e["kind"] == "board_reset")
    assert "boot count 3 -> 4" in reset["reason"] and "watchdog" in reset["reason"]
    assert "interrupted" in reset["reason"]
    assert RunSummary.model_validate(sub.on("/run/")[-1]).outcome == "interrupted"
    boot4 = _seqs(sub, 4)
    assert boot4[0] == 0 and _holes(boot4) == [], "boot 4 from its first sample, no gap"
    boot_events = [e for e in sub.on("/event") if e["kind"] == "boot" and e["boot_count"] == 4]
    assert boot_events and boot_events[0]["code"] == codes.RESET_WATCHDOG
    state = StatePayload.model_validate(sub.on("/state")[-1])
    assert state.board is not None and state.board.reset_cause == "watchdog"
