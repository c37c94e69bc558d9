# Setpoint generator: runs under CPython and MicroPython.

from isofw.recipe import SetpointGenerator, hold, ramp


def _close(a, b, tol=1e-6):
    return abs(a - b) <= tol


def test_ramp_up_follows_rate_then_reaches_target():
    g = SetpointGenerator()
    g.start([ramp(10.0, 2.0)], 0.0, 0.0)
    g.update(1.0)
    assert _close(g.setpoint_mpa, 2.0)
    assert _close(g.rate_mpa_s, 2.0)
    changed = g.update(5.0)
    assert changed
    assert g.done
    assert _close(g.setpoint_mpa, 10.0)
    assert g.rate_mpa_s == 0.0


def test_ramp_down_uses_negative_rate():
    g = SetpointGenerator()
    g.start([ramp(0.0, 0.5)], 0.0, 100.0)
    g.update(10.0)
    assert _close(g.setpoint_mpa, 95.0)
    assert _close(g.rate_mpa_s, -0.5)


def test_hold_keeps_setpoint_for_its_duration():
    g = SetpointGenerator()
    g.start([ramp(50.0, 10.0), hold(30.0), ramp(0.0, 5.0)], 0.0, 0.0)
    g.update(5.0)  # ramp done at 5 s
    assert g.index == 1
    g.update(20.0)
    assert g.index == 1 and _close(g.setpoint_mpa, 50.0)
    g.update(35.0)
    assert g.index == 2
    g.update(37.0)
    assert _close(g.setpoint_mpa, 40.0)


def test_empty_recipe_is_done_at_once():
    g = SetpointGenerator()
    g.start([], 0.0, 0.0)
    assert g.done
