# The virtual board: the board layer backed by the plant model instead of pins.
#
# It runs in virtual time: wait_next_tick() advances the plant to the next tick and
# returns at once, so a 10-minute recipe takes seconds. The hard over-pressure comparator
# of a real board (a 1 kHz timer interrupt on raw counts) is emulated every virtual
# millisecond, between the main loop's ticks, exactly as independent of the loop as the
# real interrupt. The loop's own execution time is measured with ticks_us, so overruns
# are real numbers of this machine (see docs/firmware.md for what that means for an
# RP2040).
#
# The transducer is the Simulator's model (transducer.py: 4-20 mA, NE43 bands, noise,
# read_u16 scale, faults); the plant is plant.py. Scenario runs (scenario_board.py) build
# both from a scenario file; here they take the board config's calibration and defaults.
# The real-time board (realtime.py) and main.py's demo board (simhost.DemoBoard) swap in
# a small transducer (realtime.LineTransducer): the model's ~11 KB of heap do not fit
# beside the serial link, or the compiler of a source run, in an RP2040's 180 KB.

import json
import sys
import time
from array import array

from isofw.calibration import Calibration
from isofw.safety import IN_CLOSURE_LOCKED, IN_ESTOP_RELEASED, IN_GLOVEBOX_OK
from isoproto.codes import RESET_POWER_ON
from plant import Vessel

# MicroPython's ticks_us wraps and is compared with ticks_diff; CPython (the unit tests)
# has a monotonic nanosecond counter instead. Looked up by name: each interpreter's
# stubs know only one of them.
_TICKS_US = getattr(time, "ticks_us", None)
_TICKS_DIFF = getattr(time, "ticks_diff", None)
_PERF_NS = getattr(time, "perf_counter_ns", None)


def _ticks_us() -> int:
    return _TICKS_US() if _TICKS_US else _PERF_NS() // 1000  # type: ignore[misc]


def _ticks_diff(a: int, b: int) -> int:
    return _TICKS_DIFF(a, b) if _TICKS_DIFF else a - b


_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
CONFIG_PATH = _HERE + "/config.json"
_IRQ_SUM_CAP = 4096  # samples the interrupt accumulates at most between two reads
_HIST_BINS = 256
_HIST_BIN_US = 40
_HIST_TOP_US = _HIST_BINS * _HIST_BIN_US  # 10.24 ms: the last bin holds everything above

# The coarse state a person reads (the gate and the demo print it): the three running
# phases are "running".
_COARSE = ("boot", "idle", "ready", "running", "running", "running", "paused", "complete", "fault", "estop")


class _NoSensor:
    """transducer2 of a board without one: never a fault that moves with time."""

    _fault = 0

    def advance(self, dt_s):
        pass

    def read_u16(self, true_pressure_mpa) -> int:
        return 0

    def set_fault(self, kind, value=0.0, rate_hz=0.0):
        raise ValueError("transducer: this board has no second transducer")


_NO_SENSOR = _NoSensor()


class SimBoard:
    name = "sim"

    def __init__(self, config_text=None, sim_s=10.0, seed=1, print_every_s=0.0, measure_time=True):
        self.config_text = config_text
        try:
            doc = json.loads(config_text) if config_text else {}
        except ValueError:
            doc = {}
        self.control_period_ms = int(doc.get("control_period_ms", 10))
        self.gc_every_ticks = int(doc.get("gc_every_ticks", 1))
        cal_doc = doc.get("calibration", {})
        self.calibration = Calibration(
            float(cal_doc.get("range_mpa", 600.0)),
            float(cal_doc.get("shunt_ohm", 150.0)),
            float(cal_doc.get("adc_vref_v", 3.3)),
        )
        self.second_transducer = bool(doc.get("safety", {}).get("second_transducer", False))
        self.seed = seed
        self.vessel = Vessel(None, seed)
        self.transducer = self.make_transducer()
        # The second transducer exists only when the config fits one (heap: the real-time board).
        self.transducer2 = self.make_transducer(None, 2) if self.second_transducer else _NO_SENSOR
        self.end_ms = int(sim_s * 1000)
        self.print_every_ms = int(print_every_s * 1000)
        self.measure_time = measure_time
        self.keep_running = True
        self.link: object = None  # the scripted host (main.py attaches it)
        # Inputs: the safe, permissive levels.
        self.closure_locked = True
        self.estop_released = True
        self.glovebox_ok = True
        self.pump_stuck_on = False
        # Outputs as the plant sees them.
        self._pump = 0.0
        self._vent = 0.0
        self._dump_open = True
        # The emulated interrupt's state (the real boards keep this in an array).
        self._now_ms = 0
        self._trip_counts = 0x7FFFFFFF
        self._tripped = False
        self._sum = 0
        self._n = 0
        self._sum2 = 0
        self._n2 = 0
        self._irq_ticks = 0
        self.irq_enabled = True  # tests stop the "timer" to show the watchdog starve
        self._period_ms = self.control_period_ms
        self._deadline = 0
        self._tick_started_us = 0
        # Measurements.
        self.loop_us_max = 0
        self.loop_hist = array("I", bytes(4 * _HIST_BINS))  # loop time, _HIST_BIN_US bins
        self.loop_us_total = 0
        self.loop_ticks = 0
        self.overruns = 0
        self.watchdog_feeds = 0
        self.watchdog_last_feed_ms = -1
        self.watchdog_starved_ms = 0  # longest gap between feeds
        self.trip_cross_us = -1  # true pressure crossed the trip (interpolated)
        self.trip_safe_us = -1  # the interrupt made the outputs safe
        self.safe_edges_ms = []  # virtual ms at which the outputs went from live to safe
        self.peak_mpa = 0.0
        self.trace = None  # a list: rows (ms, true MPa, pump, vent, dump open) are added
        self.trace_every_ms = 10
        self.trace_from_ms = 0
        self.trace_to_ms = 1 << 30
        # A compact alternative for long runs: the true pressure every
        # pressure_log_every_ms into a preallocated array("f") (index = ms / every).
        self.pressure_log = None
        self.pressure_log_every_ms = 100
        self.script = []  # what the scripted host does (make() sets the demo's)

    def make_transducer(self, overrides=None, which=1):
        """A transducer model matching the config's calibration (range, shunt, reference),
        with overrides ({"noise_pct_fs": 0.0}, ...); transducer 2 gets its own seed."""
        from transducer import Transducer  # not at import: the real-time board has its own

        cal = self.calibration
        params = {"range_mpa": cal.range_mpa, "shunt_ohm": cal.shunt_ohm, "adc_vref_v": cal.adc_vref_v}
        if overrides:
            params.update(overrides)
        return Transducer(params, 3 * self.seed + which)

    # -- configuration, identity ------------------------------------------------------
    def read_config_text(self):
        return self.config_text

    def configure(self, config: dict):
        self.watchdog_ms = config.get("watchdog_ms", 500)

    def reset_cause(self) -> int:
        return RESET_POWER_ON

    def boot_count(self) -> int:
        return 1

    maintenance = False  # make()'s --maintenance 1: as if the maintenance input were held

    def maintenance_requested(self) -> bool:
        return self.maintenance

    # -- clock -------------------------------------------------------------------------
    def start_clock(self, period_ms: int):
        self._period_ms = period_ms
        self._deadline = self._now_ms + period_ms
        self._tick_started_us = _ticks_us()

    def wait_next_tick(self) -> int:
        """Advance the plant to the next tick, running the 1 kHz interrupt on the way.

        Returns the ticks the loop missed: its measured execution time (ticks_us since
        the tick began) divided by the period. The plant runs on through missed ticks.
        """
        missed = 0
        if self.measure_time:
            spent_us = _ticks_diff(_ticks_us(), self._tick_started_us)
            self.loop_hist[spent_us // _HIST_BIN_US if spent_us < _HIST_TOP_US else _HIST_BINS - 1] += 1
            self.loop_ticks += 1
            self.loop_us_total += spent_us
            if spent_us > self.loop_us_max:
                self.loop_us_max = spent_us
            missed = spent_us // (self._period_ms * 1000)
            if missed:
                self.overruns += missed
                self._deadline += missed * self._period_ms
        while self._now_ms < self._deadline:
            self.advance_1ms()
        self._deadline += self._period_ms
        self.keep_running = self._now_ms < self.end_ms
        log = self.pressure_log
        if log is not None and self._now_ms % self.pressure_log_every_ms == 0:
            i = self._now_ms // self.pressure_log_every_ms
            if i < len(log):
                log[i] = self.vessel.pressure_mpa
        if (
            self.trace is not None
            and self._now_ms % self.trace_every_ms == 0
            and self.trace_from_ms <= self._now_ms <= self.trace_to_ms
        ):
            self.trace.append(self.trace_row())
        self._tick_started_us = _ticks_us()
        return missed

    def advance_1ms(self):
        """One virtual millisecond: the plant, then the timer interrupt."""
        v = self.vessel
        p0 = v.pressure_mpa
        v.step(0.001, 1.0 if self.pump_stuck_on else self._pump, self._vent, self._dump_open)
        if self.transducer._fault >= 4:  # drift and spike faults move with time
            self.transducer.advance(0.001)
        if self.transducer2._fault >= 4:
            self.transducer2.advance(0.001)
        p1 = v.pressure_mpa
        if p1 > self.peak_mpa:
            self.peak_mpa = p1
            trip_mpa = self._trip_mpa
            if p0 < trip_mpa <= p1 and self.trip_cross_us < 0:
                self.trip_cross_us = int((self._now_ms + (trip_mpa - p0) / (p1 - p0)) * 1000)
        self._now_ms += 1
        if self.irq_enabled:
            self._irq()

    # -- the board's 1 kHz interrupt: oversampling and hard over-pressure trip ---------
    def arm_overpressure_trip(self, trip_counts: int):
        # Down to the 12-bit ADC's step, like the real boards.
        self._trip_counts = trip_counts & 0xFFF0
        # The true pressure at which a noise-free reading reaches the trip count: the
        # reference for the trip latency.
        self._trip_mpa = self.transducer.mpa_at_counts(self._trip_counts)

    _trip_mpa = 1e9

    def clear_overpressure_trip(self):
        self._tripped = False

    def _irq(self):
        p = self.vessel.pressure_mpa
        raw = self.transducer.read_u16(p)
        self._irq_ticks = (self._irq_ticks + 1) & 0xFFFFFF
        if self._n < _IRQ_SUM_CAP:
            self._sum += raw
            self._n += 1
        if self.second_transducer:
            raw2 = self.transducer2.read_u16(p)
            if self._n2 < _IRQ_SUM_CAP:
                self._sum2 += raw2
                self._n2 += 1
            if raw2 >= self._trip_counts:
                raw = raw2
        if raw >= self._trip_counts:
            self._hard_trip()

    def _hard_trip(self):
        # The comparator's action: pump off, dump valve open (de-energised), latched.
        was_live = self._pump > 0.0 or not self._dump_open
        self._tripped = True
        self._pump = 0.0
        self._dump_open = True
        if self.trip_safe_us < 0:
            self.trip_safe_us = self._now_ms * 1000
        if was_live:
            self.safe_edges_ms.append(self._now_ms)

    def irq_ticks(self) -> int:
        return self._irq_ticks

    def overpressure_tripped(self) -> bool:
        return self._tripped

    # -- inputs ---------------------------------------------------------------------------
    def read_inputs(self, inputs):
        # Half a 12-bit step up, as on the real boards: a code stands for its step's middle.
        p = self.vessel.pressure_mpa
        n = self._n
        inputs.counts = (self._sum / n if n else float(self.transducer.read_u16(p))) + 8.0
        self._sum = 0
        self._n = 0
        if self.second_transducer:
            n2 = self._n2
            inputs.counts2 = (self._sum2 / n2 if n2 else float(self.transducer2.read_u16(p))) + 8.0
            self._sum2 = 0
            self._n2 = 0
        else:
            inputs.counts2 = -1.0
        bits = 0
        if self.closure_locked:
            bits |= IN_CLOSURE_LOCKED
        if self.estop_released:
            bits |= IN_ESTOP_RELEASED
        if self.glovebox_ok:
            bits |= IN_GLOVEBOX_OK
        inputs.bits = bits
        inputs.hw_tripped = self._tripped

    # -- outputs --------------------------------------------------------------------------
    def write_outputs(self, pump_duty: int, vent_duty: int, dump_closed: bool):
        if self._tripped:
            pump_duty = 0
            dump_closed = False
        was_live = self._pump > 0.0 or not self._dump_open
        self._pump = pump_duty / 65535
        self._vent = vent_duty / 65535
        self._dump_open = not dump_closed
        if was_live and self._pump == 0.0 and self._dump_open:
            self.safe_edges_ms.append(self._now_ms)

    def outputs_safe(self) -> bool:
        return self._pump == 0.0 and self._dump_open

    def feed_watchdog(self):
        now = self._now_ms
        if self.watchdog_last_feed_ms >= 0 and now - self.watchdog_last_feed_ms > self.watchdog_starved_ms:
            self.watchdog_starved_ms = now - self.watchdog_last_feed_ms
        self.watchdog_last_feed_ms = now
        self.watchdog_feeds += 1

    # -- observation ----------------------------------------------------------------------
    def trace_row(self) -> tuple:
        return (self._now_ms, self.vessel.pressure_mpa, self._pump, self._vent, self._dump_open)

    def observer(self, now_ms: int, core):
        if self.print_every_ms and now_ms % self.print_every_ms == 0:
            from isoproto.names import STATE_NAMES  # host-side words: loaded only when printing

            print(
                "t=%7.1f s  state=%-14s  p=%7.2f MPa  sp=%7.2f MPa  pump=%5.1f%%  vent=%5.1f%%"
                % (
                    now_ms / 1000,
                    STATE_NAMES[core.state],
                    self.vessel.pressure_mpa,
                    core.setpoint_mpa,
                    core.pump_duty / 655.35,
                    core.vent_duty / 655.35,
                )
            )

    def loop_us_quantile(self, fraction: float) -> int:
        """Upper edge of the histogram bin holding that fraction of the measured ticks."""
        want = int(self.loop_ticks * fraction)
        seen = 0
        for i in range(_HIST_BINS):
            seen += self.loop_hist[i]
            if seen > want:
                return (i + 1) * _HIST_BIN_US
        return _HIST_TOP_US

    def loop_ticks_over(self, limit_us: int) -> int:
        """Measured ticks in the bins above limit_us (no slice: nothing to allocate)."""
        n = 0
        for i in range(limit_us // _HIST_BIN_US, _HIST_BINS):
            n += self.loop_hist[i]
        return n

    def summary(self, core) -> dict:
        import gc

        from isoproto.names import STATE_NAMES

        gc.collect()
        return {
            "sim_s": self._now_ms / 1000,
            "state": _COARSE[core.state],
            "state_name": STATE_NAMES[core.state],
            "pressure_mpa": self.vessel.pressure_mpa,
            "peak_mpa": self.peak_mpa,
            "faults": core.faults,
            "config_errors": list(core.config_errors),
            "loop_overruns": core.overruns,
            "loop_us_max": self.loop_us_max,
            "loop_us_mean": self.loop_us_total // self.loop_ticks if self.loop_ticks else 0,
            "loop_us_p99": self.loop_us_quantile(0.99),
            "loop_us_p9999": self.loop_us_quantile(0.9999),
            "loop_ticks_over_1ms": self.loop_ticks_over(1000),
            "trip_latency_us": self.trip_safe_us - self.trip_cross_us if self.trip_safe_us >= 0 else -1,
            "watchdog_feeds": self.watchdog_feeds,
            "samples": core.sample_seq + 1,
            "events": core.events.next_seq,
            "run_id": core.run_id,
            "heap_used": gc.mem_alloc() if hasattr(gc, "mem_alloc") else -1,
            "heap_free": gc.mem_free() if hasattr(gc, "mem_free") else -1,
        }

    def finish(self, core, overruns: int):
        # One JSON line for whoever ran the virtual board (tests, isopress hil run). The
        # run is over: the history ring's ~30 KB go back first. An hour-long run in the
        # RP2040's 180 KB once failed here with MemoryError (bench control_step): the
        # summary's dict, its words and the JSON need a few KB of contiguous heap, and
        # after an hour the ~28 KB left beside the ring can be too fragmented for them.
        core.history.pages = []
        print(json.dumps(self.summary(core)))


def config_with(overrides=None, path: str = CONFIG_PATH) -> str:
    """simhost.config_with (loaded only when called: the real-time board never needs it)."""
    from simhost import config_with as f

    return f(overrides, path)


def simulate(script, sim_s: float, seed: int = 1, config_text=None, measure_time=False, setup=None):
    """simhost.simulate: boot the firmware on a virtual board and run script for sim_s."""
    from simhost import simulate as f

    return f(script, sim_s, seed, config_text, measure_time, setup)


def read_config(path: str = CONFIG_PATH):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def make() -> SimBoard:
    args = sys.argv[1:]
    if "--realtime" in args:  # real time, the real link on a pseudo-terminal: realtime.py
        from realtime import make_realtime

        return make_realtime(args)
    from simhost import make_virtual

    return make_virtual(args)


def attach_link(board, core):
    """The virtual board's link: main.py calls this after boot. In real time the real
    serial link (realtime.py); in virtual time the scripted stand-in."""
    if getattr(board, "realtime", False):
        return board.attach_link(core)
    from simhost import DEMO_SCRIPT, ScriptedHost

    host = ScriptedHost(board, core, getattr(board, "script", DEMO_SCRIPT))
    board.link = host
    return host
