"""HIL quality, safety and speed: the scenario library on the virtual board under MicroPython.

- the nominal 250 MPa cycle (hil_tests/scenarios/nominal_250.toml, default noisy
  transducer): overshoot, hold error, ramp rates, decompression, virtual-time speed;
  the same scenario with the baseline controller (a plain PI: no setpoint-rate
  feed-forward, no anti-windup; same gains), as ratios;
- every fault scenario of the library: detected, by which fault, and the latency from
  the onset in the plant to safe outputs (the hard comparator's own latency, raw count
  over the trip to outputs safe, is bench/control_step.py's: in a scenario the main loop's
  software limit, below the trip by design, dumps first);
- false trips: a short nominal cycle (250 MPa at the profile's 2 MPa/s, hold 30 s, down at
  its 1 MPa/s: the fastest rates the profile allows, ~6.8 min of press time) over
  HIL_BENCH_SEEDS noise seeds (default 100).

The nominal run goes alone, three times (the median wall time is the speed figure), the rest two at
a time.
"""

from __future__ import annotations

import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from isopress.hil.runner import RunOptions, RunResult, board_bundle, run_scenario
from isopress.hil.scenario import Scenario, load_scenario, loads_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "hil_tests" / "scenarios"
SEEDS = int(os.environ.get("HIL_BENCH_SEEDS", "100"))
NOMINAL_ROUNDS = 3  # the nominal cycle alone, for the speed figure (median)


def cycle_scenario(name: str, up_mpa_s: float, hold_s: float, down_mpa_s: float) -> Scenario:
    """A nominal 250 MPa cycle (default plant and noisy transducer) that must complete without
    a fault: up at up_mpa_s, hold hold_s, down at down_mpa_s."""
    return loads_scenario(
        f"""
name = "{name}"
[recipe]
[[recipe.segments]]
kind = "ramp"
target_mpa = 250.0
rate_mpa_s = {up_mpa_s}
[[recipe.segments]]
kind = "hold"
duration_s = {hold_s}
[[recipe.segments]]
kind = "ramp"
target_mpa = 0.0
rate_mpa_s = {down_mpa_s}
[expect]
final_state = "complete"
no_faults = true
"""
    )


def _run(job: tuple[Scenario, RunOptions]) -> RunResult:
    return run_scenario(*job)


def _ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or value == 0.0:
        return None
    return round(baseline / value, 1)


def _row(metric: str, value: Any, unit: str, target: str) -> dict[str, Any]:
    return {"metric": metric, "value": value, "unit": unit, "target": target}


def run() -> list[dict[str, Any]]:
    """Benchmark rows (see bench/__main__.py)."""
    board_bundle()
    nominal = load_scenario(SCENARIOS / "nominal_250.toml")
    faults = [
        load_scenario(p)
        for p in sorted(SCENARIOS.glob("*.toml"))
        if load_scenario(p).faults and load_scenario(p).faults[0].kind != "transducer_spike"
    ]
    mp = RunOptions(runtime="micropython")
    jobs: list[tuple[Scenario, RunOptions]] = [
        (nominal, mp),
        (nominal, RunOptions(runtime="micropython", controller="plain_pid")),
    ]
    jobs += [(s, mp) for s in faults]
    short = cycle_scenario("short nominal cycle (false-trip seeds)", 2.0, 30.0, 1.0)
    jobs += [(short.with_seed(seed), mp) for seed in range(1, SEEDS + 1)]
    load = os.getloadavg()[0]
    noms = [_run(jobs[0]) for _ in range(NOMINAL_ROUNDS)]  # alone: their wall times are the speed figure
    nom = noms[0]
    walls = sorted(r.wall_s for r in noms)
    nom_wall_s = statistics.median(walls)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = [nom, *pool.map(_run, jobs[1:])]
    base = results[1]
    fault_results = results[2 : 2 + len(faults)]
    seed_results = results[2 + len(faults) :]

    m, b = nom.metrics, base.metrics
    target = nominal.highest_target_mpa()
    full_scale = nominal.transducer_params(1)["range_mpa"]
    down_rate = min(s.rate_mpa_s or 0.0 for s in nominal.recipe.segments if s.kind == "ramp")
    hold_pct = None if m.hold_error_rms_mpa is None else round(m.hold_error_rms_mpa / full_scale * 100.0, 4)
    rows = [
        _row(
            "HIL nominal 250 MPa cycle (MicroPython): overshoot",
            round(m.overshoot_mpa / target * 100.0, 3),
            "% of target",
            "<= 0.5 %",
        ),
        _row("HIL nominal: hold error RMS (true pressure)", hold_pct, "% of full scale", "<= 0.1 %"),
        _row(
            "HIL nominal: hold error max",
            None if m.hold_error_max_mpa is None else round(m.hold_error_max_mpa, 3),
            "MPa",
            "report",
        ),
        _row(
            "HIL nominal: worst ramp rate error",
            None if m.ramp_rate_error_pct is None else round(m.ramp_rate_error_pct, 3),
            "%",
            "within +-2 %",
        ),
        _row(
            "HIL nominal: fastest decompression (1 s window) / allowed",
            f"{m.max_depressurization_rate_mpa_s:.3f} / {down_rate:g}",
            "MPa/s",
            "never above the recipe's rate",
        ),
        _row("HIL nominal: faults raised", len(m.faults), "", "0"),
        _row(
            f"HIL nominal: virtual-time speed under MicroPython (median of {len(walls)} runs; "
            f"load average {load:.2f} before)",
            round(m.sim_s / nom_wall_s, 1),
            "x",
            ">= 100x",
        ),
        _row(
            f"HIL nominal: {m.sim_s:.0f} s of press time (wall, board process included; median, "
            f"{walls[0]:.2f}-{walls[-1]:.2f} s)",
            round(nom_wall_s, 2),
            "s",
            f"<= {m.sim_s / 100.0:.1f} s",
        ),
        _row(
            "baseline plain PI (no feed-forward, no anti-windup): overshoot / ratio",
            f"{b.overshoot_mpa:.3f} MPa / {_ratio(m.overshoot_mpa, b.overshoot_mpa) or 'inf'}x",
            "",
            "firmware better",
        ),
        _row(
            "baseline plain PI: hold error RMS / ratio to the firmware's",
            f"{b.hold_error_rms_mpa or 0.0:.4f} MPa / {_ratio(m.hold_error_rms_mpa, b.hold_error_rms_mpa)}x",
            "",
            "report",
        ),
        _row(
            "baseline plain PI: worst ramp rate error / ratio",
            f"{b.ramp_rate_error_pct or 0.0:.2f} % / "
            f"{_ratio(abs(m.ramp_rate_error_pct or 0.0), abs(b.ramp_rate_error_pct or 0.0))}x",
            "",
            "report",
        ),
        _row(
            "baseline plain PI: faults / final state",
            f"{','.join(f.code for f in b.faults) or 'none'} / {b.final_state}",
            "",
            "report",
        ),
    ]
    detected = 0
    total = 0
    for result in fault_results:
        for reaction in result.metrics.trip_latency_ms:
            total += 1
            detected += reaction.detected_code is not None
            latency = "n/a" if reaction.latency_ms is None else f"{reaction.latency_ms:.1f}"
            limit = result.scenario.expect.max_trip_latency_ms
            code = reaction.detected_code or "NOT DETECTED"
            rows.append(
                _row(
                    f"HIL {result.scenario.name}: {reaction.kind} -> {code} ({reaction.reaction})",
                    latency,
                    "ms",
                    f"<= {limit:g} ms" if limit else "detected",
                )
            )
    rows.append(_row("HIL library: injected faults detected", f"{detected} / {total}", "", "all"))
    false_trips = [r for r in seed_results if r.metrics.faults or r.metrics.final_state != "complete"]
    rows.append(
        _row(
            f"HIL false trips: short nominal cycle (250 MPa at 2 MPa/s, hold 30 s, down 1 MPa/s) "
            f"over {len(seed_results)} noise seeds",
            len(false_trips),
            "runs",
            "0",
        )
    )
    worst = max((r.metrics.overshoot_mpa for r in seed_results), default=0.0)
    rows.append(_row("HIL short nominal over the seeds: worst overshoot", round(worst, 3), "MPa", "report"))
    return rows


if __name__ == "__main__":
    for r in run():
        print(f"{r['metric']}: {r['value']} {r['unit']} (target {r['target']})")
