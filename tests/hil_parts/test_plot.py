"""The run plot: a real PNG of a sensible size, drawn from a realistic run."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from _mini_press import run_mini_press

from isopress.hil.metrics import compute_metrics
from isopress.hil.plot import plot_run
from isopress.hil.scenario import loads_scenario

SCENARIO = """
name = "plot check: open wire mid-ramp"
[run]
sim_s = 60.0
[recipe]
segments = [
  { kind = "ramp", target_mpa = 40.0, rate_mpa_s = 2.0 },
  { kind = "hold", duration_s = 10.0 },
  { kind = "ramp", target_mpa = 0.0, rate_mpa_s = 1.0 },
]
[[faults]]
kind = "transducer_open_wire"
t_s = 12.0
"""


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data[-12:-8] == b"\x00\x00\x00\x00" and data[-8:-4] == b"IEND", "PNG not finished"
    return width, height


def test_plot_writes_a_png_with_the_reaction_close_up(tmp_path: Path) -> None:
    scenario = loads_scenario(SCENARIO)
    trace = run_mini_press(scenario)
    metrics = compute_metrics(trace, scenario)
    assert metrics.trip_latency_ms[0].safe_t_s is not None  # the stand-in dumped on the open wire
    with_zoom = plot_run(trace, scenario, tmp_path / "run.png", metrics)
    plain = plot_run(trace, scenario, tmp_path / "plain.png")
    w, h = _png_size(with_zoom)
    pw, ph = _png_size(plain)
    assert (w, h) == (1870, 1100)  # 17 x 10 in at 110 dpi: room for the close-up
    assert (pw, ph) == (1430, 1100)
    assert with_zoom.stat().st_size > 50_000  # four panels of data, not an empty frame


def test_plot_refuses_an_empty_trace(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="trace: empty"):
        plot_run([], loads_scenario(SCENARIO), tmp_path / "x.png")
