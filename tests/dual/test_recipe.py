# Recipes: storage, id, validation and the setpoint generator. CPython and MicroPython.

import hashlib
import math
import struct

from isofw.profile import DeviceProfile
from isofw.recipe import (
    MAX_SEGMENTS,
    SOFT_START_S,
    Recipe,
    SetpointGenerator,
    canonical_bytes,
    hold,
    ramp,
    ramp_s,
    recipe_id,
)
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


def test_ramp_down_falls_at_the_guarded_fraction_of_its_rate_after_a_soft_start():
    # A down-rate is a limit: the setpoint falls at DOWN_RATE_PERMILLE of it (99 %), so
    # the loop's tracking noise does not take the pressure faster than the recipe allows,
    # and its rate grows linearly over SOFT_START_S (2 s) first.
    g = SetpointGenerator()
    g.start(_recipe([ramp(0.0, 0.5)]), 0, 100.0)
    assert codes.DOWN_RATE_PERMILLE == 990 and SOFT_START_S == 2.0
    g.update(1000)  # half way through the soft start: half the rate, a quarter of the way
    assert _close(g.rate_mpa_s, -0.495 / 2)
    assert _close(g.setpoint_mpa, 100.0 - 0.5 * 0.495 * 1.0 / 2.0)
    g.update(10000)
    assert _close(g.setpoint_mpa, 100.0 - 0.495 * (10.0 - 1.0))
    assert _close(g.rate_mpa_s, -0.495)
    assert g.direction() == -1
    changed = g.update(203000)  # 100 MPa at 0.495 MPa/s plus half the soft start: 203.02 s
    assert not changed and not g.done
    assert g.update(203030) and g.done and g.setpoint_mpa == 0.0


def test_a_short_ramp_down_ends_within_its_soft_start():
    # 0.1 MPa at 0.99 MPa/s never reaches full rate: it ends after sqrt(2 * 0.1 * 2 / 0.99) s.
    end_s = math.sqrt(2.0 * 0.1 * 2.0 / 0.99)
    assert _close(ramp_s(-0.1, 0.0, -0.99, 2.0), end_s) and _close(ramp_s(10.0, 1.0, 1.0, 0.0), 10.0)
    g = SetpointGenerator()
    g.start(_recipe([ramp(9.9, 1.0), hold(1.0)]), 0, 10.0)
    assert g.update(int(end_s * 1000) + 5) and g.index == 1 and _close(g.setpoint_mpa, 9.9)
    assert not g.update(int(end_s * 1000) + 995)  # the hold started at the ramp's exact end
    assert g.update(int(end_s * 1000) + 1005) and g.done


def test_ramp_up_runs_at_its_full_rate():
    g = SetpointGenerator()
    g.start(_recipe([ramp(100.0, 0.5)]), 0, 0.0)
    g.update(10000)
    assert _close(g.rate_mpa_s, 0.5)


def test_hold_keeps_setpoint_for_its_duration():
    g = SetpointGenerator()
    g.start(_recipe([ramp(50.0, 10.0), hold(30.0), ramp(0.0, 5.0)]), 0, 0.0)
    g.update(5000)  # ramp done at 5 s
    assert g.index == 1 and g.direction() == 0
    g.update(20000)
    assert g.index == 1 and _close(g.setpoint_mpa, 50.0)
    g.update(35000)
    assert g.index == 2
    g.update(37000)  # 2 s into the ramp down: its soft start is over, 1 s of travel lost
    assert _close(g.setpoint_mpa, 50.0 - (2.0 - 1.0) * 5.0 * codes.DOWN_RATE_PERMILLE / 1000)


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
    assert _close(g.setpoint_mpa, 300.0 - 0.99 * 9.0)  # (guarded and soft-started, as any ramp down)
    assert _close(g.rate_mpa_s, -0.99)


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


def test_ramp_s_from_an_entry_rate():
    # From 0.3 to 0.5 MPa/s over 2 s: 0.8 MPa in the soft start, then at 0.5.
    assert _close(ramp_s(10.0, 0.3, 0.5, 2.0), 2.0 + (10.0 - 0.8) / 0.5)
    # Slowing from 0.5 to 0.3 and ending inside the soft start: 0.5 t - 0.05 t^2 = 0.45 -> t = 1
    assert _close(ramp_s(0.45, 0.5, 0.3, 2.0), 1.0)
    assert _close(ramp_s(0.45, 0.45, 0.45, 2.0), 1.0)  # no change of rate


def test_consecutive_ramps_down_hand_their_rate_on_instead_of_stopping():
    g = SetpointGenerator()
    g.start(_recipe([ramp(50.0, 1.0), ramp(0.0, 0.5)]), 0, 100.0)
    first_end_ms = int(ramp_s(50.0, 0.0, 0.99, SOFT_START_S) * 1000)
    assert g.update(first_end_ms + 10) and g.index == 1  # the first ends (that tick: at its target)
    g.update(first_end_ms + 20)  # 20 ms into the second ramp down
    # its rate goes from the first's 0.99 down to 0.495 MPa/s: just below 0.99 now, not 0
    assert -0.99 < g.rate_mpa_s < -0.98
    g.update(first_end_ms + 10000)
    assert _close(g.rate_mpa_s, -0.495)


def test_resuming_a_ramp_down_starts_it_softly_again_from_where_it_stopped():
    g = SetpointGenerator()
    g.start(_recipe([ramp(0.0, 0.5)]), 0, 100.0)
    g.update(10000)
    paused_mpa = g.setpoint_mpa
    g.pause(10000)
    g.update(15000)
    assert g.rate_mpa_s == 0.0 and g.setpoint_mpa == paused_mpa
    g.resume(15000)
    g.update(15000)
    assert g.rate_mpa_s == 0.0 and _close(g.setpoint_mpa, paused_mpa)
    g.update(16000)  # half way through the new soft start
    assert _close(g.rate_mpa_s, -0.495 / 2) and _close(g.setpoint_mpa, paused_mpa - 0.495 / 4)
    g.update(25000)
    assert _close(g.rate_mpa_s, -0.495) and _close(g.setpoint_mpa, paused_mpa - 0.495 * 9.0)


def test_resuming_a_ramp_up_or_a_hold_continues_where_it_stopped():
    g = SetpointGenerator()
    g.start(_recipe([ramp(100.0, 1.0), hold(10.0)]), 0, 0.0)
    g.update(10000)
    g.pause(10000)
    g.resume(20000)
    g.update(21000)
    assert _close(g.setpoint_mpa, 11.0) and _close(g.rate_mpa_s, 1.0)  # paused time not counted
