"""Where the scenario library is, and its names; the keys a HIL report must have."""

from __future__ import annotations

from pathlib import Path

SCENARIOS = Path(__file__).parent / "scenarios"
LIBRARY = sorted(p.stem for p in SCENARIOS.glob("*.toml"))

# The metrics the issue names: every report (compute_metrics' JSON, `isopress hil run`'s
# stdout) has each of them. tests/hil_parts imports this as hil_tests._library.
REPORT_KEYS = (
    "final_state",
    "faults",
    "peak_mpa",
    "overshoot_mpa",
    "hold_error_rms_mpa",
    "hold_error_max_mpa",
    "ramp_rate_error_pct",
    "max_depressurization_rate_mpa_s",
    "trip_latency_ms",
    "loop_overruns",
    "sim_s",
    "wall_s",
)
