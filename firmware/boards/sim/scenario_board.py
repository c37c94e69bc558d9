# A scenario run: the real firmware (isofw.app's boot and loop, the real core) on the
# virtual board, against the plant and transducer models configured from a scenario, in
# virtual time (as fast as it goes) or paced to real time. `isopress hil run` starts it:
#
#   micropython -X heapsize=N -c "import scenario_board; scenario_board.main('run.json')"
#
# run.json is {"scenario": <Scenario.to_board_json()>, "options": {...}} (docs/scenarios.md:
# the virtual board's JSON, and the options below). It writes to stdout, one line each:
#
#   R t_ms true_mpa measured_mpa setpoint_mpa pump vent dump_closed state segment faults
#     a trace row (pump, vent: duty 0..65535 as the plant sees them; faults: bit mask),
#     every telemetry_decimation ticks and at every change of state, segment, dump valve
#     or faults; also at the virtual ms the interrupt's hard trip fired and around the ms
#     the true pressure crossed the profile's trip pressure
#   L result reason detail problems    the board's reply to loading the recipe
#   T result reason detail             ... and to starting it
#   S {...}                            the closing summary (JSON)
#
# Options: realtime (pace to the wall clock), measure_time (time the loop: ticks longer
# than the period are counted; in virtual time the run goes on deterministically, in real
# time they are missed for real), control ({key: value} over the config's "control"
# table), controller ("firmware" or "plain_pid": the baseline of bench/hil_bench.py),
# heartbeat_ms (the stand-in host's heartbeat period), gc_every_ticks (the loop's
# collection cadence over the config's; the runner's virtual-time default, see runner.py).
#
# Only scenario runs import this module (and transducer.py): the real-time board keeps
# its heap for the serial link.

import json
import sys
import time

from simhost import config_with

from board import _HIST_BIN_US, _HIST_BINS, _HIST_TOP_US, _NO_SENSOR, SimBoard
from isofw.control import PressureController
from isoproto.codes import RESULT_OK
from plant import Plant
from transducer import Transducer

if False:  # type checkers only: MicroPython has no typing
    from isofw.core import PressCore

_TICKS_US = getattr(time, "ticks_us", None)
_TICKS_DIFF = getattr(time, "ticks_diff", None)
_TICKS_ADD = getattr(time, "ticks_add", None)
_SLEEP_US = getattr(time, "sleep_us", None)
_PERF_NS = getattr(time, "perf_counter_ns", None)
_NEVER = 1 << 60


def _now_us() -> int:
    return _TICKS_US() if _TICKS_US else _PERF_NS() // 1000  # type: ignore[misc]


def _diff(a: int, b: int) -> int:
    return _TICKS_DIFF(a, b) if _TICKS_DIFF else a - b


def _add(a: int, b: int) -> int:
    return _TICKS_ADD(a, b) if _TICKS_ADD else a + b


def _sleep_us(us: int):
    if _SLEEP_US:
        _SLEEP_US(us)
    else:
        time.sleep(us / 1e6)


class PlainPID(PressureController):
    """The baseline controller: the firmware's PI with neither setpoint-rate feed-forward
    nor anti-windup (it integrates while the actuator is saturated and without a bound).
    Same gains, the same pump/vent split and duty limits, the same decompression cap."""

    def update(
        self, dt_s, setpoint_mpa, setpoint_rate_mpa_s, pressure_mpa, holding=False, max_fall_mpa_s=0.0
    ):
        error = setpoint_mpa - pressure_mpa
        ki = self.hold_ki_per_s2 if holding else self.ki_per_s2
        self.integral_mpa_s += ki * error * dt_s
        demand = self.kp_per_s * error + self.integral_mpa_s
        if max_fall_mpa_s > 0.0 and demand < -max_fall_mpa_s:
            demand = -max_fall_mpa_s
        self._split(demand, pressure_mpa)
        self.rate_demand_mpa_s = demand
        return demand


def board_config(doc: dict, options: dict) -> str:
    """The sim's config.json with the scenario's device profile, control period,
    transducer range and shunt (the board's calibration; the ADC reference stays the
    board's nominal 3.3 V, so a transducer's adc_vref_v models a reference error), a
    second transducer when one is fitted, the scenario's [control] and the options'
    control gains over those; resealed."""
    tr = doc["transducer"]
    control = dict(doc.get("control") or {})
    control.update(options.get("control") or {})
    return config_with(
        {
            "control_period_ms": doc["run"]["control_period_ms"],
            "profile": doc["profile"],
            "calibration": {"range_mpa": tr["range_mpa"], "shunt_ohm": tr["shunt_ohm"]},
            "safety": {"second_transducer": doc["transducer2"] is not None},
            "control": control,
        }
    )


class ScenarioBoard(SimBoard):
    """The sim board with the scenario's models, inputs and fault timeline."""

    def __init__(self, doc: dict, options: dict, config_text: str):
        run = doc["run"]
        seeds = doc["seeds"]
        SimBoard.__init__(self, config_text, run["sim_ms"] / 1000.0, seeds["plant"], 0.0, False)
        self.vessel = Plant(doc["plant"], seeds["plant"])
        self.transducer = Transducer(doc["transducer"], seeds["transducer"])
        t2 = doc["transducer2"]
        self.transducer2 = Transducer(t2, seeds["transducer2"]) if t2 is not None else _NO_SENSOR
        inputs = doc["inputs"]
        self.closure_locked = bool(inputs["closure_locked"])
        self.estop_released = not inputs["estop_pressed"]
        self.glovebox_ok = bool(inputs["glovebox_ok"])
        self.host_link = bool(inputs["host_link"])
        self.events = doc["events"]
        self._next_event = 0
        self._next_event_ms = self.events[0]["t_ms"] if self.events else _NEVER
        self.decimation = run["telemetry_decimation"]
        self.start_ms = run["start_ms"]
        self.profile_trip_mpa = doc["profile"]["trip_mpa"]
        self.realtime = False  # attach_link: the stand-in host, not the serial link
        self.paced = bool(options.get("realtime", False))
        self.timed = bool(options.get("measure_time", True))
        self.core: PressCore = None  # type: ignore[assignment]  # run_scenario attaches it
        self.started = False  # the recipe was started: rows carry its segment
        self.rows = 0
        self.slow_ticks = 0  # ticks whose loop took longer than the period
        self._crossed = False
        self._tripped_seen = False
        self._moving = 0  # transducers with a fault that moves with time (drift, spike)
        self._tick = 0
        self._last_key = None
        self._due_us = 0
        self._wall_start_us = 0
        self._write = sys.stdout.write

    # -- the trace -------------------------------------------------------------------
    def row(self, t_ms: int, true_mpa: float):
        core = self.core
        self.rows += 1
        self._write(
            "R %d %.5f %.5f %.5f %d %d %d %d %d %d\n"
            % (
                t_ms,
                true_mpa,
                core.pressure_mpa,
                core.setpoint_mpa,
                int(self._pump * 65535.0 + 0.5),
                int(self._vent * 65535.0 + 0.5),
                0 if self._dump_open else 1,
                core.state,
                core.segment if self.started else -1,
                core.faults,
            )
        )

    def observer(self, now_ms: int, core):
        """After every tick's outputs: a row every `decimation` ticks and at every change."""
        key = (core.state, core.segment, self._dump_open, core.faults, self.started)
        self._tick += 1
        if self._tick >= self.decimation or key != self._last_key:
            self._tick = 0
            self._last_key = key
            self.row(now_ms, self.vessel.pressure_mpa)

    # -- the fault timeline ------------------------------------------------------------
    def _apply_events(self, now_ms: int):
        events = self.events
        while self._next_event < len(events) and events[self._next_event]["t_ms"] <= now_ms:
            self.apply(events[self._next_event])
            self._next_event += 1
        self._next_event_ms = events[self._next_event]["t_ms"] if self._next_event < len(events) else _NEVER

    def apply(self, ev: dict):
        action = ev["action"]
        if action == "transducer":
            sensor = self.transducer if ev["index"] == 0 else self.transducer2
            sensor.set_fault(ev["kind"], ev["value"], ev["rate_hz"])
            self._moving = int(self.transducer._fault >= 4) + int(self.transducer2._fault >= 4)
        elif action == "set_leak":
            self.vessel.set_leak(ev["leak_ml_s_per_mpa"])
        elif action == "burst_bag":
            self.vessel.burst_bag()
        elif action == "pump_stuck_on":
            self.vessel.set_pump_stuck_on(ev["on"])
        elif action == "input":
            name = ev["input"]
            on = bool(ev["on"])
            if name == "closure_locked":
                self.closure_locked = on
            elif name == "estop_pressed":
                self.estop_released = not on
            elif name == "glovebox_ok":
                self.glovebox_ok = on
            elif name == "host_link":
                self.host_link = on
            else:
                raise ValueError("events: unknown input %r" % name)
        else:
            raise ValueError("events: unknown action %r" % action)

    # -- the clock ---------------------------------------------------------------------
    def start_clock(self, period_ms: int):
        SimBoard.start_clock(self, period_ms)
        self._due_us = self._tick_started_us
        self._wall_start_us = self._tick_started_us

    def advance_1ms(self):
        """One virtual ms: the plant (the events due by its end applied), the interrupt.

        SimBoard.advance_1ms and SimBoard._irq in one method (the same steps in the same
        order): this runs 1000 times per virtual second, and a MicroPython call costs as
        much as the plant's fast path. Locals are few: a larger frame goes on the heap.
        """
        v = self.vessel
        p0 = v.pressure_mpa
        v.step(0.001, self._pump, self._vent, self._dump_open)
        if self._moving:
            self._advance_sensors()
        p1 = v.pressure_mpa
        self._now_ms += 1
        if p1 > self.peak_mpa:
            self._new_peak(self._now_ms, p0, p1)
        if self._now_ms >= self._next_event_ms:
            self._apply_events(self._now_ms)
        if self.irq_enabled:
            v = self.transducer.read_u16(p1)  # v: the raw reading (few locals, see above)
            self._irq_ticks = (self._irq_ticks + 1) & 0xFFFFFF
            if self._n < 4096:  # board._IRQ_SUM_CAP, as a literal: an imported name is a lookup per ms
                self._sum += v
                self._n += 1
            if self.second_transducer:
                v = self._irq_second(p1, v)
            if v >= self._trip_counts:
                self._hard_trip()
        if self._tripped != self._tripped_seen:
            self._tripped_seen = self._tripped
            self.row(self._now_ms, p1)

    def _advance_sensors(self):
        self.transducer.advance(0.001)
        if self.transducer2._fault >= 4:
            self.transducer2.advance(0.001)

    def _new_peak(self, now: int, p0: float, p1: float):
        self.peak_mpa = p1
        if p0 < self._trip_mpa <= p1 and self.trip_cross_us < 0:
            self.trip_cross_us = int((now - 1 + (self._trip_mpa - p0) / (p1 - p0)) * 1000)
        if p1 >= self.profile_trip_mpa and not self._crossed:
            self._crossed = True  # rows either side: the metrics interpolate the crossing
            self.row(now - 1, p0)
            self.row(now, p1)

    def _irq_second(self, p: float, raw: int) -> int:
        raw2 = self.transducer2.read_u16(p)
        if self._n2 < 4096:  # board._IRQ_SUM_CAP
            self._sum2 += raw2
            self._n2 += 1
        return raw2 if raw2 >= self._trip_counts else raw

    def wait_next_tick(self) -> int:
        period_ms = self._period_ms
        missed = 0
        if self.timed:
            now = _now_us()
            spent = _diff(now, self._tick_started_us)
            self.loop_hist[spent // _HIST_BIN_US if spent < _HIST_TOP_US else _HIST_BINS - 1] += 1
            self.loop_ticks += 1
            self.loop_us_total += spent
            if spent > self.loop_us_max:
                self.loop_us_max = spent
            if spent >= period_ms * 1000:
                self.slow_ticks += 1
            if self.paced:  # real time: a late loop misses ticks, as on a board
                late = _diff(now, _add(self._due_us, period_ms * 1000))
                if late >= 0:
                    missed = late // (period_ms * 1000) + 1
                    self.overruns += missed
                    self._deadline += missed * period_ms
                    self._due_us = _add(self._due_us, missed * period_ms * 1000)
        while self._now_ms < self._deadline:
            self.advance_1ms()
        self._deadline += period_ms
        self.keep_running = self._now_ms < self.end_ms
        if self.paced:
            self._due_us = _add(self._due_us, period_ms * 1000)
            rest = _diff(self._due_us, _now_us())
            if rest > 0:
                _sleep_us(rest)
        self._tick_started_us = _now_us()
        return missed

    # -- the end -----------------------------------------------------------------------
    def finish(self, core, overruns: int):
        self.row(self._now_ms, self.vessel.pressure_mpa)  # the final state, whatever changed
        wall_us = _diff(_now_us(), self._wall_start_us)
        out = SimBoard.summary(self, core)
        out["loop_slow_ticks"] = self.slow_ticks
        out["board_wall_s"] = wall_us / 1e6
        out["rows"] = self.rows
        out["trip_mpa_board"] = self._trip_mpa
        print("S " + json.dumps(out))


class ScenarioHost:
    """The host and the operator: heartbeats while the link is up, the recipe loaded and
    started at start_ms. A recipe the board refuses ends the run a second later."""

    def __init__(self, board: ScenarioBoard, core, recipe: dict, heartbeat_ms: int = 1000):
        self.board = board
        self.core = core
        self.segments = [
            (s["kind"], s.get("target_mpa") or 0.0, s.get("rate_mpa_s") or 0.0, s.get("duration_s") or 0.0)
            for s in recipe["segments"]
        ]
        self.heartbeat_ms = heartbeat_ms
        self._next_beat_ms = 0
        self._loaded = False

    def service(self, now_ms: int):
        core = self.core
        board = self.board
        if board.host_link and now_ms >= self._next_beat_ms:
            core.host_heartbeat_seen(now_ms)
            self._next_beat_ms = now_ms + self.heartbeat_ms
        if not self._loaded and now_ms >= board.start_ms:
            self._loaded = True
            reply = core.load_recipe(self.segments)
            print("L %d %d %d %s" % (reply[0], reply[1], reply[2], json.dumps([list(p) for p in reply[3]])))
            if reply[0] != RESULT_OK:
                board.end_ms = now_ms + 1000
                return
            reply = core.start(core.recipe.recipe_id)
            print("T %d %d %d" % (reply[0], reply[1], reply[2]))
            board.started = reply[0] == RESULT_OK


def run_scenario(doc: dict, options: dict):
    """Boot the firmware on a ScenarioBoard and run the scenario to its end."""
    import gc

    from isofw.app import boot, run

    board = ScenarioBoard(doc, options, board_config(doc, options))
    if board.events and board.events[0]["t_ms"] <= 0:
        board._apply_events(0)
    core = boot(board)
    if options.get("controller", "firmware") == "plain_pid":
        c = core.controller
        core.controller = PlainPID(
            c.kp_per_s, c.ki_per_s2, c.hold_ki_per_s2, c.integral_limit_mpa_s, c.switch_band_mpa_s, c.model
        )
    if getattr(gc, "mem_free", None) is None:
        core.gc_every_ticks = 1 << 30  # CPython: its collector needs no help from the loop
    elif options.get("gc_every_ticks"):
        core.gc_every_ticks = int(options["gc_every_ticks"])
    board.core = core
    host = ScenarioHost(board, core, doc["recipe"], int(options.get("heartbeat_ms", 1000)))
    board.link = host
    run(board, core, host, board.observer)
    board.finish(core, core.overruns)


def main(path: str):
    with open(path) as f:
        doc = json.load(f)
    run_scenario(doc["scenario"], doc.get("options") or {})
