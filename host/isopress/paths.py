"""Where the repository's non-Python trees (firmware, deploy) are on this machine."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["IsopressTreeError", "deploy_root", "firmware_root", "repo_root"]


class IsopressTreeError(RuntimeError):
    """The firmware or deploy tree cannot be found."""


def repo_root() -> Path:
    """The checkout that holds ``firmware/`` and ``deploy/``.

    ``ISOPRESS_HOME`` overrides; otherwise the checkout this package was installed from
    (``pip install -e .``, which is how ``make`` installs it).
    """
    env = os.environ.get("ISOPRESS_HOME")
    root = Path(env) if env else Path(__file__).resolve().parents[2]
    if not (root / "firmware").is_dir() or not (root / "protocol").is_dir():
        raise IsopressTreeError(
            f"no isopress checkout at {root}: set ISOPRESS_HOME to the repository "
            "(the folder with firmware/, protocol/ and deploy/)"
        )
    return root


def firmware_root() -> Path:
    """The ``firmware/`` tree (main.py, isofw/, boards/)."""
    return repo_root() / "firmware"


def protocol_root() -> Path:
    """The folder that holds the ``isoproto`` package sources."""
    return repo_root() / "protocol"


def deploy_root() -> Path:
    """The ``deploy/`` tree (systemd unit, Mosquitto config, udev rule)."""
    return repo_root() / "deploy"
