"""Run a scenario on the virtual board: the real firmware against the plant and transducer.

:func:`run_scenario` turns a :class:`~isopress.hil.scenario.Scenario` into the board's
JSON (:meth:`Scenario.to_board_json` plus run options), starts
``firmware/boards/sim/scenario_board.py`` under the MicroPython unix port (from the built
``.mpy`` bundle, as a board runs it) or CPython, reads the trace rows and the summary it
writes, and computes the metrics and the verdict on the scenario's expectations.
``isopress hil run`` (:func:`main_run`) prints the result as one JSON object.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isoproto import names

from .. import micropython_port
from ..firmware_build import build_bundle, bundle_sources
from ..paths import firmware_root, protocol_root
from .metrics import Metrics, Verdict, check_expectations, compute_metrics
from .scenario import Scenario
from .trace import TraceRow

__all__ = [
    "CONTROLLERS",
    "RUNTIMES",
    "SCENARIO_HEAP_BYTES",
    "VIRTUAL_TIME_GC_EVERY_TICKS",
    "BoardConfigError",
    "HilRunError",
    "RunOptions",
    "RunResult",
    "board_bundle",
    "run_scenario",
]

RUNTIMES = ("micropython", "cpython")
CONTROLLERS = ("firmware", "plain_pid")
# The scenario board carries the models' fault machinery and the trace writer beside the
# firmware (~30 KB more than the real-time board, which fits 180 KB with its serial link):
# about 170 KB stay live after a collection. A run gets a 1 MB heap so that, in virtual
# time, the loop can collect every VIRTUAL_TIME_GC_EVERY_TICKS ticks instead of the
# config's 10: a collection costs ~150 us here (marking the loaded modules, whatever the
# garbage), 14 % of a virtual-time run at every 10 ticks. When the loop collects changes
# no reading, output or trace row (the same seed gives the same trace under CPython, which
# never collects); a real-time run keeps the config's cadence, as a board would.
SCENARIO_HEAP_BYTES = 1024 * 1024
VIRTUAL_TIME_GC_EVERY_TICKS = 100

# Board config keys the scenario sets, and the scenario key to name when the board refuses.
_CONFIG_KEYS = {
    "control_period_ms": "run.control_rate_hz",
    "calibration.range_mpa": "transducer.range_mpa",
    "calibration.shunt_ohm": "transducer.shunt_ohm",
}


class HilRunError(RuntimeError):
    """The virtual board did not run the scenario to its end (a crash, a timeout)."""


class BoardConfigError(ValueError):
    """The scenario asks for a board config the firmware refuses; ``problems`` name the
    scenario keys (``key: reason``)."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(
            f"{source}: the board refuses this scenario's config\n" + "\n".join(f"  {p}" for p in problems)
        )


@dataclass(frozen=True)
class RunOptions:
    """How to run a scenario (``isopress hil run`` flags)."""

    runtime: str = "micropython"
    realtime: bool = False
    heap_bytes: int = SCENARIO_HEAP_BYTES
    controller: str = "firmware"
    control: Mapping[str, float] = field(default_factory=dict)  # over the config's "control"
    measure_time: bool = True
    timeout_s: float = 1800.0
    # The loop's collection cadence: None is VIRTUAL_TIME_GC_EVERY_TICKS in virtual time and
    # the board config's gc_every_ticks in real time.
    gc_every_ticks: int | None = None

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime: {self.runtime!r} is not one of {', '.join(RUNTIMES)}")
        if self.controller not in CONTROLLERS:
            raise ValueError(f"controller: {self.controller!r} is not one of {', '.join(CONTROLLERS)}")
        if self.gc_every_ticks is not None and self.gc_every_ticks < 1:
            raise ValueError(f"gc_every_ticks: {self.gc_every_ticks} is not a positive tick count")

    def loop_gc_every_ticks(self) -> int | None:
        """The cadence the board is told (None: the config's)."""
        if self.gc_every_ticks is not None:
            return self.gc_every_ticks
        return None if self.realtime else VIRTUAL_TIME_GC_EVERY_TICKS


@dataclass(frozen=True)
class RunResult:
    """A finished run: its trace, the board's summary, metrics and verdict."""

    scenario: Scenario
    options: RunOptions
    trace: list[TraceRow]
    board: dict[str, Any]
    load_reply: tuple[int, int, int, list[Any]] | None
    start_reply: tuple[int, int, int] | None
    metrics: Metrics
    verdict: Verdict
    wall_s: float

    @property
    def rejected_at_load(self) -> bool:
        """True when the board refused the recipe."""
        return self.load_reply is not None and self.load_reply[0] != 0

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``isopress hil run`` prints."""
        out = self.metrics.to_json()
        board = self.board
        out.update(
            {
                "scenario": self.scenario.name,
                "seed": self.scenario.run.seed,
                "runtime": self.options.runtime,
                "realtime": self.options.realtime,
                "controller": self.options.controller,
                "passed": self.verdict.passed,
                "failures": self.verdict.failures,
                "load_reason": None if self.load_reply is None else _reason_name(self.load_reply[1]),
                "load_problems": []
                if self.load_reply is None
                else [{"reason": _reason_name(r), "index": i} for r, i in self.load_reply[3]],
                "loop_us_mean": board.get("loop_us_mean"),
                "loop_us_p99": board.get("loop_us_p99"),
                "loop_us_max": board.get("loop_us_max"),
                "board_trip_latency_us": board.get("trip_latency_us"),
                "board_wall_s": board.get("board_wall_s"),
                "speed_x": None if not self.wall_s else round(self.metrics.sim_s / self.wall_s, 1),
                "trace_rows": len(self.trace),
            }
        )
        return out


def _reason_name(code: int) -> str:
    return names.REASON_NAMES[code] if 0 <= code < len(names.REASON_NAMES) else str(code)


# -- the firmware bundle -------------------------------------------------------------------


def _bundle_key() -> str:
    h = hashlib.sha256()
    for item in bundle_sources("sim"):
        st = item.source.stat()
        h.update(f"{item.board_path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def board_bundle() -> Path:
    """The sim board's built ``.mpy`` bundle, rebuilt when a source changed (cached in
    the temp folder, shared by every run of the same sources)."""
    final = Path(tempfile.gettempdir()) / f"isopress-hil-bundle-{_bundle_key()}"
    if (final / "scenario_board.mpy").exists():
        return final
    staging = Path(tempfile.mkdtemp(prefix="isopress-hil-build-"))
    try:
        build_bundle("sim", staging / "bundle")
        try:
            os.rename(staging / "bundle", final)
        except OSError:  # another process got there first: theirs is the same build
            if not (final / "scenario_board.mpy").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _argv(runtime: str, doc_path: Path, heap_bytes: int) -> tuple[list[str], dict[str, str]]:
    call = f"import scenario_board; scenario_board.main({str(doc_path)!r})"
    env = dict(os.environ)
    if runtime == "micropython":
        env["MICROPYPATH"] = str(board_bundle())
        exe = str(micropython_port.micropython_executable())
        return [exe, "-X", f"heapsize={heap_bytes}", "-c", call], env
    fw = firmware_root()
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (fw / "boards" / "sim", fw, protocol_root()))
    return [sys.executable, "-c", call], env


# -- reading the board's output -------------------------------------------------------------------


def _faults(mask: int) -> tuple[str, ...]:
    return tuple(name for bit, name in enumerate(names.FAULT_NAMES) if mask & (1 << bit))


def _row(fields: list[str]) -> TraceRow:
    t_ms, true_mpa, measured, setpoint, pump, vent, dump_closed, state, segment, faults = fields
    return TraceRow(
        t_s=int(t_ms) / 1000.0,
        true_mpa=float(true_mpa),
        measured_mpa=float(measured),
        setpoint_mpa=float(setpoint),
        pump_duty=int(pump) / 65535.0,
        vent_duty=int(vent) / 65535.0,
        dump_closed=dump_closed == "1",
        state=names.STATE_NAMES[int(state)],
        segment=int(segment),
        faults=_faults(int(faults)),
    )


@dataclass
class _Output:
    rows: list[TraceRow] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    load: tuple[int, int, int, list[Any]] | None = None
    start: tuple[int, int, int] | None = None
    other: list[str] = field(default_factory=list)


def _parse(stdout: str) -> _Output:
    out = _Output()
    for line in stdout.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "R":
            out.rows.append(_row(rest.split()))
        elif tag == "S":
            out.summary = json.loads(rest)
        elif tag == "L":
            result, reason, detail, problems = rest.split(" ", 3)
            out.load = (int(result), int(reason), int(detail), json.loads(problems))
        elif tag == "T":
            result, reason, detail = rest.split()
            out.start = (int(result), int(reason), int(detail))
        elif line:
            out.other.append(line)
    return out


def _config_problems(source: str, errors: list[str]) -> BoardConfigError:
    problems = []
    for error in errors:
        key, _, reason = str(error).partition(": ")
        problems.append(f"{_CONFIG_KEYS.get(key, key)}: {reason or error}")
    return BoardConfigError(source, problems)


# -- running -----------------------------------------------------------------------------------------


def run_scenario(scenario: Scenario, options: RunOptions | None = None, source: str = "") -> RunResult:
    """Run ``scenario`` on the virtual board and judge it.

    Raises :class:`BoardConfigError` when the board refuses the config the scenario needs
    (e.g. a control rate it does not support) and :class:`HilRunError` when the board did
    not run to the end.
    """
    options = options or RunOptions()
    doc = {
        "scenario": scenario.to_board_json(),
        "options": {
            "realtime": options.realtime,
            "measure_time": options.measure_time,
            "controller": options.controller,
            "control": dict(options.control),
            "gc_every_ticks": options.loop_gc_every_ticks(),
        },
    }
    with tempfile.TemporaryDirectory(prefix="isopress-hil-") as tmp:
        path = Path(tmp) / "run.json"
        path.write_text(json.dumps(doc))
        argv, env = _argv(options.runtime, path, options.heap_bytes)
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=options.timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise HilRunError(f"the virtual board did not finish within {options.timeout_s:g} s") from exc
        wall_s = time.perf_counter() - started
    out = _parse(proc.stdout)
    if proc.returncode != 0 or out.summary is None:
        tail = "\n".join((out.other + proc.stderr.splitlines())[-30:])
        raise HilRunError(f"the virtual board ({options.runtime}) exited with {proc.returncode}:\n{tail}")
    if out.summary.get("config_errors"):
        raise _config_problems(source or scenario.name, out.summary["config_errors"])
    if not out.rows:
        raise HilRunError("the virtual board wrote no trace")
    rejected = out.load is not None and out.load[0] != 0
    overruns = int(out.summary["loop_overruns"]) + (
        0 if options.realtime else int(out.summary.get("loop_slow_ticks", 0))
    )
    metrics = compute_metrics(
        out.rows, scenario, loop_overruns=overruns, wall_s=wall_s, rejected_at_load=rejected
    )
    return RunResult(
        scenario=scenario,
        options=options,
        trace=out.rows,
        board=out.summary,
        load_reply=out.load,
        start_reply=out.start,
        metrics=metrics,
        verdict=check_expectations(metrics, scenario),
        wall_s=wall_s,
    )
