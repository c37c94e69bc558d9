"""``isopress demo`` end to end, as a user runs it: a process, its output, its files.

The demo starts everything itself (broker, virtual board under MicroPython on a pty, the
agent process) and presses a recipe commanded over MQTT. Here with a ~10 s recipe
(``--recipe``); the default one (about 60 s) is what ``make demo`` runs.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isopress.agent.payloads import RunSummary

pytestmark = [pytest.mark.mqtt, pytest.mark.micropython, pytest.mark.slow]

ISOPRESS = str(Path(sys.executable).parent / "isopress")
SHORT = {
    "name": "demo test: 4 MPa",
    "segments": [
        {"kind": "ramp", "target_mpa": 4.0, "rate_mpa_s": 2.0},
        {"kind": "hold", "duration_s": 2.0},
        {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.0},
    ],
}


def _demo(workdir: Path, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ISOPRESS, "demo", "--workdir", str(workdir), "--progress", "log", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _field(out: str, label: str) -> str:
    match = re.search(rf"^\s+{label}\s+(\S.*)$", out, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{out}"
    return match.group(1).strip()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
def test_the_demo_presses_a_recipe_and_leaves_a_complete_run_record(broker: str, tmp_path: Path) -> None:
    recipe = tmp_path / "short.json"
    recipe.write_text(json.dumps(SHORT))
    started = time.monotonic()
    proc = _demo(tmp_path / "demo", "--recipe", str(recipe), "--broker", broker)
    wall_s = time.monotonic() - started
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert ("Mosquitto (pid" in out) == (broker == "mosquitto")
    # the live progress: state, pressure, setpoint, segment
    progress = re.findall(
        r"^progress \[\s*[\d.]+ s\] (\w+)\s+(-?[\d.]+) MPa\s+setpoint\s+(-?[\d.]+) MPa\s+segment (\d)/3",
        out,
        re.MULTILINE,
    )
    assert len(progress) >= 5, out
    states = {p[0] for p in progress}
    assert {"pressurising", "depressurising"} <= states, states
    assert max(float(p[1]) for p in progress) > 2.0 and {p[3] for p in progress} >= {"1", "3"}
    assert "load-recipe accepted" in out and "start accepted" in out
    # the record: trace CSV + plot PNG + outcome complete, where the output says
    folder = Path(_field(out, "run record"))
    assert folder.is_dir() and folder.parent == tmp_path / "demo" / "press" / "runs"
    summary = RunSummary.model_validate_json((folder / "run.json").read_text())
    assert summary.outcome == "complete" and summary.operator == "demo"
    assert summary.recipe is not None and summary.recipe.name == SHORT["name"]
    assert summary.board is not None and summary.board.calibration_id == "sim-factory"
    assert summary.metrics is not None and summary.metrics["final_state"] == "complete"
    assert 3.5 < float(summary.metrics["peak_mpa"]) < 4.5  # type: ignore[arg-type]
    trace = Path(_field(out, "trace"))
    with trace.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary.samples and len(rows) > 500  # 100 Hz for ~10 s
    seqs = [int(r["seq"]) for r in rows]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no sample missing from the trace"
    plot = Path(_field(out, "plot"))
    assert plot == folder / "plot.png" and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # how to watch the telemetry, with the broker's port
    watch = _field(out, "telemetry")
    assert re.fullmatch(r"mosquitto_sub -h 127\.0\.0\.1 -p \d+ -t 'isopress/demo/#' -v", watch), watch
    assert "--keep-running" in out
    assert "board outputs safe and board stopped, agent stopped (exit 0), broker stopped" in out
    print(f"demo ({broker}) took {wall_s:.1f} s")  # a figure, not a threshold (see bench/)


def test_ctrl_c_mid_run_stops_everything_safely_and_the_next_demo_closes_the_run(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.Popen(
        [ISOPRESS, "demo", "--workdir", str(workdir), "--progress", "log", "--broker", "mosquitto"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("progress") and "pressurising" in line:
            break
    assert any("start accepted" in line for line in lines), "".join(lines)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
    rest, err = proc.communicate(timeout=60)
    out = "".join(lines) + rest
    assert proc.returncode == 130, out + err
    assert "abort accepted" in out
    assert "board outputs safe and board stopped, agent stopped (exit 0), broker stopped" in out
    pids = [int(p) for p in re.findall(r"\bpid (\d+)", out)]
    assert len(pids) == 3, out  # broker, board, agent
    assert not [pid for pid in pids if _alive(pid)], "a part of the demo outlived it"
    run_id = re.search(r"start accepted, run (\S+)", out)
    assert run_id is not None
    record = workdir / "press" / "runs" / run_id.group(1)
    assert RunSummary.model_validate_json((record / "run.json").read_text()).outcome == "running"

    # The next demo boots the board again (boot count + 1): the open record is closed.
    short = tmp_path / "short.json"
    short.write_text(json.dumps(SHORT))
    second = _demo(workdir, "--recipe", str(short), "--broker", "embedded")
    assert second.returncode == 0, second.stdout + second.stderr
    closed = RunSummary.model_validate_json((record / "run.json").read_text())
    assert closed.outcome == "aborted" and closed.final_state == "boot" and closed.ended_at is not None
    assert (record / "plot.png").exists() and (record / "metrics.json").exists()


def test_a_bad_recipe_file_is_refused_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "segments": [{"kind": "ramp", "target_mpa": 5.0}]}))
    proc = _demo(tmp_path / "demo", "--recipe", str(bad), timeout_s=30)
    assert proc.returncode == 2
    assert "segments.0.ramp.rate_mpa_s: Field required" in proc.stderr, proc.stderr
    assert not (tmp_path / "demo").exists()  # nothing started


def test_an_agent_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    proc = _demo(tmp_path / "demo", "--press-id", "no spaces allowed", "--broker", "embedded", timeout_s=90)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "isopress demo: no spaces allowed: the agent exited" in proc.stderr, proc.stderr
    assert "press_id" in proc.stderr  # the agent's own config error, passed on
    assert "board outputs safe and board stopped" in proc.stdout and "broker stopped" in proc.stdout
