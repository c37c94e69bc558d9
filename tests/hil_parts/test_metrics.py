"""Metrics and expectation checks on synthetic traces whose answers are known."""

from __future__ import annotations

import math
from typing import Any

import pytest

from hil_tests._library import REPORT_KEYS
from isopress.hil.metrics import check_expectations, compute_metrics, outputs_safe
from isopress.hil.scenario import Scenario
from isopress.hil.trace import TraceRow

CYCLE = [
    {"kind": "ramp", "target_mpa": 100.0, "rate_mpa_s": 1.0},
    {"kind": "hold", "duration_s": 50.0},
    {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 0.5},
]


def scenario(segments: list[dict[str, Any]] | None = None, **sections: Any) -> Scenario:
    data: dict[str, Any] = {"name": "synthetic", "recipe": {"segments": segments or CYCLE}}
    data.update(sections)
    return Scenario.model_validate(data)


def row(
    t: float,
    true: float,
    sp: float | None = None,
    *,
    state: str = "pressurising",
    segment: int = 0,
    pump: float = 0.5,
    vent: float = 0.0,
    dump_closed: bool = True,
    faults: tuple[str, ...] = (),
    measured: float | None = None,
) -> TraceRow:
    return TraceRow(
        t_s=t,
        true_mpa=true,
        measured_mpa=true if measured is None else measured,
        setpoint_mpa=true if sp is None else sp,
        pump_duty=pump,
        vent_duty=vent,
        dump_closed=dump_closed,
        state=state,
        segment=segment,
        faults=faults,
    )


def cycle_trace() -> list[TraceRow]:
    """0 -> 100 MPa at a true 0.98 MPa/s (commanded 1), a hold with a known error, down at 0.5.

    Rows every 0.1 s. Hold: 100.3 MPa while settling (100..105 s), then
    100 + 0.3 cos(2 pi (t - 105) / 10) for four whole periods, then exactly 100.
    """
    rows = []
    for i in range(1000):  # ramp up, 0..99.9 s
        t = i / 10
        rows.append(row(t, 0.98 * t, t))
    for i in range(500):  # hold, 100..149.9 s
        t = 100 + i / 10
        if t < 105:
            true = 100.3
        elif i < 450:
            true = 100 + 0.3 * math.cos(2 * math.pi * (i - 50) / 100)
        else:
            true = 100.0
        rows.append(row(t, true, 100.0, state="holding", segment=1, pump=0.05))
    for i in range(2001):  # ramp down, 150..350 s, true on the setpoint
        t = 150 + i / 10
        sp = 100 - 0.5 * (t - 150)
        rows.append(row(t, sp, sp, state="depressurising", segment=2, pump=0.0, vent=0.1))
    rows.append(row(350.1, 0.0, 0.0, state="complete", segment=2, pump=0.0, dump_closed=False))
    return rows


def test_cycle_metrics_have_their_known_values() -> None:
    m = compute_metrics(cycle_trace(), scenario(), loop_overruns=3, wall_s=1.5)
    assert m.peak_mpa == pytest.approx(100.3)
    assert m.overshoot_mpa == pytest.approx(0.3)
    # Four whole periods of 0.3 cos (sum of squares 18 over 400 rows) and 50 rows of 0,
    # each row standing for 0.1 s: sqrt(18 / 450) = 0.2.
    assert m.hold_error_rms_mpa == pytest.approx(0.2, abs=1e-9)
    assert m.hold_error_max_mpa == pytest.approx(0.3, abs=1e-9)
    assert [f.segment for f in m.ramps] == [0, 2]
    assert m.ramps[0].measured_mpa_s == pytest.approx(0.98)
    assert m.ramps[0].error_pct == pytest.approx(-2.0)
    assert m.ramps[1].measured_mpa_s == pytest.approx(-0.5)
    assert m.ramps[1].error_pct == pytest.approx(0.0, abs=1e-9)
    assert m.ramp_rate_error_pct == pytest.approx(-2.0)
    assert m.max_depressurization_rate_mpa_s == pytest.approx(0.5, abs=1e-9)
    assert m.final_state == "complete" and m.final_mpa == 0.0
    assert m.faults == [] and m.trip_latency_ms == []
    assert (m.loop_overruns, m.wall_s, m.sim_s) == (3, 1.5, 350.1)


def test_json_report_has_every_key_the_issue_names() -> None:
    report = compute_metrics(cycle_trace(), scenario()).to_json()
    for key in REPORT_KEYS:
        assert key in report, key
    assert report["hold_error_rms_mpa"] == 0.2


def test_hold_settling_window_is_left_out() -> None:
    rows = cycle_trace()
    settled = compute_metrics(rows, scenario())
    unsettled = compute_metrics(rows, scenario(), hold_settle_s=0.0)
    assert settled.hold_error_max_mpa == pytest.approx(0.3)
    assert unsettled.hold_error_rms_mpa is not None and settled.hold_error_rms_mpa is not None
    assert unsettled.hold_error_rms_mpa > settled.hold_error_rms_mpa


def test_hold_error_is_weighted_by_the_time_each_row_stands_for() -> None:
    segs = [{"kind": "ramp", "target_mpa": 10.0, "rate_mpa_s": 1.0}, {"kind": "hold", "duration_s": 30.0}]
    rows = [row(0.0, 0.0, 0.0), row(10.0, 10.0, 10.0, state="holding", segment=1)]
    rows.append(row(15.0, 11.0, 10.0, state="holding", segment=1))  # 1 MPa off for 9 s
    rows += [row(24.0 + i / 10, 10.0, 10.0, state="holding", segment=1) for i in range(11)]  # on for 1 s
    m = compute_metrics(rows, scenario(segs))
    assert m.hold_error_rms_mpa == pytest.approx(math.sqrt(9.0 / 10.0))
    assert m.hold_error_max_mpa == pytest.approx(1.0)


def test_depressurisation_rate_is_smoothed_over_one_second() -> None:
    segs = [{"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.0}]
    # A 0.2 MPa step inside 1 ms is a 0.2 MPa/s fall over the 1 s window, not 200 MPa/s.
    rows = [row(t / 10, 50.0, state="depressurising") for t in range(30)]
    rows += [row(3.0, 50.0, state="depressurising"), row(3.001, 49.8, state="depressurising")]
    rows += [row(3.1 + t / 10, 49.8, state="depressurising") for t in range(30)]
    m = compute_metrics(rows, scenario(segs))
    assert m.max_depressurization_rate_mpa_s == pytest.approx(0.2, abs=1e-6)
    narrow = compute_metrics(rows, scenario(segs), depressurization_window_s=0.01)
    assert narrow.max_depressurization_rate_mpa_s == pytest.approx(20.0, rel=1e-3)


def test_raised_faults_come_from_the_transitions_of_the_active_set() -> None:
    rows = [
        row(0.0, 0.0),
        row(1.0, 1.0, faults=("glovebox_lost",)),
        row(2.0, 1.0, faults=("glovebox_lost",)),
        row(3.0, 1.0),
        row(4.0, 1.0, faults=("glovebox_lost", "host_lost")),
    ]
    m = compute_metrics(rows, scenario())
    assert [(f.code, f.t_s) for f in m.faults] == [
        ("glovebox_lost", 1.0),
        ("glovebox_lost", 4.0),
        ("host_lost", 4.0),
    ]


STUCK = [{"kind": "ramp", "target_mpa": 380.0, "rate_mpa_s": 2.0}, {"kind": "hold", "duration_s": 100.0}]


def stuck_trace(safe_at: float | None) -> list[TraceRow]:
    rows = [
        row(i / 10, 300.0 + i / 2, 380.0, state="holding", segment=1, pump=0.0, vent=1.0) for i in range(199)
    ]
    rows.append(row(19.9, 419.0, 380.0, state="holding", segment=1, pump=0.0, vent=1.0))
    rows.append(row(20.0, 420.5, 380.0, state="holding", segment=1, pump=0.0, vent=1.0))
    tripped = {
        "state": "fault",
        "segment": 1,
        "pump": 0.0,
        "dump_closed": False,
        "faults": ("overpressure_hw",),
    }
    if safe_at is not None:
        rows.append(row(safe_at, 421.0, 380.0, **tripped))
        rows.append(row(safe_at + 1.0, 100.0, 380.0, **tripped))
    else:
        rows.append(row(21.0, 425.0, 380.0, state="holding", segment=1, pump=0.0, vent=1.0))
    return rows


def test_overpressure_latency_runs_from_the_true_crossing_to_the_dump() -> None:
    s = scenario(STUCK, faults=[{"kind": "pump_stuck_on", "t_s": 10.0}])
    m = compute_metrics(stuck_trace(20.0 + 0.0017), s)
    (reaction,) = m.trip_latency_ms
    crossing = 19.9 + 0.1 * (1.0 / 1.5)  # 419 -> 420.5 MPa between 19.9 s and 20.0 s
    assert reaction.onset_t_s == pytest.approx(crossing)
    assert reaction.reaction == "dump"
    assert reaction.latency_ms == pytest.approx((20.0017 - crossing) * 1000.0)
    assert reaction.detected_code == "overpressure_hw"
    verdict = check_expectations(m, s.model_copy(update={"expect": _expect(max_trip_latency_ms=40.0)}))
    assert verdict.passed, verdict.failures
    verdict = check_expectations(m, s.model_copy(update={"expect": _expect(max_trip_latency_ms=2.0)}))
    assert not verdict.passed
    assert "max_trip_latency_ms" in verdict.failures[0]


def test_a_board_safe_before_the_plant_crosses_the_trip_has_zero_latency() -> None:
    s = scenario(STUCK, faults=[{"kind": "pump_stuck_on", "t_s": 10.0}])
    rows = stuck_trace(None)[:190]  # up to 18.9 s, never above 419 MPa
    tripped = {
        "state": "fault",
        "segment": 1,
        "pump": 0.0,
        "dump_closed": False,
        "faults": ("overpressure_hw",),
    }
    rows += [row(19.0, 418.9, 380.0, **tripped), row(20.0, 300.0, 380.0, **tripped)]
    (reaction,) = compute_metrics(rows, s).trip_latency_ms
    assert reaction.onset_t_s == 19.0 and reaction.latency_ms == 0.0


def test_a_board_that_never_makes_the_outputs_safe_fails_the_latency_check() -> None:
    s = scenario(STUCK, faults=[{"kind": "pump_stuck_on", "t_s": 10.0}], expect={"max_trip_latency_ms": 2.0})
    m = compute_metrics(stuck_trace(None), s)
    assert m.trip_latency_ms[0].latency_ms is None
    assert m.trip_latency_ms[0].detected_code is None
    verdict = check_expectations(m, s)
    assert not verdict.passed
    assert "no safe outputs (dump)" in " ".join(verdict.failures)


def _expect(**values: Any) -> Any:
    from isopress.hil.scenario import ExpectSection

    return ExpectSection.model_validate(values)


def test_vent_pause_and_policy_reactions() -> None:
    hold = [{"kind": "ramp", "target_mpa": 100.0, "rate_mpa_s": 1.0}, {"kind": "hold", "duration_s": 100.0}]
    holding = {"state": "holding", "segment": 1}
    rows = [row(t, 100.0, 100.0, pump=0.1, **holding) for t in (100.0, 105.0)]
    rows.append(row(105.2, 100.0, 100.0, pump=0.1, state="paused", segment=1, faults=("glovebox_lost",)))
    rows.append(row(106.0, 100.0, 100.0, pump=0.1, **holding))
    rows.append(row(108.0, 99.0, 100.0, pump=0.0, state="depressurising", segment=1, faults=("hold_leak",)))
    rows.append(row(110.0, 90.0, 100.0, pump=0.0, state="depressurising", segment=1, faults=("hold_leak",)))
    faults = [
        {"kind": "glovebox_lost", "t_s": 105.0, "duration_s": 0.5},
        {"kind": "leak_change", "t_s": 106.0, "params": {"leak_ml_s_per_mpa": 0.001}},
        {"kind": "host_lost", "t_s": 106.5},
    ]
    finish = scenario(hold, faults=faults, profile={"host_lost_policy": "finish"})
    glovebox, leak, host = compute_metrics(rows, finish).trip_latency_ms
    assert (glovebox.reaction, glovebox.latency_ms) == ("pause", pytest.approx(200.0))
    assert (leak.reaction, leak.latency_ms) == ("vent", pytest.approx(2000.0))
    assert (host.reaction, host.latency_ms, host.safe_t_s) == ("none", None, None)
    vent = scenario(hold, faults=faults, profile={"host_lost_policy": "depressurise"})
    host = compute_metrics(rows, vent).trip_latency_ms[2]
    assert (host.reaction, host.latency_ms) == ("vent", pytest.approx(1500.0))


def test_outputs_safe_by_reaction() -> None:
    dumped = row(1.0, 10.0, pump=0.0, dump_closed=False, state="fault", faults=("estop",))
    running = row(1.0, 10.0, pump=0.3, state="pressurising")
    paused = row(1.0, 10.0, pump=0.2, state="paused", faults=("glovebox_lost",))
    assert outputs_safe(dumped, "dump") and not outputs_safe(running, "dump")
    assert outputs_safe(paused, "pause") and not outputs_safe(paused, "vent")
    assert not outputs_safe(row(1.0, 10.0, pump=0.0, state="depressurising"), "vent")  # no fault: no reaction
    assert not outputs_safe(dumped, "none")


def test_expectations_pass_and_fail_with_reasons() -> None:
    rows = cycle_trace()
    ok = scenario(
        expect={
            "final_state": "complete",
            "no_faults": True,
            "max_overshoot_mpa": 0.35,
            "max_hold_error_rms_mpa": 0.25,
            "max_hold_error_max_mpa": 0.31,
            "max_ramp_rate_error_pct": 2.01,
            "max_depressurization_rate_mpa_s": 0.51,
            "min_peak_mpa": 100.0,
            "max_peak_mpa": 101.0,
            "max_final_mpa": 0.1,
            "max_loop_overruns": 0,
        }
    )
    verdict = check_expectations(compute_metrics(rows, ok), ok)
    assert verdict.passed, verdict.failures
    assert len(verdict.checks) == 12  # rejected_at_load is always checked
    strict = scenario(
        expect={
            "final_state": "fault",
            "max_overshoot_mpa": 0.1,
            "max_ramp_rate_error_pct": 1.0,
            "max_loop_overruns": 0,
            "rejected_at_load": True,
            "faults": [{"code": "estop"}],
        }
    )
    verdict = check_expectations(compute_metrics(rows, strict, loop_overruns=2), strict)
    assert not verdict.passed
    failed = {f.split(":")[0] for f in verdict.failures}
    assert failed == {
        "expect.final_state",
        "expect.max_overshoot_mpa",
        "expect.max_ramp_rate_error_pct",
        "expect.max_loop_overruns",
        "expect.rejected_at_load",
        "expect.faults[estop]",
    }
    assert "0.3 (limit 0.1)" in " ".join(verdict.failures)


def test_expected_fault_latency_counts_from_the_preceding_injection() -> None:
    segs = [{"kind": "ramp", "target_mpa": 100.0, "rate_mpa_s": 1.0}]
    rows = [row(t, t) for t in (0.0, 10.0, 20.0)]
    rows.append(row(20.05, 20.0, pump=0.0, dump_closed=False, state="fault", faults=("transducer_low",)))
    rows.append(row(21.0, 15.0, pump=0.0, dump_closed=False, state="fault", faults=("transducer_low",)))
    faults = [{"kind": "transducer_open_wire", "t_s": 20.0}]
    fast = {"faults": [{"code": "transducer_low", "max_latency_ms": 60.0}], "every_fault_detected": True}
    s = scenario(segs, faults=faults, expect=fast)
    assert check_expectations(compute_metrics(rows, s), s).passed
    slow = {"faults": [{"code": "transducer_low", "max_latency_ms": 40.0}], "no_other_faults": True}
    s = scenario(segs, faults=faults, expect=slow)
    verdict = check_expectations(compute_metrics(rows, s), s)
    assert verdict.failures == [
        "expect.faults[transducer_low]: raised 50.0 ms after the onset of faults[0] "
        "(transducer_open_wire; limit 40 ms)"
    ]
    missed = scenario(segs, faults=faults, expect={"every_fault_detected": True})
    verdict = check_expectations(compute_metrics(rows[:3], missed), missed)
    assert verdict.failures == ["expect.every_fault_detected: missed: faults[0] (transducer_open_wire)"]


def test_metrics_without_holds_or_ramps_say_so() -> None:
    segs = [{"kind": "hold", "duration_s": 5.0}]
    s = scenario(segs, expect={"max_hold_error_rms_mpa": 1.0, "max_ramp_rate_error_pct": 5.0})
    m = compute_metrics([row(0.0, 0.0, state="idle", segment=-1)], s, rejected_at_load=False)
    assert m.hold_error_rms_mpa is None and m.ramp_rate_error_pct is None
    verdict = check_expectations(m, s)
    assert verdict.failures == [
        "expect.max_hold_error_rms_mpa: no hold in this run to compare with 1",
        "expect.max_ramp_rate_error_pct: no fitted ramp in this run to compare with 5",
    ]
    with pytest.raises(ValueError, match="trace: empty"):
        compute_metrics([], s)
