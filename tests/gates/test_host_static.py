"""Gates: host/ passes mypy --strict; everything passes ruff."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from isopress.paths import repo_root

BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False, timeout=600)


def test_host_passes_mypy_strict() -> None:
    root = repo_root()
    proc = _run([str(BIN / "mypy"), "--config-file", str(root / "pyproject.toml")], root)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_gate_catches_an_untyped_function(tmp_path: Path) -> None:
    root = repo_root()
    bad = tmp_path / "throwaway.py"
    bad.write_text("def scale(pressure):\n    return pressure * 2\n")
    proc = _run([str(BIN / "mypy"), "--config-file", str(root / "pyproject.toml"), str(bad)], tmp_path)
    assert proc.returncode == 1
    assert "throwaway.py:1: error" in proc.stdout


def test_everything_passes_ruff() -> None:
    root = repo_root()
    proc = _run([str(BIN / "ruff"), "check", "--no-cache", "."], root)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_gate_catches_an_unused_import(tmp_path: Path) -> None:
    root = repo_root()
    bad = tmp_path / "throwaway.py"
    bad.write_text("import os\n\nx = 1\n")
    ruff = [str(BIN / "ruff"), "check", "--no-cache", "--config", str(root / "pyproject.toml")]
    proc = _run([*ruff, str(bad)], tmp_path)
    assert proc.returncode == 1
    assert "F401" in proc.stdout


def test_board_code_may_not_import_modules_micropython_lacks(tmp_path: Path) -> None:
    # firmware/ruff.toml bans typing, dataclasses, enum, logging, ... in board code; the
    # throwaway tree below has the repository's two config files and one bad module.
    root = repo_root()
    shutil.copy(root / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "firmware").mkdir()
    shutil.copy(root / "firmware" / "ruff.toml", tmp_path / "firmware" / "ruff.toml")
    bad = tmp_path / "firmware" / "throwaway.py"
    bad.write_text("from dataclasses import dataclass\n\nprint(dataclass)\n")
    proc = _run([str(BIN / "ruff"), "check", "--no-cache", "firmware"], tmp_path)
    assert proc.returncode == 1
    assert "TID251" in proc.stdout and "dataclasses" in proc.stdout
