"""Firmware v1 numbers, all under the real MicroPython unix port with the RP2040 heap.

- one control step (the core's step(): sensing, every main-loop safety check, state
  machine, controller, telemetry record): median, p99 and max microseconds, and heap
  bytes allocated per step (gc.mem_alloc() delta with the collector off);
- hard over-pressure trip latency on the virtual board: from the transducer signal
  crossing the trip to the outputs safe, the emulated 1 kHz interrupt alone (noise-free,
  so the mechanism is measured, not the noise), over many crossing phases and rise rates;
- loop overruns in 1 h of virtual time at 100 Hz (the loop's own execution time measured
  with ticks_us on this machine, GC included), with a 250 MPa recipe running for the hour.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from isopress import micropython_port
from isopress.firmware_build import build_bundle

_STEP_SCRIPT = r"""
import gc, json, time
from array import array
from board import read_config
from simhost import DemoBoard, ScriptedHost
from isofw.app import boot
from isofw.core import Inputs
from isofw.recipe import hold, ramp

# Histograms, not lists: 60 000 samples would not fit the RP2040-sized heap. Made first,
# while the heap is empty: later, boot's garbage leaves no 8 KB in one piece.
time_hist = array("I", bytes(4 * 2048))  # 1 us bins
alloc_hist = array("I", bytes(4 * 1024))  # 16-byte bins
gc.collect()
# The demo board: the real-time board's small transducer, what fits the RP2040 heap beside
# these histograms (the sim board's full transducer model does not).
board = DemoBoard(read_config(), 3600.0, 1, 0.0, False)
core = boot(board)
cycle = [ramp(250.0, 1.0), hold(300.0), ramp(0.0, 0.5)]
host = ScriptedHost(board, core, [(0, "load", cycle), (100, "start", None)])
inputs = Inputs()
board.arm_overpressure_trip(core.trip_counts)
board.start_clock(10)
max_us = 0
max_alloc = 0
n = 0
now = 0
for tick in range(TICKS):
    board.read_inputs(inputs)
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    t0 = time.ticks_us()
    core.step(now, inputs)
    t1 = time.ticks_us()
    a1 = gc.mem_alloc()
    gc.enable()
    board.write_outputs(core.pump_duty, core.vent_duty, core.dump_closed)
    host.service(now)
    us = time.ticks_diff(t1, t0)
    alloc = a1 - a0
    time_hist[us if us < 2047 else 2047] += 1
    alloc_hist[alloc // 16 if alloc < 16 * 1023 else 1023] += 1
    max_us = max(max_us, us)
    max_alloc = max(max_alloc, alloc)
    n += 1
    board.wait_next_tick()
    now += 10


def quantile(hist, q, width):
    want = (n * q) // 100
    seen = 0
    for i in range(len(hist)):
        seen += hist[i]
        if seen > want:
            return i * width
    return (len(hist) - 1) * width


result = {"n": n, "state": core.state, "faults": core.faults, "samples": core.sample_seq + 1}
result["median_us"] = quantile(time_hist, 50, 1)
result["p99_us"] = quantile(time_hist, 99, 1)
result["max_us"] = max_us
result["alloc_median"] = quantile(alloc_hist, 50, 16)
result["alloc_max"] = max_alloc
print(json.dumps(result))
"""

_TRIP_SCRIPT = r"""
import json
from board import SimBoard, read_config

latencies = []
for case in range(CASES):
    board = SimBoard(read_config(), 10.0, case + 1, 0.0, False)
    board.transducer = board.make_transducer({"noise_pct_fs": 0.0})
    board.vessel.set_param("volume_ml", (2.0, 5.0, 20.0, 100.0)[case % 4])  # ~100 to ~2 MPa/s at the trip
    board.vessel.set_pressure(419.0 + 0.37 * (case % 7) / 7.0)  # different crossing phases
    board.arm_overpressure_trip(board.calibration.mpa_to_counts(420.0))
    board.write_outputs(65535, 0, True)
    board.pump_stuck_on = True
    for _ in range(20000):
        board.advance_1ms()
        if board.overpressure_tripped():
            break
    latencies.append(board.trip_safe_us - board.trip_cross_us)
latencies.sort()
n = len(latencies)
print(json.dumps({"n": n, "max_us": latencies[-1], "median_us": latencies[n // 2], "min_us": latencies[0]}))
"""

HOUR_S = 3600.0


def _load_average() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


def _run_mp(
    script: Path,
    args: list[str],
    path: list[Path],
    timeout_s: float,
    heap_bytes: int = micropython_port.RP2040_HEAP_BYTES,
) -> tuple[bytes, bytes, int]:
    argv = [
        str(micropython_port.micropython_executable()),
        "-X",
        f"heapsize={heap_bytes}",
        str(script),
        *args,
    ]
    env = {**os.environ, "MICROPYPATH": os.pathsep.join(str(p) for p in path)}
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=timeout_s, check=False)
    return proc.stdout, proc.stderr, proc.returncode


def _mp(script: str, timeout_s: float = 900.0) -> dict[str, Any]:
    # The built sim bundle (.mpy, as flashed), so the numbers are the firmware's and
    # not the compiler's: a board never compiles its modules from source.
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        build_bundle("sim", bundle)
        path = Path(tmp) / "bench.py"
        path.write_text(script)
        out, err, rc = _run_mp(path, [], [bundle], timeout_s)
    if rc != 0:
        raise RuntimeError((out + err).decode())
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def control_step(ticks: int = 60000) -> dict[str, Any]:
    """Step time and allocation over ticks of a 250 MPa cycle (ramp, hold, ramp down)."""
    return _mp(_STEP_SCRIPT.replace("TICKS", str(ticks)))


def trip_latency(cases: int = 56) -> dict[str, Any]:
    """Hard-trip latency (µs) over crossing phases and rise rates, interrupt alone."""
    return _mp(_TRIP_SCRIPT.replace("CASES", str(cases)))


def hour_of_loop() -> tuple[dict[str, Any], float]:
    """Overruns in an hour of virtual time with a 250 MPa recipe held for most of it."""
    recipe = [[1, 250.0, 1.0, 0.0], [2, 0.0, 0.0, 2700.0], [1, 0.0, 0.5, 0.0]]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        build_bundle("sim", bundle)
        script = Path(tmp) / "script.json"
        script.write_text(json.dumps([[0, "load", recipe], [100, "start", None]]))
        started = time.perf_counter()
        out, err, rc = _run_mp(
            bundle / "main.py", ["--sim-s", str(HOUR_S), "--script", str(script)], [bundle], 1800
        )
        wall_s = time.perf_counter() - started
    if rc != 0:
        raise RuntimeError((out + err).decode())
    summary: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return summary, wall_s


def run() -> list[dict[str, Any]]:
    step = control_step()
    trip = trip_latency()
    load_before = _load_average()
    hour, wall_s = hour_of_loop()
    load = max(load_before, _load_average())
    return [
        {
            "metric": "control step (core + safety checks), MicroPython unix port: median",
            "value": step["median_us"],
            "unit": "µs",
            "target": "report (x64; an RP2040 is roughly 30-50x slower)",
        },
        {
            "metric": "control step, MicroPython unix port: p99 / max",
            "value": f"{step['p99_us']} / {step['max_us']}",
            "unit": "µs",
            "target": "report",
        },
        {
            "metric": "heap allocated per control step: median / max",
            "value": f"{step['alloc_median']} / {step['alloc_max']}",
            "unit": "bytes",
            "target": "report (boxed floats; collected after the outputs)",
        },
        {
            "metric": "hard over-pressure trip latency, signal crossing to outputs safe: max",
            "value": round(trip["max_us"] / 1000.0, 3),
            "unit": "ms",
            "target": "<= 2 ms",
        },
        {
            "metric": "hard over-pressure trip latency: median",
            "value": round(trip["median_us"] / 1000.0, 3),
            "unit": "ms",
            "target": f"report ({trip['n']} crossings, 2-100 MPa/s)",
        },
        {
            "metric": "loop overruns in 1 h of virtual time at 100 Hz (virtual board; wall clock)",
            "value": hour["loop_overruns"],
            "unit": "",
            "target": "0",
        },
        {
            "metric": "main loop execution per tick in that hour: mean / p99 / p99.99 / max",
            "value": "{loop_us_mean} / {loop_us_p99} / {loop_us_p9999} / {loop_us_max}".format(**hour),
            "unit": "µs",
            "target": "< 10 000 (the period)",
        },
        {
            "metric": "ticks over 1 ms in that hour (of 360 000; OS preemption included)",
            "value": hour["loop_ticks_over_1ms"],
            "unit": "",
            "target": f"report (machine load average {load:.1f} on {os.cpu_count()} cores)",
        },
        {
            "metric": "1 h of virtual time on the virtual board (wall)",
            "value": round(wall_s, 1),
            "unit": "s",
            "target": "report",
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
