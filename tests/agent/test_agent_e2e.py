"""The assembled agent (fake board standing in for the serial session) against a real Mosquitto."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import GOOD_RECIPE, Subscriber, eventually, make_config, send_command, with_subscriber

from isopress.agent.fake_board import FakeBoard
from isopress.agent.payloads import CommandReply, EventPayload, RunSummary, StatePayload, TelemetryBatch
from isopress.agent.service import Agent
from isopress.agent.topics import PressTopics
from isopress.broker import Mosquitto

pytestmark = pytest.mark.mqtt

SHORT_RECIPE: dict[str, Any] = {
    "name": "short test cycle",
    "segments": [
        {"kind": "ramp", "target_mpa": 4.0, "rate_mpa_s": 2.0},
        {"kind": "hold", "duration_s": 1.0},
        {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.0},
    ],
}


def _state(sub: Subscriber) -> StatePayload | None:
    states = sub.on("/state")
    return StatePayload.model_validate(states[-1]) if states else None


def test_a_full_run_commands_telemetry_events_and_run_record(broker: Mosquitto, tmp_path: Path) -> None:
    config = make_config(broker, tmp_path)
    press_id = config.agent.press_id
    topics = PressTopics(press_id)
    replies: dict[str, Any] = {}

    async def body(sub: Subscriber) -> None:
        board = FakeBoard(speed=10.0)
        async with Agent(config, board, board.updates()) as agent:
            await eventually(
                lambda: (s := _state(sub)) is not None and s.board_connected and s.state == "idle",
                5,
                "idle state",
            )
            replies["bad_recipe"] = await send_command(
                broker,
                press_id,
                "alice",
                "load-recipe",
                {"recipe": {"name": "x", "segments": [{"kind": "ramp", "target_mpa": 500, "rate_mpa_s": 1}]}},
            )
            assert board.calls == []
            replies["load"] = await send_command(
                broker, press_id, "alice", "load-recipe", {"recipe": SHORT_RECIPE}
            )
            replies["start"] = await send_command(broker, press_id, "alice", "start", {})
            replies["start_again"] = await send_command(broker, press_id, "bob", "start", {})
            replies["unknown"] = await send_command(broker, press_id, "bob", "explode", {})
            replies["malformed"] = await send_command(broker, press_id, "bob", "pause", b"{oops")
            await eventually(lambda: bool(sub.on("/run/")), 15, "run summary")
            board.close()
            await asyncio.wait_for(agent.wait(), 5)
            await eventually(lambda: agent.spool.rows == 0, 5, "spool drained")

    sub = asyncio.run(with_subscriber(broker, f"{topics.base}/#", body))

    bad = CommandReply.model_validate(replies["bad_recipe"])
    assert not bad.accepted and bad.problems[0].field == "segments[0].target_mpa"
    assert bad.problems[0].value == 500 and bad.problems[0].limit == 400
    assert CommandReply.model_validate(replies["load"]).accepted
    start = CommandReply.model_validate(replies["start"])
    assert start.accepted and start.run_id is not None and start.board and start.board.value == 1
    again = CommandReply.model_validate(replies["start_again"])
    assert not again.accepted and "not allowed while the press is pressurising" in (again.error or "")
    assert "unknown verb 'explode'" in (CommandReply.model_validate(replies["unknown"]).error or "")
    assert "malformed JSON" in (CommandReply.model_validate(replies["malformed"]).error or "")

    # Telemetry: every sample from the first to the last, no gap, valid against the schema.
    seqs: list[int] = []
    for batch in sub.on("/telemetry"):
        TelemetryBatch.model_validate(batch)
        seqs.extend(s["seq"] for s in batch["samples"])
    assert len(seqs) > 800
    assert sorted(set(seqs)) == list(range(min(seqs), max(seqs) + 1)), "gap in the telemetry"

    events = [EventPayload.model_validate(e) for e in sub.on("/event")]
    kinds = [e.kind for e in events]
    assert "board_connected" in kinds and "run_started" in kinds and "run_ended" in kinds
    changes = [e.reason for e in events if e.kind == "state_changed"]
    assert "state ready -> pressurising" in " ".join(changes)
    assert any(e.kind == "command_rejected" and "start from bob" in e.reason for e in events)

    summary = RunSummary.model_validate(sub.on("/run/")[-1])
    assert summary.run_id == start.run_id
    assert summary.outcome == "complete" and summary.operator == "alice"
    assert summary.recipe is not None and summary.recipe.name == "short test cycle"
    assert summary.board is not None and summary.board.firmware_version == "fake-0.1"
    assert summary.peak_mpa is not None and 3.5 < summary.peak_mpa < 4.5

    folder = Path(summary.record_path)
    assert folder.parent == config.runs.folder
    with (folder / "trace.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary.samples > 500
    trace_seqs = [int(r["seq"]) for r in rows]
    assert trace_seqs == list(range(trace_seqs[0], trace_seqs[-1] + 1))
    assert json.loads((folder / "recipe.json").read_text())["name"] == "short test cycle"
    assert "run_ended" in (folder / "events.jsonl").read_text()
    assert RunSummary.model_validate_json((folder / "run.json").read_text()) == summary


def test_a_board_reset_mid_run_is_reported_and_the_agent_resynchronises(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = make_config(broker, tmp_path)
    press_id = config.agent.press_id
    topics = PressTopics(press_id)

    async def body(sub: Subscriber) -> None:
        board = FakeBoard(speed=5.0)
        async with Agent(config, board, board.updates()):
            await eventually(lambda: (s := _state(sub)) is not None and s.state == "idle", 5, "idle")
            assert (
                await send_command(broker, press_id, "alice", "load-recipe", {"recipe": GOOD_RECIPE}) or {}
            ).get("accepted")
            assert (await send_command(broker, press_id, "alice", "start", {}) or {}).get("accepted")
            await eventually(
                lambda: (s := _state(sub)) is not None and s.state == "pressurising", 5, "running"
            )
            await asyncio.sleep(0.3)
            board.reboot()
            await eventually(
                lambda: any(e.get("kind") == "board_reset" for e in sub.on("/event")), 5, "reset event"
            )
            await eventually(
                lambda: (
                    (s := _state(sub)) is not None
                    and s.board is not None
                    and s.board.boot_count == 2
                    and s.state == "idle"
                ),
                5,
                "resynchronised state",
            )
            await eventually(lambda: bool(sub.on("/run/")), 5, "interrupted run summary")
            await eventually(
                lambda: (
                    sum(1 for b in sub.on("/telemetry") for s in b["samples"] if s["boot_count"] == 2) >= 50
                ),
                5,
                "telemetry of the new boot",
            )
            board.close()

    sub = asyncio.run(with_subscriber(broker, f"{topics.base}/#", body))
    reset = next(e for e in sub.on("/event") if e["kind"] == "board_reset")
    assert (
        "boot count 1 -> 2" in reset["reason"]
        and "watchdog" in reset["reason"]
        and "interrupted" in reset["reason"]
    )
    summary = RunSummary.model_validate(sub.on("/run/")[-1])
    assert summary.outcome == "interrupted"
    # Telemetry continues with the new boot's sequence from 1, without gaps.
    boot2 = sorted(s["seq"] for b in sub.on("/telemetry") for s in b["samples"] if s["boot_count"] == 2)
    assert boot2 and boot2 == list(range(1, len(boot2) + 1))


def test_a_retained_or_stale_command_never_reaches_the_board(broker: Mosquitto, tmp_path: Path) -> None:
    config = make_config(broker, tmp_path, extra="[commands]\nmax_age_s = 2.0\n")
    press_id = config.agent.press_id
    topics = PressTopics(press_id)
    got: dict[str, Any] = {}

    async def body(sub: Subscriber) -> None:
        board = FakeBoard(speed=1.0)
        async with Agent(config, board, board.updates()) as agent:
            await eventually(lambda: (s := _state(sub)) is not None and s.state == "idle", 5, "idle")
            got["retained"] = await send_command(
                broker,
                press_id,
                "mallory",
                "load-recipe",
                {"recipe": GOOD_RECIPE},
                retain=True,
                timeout_s=1.0,
            )
            old = {"recipe": GOOD_RECIPE, "sent_at": "2026-01-01T00:00:00Z"}
            got["stale"] = await send_command(broker, press_id, "alice", "load-recipe", old)
            await eventually(lambda: agent.handler is not None and agent.handler.ignored == 1, 5, "ignored")
            board.close()
        assert board.calls == []

    asyncio.run(with_subscriber(broker, f"{topics.base}/#", body))
    assert got["retained"] is None
    assert "stale command" in got["stale"]["error"]


def test_commands_queued_while_the_agent_was_away_are_rejected_as_stale(
    broker: Mosquitto, tmp_path: Path
) -> None:
    # The persistent session keeps the agent's subscription: a start sent while the agent
    # is down is delivered when it comes back, and must not start the press.
    config = make_config(broker, tmp_path, extra="[commands]\nmax_age_s = 1.0\n")
    press_id = config.agent.press_id
    topics = PressTopics(press_id)

    async def first_run() -> None:
        board = FakeBoard()
        async with Agent(config, board, board.updates()):
            await asyncio.sleep(0.5)
            board.close()

    asyncio.run(first_run())

    async def while_away() -> None:
        await send_command(broker, press_id, "alice", "load-recipe", {"recipe": GOOD_RECIPE}, timeout_s=0.2)
        await asyncio.sleep(1.5)

    asyncio.run(while_away())

    async def body(sub: Subscriber) -> None:
        board = FakeBoard()
        async with Agent(config, board, board.updates()) as agent:
            await eventually(
                lambda: agent.handler is not None and agent.handler.rejected >= 1, 5, "stale rejected"
            )
            await eventually(
                lambda: any(e["kind"] == "command_rejected" for e in sub.on("/event")), 5, "rejection event"
            )
            board.close()
        assert board.calls == []

    sub = asyncio.run(with_subscriber(broker, f"{topics.base}/#", body))
    assert any("stale command" in e["reason"] for e in sub.on("/event") if e["kind"] == "command_rejected")


def test_a_command_whose_message_expiry_passed_is_never_executed(broker: Mosquitto, tmp_path: Path) -> None:
    # Age check off (1 h), MQTT 5 message expiry 1 s: the broker must drop the queued
    # command before the agent comes back, so it never reaches the handler at all.
    config = make_config(broker, tmp_path, extra="[commands]\nmax_age_s = 3600.0\n")
    press_id = config.agent.press_id

    async def first_run() -> None:
        board = FakeBoard()
        async with Agent(config, board, board.updates()):
            await asyncio.sleep(0.5)
            board.close()

    asyncio.run(first_run())

    async def while_away() -> None:
        recipe = {"recipe": GOOD_RECIPE}
        await send_command(broker, press_id, "alice", "load-recipe", recipe, expiry_s=1, timeout_s=0.2)
        await send_command(broker, press_id, "alice", "load-recipe", recipe, expiry_s=60, timeout_s=0.2)
        await asyncio.sleep(2.0)

    asyncio.run(while_away())

    async def back() -> tuple[int, list[str]]:
        board = FakeBoard()
        async with Agent(config, board, board.updates()) as agent:
            await eventually(lambda: agent.link.stats.commands_received >= 1, 5, "the unexpired command")
            await asyncio.sleep(0.5)
            board.close()
            return agent.link.stats.commands_received, board.calls

    received, calls = asyncio.run(back())
    assert received == 1  # only the one with 60 s of expiry left was delivered
    assert calls == ["load_recipe"]


def test_the_housekeeping_deletes_acknowledged_rows_from_the_spool(
    broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The spool deletes acknowledged rows in groups; made too big to fill here, only the
    # agent's once-a-second housekeeping deletes them (which bounds what a crash would
    # publish again).
    monkeypatch.setattr("isopress.agent.spool._DELETE_EVERY_ROWS", 10**9)
    config = make_config(broker, tmp_path)
    seen: list[int] = []

    async def body(sub: Subscriber) -> None:
        board = FakeBoard(speed=5.0)
        async with Agent(config, board, board.updates()) as agent:
            spool = agent.spool
            await eventually(lambda: len(sub.samples()) >= 5, 5, "samples published")
            await eventually(lambda: seen.append(spool.acknowledged_in_table) or max(seen) > 0, 5, "acked")
            # Without the housekeeping the count only grows while samples flow.
            await eventually(lambda: spool.acknowledged_in_table < max(seen), 3, "deleted by housekeeping")

    asyncio.run(with_subscriber(broker, PressTopics(config.agent.press_id).telemetry, body))
