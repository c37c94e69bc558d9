"""``isopress hil run SCENARIO.toml`` and ``isopress hil tune SCENARIO.toml``.

``run`` prints one JSON object on stdout (see docs/scenarios.md, "Running a scenario")
and exits 0 when the scenario's expectations hold, 1 when they do not (or the virtual
board did not run to the end), 2 when the scenario file is bad (every problem on stderr
as ``key: reason``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import micropython_port
from .runner import RUNTIMES, BoardConfigError, HilRunError, RunOptions, run_scenario
from .scenario import ScenarioError, load_scenario

__all__ = ["add_hil_parser"]

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_BAD_FILE = 2


def _run(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(Path(args.scenario))
        if args.seed is not None:
            scenario = scenario.with_seed(args.seed)
    except ScenarioError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_FILE
    options = RunOptions(runtime=args.runtime, realtime=args.realtime, controller=args.controller)
    try:
        result = run_scenario(scenario, options, source=args.scenario)
    except BoardConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_FILE
    except (HilRunError, micropython_port.MicroPythonMissingError) as exc:
        print(f"{args.scenario}: {exc}", file=sys.stderr)
        print(json.dumps({"scenario": scenario.name, "passed": False, "error": str(exc)}))
        return EXIT_FAILED
    if args.trace:
        from .trace import write_trace_csv

        with open(args.trace, "w", newline="", encoding="utf-8") as f:
            write_trace_csv(f, result.trace)
    if args.plot:
        from .plot import plot_run

        plot_run(result.trace, scenario, args.plot, result.metrics)
    print(json.dumps(result.to_json()))
    for failure in result.verdict.failures:
        print(f"{args.scenario}: {failure}", file=sys.stderr)
    return EXIT_PASSED if result.verdict.passed else EXIT_FAILED


def _tune(args: argparse.Namespace) -> int:
    from .tune import tune

    try:
        scenario = load_scenario(Path(args.scenario))
        if args.seed is not None:
            scenario = scenario.with_seed(args.seed)
    except ScenarioError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_FILE
    if args.budget_s <= 0:
        print("--budget-s: must be > 0", file=sys.stderr)
        return EXIT_BAD_FILE

    def progress(c: object) -> None:
        from .tune import Candidate

        assert isinstance(c, Candidate)
        print(f"tried {c.gains} cost {c.cost:.3f}", file=sys.stderr)

    try:
        result = tune(scenario, RunOptions(runtime=args.runtime), budget_s=args.budget_s, progress=progress)
    except BoardConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_FILE
    except (HilRunError, micropython_port.MicroPythonMissingError) as exc:
        print(f"{args.scenario}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(result.to_json()))
    return EXIT_PASSED


def add_hil_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``hil run`` and ``hil tune`` to the ``isopress`` command line."""
    hil = sub.add_parser("hil", help="hardware-in-the-loop: scenarios on the virtual board")
    hil_sub = hil.add_subparsers(dest="hil_command", required=True)
    run = hil_sub.add_parser(
        "run",
        help="run a scenario file on the virtual board; one JSON object on stdout "
        "(exit 0 expectations hold, 1 they do not, 2 bad file)",
    )
    run.add_argument("scenario", help="the scenario's TOML file (docs/scenarios.md)")
    run.add_argument("--runtime", choices=RUNTIMES, default="micropython", help="default: micropython")
    run.add_argument("--realtime", action="store_true", help="pace the virtual board to the wall clock")
    run.add_argument("--seed", type=int, help="random seed (overrides run.seed)")
    run.add_argument("--trace", metavar="FILE.csv", help="write the trace as CSV")
    run.add_argument("--plot", metavar="FILE.png", help="draw the run")
    run.add_argument(
        "--controller",
        choices=["firmware", "plain_pid"],
        default="firmware",
        help="plain_pid: the baseline without feed-forward and anti-windup",
    )
    run.set_defaults(func=_run)

    tune = hil_sub.add_parser(
        "tune",
        help="search the controller's gains on the scenario's virtual plant (bounded time); "
        "prints the best gains with their metrics as JSON",
    )
    tune.add_argument("scenario", help="the scenario's TOML file; short recipes tune faster")
    tune.add_argument("--budget-s", type=float, default=120.0, help="wall-time budget (default 120 s)")
    tune.add_argument("--runtime", choices=RUNTIMES, default="micropython", help="default: micropython")
    tune.add_argument("--seed", type=int, help="random seed (overrides run.seed)")
    tune.set_defaults(func=_tune)
