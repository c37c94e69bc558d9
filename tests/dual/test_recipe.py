# Recipes: storage, id, validation and the setpoint generator. CPython and MicroPython.

import hashlib
import struct

from isofw.profile import DeviceProfile
from isofw.recipe import MAX_SEGMENTS, Recipe, SetpointGenerator, canonical_bytes, hold, ramp, recipe_id
from isoproto import codes


def _close(a, b, tol=1e-4):
    return abs(a - b) <= tol


def _recipe(segments):
    r = Recipe()
    for i, seg in enumerate(segments):
        r.put(i, seg)
    r.count = len(segments)
    r.recipe_id = r.compute_id()
    return r


def test_ramp_up_follows_rate_then_reaches_target():
    g = SetpointGenerator()
    g.start(_recipe([ramp(10.0, 2.0)]), 0, 0.0)
    g.update(1000)
    assert _close(g.setpoint_mpa, 2.0)
    assert _close(g.rate_mpa_s, 2.0)
    changed = g.update(5000)
    assert changed
    assert g.done
    assert _close(g.setpoint_mpa, 10.0)
    assert g.rate_mpa_s == 0.0


def test_ramp_down_uses_negative_rate():
    g = SetpointGenerator()
    g.start(_recipe([ramp(0.0, 0.5)]), 0, 100.0)
    g.update(10000)
    assert _close(g.setpoint_mpa, 95.0)
    assert _close(g.rate_mpa_s, -0.5)
    assert g.direction() == -1


def test_hold_keeps_setpoint_for_its_duration():
    g = SetpointGenerator()
    g.start(_recipe([ramp(50.0, 10.0), hold(30.0), ramp(0.0, 5.0)]), 0, 0.0)
    g.update(5000)  # ramp done at 5 s
    assert g.index == 1 and g.direction() == 0
    g.update(20000)
    assert g.index == 1 and _close(g.setpoint_mpa, 50.0)
    g.update(35000)
    assert g.index == 2
    g.update(37000)
    assert _close(g.setpoint_mpa, 40.0)


def test_segment_ends_are_exact_not_tick_quantised():
    # A ramp that ends between ticks: the hold after it starts at the exact end time.
    g = SetpointGenerator()
    g.start(_recipe([ramp(10.0, 3.0), hold(1.0)]), 0, 0.0)
    g.update(3340)  # the ramp ended at 3333 ms
    assert g.index == 1
    g.update(4330)
    assert g.index == 1 and not g.done
    g.update(4340)  # 3333 + 1000 <= 4340
    assert g.done


def test_pause_does_not_count_against_the_segment():
    g = SetpointGenerator()
    g.start(_recipe([ramp(100.0, 1.0)]), 0, 0.0)
    g.update(10000)
    g.pause(10000)
    g.update(50000)
    assert _close(g.setpoint_mpa, 10.0) and g.rate_mpa_s == 0.0
    g.resume(50000)
    g.update(55000)
    assert _close(g.setpoint_mpa, 15.0)


def test_rates_are_clamped_to_the_profile_in_the_actual_direction():
    # Validated as a ramp up from ambient, run from 300 MPa it goes down: the profile's
    # down-rate (1 MPa/s) applies, not the recipe's 2 MPa/s.
    g = SetpointGenerator(DeviceProfile(max_ramp_up_mpa_s=2.0, max_ramp_down_mpa_s=1.0))
    g.start(_recipe([ramp(200.0, 2.0)]), 0, 300.0)
    g.update(10000)
    assert _close(g.setpoint_mpa, 290.0)
    assert _close(g.rate_mpa_s, -1.0)


def test_empty_recipe_is_done_at_once():
    g = SetpointGenerator()
    g.start(Recipe(), 0, 0.0)
    assert g.done


def test_recipe_id_is_sha256_of_the_canonical_segment_bytes():
    segments = [ramp(250.0, 1.0), hold(300.0), ramp(0.0, 0.5)]
    raw = b"".join(struct.pack("<Bfff", *s) for s in segments)
    assert canonical_bytes(segments) == raw
    digest = hashlib.sha256(raw).digest()
    # read big-endian, as the protocol says (docs/protocol.md section 6, isoproto.recipe)
    assert recipe_id(segments) == struct.unpack(">I", digest[:4])[0]
    assert recipe_id(segments) != recipe_id(segments[:2])


def test_recipe_id_over_staged_segments_and_the_rest_is_the_whole_recipes():
    segments = [ramp(250.0, 1.0), hold(300.0), ramp(0.0, 0.5)]
    staged = _recipe(segments[:2])
    assert recipe_id(segments[2:], staged, 2) == recipe_id(segments)
    assert recipe_id([], staged, 2) == recipe_id(segments[:2])


def test_stored_recipe_keeps_its_id_through_float32_storage():
    segments = [ramp(123.456, 0.7), hold(12.5)]
    r = _recipe(segments)
    assert r.recipe_id == recipe_id(segments)
    assert r.segment(0)[0] == codes.SEG_RAMP
    assert r.max_target_mpa() > 123.4


def test_a_recipe_of_max_segments_fits():
    segments = [ramp(10.0 + i, 1.0) if i % 2 == 0 else hold(1.0) for i in range(MAX_SEGMENTS)]
    r = _recipe(segments)
    assert r.count == MAX_SEGMENTS >= 20
    assert r.problems(DeviceProfile()) == []


def test_every_problem_of_every_segment_is_reported():
    profile = DeviceProfile(
        max_working_mpa=400.0, max_ramp_up_mpa_s=2.0, max_ramp_down_mpa_s=1.0, max_hold_s=600.0
    )
    r = _recipe(
        [
            ramp(450.0, 3.0),  # target too high AND rate up too high
            hold(601.0),  # hold too long
            ramp(100.0, 1.5),  # down from 450 faster than 1 MPa/s
            (7, 0.0, 0.0, 0.0),  # unknown kind
            ramp(-5.0, 0.0),  # negative target AND rate not positive
            hold(0.0),  # zero-length hold
        ]
    )
    got = r.problems(profile)
    assert (codes.R_TARGET_TOO_HIGH, 0) in got
    assert (codes.R_RATE_UP_TOO_HIGH, 0) in got
    assert (codes.R_HOLD_TOO_LONG, 1) in got
    assert (codes.R_RATE_DOWN_TOO_HIGH, 2) in got
    assert (codes.R_BAD_SEGMENT_KIND, 3) in got
    assert (codes.R_TARGET_NEGATIVE, 4) in got
    assert (codes.R_RATE_NOT_POSITIVE, 4) in got
    assert (codes.R_VALUE_OUT_OF_RANGE, 5) in got
    assert len(got) == 8


def test_vent_rate_is_the_slowest_ramp_down_of_the_recipe():
    profile = DeviceProfile(max_ramp_down_mpa_s=1.0)
    r = _recipe([ramp(250.0, 1.0), ramp(200.0, 0.8), hold(10.0), ramp(0.0, 0.5)])
    assert _close(r.vent_rate_mpa_s(profile), 0.5)
    up_only = _recipe([ramp(250.0, 1.0), hold(10.0)])
    assert _close(up_only.vent_rate_mpa_s(profile), 0.5)  # half the profile's maximum
