"""``isopress hil tune``: search the controller's gains on the virtual plant, in bounded time.

Each candidate is a full scenario run on the virtual board (the real firmware, the
scenario's plant and transducer) with the candidate gains over the scenario's
``[control]``. The cost of a run, lower is better::

    cost = hold_error_rms_mpa / (0.001 * range_mpa)        # 1.0 = the 0.1 % FS limit
         + |ramp_rate_error_pct| / 2.0                      # 1.0 = the 2 % limit
         + overshoot_mpa / (0.005 * highest target)         # 1.0 = the 0.5 % limit
         + excess decompression over the recipe's slowest ramp-down rate, in % / 2
         + 100 per fault raised, 100 if the run did not end in the scenario's final state

The search is a seeded pattern search in log space over ``kp_per_s``, ``ki_per_s2`` and
``hold_ki_per_s2`` (each within the board config's range): from the current gains, try a
step up and down on each gain (two runs at a time), move to the best, halve the step when
nothing improves; stop when the time budget is spent. A user with another vessel puts
the result in the board's config (``control``) or a scenario's ``[control]``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .metrics import Metrics
from .runner import RunOptions, RunResult, run_scenario
from .scenario import Scenario, control_fields

__all__ = ["TUNED_GAINS", "Candidate", "TuneResult", "run_cost", "tune"]

TUNED_GAINS = ("kp_per_s", "ki_per_s2", "hold_ki_per_s2")
_FAULT_PENALTY = 100.0


@dataclass(frozen=True)
class Candidate:
    """One evaluated set of gains."""

    gains: dict[str, float]
    cost: float
    metrics: Metrics


@dataclass(frozen=True)
class TuneResult:
    """The search's outcome: the starting point, the best found, how much was tried."""

    start: Candidate
    best: Candidate
    evaluations: int
    elapsed_s: float

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``isopress hil tune`` prints."""

        def summary(c: Candidate) -> dict[str, Any]:
            m = c.metrics.to_json()
            keys = (
                "final_state",
                "faults",
                "overshoot_mpa",
                "hold_error_rms_mpa",
                "hold_error_max_mpa",
                "ramp_rate_error_pct",
                "max_depressurization_rate_mpa_s",
            )
            return {"gains": c.gains, "cost": round(c.cost, 4), **{k: m[k] for k in keys}}

        return {
            "best": summary(self.best),
            "start": summary(self.start),
            "improvement": round(self.start.cost / self.best.cost, 2) if self.best.cost > 0 else None,
            "evaluations": self.evaluations,
            "elapsed_s": round(self.elapsed_s, 1),
            "control_toml": "[control]\n" + "".join(f"{k} = {v:.4g}\n" for k, v in self.best.gains.items()),
        }


def run_cost(scenario: Scenario, metrics: Metrics) -> float:
    """The cost of a run (module docstring); lower is better."""
    full_scale = scenario.transducer_params(1)["range_mpa"]
    target = max(scenario.highest_target_mpa(), 1.0)
    cost = 0.0
    if metrics.hold_error_rms_mpa is not None:
        cost += metrics.hold_error_rms_mpa / (0.001 * full_scale)
    if metrics.ramp_rate_error_pct is not None:
        cost += abs(metrics.ramp_rate_error_pct) / 2.0
    cost += metrics.overshoot_mpa / (0.005 * target)
    downs = [s.rate_mpa_s for s in scenario.recipe.segments if s.kind == "ramp" and s.rate_mpa_s]
    if downs:
        allowed = min(downs)
        excess = max(metrics.max_depressurization_rate_mpa_s - allowed, 0.0) / allowed * 100.0
        cost += excess / 2.0
    cost += _FAULT_PENALTY * len(metrics.faults)
    wanted = scenario.expect.final_state or "complete"
    if metrics.final_state != wanted:
        cost += _FAULT_PENALTY
    return cost


def _clamp(key: str, value: float) -> float:
    lo, hi, _default = control_fields()[key]
    return min(max(value, lo, 1e-4), hi)


def tune(
    scenario: Scenario,
    options: RunOptions | None = None,
    budget_s: float = 120.0,
    workers: int = 2,
    progress: Callable[[Candidate], None] | None = None,
) -> TuneResult:
    """Search the gains for ``budget_s`` of wall time (at least the starting run and one
    round of steps are evaluated)."""
    options = options or RunOptions()
    started = time.monotonic()
    defaults = {k: v[2] for k, v in control_fields().items()}
    gains = {k: float(scenario.control.get(k, defaults[k])) for k in TUNED_GAINS}
    tried: dict[tuple[float, ...], Candidate] = {}

    def evaluate(candidate: dict[str, float]) -> Candidate:
        key = tuple(round(candidate[k], 6) for k in TUNED_GAINS)
        if key in tried:
            return tried[key]
        result: RunResult = run_scenario(
            scenario,
            RunOptions(
                runtime=options.runtime,
                heap_bytes=options.heap_bytes,
                control={**scenario.control, **candidate},
                measure_time=False,
            ),
        )
        found = Candidate(dict(candidate), run_cost(scenario, result.metrics), result.metrics)
        tried[key] = found
        if progress is not None:
            progress(found)
        return found

    start = evaluate(gains)
    best = start
    step = math.log(2.0)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while step > math.log(1.05):
            neighbours = []
            for k in TUNED_GAINS:
                for sign in (1.0, -1.0):
                    n = dict(best.gains)
                    n[k] = _clamp(k, n[k] * math.exp(sign * step))
                    neighbours.append(n)
            results = list(pool.map(evaluate, neighbours))
            better = min(results, key=lambda c: c.cost)
            if better.cost < best.cost:
                best = better
            else:
                step /= 2.0
            if time.monotonic() - started >= budget_s:
                break
    return TuneResult(start, best, len(tried), time.monotonic() - started)
