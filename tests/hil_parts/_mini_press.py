"""A stand-in press controller for testing the HIL parts on realistic traces.

NOT the firmware: a small CPython loop that closes the loop around the real plant and
transducer models the way a board would (1 kHz ADC oversampling and hard over-pressure
comparator, 100 Hz control), so metrics and plots can be tested on traces with real
dynamics, noise and faults before the virtual board runner exists. It writes rows the way
the runner is specified to (see isopress.hil.trace): every `telemetry_decimation` ticks
and at every change of state, segment, dump valve or faults, at the millisecond it
happened.
"""

from __future__ import annotations

import math

from isofw.calibration import Calibration
from isopress.hil.scenario import Scenario
from isopress.hil.sim_models import load_sim_module
from isopress.hil.trace import TraceRow

TRANSDUCER_LOW_MA = 3.6  # NAMUR NE43 failure level


class _Setpoints:
    """Recipe walker: setpoint, its rate and the segment index at time t."""

    def __init__(self, scenario: Scenario, start_s: float, start_mpa: float) -> None:
        self.segments = scenario.recipe.segments
        self.index = 0
        self.seg_start_s = start_s
        self.seg_start_mpa = start_mpa
        self.setpoint_mpa = start_mpa
        self.rate_mpa_s = 0.0
        self.done = False

    def update(self, t_s: float) -> None:
        while not self.done:
            seg = self.segments[self.index]
            elapsed = t_s - self.seg_start_s
            if seg.kind == "ramp":
                assert seg.target_mpa is not None and seg.rate_mpa_s is not None
                span = seg.target_mpa - self.seg_start_mpa
                rate = math.copysign(seg.rate_mpa_s, span)
                if abs(rate * elapsed) < abs(span):
                    self.setpoint_mpa = self.seg_start_mpa + rate * elapsed
                    self.rate_mpa_s = rate
                    return
                self.setpoint_mpa = seg.target_mpa
                end_s = self.seg_start_s + abs(span) / seg.rate_mpa_s
            else:
                assert seg.duration_s is not None
                self.rate_mpa_s = 0.0
                if elapsed < seg.duration_s:
                    return
                end_s = self.seg_start_s + seg.duration_s
            self.rate_mpa_s = 0.0
            if self.index + 1 >= len(self.segments):
                self.done = True
                return
            self.index += 1
            self.seg_start_s = end_s
            self.seg_start_mpa = self.setpoint_mpa


def run_mini_press(scenario: Scenario, *, kp_per_s: float = 1.0, ki_per_s2: float = 0.05) -> list[TraceRow]:
    """Run the scenario's recipe and faults against the models; returns the trace."""
    plant_mod = load_sim_module("plant")
    transducer_mod = load_sim_module("transducer")
    params = scenario.plant_params()
    seeds = scenario.to_board_json()["seeds"]
    plant = plant_mod.Plant(params, seeds["plant"])
    sensor = transducer_mod.Transducer(scenario.transducer_params(1), seeds["transducer"])
    tp = scenario.transducer_params(1)
    cal = Calibration(range_mpa=tp["range_mpa"], shunt_ohm=tp["shunt_ohm"], adc_vref_v=3.3)
    trip_counts = cal.mpa_to_counts(scenario.profile.trip_mpa)
    period_ms = 1000 // scenario.run.control_rate_hz
    decimation = scenario.run.telemetry_decimation
    sim_ms = round(scenario.sim_s * 1000.0)
    start_ms = round(scenario.run.start_s * 1000.0)
    events = scenario.to_board_json()["events"]
    k0, k1, volume = params["bulk_modulus_mpa"], params["bulk_modulus_slope_mpa_per_mpa"], params["volume_ml"]

    rows: list[TraceRow] = []
    state = "idle"
    faults: tuple[str, ...] = ()
    pump = vent = 0.0
    dump_closed = False
    measured = 0.0
    integral = 0.0
    acc = n = 0
    setpoints: _Setpoints | None = None
    tick = 0
    next_event = 0

    def emit(t_ms: int) -> None:
        segment = -1 if setpoints is None else setpoints.index
        sp = measured if setpoints is None else setpoints.setpoint_mpa
        rows.append(
            TraceRow(
                t_ms / 1000.0,
                plant.pressure_mpa,
                measured,
                sp,
                pump,
                vent,
                dump_closed,
                state,
                segment,
                faults,
            )
        )

    def trip(code: str, new_state: str, t_ms: int) -> None:
        nonlocal pump, vent, dump_closed, state, faults
        pump, vent, dump_closed = 0.0, 0.0, False
        state = new_state
        if code not in faults:
            faults = (*faults, code)
        emit(t_ms)

    emit(0)
    for t_ms in range(1, sim_ms + 1):
        plant.step(0.001, pump, vent, not dump_closed)
        sensor.advance(0.001)
        while next_event < len(events) and events[next_event]["t_ms"] <= t_ms:
            ev = events[next_event]
            next_event += 1
            if ev["action"] == "transducer":
                sensor.set_fault(ev["kind"], ev["value"], ev["rate_hz"])
            elif ev["action"] == "set_leak":
                plant.set_leak(ev["leak_ml_s_per_mpa"])
            elif ev["action"] == "burst_bag":
                plant.burst_bag()
            elif ev["action"] == "pump_stuck_on":
                plant.set_pump_stuck_on(ev["on"])
            elif ev["action"] == "input" and ev["input"] == "estop_pressed" and ev["on"]:
                trip("estop", "estop", t_ms)
        raw = sensor.read_u16(plant.pressure_mpa)
        acc += raw
        n += 1
        if raw >= trip_counts and state != "fault":  # the hard comparator, every ms
            trip("overpressure_hw", "fault", t_ms)
        if t_ms % period_ms:
            continue
        tick += 1
        measured = cal.counts_to_mpa(acc / n)
        current_ma = cal.counts_to_ma(acc / n)
        acc = n = 0
        if current_ma < TRANSDUCER_LOW_MA and state not in ("fault", "estop"):
            trip("transducer_low", "fault", t_ms)
        before = (state, setpoints.index if setpoints else -1, dump_closed)
        if state == "idle" and t_ms >= start_ms:
            setpoints = _Setpoints(scenario, t_ms / 1000.0, measured)
            state = "pressurising"
            dump_closed = True
        if setpoints is not None and state in ("pressurising", "holding", "depressurising"):
            setpoints.update(t_ms / 1000.0)
            seg = scenario.recipe.segments[setpoints.index]
            if setpoints.done and measured < 1.0:
                state, pump, vent, dump_closed = "complete", 0.0, 0.0, False
            else:
                if seg.kind == "hold":
                    state = "holding"
                else:
                    state = "pressurising" if setpoints.rate_mpa_s > 0 else "depressurising"
                # Model-based control: wanted rate = feed-forward + P + I on the error,
                # turned into a flow through the plant's stiffness, then into a duty.
                error = setpoints.setpoint_mpa - measured
                integral = max(min(integral + ki_per_s2 * error * period_ms / 1000.0, 0.5), -0.5)
                rate = setpoints.rate_mpa_s + kp_per_s * error + integral
                p = max(measured, 0.0)
                flow = rate * volume / (k0 + k1 * p)
                pump_flow = params["pump_flow_ml_s"] * max(1.0 - p / params["pump_stall_mpa"], 1e-3)
                vent_flow = params["vent_flow_ml_s_per_sqrt_mpa"] * math.sqrt(max(p, 0.25))
                pump = min(max(flow / pump_flow, 0.0), 1.0)
                vent = min(max(-flow / vent_flow, 0.0), 1.0)
        after = (state, setpoints.index if setpoints else -1, dump_closed)
        if after != before or tick % decimation == 0:
            emit(t_ms)
    return rows
