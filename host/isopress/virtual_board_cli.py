"""``isopress virtual-board``: a virtual board on a pty until Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import signal
import sys
import time
from types import FrameType

from .firmware_build import BuildError, ConfigError
from .virtual_board import VirtualBoard, VirtualBoardError

__all__ = ["run_virtual_board"]


class _Stop(Exception):
    pass


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def run_virtual_board(runtime: str, seed: int, config_text: str | None) -> int:
    """Start the board, print its port, run until Ctrl-C/SIGTERM; print its summary on
    stderr. Exit code 0 on a stop, 1 when the firmware died or did not start."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    board = VirtualBoard(runtime=runtime, seed=seed, config_text=config_text)
    try:
        board.start()
        print(f"virtual board on {board.port}", flush=True)
        while True:
            board.check_alive()
            time.sleep(0.2)
    except (KeyboardInterrupt, _Stop):
        summary = board.stop()
        if summary is not None:
            print(json.dumps(summary), file=sys.stderr)
        return 0
    except (VirtualBoardError, BuildError, ConfigError) as exc:
        board.stop()
        print(exc, file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
