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


# -- the end of a run: the vent tail before the dump valve opens ----------------------------


def _trace_end(from_ms):
    def setup(board):
        board.trace = []
        board.trace_every_ms = 10
        board.trace_from_ms = from_ms
        board.trace_to_ms = 1 << 30

    return setup


def _fastest_fall_mpa_s(trace, window_ms=1000):
    worst, j = 0.0, 0
    for ms, p, _pump, _vent, _dump_open in trace:
        while trace[j][0] < ms - window_ms:
            j += 1
        if ms - trace[j][0] >= window_ms:
            worst = max(worst, (trace[j][1] - p) * 1000.0 / (ms - trace[j][0]))
    return worst


def test_the_dump_valve_opens_only_after_the_vent_tail_below_ambient():
    # SHORT ends with a ramp down at 1 MPa/s. Below ambient (0.2 MPa) the vent stays wide
    # open with the dump valve closed until a quarter of ambient is left (or 2 s): opening
    # the dump at 0.2 MPa would drop that in a few ms, a 1 s window faster than the recipe.
    board, core, _host = simulate([(0, "load", SHORT), (100, "start", None)], 80.0, setup=_trace_end(60000))
    assert core.state == codes.ST_COMPLETE and board.outputs_safe()
    trace = board.trace
    opened = next(i for i, row in enumerate(trace) if row[4])  # the dump valve opens
    ms_open, p_open = trace[opened][0], trace[opened][1]
    below = next(i for i, row in enumerate(trace) if row[1] <= core.ambient_mpa)
    assert trace[below][0] < ms_open  # the tail happened: ambient reached before the dump
    tail = trace[below + 1 : opened]
    assert tail and all(vent == 1.0 and pump == 0.0 and not dump for _, _, pump, vent, dump in tail)
    assert p_open <= 0.25 * core.ambient_mpa + 0.03 or ms_open - trace[below][0] >= 1990
    assert _fastest_fall_mpa_s(trace) <= 1.0  # the recipe's 1 MPa/s, the dump included


def test_the_vent_tail_ends_after_2_s_when_the_reading_stays_above_a_quarter_of_ambient():
    # A transducer reading 0.1 MPa high (offset) never shows a quarter of ambient: the tail
    # is bounded, and the dump valve opens 2 s after the reading reached ambient.
    def setup(board):
        _trace_end(60000)(board)
        board.transducer = board.make_transducer({"offset_error_mpa": 0.1})

    board, core, _host = simulate([(0, "load", SHORT), (100, "start", None)], 90.0, setup=setup)
    assert core.state == codes.ST_COMPLETE and board.outputs_safe()
    trace = board.trace
    opened = next(i for i, row in enumerate(trace) if row[4])
    assert trace[opened][1] < 0.1  # the vent emptied it meanwhile
    # the reading (0.1 MPa high) reached ambient when the true pressure reached ~0.1 MPa
    reached = next(row[0] for row in trace if row[1] <= 0.1)
    assert 1800 <= trace[opened][0] - reached <= 2300, (reached, trace[opened])
