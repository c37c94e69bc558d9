"""The MicroPython scripts of the firmware benchmarks run, briefly, in the heaps the benchmarks
give them: a firmware or sim change that no longer fits (both scripts once died with
MemoryError after the sim board grew) shows in `make test`, not first in `make bench`."""

from __future__ import annotations

import pytest

from bench.control_step import control_step, trip_latency
from bench.link_bench import service_time

pytestmark = [pytest.mark.micropython]


def test_the_control_step_script_runs_in_the_rp2040_heap() -> None:
    result = control_step(ticks=3000)
    assert result["n"] == 3000, result
    assert result["median_us"] > 0 and result["alloc_max"] > 0, result


def test_the_trip_latency_script_runs() -> None:
    result = trip_latency(cases=4)
    assert result["n"] == 4, result
    assert 0 < result["max_us"] <= 2000, result  # the 2 ms


def test_the_link_service_script_runs() -> None:
    result = service_time(ticks=3000)
    assert result["n"] == 3000, result
    assert result["samples_sent"] > 0 and result["history_chunks"] > 0, result
