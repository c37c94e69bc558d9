"""The board's serial link (isofw.link), under the real MicroPython unix port from the
built sim bundle (.mpy, as flashed):

- link.service() time per tick while a run streams 100 samples a second, with host
  heartbeats, a command now and then and a backfill reply going out (median, p99, max);
- heap the link adds to the booted firmware: its modules and its buffers (a difference of
  gc.mem_alloc(), whatever the heap's size);
- the virtual board in real time on a pty for 60 s with a recipe running and a host
  reading (isopress.virtual_board): missed ticks, loop time, lateness.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.control_step import _load_average, _run_mp
from isopress.firmware_build import build_bundle
from isopress.paths import repo_root

_SERVICE_SCRIPT = r"""
import gc, json, time
from array import array
from board import SimBoard, read_config
from isofw.app import boot
from isofw.core import Inputs
from isofw.recipe import hold, ramp

board = SimBoard(read_config(), 3600.0, 1, 0.0, False)
core = boot(board)
gc.collect()
before = gc.mem_alloc()
from isofw.link import Link


class Stream:
    # the host's side: what it sends waits in a bytearray; what the board sends is counted
    def __init__(self):
        self.inbox = bytearray(512)
        self.n = 0
        self.pos = 0
        self.out = 0

    def feed(self, frame):
        for i in range(len(frame)):
            self.inbox[i] = frame[i]
        self.n = len(frame)
        self.pos = 0

    def read_into(self, buf):
        k = self.n - self.pos
        if k > len(buf):
            k = len(buf)
        for i in range(k):
            buf[i] = self.inbox[self.pos + i]
        self.pos += k
        return k

    def write(self, buf, off, n):
        self.out += n
        return n


stream = Stream()
link = Link(core, stream)
gc.collect()
link_bytes = gc.mem_alloc() - before
# the host's frames, built once with the same framing (the codec is host-side here)
from isoproto import framing
import struct


def frame(payload):
    buf = bytearray(len(payload) + 2)
    buf[0 : len(payload)] = payload
    out = bytearray(254)
    return bytes(out[: framing.frame_into(out, 0, buf, len(payload))])


hello = frame(struct.pack("<BBBHH", 0x10, 1, 0, 7, 0))
beat = frame(struct.pack("<BI", 0x13, 0))
seq = 0
inputs = Inputs()
board.arm_overpressure_trip(core.trip_counts)
board.start_clock(10)
cycle = [ramp(250.0, 1.0), hold(300.0), ramp(0.0, 0.5)]
hist = array("I", bytes(4 * 256))  # 4 us bins (the heap is an RP2040's: no room for more)
max_us = 0
n = 0
now = 0
stream.feed(hello)
for tick in range(TICKS):
    board.read_inputs(inputs)
    core.step(now, inputs)
    if tick == 1:
        core.load_recipe(cycle)
    if tick == 5:
        core.start(core.recipe.recipe_id)
    board.write_outputs(core.pump_duty, core.vent_duty, core.dump_closed)
    if tick % 20 == 0 and tick:
        stream.feed(beat)
    if tick % 500 == 250:  # a backfill request: two chunks of 8 samples
        seq = (seq + 1) & 0xFFFF
        stream.feed(frame(struct.pack("<BHBIH", 0x48, seq - 1, 0, core.sample_seq - 100, 16)))
    if tick % 1000 == 600:  # a command
        seq = (seq + 1) & 0xFFFF
        stream.feed(frame(struct.pack("<BH", 0x45, seq - 1)))
    gc.collect()  # collections are the loop's, not the link's: keep them out of the figure
    t0 = time.ticks_us()
    link.service(now)
    us = time.ticks_diff(time.ticks_us(), t0)
    hist[us // 4 if us < 1020 else 255] += 1
    if us > max_us:
        max_us = us
    n += 1
    board.wait_next_tick()
    now += 10


def quantile(q):
    want = (n * q) // 100
    seen = 0
    for i in range(len(hist)):
        seen += hist[i]
        if seen > want:
            return 4 * (i + 1)
    return 4 * len(hist)


c = link.counters()
print(json.dumps({"n": n, "median_us": quantile(50), "p99_us": quantile(99), "max_us": max_us,
                  "link_bytes": link_bytes, "samples_sent": c["samples_sent"],
                  "history_chunks": c["history_chunks"], "commands": c["commands_executed"],
                  "state": core.state, "faults": core.faults}))
"""

REALTIME_S = 60.0
# The service-time script holds the sim board with the full transducer model, the link, the
# host side's framing and the bench's own frames and histogram: 4 KB short of an RP2040's
# 180 KB after the loop. The real-time board (the last rows) runs in the 180 KB, with the
# small transducer, as a board would.
SERVICE_HEAP_BYTES = 256 * 1024


def service_time(ticks: int = 30000) -> dict[str, Any]:
    """link.service() per tick (µs) and the heap the link adds (bytes)."""
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        build_bundle("sim", bundle)
        path = Path(tmp) / "bench.py"
        path.write_text(_SERVICE_SCRIPT.replace("TICKS", str(ticks)))
        out, err, rc = _run_mp(path, [], [bundle], 900, heap_bytes=SERVICE_HEAP_BYTES)
    if rc != 0:
        raise RuntimeError((out + err).decode())
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def realtime_minute() -> dict[str, Any]:
    """60 s of the real-time virtual board with a recipe running and a host reading."""
    sys.path.insert(0, str(repo_root() / "tests" / "virtual_board"))
    from vboard_host import SerialHost

    from isopress.virtual_board import VirtualBoard
    from isoproto.ids import LOAD_RECIPE_CHUNK, START
    from isoproto.recipe import recipe_chunks, recipe_id

    recipe = [(1, 250.0, 1.0, 0.0), (2, 0.0, 0.0, 300.0), (1, 0.0, 0.5, 0.0)]
    with VirtualBoard() as vb:
        host = SerialHost(vb.port)
        try:
            host.handshake(nonce=1)
            for chunk in recipe_chunks(recipe):
                host.command(LOAD_RECIPE_CHUNK, *chunk)
            host.command(START, recipe_id(recipe))
            started = time.monotonic()
            host.pump(REALTIME_S)
            wall_s = time.monotonic() - started
        finally:
            host.close()
        summary = vb.stop()
    if summary is None:
        raise RuntimeError("the virtual board gave no summary:\n" + vb.log_text())
    summary["wall_s"] = wall_s
    summary["received"] = len(host.messages)
    return summary


def run() -> list[dict[str, Any]]:
    svc = service_time()
    load_before = _load_average()
    rt = realtime_minute()
    load = max(load_before, _load_average())
    return [
        {
            "metric": "link.service() per tick, MicroPython unix port: median / p99 / max",
            "value": f"{svc['median_us']} / {svc['p99_us']} / {svc['max_us']}",
            "unit": "µs",
            "target": "report (100 samples/s out, heartbeats, commands, backfill; x64)",
        },
        {
            "metric": "heap the link adds to the booted firmware (modules + buffers)",
            "value": svc["link_bytes"],
            "unit": "bytes",
            "target": "report (x64 unix port, .mpy bundle)",
        },
        {
            "metric": f"real-time virtual board on a pty, {int(REALTIME_S)} s with a recipe: missed ticks",
            "value": rt["loop_overruns"],
            "unit": "",
            "target": f"0 (machine load average {load:.1f} on 2 cores)",
        },
        {
            "metric": "real-time virtual board: loop per tick mean / p99 / max; latest tick start",
            "value": f"{rt['loop_us_mean']} / {rt['loop_us_p99']} / {rt['loop_us_max']}; {rt['late_us_max']}",
            "unit": "µs",
            "target": "< 10 000 (the period)",
        },
        {
            "metric": "real-time virtual board: smallest free heap after the loop's collections",
            "value": rt["heap_free_min"],
            "unit": "bytes",
            "target": "report (180 KB heap, link attached)",
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
