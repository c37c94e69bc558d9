"""``isopress agent`` (a real process) over the serial session to the TEST PEER, with a real Mosquitto.

The board here is the scripted test peer of tests/session/board_peer.py (NOT the firmware);
the end-to-end tests against the real virtual board under MicroPython are in
tests/session/test_virtual_board_e2e.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import Subscriber, eventually, send_command, unique_press_id, with_subscriber
from board_peer import BoardPeer

from isopress.agent.payloads import EventPayload, RunSummary, StatePayload, TelemetryBatch
from isopress.broker import Mosquitto
from isoproto import codes

pytestmark = pytest.mark.mqtt

ISOPRESS = str(Path(sys.executable).parent / "isopress")

RECIPE: dict[str, Any] = {
    "name": "short session cycle",
    "segments": [
        {"kind": "ramp", "target_mpa": 3.0, "rate_mpa_s": 2.0},
        {"kind": "hold", "duration_s": 1.5},
        {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.0},
    ],
}


def _config(broker: Mosquitto, tmp_path: Path, press_id: str, port: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f"""
[agent]
press_id = "{press_id}"
log_level = "debug"
[serial]
port = "{port}"
heartbeat_period_ms = 100
heartbeat_timeout_ms = 1000
[serial.reconnect]
initial_s = 0.05
max_s = 0.3
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


def _gaps(sub: Subscriber, up_to: int) -> list[int]:
    """Boot 1 seqs missing at the subscriber between its first sample and ``up_to``."""
    got = {s["seq"] for s in sub.samples() if s["boot_count"] == 1}
    return sorted(set(range(min(got, default=0), up_to + 1)) - got)[:20] if got else [-1]


def _log(config: Path) -> str:
    return (config.parent / "agent.log").read_text()[-6000:]


def test_a_run_through_mqtt_survives_an_agent_sigkill_without_losing_a_sample(
    broker: Mosquitto, tmp_path: Path
) -> None:
    press_id = unique_press_id("sess")
    replies: dict[str, Any] = {}

    async def body(sub: Subscriber) -> None:
        async with BoardPeer() as peer:
            config = _config(broker, tmp_path, press_id, peer.url)
            proc = _start(config)
            try:
                await eventually(
                    lambda: (s := _state(sub)) is not None and s.board_connected and s.state == "idle",
                    15,
                    f"idle over the session {_log(config)}",
                )
                replies["load"] = await send_command(
                    broker, press_id, "alice", "load-recipe", {"recipe": RECIPE}
                )
                replies["start"] = await send_command(broker, press_id, "alice", "start", {})
                await eventually(lambda: peer.state == codes.ST_HOLDING, 10, "the board holding")
                os.kill(proc.pid, signal.SIGKILL)  # mid-run
                proc.wait(10)
                killed_at = peer.sample_seq
                await asyncio.sleep(1.0)  # the board samples on, nobody listens
                proc = _start(config)
                await eventually(lambda: bool(sub.on("/run/")), 20, f"run summary {_log(config)}")
                final = peer.sample_seq
                await eventually(
                    lambda: _gaps(sub, final) == [], 15, f"every sample up to {final} {_log(config)}"
                )
                replies["killed_at"] = killed_at
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(proc.wait, 15) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    sub = asyncio.run(with_subscriber(broker, f"isopress/{press_id}/#", body))
    assert replies["load"]["accepted"] and replies["start"]["accepted"], replies
    assert replies["start"]["board"]["value"] == 1
    for batch in sub.on("/telemetry"):
        TelemetryBatch.model_validate(batch)
    got = sorted({s["seq"] for s in sub.samples() if s["boot_count"] == 1})
    assert got == list(range(got[0], got[-1] + 1)), "a sample was lost between the board and the subscriber"
    killed_at = replies["killed_at"]
    assert got[0] < killed_at - 50 and got[-1] > killed_at + 100  # the kill window is inside
    backfilled = {s["seq"] for s in sub.samples() if s["historical"]}
    assert killed_at + 10 in backfilled  # what the board sent while no agent ran came from its history
    summary = RunSummary.model_validate(sub.on("/run/")[-1])
    assert summary.outcome == "complete" and summary.operator == "alice"
    assert summary.board is not None and summary.board.firmware_version == "peer-1.0"
    kinds = [EventPayload.model_validate(e).kind for e in sub.on("/event")]
    assert kinds.count("board_connected") == 2 and "run_started" in kinds and "run_ended" in kinds


def test_a_board_reset_mid_run_is_reported_and_the_agent_resynchronises(
    broker: Mosquitto, tmp_path: Path
) -> None:
    press_id = unique_press_id("sess")

    async def body(sub: Subscriber) -> None:
        async with BoardPeer() as peer:
            config = _config(broker, tmp_path, press_id, peer.url)
            proc = _start(config)
            try:
                await eventually(
                    lambda: (s := _state(sub)) is not None and s.state == "idle", 15, f"idle {_log(config)}"
                )
                assert (
                    await send_command(broker, press_id, "alice", "load-recipe", {"recipe": RECIPE}) or {}
                ).get("accepted")
                assert (await send_command(broker, press_id, "alice", "start", {}) or {}).get("accepted")
                await eventually(
                    lambda: peer.state == codes.ST_PRESSURISING and peer.sample_seq > 100, 5, "run"
                )
                peer.reboot(codes.RESET_WATCHDOG)
                await eventually(
                    lambda: any(e.get("kind") == "board_reset" for e in sub.on("/event")), 10, "reset event"
                )
                await eventually(
                    lambda: (
                        (s := _state(sub)) is not None
                        and s.board is not None
                        and s.board.boot_count == 2
                        and s.state == "idle"
                    ),
                    10,
                    "resynchronised state",
                )
                await eventually(lambda: bool(sub.on("/run/")), 10, "interrupted run summary")
                await eventually(
                    lambda: sum(1 for s in sub.samples() if s["boot_count"] == 2) >= 100,
                    10,
                    "boot 2 telemetry",
                )
                # the new boot takes commands through the agent again
                reply = await send_command(broker, press_id, "bob", "load-recipe", {"recipe": RECIPE})
                assert reply is not None and reply["accepted"], reply
            finally:
                proc.send_signal(signal.SIGTERM)
                await asyncio.to_thread(proc.wait, 15)

    sub = asyncio.run(with_subscriber(broker, f"isopress/{press_id}/#", body))
    reset = next(e for e in sub.on("/event") if e["kind"] == "board_reset")
    assert "boot count 1 -> 2" in reset["reason"] and "watchdog" in reset["reason"]
    assert "interrupted" in reset["reason"]
    assert RunSummary.model_validate(sub.on("/run/")[-1]).outcome == "interrupted"
    boot2 = sorted({s["seq"] for s in sub.samples() if s["boot_count"] == 2})
    assert boot2[0] == 0 and boot2 == list(range(len(boot2))), "boot 2 from its first sample, no gap"
    boot_events = [e for e in sub.on("/event") if e["kind"] == "boot" and e["boot_count"] == 2]
    assert boot_events and boot_events[0]["code"] == codes.RESET_WATCHDOG


def test_a_start_the_board_answers_after_the_timeout_is_pending_then_settled_not_run_behind_the_back(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """Late execution: the START frames are lost on the wire six times; the session's
    retransmissions get it through after commands.board_timeout_s. The operator is told
    'pending' first, then the final reply; the run is recorded as theirs."""
    press_id = unique_press_id("late")
    got: dict[str, Any] = {}

    async def body(sub: Subscriber) -> None:
        async with BoardPeer() as peer:
            config = _config(broker, tmp_path, press_id, peer.url)
            config.write_text(config.read_text() + "[commands]\nboard_timeout_s = 0.2\n")
            proc = _start(config)
            try:
                await eventually(
                    lambda: (s := _state(sub)) is not None and s.board_connected and s.state == "idle",
                    15,
                    f"idle over the session {_log(config)}",
                )
                got["load"] = await send_command(broker, press_id, "alice", "load-recipe", {"recipe": RECIPE})
                peer.script.drop_commands = 6  # the next six command frames never reach the board
                got["start"] = await send_command(broker, press_id, "alice", "start", {})
                got["meanwhile"] = await send_command(
                    broker, press_id, "bob", "load-recipe", {"recipe": RECIPE}
                )

                def start_replies() -> list[dict[str, Any]]:
                    return [r for r in sub.on("/reply/") if r["verb"] == "start"]

                await eventually(lambda: len(start_replies()) == 2, 20, f"the final reply {_log(config)}")
                got["replies"] = start_replies()
                got["board_state"] = peer.state
                await eventually(lambda: bool(sub.on("/run/")), 20, f"run summary {_log(config)}")
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(proc.wait, 15) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    sub = asyncio.run(with_subscriber(broker, f"isopress/{press_id}/#", body))
    assert got["load"]["accepted"], got
    first, final = got["replies"]
    assert first == got["start"]
    assert first["pending"] and not first["accepted"] and "may yet execute" in first["error"]
    assert final["accepted"] and not final["pending"] and final["board"]["value"] == 1
    assert final["command_id"] == first["command_id"] and final["run_id"] is not None
    assert got["meanwhile"] is not None and not got["meanwhile"]["accepted"]
    assert "awaiting the board's answer" in got["meanwhile"]["error"]
    assert got["board_state"] != codes.ST_READY  # the board did execute it: the reply said so
    summary = RunSummary.model_validate(sub.on("/run/")[-1])
    assert summary.run_id == final["run_id"] and summary.operator == "alice" and summary.outcome == "complete"
    kinds = [EventPayload.model_validate(e).kind for e in sub.on("/event")]
    assert "command_pending" in kinds and "command_settled" in kinds
