# The virtual board: the board layer backed by the plant model instead of pins.
#
# It runs in virtual time: wait_until() advances the plant to the deadline and returns at
# once, so a 10-minute recipe takes seconds. The hard over-pressure comparator of a real
# board (a 1 kHz timer interrupt on raw counts) is emulated every virtual millisecond.

import json
import math
import random
import sys

from isofw.calibration import Calibration
from isofw.recipe import hold, ramp
from plant import Vessel

_CONFIG_FILE = "config.json"


def _load_config(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return {}


class SimBoard:
    name = "sim"

    def __init__(self, config: dict, sim_s: float = 10.0, seed: int = 1, print_every_s: float = 0.0):
        self.config = config
        self.control_period_ms = int(config.get("control_period_ms", 10))
        self.vessel = Vessel()
        self.calibration = Calibration(**config.get("calibration", {}))
        self.noise_fs = 0.0005  # sigma, fraction of full scale
        self.end_ms = int(sim_s * 1000)
        self.print_every_ms = int(print_every_s * 1000)
        self._now_ms = 0
        self._pump = 0.0
        self._vent = 0.0
        self._dump_open = True
        self._trip_counts = 0x7FFFFFFF
        self._tripped = False
        self._sum = 0
        self._n = 0
        self._period_ms = self.control_period_ms
        self._deadline = 0
        self.keep_running = True
        random.seed(seed)
        self._script = [(0, "load", [ramp(250.0, 1.0), hold(30.0), ramp(0.0, 1.0)]), (100, "start", None)]

    # -- clock -------------------------------------------------------------
    def start_clock(self, period_ms: int):
        self._period_ms = period_ms
        self._deadline = self._now_ms + period_ms

    def wait_next_tick(self) -> int:
        """Advance the plant to the next tick, running the 1 kHz interrupt on the way."""
        while self._now_ms < self._deadline:
            self.vessel.step(0.001, self._pump, self._vent, self._dump_open)
            self._now_ms += 1
            self._irq()
        self._deadline += self._period_ms
        self.keep_running = self._now_ms < self.end_ms
        return 0

    # -- transducer -----------------------------------------------------------
    def _raw_counts(self) -> int:
        cal = self.calibration
        ma = 4.0 + 16.0 * self.vessel.pressure_mpa / cal.range_mpa
        u1 = random.random() or 1e-12
        gauss = math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * random.random())
        ma += gauss * self.noise_fs * 16.0
        counts = cal.ma_to_counts(ma)
        counts &= 0xFFF0  # 12-bit ADC reported on the read_u16 scale
        return min(max(counts, 0), 0xFFFF)

    def read_pressure_counts(self) -> float:
        n = self._n
        total = self._sum
        self._sum = 0
        self._n = 0
        return total / n if n else float(self._raw_counts())

    # -- the board's 1 kHz interrupt: oversampling and hard over-pressure trip -----
    def arm_overpressure_trip(self, trip_counts: int):
        self._trip_counts = trip_counts

    def _irq(self):
        raw = self._raw_counts()
        self._sum += raw
        self._n += 1
        if raw >= self._trip_counts:
            self._tripped = True
            self._pump = 0.0
            self._dump_open = True

    def overpressure_tripped(self) -> bool:
        return self._tripped

    # -- outputs ---------------------------------------------------------------
    def write_outputs(self, pump_duty: int, vent_duty: int, dump_closed: bool):
        if self._tripped:
            pump_duty = 0
            dump_closed = False
        self._pump = pump_duty / 65535
        self._vent = vent_duty / 65535
        self._dump_open = not dump_closed

    def feed_watchdog(self):
        pass

    # -- host ------------------------------------------------------------------
    def host_commands(self, now_ms: int):
        due = []
        while self._script and self._script[0][0] <= now_ms:
            item = self._script.pop(0)
            due.append((item[1], item[2]))
        return due

    def observer(self, now_ms: int, core):
        if self.print_every_ms and now_ms % self.print_every_ms == 0:
            print(
                "t=%7.1f s  state=%-8s  p=%7.2f MPa  sp=%7.2f MPa  pump=%5.1f%%  vent=%5.1f%%"
                % (
                    now_ms / 1000,
                    ("boot", "idle", "ready", "running", "paused", "complete", "fault", "estop")[core.state],
                    self.vessel.pressure_mpa,
                    core.setpoint_mpa,
                    core.pump_duty / 655.35,
                    core.vent_duty / 655.35,
                )
            )

    def finish(self, core, overruns: int):
        # One JSON line for whoever ran the virtual board (tests, isopress hil run).
        print(
            json.dumps(
                {
                    "sim_s": self._now_ms / 1000,
                    "state": ("boot", "idle", "ready", "running", "paused", "complete", "fault", "estop")[
                        core.state
                    ],
                    "pressure_mpa": self.vessel.pressure_mpa,
                    "faults": core.faults,
                    "loop_overruns": overruns,
                }
            )
        )


def make() -> SimBoard:
    args = sys.argv[1:]
    opts = {"sim_s": 10.0, "seed": 1, "print_every_s": 0.0}
    i = 0
    while i + 1 < len(args):
        key = args[i].lstrip("-").replace("-", "_")
        if key in opts:
            opts[key] = float(args[i + 1])
        i += 2
    return SimBoard(_load_config(_CONFIG_FILE), opts["sim_s"], int(opts["seed"]), opts["print_every_s"])
