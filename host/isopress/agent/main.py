"""``isopress agent``: run the agent as a service (SIGTERM/SIGINT stop it cleanly).

The serial session is not part of this build yet: until it is integrated, the agent runs
only against the FAKE board (``--fake-board``), which is for manual testing of the MQTT
interface, spool and run records, never for pressing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from .config import AgentConfig, ConfigError, load_config

__all__ = ["run_agent", "serve"]

log = logging.getLogger("isopress.agent")


async def serve(config: AgentConfig, *, fake_speed: float = 1.0) -> None:
    """Run the agent with the fake board until SIGTERM/SIGINT or the board stream ends."""
    from .fake_board import FakeBoard
    from .service import Agent

    board = FakeBoard(speed=fake_speed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Agent(config, board, board.updates()) as agent:
        log.warning("running against the FAKE board (no serial session in this build)")
        waiter = asyncio.create_task(agent.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiter, stopper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        board.close()
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
        print(
            f"isopress agent: the serial session (port {config.serial.port}) is not integrated "
            "in this build yet; use --fake-board to exercise MQTT, spool and run records (FAKE press)",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=config.agent.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from .service import AgentFailed

    try:
        asyncio.run(serve(config, fake_speed=fake_speed))
    except AgentFailed as exc:
        log.error("%s", exc)
        return 1
    return 0
