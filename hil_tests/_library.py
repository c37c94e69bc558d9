"""Where the scenario library is, and its names."""

from __future__ import annotations

from pathlib import Path

SCENARIOS = Path(__file__).parent / "scenarios"
LIBRARY = sorted(p.stem for p in SCENARIOS.glob("*.toml"))
