"""``isopress agent``: run the agent as a service (SIGTERM/SIGINT stop it cleanly).

The agent talks to the board over the serial session (:mod:`.session`) on ``serial.port``
(or ``--port``). A port URL pyserial cannot parse is a configuration error (exit 2); a
port that does not open yet (board unplugged, virtual board not started) is retried with
the ``serial.reconnect`` backoff while the agent stays online on MQTT. ``--fake-board``
replaces the board by a FAKE press for tests and manual trials of the MQTT interface,
spool and run records; it never drives anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import AsyncIterable, Sequence
from pathlib import Path

from .board import BoardPort
from .config import AgentConfig, ConfigError, load_config
from .model import BoardUpdate

__all__ = ["run_agent", "serve"]

log = logging.getLogger("isopress.agent")


async def _run_until_stopped(
    config: AgentConfig, board: BoardPort, updates: AsyncIterable[Sequence[BoardUpdate]], stop: asyncio.Event
) -> None:
    from .service import Agent

    async with Agent(config, board, updates) as agent:
        waiter = asyncio.create_task(agent.wait())
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, stopper):
                task.cancel()
        failure = waiter.exception() if waiter.done() and not waiter.cancelled() else None
        # The counters of this run, for the operator's log and the fault tests and soak.
        log.info("mqtt counters: %s", json.dumps(dataclasses.asdict(agent.link.stats)))
        if failure is not None:
            raise failure  # AgentFailed: a task died
        with contextlib.suppress(asyncio.CancelledError):
            await waiter


async def serve(config: AgentConfig, *, fake_board: bool = False, fake_speed: float = 1.0) -> None:
    """Run the agent until SIGTERM/SIGINT (or, with the fake board, until its stream ends)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if fake_board:
        from .fake_board import FakeBoard

        board = FakeBoard(speed=fake_speed)
        log.warning("running against the FAKE board (--fake-board): no press is driven")
        try:
            await _run_until_stopped(config, board, board.updates(), stop)
        finally:
            board.close()
    else:
        from .service import read_session_checkpoint
        from .session import SerialSession

        checkpoint = read_session_checkpoint(config)
        # Samples are published once per batch period: reading the port more often than
        # that would only add wake-ups (see SerialSession, read_interval_s).
        read_interval_s = config.telemetry.batch_period_ms / 1000.0
        async with SerialSession(
            config.serial, checkpoint=checkpoint, read_interval_s=read_interval_s
        ) as session:
            try:
                await _run_until_stopped(config, session, session.updates(), stop)
            finally:
                log.info("serial session counters: %s", json.dumps(dataclasses.asdict(session.stats)))
    log.info("agent stopped")


def run_agent(config_path: Path, *, port: str | None, fake_board: bool, fake_speed: float) -> int:
    """The ``isopress agent`` command; returns the exit code."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if port is not None:
        config = config.model_copy(update={"serial": config.serial.model_copy(update={"port": port})})
    if not fake_board:
        from .serial_link import check_port_url

        problem = check_port_url(config.serial.port)
        if problem:
            where = "--port" if port is not None else f"{config_path}: serial.port"
            print(f"{where}: {problem}", file=sys.stderr)
            return 2
    logging.basicConfig(
        level=config.agent.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from .service import AgentFailed

    try:
        asyncio.run(serve(config, fake_board=fake_board, fake_speed=fake_speed))
    except AgentFailed as exc:
        log.error("%s", exc)
        return 1
    return 0
