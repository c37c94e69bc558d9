# The virtual board's stand-in host and the helpers of virtual-time runs: the scripted
# host (commands and world events at given virtual times), the demo's script, a config
# with overrides, simulate(). Kept apart from board.py so the real-time board (realtime.py,
# the real serial link on a pty), which must fit an RP2040-sized heap, never loads them.

import json

from board import CONFIG_PATH, SimBoard, read_config
from isofw.recipe import hold, ramp


class ScriptedHost:
    """Stands in for the host and the outside world until the serial link exists.

    script: list of (t_ms, verb, arg), in time order. Verbs: load (segments), start,
    pause, resume, abort, reset, profile (8-tuple), host (present: heartbeats every
    heartbeat_ms), estop (pressed), closure (locked), glovebox (ok), pump_stuck (on),
    transducer / transducer2 (a transducer.FAULT_KINDS kind or (kind, value[, rate_hz]);
    "stuck" alone sticks where it is; ("spike_once", MPa) is one spike on the next
    sample), leak (ml/s per MPa),
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
            if isinstance(arg, str):
                arg = (arg, -1.0 if arg == "stuck" else 0.0)
            target = board.transducer if verb == "transducer" else board.transducer2
            if arg[0] == "spike_once":
                target.spike_once(arg[1])
            else:
                target.set_fault(*arg)
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


class DemoBoard(SimBoard):
    """main.py's virtual-time board (the demo, the boot gate): the real-time board's small
    transducer, so that the firmware still boots from source in an RP2040-sized heap.
    Scenario runs and simulate() use the full transducer model."""

    def make_transducer(self, overrides=None, which=1):  # type: ignore[override]
        from realtime import LineTransducer

        return LineTransducer(self.calibration, 3 * self.seed + which)


def make_virtual(args) -> SimBoard:
    """main.py [--sim-s S] [--seed N] [--print-every-s T] [--config FILE] [--script FILE]
    [--maintenance 1]: the virtual-time board with the scripted host."""
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
    board = DemoBoard(read_config(config_path), opts["sim_s"], int(opts["seed"]), opts["print_every_s"])
    board.maintenance = maintenance
    board.script = DEMO_SCRIPT
    if script_path:
        with open(script_path) as f:
            board.script = [tuple(item) for item in json.load(f)]
    return board
