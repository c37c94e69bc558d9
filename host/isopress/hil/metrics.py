"""Metrics of a HIL run, computed from its trace on the plant's TRUE pressure, and the
check of a scenario's expectations against them.

Definitions (also in docs/scenarios.md):

- ``peak_mpa``: highest true pressure. ``overshoot_mpa``: how far it went above the
  recipe's highest ramp target (0 when it never did).
- ``hold_error_rms_mpa`` / ``hold_error_max_mpa``: true pressure minus setpoint in every
  hold segment, from :data:`HOLD_SETTLE_S` after the hold began to its end, while the
  board is in ``holding``; RMS weighted by the time each row stands for.
- ``ramp_rate_error_pct``: for each ramp, the least-squares slope of the true pressure
  over the ramp's linear part (the rows whose setpoint lies between 10 % and 90 % of the
  way from the ramp's start to its target, board pressurising or depressurising) against
  the commanded rate, as ``(|slope| - rate) / rate * 100`` (positive: faster than
  commanded); the ramp with the largest error is reported.
- ``max_depressurization_rate_mpa_s``: the fastest fall of the true pressure over any
  :data:`DEPRESSURIZATION_WINDOW_S` window.
- ``trip_latency_ms``: per injected fault, from its onset in the plant to the board's
  outputs being safe for that fault's reaction (see :func:`outputs_safe`). The onset is
  the injection time, except for ``pump_stuck_on`` where it is the moment the true
  pressure reaches the profile's ``trip_mpa`` (see :func:`_onset`).
- ``faults``: every fault the board raised, ``{code, t_s}``, in time order.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .scenario import FAULT_REACTIONS, Scenario
from .trace import TraceRow

__all__ = [
    "DEPRESSURIZATION_WINDOW_S",
    "HOLD_SETTLE_S",
    "RAMP_LINEAR_PART",
    "Check",
    "FaultReaction",
    "FaultRecord",
    "Metrics",
    "RampFit",
    "Verdict",
    "check_expectations",
    "compute_metrics",
    "outputs_safe",
    "reaction_for",
]

HOLD_SETTLE_S = 5.0  # the controller settles after a ramp ends; holds are judged after this
RAMP_LINEAR_PART = (0.1, 0.9)  # fraction of a ramp's span whose slope is fitted
DEPRESSURIZATION_WINDOW_S = 1.0  # falls are measured over this window (smooths valve PWM)

_RUNNING_UP = ("pressurising", "holding")


@dataclass(frozen=True)
class FaultRecord:
    """A fault the board raised: its code and when."""

    code: str
    t_s: float


@dataclass(frozen=True)
class FaultReaction:
    """How the board reacted to one injected fault."""

    index: int
    kind: str
    t_s: float
    onset_t_s: float
    reaction: str  # dump, vent, pause or none
    safe_t_s: float | None
    latency_ms: float | None
    detected_code: str | None
    detect_latency_ms: float | None


@dataclass(frozen=True)
class RampFit:
    """The true slope over one ramp's linear part."""

    segment: int
    commanded_mpa_s: float
    measured_mpa_s: float
    error_pct: float


@dataclass(frozen=True)
class Metrics:
    """Everything ``isopress hil run`` reports about a run."""

    final_state: str
    final_mpa: float
    faults: list[FaultRecord]
    peak_mpa: float
    overshoot_mpa: float
    hold_error_rms_mpa: float | None
    hold_error_max_mpa: float | None
    ramp_rate_error_pct: float | None
    ramps: list[RampFit]
    max_depressurization_rate_mpa_s: float
    trip_latency_ms: list[FaultReaction]
    loop_overruns: int
    rejected_at_load: bool
    sim_s: float
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``isopress hil run`` prints (numbers rounded for reading)."""

        def r(x: float | None, digits: int = 4) -> float | None:
            return None if x is None else round(x, digits)

        return {
            "final_state": self.final_state,
            "final_mpa": r(self.final_mpa),
            "rejected_at_load": self.rejected_at_load,
            "faults": [{"code": f.code, "t_s": r(f.t_s, 3)} for f in self.faults],
            "peak_mpa": r(self.peak_mpa),
            "overshoot_mpa": r(self.overshoot_mpa),
            "hold_error_rms_mpa": r(self.hold_error_rms_mpa),
            "hold_error_max_mpa": r(self.hold_error_max_mpa),
            "ramp_rate_error_pct": r(self.ramp_rate_error_pct, 3),
            "ramps": [
                {
                    "segment": f.segment,
                    "commanded_mpa_s": r(f.commanded_mpa_s),
                    "measured_mpa_s": r(f.measured_mpa_s),
                    "error_pct": r(f.error_pct, 3),
                }
                for f in self.ramps
            ],
            "max_depressurization_rate_mpa_s": r(self.max_depressurization_rate_mpa_s),
            "trip_latency_ms": [
                {
                    "fault": x.index,
                    "kind": x.kind,
                    "t_s": r(x.t_s, 3),
                    "onset_t_s": r(x.onset_t_s, 4),
                    "reaction": x.reaction,
                    "safe_t_s": r(x.safe_t_s, 4),
                    "latency_ms": r(x.latency_ms, 2),
                    "detected_code": x.detected_code,
                    "detect_latency_ms": r(x.detect_latency_ms, 2),
                }
                for x in self.trip_latency_ms
            ],
            "loop_overruns": self.loop_overruns,
            "sim_s": r(self.sim_s, 3),
            "wall_s": r(self.wall_s, 3),
        }


# -- reactions ---------------------------------------------------------------------------


def reaction_for(kind: str, scenario: Scenario) -> str:
    """The reaction the board owes an injected fault of this kind (dump/vent/pause/none)."""
    reaction = FAULT_REACTIONS[kind]
    if reaction == "policy":
        return "vent" if scenario.profile.host_lost_policy == "depressurise" else "none"
    return reaction


def outputs_safe(row: TraceRow, reaction: str) -> bool:
    """Whether a row's outputs answer the reaction.

    ``dump``: pump off and dump valve open. ``vent``: the board has raised a fault, left
    pressurising/holding, and the pump is off. ``pause``: the board has raised a fault and
    left pressurising/holding (it may run the pump to hold the pressure).
    """
    if reaction == "dump":
        return row.outputs_dumped
    reacted = bool(row.faults) and row.state not in _RUNNING_UP
    if reaction == "vent":
        return reacted and row.pump_duty == 0.0
    if reaction == "pause":
        return reacted
    return False


def _crossing_time(rows: Sequence[TraceRow], after_s: float, level_mpa: float) -> float | None:
    """First time at or after after_s that the true pressure reaches level (interpolated)."""
    prev: TraceRow | None = None
    for row in rows:
        if row.t_s >= after_s and row.true_mpa >= level_mpa:
            if prev is None or prev.t_s < after_s or prev.true_mpa >= level_mpa:
                return max(row.t_s, after_s)
            frac = (level_mpa - prev.true_mpa) / (row.true_mpa - prev.true_mpa)
            return max(prev.t_s + frac * (row.t_s - prev.t_s), after_s)
        prev = row
    return None


def _row_at(rows: Sequence[TraceRow], t_s: float) -> int:
    """Index of the last row at or before t_s (-1 when none)."""
    return bisect.bisect_right(rows, t_s, key=lambda r: r.t_s) - 1


def _first_safe(rows: Sequence[TraceRow], from_s: float, reaction: str) -> float | None:
    """When the outputs were first safe at or after from_s (from_s itself if they were)."""
    i = max(_row_at(rows, from_s), 0)
    for row in rows[i:]:
        if outputs_safe(row, reaction):
            return max(row.t_s, from_s)
    return None


def _onset(rows: Sequence[TraceRow], scenario: Scenario, index: int, reaction: str) -> float:
    """When the injected fault became a hazard in the plant.

    For ``pump_stuck_on`` the hazard is over-pressure: the onset is the moment the true
    pressure reaches the profile's trip pressure. A board that made the outputs safe
    before that (its comparator fires on the measured pressure, which noise and the
    trip count's rounding put slightly ahead) prevented the hazard: the onset is then
    the moment it did so, a latency of 0. Every other fault's onset is its injection.
    """
    fault = scenario.faults[index]
    if fault.kind != "pump_stuck_on":
        return fault.t_s
    crossing = _crossing_time(rows, fault.t_s, scenario.profile.trip_mpa)
    safe = _first_safe(rows, fault.t_s, reaction)
    if crossing is None:
        return fault.t_s if safe is None else safe
    return crossing if safe is None else min(crossing, max(safe, fault.t_s))


def _reactions(
    rows: Sequence[TraceRow], scenario: Scenario, raised: list[FaultRecord]
) -> list[FaultReaction]:
    out: list[FaultReaction] = []
    for index, fault in enumerate(scenario.faults):
        reaction = reaction_for(fault.kind, scenario)
        onset = _onset(rows, scenario, index, reaction)
        safe_t = None if reaction == "none" else _first_safe(rows, onset, reaction)
        detected = next((f for f in raised if f.t_s >= fault.t_s), None)
        out.append(
            FaultReaction(
                index=index,
                kind=fault.kind,
                t_s=fault.t_s,
                onset_t_s=onset,
                reaction=reaction,
                safe_t_s=safe_t,
                latency_ms=None if safe_t is None else (safe_t - onset) * 1000.0,
                detected_code=None if detected is None else detected.code,
                detect_latency_ms=None if detected is None else max(detected.t_s - onset, 0.0) * 1000.0,
            )
        )
    return out


# -- the pressure metrics -------------------------------------------------------------------------


def _raised_faults(rows: Sequence[TraceRow]) -> list[FaultRecord]:
    raised: list[FaultRecord] = []
    active: set[str] = set()
    for row in rows:
        now = set(row.faults)
        for code in row.faults:
            if code not in active:
                raised.append(FaultRecord(code, row.t_s))
        active = now
    return raised


def _weights(rows: Sequence[TraceRow], indices: list[int]) -> list[float]:
    """Time each row stands for: until the next row of the trace."""
    out = []
    for i in indices:
        out.append(rows[i + 1].t_s - rows[i].t_s if i + 1 < len(rows) else 0.0)
    if sum(out) <= 0.0:
        return [1.0] * len(indices)
    return out


def _hold_errors(
    rows: Sequence[TraceRow], scenario: Scenario, settle_s: float
) -> tuple[float | None, float | None]:
    indices: list[int] = []
    for seg_index, seg in enumerate(scenario.recipe.segments):
        if seg.kind != "hold":
            continue
        start = next((r.t_s for r in rows if r.segment == seg_index), None)
        if start is None:
            continue
        indices += [
            i
            for i, r in enumerate(rows)
            if r.segment == seg_index and r.state == "holding" and r.t_s >= start + settle_s
        ]
    if not indices:
        return None, None
    weights = _weights(rows, indices)
    errors = [rows[i].true_mpa - rows[i].setpoint_mpa for i in indices]
    rms = math.sqrt(sum(w * e * e for w, e in zip(weights, errors, strict=True)) / sum(weights))
    return rms, max(abs(e) for e in errors)


def _slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mp = sum(p for _, p in points) / n
    stt = sum((t - mt) ** 2 for t, _ in points)
    stp = sum((t - mt) * (p - mp) for t, p in points)
    return stp / stt


def _ramp_fits(rows: Sequence[TraceRow], scenario: Scenario) -> list[RampFit]:
    fits: list[RampFit] = []
    start_mpa: float | None = None
    lo_frac, hi_frac = RAMP_LINEAR_PART
    for seg_index, seg in enumerate(scenario.recipe.segments):
        if seg.kind != "ramp":
            continue
        assert seg.target_mpa is not None and seg.rate_mpa_s is not None
        seg_rows = [r for r in rows if r.segment == seg_index]
        if start_mpa is None:
            start_mpa = seg_rows[0].setpoint_mpa if seg_rows else seg.target_mpa
        span = seg.target_mpa - start_mpa
        a, b = start_mpa + lo_frac * span, start_mpa + hi_frac * span
        low, high = min(a, b), max(a, b)
        points = [
            (r.t_s, r.true_mpa)
            for r in seg_rows
            if r.state in ("pressurising", "depressurising") and low <= r.setpoint_mpa <= high
        ]
        start_mpa = seg.target_mpa
        if span == 0.0 or len(points) < 3 or points[-1][0] - points[0][0] < 1.0:
            continue
        slope = _slope(points)
        error = (abs(slope) - seg.rate_mpa_s) / seg.rate_mpa_s * 100.0
        fits.append(RampFit(seg_index, seg.rate_mpa_s, slope, error))
    return fits


def _max_fall_rate(rows: Sequence[TraceRow], window_s: float) -> float:
    if len(rows) < 2:
        return 0.0
    span = rows[-1].t_s - rows[0].t_s
    if span <= 0.0:
        return 0.0
    if span < window_s:
        return max((rows[0].true_mpa - rows[-1].true_mpa) / span, 0.0)
    worst = 0.0
    j = 0
    for row in rows:
        back = row.t_s - window_s
        if back < rows[0].t_s:
            continue
        while rows[j + 1].t_s <= back:
            j += 1
        a, b = rows[j], rows[j + 1]
        frac = 0.0 if b.t_s == a.t_s else (back - a.t_s) / (b.t_s - a.t_s)
        earlier = a.true_mpa + frac * (b.true_mpa - a.true_mpa)
        worst = max(worst, (earlier - row.true_mpa) / window_s)
    return worst


def compute_metrics(
    trace: Sequence[TraceRow],
    scenario: Scenario,
    *,
    loop_overruns: int = 0,
    wall_s: float = 0.0,
    rejected_at_load: bool = False,
    hold_settle_s: float = HOLD_SETTLE_S,
    depressurization_window_s: float = DEPRESSURIZATION_WINDOW_S,
) -> Metrics:
    """The run's metrics from its trace (rows in time order) and its scenario."""
    if not trace:
        raise ValueError("trace: empty; a run writes at least one row")
    raised = _raised_faults(trace)
    peak = max(r.true_mpa for r in trace)
    fits = _ramp_fits(trace, scenario)
    worst_fit = max(fits, key=lambda f: abs(f.error_pct), default=None)
    rms, worst_hold = _hold_errors(trace, scenario, hold_settle_s)
    return Metrics(
        final_state=trace[-1].state,
        final_mpa=trace[-1].true_mpa,
        faults=raised,
        peak_mpa=peak,
        overshoot_mpa=max(peak - scenario.highest_target_mpa(), 0.0),
        hold_error_rms_mpa=rms,
        hold_error_max_mpa=worst_hold,
        ramp_rate_error_pct=None if worst_fit is None else worst_fit.error_pct,
        ramps=fits,
        max_depressurization_rate_mpa_s=_max_fall_rate(trace, depressurization_window_s),
        trip_latency_ms=_reactions(trace, scenario, raised),
        loop_overruns=loop_overruns,
        rejected_at_load=rejected_at_load,
        sim_s=trace[-1].t_s,
        wall_s=wall_s,
    )


# -- expectations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One expectation and whether it held."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    """All expectation checks of a run; it passes when every one held."""

    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every expectation held."""
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[str]:
        """``name: detail`` of every expectation that did not hold."""
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]


def _limit(checks: list[Check], name: str, value: float | None, limit: float | None, what: str) -> None:
    if limit is None:
        return
    if value is None:
        checks.append(Check(name, False, f"no {what} in this run to compare with {limit:g}"))
    else:
        checks.append(Check(name, value <= limit, f"{value:.4g} (limit {limit:g})"))


def _expected_fault_checks(metrics: Metrics, scenario: Scenario, checks: list[Check]) -> None:
    for want in scenario.expect.faults:
        name = f"expect.faults[{want.code}]"
        got = next((f for f in metrics.faults if f.code == want.code), None)
        if got is None:
            raised = ", ".join(f.code for f in metrics.faults) or "none"
            checks.append(Check(name, False, f"never raised (raised: {raised})"))
            continue
        if want.max_latency_ms is None:
            checks.append(Check(name, True, f"raised at {got.t_s:.3f} s"))
            continue
        cause = None
        for reaction in metrics.trip_latency_ms:
            if reaction.t_s <= got.t_s:
                cause = reaction
        if cause is None:
            checks.append(Check(name, False, f"raised at {got.t_s:.3f} s with no injected fault before it"))
            continue
        latency = max(got.t_s - cause.onset_t_s, 0.0) * 1000.0
        checks.append(
            Check(
                name,
                latency <= want.max_latency_ms,
                f"raised {latency:.1f} ms after the onset of faults[{cause.index}] "
                f"({cause.kind}; limit {want.max_latency_ms:g} ms)",
            )
        )


def check_expectations(metrics: Metrics, scenario: Scenario) -> Verdict:
    """Check the scenario's ``[expect]`` against a run's metrics."""
    expect = scenario.expect
    checks: list[Check] = []
    checks.append(
        Check(
            "expect.rejected_at_load",
            metrics.rejected_at_load == expect.rejected_at_load,
            f"recipe {'rejected' if metrics.rejected_at_load else 'accepted'} at load",
        )
    )
    if expect.final_state is not None:
        checks.append(
            Check(
                "expect.final_state",
                metrics.final_state == expect.final_state,
                f"{metrics.final_state} (expected {expect.final_state})",
            )
        )
    if expect.no_faults:
        raised = ", ".join(f"{f.code}@{f.t_s:.3f}s" for f in metrics.faults)
        checks.append(Check("expect.no_faults", not metrics.faults, raised or "none raised"))
    _expected_fault_checks(metrics, scenario, checks)
    if expect.no_other_faults:
        allowed = {f.code for f in expect.faults}
        others = sorted({f.code for f in metrics.faults} - allowed)
        checks.append(Check("expect.no_other_faults", not others, ", ".join(others) or "none"))
    if expect.every_fault_detected:
        missed = [f"faults[{x.index}] ({x.kind})" for x in metrics.trip_latency_ms if x.detected_code is None]
        checks.append(
            Check(
                "expect.every_fault_detected", not missed, "missed: " + ", ".join(missed) if missed else "all"
            )
        )
    if expect.max_trip_latency_ms is not None:
        for x in metrics.trip_latency_ms:
            if x.reaction == "none":
                continue
            _limit(
                checks,
                f"expect.max_trip_latency_ms[faults[{x.index}] {x.kind}]",
                x.latency_ms,
                expect.max_trip_latency_ms,
                f"safe outputs ({x.reaction}) after the fault",
            )
    _limit(checks, "expect.max_overshoot_mpa", metrics.overshoot_mpa, expect.max_overshoot_mpa, "overshoot")
    _limit(checks, "expect.max_peak_mpa", metrics.peak_mpa, expect.max_peak_mpa, "peak")
    if expect.min_peak_mpa is not None:
        checks.append(
            Check(
                "expect.min_peak_mpa",
                metrics.peak_mpa >= expect.min_peak_mpa,
                f"{metrics.peak_mpa:.4g} (at least {expect.min_peak_mpa:g})",
            )
        )
    _limit(checks, "expect.max_final_mpa", metrics.final_mpa, expect.max_final_mpa, "final pressure")
    _limit(
        checks,
        "expect.max_hold_error_rms_mpa",
        metrics.hold_error_rms_mpa,
        expect.max_hold_error_rms_mpa,
        "hold",
    )
    _limit(
        checks,
        "expect.max_hold_error_max_mpa",
        metrics.hold_error_max_mpa,
        expect.max_hold_error_max_mpa,
        "hold",
    )
    ramp_error = None if metrics.ramp_rate_error_pct is None else abs(metrics.ramp_rate_error_pct)
    _limit(
        checks, "expect.max_ramp_rate_error_pct", ramp_error, expect.max_ramp_rate_error_pct, "fitted ramp"
    )
    _limit(
        checks,
        "expect.max_depressurization_rate_mpa_s",
        metrics.max_depressurization_rate_mpa_s,
        expect.max_depressurization_rate_mpa_s,
        "depressurisation",
    )
    _limit(
        checks,
        "expect.max_loop_overruns",
        float(metrics.loop_overruns),
        None if expect.max_loop_overruns is None else float(expect.max_loop_overruns),
        "loop",
    )
    return Verdict(checks)
