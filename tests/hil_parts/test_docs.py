"""docs/scenarios.md and docs/simulator.md say exactly what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from isopress.hil import sim_models
from isopress.hil.scenario import (
    FAULT_KINDS,
    FAULT_REACTIONS,
    fault_param_names,
    loads_scenario,
    scenario_key_paths,
)
from isopress.hil.trace import TRACE_COLUMNS
from isopress.paths import repo_root

DOCS = repo_root() / "docs"
_ROW = re.compile(r"^\|\s*`([^`]+)`(?:,\s*`([^`]+)`)?\s*\|(.*)$")


def section(path: Path, heading: str) -> str:
    """The text under a '## ' heading, up to the next '## ' heading."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def table_rows(text: str) -> dict[str, list[str]]:
    """First-column key(s) in backticks -> the other cells, for every table row in text."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = _ROW.match(line)
        if match:
            cells = [c.strip() for c in match.group(3).rstrip("|").split("|")]
            for key in filter(None, (match.group(1), match.group(2))):
                assert key not in rows, f"{key} documented twice"
                rows[key] = cells
    return rows


def test_every_scenario_key_is_documented_and_every_documented_key_exists() -> None:
    documented = set(table_rows(section(DOCS / "scenarios.md", "Keys")))
    keys = set(scenario_key_paths())
    assert documented - keys == set(), "documented but not in the model"
    assert keys - documented == set(), "in the model but not documented"


def test_documented_model_defaults_are_the_models() -> None:
    rows = table_rows(section(DOCS / "scenarios.md", "Keys"))
    for prefix, defaults in (
        ("plant", sim_models.plant_defaults()),
        ("transducer", sim_models.transducer_defaults()),
    ):
        for key, value in defaults.items():
            assert float(rows[f"{prefix}.{key}"][1]) == value, f"{prefix}.{key}"


def test_fault_kinds_table_matches_the_code() -> None:
    rows = table_rows(section(DOCS / "scenarios.md", "Fault kinds"))
    assert set(rows) == set(FAULT_KINDS)
    for kind, (params, reaction, _meaning) in rows.items():
        assert sorted(re.findall(r"`(\w+)`", params)) == fault_param_names(kind), kind
        assert reaction == FAULT_REACTIONS[kind], kind


def test_the_example_in_the_scenario_doc_loads() -> None:
    text = (DOCS / "scenarios.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```toml\n(.*?)```", text, re.DOTALL)
    scenario = loads_scenario(example, "docs/scenarios.md example")
    assert scenario.transducer2 == {"offset_error_mpa": 0.5}
    assert scenario.faults[0].kind == "transducer_drift"


def test_trace_columns_and_board_json_keys_are_documented() -> None:
    assert set(table_rows(section(DOCS / "scenarios.md", "The trace"))) == set(TRACE_COLUMNS)
    keys_part, actions_part = section(DOCS / "scenarios.md", "The virtual board's JSON").split(
        "Event actions"
    )
    example = re.findall(
        r"```toml\n(.*?)```", (DOCS / "scenarios.md").read_text(encoding="utf-8"), re.DOTALL
    )[0]
    board = loads_scenario(example).to_board_json()
    assert set(table_rows(keys_part)) == set(board)
    actions = set(table_rows(actions_part))
    every_kind = "name = 'all'\n[recipe]\nsegments = [{kind = 'hold', duration_s = 100.0}]\n"
    for i, kind in enumerate(FAULT_KINDS):
        params = {"transducer_drift": "{rate_mpa_s = 1.0}", "leak_change": "{leak_ml_s_per_mpa = 0.001}"}
        every_kind += f"[[faults]]\nkind = '{kind}'\nt_s = {i}\nparams = {params.get(kind, '{}')}\n"
    produced = {e["action"] for e in loads_scenario(every_kind).to_board_json()["events"]}
    assert produced == actions


_SPAN = re.compile(r"^-?[\d.e+-]+ to -?[\d.e+-]+$")


def _parameter_table(heading_text: str) -> dict[str, list[str]]:
    rows = table_rows(heading_text)
    return {k: v for k, v in rows.items() if len(v) == 3 and _SPAN.match(v[1])}


def test_simulator_doc_gives_every_parameter_with_its_default_and_range() -> None:
    for heading, defaults, ranges in (
        ("Plant", sim_models.plant_defaults(), sim_models.plant_ranges()),
        ("Transducer", sim_models.transducer_defaults(), sim_models.transducer_ranges()),
    ):
        rows = _parameter_table(section(DOCS / "simulator.md", heading))
        assert set(rows) == set(defaults), heading
        for key, (default, span, _meaning) in rows.items():
            lo, hi = (float(x) for x in span.split(" to "))
            assert float(default) == defaults[key], key
            assert (lo, hi) == ranges[key], key
