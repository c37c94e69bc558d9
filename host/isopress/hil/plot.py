"""A picture of a HIL run: pressure, setpoint, outputs, segments, states and faults.

One PNG (matplotlib, Agg backend, no display needed) with four panels over time:

1. true and measured pressure, the setpoint, the profile's limits; recipe segments shaded
   and named; injected faults as red lines, faults the board raised as markers;
2. the tracking error (true and measured minus setpoint) while the recipe runs, on a
   scale that shows it (the pressure panel cannot: 0.1 MPa on a 400 MPa axis);
3. pump and vent duty;
4. the dump valve and the board's state;

and, when faults were injected, a close-up of each reaction beside the run (up to four):
onset in the plant to safe outputs, the latency in its title.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .metrics import FaultReaction, Metrics
from .scenario import Scenario, Segment
from .trace import TraceRow

__all__ = ["plot_run"]

# One colour per board state (isoproto.names.STATE_NAMES), calm for running, loud for faults.
_STATE_COLOURS = {
    "boot": "#bbbbbb",
    "idle": "#d9d9d9",
    "ready": "#c6dbef",
    "pressurising": "#9ecae1",
    "holding": "#74c476",
    "depressurising": "#fdd0a2",
    "paused": "#dadaeb",
    "complete": "#a1d99b",
    "fault": "#fb6a4a",
    "estop": "#cb181d",
}
_SEGMENT_SHADES = ("#f2f6fb", "#fbf7ef")
_MAX_ZOOMS = 4  # reaction close-ups drawn beside the run (the first injected faults)
_RUNNING = ("pressurising", "holding", "depressurising")


def _segment_label(seg: Segment) -> str:
    if seg.kind == "ramp":
        return f"ramp → {seg.target_mpa:g} MPa @ {seg.rate_mpa_s:g} MPa/s"
    return f"hold {seg.duration_s:g} s"


def _runs(rows: Sequence[TraceRow], key: Callable[[TraceRow], Any]) -> list[tuple[float, float, Any]]:
    """Contiguous stretches of equal key(row): (start_s, end_s, value)."""
    out: list[tuple[float, float, Any]] = []
    start = rows[0].t_s
    value = key(rows[0])
    for row in rows[1:]:
        v = key(row)
        if v != value:
            out.append((start, row.t_s, value))
            start, value = row.t_s, v
    out.append((start, rows[-1].t_s, value))
    return out


def _row_index_at(rows: Sequence[TraceRow], t_s: float) -> int:
    """Index of the last row at or before t_s (-1 when none)."""
    return bisect.bisect_right(rows, t_s, key=lambda r: r.t_s) - 1


def _title(scenario: Scenario, metrics: Metrics | None) -> str:
    if metrics is None:
        return scenario.name
    parts = [f"final: {metrics.final_state}", f"peak {metrics.peak_mpa:.1f} MPa"]
    parts.append(f"overshoot {metrics.overshoot_mpa:.2f} MPa")
    if metrics.hold_error_rms_mpa is not None:
        parts.append(f"hold RMS {metrics.hold_error_rms_mpa:.3f} MPa")
    if metrics.ramp_rate_error_pct is not None:
        parts.append(f"ramp {metrics.ramp_rate_error_pct:+.2f} %")
    latencies = [x.latency_ms for x in metrics.trip_latency_ms if x.latency_ms is not None]
    if latencies:
        parts.append(f"worst trip {max(latencies):.1f} ms")
    if metrics.rejected_at_load:
        parts.append("recipe rejected at load")
    return f"{scenario.name}\n" + "  ·  ".join(parts)


def _draw_pressure(ax: Any, rows: Sequence[TraceRow], scenario: Scenario, metrics: Metrics | None) -> None:
    t = [r.t_s for r in rows]
    for i, (start, end, seg_index) in enumerate(_runs(rows, lambda r: r.segment)):
        if not 0 <= seg_index < len(scenario.recipe.segments):
            continue
        ax.axvspan(start, end, color=_SEGMENT_SHADES[i % 2], zorder=0)
        ax.text(
            (start + end) / 2,
            0.985,
            _segment_label(scenario.recipe.segments[seg_index]),
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=8,
            color="#555555",
            clip_on=True,
        )
    ax.plot(t, [r.measured_mpa for r in rows], color="#9ecae1", lw=0.7, label="measured")
    ax.plot(t, [r.setpoint_mpa for r in rows], color="#f16913", lw=1.2, ls="--", label="setpoint")
    ax.plot(t, [r.true_mpa for r in rows], color="#08306b", lw=1.5, label="true (plant)")
    profile = scenario.profile
    ax.axhline(profile.trip_mpa, color="#cb181d", lw=0.9, ls=":", label=f"trip {profile.trip_mpa:g} MPa")
    ax.axhline(profile.max_working_mpa, color="#777777", lw=0.8, ls=":", label="max working")
    for index, fault in enumerate(scenario.faults):
        ax.axvline(fault.t_s, color="#cb181d", lw=1.0, ls="--", alpha=0.8)
        ax.text(
            fault.t_s,
            0.90 - 0.06 * (index % 3),
            f" ⚡ {fault.kind}",
            transform=ax.get_xaxis_transform(),
            color="#cb181d",
            fontsize=8,
            va="top",
        )
    if metrics is not None and metrics.faults:
        xs = [f.t_s for f in metrics.faults]
        ys = [rows[max(_row_index_at(rows, x), 0)].true_mpa for x in xs]
        ax.scatter(xs, ys, marker="v", s=40, color="#a50f15", zorder=5, label="fault raised")
        for f, y in zip(metrics.faults, ys, strict=True):
            ax.annotate(
                f.code, (f.t_s, y), textcoords="offset points", xytext=(4, 6), fontsize=7, color="#a50f15"
            )
    ax.set_ylabel("pressure (MPa)")
    top = max([profile.trip_mpa] + [max(r.true_mpa, r.setpoint_mpa) for r in rows])
    # A failed transducer can read far below zero (0 mA is -150 MPa): let it leave the panel
    # rather than squash the run; the close-ups show the full reading.
    lowest = min([0.0] + [r.measured_mpa for r in rows])
    ax.set_ylim(bottom=max(lowest, -0.05 * top) - 1.0, top=top * 1.12 + 1.0)
    ax.legend(loc="center right", fontsize=8, framealpha=0.9)
    ax.grid(alpha=0.3)


def _draw_error(ax: Any, rows: Sequence[TraceRow]) -> None:
    t = [r.t_s for r in rows]
    nan = float("nan")
    true_err = [r.true_mpa - r.setpoint_mpa if r.state in _RUNNING else nan for r in rows]
    meas_err = [r.measured_mpa - r.setpoint_mpa if r.state in _RUNNING else nan for r in rows]
    ax.plot(t, meas_err, color="#9ecae1", lw=0.6, label="measured - setpoint")
    ax.plot(t, true_err, color="#08306b", lw=1.0, label="true - setpoint")
    ax.axhline(0.0, color="#555555", lw=0.6)
    magnitudes = sorted(abs(e) for e in true_err + meas_err if not math.isnan(e))
    if magnitudes:
        # Scale to the 99th percentile so one transient does not flatten the rest.
        scale = max(magnitudes[int(0.99 * (len(magnitudes) - 1))] * 1.3, 0.2)
        ax.set_ylim(-scale, scale)
    ax.set_ylabel("error (MPa)")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)


def _draw_outputs(ax: Any, rows: Sequence[TraceRow]) -> None:
    t = [r.t_s for r in rows]
    ax.step(t, [r.pump_duty * 100.0 for r in rows], where="post", color="#2171b5", lw=1.0, label="pump")
    ax.step(t, [r.vent_duty * 100.0 for r in rows], where="post", color="#d94801", lw=1.0, label="vent")
    ax.set_ylabel("duty (%)")
    ax.set_ylim(-5, 105)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)


def _draw_dump_and_state(ax: Any, rows: Sequence[TraceRow]) -> None:
    span = rows[-1].t_s - rows[0].t_s + 1e-9
    for start, end, state in _runs(rows, lambda r: r.state):
        ax.axvspan(start, end, ymin=0.0, ymax=0.45, color=_STATE_COLOURS.get(state, "#ffffff"))
        if end - start > 0.04 * span:
            ax.text(
                (start + end) / 2, 0.22, state, transform=ax.get_xaxis_transform(), ha="center", fontsize=7
            )
    t = [r.t_s for r in rows]
    dump = [0.95 if r.dump_closed else 0.55 for r in rows]
    ax.step(t, dump, where="post", color="#252525", lw=1.2, transform=ax.get_xaxis_transform())
    ax.set_yticks([0.22, 0.55, 0.95], ["state", "dump open", "dump closed"], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")


def _draw_reaction(ax: Any, rows: Sequence[TraceRow], reaction: FaultReaction, trip_mpa: float) -> None:
    """Zoom on one injected fault: from a little before its onset to safe outputs."""
    assert reaction.safe_t_s is not None and reaction.latency_ms is not None
    # Wide enough to show the approach, narrow enough to resolve milliseconds.
    pad = max((reaction.safe_t_s - reaction.onset_t_s) * 2.0, 0.3)
    t0, t1 = reaction.onset_t_s - pad, reaction.safe_t_s + pad
    first = max(_row_index_at(rows, t0), 0)
    last = min(_row_index_at(rows, t1) + 1, len(rows) - 1)
    window = rows[first : last + 1]
    t = [r.t_s for r in window]
    ax.step(t, [r.measured_mpa for r in window], where="post", color="#9ecae1", lw=0.9, label="measured")
    ax.plot(t, [r.true_mpa for r in window], color="#08306b", lw=1.3, label="true")  # continuous
    ax.axvspan(
        reaction.onset_t_s, max(reaction.safe_t_s, reaction.onset_t_s + 1e-4), color="#fb6a4a", alpha=0.5
    )
    ax.axvline(reaction.onset_t_s, color="#cb181d", lw=0.8, ls="--")
    if reaction.kind == "pump_stuck_on":
        ax.axhline(trip_mpa, color="#cb181d", lw=0.8, ls=":")
    ax.set_xlim(t0, t1)
    ax.set_title(
        f"faults[{reaction.index}] {reaction.kind}\nonset {reaction.onset_t_s:.3f} s → outputs safe "
        f"({reaction.reaction}) in {reaction.latency_ms:.1f} ms",
        fontsize=8,
    )
    ax.tick_params(labelsize=7)
    ax.set_ylabel("MPa", fontsize=7)
    ax.grid(alpha=0.3)


def plot_run(
    trace: Sequence[TraceRow], scenario: Scenario, path: str | Path, metrics: Metrics | None = None
) -> Path:
    """Draw the run and write it as a PNG; returns the path written."""
    if not trace:
        raise ValueError("trace: empty; nothing to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reactions = [] if metrics is None else [x for x in metrics.trip_latency_ms if x.safe_t_s is not None]
    reactions = reactions[:_MAX_ZOOMS]
    fig = plt.figure(figsize=(17 if reactions else 13, 10))
    grid = fig.add_gridspec(
        4,
        2 if reactions else 1,
        height_ratios=[3.2, 1.2, 1.2, 0.8],
        width_ratios=[3.3, 1] if reactions else [1],
    )
    ax_p = fig.add_subplot(grid[0, 0])
    ax_e = fig.add_subplot(grid[1, 0], sharex=ax_p)
    ax_o = fig.add_subplot(grid[2, 0], sharex=ax_p)
    ax_s = fig.add_subplot(grid[3, 0], sharex=ax_p)
    try:
        _draw_pressure(ax_p, trace, scenario, metrics)
        _draw_error(ax_e, trace)
        _draw_outputs(ax_o, trace)
        _draw_dump_and_state(ax_s, trace)
        for ax in (ax_p, ax_e, ax_o):
            ax.tick_params(labelbottom=False)
        ax_s.set_xlim(trace[0].t_s, trace[-1].t_s)
        if reactions:
            zooms = grid[:, 1].subgridspec(len(reactions), 1, hspace=0.6)
            for i, reaction in enumerate(reactions):
                _draw_reaction(fig.add_subplot(zooms[i, 0]), trace, reaction, scenario.profile.trip_mpa)
        fig.suptitle(_title(scenario, metrics), fontsize=11)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out
