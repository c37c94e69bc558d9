"""Hooks through which run records get their metrics and plot.

The metrics (``isopress hil run``'s keys: overshoot, hold error, ramp-rate error, ...) and
the plot are written by the HIL package (``isopress.hil.metrics`` and ``isopress.hil.plot``)
so that a run on the press and a HIL scenario are judged by the same code. This module
only defines the seam; :func:`hil_hooks` wires them in (:mod:`isopress.runs.analysis`
adapts a record to them).

A hook gets the run folder (``trace.csv``, ``recipe.json``, ``events.jsonl``, ``run.json``
are there) and must not raise for a normal trace; if it does, the record is kept and the
failure logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MetricsHook", "PlotHook", "RunHooks", "hil_hooks"]

# run folder -> metrics (JSON-serialisable), stored in metrics.json and the run summary
MetricsHook = Callable[[Path], dict[str, object]]
# (run folder, PNG path to write)
PlotHook = Callable[[Path, Path], None]


@dataclass(frozen=True, slots=True)
class RunHooks:
    """Optional metrics and plot producers for finished runs."""

    metrics: MetricsHook | None = None
    plot: PlotHook | None = None


def hil_hooks() -> RunHooks:
    """The hooks backed by ``isopress.hil``: ``isopress hil run``'s metrics and plot of the
    record (:mod:`isopress.runs.analysis`; the measured pressure stands in for the true one)."""
    from .analysis import plot_record, record_metrics

    return RunHooks(metrics=record_metrics, plot=plot_record)
