# Pressure controller: runs under CPython and MicroPython.

from isofw.control import PressureController


def _controller(**kw):
    args = {
        "kp_per_mpa": 0.05,
        "ki_per_mpa_s": 0.02,
        "pump_ff_s_per_mpa": 0.5,
        "vent_ff_s_per_mpa": 0.1,
        "switch_band": 0.02,
        "integral_limit": 0.5,
    }
    args.update(kw)
    return PressureController(**args)


def test_positive_error_drives_pump_only():
    c = _controller()
    c.update(0.01, 100.0, 0.0, 90.0)
    assert c.pump_duty > 0
    assert c.vent_duty == 0


def test_negative_error_drives_vent_only():
    c = _controller()
    c.update(0.01, 90.0, 0.0, 100.0)
    assert c.vent_duty > 0
    assert c.pump_duty == 0


def test_output_is_clamped_to_full_duty():
    c = _controller()
    c.update(0.01, 400.0, 0.0, 0.0)
    assert c.pump_duty == 65535
    c.update(0.01, 0.0, 0.0, 400.0)
    assert c.vent_duty == 65535
    assert c.pump_duty == 0


def test_integral_stops_while_saturated():
    c = _controller()
    for _ in range(1000):
        c.update(0.01, 400.0, 0.0, 0.0)  # huge error, output pinned at full
    assert c.integral == 0.0  # nothing wound up while saturated


def test_integral_is_bounded():
    c = _controller(kp_per_mpa=0.0, integral_limit=0.3)
    for _ in range(100000):
        c.update(0.01, 100.0, 0.0, 99.0)
    assert c.integral <= 0.3


def test_small_sign_changes_do_not_chatter_between_pump_and_vent():
    c = _controller(kp_per_mpa=0.001, ki_per_mpa_s=0.0)
    c.update(0.01, 100.0, 0.0, 50.0)  # effort 0.05: pump
    assert c.mode == 1
    c.update(0.01, 100.0, 0.0, 105.0)  # effort -0.005, inside the band: both off
    assert c.pump_duty == 0 and c.vent_duty == 0
    assert c.mode == 0
    c.update(0.01, 100.0, 0.0, 99.0)  # effort +0.001: still inside the band, stay off
    assert c.pump_duty == 0 and c.vent_duty == 0
    c.update(0.01, 100.0, 0.0, 130.0)  # effort -0.03: past the band, vent
    assert c.mode == -1 and c.vent_duty > 0


def test_feed_forward_acts_before_any_error():
    c = _controller(kp_per_mpa=0.0, ki_per_mpa_s=0.0)
    c.update(0.01, 100.0, 1.0, 100.0)
    assert c.pump_duty == int(0.5 * 65535)
    c.reset()
    c.update(0.01, 100.0, -1.0, 100.0)
    assert c.vent_duty == int(0.1 * 65535)
