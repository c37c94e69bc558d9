"""Copy a built firmware bundle onto a board with ``mpremote``.

``isopress firmware deploy --port /dev/ttyACM0`` builds (or takes) a bundle and runs one
``mpremote`` invocation that copies the modules first and ``main.py`` last, then resets
the board. Copying main.py last means an interrupted deploy leaves the old main.py in
place rather than a new one that imports half-copied modules. The copy itself needs a
real board; the command line is tested without one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["DeployError", "deploy", "deploy_command", "mpremote_executable"]


class DeployError(RuntimeError):
    """The bundle cannot be deployed (missing files, no mpremote, mpremote failed)."""


def mpremote_executable() -> str:
    """The venv's ``mpremote`` (installed with the project), else the one on PATH."""
    here = Path(sys.executable).parent / "mpremote"
    if here.exists():
        return str(here)
    found = shutil.which("mpremote")
    if found:
        return found
    raise DeployError("mpremote not found: install the project (`make deps`) or `pip install mpremote`")


def deploy_command(bundle_dir: Path, port: str, mpremote: str = "mpremote") -> list[str]:
    """The mpremote command line that copies ``bundle_dir`` onto the board at ``port``.

    Packages (folders) go with ``fs cp -r``, then every other file except main.py,
    then main.py, then a reset so the board boots the new firmware.
    """
    if not port:
        raise DeployError("no serial port given (e.g. --port /dev/ttyACM0)")
    if not (bundle_dir / "main.py").is_file():
        raise DeployError(f"{bundle_dir}: not a firmware bundle (no main.py); build it first")
    if not (bundle_dir / "config.json").is_file():
        raise DeployError(f"{bundle_dir}: the bundle has no config.json")
    entries = sorted(bundle_dir.iterdir())
    folders = [str(p) for p in entries if p.is_dir()]
    files = [str(p) for p in entries if p.is_file() and p.name != "main.py"]
    cmd = [mpremote, "connect", port]
    if folders:
        cmd += ["fs", "cp", "-r", *folders, ":", "+"]
    if files:
        cmd += ["fs", "cp", *files, ":", "+"]
    cmd += ["fs", "cp", str(bundle_dir / "main.py"), ":main.py", "+", "reset"]
    return cmd


Runner = Callable[[Sequence[str]], int]


def _run(cmd: Sequence[str]) -> int:
    return subprocess.run(list(cmd), check=False).returncode


def deploy(bundle_dir: Path, port: str, runner: Runner | None = None) -> int:
    """Copy ``bundle_dir`` onto the board at ``port``; returns mpremote's exit code."""
    cmd = deploy_command(bundle_dir, port, mpremote_executable())
    rc = (runner or _run)(cmd)
    if rc != 0:
        raise DeployError(
            f"mpremote exited with {rc}: is the board on {port}? A board running the firmware "
            "ignores mpremote: hold its maintenance input low, reset it, then deploy again"
        )
    return rc
