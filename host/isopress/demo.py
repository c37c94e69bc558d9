"""``isopress demo``: the press's main job on embedded defaults.

Foundation version: the firmware runs under the real MicroPython unix port on the
virtual board (RP2040-sized heap) and presses a sample through a 250 MPa cycle in
virtual time while the pressure trace is printed.
"""

from __future__ import annotations

import sys
import time

from . import micropython_port
from .paths import firmware_root

__all__ = ["run_demo"]


def run_demo(sim_s: float = 560.0, print_every_s: float = 20.0) -> int:
    """Run the demo; returns the process exit code."""
    main_py = firmware_root() / "main.py"
    print(
        "isopress demo: firmware under MicroPython on the virtual board "
        f"({micropython_port.RP2040_HEAP_BYTES // 1024} KB heap, like an RP2040)\n"
        "recipe: ramp to 250 MPa at 1 MPa/s, hold 30 s, ramp down at 1 MPa/s\n",
        flush=True,
    )
    started = time.monotonic()
    proc = micropython_port.popen(
        main_py,
        ["--sim-s", str(sim_s), "--print-every-s", str(print_every_s)],
        path=micropython_port.firmware_search_path("sim"),
        heap_bytes=micropython_port.RP2040_HEAP_BYTES,
        stdin=None,
        stderr=None,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line.decode(errors="replace"))
        sys.stdout.flush()
    rc = proc.wait()
    wall_s = time.monotonic() - started
    print(f"\n{sim_s:.0f} s of press time simulated in {wall_s:.1f} s ({sim_s / wall_s:.0f}x real time)")
    return rc
