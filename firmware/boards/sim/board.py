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
# Until the Simulator issue's transducer model lands, a minimal 4-20 mA transducer lives
# here: noise, 12-bit quantisation and the faults the safety tests need.

import json
import math
import random
import sys
import time
from array import array

from isofw.calibration import Calibration
from isofw.recipe import hold, ramp
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


class SimTransducer:
    """4-20 mA over range_mpa into the shunt, 12-bit ADC on the read_u16 scale."""

    def __init__(self, calibration, noise_fs=0.0005):
        self.cal = calibration
        self.noise_fs = noise_fs
        self.fault = "none"
        self.fault_value = 0.0
        self._stuck_ma = 0.0

    def set_fault(self, kind: str, value: float = 0.0, pressure_mpa: float = 0.0):
        if kind not in ("none", "open_wire", "short", "stuck", "offset", "spike"):
            raise ValueError("unknown transducer fault %r" % kind)
        self.fault = kind
        self.fault_value = value
        self._stuck_ma = 4.0 + 16.0 * pressure_mpa / self.cal.range_mpa

    def current_ma(self, pressure_mpa: float) -> float:
        fault = self.fault
        if fault == "open_wire":
            return 0.0
        if fault == "short":
            return 24.0
        if fault == "stuck":
            return self._stuck_ma  # a frozen transmitter: no noise either
        if fault == "offset":
            pressure_mpa += self.fault_value
        elif fault == "spike":
            pressure_mpa += self.fault_value
            self.fault = "none"  # one sample
        ma = 4.0 + 16.0 * pressure_mpa / self.cal.range_mpa
        u1 = random.random() or 1e-12
        gauss = math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * random.random())
        return ma + gauss * self.noise_fs * 16.0

    def read_u16(self, pressure_mpa: float) -> int:
        counts = self.cal.ma_to_counts(self.current_ma(pressure_mpa))
        if counts > 0xFFFF:
            counts = 0xFFFF  # the ADC saturates at its reference
        elif counts < 0:
            counts = 0
        return counts & 0xFFF0  # 12-bit ADC reported on the read_u16 scale


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
        random.seed(seed)
        self.vessel = Vessel()
        self.transducer = SimTransducer(self.calibration)
        self.transducer2 = SimTransducer(self.calibration)
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
        self._trip_mpa = self.calibration.counts_to_mpa(self._trip_counts)

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
            "loop_ticks_over_1ms": sum(self.loop_hist[1000 // _HIST_BIN_US :]),
            "trip_latency_us": self.trip_safe_us - self.trip_cross_us if self.trip_safe_us >= 0 else -1,
            "watchdog_feeds": self.watchdog_feeds,
            "samples": core.sample_seq + 1,
            "events": core.events.next_seq,
            "run_id": core.run_id,
            "heap_used": gc.mem_alloc() if hasattr(gc, "mem_alloc") else -1,
            "heap_free": gc.mem_free() if hasattr(gc, "mem_free") else -1,
        }

    def finish(self, core, overruns: int):
        # One JSON line for whoever ran the virtual board (tests, isopress hil run).
        print(json.dumps(self.summary(core)))


class ScriptedHost:
    """Stands in for the host and the outside world until the serial link exists.

    script: list of (t_ms, verb, arg), in time order. Verbs: load (segments), start,
    pause, resume, abort, reset, profile (8-tuple), host (present: heartbeats every
    heartbeat_ms), estop (pressed), closure (locked), glovebox (ok), pump_stuck (on),
    transducer / transducer2 (fault kind or (kind, value)), leak (ml/s per MPa),
    pressure (set the vessel's true pressure), plant ((parameter, value) of the vessel),
    irq (False stops the timer interrupt).
    Command replies go to self.replies.
    """

    def __init__(self, board, core, script, heartbeat_ms=1000):
        self.board = board
        self.core = core
        self.script = list(script)
        self.heartbeat_ms = heartbeat_ms
        self.host_present = True
        self.replies = []
        self.marks = {}  # verb -> t_ms of its last application
        self._next_beat_ms = 0

    def service(self, now_ms: int):
        core = self.core
        if self.host_present and now_ms >= self._next_beat_ms:
            core.host_heartbeat_seen(now_ms)
            self._next_beat_ms = now_ms + self.heartbeat_ms
        while self.script and self.script[0][0] <= now_ms:
            _, verb, arg = self.script.pop(0)
            self.marks[verb] = now_ms
            reply = self.apply(verb, arg)
            if reply is not None:
                self.replies.append((now_ms, verb, reply))

    def apply(self, verb, arg):
        core = self.core
        board = self.board
        if verb == "load":
            return core.load_recipe(arg)
        if verb == "start":
            return core.start(core.recipe.recipe_id if arg is None else arg)
        if verb == "pause":
            return core.pause()
        if verb == "resume":
            return core.resume()
        if verb == "abort":
            return core.abort()
        if verb == "reset":
            return core.reset_faults()
        if verb == "profile":
            return core.set_device_profile(*arg)
        if verb == "host":
            self.host_present = bool(arg)
            if self.host_present:
                self._next_beat_ms = 0
        elif verb == "estop":
            board.estop_released = not arg
        elif verb == "closure":
            board.closure_locked = bool(arg)
        elif verb == "glovebox":
            board.glovebox_ok = bool(arg)
        elif verb == "pump_stuck":
            board.pump_stuck_on = bool(arg)
        elif verb in ("transducer", "transducer2"):
            kind, value = (arg, 0.0) if isinstance(arg, str) else arg
            target = board.transducer if verb == "transducer" else board.transducer2
            target.set_fault(kind, value, board.vessel.pressure_mpa)
        elif verb == "leak":
            board.vessel.set_leak(arg)
        elif verb == "pressure":
            board.vessel.set_pressure(arg)
        elif verb == "plant":
            board.vessel.set_param(arg[0], arg[1])  # (parameter name, value)
        elif verb == "irq":
            board.irq_enabled = bool(arg)  # False: the timer interrupt stops
        else:
            raise ValueError("unknown script verb %r" % verb)
        return None


# The demo's press cycle: 250 MPa at 1 MPa/s, hold 30 s, down at 1 MPa/s.
DEMO_SCRIPT = [(0, "load", [ramp(250.0, 1.0), hold(30.0), ramp(0.0, 1.0)]), (100, "start", None)]


def config_with(overrides=None, path: str = CONFIG_PATH) -> str:
    """The sim's config.json with overrides ({"section": {"key": value}} or {"key": value})
    applied and the checksum resealed: what a user's edited-and-sealed config would be."""
    from isofw.config import compute_checksum

    with open(path) as f:
        doc = json.load(f)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update(value)
        else:
            doc[key] = value
    doc["checksum"] = "crc32:00000000"
    text = json.dumps(doc)
    return text.replace("crc32:00000000", compute_checksum(text))


def simulate(script, sim_s: float, seed: int = 1, config_text=None, measure_time=False, setup=None):
    """Boot the firmware on a virtual board and run script for sim_s of virtual time.

    Returns (board, core, host). setup(board) runs before boot (set plant parameters,
    a second transducer, ...). measure_time=False keeps the virtual board deterministic
    (no overruns from the test machine's scheduling). In an interpreter with a heap far
    larger than a board's (the unit tests' 2 MB), the loop collects every 2 s instead
    of the config's cadence: a collection's sweep grows with the heap, not the garbage
    (under CPython it does not collect at all).
    """
    import gc

    from isofw.app import boot, run

    if config_text is None:
        config_text = read_config()
    board = SimBoard(config_text, sim_s, seed, 0.0, measure_time)
    if setup is not None:
        setup(board)
    core = boot(board)
    mem_free = getattr(gc, "mem_free", None)
    if mem_free is None:
        core.gc_every_ticks = 1 << 30  # CPython: its collector needs no help from the loop
    elif mem_free() > 1000000:
        core.gc_every_ticks = 200
    host = ScriptedHost(board, core, script)
    board.link = host
    run(board, core, host)
    return (board, core, host)


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
    opts = {"sim_s": 10.0, "seed": 1, "print_every_s": 0.0}
    config_path = CONFIG_PATH
    script_path = ""
    maintenance = False
    i = 0
    while i + 1 < len(args):
        key = args[i].lstrip("-").replace("-", "_")
        if key in opts:
            opts[key] = float(args[i + 1])
        elif key == "config":
            config_path = args[i + 1]
        elif key == "script":
            script_path = args[i + 1]
        elif key == "maintenance":
            maintenance = args[i + 1] == "1"
        i += 2
    board = SimBoard(read_config(config_path), opts["sim_s"], int(opts["seed"]), opts["print_every_s"])
    board.maintenance = maintenance
    board.script = DEMO_SCRIPT
    if script_path:
        with open(script_path) as f:
            board.script = [tuple(item) for item in json.load(f)]
    return board


def attach_link(board, core):
    """The virtual board's link: main.py calls this after boot. In real time the real
    serial link (realtime.py); in virtual time the scripted stand-in."""
    if getattr(board, "realtime", False):
        return board.attach_link(core)
    host = ScriptedHost(board, core, getattr(board, "script", DEMO_SCRIPT))
    board.link = host
    return host
