"""Commands an authorised operator sends that still must not run: retained, expired, stale, replayed.

Against the deployed secure broker with the agent logged in as its agent user. Each
refusal is paired with the same command done right, which runs, so every test would fail
if the guard let the bad one through or if nothing could run at all.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from security_helpers import (
    GOOD_RECIPE,
    Lab,
    agent_config,
    command_payload,
    eventually,
    handled,
    publish_command,
    running_agent,
)

from isopress.agent.replay import ReplayGuard
from isopress.agent.topics import PressTopics
from isopress.broker import Mosquitto

pytestmark = pytest.mark.mqtt

LOAD = {"recipe": GOOD_RECIPE}


def test_a_retained_command_is_never_executed(secure_broker: Mosquitto, lab: Lab, tmp_path: Path) -> None:
    # alice may publish on her command topic, and the broker has no per-topic retain
    # rule: the agent itself must refuse, now and at every reconnect that delivers the
    # retained message again.
    config = agent_config(secure_broker, lab, tmp_path / "agent", "press-01")

    async def run(send: bool) -> tuple[int, int, list[str], dict[str, Any] | None]:
        async with running_agent(config) as (agent, board):
            if send:
                await publish_command(
                    secure_broker,
                    lab,
                    "alice",
                    "press-01",
                    "alice",
                    "load-recipe",
                    command_payload(LOAD),
                    retain=True,
                    reply_timeout_s=0,
                )
            assert agent.handler is not None
            await eventually(lambda: agent.handler is not None and agent.handler.ignored == 1, 5, "ignored")
            control = await publish_command(
                secure_broker, lab, "alice", "press-01", "alice", "pause", command_payload()
            )
            return agent.handler.ignored, handled(agent), list(board.calls), control

    first = asyncio.run(run(send=True))
    again = asyncio.run(run(send=False))  # a new connection: the broker hands the retained command out again
    for ignored, total, calls, control in (first, again):
        assert ignored == 1 and total == 2 and calls == []
        assert control is not None and "pause is not allowed while the press is idle" in control["error"]

    async def fresh() -> list[str]:
        async with running_agent(config) as (_agent, board):
            reply = await publish_command(
                secure_broker, lab, "alice", "press-01", "alice", "load-recipe", command_payload(LOAD)
            )
            assert reply is not None and reply["accepted"]
            return list(board.calls)

    assert asyncio.run(fresh()) == ["load_recipe"]  # the same command, not retained, runs


def test_a_stale_command_is_refused_naming_sent_at(
    secure_broker: Mosquitto, lab: Lab, tmp_path: Path
) -> None:
    config = agent_config(secure_broker, lab, tmp_path / "agent", "press-01")

    async def body() -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[str]]:
        async with running_agent(config) as (_agent, board):
            old = datetime.now(UTC) - timedelta(seconds=30)
            stale = await publish_command(
                secure_broker,
                lab,
                "alice",
                "press-01",
                "alice",
                "load-recipe",
                command_payload(LOAD, sent_at=old),
            )
            calls = list(board.calls)
            fresh = await publish_command(
                secure_broker, lab, "alice", "press-01", "alice", "load-recipe", command_payload(LOAD)
            )
            return stale, fresh, calls

    stale, fresh, calls_after_stale = asyncio.run(body())
    assert stale is not None and not stale["accepted"] and "stale command" in stale["error"]
    assert [p["field"] for p in stale["problems"]] == ["sent_at"]
    assert calls_after_stale == []
    assert fresh is not None and fresh["accepted"]


def test_a_command_whose_message_expiry_passed_never_reaches_the_agent(
    secure_broker: Mosquitto, lab: Lab, tmp_path: Path
) -> None:
    # The agent is away (its persistent session keeps the subscription); a command with
    # 1 s of MQTT 5 message expiry waits past it and must be dropped by the broker, while
    # one with 60 s left is delivered when the agent comes back.
    config = agent_config(
        secure_broker, lab, tmp_path / "agent", "press-01", extra="[commands]\nmax_age_s = 3600.0\n"
    )

    async def first_run() -> None:
        async with running_agent(config):
            pass

    asyncio.run(first_run())

    async def while_away() -> None:
        for expiry_s in (1, 60):
            await publish_command(
                secure_broker,
                lab,
                "alice",
                "press-01",
                "alice",
                "load-recipe",
                command_payload(LOAD),
                expiry_s=expiry_s,
                reply_timeout_s=0,
            )
        await asyncio.sleep(2.0)

    asyncio.run(while_away())

    async def back() -> tuple[int, list[str]]:
        async with running_agent(config, ready=False) as (agent, board):
            await eventually(lambda: agent.link.stats.commands_received >= 1, 10, "the unexpired command")
            await eventually(lambda: board.calls == ["load_recipe"], 10, "the unexpired command executed")
            await asyncio.sleep(0.5)
            return agent.link.stats.commands_received, list(board.calls)

    received, calls = asyncio.run(back())
    assert received == 1 and calls == ["load_recipe"]


def test_a_replayed_command_is_not_executed(secure_broker: Mosquitto, lab: Lab, tmp_path: Path) -> None:
    config = agent_config(
        secure_broker, lab, tmp_path / "agent", "press-01", extra="[commands]\nmax_age_s = 2.0\n"
    )
    payload = command_payload(LOAD)

    async def body() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with running_agent(config) as (_agent, board):
            out["first"] = await publish_command(
                secure_broker, lab, "alice", "press-01", "alice", "load-recipe", payload
            )
            out["calls_first"] = list(board.calls)
            # The very same message again, twice (byte for byte, each with new correlation
            # data). The press is now ready, where a load-recipe is allowed: only the
            # guard stands in the way.
            out["copy"] = await publish_command(
                secure_broker, lab, "alice", "press-01", "alice", "load-recipe", payload
            )
            out["copy_again"] = await publish_command(
                secure_broker, lab, "alice", "press-01", "alice", "load-recipe", payload
            )
            out["calls_copies"] = list(board.calls)
            # After max_age_s the guard has forgotten the id, and the age check refuses it.
            await asyncio.sleep(2.2)
            out["late_copy"] = await publish_command(
                secure_broker, lab, "alice", "press-01", "alice", "load-recipe", payload
            )
            # The same recipe with a new command_id is a new command: it runs.
            out["new"] = await publish_command(
                secure_broker, lab, "alice", "press-01", "alice", "load-recipe", command_payload(LOAD)
            )
            out["calls_end"] = list(board.calls)
        return out

    out = asyncio.run(body())
    assert out["first"]["accepted"] and out["calls_first"] == ["load_recipe"]
    for key in ("copy", "copy_again"):
        reply = out[key]
        assert reply is not None and not reply["accepted"] and "replayed command" in reply["error"], reply
        assert [(p["field"], p["reason"]) for p in reply["problems"]] == [("command_id", "replayed")]
    assert out["calls_copies"] == ["load_recipe"]
    assert "stale command" in out["late_copy"]["error"]
    assert out["new"]["accepted"] and out["calls_end"] == ["load_recipe", "load_recipe"]


# -- the replay guard and the reply topic on their own ------------------------------------
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def test_the_replay_guard_refuses_a_seen_id_per_operator_and_forgets_it_when_stale() -> None:
    guard = ReplayGuard(max_age_s=10.0)
    assert guard.admit("alice", "id-00000001", NOW, NOW) is None
    refusal = guard.admit("alice", "id-00000001", NOW, NOW + timedelta(seconds=9))
    assert refusal is not None and refusal.reason == "replayed"
    # Another operator's id space is its own (nobody can spend bob's ids by guessing them).
    assert guard.admit("bob", "id-00000001", NOW, NOW) is None
    # Ten seconds after sent_at the age check still accepts it, so the guard still knows it...
    assert guard.admit("alice", "id-00000001", NOW, NOW + timedelta(seconds=10)) is not None
    # ...a moment later the age check refuses it, and the guard lets go.
    assert guard.admit("carol", "id-00000009", NOW, NOW + timedelta(seconds=10.5)) is None
    assert len(guard) == 1  # only carol's is left
    # A command sent "in the future" (within the allowed skew) is kept until its own sent_at ages out.
    ahead = NOW + timedelta(seconds=5)
    assert guard.admit("dave", "id-00000002", ahead, NOW) is None
    assert guard.admit("dave", "id-00000002", ahead, NOW + timedelta(seconds=14)) is not None


def test_the_replay_guard_is_bounded_and_never_forgets_early() -> None:
    guard = ReplayGuard(max_age_s=10.0, capacity=100)
    for i in range(100):
        assert guard.admit("alice", f"id-{i:08d}", NOW, NOW) is None
    full = guard.admit("alice", "id-new-00001", NOW, NOW + timedelta(seconds=1))
    assert full is not None and full.reason == "too_many_commands"
    assert guard.admit("alice", "id-00000000", NOW, NOW + timedelta(seconds=1)) is not None  # still known
    assert len(guard) == 100
    # Once they age out, there is room again, and memory went back down.
    later = NOW + timedelta(seconds=11)
    assert guard.admit("alice", "id-new-00001", later, later) is None
    assert len(guard) == 1


def test_the_replay_guard_stays_flat_over_many_commands() -> None:
    guard = ReplayGuard(max_age_s=1.0)
    start = time.perf_counter()
    for i in range(20_000):
        now = NOW + timedelta(seconds=i * 0.01)  # 100 commands/s: ~100 within max_age_s
        assert guard.admit("alice", uuid.uuid4().hex, now, now) is None
        assert len(guard) <= 102
    assert time.perf_counter() - start < 30  # generous: a hang, not a speed target


def test_replies_go_only_under_the_operators_own_reply_topic() -> None:
    topics = PressTopics("press-01")
    own = "isopress/press-01/reply/alice"
    assert topics.reply_topic("alice", None) == own
    assert topics.reply_topic("alice", own) == own
    assert topics.reply_topic("alice", own + "/rr/7") == own + "/rr/7"
    for other in (
        "isopress/press-01/reply/bob",
        "isopress/press-01/reply/bob/x",
        "isopress/press-01/reply/alice2",
        "isopress/press-02/reply/alice",
        "isopress/press-01/telemetry",
        "replies/alice",
        own + "/+",
        own + "/#",
        own + "/\x00",
        own + "/" + "x" * 2000,
    ):
        assert topics.reply_topic("alice", other) == own, other


def test_the_docs_give_the_replay_guards_real_capacity() -> None:
    from isopress.agent.replay import REPLAY_CAPACITY

    docs = Path(__file__).resolve().parents[2] / "docs"
    for page in ("mqtt.md", "security.md"):
        assert f"{REPLAY_CAPACITY} " in (docs / page).read_text(), page
