"""Virtual-time speed of the virtual board under MicroPython (firmware + plant)."""

from __future__ import annotations

import json
import time
from typing import Any

from isopress import micropython_port
from isopress.paths import firmware_root

SIM_S = 600.0  # a 10-minute recipe


def run() -> list[dict[str, Any]]:
    started = time.perf_counter()
    proc = micropython_port.run(
        firmware_root() / "main.py",
        ["--sim-s", str(SIM_S)],
        path=micropython_port.firmware_search_path("sim"),
        heap_bytes=micropython_port.RP2040_HEAP_BYTES,
    )
    wall_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode())
    summary = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return [
        {
            "metric": "virtual board: 10 min of press time under MicroPython (wall)",
            "value": round(wall_s, 2),
            "unit": "s",
            "target": "<= 6 s",
        },
        {
            "metric": "virtual board speed (virtual / wall time)",
            "value": round(summary["sim_s"] / wall_s, 1),
            "unit": "x",
            "target": ">= 100x",
        },
    ]
