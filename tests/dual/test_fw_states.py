# The state machine on the virtual board, through the real main loop: boot -> idle ->
# ready -> running (pressurising, holding, depressurising) -> complete; paused; abort.
# Every transition is an EVENT. CPython and MicroPython.

from board import simulate
from isofw.recipe import hold, ramp
from isoproto import codes

SHORT = [ramp(40.0, 2.0), hold(10.0), ramp(0.0, 1.0)]  # 20 s up, 10 s hold, 40 s down


def _states(core):
    return [e[4] for e in core.events.since(0) if e[3] == codes.EV_STATE_CHANGED]


def _kinds(core):
    return [e[3] for e in core.events.since(0)]


def test_boot_event_then_idle_ready_and_a_full_run_to_complete():
    script = [(0, "load", SHORT), (100, "start", None)]
    board, core, host = simulate(script, 80.0)
    assert [r[2][0] for r in host.replies] == [codes.RESULT_OK, codes.RESULT_OK]
    assert _kinds(core)[0] == codes.EV_BOOT
    assert core.events.event(0)[4] == codes.RESET_POWER_ON
    assert _states(core) == [
        codes.ST_IDLE,
        codes.ST_READY,
        codes.ST_PRESSURISING,
        codes.ST_HOLDING,
        codes.ST_DEPRESSURISING,
        codes.ST_COMPLETE,
    ]
    segments = [e[4] for e in core.events.since(0) if e[3] == codes.EV_SEGMENT_CHANGED]
    assert segments == [0, 1, 2]
    ended = [e for e in core.events.since(0) if e[3] == codes.EV_RUN_ENDED]
    assert len(ended) == 1 and ended[0][4] == codes.ST_COMPLETE and ended[0][5] == 1
    assert core.faults == 0
    assert board.outputs_safe() and board.vessel.pressure_mpa < 0.3
    assert 39.5 < board.peak_mpa < 40.5


def test_every_state_change_event_carries_previous_state_and_sample_seq():
    _board, core, _host = simulate([(0, "load", SHORT), (100, "start", None)], 30.0)
    previous = codes.ST_BOOT
    last_sample = -1
    for _seq, sample_seq, _board_ms, kind, code, detail, _value in core.events.since(0):
        assert sample_seq >= last_sample  # events are ordered in sample time
        last_sample = sample_seq
        if kind == codes.EV_STATE_CHANGED:
            assert detail == previous
            previous = code
    assert previous == core.state


def test_telemetry_samples_follow_the_decimation():
    _board, core, _host = simulate([], 2.0)
    assert core.sample_seq + 1 == 200  # 100 Hz, decimation 1, 2 s
    s = core.history.sample(core.sample_seq)
    assert s[7] == codes.ST_IDLE and s[6] == 0  # state, faults
    assert s[8] & codes.FLAG_ESTOP_OK and s[8] & codes.FLAG_CLOSURE_LOCKED
    assert not s[8] & codes.FLAG_DUMP_CLOSED


def test_pause_holds_the_pressure_and_resume_continues_the_ramp():
    script = [(0, "load", SHORT), (100, "start", None), (10100, "pause", None), (20100, "resume", None)]
    board, core, _host = simulate(script, 25.0, setup=_trace)
    paused = [p for t, p, *_ in board.trace if 12000 <= t <= 20000]
    assert min(paused) > 19.0 and max(paused) < 21.0  # held at ~20 MPa for 10 s
    assert max(paused) - min(paused) < 0.5
    assert core.state == codes.ST_PRESSURISING
    assert 28.0 < board.vessel.pressure_mpa < 31.0  # 20 + 2 MPa/s * 5 s after resume
    assert codes.ST_PAUSED in _states(core)


def test_abort_depressurises_at_the_recipe_rate_then_ready():
    script = [(0, "load", SHORT), (100, "start", None), (15100, "abort", None)]
    board, core, host = simulate(script, 60.0, setup=_trace)
    assert host.replies[-1][2][0] == codes.RESULT_OK
    falling = [(t, p) for t, p, *_ in board.trace if 17000 <= t <= 35000]
    rate = (falling[0][1] - falling[-1][1]) / ((falling[-1][0] - falling[0][0]) / 1000.0)
    assert 0.9 < rate < 1.05  # the recipe's ramp down is 1 MPa/s
    assert core.state == codes.ST_READY and core.faults == 0
    ended = [e for e in core.events.since(0) if e[3] == codes.EV_RUN_ENDED]
    assert ended[0][4] == codes.ST_READY
    assert board.outputs_safe()


def test_a_second_run_after_complete_gets_a_new_run_id():
    quick = [ramp(5.0, 2.0), ramp(0.0, 1.0)]
    script = [(0, "load", quick), (100, "start", None), (20000, "start", None)]
    _board, core, host = simulate(script, 25.0)
    assert host.replies[1][2] == (codes.RESULT_OK, codes.R_NONE, 1, ())
    assert host.replies[2][2] == (codes.RESULT_OK, codes.R_NONE, 2, ())
    assert core.run_id == 2


def _trace(board):
    board.trace = []
    board.trace_every_ms = 100
