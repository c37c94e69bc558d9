"""Run plain-assert test modules under the MicroPython unix port (used by tests/dual)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from isopress import micropython_port

DUAL_DIR = Path(__file__).resolve().parent / "dual"
RUNNER = DUAL_DIR / "_mprun.py"
RESULT_TAG = "@@ISOPRESS-RESULT "
MICROPYTHON_TIMEOUT_S = 600.0


def find_test_functions(path: Path) -> list[str]:
    """Top-level ``test_*`` functions of a module, in source order."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]


def run_module_under_micropython(path: Path, names: list[str]) -> tuple[dict[str, dict[str, Any]], str]:
    """Run the module's tests in one MicroPython process; results by test name, and the log."""
    proc = micropython_port.run(
        RUNNER,
        [path.stem, *names],
        path=[path.parent, *micropython_port.firmware_search_path("sim")],
        timeout_s=MICROPYTHON_TIMEOUT_S,
    )
    out = proc.stdout.decode(errors="replace")
    results: dict[str, dict[str, Any]] = {}
    other: list[str] = []
    for line in out.splitlines():
        if line.startswith(RESULT_TAG):
            record = json.loads(line[len(RESULT_TAG) :])
            results[record["test"]] = record
        else:
            other.append(line)
    log = "\n".join(other) + "\n" + proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        log += f"\n[micropython exited with {proc.returncode}]"
    return results, log
