# Board layer for the Raspberry Pi Pico (RP2040): the only code that touches its pins.
#
# Transducer: 4-20 mA through a 150 ohm shunt into ADC0 (GP26); optional second one on
# ADC1 (GP27). A 1 kHz hard timer interrupt is the only reader of the ADC: it accumulates
# samples for the control loop (oversampling) and compares each raw sample with the
# over-pressure trip count. On a trip it switches the pump off and de-energises the
# normally-open dump valve itself, without waiting for the main loop. The interrupt uses
# only integers in a preallocated array: no floats, no allocation, so it runs even while
# the main loop is in a garbage collection.
#
# Inputs are wired so a broken wire reads as the unsafe level: closure-locked, e-stop
# chain (normally closed) and glovebox permissive each pull the pin high when all is
# well, with the internal pull-down making an open circuit read 0.

import json
import time
from array import array

import machine
import micropython
from machine import ADC, PWM, WDT, Pin, Timer
from micropython import const

from isofw.safety import IN_CLOSURE_LOCKED, IN_ESTOP_RELEASED, IN_GLOVEBOX_OK
from isoproto.codes import (
    RESET_DEEPSLEEP,
    RESET_HARD,
    RESET_POWER_ON,
    RESET_SOFT,
    RESET_UNKNOWN,
    RESET_WATCHDOG,
)

_CONFIG_FILE = "config.json"
_BOOT_COUNT_FILE = "boot_count"
_PWM_FREQ_HZ = 1000
_IRQ_HZ = 1000
_HALF_STEP = 8.0  # half a 12-bit ADC step on the read_u16 scale
_SUM_CAP = const(4096)  # samples summed at most between two reads: stays a small int

# Used when config.json is missing or unreadable, only to drive the outputs safe.
DEFAULT_PINS = {
    "transducer_adc": 26,
    "pump_pwm": 16,
    "vent_pwm": 17,
    "dump_valve": 15,
    "closure_locked": 18,
    "estop_ok": 19,
    "glovebox_ok": 20,
    "status_led": "LED",
}

# Indices into the interrupt's state array.
_SUM = const(0)
_N = const(1)
_TRIPPED = const(2)
_TRIP_COUNTS = const(3)
_TICKS = const(4)
_SUM2 = const(5)
_N2 = const(6)


def _read_text(name: str):
    try:
        with open(name) as f:
            return f.read()
    except OSError:
        return None


def _pins_from(text) -> dict:
    pins = dict(DEFAULT_PINS)
    try:
        doc = json.loads(text) if text else {}
        given = doc.get("pins", {})
        if isinstance(given, dict):
            pins.update(given)
    except (ValueError, AttributeError):
        pass
    return pins


class Rp2Board:
    name = "rp2"

    def __init__(self, config_text):
        self.config_text = config_text
        pins = _pins_from(config_text)
        # Outputs first, and safe: dump valve de-energised (open), pump off, vent closed.
        self._dump = Pin(pins["dump_valve"], Pin.OUT, value=0)
        self._pump = PWM(Pin(pins["pump_pwm"]), freq=_PWM_FREQ_HZ, duty_u16=0)
        self._vent = PWM(Pin(pins["vent_pwm"]), freq=_PWM_FREQ_HZ, duty_u16=0)
        self._led = Pin(pins["status_led"], Pin.OUT, value=0)
        self._closure = Pin(pins["closure_locked"], Pin.IN, Pin.PULL_DOWN)
        self._estop = Pin(pins["estop_ok"], Pin.IN, Pin.PULL_DOWN)
        self._glovebox = Pin(pins["glovebox_ok"], Pin.IN, Pin.PULL_DOWN)
        # Maintenance input (optional): a jumper or button to ground, read once at boot.
        self._maintenance = Pin(pins["maintenance"], Pin.IN, Pin.PULL_UP) if "maintenance" in pins else None
        self._adc = ADC(Pin(pins["transducer_adc"]))
        self._adc2 = ADC(Pin(pins["transducer2_adc"])) if "transducer2_adc" in pins else None
        # Interrupt state, preallocated: sum, n, tripped, trip counts, ticks, sum2, n2.
        self._irq_state = array("i", [0, 0, 0, 0x7FFFFFFF, 0, 0, 0])
        self._timer = Timer(-1)
        self._timer_running = False
        self._wdt = None
        self._watchdog_ms = 500
        self._period_ms = 10
        self._deadline = time.ticks_ms()
        self.keep_running = True
        self.link = None
        self.observer = None
        micropython.alloc_emergency_exception_buf(100)
        self._boot_count = self._count_boot()

    # -- identity and config --------------------------------------------------------------
    def read_config_text(self):
        return self.config_text

    def reset_cause(self) -> int:
        cause = machine.reset_cause()
        if cause == machine.PWRON_RESET:
            return RESET_POWER_ON
        if cause == machine.WDT_RESET:
            return RESET_WATCHDOG
        for name, code in (
            ("HARD_RESET", RESET_HARD),
            ("SOFT_RESET", RESET_SOFT),
            ("DEEPSLEEP_RESET", RESET_DEEPSLEEP),
        ):
            if cause == getattr(machine, name, -1):
                return code
        return RESET_UNKNOWN

    def _count_boot(self) -> int:
        text = _read_text(_BOOT_COUNT_FILE)
        try:
            count = int(text) + 1 if text else 1
        except ValueError:
            count = 1
        try:
            with open(_BOOT_COUNT_FILE, "w") as f:
                f.write(str(count))
        except OSError:
            pass  # a full or read-only filesystem must not stop the board booting safe
        return count

    def boot_count(self) -> int:
        return self._boot_count

    def maintenance_requested(self) -> bool:
        """The maintenance input is held low (main.py then starts neither loop nor link)."""
        return self._maintenance is not None and self._maintenance.value() == 0

    # -- clock ---------------------------------------------------------------------------
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

    # -- hard over-pressure comparator and oversampling (hard interrupt) -----------------
    def _irq(self, _timer):
        s = self._irq_state
        raw = self._adc.read_u16()
        s[_TICKS] = (s[_TICKS] + 1) & 0xFFFFFF
        if s[_N] < _SUM_CAP:
            s[_SUM] += raw
            s[_N] += 1
        if raw >= s[_TRIP_COUNTS]:
            self._pump.duty_u16(0)
            self._dump.value(0)
            s[_TRIPPED] = 1

    def _irq2(self, _timer):
        # The same with the second transducer: either one over the trip count trips.
        s = self._irq_state
        raw = self._adc.read_u16()
        raw2 = self._adc2.read_u16()  # type: ignore[union-attr]  # _irq2 only runs with an _adc2
        s[_TICKS] = (s[_TICKS] + 1) & 0xFFFFFF
        if s[_N] < _SUM_CAP:
            s[_SUM] += raw
            s[_N] += 1
            s[_SUM2] += raw2
            s[_N2] += 1
        if raw >= s[_TRIP_COUNTS] or raw2 >= s[_TRIP_COUNTS]:
            self._pump.duty_u16(0)
            self._dump.value(0)
            s[_TRIPPED] = 1

    def arm_overpressure_trip(self, trip_counts: int):
        # Down to the 12-bit ADC's step (read_u16 reports multiples of 16): a reading
        # that can never equal the count would trip one step late.
        self._irq_state[_TRIP_COUNTS] = trip_counts & 0xFFF0
        if not self._timer_running:
            handler = self._irq2 if self._adc2 is not None else self._irq
            self._timer.init(freq=_IRQ_HZ, mode=Timer.PERIODIC, callback=handler, hard=True)
            self._timer_running = True

    def clear_overpressure_trip(self):
        self._irq_state[_TRIPPED] = 0

    def overpressure_tripped(self) -> bool:
        return self._irq_state[_TRIPPED] != 0

    def irq_ticks(self) -> int:
        return self._irq_state[_TICKS]

    # -- inputs --------------------------------------------------------------------------
    def read_inputs(self, inputs):
        s = self._irq_state
        irq = machine.disable_irq()
        total = s[_SUM]
        n = s[_N]
        total2 = s[_SUM2]
        n2 = s[_N2]
        s[_SUM] = 0
        s[_N] = 0
        s[_SUM2] = 0
        s[_N2] = 0
        tripped = s[_TRIPPED] != 0
        machine.enable_irq(irq)
        # A 12-bit code stands for the middle of its step: half a step (8 on the read_u16
        # scale) up, or the oversampled mean reads 0.1 MPa low.
        inputs.counts = (total / n if n else float(self._adc.read_u16())) + _HALF_STEP
        inputs.counts2 = total2 / n2 + _HALF_STEP if n2 else -1.0
        bits = 0
        if self._closure.value():
            bits |= IN_CLOSURE_LOCKED
        if self._estop.value():
            bits |= IN_ESTOP_RELEASED
        if self._glovebox.value():
            bits |= IN_GLOVEBOX_OK
        inputs.bits = bits
        inputs.hw_tripped = tripped

    # -- outputs -------------------------------------------------------------------------
    def write_outputs(self, pump_duty: int, vent_duty: int, dump_closed: bool):
        if self._irq_state[_TRIPPED]:
            pump_duty = 0
            dump_closed = False
        self._pump.duty_u16(pump_duty)
        self._vent.duty_u16(vent_duty)
        self._dump.value(1 if dump_closed else 0)
        self._led.value(1 if dump_closed else 0)  # lit = the vessel may be under pressure

    def feed_watchdog(self):
        if self._wdt is None:
            # Started by the first feed, i.e. once the loop and the interrupt both run.
            self._wdt = WDT(timeout=self._watchdog_ms)
        self._wdt.feed()

    def configure(self, config: dict):
        """Board settings from the validated config (app.boot calls this)."""
        self._watchdog_ms = config.get("watchdog_ms", 500)

    def finish(self, core, overruns: int):
        # The loop only ends on a board if something went badly wrong: fail safe.
        self.write_outputs(0, 0, False)


def make() -> Rp2Board:
    return Rp2Board(_read_text(_CONFIG_FILE))


def attach_link(board, core):
    """The serial link on the board's stdio (USB CDC). From here on the port carries only
    frames: Ctrl-C no longer interrupts (a 0x03 inside a frame would stop the loop), and
    nothing may print (the board's layer prints nothing after boot)."""
    import select
    import sys

    from isofw.link import Link
    from isofw.streams import PolledStream

    rx_poll = select.poll()
    rx_poll.register(sys.stdin, select.POLLIN)
    tx_poll = select.poll()
    tx_poll.register(sys.stdout, select.POLLOUT)
    micropython.kbd_intr(-1)
    link = Link(core, PolledStream(sys.stdin.buffer, sys.stdout.buffer, rx_poll, tx_poll))
    board.link = link
    return link
