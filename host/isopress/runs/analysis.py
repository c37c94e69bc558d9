"""A run record judged by the HIL code: ``isopress hil run``'s metrics and its plot.

A run on the press and a HIL scenario are measured by the same functions
(:func:`isopress.hil.metrics.compute_metrics`, :func:`isopress.hil.plot.plot_run`). This
module turns a record folder into what they take:

- the trace: ``trace.csv`` rows as :class:`~isopress.hil.trace.TraceRow`; a press has no
  "true" pressure, so the measured one stands in for it (the metrics are then those of
  the transducer's reading, noise included), duties scale from 0..65535 to 0..1 and the
  fault mask becomes fault names;
- the scenario: the record's ``recipe.json`` and ``profile.json`` (the device profile the
  board reported; the sim's defaults when a record predates that file), no injected
  faults.

A record without ``recipe.json`` (a run the agent saw start without a recipe it loaded)
gets no metrics and no plot: :class:`RecordAnalysisError` says so and the recorder logs it.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from ..agent.model import fault_names
from ..hil.metrics import Metrics, compute_metrics
from ..hil.scenario import ProfileSection, RecipeSection, Scenario
from ..hil.trace import TraceRow
from .record import PROFILE_FILE

__all__ = [
    "RecordAnalysisError",
    "plot_record",
    "record_metrics",
    "record_scenario",
    "record_trace",
]

_DUTY_FULL = 65535.0


class RecordAnalysisError(ValueError):
    """A run record lacks what the metrics or the plot need; the message names the file."""


def record_trace(folder: Path) -> list[TraceRow]:
    """``trace.csv`` as HIL trace rows (measured pressure as the true one)."""
    path = folder / "trace.csv"
    if not path.exists():
        raise RecordAnalysisError(f"{path}: missing")
    rows: list[TraceRow] = []
    with path.open(newline="") as f:
        for line in csv.DictReader(f):
            pressure = float(line["pressure_mpa"])
            rows.append(
                TraceRow(
                    t_s=float(line["t_s"]),
                    true_mpa=pressure,
                    measured_mpa=pressure,
                    setpoint_mpa=float(line["setpoint_mpa"]),
                    pump_duty=int(line["pump_duty"]) / _DUTY_FULL,
                    vent_duty=int(line["vent_duty"]) / _DUTY_FULL,
                    dump_closed=line["dump_closed"] == "1",
                    state=line["state"],
                    segment=int(line["segment"]),
                    faults=fault_names(int(line["faults"])),
                )
            )
    if not rows:
        raise RecordAnalysisError(f"{path}: no samples")
    return rows


def record_scenario(folder: Path) -> Scenario:
    """The scenario the HIL code judges a record by (its recipe and device profile)."""
    recipe_path = folder / "recipe.json"
    if not recipe_path.exists():
        raise RecordAnalysisError(f"{recipe_path}: missing (the run's recipe is unknown)")
    recipe = json.loads(recipe_path.read_text())
    profile = ProfileSection()
    profile_path = folder / PROFILE_FILE
    if profile_path.exists():
        p = json.loads(profile_path.read_text())
        profile = ProfileSection(
            max_working_mpa=p["max_working_mpa"],
            trip_mpa=p["trip_mpa"],
            max_ramp_up_mpa_s=p["max_ramp_up_mpa_s"],
            max_ramp_down_mpa_s=p["max_ramp_down_mpa_s"],
            max_hold_s=p["max_hold_s"],
            margin_mpa=p["margin_mpa"],
            host_lost_timeout_s=max(p["host_lost_timeout_ms"] / 1000.0, 0.5),
            host_lost_policy="finish" if p["host_lost_policy"] == 0 else "depressurise",
        )
    return Scenario(
        name=f"{folder.name}: {recipe['name']}",
        profile=profile,
        recipe=RecipeSection(name=recipe["name"], segments=recipe["segments"]),
    )


def _metrics(folder: Path) -> Metrics:
    started = time.monotonic()
    trace = record_trace(folder)
    scenario = record_scenario(folder)
    return compute_metrics(trace, scenario, wall_s=time.monotonic() - started)


def record_metrics(folder: Path) -> dict[str, object]:
    """``isopress hil run``'s metrics of a record (``sim_s`` is the run's length, s).

    ``final_state`` is the board's state at the run's end as ``run.json`` has it: the
    trace may stop a sample before it (the board's run-ended event closes the record).
    """
    metrics = _metrics(folder).to_json()
    summary_path = folder / "run.json"
    if summary_path.exists():
        metrics["final_state"] = json.loads(summary_path.read_text())["final_state"]
    return metrics


def plot_record(folder: Path, png: Path) -> None:
    """Draw a record as ``isopress hil run --plot`` draws a scenario run."""
    from ..hil.plot import plot_run

    trace = record_trace(folder)
    scenario = record_scenario(folder)
    plot_run(trace, scenario, png, compute_metrics(trace, scenario))
