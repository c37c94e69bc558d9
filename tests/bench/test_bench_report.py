"""make bench's report: README shows bench/results.md; BENCH picks modules; rows merge."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from bench.report import BenchSelectionError, merge, readme_table, select, table, with_table


def test_readme_shows_the_latest_results_table(repo_root: Path) -> None:
    shown = readme_table((repo_root / "README.md").read_text())
    assert shown is not None, "README.md lost its <!-- bench:start --> / <!-- bench:end --> markers"
    assert shown == (repo_root / "bench" / "results.md").read_text()


def test_results_md_is_the_table_of_results_json(repo_root: Path) -> None:
    report = json.loads((repo_root / "bench" / "results.json").read_text())
    assert (repo_root / "bench" / "results.md").read_text() == table(report)


def test_the_table_has_a_baseline_column_with_the_ratio() -> None:
    report = {
        "machine": "m",
        "run": "r",
        "results": [
            {"metric": "a | b", "value": 3, "unit": "ms", "target": "<= 5"},
            {
                "metric": "c",
                "value": 30,
                "unit": "B",
                "target": "",
                "baseline": 90,
                "baseline_label": "JSON",
                "ratio": 3.0,
            },
        ],
    }
    lines = table(report).splitlines()
    assert "| metric | value | target | baseline (ratio) |" in lines
    assert "| a \\| b | 3 ms | <= 5 |  |" in lines
    assert "| c | 30 B |  | JSON: 90 B (3.0x) |" in lines
    readme = "intro\n<!-- bench:start -->\nold\n<!-- bench:end -->\nrest\n"
    new = with_table(readme, table(report))
    assert readme_table(new) == table(report) and new.startswith("intro\n") and new.endswith("rest\n")


def _modules(*names: str) -> tuple[types.ModuleType, ...]:
    return tuple(types.ModuleType(f"bench.{n}") for n in names)


def test_bench_names_a_subset_by_name_or_unique_prefix() -> None:
    mods = _modules("protocol_bench", "fleet_bench", "spool_bench", "session_bench")
    assert select(mods, None) == mods and select(mods, " ") == mods
    assert [m.__name__ for m in select(mods, "spool_bench,fleet")] == [
        "bench.fleet_bench",
        "bench.spool_bench",
    ]
    with pytest.raises(
        BenchSelectionError, match="'nope' matches no benchmark; the benchmarks: protocol_bench"
    ):
        select(mods, "nope")
    with pytest.raises(BenchSelectionError, match="matches several"):
        select(mods, "s")


def test_a_subset_run_replaces_its_rows_and_keeps_the_others_in_list_order() -> None:
    order = ["a", "b", "c"]
    previous = [
        {"module": "a", "metric": "a1"},
        {"module": "b", "metric": "b1"},
        {"module": "c", "metric": "c1"},
        {"module": "gone", "metric": "x"},
    ]
    fresh = [{"module": "b", "metric": "b2"}, {"module": "b", "metric": "b3"}]
    merged = merge(previous, fresh, ["b"], order)
    assert [r["metric"] for r in merged] == ["a1", "b2", "b3", "c1"]
