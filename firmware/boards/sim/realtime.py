# The virtual board in real time, its serial link on a pseudo-terminal (DESIGN.md
# decision 4): `main.py --realtime` on the unix port (or CPython) with stdin the master
# side of a pty, as isopress.virtual_board.VirtualBoard starts it. A host agent on the
# slave side cannot tell it from a board on USB.
#
# The loop is the firmware's own (isofw.app.run) and the link the real isofw.link; only
# the clock differs from the virtual-time board: wait_next_tick() advances the plant to
# the next tick, 1 ms at a time (the emulated 1 kHz interrupt on the way), then sleeps
# until that tick is due in real time. A loop that runs late misses ticks for real:
# they are counted as overruns, as on a board.
#
# The link reads and writes file descriptor 0 (the pty, set O_NONBLOCK by the launcher):
# stdout is free for the board's log lines and its closing JSON summary.
#
# --journal FILE: the board's own record for fault-injection tests and the soak (a
# virtual-board option only; a real board has no file for it). One line each, appended as
# it happens, never buffered:
#   S <hex>           a sample as stored in the history ring (27 bytes, TELEMETRY's body)
#   C <seq> <hex>     a command executed (cmd_seq, the command's payload)
#   H <board_ms>      the host was seen (a heartbeat or a command) at this tick
# so a test can tell what the board produced, what it executed (once?) and when it last
# heard the host, whatever the link did to the bytes in between.

import gc
import math
import sys
import time
from binascii import hexlify

from board import _HIST_BIN_US, CONFIG_PATH, SimBoard, read_config
from isoproto.codes import RESET_POWER_ON

_REALTIME_GC_EVERY_TICKS = 4  # the loop's collection cadence in real time (attach_link)
_MICROPYTHON = sys.implementation.name == "micropython"
_TICKS_US = getattr(time, "ticks_us", None)
_TICKS_ADD = getattr(time, "ticks_add", None)
_TICKS_DIFF = getattr(time, "ticks_diff", None)
_SLEEP_US = getattr(time, "sleep_us", None)
_PERF_NS = getattr(time, "perf_counter_ns", None)


def _now_us() -> int:
    return _TICKS_US() if _TICKS_US else _PERF_NS() // 1000  # type: ignore[misc]


def _add(a: int, b: int) -> int:
    return _TICKS_ADD(a, b) if _TICKS_ADD else a + b


def _diff(a: int, b: int) -> int:
    return _TICKS_DIFF(a, b) if _TICKS_DIFF else a - b


def _sleep_us(us: int):
    if _SLEEP_US:
        _SLEEP_US(us)
    else:
        time.sleep(us / 1e6)


class LineTransducer:
    """The real-time board's transducer: the model's defaults (4-20 mA over the config's
    range into its shunt, 12-bit ADC on the read_u16 scale, noise 0.05 % of the 16 mA span)
    without its faults, which only scenario runs inject. transducer.Transducer costs ~11 KB
    of heap that the serial link needs in an RP2040-sized heap; this costs a few hundred
    bytes and reads the same (tests/dual/test_realtime_transducer.py)."""

    _fault = 0  # SimBoard.advance_1ms: no fault that moves with time

    def __init__(self, calibration, seed=1):
        import random

        self._random = random
        random.seed(seed)
        self._codes_per_ma = calibration.shunt_ohm / 1000.0 / calibration.adc_vref_v * 4096.0
        self._zero = 4.0 * self._codes_per_ma
        self._per_mpa = 16.0 / calibration.range_mpa * self._codes_per_ma
        self._noise = 0.0005 * 16.0 * self._codes_per_ma

    def mpa_at_counts(self, counts) -> float:
        code = counts >> 4
        if (code << 4) | (code >> 8) < counts:
            code += 1
        return (code - self._zero) / self._per_mpa

    def read_u16(self, true_pressure_mpa) -> int:
        r = self._random
        u = r.random() or 1e-12
        x = self._zero + true_pressure_mpa * self._per_mpa
        x += self._noise * math.sqrt(-2.0 * math.log(u)) * math.cos(6.283185307179586 * r.random())
        code = int(x)
        if code < 0:
            code = 0
        elif code > 4095:
            code = 4095
        return (code << 4) | (code >> 8)


class RealtimeBoard(SimBoard):
    """SimBoard on the real clock; boot_count and reset_cause as the launcher says."""

    realtime = True

    def __init__(
        self,
        config_text,
        seed=1,
        run_s=0.0,
        boot_count=1,
        reset_cause=RESET_POWER_ON,
        print_every_s=0.0,
        journal_path="",
    ):
        SimBoard.__init__(
            self, config_text, sim_s=run_s, seed=seed, print_every_s=print_every_s, measure_time=True
        )
        self._boots = boot_count
        self._cause = reset_cause
        self._due_us = 0  # when the current tick was due (ticks_us)
        self.late_us_max = 0  # how late a tick started after the one before it ran long
        self.plant_us_max = 0  # the plant's share of a tick (10 virtual ms of it)
        self.stopped_by = ""
        self.heap_free_min = -1  # the smallest free heap after the loop's collections
        self.journal = Journal(journal_path) if journal_path else None

    def make_transducer(self, overrides=None, which=1):  # type: ignore[override]
        return LineTransducer(self.calibration, 3 * self.seed + which)

    def reset_cause(self) -> int:
        return self._cause

    def boot_count(self) -> int:
        return self._boots

    def start_clock(self, period_ms: int):
        SimBoard.start_clock(self, period_ms)
        self._due_us = _now_us()
        self._tick_started_us = self._due_us

    def wait_next_tick(self) -> int:
        period_us = self._period_ms * 1000
        now = _now_us()
        spent_us = _diff(now, self._tick_started_us)
        self._measure(spent_us)
        due = _add(self._due_us, period_us)  # the next tick
        missed = 0
        late = _diff(now, due)
        if late >= 0:  # ran past the next tick's time: those ticks are lost, as on a board
            missed = late // period_us + 1
            due = _add(due, missed * period_us)
            self.overruns += missed
            self._deadline += missed * self._period_ms
        while self._now_ms < self._deadline:
            self.advance_1ms()
        self._deadline += self._period_ms
        plant_us = _diff(_now_us(), now)
        if plant_us > self.plant_us_max:
            self.plant_us_max = plant_us
        rest = _diff(due, _now_us())
        try:
            if rest > 0:
                _sleep_us(rest)
        except KeyboardInterrupt:  # SIGINT from the launcher (or Ctrl-C): stop cleanly
            self.stopped_by = "SIGINT"
            self.keep_running = False
        started = _now_us()
        late = _diff(started, due)
        if late > self.late_us_max:
            self.late_us_max = late
        self._due_us = due
        self._tick_started_us = started
        if self.end_ms > 0 and self._now_ms >= self.end_ms:
            self.stopped_by = "run_s"
            self.keep_running = False
        return missed

    def observer(self, now_ms: int, core):
        SimBoard.observer(self, now_ms, core)
        if self.journal is not None:
            self.journal.tick(core)
        free = core.heap_free_after_gc
        if free >= 0 and (free < self.heap_free_min or self.heap_free_min < 0):
            self.heap_free_min = free

    def _measure(self, spent_us: int):
        hist = self.loop_hist
        top = len(hist) - 1
        i = spent_us // _HIST_BIN_US
        hist[i if i < top else top] += 1
        self.loop_ticks += 1
        self.loop_us_total += spent_us
        if spent_us > self.loop_us_max:
            self.loop_us_max = spent_us

    def attach_link(self, core):
        """The real serial link on file descriptor 0 (the pty's master side)."""
        from isofw.link import Link

        if _MICROPYTHON:
            from isofw.streams import NonblockingStream

            stream = NonblockingStream(sys.stdin.buffer, sys.stdin.buffer)
            # Beside the link and the plant model about 11 KB are free after a collection
            # in 180 KB, and a tick leaves ~2 KB of boxed floats: every 10 ticks (the
            # config's) the allocator had to collect by itself, inside step(), and the
            # board died twice in loaded full-suite runs at the end of a run. Every 4
            # ticks keeps the garbage under the free heap (~150 us a collection, 10 ms tick).
            if core.gc_every_ticks > _REALTIME_GC_EVERY_TICKS:
                core.gc_every_ticks = _REALTIME_GC_EVERY_TICKS
        else:
            stream = FdStream(0)
            core.gc_every_ticks = 1 << 30  # CPython's collector needs no help from the loop
        # The link's instance dict grows past 500 bytes while it is built: collect first,
        # so that the boot's garbage leaves holes that size (without it, a boot ~1 KB
        # bigger failed there in 180 KB with "allocating 592 bytes").
        gc.collect()
        if self.journal is not None:
            self.link = journalling(Link)(core, stream, self.journal)
        else:
            self.link = Link(core, stream)
        return self.link

    def summary(self, core) -> dict:
        link = self.link
        counters = link.counters() if link is not None else None  # type: ignore[attr-defined]
        # The run is over: give the history ring's 30 KB back, or the summary's own words
        # and JSON do not fit the 180 KB heap (the loop's free heap is heap_free_min).
        self.link = None
        core.history.pages = []
        out = SimBoard.summary(self, core)
        out["realtime"] = True
        out["boot_count"] = self._boots
        out["reset_cause"] = self._cause
        out["late_us_max"] = self.late_us_max
        out["plant_us_max"] = self.plant_us_max
        out["stopped_by"] = self.stopped_by or "SIGINT"  # (main.py caught it elsewhere)
        out["heap_free_min"] = self.heap_free_min
        out["link"] = counters
        return out


class Journal:
    """The --journal file (see the top of this module)."""

    def __init__(self, path: str):
        self._file = open(path, "a")  # noqa: SIM115 (open for the board's whole life)
        self._sample = -1  # the newest sample written
        self._host_ms = -1

    def _line(self, text: str):
        self._file.write(text)
        flush = getattr(self._file, "flush", None)  # CPython buffers; the unix port does not
        if flush is not None:
            flush()

    def tick(self, core):
        """After each control tick: the samples it recorded, the host's last contact."""
        ring = core.history
        latest = core.sample_seq
        seq = self._sample + 1 if self._sample >= 0 else ring.oldest_seq()
        while latest >= 0 and seq >= 0 and seq <= latest:
            record = ring.record(seq)
            if record is not None:
                self._line("S " + hexlify(bytes(record)).decode() + "\n")
            seq += 1
        self._sample = latest
        seen = core._host_seen_ms  # the sim reads the core's state
        if seen != self._host_ms and seen >= 0:
            self._host_ms = seen
            self._line("H %d\n" % seen)

    def command(self, seq: int, payload, n: int):
        self._line("C %d %s\n" % (seq, hexlify(bytes(payload[0:n])).decode()))


def journalling(link_class):
    """A subclass of the real link whose every executed command is journalled first."""

    class JournalLink(link_class):
        def __init__(self, core, stream, journal):
            self.journal = journal
            link_class.__init__(self, core, stream)

        def _execute(self, seq: int, p, n: int) -> None:
            self.journal.command(seq, p, n)
            link_class._execute(self, seq, p, n)

    return JournalLink


class FdStream:
    """The link's stream on an O_NONBLOCK file descriptor, for CPython (which has os.read)."""

    def __init__(self, fd: int):
        import os

        self._read = getattr(os, "read")  # noqa: B009 (not in MicroPython's os stubs)
        self._write = getattr(os, "write")  # noqa: B009
        self._fd = fd

    def read_into(self, buf) -> int:
        try:
            data = self._read(self._fd, len(buf))
        except OSError:  # BlockingIOError: nothing there; EIO: nobody on the other side
            return 0
        n = len(data)
        buf[0:n] = data
        return n

    def write(self, buf, off: int, n: int) -> int:
        try:
            return self._write(self._fd, memoryview(buf)[off : off + n])
        except OSError:  # BlockingIOError: the pty's buffer is full
            return 0


def make_realtime(args) -> RealtimeBoard:
    """main.py --realtime [--seed N] [--config FILE] [--boot-count N] [--reset-cause C]
    [--run-s S (0: until SIGINT)] [--print-every-s T] [--journal FILE]"""
    opts = {
        "seed": 1.0,
        "boot_count": 1.0,
        "reset_cause": float(RESET_POWER_ON),
        "run_s": 0.0,
        "print_every_s": 0.0,
    }
    config_path = CONFIG_PATH
    journal_path = ""
    i = 0
    while i < len(args):
        key = args[i].lstrip("-").replace("-", "_")
        if key == "realtime":
            i += 1
            continue
        if i + 1 >= len(args):
            raise ValueError("%s needs a value" % args[i])
        if key == "config":
            config_path = args[i + 1]
        elif key == "journal":
            journal_path = args[i + 1]
        elif key in opts:
            opts[key] = float(args[i + 1])
        else:
            raise ValueError("unknown option %s" % args[i])
        i += 2
    return RealtimeBoard(
        read_config(config_path),
        int(opts["seed"]),
        opts["run_s"],
        int(opts["boot_count"]),
        int(opts["reset_cause"]),
        opts["print_every_s"],
        journal_path,
    )
