"""Scenario files: validation with named errors, defaults, and the board's JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isopress import micropython_port
from isopress.hil import sim_models
from isopress.hil.scenario import (
    FAULT_KINDS,
    FAULT_REACTIONS,
    PARAMS_BY_KIND,
    Scenario,
    ScenarioError,
    load_scenario,
    loads_scenario,
    scenario_key_paths,
)
from isoproto import codes

MINIMAL = """
name = "minimal"
[recipe]
segments = [{ kind = "ramp", target_mpa = 250.0, rate_mpa_s = 1.0 }, { kind = "hold", duration_s = 300.0 }]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as err:
        loads_scenario(text, "s.toml")
    assert str(err.value).startswith("s.toml: ")
    return err.value.problems


def test_a_minimal_file_gets_the_default_press() -> None:
    s = loads_scenario(MINIMAL)
    assert (s.profile.max_working_mpa, s.profile.trip_mpa) == (400.0, 420.0)
    assert (s.profile.max_ramp_up_mpa_s, s.profile.max_ramp_down_mpa_s) == (2.0, 1.0)
    assert s.plant_params() == sim_models.plant_defaults()
    assert s.transducer_params() == sim_models.transducer_defaults()
    assert s.transducer2 is None and s.faults == []
    assert (s.run.seed, s.run.control_rate_hz, s.run.telemetry_decimation) == (1, 100, 10)
    # No sim_s: start (1 s) + ramp (250 s) + hold (300 s) + a 30 s tail.
    assert s.sim_s == 581.0
    assert s.expect.rejected_at_load is False


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("bogus = 1", "recipe.bogus: unknown key"),
        ("[run]\nbogus = 1", "run.bogus: unknown key"),
        ("[run]\nseed = -3", "run.seed: must be >= 0"),
        ("[run]\nseed = 1.5", "run.seed: must be an integer"),
        (
            "[run]\ncontrol_rate_hz = 3",
            "run.control_rate_hz: the control period must be a whole number of ms",
        ),
        ("[run]\nsim_s = 0", "run.sim_s: must be > 0"),
        ("[plant]\nvolume_ml = 0.5", "plant.volume_ml: must be >= 1"),
        ("[plant]\nvolume_l = 0.5", "plant.volume_l: unknown key"),
        ("[plant]\nrelief_mpa = nan", "plant.relief_mpa: must be a finite number"),
        ("[plant]\nrelief_mpa = '440'", "plant.relief_mpa: must be a number"),
        ("[transducer]\nshunt_ohm = 250.0", "transducer.shunt_ohm: 21 mA through 250.0 ohm must stay below"),
        ("[transducer]\nadc_bits = 10.5", "transducer.adc_bits: must be a whole number"),
        ("[transducer2]\nnoise_pct_fs = -1", "transducer2.noise_pct_fs: must be >= 0"),
        (
            "[profile]\ntrip_mpa = 405",
            "profile.trip_mpa: must be above max_working_mpa + margin_mpa (410 MPa)",
        ),
        (
            "[profile]\nhost_lost_policy = 'panic'",
            "profile.host_lost_policy: must be one of 'finish' or 'depressurise'",
        ),
        (
            "[transducer]\nrange_mpa = 400.0",
            "profile.trip_mpa: must be below the transducer's range_mpa (400 MPa)",
        ),
        ("[[faults]]\nkind = 'estop'\nt_s = -1", "faults[0].t_s: must be >= 0"),
        ("[[faults]]\nkind = 'estop'", "faults[0].t_s: required"),
        ("[[faults]]\nkind = 'meteor'\nt_s = 1", "faults[0].kind: must be one of 'transducer_open_wire'"),
        ("[[faults]]\nkind = 'transducer_drift'\nt_s = 1", "faults[0].params.rate_mpa_s: required"),
        (
            "[[faults]]\nkind = 'transducer_drift'\nt_s = 1\nparams = {rate_mpa_s = 0}",
            "faults[0].params.rate_mpa_s: ",
        ),
        (
            "[[faults]]\nkind = 'transducer_short'\nt_s = 1\nparams = {current_ma = 20}",
            "faults[0].params.current_ma: must be > 21",
        ),
        ("[[faults]]\nkind = 'estop'\nt_s = 1\nparams = {hard = true}", "faults[0].params.hard: unknown key"),
        (
            "[[faults]]\nkind = 'burst_bag'\nt_s = 1\nduration_s = 2",
            "faults[0].duration_s: a burst_bag cannot be undone",
        ),
        (
            "[[faults]]\nkind = 'leak_change'\nt_s = 1\nparams = {leak_ml_s_per_mpa = 11}",
            "faults[0].params.leak_ml_s_per_mpa: must be within 0..10",
        ),
        (
            "[[faults]]\nkind = 'transducer_stuck'\nt_s = 1\nparams = {transducer = 2}",
            "faults[0].params.transducer: this scenario has no [transducer2]",
        ),
        (
            "[[faults]]\nkind = 'transducer_stuck'\nt_s = 1\nparams = {transducer = 3}",
            "faults[0].params.transducer: must be one of 1 or 2",
        ),
        ("[[faults]]\nkind = 'estop'\nt_s = 900", "faults[0].t_s: at or after the end of the run (581 s)"),
        ("[expect]\nfinal_state = 'done'", "expect.final_state: unknown state 'done'"),
        ("[expect]\nfaults = [{code = 'boom'}]", "expect.faults[0].code: unknown fault code 'boom'"),
        (
            "[expect]\nno_faults = true\nfaults = [{code = 'estop'}]",
            "expect.no_faults: contradicts the faults listed",
        ),
        ("[expect]\nmax_overshoot_mpa = 'small'", "expect.max_overshoot_mpa: must be a number"),
        ("[expect]\nmax_overshoot_mpa = -1", "expect.max_overshoot_mpa: must be >= 0"),
        ("[expect]\nno_faults = 1", "expect.no_faults: must be true or false"),
    ],
)
def test_a_bad_key_or_value_is_named_with_the_reason(extra: str, expected: str) -> None:
    found = problems(MINIMAL + "\n" + extra + "\n")
    assert any(p.startswith(expected) for p in found), found


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        ("[]", "recipe.segments: must have at least 1 item(s)"),
        ("[{ kind = 'ramp', target_mpa = 10.0 }]", "recipe.segments[0].rate_mpa_s: required for a ramp"),
        (
            "[{ kind = 'hold', duration_s = 5.0, target_mpa = 3.0 }]",
            "recipe.segments[0].target_mpa: not used by a hold",
        ),
        (
            "[{ kind = 'ramp', target_mpa = -1.0, rate_mpa_s = 1.0 }]",
            "recipe.segments[0].target_mpa: must be >= 0",
        ),
        (
            "[{ kind = 'ramp', target_mpa = 1.0, rate_mpa_s = 0.0 }]",
            "recipe.segments[0].rate_mpa_s: must be > 0",
        ),
        ("[{ kind = 'dwell' }]", "recipe.segments[0].kind: must be one of 'ramp' or 'hold'"),
    ],
)
def test_recipe_segments_are_checked(segments: str, expected: str) -> None:
    found = problems(f"name = 'r'\n[recipe]\nsegments = {segments}\n")
    assert any(p.startswith(expected) for p in found), found


def test_an_unknown_top_level_key_is_named() -> None:
    assert problems("colour = 'red'\n" + MINIMAL) == ["colour: unknown key"]


def test_every_problem_is_listed_at_once() -> None:
    text = MINIMAL.replace('name = "minimal"', 'name = ""') + "[run]\nseed = -1\n[plant]\nvolume_ml = 0\n"
    assert problems(text) == [
        "name: must not be empty",
        "run.seed: must be >= 0",
        "plant.volume_ml: must be >= 1",
    ]


def test_recipe_beyond_the_profile_is_a_valid_file_the_board_rejects() -> None:
    text = (
        "name = 'too high'\n[recipe]\nsegments = [{ kind = 'ramp', target_mpa = 600.0, rate_mpa_s = 9.0 }]\n"
    )
    text += "[expect]\nrejected_at_load = true\n"
    assert loads_scenario(text).expect.rejected_at_load


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read it"):
        load_scenario(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[recipe\n')
    with pytest.raises(ScenarioError, match=r"bad.toml: 1 problem\n  \(file\): not valid TOML"):
        load_scenario(bad)
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL)
    assert load_scenario(good).name == "minimal"


def test_model_sections_use_the_models_own_keys() -> None:
    paths = scenario_key_paths()
    for key in sim_models.plant_defaults():
        assert f"plant.{key}" in paths
    for key in sim_models.transducer_defaults():
        assert f"transducer.{key}" in paths
    assert not [p for p in paths if p.startswith("plant.") and p[6:] not in sim_models.plant_defaults()]
    assert set(FAULT_KINDS) == set(PARAMS_BY_KIND) == set(FAULT_REACTIONS)
    for kind in FAULT_KINDS:
        if kind.startswith("transducer_"):
            assert kind.removeprefix("transducer_") in sim_models.transducer_fault_kinds()


FULL = """
name = "everything"
[run]
seed = 7
control_rate_hz = 200
start_s = 2.0
sim_s = 100.0
[plant]
volume_ml = 400
[transducer]
noise_pct_fs = 0.1
[transducer2]
offset_error_mpa = 1.5
[profile]
host_lost_policy = "finish"
host_lost_timeout_s = 2.5
[recipe]
name = "r1"
segments = [{ kind = "ramp", target_mpa = 50.0, rate_mpa_s = 1.0 }, { kind = "hold", duration_s = 20.0 }]
[[faults]]
kind = "estop"
t_s = 30.0
duration_s = 5.0
[[faults]]
kind = "transducer_stuck"
t_s = 10.0
params = { transducer = 2 }
[[faults]]
kind = "transducer_spike"
t_s = 12.0
params = { rate_hz = 5.0 }
[[faults]]
kind = "leak_change"
t_s = 40.0
params = { leak_ml_s_per_mpa = 0.001 }
[[faults]]
kind = "host_lost"
t_s = 50.0
[[faults]]
kind = "pump_stuck_on"
t_s = 60.0
duration_s = 1.0
"""


def test_board_json_is_plain_json_with_the_timeline_in_time_order() -> None:
    s = loads_scenario(FULL)
    doc = json.loads(json.dumps(s.to_board_json()))
    assert doc["version"] == 1
    assert doc["run"] == {
        "sim_ms": 100000,
        "start_ms": 2000,
        "control_period_ms": 5,
        "telemetry_decimation": 10,
    }
    assert doc["seeds"] == {"plant": 21, "transducer": 22, "transducer2": 23}
    assert doc["plant"]["volume_ml"] == 400.0 and doc["plant"]["relief_mpa"] == 440.0
    assert doc["transducer2"]["offset_error_mpa"] == 1.5 and doc["transducer2"]["noise_pct_fs"] == 0.05
    assert doc["profile"]["host_lost_policy"] == codes.HOST_LOST_FINISH
    assert doc["profile"]["host_lost_timeout_ms"] == 2500
    assert doc["recipe"]["segments"] == [
        {"kind": codes.SEG_RAMP, "target_mpa": 50.0, "rate_mpa_s": 1.0},
        {"kind": codes.SEG_HOLD, "duration_s": 20.0},
    ]
    timeline = [(e["t_ms"], e["fault"], e["action"]) for e in doc["events"]]
    assert timeline == [
        (10000, 1, "transducer"),
        (12000, 2, "transducer"),
        (30000, 0, "input"),
        (35000, 0, "input"),
        (40000, 3, "set_leak"),
        (50000, 4, "input"),
        (60000, 5, "pump_stuck_on"),
        (61000, 5, "pump_stuck_on"),
    ]
    stuck, spike = doc["events"][0], doc["events"][1]
    assert (stuck["index"], stuck["kind"], stuck["value"]) == (1, "stuck", -1.0)
    assert (spike["kind"], spike["value"], spike["rate_hz"]) == ("spike", 0.0, 5.0)
    assert doc["events"][2]["input"] == "estop_pressed" and doc["events"][2]["on"] is True
    assert doc["events"][3]["on"] is False
    assert doc["events"][5] == {
        "t_ms": 50000,
        "fault": 4,
        "action": "input",
        "input": "host_link",
        "on": False,
    }


BOARD_SIDE = """
import json, sys
from plant import Plant
from transducer import Transducer
with open(sys.argv[1]) as f:
    doc = json.load(f)
plant = Plant(doc["plant"], doc["seeds"]["plant"])
sensors = [Transducer(doc["transducer"], doc["seeds"]["transducer"])]
if doc["transducer2"] is not None:
    sensors.append(Transducer(doc["transducer2"], doc["seeds"]["transducer2"]))
applied = 0
for ev in doc["events"]:
    if ev["action"] == "transducer":
        sensors[ev["index"]].set_fault(ev["kind"], ev["value"], ev["rate_hz"])
    elif ev["action"] == "set_leak":
        plant.set_leak(ev["leak_ml_s_per_mpa"])
    elif ev["action"] == "burst_bag":
        plant.burst_bag()
    elif ev["action"] == "pump_stuck_on":
        plant.set_pump_stuck_on(ev["on"])
    applied += 1
plant.step(1.0, 0.5, 0.0, False)
print("OK", applied, len(sensors), sensors[0].read_u16(plant.pressure_mpa) > 0)
"""


def test_the_virtual_board_can_read_the_json_under_micropython(tmp_path: Path) -> None:
    doc = tmp_path / "scenario.json"
    doc.write_text(json.dumps(loads_scenario(FULL).to_board_json()))
    script = tmp_path / "board_side.py"
    script.write_text(BOARD_SIDE)
    proc = micropython_port.run(script, [str(doc)], path=micropython_port.firmware_search_path("sim"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "OK 8 2 True"


def test_with_seed_changes_only_the_seed() -> None:
    s = loads_scenario(FULL)
    t = s.with_seed(99)
    assert t.run.seed == 99 and t.to_board_json()["seeds"]["plant"] == 297
    assert t.model_dump(exclude={"run"}) == s.model_dump(exclude={"run"})
    with pytest.raises(ScenarioError, match=r"run\.seed: must be >= 0"):
        s.with_seed(-1)


def test_a_scenario_is_frozen() -> None:
    s = loads_scenario(MINIMAL)
    with pytest.raises(ValueError, match="frozen"):
        s.name = "other"  # type: ignore[misc]
    assert isinstance(s, Scenario)
