"""The scenario library, run once per test session under MicroPython (two at a time: the
machine's two cores), shared by the tests that judge it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from _library import LIBRARY, SCENARIOS

from isopress.hil.runner import RunOptions, RunResult, board_bundle, run_scenario
from isopress.hil.scenario import load_scenario


def _run(name: str) -> RunResult:
    return run_scenario(load_scenario(SCENARIOS / f"{name}.toml"), RunOptions(runtime="micropython"))


@pytest.fixture(scope="session")
def library_results() -> dict[str, RunResult]:
    """Every scenario of the library, run under the MicroPython unix port."""
    board_bundle()  # build once before the workers race for it
    # Longest first, so the two workers finish together.
    order = sorted(LIBRARY, key=lambda n: -load_scenario(SCENARIOS / f"{n}.toml").sim_s)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(order, pool.map(_run, order), strict=True))
    return results
