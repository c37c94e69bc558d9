"""Helpers for the serial-session tests: settings, a consumer that records every burst, waiting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from isopress.agent.config import ReconnectSection, SerialSection
from isopress.agent.model import (
    BoardEvent,
    BoardInfo,
    BoardUpdate,
    LinkDown,
    Sample,
    SessionCheckpoint,
    SessionNotice,
)
from isopress.agent.session import SerialSession


def settings(
    url: str, *, period_ms: int = 100, timeout_ms: int = 1000, initial_s: float = 0.05, max_s: float = 0.2
) -> SerialSection:
    """Fast heartbeats and reconnects, so that tests take seconds."""
    return SerialSection(
        port=url,
        heartbeat_period_ms=period_ms,
        heartbeat_timeout_ms=timeout_ms,
        reconnect=ReconnectSection(initial_s=initial_s, max_s=max_s),
    )


@dataclass
class Collector:
    """Consumes ``session.updates()`` like the agent does and keeps every burst."""

    bursts: list[list[BoardUpdate]] = field(default_factory=list)

    async def run(self, updates: AsyncIterator[list[BoardUpdate]]) -> None:
        async for burst in updates:
            self.bursts.append(list(burst))

    def all(self) -> list[BoardUpdate]:
        return [u for b in self.bursts for u in b]

    def samples(self, boot: int | None = None) -> list[Sample]:
        return [u for u in self.all() if isinstance(u, Sample) and (boot is None or u.boot_count == boot)]

    def events(self, boot: int | None = None) -> list[BoardEvent]:
        return [u for u in self.all() if isinstance(u, BoardEvent) and (boot is None or u.boot_count == boot)]

    def infos(self) -> list[BoardInfo]:
        return [u for u in self.all() if isinstance(u, BoardInfo)]

    def downs(self) -> list[LinkDown]:
        return [u for u in self.all() if isinstance(u, LinkDown)]

    def notices(self, kind: str | None = None) -> list[SessionNotice]:
        return [u for u in self.all() if isinstance(u, SessionNotice) and (kind is None or u.kind == kind)]

    def checkpoints(self) -> list[SessionCheckpoint]:
        return [u for u in self.all() if isinstance(u, SessionCheckpoint)]


def seqs(records: list[Sample]) -> list[int]:
    return sorted(s.seq for s in records)


def newest(records: list[Sample]) -> int:
    """The highest seq among the samples (-1 when there is none)."""
    return max((s.seq for s in records), default=-1)


def event_seqs(records: list[BoardEvent]) -> list[int]:
    return sorted(e.event_seq for e in records)


def contiguous(values: list[int]) -> bool:
    """Every value from the first to the last, each once."""
    return bool(values) and values == list(range(values[0], values[-1] + 1))


def settled(session: SerialSession) -> bool:
    """Nothing missing in either stream, and every burst taken by the consumer."""
    return session.streams.missing == 0 and session.queued_bursts == 0


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(session: SerialSession) -> AsyncIterator[Collector]:
    """The session entered, its updates consumed into a Collector."""
    collector = Collector()
    async with session:
        task = asyncio.create_task(collector.run(session.updates()))
        try:
            yield collector
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
