"""Run every benchmark and write bench/results.json and bench/results.md.

Benchmarks measure; they do not pass or fail. Each result names its target, so a reader
sees at once which numbers are met.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from bench import (
    agent_cpu_bench,
    control_step,
    link_bench,
    protocol_bench,
    session_bench,
    sim_models_speed,
    spool_bench,
    virtual_board_speed,
)

BENCH_DIR = Path(__file__).resolve().parent


def _machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.machine()}"
    return f"{system}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main() -> int:
    results: list[dict[str, Any]] = []
    modules = (
        virtual_board_speed,
        sim_models_speed,
        protocol_bench,
        control_step,
        link_bench,
        spool_bench,
        session_bench,
        agent_cpu_bench,
    )
    for module in modules:
        started = time.monotonic()
        print(f"running {module.__name__} ...", flush=True)
        results.extend(module.run())
        print(f"  done in {time.monotonic() - started:.1f} s", flush=True)
    machine = _machine()
    report = {"machine": machine, "results": results}
    (BENCH_DIR / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"Machine: {machine}", "", "| metric | value | target |", "|---|---|---|"]
    for r in results:
        lines.append(f"| {r['metric']} | {r['value']} {r.get('unit', '')} | {r.get('target', '')} |")
    (BENCH_DIR / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
