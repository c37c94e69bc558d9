"""The serial session's checkpoint is stored with the samples it covers and read back at start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from agent_helpers import RecordingBoard, make_config, make_info, make_sample

from isopress.agent.model import BoardUpdate, SessionCheckpoint
from isopress.agent.service import Agent, read_session_checkpoint
from isopress.broker import free_port


def test_the_checkpoint_survives_the_agent_and_comes_back(tmp_path: Path) -> None:
    config = make_config(None, tmp_path, port=free_port())  # no broker: everything stays spooled

    async def session() -> AsyncIterator[list[BoardUpdate]]:
        yield [make_info()]
        yield [make_sample(1), make_sample(2), SessionCheckpoint("boot 1: all <= 2")]
        yield [make_sample(3)]

    async def run() -> None:
        async with Agent(config, RecordingBoard(), session()) as agent:
            await asyncio.wait_for(agent.wait(), 5)
            assert agent.spool.rows >= 3

    assert read_session_checkpoint(config) is None
    asyncio.run(run())
    assert read_session_checkpoint(config) == "boot 1: all <= 2"


def test_a_dying_task_surfaces_as_agent_failed(tmp_path: Path) -> None:
    import pytest

    from isopress.agent.service import AgentFailed

    config = make_config(None, tmp_path, port=free_port())

    async def session() -> AsyncIterator[list[BoardUpdate]]:
        yield [make_info()]
        raise RuntimeError("serial port vanished")

    async def run() -> None:
        async with Agent(config, RecordingBoard(), session()) as agent:
            await asyncio.wait_for(agent.wait(), 5)

    with pytest.raises(AgentFailed, match="dispatch failed: RuntimeError\\('serial port vanished'\\)"):
        asyncio.run(run())


def test_a_full_spool_is_reported_as_an_event(tmp_path: Path) -> None:
    import json

    config = make_config(None, tmp_path, port=free_port())
    config = config.model_copy(update={"spool": config.spool.model_copy(update={"max_rows": 100})})

    async def session() -> AsyncIterator[list[BoardUpdate]]:
        yield [make_info()]
        yield [make_sample(seq) for seq in range(1, 301)]
        await asyncio.sleep(1.5)  # the housekeeping reports once a second

    async def run() -> list[dict[str, object]]:
        async with Agent(config, RecordingBoard(), session()) as agent:
            await asyncio.wait_for(agent.wait(), 5)
            bodies = [json.loads(r.body) for r in agent.spool.oldest(1000) if r.topic.endswith("/event")]
            assert agent.spool.rows <= 100
            return [b for b in bodies if b["kind"] == "spool_overflow"]

    (report,) = asyncio.run(run())
    assert report["source"] == "agent" and report["detail"] >= 200
    assert "samples" in str(report["reason"]) and "dropped unpublished" in str(report["reason"])
