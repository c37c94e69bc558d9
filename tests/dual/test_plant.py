# The virtual press model: runs under CPython and MicroPython.

import math

from plant import PLANT_DEFAULTS, PLANT_RANGES, Plant, Vessel

QUIET = {"pump_flow_jitter_pct": 0.0}  # no stroke-to-stroke variation: exact rates


def _raises_naming(params, key):
    try:
        Plant(params)
    except ValueError as exc:
        assert str(exc).startswith(key + ":"), str(exc)
        return
    raise AssertionError("no ValueError for %r" % (params,))


def _rate(params, pressure_mpa, pump, vent, dump_open):
    merged = dict(QUIET)
    merged.update(params)
    merged["initial_pressure_mpa"] = pressure_mpa
    plant = Plant(merged)
    plant.step(1e-6, pump, vent, dump_open)
    return plant.rate_mpa_s()


def _k(p):
    return PLANT_DEFAULTS["bulk_modulus_mpa"] + PLANT_DEFAULTS["bulk_modulus_slope_mpa_per_mpa"] * p


def test_every_default_has_a_range_that_holds_it():
    assert sorted(PLANT_DEFAULTS) == sorted(PLANT_RANGES)
    for key, value in PLANT_DEFAULTS.items():
        lo, hi = PLANT_RANGES[key]
        assert lo <= value <= hi, key
    plant = Plant()
    assert plant.pressure_mpa == 0.0 and plant.t_s == 0.0 and not plant.relief_open


def test_unknown_or_bad_parameters_are_errors_naming_the_key():
    _raises_naming({"volume_l": 0.5}, "volume_l")
    _raises_naming({"volume_ml": 0.0}, "volume_ml")
    _raises_naming({"volume_ml": -500.0}, "volume_ml")
    _raises_naming({"relief_mpa": float("nan")}, "relief_mpa")
    _raises_naming({"pump_stall_mpa": float("inf")}, "pump_stall_mpa")
    _raises_naming({"leak_ml_s_per_mpa": "2e-6"}, "leak_ml_s_per_mpa")
    _raises_naming({"relief_mpa": True}, "relief_mpa")
    plant = Plant({"volume_ml": 250, "initial_pressure_mpa": 10})  # integers are fine
    assert plant.params["volume_ml"] == 250.0 and plant.pressure_mpa == 10.0


def test_pump_gives_about_2_mpa_s_at_zero_and_falls_to_zero_at_stall():
    assert abs(_rate({}, 0.0, 1.0, 0.0, False) - 2.0) < 0.01
    half = _rate({}, 0.0, 0.5, 0.0, False)
    assert abs(half - 1.0) < 0.005
    # The flow falls linearly with pressure; the oil's bulk modulus rises with it.
    p = 225.0
    leak = PLANT_DEFAULTS["leak_ml_s_per_mpa"] * p
    # A plant that starts at pressure starts with its sample already crept: no creep flow.
    q = PLANT_DEFAULTS["pump_flow_ml_s"] * (1.0 - p / PLANT_DEFAULTS["pump_stall_mpa"]) - leak
    expected = _k(p) / PLANT_DEFAULTS["volume_ml"] * q
    assert abs(_rate({}, p, 1.0, 0.0, False) - expected) < 1e-9
    stalled = {"creep_ml_per_mpa": 0.0, "leak_ml_s_per_mpa": 0.0, "relief_mpa": 500.0}
    assert _rate(stalled, 450.0, 1.0, 0.0, False) == 0.0


def test_bulk_modulus_rises_with_pressure():
    # The same leak flow moves the pressure faster where the oil is stiffer.
    params = {"creep_ml_per_mpa": 0.0, "leak_ml_s_per_mpa": 1e-3}
    low = _rate(params, 50.0, 0.0, 0.0, False) / 50.0
    high = _rate(params, 400.0, 0.0, 0.0, False) / 400.0
    assert abs(high / low - _k(400.0) / _k(50.0)) < 1e-9
    assert _k(400.0) > 2 * _k(0.0)  # 1.8 GPa at rest, well over twice that at 400 MPa


def test_vent_flow_is_proportional_to_opening_and_root_of_pressure():
    params = {"creep_ml_per_mpa": 0.0, "leak_ml_s_per_mpa": 0.0}
    full = _rate(params, 100.0, 0.0, 1.0, False)
    half = _rate(params, 100.0, 0.0, 0.5, False)
    assert full < 0.0 and abs(half / full - 0.5) < 1e-9
    c = PLANT_DEFAULTS["vent_flow_ml_s_per_sqrt_mpa"]
    assert abs(full + _k(100.0) / 500.0 * c * 10.0) < 1e-9
    quad = _rate(params, 400.0, 0.0, 1.0, False)
    assert abs(quad / full - 2.0 * _k(400.0) / _k(100.0)) < 1e-9


def test_dump_valve_open_when_de_energised_empties_the_vessel():
    plant = Plant({"initial_pressure_mpa": 300.0})
    for _ in range(1000):
        plant.step(0.001, 0.0, 0.0, True)  # dump_open=True: de-energised
    assert plant.pressure_mpa < 200.0  # about 150 MPa/s at first
    for _ in range(30):
        plant.step(1.0, 0.0, 0.0, True)
    assert 0.0 <= plant.pressure_mpa < 0.01
    closed = Plant({"initial_pressure_mpa": 300.0})
    closed.step(1.0, 0.0, 0.0, False)
    assert closed.pressure_mpa > 299.9


def test_relief_valve_caps_a_stuck_pump_at_its_setting():
    plant = Plant()
    plant.set_pump_stuck_on(True)
    peak = 0.0
    for _ in range(800):
        plant.step(1.0, 0.0, 0.0, False)  # duty 0: the stuck pump runs anyway
        peak = max(peak, plant.pressure_mpa)
    assert plant.relief_open
    assert 440.0 < peak < 440.5
    plant.set_pump_stuck_on(False)
    plant.step(1.0, 0.0, 0.0, False)
    assert not plant.relief_open


def test_pump_stuck_on_beats_a_zero_duty():
    plant = Plant(QUIET)
    plant.set_pump_stuck_on(True)
    plant.step(1.0, 0.0, 0.0, False)
    assert 1.95 < plant.pressure_mpa < 2.05


def test_leak_change_takes_effect_now_and_bad_values_change_nothing():
    plant = Plant({"initial_pressure_mpa": 200.0, "creep_ml_per_mpa": 0.0})
    plant.step(10.0, 0.0, 0.0, False)
    slow = 200.0 - plant.pressure_mpa
    plant.set_leak(1e-3)
    start = plant.pressure_mpa
    plant.step(10.0, 0.0, 0.0, False)
    fast = start - plant.pressure_mpa
    assert fast > 100 * slow
    expected = _k(start) / 500.0 * 1e-3 * start * 10.0
    assert abs(fast - expected) / expected < 0.05
    for bad in (-1.0, float("nan"), "a lot"):
        try:
            plant.set_leak(bad)
        except ValueError as exc:
            assert str(exc).startswith("leak_ml_s_per_mpa:")
        else:
            raise AssertionError("accepted %r" % (bad,))
    assert plant.leak_ml_s_per_mpa == 1e-3


def test_burst_bag_drops_pressure_then_leaks():
    plant = Plant({"initial_pressure_mpa": 250.0, "creep_ml_per_mpa": 0.0, "leak_ml_s_per_mpa": 0.0})
    plant.burst_bag()
    for _ in range(200):
        plant.step(0.001, 0.0, 0.0, False)
    drop = 250.0 - plant.pressure_mpa
    # Filling the bag's 0.5 mL void costs about K/V * 0.5 mL = 3.3 MPa, within 0.2 s.
    assert plant.burst_void_left_ml == 0.0
    assert 3.0 < drop < 5.0
    p = plant.pressure_mpa
    plant.step(1.0, 0.0, 0.0, False)
    assert p - plant.pressure_mpa > 2.5  # then the burst leak: about 3 MPa/s
    plant.burst_bag()  # a second burst changes nothing
    assert plant.leak_ml_s_per_mpa == PLANT_DEFAULTS["burst_leak_ml_s_per_mpa"]


def test_sample_creep_slowly_decays_a_sealed_hold():
    params = {"leak_ml_s_per_mpa": 0.0}
    plant = Plant(params)
    # Ramp to 250 MPa at about 2 MPa/s, then seal the vessel.
    while plant.pressure_mpa < 250.0:
        plant.step(0.01, 1.0, 0.0, False)
    start = plant.pressure_mpa
    plant.step(10.0, 0.0, 0.0, False)
    early = start - plant.pressure_mpa
    for _ in range(60):
        plant.step(10.0, 0.0, 0.0, False)
    total = start - plant.pressure_mpa
    assert 0.02 < early < 0.3  # a slow decay, not a leak
    assert early * 5 < total  # that goes on ...
    bound = _k(start) / 500.0 * PLANT_DEFAULTS["creep_ml_per_mpa"] * start
    assert total < bound  # ... but settles: creep is a finite volume


def test_same_seed_same_run_other_seed_other_run():
    def run(seed):
        plant = Plant(None, seed)
        out = []
        for i in range(200):
            plant.step(0.05, 0.6 if i % 3 else 0.7, 0.0, False)
            out.append(plant.pressure_mpa)
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_step_size_and_solver_tolerance_do_not_change_the_answer():
    def cycle(params, dt_s):
        plant = Plant(params)
        n = round(1.0 / dt_s)
        trace = []
        for second in range(100):
            if second < 60:
                inputs = (0.8, 0.0, False)
            elif second < 75:
                inputs = (0.05, 0.0, False)
            elif second < 95:
                inputs = (0.0, 0.3, False)
            else:
                inputs = (0.0, 0.0, True)
            for _ in range(n):
                plant.step(dt_s, inputs[0], inputs[1], inputs[2])
            trace.append(plant.pressure_mpa)
        return trace

    fine = cycle({"solver_max_step_s": 2e-4, "solver_max_dp_mpa": 2e-3}, 0.001)
    coarse = cycle(None, 0.001)
    big_steps = cycle(None, 0.1)
    assert max(fine) > 80.0 and fine[-1] < 5.0
    for i in range(len(fine)):
        assert abs(fine[i] - coarse[i]) < 0.05, (i, fine[i], coarse[i])
        assert abs(fine[i] - big_steps[i]) < 0.05, (i, fine[i], big_steps[i])


def test_time_advances_and_pressure_never_goes_negative():
    plant = Plant({"initial_pressure_mpa": 0.5})
    for _ in range(5000):
        plant.step(0.001, 0.0, 1.0, True)
        assert plant.pressure_mpa >= 0.0
    assert abs(plant.t_s - 5.0) < 1e-6
    assert plant.pressure_mpa < 1e-3
    assert not math.isnan(plant.pressure_mpa)


def test_vessel_is_the_plant_for_the_foundation_board():
    vessel = Vessel()
    vessel.step(0.001, 1.0, 0.0, False)
    assert vessel.pressure_mpa > 0.0
