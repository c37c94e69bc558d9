"""``isopress runs list | show RUN | plot RUN | compare RUN RUN...``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .compare import CompareError, compare_runs
from .store import RunNotFound, find_run, list_runs

__all__ = ["add_runs_parser"]

DEFAULT_FOLDER = Path("/var/lib/isopress/runs")


def _folder(args: argparse.Namespace) -> Path:
    if args.folder:
        return Path(args.folder)
    if args.config:
        from ..agent.config import load_config

        return load_config(Path(args.config)).runs.folder
    return DEFAULT_FOLDER


def _list(args: argparse.Namespace) -> int:
    folder = _folder(args)
    runs = list_runs(folder)
    if not runs:
        print(f"no runs in {folder}")
        return 0
    print(f"{'run':<44} {'operator':<12} {'recipe':<24} {'outcome':<11} {'peak MPa':>8} {'samples':>8}")
    for r in runs:
        s = r.summary
        recipe = s.recipe.name if s.recipe else "-"
        peak = f"{s.peak_mpa:.1f}" if s.peak_mpa is not None else "-"
        operator = s.operator or "-"
        print(f"{s.run_id:<44} {operator:<12} {recipe[:24]:<24} {s.outcome:<11} {peak:>8} {s.samples:>8}")
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        record = find_run(_folder(args), args.run)
    except RunNotFound as exc:
        print(exc, file=sys.stderr)
        return 2
    s = record.summary
    if args.json:
        print(s.model_dump_json(indent=2))
        return 0
    lines = [
        f"run         {s.run_id}",
        f"folder      {record.folder}",
        f"operator    {s.operator or 'unknown'}",
        f"recipe      {s.recipe.name + ' sha256 ' + s.recipe.sha256 if s.recipe else 'unknown'}",
        f"outcome     {s.outcome} (final state {s.final_state})",
        f"started     {s.started_at.isoformat()}",
        f"ended       {s.ended_at.isoformat() if s.ended_at else '-'}",
        f"samples     {s.samples}, peak {f'{s.peak_mpa:.2f}' if s.peak_mpa is not None else '-'} MPa",
        f"faults      {', '.join(s.faults) or 'none'}",
    ]
    if s.board is not None:
        b = s.board
        lines += [
            f"board       {b.board_kind} {b.board_id}, firmware {b.firmware_version}, "
            f"protocol {b.protocol_version}",
            f"profile     hash {b.profile_hash}; calibration {b.calibration_id} ({b.calibration_date})",
        ]
    lines.append(f"metrics     {json.dumps(s.metrics) if s.metrics else 'not computed'}")
    files = sorted(p.name for p in record.folder.iterdir() if not p.name.startswith("."))
    lines.append(f"files       {', '.join(files)}")
    print("\n".join(lines))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .analysis import RecordAnalysisError, plot_record

    try:
        record = find_run(_folder(args), args.run)
        out = Path(args.out) if args.out else record.folder / "plot.png"
        plot_record(record.folder, out)
    except (RunNotFound, RecordAnalysisError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(out)
    return 0


def _compare(args: argparse.Namespace) -> int:
    folder = _folder(args)
    try:
        records = [find_run(folder, ref) for ref in args.runs]
        result = compare_runs(records)
    except (RunNotFound, CompareError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(result), indent=2))
        return 0
    print(f"recipe {result.recipe_name!r} ({result.recipe_sha256[:12]}); reference {result.reference}")
    print(f"{'run':<44} {'RMS dev MPa':>12} {'max dev MPa':>12} {'points':>8}")
    for r in result.runs:
        print(f"{r.run_id:<44} {r.rms_mpa:>12.3f} {r.max_mpa:>12.3f} {r.points:>8}")
        for seg in r.segments:
            label = f"  segment {seg.segment} ({seg.overlap_s:.0f} s)"
            print(f"{label:<44} {seg.rms_mpa:>12.3f} {seg.max_mpa:>12.3f} {seg.points:>8}")
    return 0


def add_runs_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``runs`` command to the top-level parser."""
    runs = sub.add_parser("runs", help="list, show and compare run records")
    where = argparse.ArgumentParser(add_help=False)
    group = where.add_mutually_exclusive_group()
    group.add_argument("--folder", help=f"runs folder (default {DEFAULT_FOLDER})")
    group.add_argument("--config", help="take the runs folder from this agent config file")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    listing = runs_sub.add_parser("list", parents=[where], help="every run, oldest first")
    listing.set_defaults(func=_list)
    show = runs_sub.add_parser("show", parents=[where], help="one run's record")
    show.add_argument("run", help="run id (or a unique prefix)")
    show.add_argument("--json", action="store_true", help="print run.json")
    show.set_defaults(func=_show)
    plot = runs_sub.add_parser("plot", parents=[where], help="draw a run's plot (as isopress hil run does)")
    plot.add_argument("run", help="run id (or a unique prefix)")
    plot.add_argument("--out", help="PNG to write (default: plot.png in the run's folder)")
    plot.set_defaults(func=_plot)
    compare = runs_sub.add_parser(
        "compare", parents=[where], help="repeatability of runs of one recipe (vs the first run)"
    )
    compare.add_argument("runs", nargs="+", help="run ids (or unique prefixes); the first is the reference")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(func=_compare)
