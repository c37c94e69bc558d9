"""Gate: firmware/ and protocol/ type-check with pyright against the MicroPython stubs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from isopress.paths import repo_root

PYRIGHT = Path(sys.executable).parent / "pyright"


def _pyright(config: Path, cwd: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [str(PYRIGHT), "-p", str(config), "--outputjson"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def _errors(report: dict[str, Any]) -> list[str]:
    return [
        f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}"
        for d in report["generalDiagnostics"]
        if d["severity"] == "error"
    ]


def test_board_code_type_checks_against_micropython_stubs() -> None:
    root = repo_root()
    assert (root / "typings" / "machine.pyi").exists(), "MicroPython stubs missing: run make deps"
    report = _pyright(root / "pyrightconfig.json", root)
    assert report["summary"]["filesAnalyzed"] >= 10
    assert not _errors(report), "\n".join(_errors(report))


def _throwaway_project(tmp_path: Path, source: str) -> Path:
    (tmp_path / "fw").mkdir()
    (tmp_path / "fw" / "throwaway.py").write_text(source)
    typings = repo_root() / "typings"
    config = {
        "include": ["fw"],
        "typeshedPath": str(typings),
        "stubPath": str(typings),
        "pythonVersion": "3.11",
        "typeCheckingMode": "standard",
        "reportMissingModuleSource": "none",
    }
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config))
    return tmp_path / "pyrightconfig.json"


def test_gate_catches_a_wrong_argument_to_a_machine_api(tmp_path: Path) -> None:
    config = _throwaway_project(
        tmp_path,
        "from machine import PWM, Pin\n\npump = PWM(Pin(16))\npump.duty_u16('50%')\n",
    )
    errors = _errors(_pyright(config, tmp_path))
    assert len(errors) == 1
    assert "throwaway.py:4:" in errors[0]
    assert "duty_u16" in errors[0]
