"""``isopress hil tune``: a bounded search that finds better gains than a detuned start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isopress.cli import main
from isopress.hil.scenario import control_fields, loads_scenario
from isopress.hil.tune import TUNED_GAINS, run_cost, tune

pytestmark = [pytest.mark.hil, pytest.mark.micropython]

DETUNED = """
name = "detuned"
[run]
sim_s = 75.0
[recipe]
segments = [
  {kind = "ramp", target_mpa = 30.0, rate_mpa_s = 1.0},
  {kind = "hold", duration_s = 20.0},
  {kind = "ramp", target_mpa = 0.0, rate_mpa_s = 1.0},
]
[control]
kp_per_s = 0.3
"""


def test_one_round_of_the_search_improves_a_detuned_controller() -> None:
    scenario = loads_scenario(DETUNED)
    result = tune(scenario, budget_s=0.1)  # the start and one round of steps, then stop
    assert result.evaluations == 1 + 2 * len(TUNED_GAINS)
    assert result.best.cost < result.start.cost
    assert result.start.gains["kp_per_s"] == 0.3
    assert result.best.gains["kp_per_s"] == 0.6  # one step up (x2) on the proportional gain
    for key, value in result.best.gains.items():
        lo, hi, _default = control_fields()[key]
        assert lo <= value <= hi
    assert result.best.cost == run_cost(scenario, result.best.metrics)
    doc = result.to_json()
    assert doc["control_toml"].startswith("[control]\nkp_per_s = 0.6\n")
    assert doc["best"]["cost"] < doc["start"]["cost"]


def test_the_command_prints_json_and_a_bad_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.toml"
    path.write_text(DETUNED)
    assert main(["hil", "tune", str(path), "--budget-s", "0.1"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert set(doc) >= {"best", "start", "evaluations", "elapsed_s", "control_toml"}
    assert set(doc["best"]["gains"]) == set(TUNED_GAINS) and "tried" in err
    path.write_text(DETUNED.replace("kp_per_s = 0.3", "kp_per_s = -1.0"))
    assert main(["hil", "tune", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "control.kp_per_s: must be >= 0" in err
