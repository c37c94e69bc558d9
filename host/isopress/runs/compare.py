"""Repeatability between runs of one recipe: pressure curves aligned by segment.

Each run is compared with the first one given (the reference). Runs never start at the
same instant and a pause or a slow pump shifts everything after it, so the curves are not
aligned on the run clock but segment by segment: within segment k, time counts from the
first sample of segment k in each run, and the other run's pressure is interpolated at the
reference's sample times over the part both runs spent in that segment. The RMS and the
maximum of the difference are reported per segment and over the whole run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .store import RunRecord, Trace, load_trace

__all__ = ["CompareError", "Comparison", "RunDeviation", "SegmentDeviation", "compare_runs"]


class CompareError(ValueError):
    """The runs cannot be compared (different recipes, no recipe, too few runs, no overlap)."""


@dataclass(frozen=True, slots=True)
class SegmentDeviation:
    """Deviation from the reference within one recipe segment."""

    segment: int
    points: int
    overlap_s: float
    rms_mpa: float
    max_mpa: float


@dataclass(frozen=True, slots=True)
class RunDeviation:
    """One run against the reference."""

    run_id: str
    points: int
    rms_mpa: float
    max_mpa: float
    segments: tuple[SegmentDeviation, ...]


@dataclass(frozen=True, slots=True)
class Comparison:
    """Every run against the reference."""

    reference: str
    recipe_name: str
    recipe_sha256: str
    runs: tuple[RunDeviation, ...]


def _segments(trace: Trace) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per segment: (time since the segment's first sample, pressure)."""
    t = np.asarray(trace.t_s, dtype=float)
    p = np.asarray(trace.pressure_mpa, dtype=float)
    seg = np.asarray(trace.segment, dtype=int)
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k in np.unique(seg):
        mask = seg == k
        tk = t[mask]
        out[int(k)] = (tk - tk[0], p[mask])
    return out


def _deviation(ref: Trace, other: Trace) -> tuple[np.ndarray, list[SegmentDeviation]]:
    ref_segments = _segments(ref)
    other_segments = _segments(other)
    all_diffs: list[np.ndarray] = []
    per_segment: list[SegmentDeviation] = []
    for k in sorted(set(ref_segments) & set(other_segments)):
        t_ref, p_ref = ref_segments[k]
        t_other, p_other = other_segments[k]
        overlap = min(float(t_ref[-1]), float(t_other[-1]))
        mask = t_ref <= overlap
        if not mask.any():
            continue
        diff = np.interp(t_ref[mask], t_other, p_other) - p_ref[mask]
        all_diffs.append(diff)
        per_segment.append(
            SegmentDeviation(
                segment=k,
                points=int(diff.size),
                overlap_s=overlap,
                rms_mpa=float(math.sqrt(float(np.mean(diff * diff)))),
                max_mpa=float(np.max(np.abs(diff))),
            )
        )
    return (np.concatenate(all_diffs) if all_diffs else np.zeros(0)), per_segment


def compare_runs(records: list[RunRecord]) -> Comparison:
    """Compare ``records[1:]`` with ``records[0]``; refuses runs of different recipes."""
    if len(records) < 2:
        raise CompareError("compare needs at least two runs")
    reference = records[0]
    for r in records:
        if r.summary.recipe is None:
            raise CompareError(f"run {r.run_id} has no recorded recipe: it cannot be compared")
    ref_recipe = reference.summary.recipe
    assert ref_recipe is not None
    different = [r for r in records[1:] if r.summary.recipe and r.summary.recipe.sha256 != ref_recipe.sha256]
    if different:
        lines = [
            f"{r.run_id}: {r.summary.recipe.name!r} ({r.summary.recipe.sha256[:12]})"
            for r in different
            if r.summary.recipe
        ]
        raise CompareError(
            "runs of different recipes cannot be compared for repeatability: "
            f"reference {reference.run_id} ran {ref_recipe.name!r} ({ref_recipe.sha256[:12]}), but "
            + "; ".join(lines)
        )
    ref_trace = load_trace(reference)
    results: list[RunDeviation] = []
    for r in records[1:]:
        diff, segments = _deviation(ref_trace, load_trace(r))
        if diff.size == 0:
            raise CompareError(f"run {r.run_id} shares no segment time with {reference.run_id}")
        results.append(
            RunDeviation(
                run_id=r.run_id,
                points=int(diff.size),
                rms_mpa=float(math.sqrt(float(np.mean(diff * diff)))),
                max_mpa=float(np.max(np.abs(diff))),
                segments=tuple(segments),
            )
        )
    return Comparison(reference.run_id, ref_recipe.name, ref_recipe.sha256, tuple(results))
