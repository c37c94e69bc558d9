# Every safety layer on the virtual board, through the real main loop: the trip, the
# action the fault table gives it, and how long it took. CPython and MicroPython.
#
# Times: faults are injected by the scripted host right after the outputs of tick t
# are written, so the earliest the main loop can react is the next tick, t + 10 ms.

from board import SimBoard, config_with, read_config, simulate
from isofw.recipe import hold, ramp
from isoproto import codes, names

TO_100 = [ramp(100.0, 2.0), hold(120.0), ramp(0.0, 1.0)]  # at 100 MPa from t = 50.1 s
TICK_MS = 10


def _start(recipe=TO_100):
    return [(0, "load", recipe), (100, "start", None)]


def _raised(core):
    """(fault bit, board ms) of every FAULT_RAISED event, in order."""
    return [(e[4], e[2]) for e in core.events.since(0) if e[3] == codes.EV_FAULT_RAISED]


def _first(core, bit):
    for fault, ms in _raised(core):
        if fault == bit:
            return ms
    raise AssertionError("fault %s never raised; raised: %s" % (names.FAULT_NAMES[bit], _raised(core)))


def _safe_after(board, t_ms):
    """Milliseconds from t_ms until the outputs went safe (pump off, dump valve open)."""
    for edge in board.safe_edges_ms:
        if edge >= t_ms:
            return edge - t_ms
    raise AssertionError("outputs never went safe after %d ms" % t_ms)


def _trace(board, from_ms=0, to_ms=1 << 30, every_ms=10):
    board.trace = []
    board.trace_every_ms = every_ms
    board.trace_from_ms = from_ms
    board.trace_to_ms = to_ms


def _trace_from(from_ms, to_ms, every_ms=10):
    return lambda board: _trace(board, from_ms, to_ms, every_ms)


# -- hard over-pressure: the interrupt, without the main loop ---------------------------


def test_hard_trip_in_the_interrupt_alone_within_2_ms_of_the_crossing():
    # No main loop at all: the board's interrupt is the only thing running. The vessel is
    # made small so the pressure crosses the trip mid-millisecond at ~40 MPa/s.
    board = SimBoard(read_config(), 10.0, 1, 0.0, False)
    board.transducer = board.make_transducer({"noise_pct_fs": 0.0})  # the mechanism, not the noise
    board.vessel.set_param("volume_ml", 5.0)
    board.vessel.set_pressure(415.0)
    board.arm_overpressure_trip(board.calibration.mpa_to_counts(420.0))
    board.write_outputs(65535, 0, True)  # pump flat out, dump valve closed
    board.pump_stuck_on = True  # ... and stuck: only the dump valve can stop this
    for _ in range(2000):
        board.advance_1ms()
        if board.overpressure_tripped():
            break
    assert board.overpressure_tripped()
    assert board.outputs_safe()
    latency_us = board.trip_safe_us - board.trip_cross_us
    assert 0 <= latency_us <= 2000, latency_us
    peak_over = board.peak_mpa - board._trip_mpa
    assert peak_over < 0.2  # caught within a millisecond of rise
    for _ in range(50):
        board.advance_1ms()
    assert board.vessel.pressure_mpa < 415.0  # the dump valve wins against the stuck pump


def test_hard_trip_while_the_main_loop_is_stalled():
    # A run is under way, then the loop stalls (a long collection, a hang): the interrupt
    # keeps sampling and trips on its own.
    script = _start([ramp(300.0, 2.0), hold(100.0)])
    board, _core, _host = simulate(script, 20.0)
    board.transducer = board.make_transducer({"noise_pct_fs": 0.0})
    board.pump_stuck_on = True
    board.vessel.set_param("volume_ml", 5.0)
    board.vessel.set_pressure(419.0)
    stalled_ms = 0
    while not board.overpressure_tripped() and stalled_ms < 500:
        board.advance_1ms()  # no core.step() in between
        stalled_ms += 1
    assert board.overpressure_tripped() and board.outputs_safe()
    assert board.trip_safe_us - board.trip_cross_us <= 2000


def test_hard_trip_is_latched_by_the_core_and_reset_rearms_it():
    script = _start([ramp(300.0, 2.0), hold(100.0)])
    script += [(20000, "pressure", 430.0), (25000, "reset", None)]
    board, core, host = simulate(script, 26.0)
    assert _safe_after(board, 20000) <= 1  # the interrupt, in the first millisecond
    assert _first(core, codes.F_OVERPRESSURE_HW) == 20000 + TICK_MS  # the core latches it
    # By 25 s the open dump valve has emptied the vessel: the reset is accepted, the
    # board's latch cleared and the core is back to READY.
    assert host.replies[-1][2][0] == codes.RESULT_OK
    assert not board.overpressure_tripped()
    assert core.state == codes.ST_READY and core.faults == 0
    cleared = [e[4] for e in core.events.since(0) if e[3] == codes.EV_FAULT_CLEARED]
    assert codes.F_OVERPRESSURE_HW in cleared


def test_reset_is_refused_while_the_pressure_is_above_the_trip():
    script = _start([ramp(300.0, 2.0), hold(100.0)])
    script += [(20000, "pressure", 430.0), (20005, "leak", 0.0), (20010, "reset", None)]

    def no_dump(board):
        board.vessel.set_param("dump_flow_ml_s_per_sqrt_mpa", 0.0)  # a dump valve that does not open
        board.vessel.set_param("relief_mpa", 1000.0)

    _board, core, host = simulate(script, 21.0, setup=no_dump)
    assert host.replies[-1][2] == (codes.RESULT_REJECTED, codes.R_CAUSE_PERSISTS, codes.F_OVERPRESSURE_HW, ())
    assert core.state == codes.ST_FAULT


# -- software limits ------------------------------------------------------------------


# A relay welds and the pump runs flat out with a supply five times stronger than the
# model: it out-runs even the wide-open vent.
RUNAWAY = [(60000, "plant", ("pump_flow_ml_s", 3.0)), (60000, "pump_stuck", True)]


def test_rise_faster_than_the_profile_vents_under_control():
    board, core, _host = simulate(_start() + RUNAWAY, 63.0, setup=_trace_from(59000, 63000))
    t_rise = _first(core, codes.F_RISE_RATE)
    assert 60000 < t_rise <= 60000 + 500 + 100 + 200  # window + confirmation + filter
    assert _raised(core)[0][0] == codes.F_RISE_RATE  # before anything else
    # A controlled vent, the dump valve still closed, opening wider while the pressure
    # keeps rising (later the software limit dumps it: the next test).
    venting = [
        (v, pump) for ms, _, pump, v, dump_open in board.trace if t_rise < ms < t_rise + 600 and not dump_open
    ]
    assert len(venting) > 50
    assert min(v for v, _ in venting) > 0.1 and max(v for v, _ in venting) > 0.5


def test_software_over_pressure_dumps_at_the_limit():
    # The same runaway: above the recipe's maximum (100) plus the margin (10) it dumps.
    # The check reads the unfiltered tick mean (noise ~0.1 MPa), so it trips at the limit
    # within the noise, in the tick that saw it.
    board, core, _host = simulate(_start() + RUNAWAY, 64.0, setup=_trace_from(59000, 64000))
    t_sw = _first(core, codes.F_OVERPRESSURE_SW)
    p_at_trip = next(p for ms, p, *_ in board.trace if ms == t_sw)
    assert abs(p_at_trip - 110.0) < 0.4
    assert _safe_after(board, t_sw) == 0
    assert board.peak_mpa < 110.5
    assert core.state == codes.ST_FAULT


def test_fall_faster_than_the_profile_is_a_fault():
    script = _start() + [(60000, "leak", 0.2)]  # a gross leak: ~20 mL/s at 100 MPa
    _board, core, _host = simulate(script, 62.0)
    t_fall = _first(core, codes.F_FALL_RATE)
    assert 60000 < t_fall <= 61000
    assert core.state == codes.ST_FAULT


# -- transducer plausibility ------------------------------------------------------------


def test_open_wire_is_namur_low_and_dumps_within_one_tick():
    board, core, _host = simulate(_start() + [(30000, "transducer", "open_wire")], 31.0)
    assert _first(core, codes.F_TRANSDUCER_LOW) == 30000 + TICK_MS
    assert _safe_after(board, 30000) == TICK_MS
    assert core.state == codes.ST_FAULT


def test_short_circuit_is_namur_high_and_dumps_within_one_tick():
    board, core, _host = simulate(_start() + [(30000, "transducer", "short")], 31.0)
    assert _first(core, codes.F_TRANSDUCER_HIGH) == 30000 + TICK_MS
    assert _safe_after(board, 30000) <= TICK_MS  # 24 mA also reads above the hard trip


def test_frozen_signal_while_pumping_is_stuck():
    board, core, _host = simulate(_start() + [(20000, "transducer", "stuck")], 25.0)
    t_stuck = _first(core, codes.F_TRANSDUCER_STUCK)
    assert 20000 < t_stuck <= 20000 + 2 * 2000 + TICK_MS  # within two stuck windows
    assert _safe_after(board, 20000) == t_stuck - 20000


def test_a_lasting_jump_is_a_slew_fault_and_a_single_spike_is_not():
    script = _start() + [
        (20000, "transducer", ("spike_once", 300.0)),
        (30000, "transducer", ("stuck", 160.0)),
    ]
    _board, core, _host = simulate(script, 31.0)
    assert _first(core, codes.F_TRANSDUCER_SLEW) == 30000 + 3 * TICK_MS  # slew_ticks = 3
    assert next(f for f, _ in _raised(core)) == codes.F_TRANSDUCER_SLEW  # the spike raised nothing
    assert core.sensing.spikes >= 1


def test_second_transducer_disagreeing_is_a_mismatch():
    text = config_with({"safety": {"second_transducer": True}})
    script = _start() + [(30000, "transducer2", ("stuck", 120.0))]
    board, core, _host = simulate(script, 31.0, config_text=text)
    t = _first(core, codes.F_TRANSDUCER_MISMATCH)
    assert 30000 + 200 <= t <= 30000 + 200 + 2 * TICK_MS  # mismatch_ms = 200
    assert _safe_after(board, 30000) == t - 30000


def test_agreeing_second_transducer_raises_nothing():
    text = config_with({"safety": {"second_transducer": True}})
    _board, core, _host = simulate(_start(), 60.0, config_text=text)
    assert core.faults == 0 and core.sensing.second_mpa > 0.0


# -- pressurisation watchdog and hold leak check ------------------------------------------


def test_pump_running_but_no_rise_is_a_pressurise_timeout():
    # The bag bursts at 30 MPa: the leak eats the whole pump flow, pressure stalls.
    script = _start() + [(15000, "leak", 0.017)]
    _board, core, _host = simulate(script, 30.0)
    t = _first(core, codes.F_PRESSURISE_TIMEOUT)
    assert 15000 < t <= 25000
    assert core.state == codes.ST_FAULT


def test_hold_leak_is_found_after_the_settling_window():
    script = _start() + [(75000, "leak", 0.002)]  # hold began at 50.1 s; 25 s in
    _board, core, _host = simulate(script, 110.0)
    t = _first(core, codes.F_HOLD_LEAK)
    assert 75000 < t <= 75000 + 2 * 10000 + TICK_MS  # within two leak windows
    assert core.monitor.leak_rate_mpa_s > 0.05
    assert core.state == codes.ST_FAULT


def test_a_tight_vessel_holds_without_a_leak_fault():
    _board, core, _host = simulate(_start(), 170.0)
    assert core.faults == 0
    assert 0.0 <= core.monitor.leak_rate_mpa_s < 0.02


# -- interlocks -------------------------------------------------------------------------


def test_closure_unlocked_under_pressure_dumps_within_one_tick():
    board, core, _host = simulate(_start() + [(60000, "closure", False)], 61.0)
    assert _first(core, codes.F_CLOSURE_UNLOCKED) == 60000 + TICK_MS
    assert _safe_after(board, 60000) == TICK_MS


def test_closure_unlocked_at_ambient_in_idle_is_not_a_fault():
    _board, core, _host = simulate([(1000, "closure", False)], 3.0)
    assert core.faults == 0 and core.state == codes.ST_IDLE


def test_estop_dumps_within_one_tick_and_latches():
    script = _start() + [(60000, "estop", True), (61000, "estop", False), (61500, "reset", None)]
    board, core, host = simulate(script, 62.0)
    assert _first(core, codes.F_ESTOP) == 60000 + TICK_MS
    assert _safe_after(board, 60000) == TICK_MS
    assert host.replies[-1][2][0] == codes.RESULT_OK  # released, then reset
    assert core.state == codes.ST_READY


def test_glovebox_permissive_lost_pauses_and_resume_needs_it_back():
    script = _start() + [
        (60000, "glovebox", False),
        (65000, "resume", None),
        (70000, "glovebox", True),
        (75000, "resume", None),
    ]
    board, core, host = simulate(script, 80.0, setup=_trace_from(60000, 76000, 100))
    assert _first(core, codes.F_GLOVEBOX_LOST) == 60000 + TICK_MS
    assert host.replies[2][2] == (codes.RESULT_REJECTED, codes.R_CAUSE_PERSISTS, codes.F_GLOVEBOX_LOST, ())
    held = [p for t, p, *_ in board.trace if 61000 <= t <= 75000]
    assert min(held) > 99.0 and max(held) < 101.0  # paused at pressure, no dump
    cleared = [e for e in core.events.since(0) if e[3] == codes.EV_FAULT_CLEARED]
    assert cleared and cleared[0][4] == codes.F_GLOVEBOX_LOST
    assert host.replies[3][2][0] == codes.RESULT_OK
    assert core.state == codes.ST_HOLDING and core.faults == 0


# -- host lost ----------------------------------------------------------------------------


def test_host_lost_with_the_depressurise_policy_vents_at_the_recipe_rate_never_dumps():
    # The host comes back at 100 s and resets at once (refused: still venting), then again
    # after the vent (accepted).
    script = _start() + [(60000, "host", False), (100000, "host", True), (100000, "reset", None)]
    script += [(185000, "reset", None)]
    board, core, host = simulate(script, 190.0, setup=_trace_from(70000, 160000, 100))
    t = _first(core, codes.F_HOST_LOST)
    assert 60000 + 10000 <= t <= 60000 + 11000 + TICK_MS  # host_lost_timeout_ms = 10 000
    falling = [(ms, p, dump_open) for ms, p, _, _, dump_open in board.trace if t + 2000 <= ms <= t + 80000]
    assert not any(dump_open for _, _, dump_open in falling)  # never a dump under pressure
    rate = (falling[0][1] - falling[-1][1]) / ((falling[-1][0] - falling[0][0]) / 1000.0)
    assert 0.95 < rate < 1.02  # the recipe's ramp-down rate: 1 MPa/s
    refused, accepted = host.replies[-2][2], host.replies[-1][2]
    assert refused == (codes.RESULT_REJECTED, codes.R_BAD_STATE, codes.ST_FAULT, ())
    assert accepted[0] == codes.RESULT_OK
    assert core.state == codes.ST_READY and board.outputs_safe()
    assert board.vessel.pressure_mpa < 0.3


def test_host_lost_with_the_finish_policy_completes_the_recipe():
    text = config_with(
        {"profile": {"host_lost_policy": codes.HOST_LOST_FINISH, "host_lost_timeout_ms": 2000}}
    )
    script = _start() + [(60000, "host", False)]
    _board, core, _host = simulate(script, 290.0, config_text=text)
    assert _first(core, codes.F_HOST_LOST) <= 62000 + TICK_MS
    assert [f for f, _ in _raised(core)] == [codes.F_HOST_LOST]  # reported, not acted on
    assert core.state == codes.ST_COMPLETE
    ended = [e for e in core.events.since(0) if e[3] == codes.EV_RUN_ENDED]
    assert ended[0][4] == codes.ST_COMPLETE
    assert core.faults == 0  # host lost matters only during a run: cleared at its end


# -- watchdog -------------------------------------------------------------------------------


def test_watchdog_is_fed_only_while_the_interrupt_runs():
    board, _core, _host = simulate(_start() + [(5000, "irq", False)], 8.0)
    assert 5000 - TICK_MS <= board.watchdog_last_feed_ms <= 5000 + TICK_MS
    assert board.watchdog_feeds >= 490
