# The main loop's contract with a board (docs/firmware.md, "Board HAL"): what happens in
# a tick and in which order. A recording fake board; CPython and MicroPython.

from isofw import app, config
from isofw.safety import IN_ALL_OK
from isoproto import codes

_REPO = __file__.rsplit("/", 3)[0]


class FakeBoard:
    name = "sim"

    def __init__(self, ticks, log, irq_advances=True, missed=None, counts=12000.0, tripped_at=-1):
        self.ticks = ticks
        self.log = log
        self.irq_advances = irq_advances
        self.missed = missed or {}
        self.counts = counts
        self.tripped_at = tripped_at
        self.tripped = False
        self.keep_running = True
        self.tick = 0
        self.irq = 0
        self.armed = []
        self.outputs = []

    def read_config_text(self):
        with open(_REPO + "/firmware/boards/sim/config.json") as f:
            return f.read()

    def configure(self, config):
        self.log.append("configure")

    def reset_cause(self):
        return codes.RESET_WATCHDOG

    def boot_count(self):
        return 7

    def start_clock(self, period_ms):
        self.log.append("start_clock %d" % period_ms)

    def arm_overpressure_trip(self, counts):
        self.armed.append(counts)
        self.log.append("arm")

    def clear_overpressure_trip(self):
        self.tripped = False
        self.log.append("clear_trip")

    def irq_ticks(self):
        return self.irq

    def read_inputs(self, inputs):
        self.log.append("read")
        if self.tick == self.tripped_at:
            self.tripped = True
        inputs.counts = self.counts
        inputs.counts2 = -1.0
        inputs.bits = IN_ALL_OK
        inputs.hw_tripped = self.tripped

    def write_outputs(self, pump, vent, dump_closed):
        self.outputs.append((pump, vent, dump_closed))
        self.log.append("write")

    def feed_watchdog(self):
        self.log.append("feed")

    def wait_next_tick(self):
        self.log.append("wait")
        if self.irq_advances:
            self.irq += 10
        missed = self.missed.get(self.tick, 0)
        self.tick += 1
        self.keep_running = self.tick < self.ticks
        return missed


class FakeGc:
    def __init__(self, log):
        self.log = log

    def collect(self):
        self.log.append("gc")

    def mem_free(self):
        return 50000


class Link:
    def __init__(self, log, core, commands=None):
        self.log = log
        self.core = core
        self.commands = commands or {}
        self.tick = 0
        self.results = []

    def service(self, now_ms):
        self.log.append("link %d" % now_ms)
        call = self.commands.get(self.tick)
        if call is not None:
            self.results.append(call(self.core))
        self.tick += 1


def _run(ticks, commands=None, **board_kw):
    log = []
    board = FakeBoard(ticks, log, **board_kw)
    real_gc = app.gc
    app.gc = FakeGc(log)
    try:
        core = app.boot(board)
        core.gc_every_ticks = 2
        link = Link(log, core, commands)
        app.run(board, core, link)
    finally:
        app.gc = real_gc
    return board, core, link, log


def test_boot_reports_the_reset_cause_and_boot_count():
    _, core, _, log = _run(1)
    assert log[:2] == ["gc", "configure"]  # the validator's memory is collected at boot
    assert core.events.event(0)[3:5] == (codes.EV_BOOT, codes.RESET_WATCHDOG)
    assert core.hello_info()["reset_cause"] == codes.RESET_WATCHDOG
    assert core.hello_info()["boot_count"] == 7


def test_a_tick_measures_acts_then_does_the_slow_work():
    _, _, _, log = _run(4)
    ticks = "|".join(log).split("wait")
    # The first tick: no feed yet (the interrupt has not ticked), no collection.
    assert ticks[0].endswith("start_clock 10|read|write|link 0|")
    assert ticks[1] == "|read|write|link 10|feed|gc|"  # every 2nd tick: after the outputs
    assert ticks[2] == "|read|write|link 20|feed|"
    for tick in ticks[:-1]:
        parts = tick.strip("|").split("|")
        # Nothing, and certainly no collection, between measuring and actuating.
        assert parts[parts.index("read") + 1] == "write"


def test_watchdog_is_not_fed_when_the_interrupt_stops():
    _, _, _, log = _run(5, irq_advances=False)
    assert "feed" not in log


def test_overruns_are_counted_reported_and_skip_time():
    board, core, _link, _ = _run(4, missed={1: 2})
    assert core.overruns == 2
    overrun = [e for e in core.events.since(0) if e[3] == codes.EV_LOOP_OVERRUN]
    assert len(overrun) == 1 and overrun[0][5] == 2
    # The link saw the clock jump over the missed ticks: 0, 10, then 40.
    assert [int(x.split()[1]) for x in board.log if x.startswith("link")] == [0, 10, 40, 50]


def test_a_new_profile_rearms_the_hard_trip_before_the_next_tick():
    profile = (300.0, 320.0, 2.0, 1.0, 600.0, 10.0, 10000, 1)
    board, core, link, log = _run(3, {0: lambda core: core.set_device_profile(*profile)})
    assert link.results[0][0] == codes.RESULT_OK
    assert len(board.armed) == 2 and board.armed[1] < board.armed[0]
    assert board.armed[1] == core.trip_counts
    assert log.index("arm", log.index("link 0")) < log.index("read", log.index("link 0"))


def test_a_reset_after_a_hard_trip_clears_the_board_latch():
    board, core, link, log = _run(4, {2: lambda core: core.reset_faults()}, tripped_at=0)
    assert link.results[0][0] == codes.RESULT_OK
    assert "clear_trip" in log and not board.tripped
    assert core.state == codes.ST_IDLE


def test_outputs_are_safe_from_the_first_tick_and_without_a_run():
    board, _, _, _ = _run(5)
    assert board.outputs == [(0, 0, False)] * 5


def test_the_validator_is_unloaded_after_boot():
    import sys

    _run(1)
    assert "isofw.config" not in sys.modules
    sys.modules["isofw.config"] = config  # the other tests of this process still use it
