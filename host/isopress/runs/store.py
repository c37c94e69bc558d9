"""Reading run records back: list, find by id or prefix, load the trace."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..agent.payloads import RunSummary

__all__ = ["RunNotFound", "RunRecord", "Trace", "find_run", "list_runs", "load_trace"]


class RunNotFound(LookupError):
    """No run record (or more than one) matches what the user typed."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run folder and its ``run.json``."""

    folder: Path
    summary: RunSummary

    @property
    def run_id(self) -> str:
        """The folder name."""
        return self.summary.run_id


@dataclass(frozen=True, slots=True)
class Trace:
    """The columns of ``trace.csv`` that comparisons need."""

    t_s: list[float]
    pressure_mpa: list[float]
    setpoint_mpa: list[float]
    segment: list[int]


def list_runs(folder: Path) -> list[RunRecord]:
    """Every readable run record under ``folder``, oldest first (unreadable ones are skipped)."""
    records: list[RunRecord] = []
    for path in folder.glob("*/run.json"):
        try:
            summary = RunSummary.model_validate_json(path.read_text())
        except (OSError, ValidationError):
            continue
        records.append(RunRecord(path.parent, summary))
    return sorted(records, key=lambda r: (r.summary.started_at, r.run_id))


def find_run(folder: Path, ref: str) -> RunRecord:
    """The run whose id is ``ref`` or starts with it (unique)."""
    runs = list_runs(folder)
    exact = [r for r in runs if r.run_id == ref]
    if exact:
        return exact[0]
    matches = [r for r in runs if r.run_id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFound(f"no run {ref!r} in {folder} ({len(runs)} runs there; see `isopress runs list`)")
    names = ", ".join(r.run_id for r in matches[:5])
    raise RunNotFound(f"{ref!r} matches {len(matches)} runs ({names}, ...): give more of the id")


def load_trace(record: RunRecord) -> Trace:
    """Read ``trace.csv`` of a record."""
    t_s: list[float] = []
    pressure: list[float] = []
    setpoint: list[float] = []
    segment: list[int] = []
    path = record.folder / "trace.csv"
    if not path.exists():
        raise RunNotFound(f"run {record.run_id} has no trace.csv (still running, or interrupted?)")
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            t_s.append(float(row["t_s"]))
            pressure.append(float(row["pressure_mpa"]))
            setpoint.append(float(row["setpoint_mpa"]))
            segment.append(int(row["segment"]))
    return Trace(t_s, pressure, setpoint, segment)
