# Board layer for the ESP32 (ESP32-WROOM): the only code that touches its pins.
#
# Transducer: 4-20 mA through a 150 ohm shunt into ADC0 (GP26). A 1 kHz hard timer
# interrupt is the only reader of the ADC: it accumulates samples for the control loop
# (oversampling) and compares each raw sample with the over-pressure trip count. On a
# trip it switches the pump off and de-energises the normally-open dump valve itself,
# without waiting for the main loop. No floats and no allocation in the interrupt.

import json
import time
from array import array

import machine
import micropython
from machine import ADC, PWM, WDT, Pin, Timer

_CONFIG_FILE = "config.json"
_PWM_FREQ_HZ = 1000


def _load_config() -> dict:
    try:
        with open(_CONFIG_FILE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


class Esp32Board:
    name = "esp32"

    def __init__(self, config: dict):
        self.config = config
        self.control_period_ms = int(config.get("control_period_ms", 10))
        pins = config.get("pins", {})
        # Outputs first, and safe: pump off, vent closed, dump valve de-energised (open).
        self._dump = Pin(pins.get("dump_valve", 15), Pin.OUT, value=0)
        self._pump = PWM(Pin(pins.get("pump_pwm", 16)), freq=_PWM_FREQ_HZ, duty_u16=0)
        self._vent = PWM(Pin(pins.get("vent_pwm", 17)), freq=_PWM_FREQ_HZ, duty_u16=0)
        self._closure = Pin(pins.get("closure_locked", 18), Pin.IN, Pin.PULL_DOWN)
        self._estop = Pin(pins.get("estop_ok", 19), Pin.IN, Pin.PULL_DOWN)
        self._glovebox = Pin(pins.get("glovebox_ok", 20), Pin.IN, Pin.PULL_DOWN)
        self._led = Pin("LED", Pin.OUT, value=0)
        self._adc = ADC(Pin(pins.get("transducer_adc", 26)))
        # Interrupt state, preallocated: [sum, count, tripped, trip_counts, irq_ticks]
        self._irq_state = array("i", [0, 0, 0, 0x7FFFFFFF, 0])
        self._timer = Timer(0)
        self._wdt = None
        self._period_ms = self.control_period_ms
        self._deadline = time.ticks_ms()
        self.keep_running = True
        self.observer = None
        micropython.alloc_emergency_exception_buf(100)

    # -- clock ---------------------------------------------------------------
    def start_clock(self, period_ms: int):
        self._period_ms = period_ms
        self._deadline = time.ticks_add(time.ticks_ms(), period_ms)

    def wait_next_tick(self) -> int:
        """Sleep to the next control tick; returns how many ticks were missed (overruns)."""
        late = -time.ticks_diff(self._deadline, time.ticks_ms())
        missed = 0
        if late >= 0:
            # Overran: skip the missed ticks instead of bursting to catch up.
            missed = late // self._period_ms + 1
            self._deadline = time.ticks_add(self._deadline, missed * self._period_ms)
        time.sleep_ms(time.ticks_diff(self._deadline, time.ticks_ms()))
        self._deadline = time.ticks_add(self._deadline, self._period_ms)
        return missed

    # -- hard over-pressure comparator and oversampling ------------------------
    def _irq(self, _timer):
        s = self._irq_state
        raw = self._adc.read_u16()
        s[0] += raw
        s[1] += 1
        s[4] += 1
        if raw >= s[3]:
            self._pump.duty_u16(0)
            self._dump.value(0)
            s[2] = 1

    def arm_overpressure_trip(self, trip_counts: int):
        self._irq_state[3] = trip_counts
        self._timer.init(freq=1000, mode=Timer.PERIODIC, callback=self._irq, hard=True)

    def overpressure_tripped(self) -> bool:
        return self._irq_state[2] != 0

    def read_pressure_counts(self) -> float:
        s = self._irq_state
        irq = machine.disable_irq()
        total = s[0]
        n = s[1]
        s[0] = 0
        s[1] = 0
        machine.enable_irq(irq)
        return total / n if n else float(self._adc.read_u16())

    # -- outputs ---------------------------------------------------------------
    def write_outputs(self, pump_duty: int, vent_duty: int, dump_closed: bool):
        if self._irq_state[2]:
            pump_duty = 0
            dump_closed = False
        self._pump.duty_u16(pump_duty)
        self._vent.duty_u16(vent_duty)
        self._dump.value(1 if dump_closed else 0)
        self._led.value(1 if pump_duty or vent_duty else 0)

    def read_inputs(self) -> int:
        return self._closure.value() | (self._estop.value() << 1) | (self._glovebox.value() << 2)

    def feed_watchdog(self):
        if self._wdt is None:
            self._wdt = WDT(timeout=int(self.config.get("watchdog_ms", 500)))
        self._wdt.feed()

    def host_commands(self, now_ms: int):
        return ()

    def finish(self, core, overruns: int):
        # The loop only ends on a board if something went badly wrong: fail safe.
        self.write_outputs(0, 0, False)


def make() -> Esp32Board:
    return Esp32Board(_load_config())
