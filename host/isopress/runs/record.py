"""Writing run records: one folder per run.

Why folders of plain files rather than a database: a run record is evidence that leaves
the machine — attached to a lab notebook, archived with the cells, read by someone with a
spreadsheet years later. CSV, JSON and PNG open anywhere, a folder copies with any tool,
and one damaged run cannot take the others with it. Listing and comparing a few thousand
runs from their ``run.json`` files is fast enough; the spool is the only database.

A folder ``<runs>/<run_id>/`` holds:

- ``run.json``: the :class:`~isopress.agent.payloads.RunSummary` (also published retained
  on ``run/<run_id>``), written at start (outcome ``running``) and again at the end;
- ``recipe.json``: the recipe as loaded, whose canonical hash is in ``run.json``;
- ``profile.json``: the device profile the board reported (its hash is in ``run.json``);
- ``trace.csv``: every sample of the run, in board order, deduplicated;
- ``events.jsonl``: the board events of the run;
- ``metrics.json`` and ``plot.png`` when the hooks provide them (``isopress.hil``, see
  :mod:`isopress.runs.analysis`).

While the run is on, samples are appended to ``trace.partial.csv`` (flushed every second)
so an agent crash loses nothing; a restarted agent reopens a ``running`` record when the
board's samples for it keep coming, and backfilled samples are sorted in at the end.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from isoproto import codes

from ..agent.model import BoardEvent, BoardInfo, Sample, fault_names, state_name
from ..agent.payloads import BoardRef, RunSummary, event_body, iso_utc
from ..agent.press import LoadedRecipe
from .hooks import RunHooks

__all__ = ["PROFILE_FILE", "TRACE_COLUMNS", "OpenRun", "RunRecorder", "outcome_of", "profile_document"]

PROFILE_FILE = "profile.json"

log = logging.getLogger("isopress.runs")

TRACE_COLUMNS = (
    "t_s",
    "wall_time",
    "boot_count",
    "seq",
    "board_ms",
    "pressure_mpa",
    "setpoint_mpa",
    "pump_duty",
    "vent_duty",
    "dump_closed",
    "faults",
    "state",
    "flags",
    "segment",
    "historical",
)

# (work, done): run work() (the hooks), then done(its result) on the recorder's thread.
Metrics = dict[str, object] | None
Background = Callable[[Callable[[], Metrics], Callable[[Metrics], None]], None]


def _in_place(work: Callable[[], Metrics], done: Callable[[Metrics], None]) -> None:
    done(work())


_UNKNOWN_BOOT = -1
_TERMINAL = (codes.ST_COMPLETE, codes.ST_FAULT, codes.ST_ESTOP, codes.ST_IDLE)
_ACTIVE = (codes.ST_PRESSURISING, codes.ST_HOLDING, codes.ST_DEPRESSURISING, codes.ST_PAUSED)


def outcome_of(final_state: int, aborted: bool) -> str:
    """``complete``, ``fault``, ``estop``, ``aborted`` or ``interrupted``."""
    if final_state == codes.ST_COMPLETE:
        return "complete"
    if final_state == codes.ST_FAULT:
        return "fault"
    if final_state == codes.ST_ESTOP:
        return "estop"
    return "aborted" if aborted else "interrupted"


@dataclass
class OpenRun:
    """A run being recorded."""

    folder: Path
    run_id: str
    boot_count: int
    board_run_id: int
    started_at: datetime
    operator: str | None
    recipe: LoadedRecipe | None
    board: BoardRef | None
    start_board_ms: int | None = None
    samples: int = 0
    peak_mpa: float | None = None
    faults: list[str] = field(default_factory=list)
    last_state: int = codes.ST_PRESSURISING
    aborted: bool = False
    ended_at: datetime | None = None

    @property
    def partial_trace(self) -> Path:
        """Samples as they come (unsorted)."""
        return self.folder / "trace.partial.csv"


class RunRecorder:
    """Feeds run records from board updates; see the module docstring for the files.

    ``publish`` is called with each finished :class:`RunSummary` (the agent spools it for
    the retained ``run/<run_id>`` topic). ``background(work, done)`` runs the hooks'
    ``work()`` somewhere and calls ``done(result)`` back on the recorder's thread (the
    agent: a worker thread, so a plot never stalls the serial session); by default both
    run at once, in place.
    """

    def __init__(
        self,
        folder: Path,
        press_id: str,
        *,
        hooks: RunHooks | None = None,
        publish: Callable[[RunSummary], None] | None = None,
        background: Background | None = None,
    ) -> None:
        self.folder = folder
        self.press_id = press_id
        self.hooks = hooks or RunHooks()
        self._publish = publish
        self._background: Background = background or _in_place
        self.finished: deque[RunSummary] = deque(maxlen=64)  # the runs this recorder closed, last last
        self.open_runs: dict[tuple[int, int], OpenRun] = {}
        self._expected: tuple[str, LoadedRecipe | None, int] | None = None
        self._info: BoardInfo | None = None
        self._writers: dict[tuple[int, int], tuple[TextIO, Any]] = {}  # partial trace file, csv writer
        self.folder.mkdir(parents=True, exist_ok=True)
        self._reopen_running()

    # -- inputs --------------------------------------------------------------------------
    def on_info(self, info: BoardInfo) -> list[str]:
        """The board introduced itself (versions, profile and calibration for the record).

        Runs still open from an earlier boot can never end: the board rebooted (perhaps
        while no agent was watching, their records reopened from disk). They end now as
        ``interrupted`` (``aborted`` when an abort had been accepted); returns their ids.
        """
        self._info = info
        ended: list[str] = []
        for key in [k for k in self.open_runs if k[0] not in (info.boot_count, _UNKNOWN_BOOT)]:
            log.warning(
                "run %s: the board rebooted (boot %d -> %d) before the run ended",
                self.open_runs[key].run_id,
                key[0],
                info.boot_count,
            )
            summary = self.finish(key, codes.ST_BOOT)
            if summary is not None:
                ended.append(summary.run_id)
        return ended

    def expect_start(self, operator: str, recipe: LoadedRecipe | None, board_run_id: int) -> str:
        """The board accepted a start from ``operator``; opens the record now and returns its id."""
        self._expected = (operator, recipe, board_run_id)
        # Without a handshake yet the boot is unknown (-1): the first sample adopts the record.
        boot = self._info.boot_count if self._info else _UNKNOWN_BOOT
        run = self.open_runs.get((boot, board_run_id)) or self._open(boot, board_run_id, datetime.now(UTC))
        return run.run_id

    def on_sample(self, sample: Sample) -> str | None:
        """Record a sample; returns the run id it belongs to (None outside runs)."""
        if sample.run_id == 0:
            return None
        key = (sample.boot_count, sample.run_id)
        run = self.open_runs.get(key)
        if run is None and (_UNKNOWN_BOOT, sample.run_id) in self.open_runs:
            run = self.open_runs.pop((_UNKNOWN_BOOT, sample.run_id))
            run.boot_count = sample.boot_count
            self.open_runs[key] = run
        if run is None:
            if sample.historical or sample.state not in _ACTIVE:
                return None
            run = self._open(sample.boot_count, sample.run_id, sample.wall_time)
        self._append(run, sample)
        if not sample.historical:
            run.last_state = sample.state
            if sample.state in _TERMINAL:
                self.finish(key, sample.state)
                return run.run_id
        return run.run_id

    def on_event(self, event: BoardEvent) -> None:
        """Record an event; faults are listed, a RUN_ENDED event closes the run."""
        for key, run in list(self.open_runs.items()):
            if key[0] != event.boot_count:
                continue
            with (run.folder / "events.jsonl").open("a") as f:
                f.write(event_body(event) + "\n")
            if event.kind == codes.EV_FAULT_RAISED:
                names = fault_names(1 << event.code) if 0 <= event.code < 16 else (f"fault_{event.code}",)
                run.faults.extend(names)
            if event.kind == codes.EV_RUN_ENDED and event.detail == run.board_run_id:
                self.finish(key, event.code)

    def open_run_ids(self) -> set[str]:
        """Ids of the runs being recorded."""
        return {run.run_id for run in self.open_runs.values()}

    def board_rebooted(self, old_boot_count: int) -> list[str]:
        """The board reset: its open runs end as ``interrupted``; returns their ids."""
        ended: list[str] = []
        for key in [k for k in self.open_runs if k[0] == old_boot_count]:
            summary = self.finish(key, codes.ST_BOOT)
            if summary is not None:
                ended.append(summary.run_id)
        return ended

    def mark_aborted(self) -> None:
        """An abort was accepted: the runs now open end as ``aborted`` unless they fault."""
        for run in self.open_runs.values():
            run.aborted = True
            _save_state(run)  # an agent restarted before the run's end still knows

    def flush(self) -> None:
        """Push buffered trace lines to disk (the agent calls this about once a second)."""
        for handle, _writer in self._writers.values():
            handle.flush()

    def close(self) -> None:
        """Flush and close the partial traces (runs stay open on disk for a restart)."""
        for handle, _writer in self._writers.values():
            handle.close()
        self._writers.clear()

    # -- records -------------------------------------------------------------------------
    def _open(self, boot_count: int, board_run_id: int, started_at: datetime) -> OpenRun:
        operator: str | None = None
        recipe: LoadedRecipe | None = None
        if self._expected is not None and self._expected[2] == board_run_id:
            operator, recipe, _ = self._expected
            self._expected = None
        run_id = f"{started_at.astimezone(UTC):%Y%m%d-%H%M%S}-{self.press_id}-r{board_run_id}"
        folder = self.folder / run_id
        folder.mkdir(parents=True, exist_ok=True)
        run = OpenRun(
            folder=folder,
            run_id=run_id,
            boot_count=boot_count,
            board_run_id=board_run_id,
            started_at=started_at,
            operator=operator,
            recipe=recipe,
            board=BoardRef.from_info(self._info) if self._info else None,
        )
        if recipe is not None:
            (folder / "recipe.json").write_text(recipe.recipe.model_dump_json(indent=2) + "\n")
        if self._info is not None:
            profile = profile_document(self._info)
            (folder / PROFILE_FILE).write_text(json.dumps(profile, indent=2) + "\n")
        self.open_runs[(boot_count, board_run_id)] = run
        self._write_summary(run, final_state=codes.ST_PRESSURISING, outcome="running")
        log.info("run %s opened (operator %s)", run_id, operator or "unknown")
        return run

    def _append(self, run: OpenRun, sample: Sample) -> None:
        key = (run.boot_count, run.board_run_id)
        entry = self._writers.get(key)
        if entry is None:
            new = not run.partial_trace.exists()
            handle = run.partial_trace.open("a", newline="")
            writer = csv.writer(handle)
            if new:
                writer.writerow(TRACE_COLUMNS)
            entry = (handle, writer)
            self._writers[key] = entry
        if run.start_board_ms is None or sample.board_ms < run.start_board_ms:
            run.start_board_ms = sample.board_ms
        entry[1].writerow(_row(sample, run.start_board_ms))
        run.samples += 1
        if run.peak_mpa is None or sample.pressure_mpa > run.peak_mpa:
            run.peak_mpa = sample.pressure_mpa

    def finish(self, key: tuple[int, int], final_state: int) -> RunSummary | None:
        """Close a run: sort the trace, write ``run.json``, run the hooks, publish the summary.

        The hooks (metrics, plot: seconds for a long run) run through ``background``; the
        summary with the metrics is written and published when they are done. Returns the
        summary as written now (without the metrics when the hooks run in the background).
        """
        run = self.open_runs.pop(key, None)
        if run is None:
            return None
        entry = self._writers.pop(key, None)
        if entry is not None:
            entry[0].close()
        run.ended_at = datetime.now(UTC)
        samples = _finalise_trace(run)
        run.samples = samples
        outcome = outcome_of(final_state, run.aborted)
        summary = self._write_summary(run, final_state=final_state, outcome=outcome)
        log.info("run %s ended: %s, %d samples in %s", run.run_id, outcome, samples, run.folder / "trace.csv")
        hooks = self.hooks
        folder, run_id = run.folder, run.run_id

        def work() -> Metrics:
            # Only files of this (closed) run are touched here: safe in another thread.
            metrics: Metrics = None
            if hooks.metrics is not None:
                try:
                    metrics = hooks.metrics(folder)
                    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
                except Exception:  # a hook failing must not lose the record
                    log.exception("metrics hook failed for %s", run_id)
            if hooks.plot is not None:
                try:
                    hooks.plot(folder, folder / "plot.png")
                except Exception:
                    log.exception("plot hook failed for %s", run_id)
            return metrics

        def done(metrics: Metrics) -> None:
            final = self._write_summary(run, final_state=final_state, outcome=outcome, metrics=metrics)
            if self._publish is not None:
                self._publish(final)
            self.finished.append(final)

        if hooks.metrics is None and hooks.plot is None:
            done(None)
        else:
            self._background(work, done)
        last = self.finished[-1] if self.finished else None
        return last if last is not None and last.run_id == run_id else summary

    def _write_summary(
        self, run: OpenRun, *, final_state: int, outcome: str, metrics: dict[str, object] | None = None
    ) -> RunSummary:
        summary = RunSummary(
            run_id=run.run_id,
            press_id=self.press_id,
            board_run_id=run.board_run_id,
            operator=run.operator,
            recipe=run.recipe.ref() if run.recipe else None,
            board=run.board,
            started_at=run.started_at,
            ended_at=run.ended_at,
            outcome=outcome,
            final_state=state_name(final_state),
            faults=run.faults,
            samples=run.samples,
            peak_mpa=run.peak_mpa,
            record_path=str(run.folder),
            metrics=metrics,
        )
        tmp = run.folder / "run.json.tmp"
        tmp.write_text(summary.model_dump_json(indent=2) + "\n")
        os.replace(tmp, run.folder / "run.json")  # never a half-written run.json
        _save_state(run)
        return summary

    def _reopen_running(self) -> None:
        """Pick up records a previous agent left ``running`` (it crashed or was restarted)."""
        for summary_path in sorted(self.folder.glob("*/run.json")):
            try:
                summary = RunSummary.model_validate_json(summary_path.read_text())
                state = json.loads((summary_path.parent / ".recorder.json").read_text())
            except (OSError, ValueError):
                continue
            if summary.outcome != "running":
                continue
            recipe = None
            recipe_path = summary_path.parent / "recipe.json"
            if recipe_path.exists():
                from ..agent.recipe import Recipe

                recipe = LoadedRecipe.of(Recipe.model_validate_json(recipe_path.read_text()))
            run = OpenRun(
                folder=summary_path.parent,
                run_id=summary.run_id,
                boot_count=int(state["boot_count"]),
                board_run_id=summary.board_run_id,
                started_at=summary.started_at,
                operator=summary.operator,
                recipe=recipe,
                board=summary.board,
                start_board_ms=state.get("start_board_ms"),
                samples=summary.samples,
                peak_mpa=summary.peak_mpa,
                faults=list(summary.faults),
                aborted=bool(state.get("aborted")),
            )
            self.open_runs[(run.boot_count, run.board_run_id)] = run
            log.info("run %s reopened after an agent restart", run.run_id)


def _save_state(run: OpenRun) -> None:
    """``.recorder.json``: what a restarted recorder needs beyond ``run.json``."""
    state = {"boot_count": run.boot_count, "start_board_ms": run.start_board_ms, "aborted": run.aborted}
    tmp = run.folder / ".recorder.json.tmp"
    tmp.write_text(json.dumps(state) + "\n")
    os.replace(tmp, run.folder / ".recorder.json")


def profile_document(info: BoardInfo) -> dict[str, object]:
    """``profile.json``: the device profile the board reported at the run's start."""
    p = info.profile
    return {
        "profile_hash": f"{info.profile_hash:08x}",
        "max_working_mpa": p.max_working_mpa,
        "trip_mpa": p.trip_mpa,
        "max_ramp_up_mpa_s": p.max_ramp_up_mpa_s,
        "max_ramp_down_mpa_s": p.max_ramp_down_mpa_s,
        "max_hold_s": p.max_hold_s,
        "margin_mpa": p.margin_mpa,
        "host_lost_timeout_ms": p.host_lost_timeout_ms,
        "host_lost_policy": p.host_lost_policy,
    }


def _row(sample: Sample, start_board_ms: int) -> list[object]:
    return [
        f"{(sample.board_ms - start_board_ms) / 1000.0:.3f}",
        iso_utc(sample.wall_time),
        sample.boot_count,
        sample.seq,
        sample.board_ms,
        f"{sample.pressure_mpa:.4f}",
        f"{sample.setpoint_mpa:.4f}",
        sample.pump_duty,
        sample.vent_duty,
        int(sample.dump_closed),
        sample.faults,
        state_name(sample.state),
        sample.flags,
        sample.segment,
        int(sample.historical),
    ]


def _finalise_trace(run: OpenRun) -> int:
    """Sort ``trace.partial.csv`` by (boot, seq), drop duplicates, write ``trace.csv``."""
    rows: dict[tuple[int, int], list[str]] = {}
    sources = [p for p in (run.folder / "trace.csv", run.partial_trace) if p.exists()]
    for path in sources:
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                continue
            for line in reader:
                if len(line) == len(TRACE_COLUMNS):
                    rows.setdefault((int(line[2]), int(line[3])), line)
    ordered = [rows[k] for k in sorted(rows)]
    if ordered:
        start_ms = min(int(r[4]) for r in ordered)
        for r in ordered:
            r[0] = f"{(int(r[4]) - start_ms) / 1000.0:.3f}"
    tmp = run.folder / "trace.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(TRACE_COLUMNS)
        writer.writerows(ordered)
    os.replace(tmp, run.folder / "trace.csv")
    run.partial_trace.unlink(missing_ok=True)
    return len(ordered)
