"""Run records: recording, restart, hooks, listing, and repeatability comparison."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from isopress.agent.model import BoardEvent, BoardInfo, DeviceProfile, Sample
from isopress.agent.payloads import RunSummary
from isopress.agent.press import LoadedRecipe
from isopress.agent.recipe import Recipe
from isopress.cli import main
from isopress.runs.compare import CompareError, compare_runs
from isopress.runs.hooks import RunHooks
from isopress.runs.record import RunRecorder
from isopress.runs.store import RunNotFound, find_run, list_runs
from isoproto import codes

T0 = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC)

RECIPE = LoadedRecipe.of(
    Recipe.model_validate(
        {
            "name": "10 MPa",
            "segments": [
                {"kind": "ramp", "target_mpa": 10.0, "rate_mpa_s": 1.0},
                {"kind": "hold", "duration_s": 5.0},
                {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.0},
            ],
        }
    )
)
OTHER = LoadedRecipe.of(
    Recipe.model_validate(
        {"name": "20 MPa", "segments": [{"kind": "ramp", "target_mpa": 20.0, "rate_mpa_s": 1.0}]}
    )
)


def _info(boot: int = 1) -> BoardInfo:
    profile = DeviceProfile(
        max_working_mpa=400,
        trip_mpa=420,
        max_ramp_up_mpa_s=2,
        max_ramp_down_mpa_s=1,
        max_hold_s=3600,
        margin_mpa=10,
        host_lost_timeout_ms=5000,
        host_lost_policy=1,
    )
    return BoardInfo(
        firmware_version="1.2.3",
        protocol_major=1,
        protocol_minor=0,
        board_id="B1",
        board_kind="sim",
        profile_hash=0xCAFE,
        calibration_id="cal-7",
        calibration_date="2026-10-01",
        boot_count=boot,
        reset_cause=1,
        profile=profile,
    )


def _profile(offset_mpa: float = 0.0, hold_s: float = 5.0) -> list[tuple[int, int, float]]:
    """(segment, state, pressure) at 10 Hz: ramp 0->10 in 10 s, hold, ramp 10->0 in 10 s."""
    points: list[tuple[int, int, float]] = []
    for i in range(100):
        points.append((0, codes.ST_PRESSURISING, i * 0.1 + offset_mpa))
    for _ in range(int(hold_s * 10)):
        points.append((1, codes.ST_HOLDING, 10.0 + offset_mpa))
    for i in range(100):
        points.append((2, codes.ST_DEPRESSURISING, 10.0 - i * 0.1 + offset_mpa))
    return points


def _sample(
    seq: int,
    segment: int,
    state: int,
    p: float,
    *,
    run_id: int = 1,
    boot: int = 1,
    hist: bool = False,
    board_ms0: int = 0,
) -> Sample:
    return Sample(
        boot_count=boot,
        seq=seq,
        board_ms=board_ms0 + seq * 100,
        wall_time=T0 + timedelta(milliseconds=seq * 100),
        pressure_mpa=p,
        setpoint_mpa=p,
        pump_duty=0,
        vent_duty=0,
        faults=0,
        state=state,
        flags=0,
        segment=segment,
        run_id=run_id,
        historical=hist,
    )


def _event(kind: int, code: int, detail: int, seq: int = 1, boot: int = 1) -> BoardEvent:
    return BoardEvent(
        boot_count=boot,
        event_seq=seq,
        sample_seq=seq,
        board_ms=seq,
        wall_time=T0,
        kind=kind,
        code=code,
        detail=detail,
        value=0.0,
    )


def _record_run(
    folder: Path,
    *,
    run_id: int,
    recipe: LoadedRecipe = RECIPE,
    offset_mpa: float = 0.0,
    hold_s: float = 5.0,
    board_ms0: int = 0,
    hooks: RunHooks | None = None,
) -> RunSummary:
    published: list[RunSummary] = []
    rec = RunRecorder(folder, "press-01", hooks=hooks, publish=published.append)
    rec.on_info(_info())
    rec.expect_start("alice", recipe, run_id)
    points = _profile(offset_mpa, hold_s)
    for seq, (segment, state, p) in enumerate(points, start=1):
        rec.on_sample(_sample(seq, segment, state, p, run_id=run_id, board_ms0=board_ms0))
    rec.on_event(_event(codes.EV_FAULT_RAISED, codes.F_HOLD_LEAK, 0))
    rec.on_event(_event(codes.EV_RUN_ENDED, codes.ST_COMPLETE, run_id, seq=2))
    assert len(published) == 1
    return published[0]


def test_a_run_record_holds_everything_the_issue_lists(tmp_path: Path) -> None:
    summary = _record_run(tmp_path, run_id=3)
    folder = Path(summary.record_path)
    assert folder.name == summary.run_id and summary.run_id.endswith("-press-01-r3")
    assert summary.operator == "alice" and summary.outcome == "complete" and summary.final_state == "complete"
    assert summary.recipe is not None and summary.recipe.sha256 == RECIPE.sha256
    assert summary.board is not None
    assert (summary.board.firmware_version, summary.board.protocol_version) == ("1.2.3", "1.0")
    assert (summary.board.profile_hash, summary.board.calibration_id) == ("0000cafe", "cal-7")
    assert summary.faults == ["hold_leak"]
    assert summary.samples == 250 and summary.peak_mpa == pytest.approx(10.0)
    assert summary.started_at is not None and summary.ended_at is not None
    assert summary.metrics is None  # no hooks wired: said, not faked
    assert Recipe.model_validate_json((folder / "recipe.json").read_text()) == RECIPE.recipe
    assert RunSummary.model_validate_json((folder / "run.json").read_text()) == summary
    with (folder / "trace.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 250 and rows[0]["t_s"] == "0.000" and rows[-1]["state"] == "depressurising"
    assert not (folder / "trace.partial.csv").exists()


def test_backfilled_and_duplicate_samples_are_sorted_in(tmp_path: Path) -> None:
    rec = RunRecorder(tmp_path, "p")
    rec.on_info(_info())
    rec.expect_start("bob", RECIPE, 1)
    for seq in [1, 2, 5, 6, 3, 4, 4, 7]:  # 3 and 4 came late (backfill), 4 twice
        rec.on_sample(_sample(seq, 0, codes.ST_PRESSURISING, seq * 1.0, hist=seq in (3, 4)))
    summary = rec.finish((1, 1), codes.ST_COMPLETE)
    assert summary is not None and summary.samples == 7
    with (Path(summary.record_path) / "trace.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["seq"]) for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["historical"] for r in rows] == ["0", "0", "1", "1", "0", "0", "0"]


def test_a_restarted_agent_reopens_the_running_record(tmp_path: Path) -> None:
    first = RunRecorder(tmp_path, "p")
    first.on_info(_info())
    first.expect_start("carol", RECIPE, 2)
    for seq in range(1, 51):
        first.on_sample(_sample(seq, 0, codes.ST_PRESSURISING, seq * 0.1, run_id=2))
    first.close()  # the agent dies here (no finish)
    second = RunRecorder(tmp_path, "p")
    assert len(second.open_runs) == 1
    second.on_info(_info())
    for seq in range(30, 101):  # the gap backfilled, overlapping what was already written
        second.on_sample(_sample(seq, 0, codes.ST_PRESSURISING, seq * 0.1, run_id=2, hist=seq < 51))
    second.on_event(_event(codes.EV_RUN_ENDED, codes.ST_COMPLETE, 2))
    (summary,) = [r.summary for r in list_runs(tmp_path)]
    assert summary.operator == "carol" and summary.outcome == "complete" and summary.samples == 100
    assert summary.recipe is not None and summary.recipe.sha256 == RECIPE.sha256


def test_a_board_reboot_ends_the_run_as_interrupted(tmp_path: Path) -> None:
    rec = RunRecorder(tmp_path, "p")
    run_id = rec.expect_start("dave", RECIPE, 1)  # before any handshake: boot not known yet
    rec.on_sample(_sample(1, 0, codes.ST_PRESSURISING, 1.0, boot=4))  # adopts the record
    assert len(rec.open_runs) == 1
    assert rec.board_rebooted(3) == []
    assert rec.board_rebooted(4) == [run_id]
    (record,) = list_runs(tmp_path)
    assert record.summary.outcome == "interrupted" and record.summary.samples == 1


def test_hooks_fill_metrics_and_plot_and_a_failing_hook_keeps_the_record(tmp_path: Path) -> None:
    def metrics(folder: Path) -> dict[str, object]:
        with (folder / "trace.csv").open() as f:
            return {"rows": sum(1 for _ in f) - 1}

    def plot(folder: Path, png: Path) -> None:
        png.write_bytes(b"\x89PNG fake")

    summary = _record_run(tmp_path / "a", run_id=1, hooks=RunHooks(metrics=metrics, plot=plot))
    folder = Path(summary.record_path)
    assert summary.metrics == {"rows": 250}
    assert json.loads((folder / "metrics.json").read_text()) == {"rows": 250}
    assert (folder / "plot.png").exists()

    def broken(folder: Path) -> dict[str, object]:
        raise RuntimeError("boom")

    summary = _record_run(tmp_path / "b", run_id=1, hooks=RunHooks(metrics=broken))
    assert summary.outcome == "complete" and summary.metrics is None


def test_compare_aligns_by_segment_and_reports_rms_and_max(tmp_path: Path) -> None:
    ref = _record_run(tmp_path, run_id=1)
    # Same recipe, 0.5 MPa higher all the way, a hold 3 s longer and a different board clock:
    # aligned on the run clock the down-ramps would differ by 3 MPa; by segment, 0.5 MPa.
    other = _record_run(tmp_path, run_id=2, offset_mpa=0.5, hold_s=8.0, board_ms0=777_000)
    result = compare_runs([find_run(tmp_path, ref.run_id), find_run(tmp_path, other.run_id)])
    (dev,) = result.runs
    assert dev.rms_mpa == pytest.approx(0.5, abs=1e-6)
    assert dev.max_mpa == pytest.approx(0.5, abs=1e-6)
    assert [s.segment for s in dev.segments] == [0, 1, 2]
    assert dev.segments[1].overlap_s == pytest.approx(4.9)  # the shorter hold limits the overlap


def test_compare_refuses_different_recipes(tmp_path: Path) -> None:
    a = _record_run(tmp_path, run_id=1)
    b = _record_run(tmp_path, run_id=2, recipe=OTHER)
    with pytest.raises(CompareError, match="runs of different recipes cannot be compared"):
        compare_runs([find_run(tmp_path, a.run_id), find_run(tmp_path, b.run_id)])


def test_find_run_by_prefix_and_clear_errors(tmp_path: Path) -> None:
    a = _record_run(tmp_path, run_id=1)
    assert find_run(tmp_path, a.run_id[:-1] + "1").run_id == a.run_id
    with pytest.raises(RunNotFound, match="no run 'nope'"):
        find_run(tmp_path, "nope")
    _record_run(tmp_path, run_id=12)
    with pytest.raises(RunNotFound, match="matches 2 runs"):
        find_run(tmp_path, "2026")


def test_runs_cli_list_show_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _record_run(tmp_path, run_id=1)
    b = _record_run(tmp_path, run_id=2, offset_mpa=0.25)
    c = _record_run(tmp_path, run_id=3, recipe=OTHER)
    folder = ["--folder", str(tmp_path)]
    assert main(["runs", "list", *folder]) == 0
    out = capsys.readouterr().out
    assert all(r.run_id in out for r in (a, b, c)) and "alice" in out and "complete" in out
    assert main(["runs", "show", a.run_id, *folder]) == 0
    out = capsys.readouterr().out
    assert "operator    alice" in out and RECIPE.sha256 in out and "hold_leak" in out and "trace.csv" in out
    assert main(["runs", "compare", a.run_id, b.run_id, *folder]) == 0
    out = capsys.readouterr().out
    assert b.run_id in out and "0.250" in out
    assert main(["runs", "compare", a.run_id, c.run_id, *folder]) == 2
    assert "runs of different recipes cannot be compared" in capsys.readouterr().err
    assert main(["runs", "show", "nope", *folder]) == 2
    assert main(["runs", "compare", a.run_id, b.run_id, "--json", *folder]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert data["runs"][0]["rms_mpa"] == pytest.approx(0.25)
    png = tmp_path / "a.png"
    assert main(["runs", "plot", a.run_id, "--out", str(png), *folder]) == 0
    assert capsys.readouterr().out.strip() == str(png) and png.read_bytes()[:4] == b"\x89PNG"


def test_the_hil_hooks_give_a_record_hil_run_metrics_and_a_plot(tmp_path: Path) -> None:
    from isopress.runs.hooks import hil_hooks

    summary = _record_run(tmp_path, run_id=1, hold_s=8.0, hooks=hil_hooks())  # judged after 5 s
    folder = Path(summary.record_path)
    profile = json.loads((folder / "profile.json").read_text())
    assert profile["profile_hash"] == "0000cafe" and profile["max_working_mpa"] == 400
    metrics = summary.metrics
    assert metrics is not None and metrics == json.loads((folder / "metrics.json").read_text())
    # isopress hil run's keys, computed on the measured trace: 10 MPa peak, no overshoot
    # (the synthetic ramp ends at 9.9 MPa, then holds at exactly 10)
    assert metrics["peak_mpa"] == pytest.approx(10.0) and metrics["overshoot_mpa"] == 0.0
    assert metrics["hold_error_rms_mpa"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["final_state"] == "complete" and metrics["sim_s"] == pytest.approx(27.9)
    assert [r["segment"] for r in metrics["ramps"]] == [0, 2]  # type: ignore[index, union-attr]
    png = (folder / "plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_a_record_without_its_recipe_gets_no_metrics_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from isopress.runs.hooks import hil_hooks

    rec = RunRecorder(tmp_path, "p", hooks=hil_hooks())
    rec.on_info(_info())
    for seq in range(1, 20):  # a run the agent did not start (no recipe it loaded)
        rec.on_sample(_sample(seq, 0, codes.ST_PRESSURISING, seq * 0.1))
    summary = rec.finish((1, 1), codes.ST_COMPLETE)
    assert summary is not None and summary.outcome == "complete" and summary.metrics is None
    assert "recipe.json: missing" in caplog.text


def test_a_board_that_rebooted_while_the_agent_was_down_closes_the_run_on_reconnect(tmp_path: Path) -> None:
    first = RunRecorder(tmp_path, "p")
    first.on_info(_info(boot=4))
    run_id = first.expect_start("erin", RECIPE, 1)
    for seq in range(1, 31):
        first.on_sample(_sample(seq, 0, codes.ST_PRESSURISING, seq * 0.1, boot=4))
    first.close()  # the agent dies; the board reboots before it is back
    published: list[RunSummary] = []
    second = RunRecorder(tmp_path, "p", publish=published.append)
    assert [r.run_id for r in second.open_runs.values()] == [run_id]  # reopened from disk
    assert second.on_info(_info(boot=4)) == []  # the same boot: the run goes on
    assert second.on_info(_info(boot=5)) == [run_id]
    assert not second.open_runs
    (summary,) = published
    assert summary.outcome == "interrupted" and summary.final_state == "boot" and summary.samples == 30
    assert summary.operator == "erin" and summary.ended_at is not None
    assert RunSummary.model_validate_json((Path(summary.record_path) / "run.json").read_text()) == summary
    assert RunRecorder(tmp_path, "p").open_runs == {}  # a third agent finds nothing to reopen


def test_an_accepted_abort_survives_an_agent_restart(tmp_path: Path) -> None:
    first = RunRecorder(tmp_path, "p")
    first.on_info(_info(boot=4))
    first.expect_start("erin", RECIPE, 1)
    first.on_sample(_sample(1, 0, codes.ST_PRESSURISING, 0.1, boot=4))
    first.mark_aborted()
    first.close()  # the agent stops; the board is reset before the abort's ramp-down ends
    second = RunRecorder(tmp_path, "p")
    second.on_info(_info(boot=5))
    (record,) = list_runs(tmp_path)
    assert record.summary.outcome == "aborted"


def test_hooks_in_the_background_publish_the_summary_when_they_are_done(tmp_path: Path) -> None:
    pending: list[tuple[Any, Any]] = []
    published: list[RunSummary] = []
    hooks = RunHooks(metrics=lambda folder: {"rows": 1})
    rec = RunRecorder(
        tmp_path, "p", hooks=hooks, publish=published.append, background=lambda w, d: pending.append((w, d))
    )
    rec.on_info(_info())
    rec.expect_start("alice", RECIPE, 1)
    rec.on_sample(_sample(1, 0, codes.ST_PRESSURISING, 1.0))
    now = rec.finish((1, 1), codes.ST_COMPLETE)
    assert now is not None and now.outcome == "complete" and now.metrics is None and published == []
    folder = Path(now.record_path)
    assert RunSummary.model_validate_json((folder / "run.json").read_text()).outcome == "complete"
    ((work, done),) = pending
    done(work())
    (summary,) = published
    assert summary.metrics == {"rows": 1}
    assert RunSummary.model_validate_json((folder / "run.json").read_text()).metrics == {"rows": 1}
