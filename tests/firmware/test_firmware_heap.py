"""The firmware runs a 20-segment recipe with a full history ring in an RP2040-sized heap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isopress import micropython_port
from isopress.paths import firmware_root


def _twenty_segments() -> list[list[float]]:
    segments: list[list[float]] = []
    for i in range(10):
        segments.append([1, 10.0 * (i + 1), 2.0, 0.0])  # ramp up 10 MPa at 2 MPa/s
        segments.append([2, 0.0, 0.0, 1.0])  # hold 1 s
    segments[-2] = [1, 0.0, 1.0, 0.0]  # the last ramp comes down from 90 MPa at 1 MPa/s
    return segments


@pytest.mark.micropython
@pytest.mark.slow
def test_twenty_segment_recipe_with_a_full_history_ring_in_180_kb(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([[0, "load", _twenty_segments()], [100, "start", None]]))
    proc = micropython_port.run(
        firmware_root() / "main.py",
        ["--sim-s", "160", "--script", str(script)],
        path=micropython_port.firmware_search_path("sim"),
        heap_bytes=micropython_port.RP2040_HEAP_BYTES,
        timeout_s=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert summary["faults"] == 0
    assert summary["state_name"] == "complete"  # all 20 segments ran
    assert summary["samples"] > 2 * 1024  # the 1024-sample ring filled and wrapped
    assert summary["heap_used"] + summary["heap_free"] <= micropython_port.RP2040_HEAP_BYTES
    assert summary["heap_free"] > 16 * 1024  # room left for the serial link
