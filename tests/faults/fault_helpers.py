"""What the fault tests share: a station on the session's Mosquitto with a journalling board,
a persistent subscriber, an operator, and the wait for "everything the board produced"."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from isopress.board_journal import BoardJournal
from isopress.broker import Mosquitto
from isopress.rig import BrokerHandle, OperatorClient, Station, StationSpec
from isopress.soak import PersistentSubscriber


def handle(broker: Mosquitto) -> BrokerHandle:
    return BrokerHandle(broker.host, broker.port, "mosquitto", broker.pid)


async def until(
    check: Callable[[], bool], timeout_s: float, what: str, station: Station | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            log = station.agent_log_text()[-3000:] if station is not None else ""
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{log}")
        if station is not None:
            station.check_alive()
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def subscribed(broker: Mosquitto, press_id: str) -> AsyncIterator[PersistentSubscriber]:
    sub = PersistentSubscriber(broker.host, broker.port, press_id)
    task = asyncio.create_task(sub.run())
    try:
        await asyncio.wait_for(sub.subscribed.wait(), 10)
        yield sub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def idle(sub: PersistentSubscriber) -> bool:
    s = sub.state
    return (
        s is not None and bool(s.get("board_connected")) and s.get("state") in ("idle", "ready", "complete")
    )


def run_station(
    spec: StationSpec,
    broker: Mosquitto,
    body: Callable[[Station, PersistentSubscriber], Awaitable[None]],
) -> Station:
    """Start ``spec``'s station, subscribe to its press, wait until the press is idle (30 s at
    most), then ``await body(station, sub)``. Returns the station, stopped: its journal, board
    summary and agent log stay readable. A fault proxy, if there is one, must not have failed."""

    async def at_idle(station: Station) -> None:
        async with subscribed(broker, spec.press_id) as sub:
            await until(lambda: idle(sub), 30, "the press idle", station)
            await body(station, sub)

    with Station(spec) as station:
        asyncio.run(at_idle(station))
        proxy = station.proxy
        assert proxy is None or proxy.error is None, proxy.error
    return station


def live(sub: PersistentSubscriber, run_id: int, *states: str) -> bool:
    latest = sub.latest
    return latest is not None and latest["run_id"] == run_id and latest["state"] in states


def run_ended(sub: PersistentSubscriber, run_id: int) -> dict[str, Any] | None:
    return next((r for r in sub.runs.values() if r.get("board_run_id") == run_id), None)


async def command(
    broker: Mosquitto, press_id: str, verb: str, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    async with OperatorClient(broker.host, broker.port, operator="alice") as op:
        return await op.command(press_id, verb, fields, timeout_s=20.0)


def journal_of(station: Station) -> BoardJournal:
    board = station.board
    return BoardJournal.read(board.journal_path(board.boot_count), board.boot_count)


async def everything_delivered(
    station: Station, sub: PersistentSubscriber, timeout_s: float = 30.0, *, first_seq: int | None = None
) -> int:
    """Wait until the subscriber has every sample the board produced so far, from ``first_seq``
    (default: the first one it got); returns the last seq that covers."""
    boot = station.board.boot_count
    await until(lambda: any(b == boot for b, _s in sub.bodies), timeout_s, f"boot {boot}'s samples", station)
    journal = journal_of(station)
    upto = max(journal.samples)
    first = first_seq if first_seq is not None else min(seq for b, seq in sub.bodies if b == boot)
    await until(lambda: sub.has_all(boot, first, upto), timeout_s, f"samples {first}..{upto}", station)
    return upto


def report(name: str, figures: dict[str, Any]) -> None:
    """The figures a test measured, one JSON line in its output (pytest -s shows it)."""
    print(f"\nFIGURES {name}: {json.dumps(figures)}")
