"""Cost of the plant and transducer models per virtual millisecond under MicroPython.

The virtual board steps the plant and samples the transducer once per virtual ms (its
emulated 1 kHz interrupt). For the whole board to run at >= 100x real time, all of a
virtual ms (models, interrupt, 1/10 of a 100 Hz control tick) must fit in 10 us of wall
time, so the models get a few us. Measured on a 600 s nominal profile with the control
outputs changing every 10 ms, in an RP2040-sized heap like the virtual board's.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from isopress import micropython_port

VIRTUAL_S = 600

_SCRIPT = """
import json, time
from plant import Plant
from transducer import Transducer

N_MS = %d

def profile_duty(tick):
    # A ramp, a hold and a ramp down, with the duty wobbling like a PI output.
    wobble = (tick %% 7) * 0.01
    if tick < 25000:
        return 0.55 + wobble, 0.0
    if tick < 45000:
        return 0.05 + wobble, 0.0
    return 0.0, 0.05 + wobble

def run(models):
    plant = Plant(None, 1)
    sensor = Transducer(None, 2)
    total = 0
    t0 = time.ticks_us()
    for tick in range(N_MS // 10):
        pump, vent = profile_duty(tick)
        for _ in range(10):
            if models:
                plant.step(0.001, pump, vent, False)
                sensor.advance(0.001)
                total += sensor.read_u16(plant.pressure_mpa)
            else:
                total += 1
    return time.ticks_diff(time.ticks_us(), t0), plant.pressure_mpa

loop_us, _ = run(False)
models_us, p = run(True)
print(json.dumps({"loop_us": loop_us, "models_us": models_us, "n_ms": N_MS, "final_mpa": p}))
"""


def run() -> list[dict[str, Any]]:
    """Benchmark rows (see bench/__main__.py)."""
    n_ms = VIRTUAL_S * 1000
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "sim_models_speed.py"
        script.write_text(_SCRIPT % n_ms)
        proc = micropython_port.run(
            script,
            path=micropython_port.firmware_search_path("sim"),
            heap_bytes=micropython_port.RP2040_HEAP_BYTES,
        )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode())
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    per_ms_us = (result["models_us"] - result["loop_us"]) / result["n_ms"]
    models_s = (result["models_us"] - result["loop_us"]) / 1e6
    return [
        {
            "metric": "sim models: plant step + transducer sample per virtual ms (MicroPython)",
            "value": round(per_ms_us, 2),
            "unit": "us",
            "target": "<= 3 us (a few us of the 10 us a virtual ms may take at 100x)",
        },
        {
            "metric": f"sim models alone: {VIRTUAL_S} s of press time (MicroPython, wall)",
            "value": round(models_s, 2),
            "unit": "s",
            "target": "well under the 6 s the whole board may take",
        },
    ]
