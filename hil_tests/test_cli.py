"""``isopress hil run``: one JSON object on stdout, exit 0 / 1 / 2, the trace and the plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _library import REPORT_KEYS, SCENARIOS

from isopress.cli import main
from isopress.hil.trace import read_trace_csv

pytestmark = [pytest.mark.hil, pytest.mark.micropython]

SHORT = """
name = "short e-stop"
[run]
sim_s = 12.0
[recipe]
segments = [{kind = "ramp", target_mpa = 20.0, rate_mpa_s = 2.0}, {kind = "hold", duration_s = 5.0}]
[[faults]]
kind = "estop"
t_s = 8.003
[expect]
final_state = "estop"
faults = [{code = "estop", max_latency_ms = 20}]
max_trip_latency_ms = 20.0
"""


def _write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["hil", "run", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_passing_scenario_exits_0_with_one_json_object_trace_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace, plot = tmp_path / "t.csv", tmp_path / "p.png"
    rc, out, err = _run(capsys, str(_write(tmp_path, SHORT)), "--trace", str(trace), "--plot", str(plot))
    assert rc == 0, err
    assert len(out.strip().splitlines()) == 1
    doc = json.loads(out)
    assert set(doc) >= set(REPORT_KEYS)
    assert doc["final_state"] == "estop" and doc["passed"] is True and doc["runtime"] == "micropython"
    assert [f["code"] for f in doc["faults"]] == ["estop"]
    (latency,) = doc["trip_latency_ms"]
    assert latency["kind"] == "estop" and 0.0 <= latency["latency_ms"] <= 11.0
    rows = read_trace_csv(trace)
    assert rows[-1].state == "estop" and abs(rows[-1].t_s - doc["sim_s"]) < 1e-9
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20000


def test_expectations_that_do_not_hold_exit_1_and_say_which(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SHORT.replace('final_state = "estop"', 'final_state = "complete"')
    rc, out, err = _run(capsys, str(_write(tmp_path, text)), "--runtime", "cpython", "--seed", "7")
    assert rc == 1
    doc = json.loads(out)
    assert doc["passed"] is False and doc["seed"] == 7 and doc["runtime"] == "cpython"
    assert doc["failures"] == ["expect.final_state: estop (expected complete)"]
    assert "expect.final_state" in err


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (SHORT.replace("sim_s = 12.0", "sim_s = 12.0\nspeed = 2"), "run.speed: unknown key"),
        (SHORT.replace("t_s = 8.003", "t_s = -1.0"), "faults[0].t_s: must be >= 0"),
        (SHORT.replace("[run]", "[plant]\nvolume_ml = 0.5\n[run]"), "plant.volume_ml: must be >= 1"),
        (SHORT.replace("[run]", "[control]\nkp_per_s = 99.0\n[run]"), "control.kp_per_s: must be <= 50"),
        (SHORT + "\n[[oops", "(file): not valid TOML"),
        (SHORT.replace("[run]", "[run]\ncontrol_rate_hz = 500"), "run.control_rate_hz:"),
    ],
)
def test_a_bad_file_exits_2_naming_the_key_and_prints_nothing_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, named: str
) -> None:
    rc, out, err = _run(capsys, str(_write(tmp_path, text)), "--runtime", "cpython")
    assert rc == 2
    assert out == ""
    assert named in err, err


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(capsys, str(tmp_path / "nope.toml"))
    assert rc == 2 and out == "" and "cannot read it" in err


def test_the_installed_command_runs_a_library_scenario() -> None:
    exe = Path(sys.executable).parent / "isopress"
    proc = subprocess.run(
        [str(exe), "hil", "run", str(SCENARIOS / "recipe_beyond_limits.toml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["rejected_at_load"] is True and doc["load_reason"] == "target_too_high"
