# Commands on the core: full validation, a specific reason per refusal, nothing changed
# on refusal. CPython and MicroPython.

from isofw import config
from isofw.app import build_core
from isofw.core import Inputs
from isofw.recipe import hold, ramp, recipe_id
from isofw.safety import IN_ALL_OK, IN_CLOSURE_LOCKED, IN_ESTOP_RELEASED
from isoproto import codes

_REPO = __file__.rsplit("/", 3)[0]
OK = codes.RESULT_OK
REJECTED = codes.RESULT_REJECTED
NAN = float("nan")
INF = float("inf")

PROFILE = (400.0, 420.0, 2.0, 1.0, 7200.0, 10.0, 10000, codes.HOST_LOST_DEPRESSURISE)
CYCLE = [ramp(250.0, 1.0), hold(300.0), ramp(0.0, 0.5)]


def _core():
    with open(_REPO + "/firmware/boards/sim/config.json") as f:
        cfg, errors = config.load(f.read(), "sim")
    assert not errors
    core = build_core(cfg, errors, "sim")
    _tick(core, 0, 0.0)
    return core


def _tick(core, t_ms, p_mpa, bits=IN_ALL_OK):
    core.step(t_ms, Inputs(counts=float(core.calibration.mpa_to_counts(p_mpa)), bits=bits))


def _snapshot(core):
    return (
        core.state,
        core.faults,
        core.recipe.recipe_id,
        core.recipe.count,
        core.recipe.segments(),
        core.profile.values(),
        core.calibration.cal_id,
        core.calibration.range_mpa,
        core.events.next_seq,
        core.run_id,
        core._staging.count,
    )


def _refused(core, call, reason):
    before = _snapshot(core)
    result = call()
    assert result[0] != OK, result
    assert result[1] == reason, (result, reason)
    assert _snapshot(core) == before, "a refused command changed the core"
    return result


def test_load_a_recipe_in_one_chunk_then_start():
    core = _core()
    rid = recipe_id(CYCLE)
    assert core.load_recipe_chunk(rid, 3, 0, CYCLE) == (OK, codes.R_NONE, rid, ())
    assert core.state == codes.ST_READY and core.recipe.recipe_id == rid
    result = core.start(rid)
    assert result[0] == OK and result[2] == 1  # ACK value: the run id
    assert core.state == codes.ST_PRESSURISING


def test_a_20_segment_recipe_loads_in_two_chunks():
    core = _core()
    segments = []
    for i in range(10):
        segments.append(ramp(20.0 * (i + 1), 1.0))
        segments.append(hold(5.0))
    rid = recipe_id(segments)
    first = core.load_recipe_chunk(rid, 20, 0, segments[:12])
    assert first == (OK, codes.R_NONE, 12, ())
    assert core.state == codes.ST_IDLE  # nothing active until the last chunk
    assert core.load_recipe_chunk(rid, 20, 12, segments[12:])[0] == OK
    assert core.state == codes.ST_READY
    assert core.recipe.count == 20 and core.recipe.recipe_id == rid


def test_out_of_range_recipe_values_name_every_problem():
    core = _core()
    bad = [ramp(450.0, 5.0), hold(9000.0), ramp(100.0, 3.0)]
    result = _refused(core, lambda: core.load_recipe(bad), codes.R_TARGET_TOO_HIGH)
    assert result[2] == 0  # detail: the first bad segment
    assert set(result[3]) == {
        (codes.R_TARGET_TOO_HIGH, 0),
        (codes.R_RATE_UP_TOO_HIGH, 0),
        (codes.R_HOLD_TOO_LONG, 1),
        (codes.R_RATE_DOWN_TOO_HIGH, 2),
    }


def test_nan_and_infinite_numbers_are_refused():
    core = _core()
    for seg in (
        (codes.SEG_RAMP, NAN, 1.0, 0.0),
        (codes.SEG_RAMP, 10.0, INF, 0.0),
        (codes.SEG_HOLD, 0.0, 0.0, NAN),
    ):
        result = _refused(core, lambda seg=seg: core.load_recipe_chunk(1, 1, 0, [seg]), codes.R_NOT_FINITE)
        assert result[3] == ((codes.R_NOT_FINITE, 0),)


def test_malformed_segments_and_chunks_are_refused():
    core = _core()
    _refused(core, lambda: core.load_recipe_chunk(1, 1, 0, [(1, 2.0)]), codes.R_MALFORMED)
    _refused(core, lambda: core.load_recipe_chunk(1, 1, 0, [(1, "x", 1.0, 0.0)]), codes.R_MALFORMED)
    _refused(core, lambda: core.load_recipe_chunk(1, 1, 0, [(9, 1.0, 1.0, 0.0)]), codes.R_BAD_SEGMENT_KIND)
    _refused(core, lambda: core.load_recipe_chunk(1, 0, 0, []), codes.R_EMPTY_RECIPE)
    _refused(core, lambda: core.load_recipe_chunk(1, 33, 0, [ramp(1.0, 1.0)]), codes.R_TOO_MANY_SEGMENTS)
    _refused(core, lambda: core.load_recipe_chunk(1, 2, 1, [ramp(1.0, 1.0)]), codes.R_CHUNK_OUT_OF_RANGE)
    _refused(
        core, lambda: core.load_recipe_chunk(1, 1, 0, [ramp(1.0, 1.0), hold(1.0)]), codes.R_CHUNK_OUT_OF_RANGE
    )
    _refused(core, lambda: core.load_recipe_chunk(-1, 1, 0, [ramp(1.0, 1.0)]), codes.R_MALFORMED)
    _refused(core, lambda: core.load_recipe_chunk(1, 1, 0, 42), codes.R_MALFORMED)
    _refused(core, lambda: core.load_recipe_chunk(1, 1, 0, [{"kind": 1}]), codes.R_MALFORMED)
    huge = (codes.SEG_HOLD, 1e39, 0.0, 10.0)  # finite in Python, beyond float32
    _refused(core, lambda: core.load_recipe_chunk(1, 1, 0, [huge]), codes.R_VALUE_OUT_OF_RANGE)


def test_a_chunk_for_another_recipe_or_out_of_order_is_refused():
    core = _core()
    segments = [ramp(10.0, 1.0), hold(1.0), ramp(0.0, 1.0)]
    rid = recipe_id(segments)
    assert core.load_recipe_chunk(rid, 3, 0, segments[:1])[0] == OK
    _refused(core, lambda: core.load_recipe_chunk(rid + 1, 3, 1, segments[1:2]), codes.R_BUSY)
    _refused(core, lambda: core.load_recipe_chunk(rid, 3, 2, segments[2:]), codes.R_CHUNK_OUT_OF_RANGE)
    # The wrong id is found on the last chunk; the staged chunks survive for a retry.
    _refused(
        core, lambda: core.load_recipe_chunk(rid, 3, 1, [hold(1.0), ramp(0.0, 0.9)]), codes.R_RECIPE_MISMATCH
    )
    assert core.load_recipe_chunk(rid, 3, 1, segments[1:])[0] == OK
    assert core.recipe.recipe_id == rid


def test_a_recipe_loaded_while_running_is_refused():
    core = _core()
    core.load_recipe(CYCLE)
    core.start(core.recipe.recipe_id)
    _tick(core, 10, 0.0)
    _refused(core, lambda: core.load_recipe([ramp(10.0, 1.0)]), codes.R_BAD_STATE)


def test_start_without_a_valid_recipe_or_with_another_id_is_refused():
    core = _core()
    _refused(core, lambda: core.start(0), codes.R_NO_RECIPE)
    core.load_recipe(CYCLE)
    _refused(core, lambda: core.start(core.recipe.recipe_id ^ 1), codes.R_RECIPE_MISMATCH)


def test_start_needs_every_interlock():
    core = _core()
    core.load_recipe(CYCLE)
    rid = core.recipe.recipe_id
    _tick(core, 10, 0.0, IN_ESTOP_RELEASED | IN_CLOSURE_LOCKED)  # glovebox permissive missing
    assert _refused(core, lambda: core.start(rid), codes.R_BAD_STATE)[2] == codes.F_GLOVEBOX_LOST
    _tick(core, 20, 0.0, IN_ALL_OK & ~IN_CLOSURE_LOCKED)
    assert _refused(core, lambda: core.start(rid), codes.R_BAD_STATE)[2] == codes.F_CLOSURE_UNLOCKED


def test_pause_resume_abort_only_where_they_mean_something():
    core = _core()
    _refused(core, core.pause, codes.R_BAD_STATE)
    _refused(core, core.resume, codes.R_BAD_STATE)
    _refused(core, core.abort, codes.R_BAD_STATE)
    core.load_recipe(CYCLE)
    core.start(core.recipe.recipe_id)
    _tick(core, 10, 0.0)
    _refused(core, core.resume, codes.R_BAD_STATE)
    assert core.pause()[0] == OK and core.state == codes.ST_PAUSED
    _refused(core, core.pause, codes.R_BAD_STATE)
    assert core.resume()[0] == OK and core.state == codes.ST_PRESSURISING


def test_reset_while_the_cause_persists_is_refused():
    core = _core()
    _tick(core, 10, 0.0, IN_ALL_OK & ~IN_ESTOP_RELEASED)
    assert core.state == codes.ST_ESTOP
    result = _refused(core, core.reset_faults, codes.R_CAUSE_PERSISTS)
    assert result[2] == codes.F_ESTOP
    _tick(core, 20, 0.0)  # e-stop released: the fault stays latched until the reset
    assert core.state == codes.ST_ESTOP and core.faults == 1 << codes.F_ESTOP
    assert core.reset_faults()[0] == OK
    assert core.state == codes.ST_IDLE and core.faults == 0


def test_set_device_profile_validates_every_field():
    core = _core()
    bad = (400.0, 405.0, NAN, -1.0, 7200.0, 10.0, 10, 7)
    result = _refused(core, lambda: core.set_device_profile(*bad), codes.R_NOT_FINITE)
    assert set(result[3]) == {
        (codes.R_NOT_FINITE, 2),
        (codes.R_VALUE_OUT_OF_RANGE, 3),
        (codes.R_VALUE_OUT_OF_RANGE, 6),
        (codes.R_VALUE_OUT_OF_RANGE, 7),
    }
    tight = (415.0, 420.0, 2.0, 1.0, 7200.0, 10.0, 10000, 0)  # working + margin >= trip
    assert _refused(core, lambda: core.set_device_profile(*tight), codes.R_VALUE_OUT_OF_RANGE)[2] == 1


def test_a_new_profile_moves_the_trip_and_unloads_a_recipe_that_no_longer_fits():
    core = _core()
    core.load_recipe(CYCLE)
    trip_before = core.trip_counts
    result = core.set_device_profile(200.0, 220.0, 2.0, 1.0, 7200.0, 10.0, 5000, codes.HOST_LOST_FINISH)
    assert result[0] == OK and result[2] == core.profile.profile_hash()
    assert core.trip_counts < trip_before
    assert core.recipe.count == 0 and core.state == codes.ST_IDLE  # 250 MPa > 200 MPa


def test_set_device_profile_is_refused_while_running():
    core = _core()
    core.load_recipe(CYCLE)
    core.start(core.recipe.recipe_id)
    _refused(core, lambda: core.set_device_profile(*PROFILE), codes.R_BAD_STATE)
    _refused(core, lambda: core.set_calibration("x", "", 600.0, 150.0, 0.0, 1.0), codes.R_BAD_STATE)


def test_set_calibration_validates_and_applies():
    core = _core()
    result = _refused(
        core,
        lambda: core.set_calibration("lab-1", "2026-01-02", 300.0, 150.0, 0.0, 3.0),
        codes.R_VALUE_OUT_OF_RANGE,
    )
    assert set(result[3]) == {(codes.R_VALUE_OUT_OF_RANGE, 5)}  # gain; the range is checked after
    _refused(
        core,
        lambda: core.set_calibration("lab-1", "2026-01-02", 400.0, 150.0, 0.0, 1.0),
        codes.R_VALUE_OUT_OF_RANGE,
    )
    _refused(core, lambda: core.set_calibration("lab-1", "", 600.0, 150.0, INF, 1.0), codes.R_NOT_FINITE)
    assert core.set_calibration("lab-1", "2026-01-02", 700.0, 150.0, 0.5, 1.01)[0] == OK
    assert core.calibration.cal_id == "lab-1" and core.hello_info()["cal_date"] == "2026-01-02"


def test_heartbeat_and_hello_info():
    core = _core()
    core.host_heartbeat_seen(0)
    _tick(core, 10, 0.0)
    info = core.hello_info()
    assert info["board_kind"] == "sim" and info["board_id"] == "sim-0001"
    assert info["history_capacity"] == 1024 and info["telemetry_period_ms"] == 10
    assert info["latest_sample_seq"] == core.sample_seq == 1
    assert info["profile_hash"] == core.profile.profile_hash() != 0
    assert core.flags & codes.FLAG_HOST_OK
