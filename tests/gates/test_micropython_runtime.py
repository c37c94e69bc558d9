"""Gates: dual-runtime tests really run under MicroPython; the RP2040 heap limit holds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dualrun import run_module_under_micropython
from isopress import micropython_port
from isopress.paths import firmware_root, repo_root

_THROWAWAY = (
    "def test_runs_everywhere():\n"
    "    assert sum([1, 2, 3]) == 6\n"
    "\n"
    "def test_needs_cpython():\n"
    "    import typing  # the unix port has no typing module\n"
    "    assert typing\n"
)


def test_runner_reports_each_test_with_its_micropython_traceback(tmp_path: Path) -> None:
    module = tmp_path / "test_throwaway.py"
    module.write_text(_THROWAWAY)
    results, _log = run_module_under_micropython(module, ["test_runs_everywhere", "test_needs_cpython"])
    assert results["test_runs_everywhere"]["ok"] is True
    failed = results["test_needs_cpython"]
    assert failed["ok"] is False
    assert "ImportError" in failed["tb"]
    assert "test_throwaway.py" in failed["tb"] and "line 5" in failed["tb"]


def test_a_micropython_only_failure_fails_the_pytest_run(tmp_path: Path) -> None:
    # A throwaway copy of the dual-test machinery with one module that passes under
    # CPython and fails under MicroPython: pytest must report exactly that failure.
    tests = repo_root() / "tests"
    (tmp_path / "dual").mkdir()
    shutil.copy(tests / "dualrun.py", tmp_path / "dualrun.py")
    shutil.copy(tests / "dual" / "conftest.py", tmp_path / "dual" / "conftest.py")
    shutil.copy(tests / "dual" / "_mprun.py", tmp_path / "dual" / "_mprun.py")
    (tmp_path / "conftest.py").write_text("")
    (tmp_path / "dual" / "test_throwaway.py").write_text(_THROWAWAY)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "--rootdir", str(tmp_path), "dual"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "test_needs_cpython[cpython] PASSED" in out
    assert "test_needs_cpython[micropython] FAILED" in out
    assert "test_runs_everywhere[micropython] PASSED" in out
    assert "under MicroPython" in out and "ImportError" in out
    assert "1 failed, 3 passed" in out


def test_firmware_boots_on_the_virtual_board_in_an_rp2040_sized_heap() -> None:
    proc = micropython_port.run(
        firmware_root() / "main.py",
        ["--sim-s", "12"],
        path=micropython_port.firmware_search_path("sim"),
        heap_bytes=micropython_port.RP2040_HEAP_BYTES,
        timeout_s=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert summary["sim_s"] >= 10.0
    assert summary["faults"] == 0
    assert summary["state"] == "running"
    assert summary["pressure_mpa"] > 5.0  # the recipe really pressurised the vessel


def test_maintenance_mode_starts_no_loop_and_leaves_the_outputs_safe(tmp_path: Path) -> None:
    """Held at boot, the maintenance input leaves main.py before boot(): the REPL stays free."""
    script = (
        "import board\n"
        "made = []\n"
        "real_make = board.make\n"
        "def make():\n"
        "    b = real_make()\n"
        "    made.append(b)\n"
        "    return b\n"
        "board.make = make\n"
        "import main\n"
        "b = made[0]\n"
        "print('safe', b.outputs_safe(), 'ticks', b.loop_ticks, 'irq', b.irq_ticks())\n"
    )
    (tmp_path / "maint.py").write_text(script)
    proc = micropython_port.run(
        tmp_path / "maint.py",
        ["--sim-s", "5", "--maintenance", "1"],
        path=[firmware_root(), *micropython_port.firmware_search_path("sim")],
        heap_bytes=micropython_port.RP2040_HEAP_BYTES,
        timeout_s=60,
    )
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    assert "isopress: maintenance mode" in out
    assert "safe True ticks 0 irq 0" in out  # outputs safe, no control tick, no interrupt
    assert '"sim_s"' not in out  # the loop never ran, so no summary


def test_heap_limit_is_enforced(tmp_path: Path) -> None:
    script = tmp_path / "greedy.py"
    script.write_text("buf = bytearray(200 * 1024)\nprint('allocated', len(buf))\n")
    limited = micropython_port.run(script, path=[], heap_bytes=micropython_port.RP2040_HEAP_BYTES)
    assert limited.returncode != 0
    assert b"MemoryError" in limited.stderr + limited.stdout
    unlimited = micropython_port.run(script, path=[])
    assert unlimited.returncode == 0 and b"allocated 204800" in unlimited.stdout
