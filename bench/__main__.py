"""Run the benchmarks and write bench/results.json, bench/results.md and README's table.

Benchmarks measure; they do not pass or fail. Each result names its target, so a reader
sees at once which numbers are met, and where a baseline was measured in the same run,
the baseline and the ratio. ``BENCH=name1,name2`` (``make bench BENCH=fleet``) runs only
those modules; the other modules' rows are kept from the previous results.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import (
    agent_cpu_bench,
    control_step,
    fleet_bench,
    hil_bench,
    link_bench,
    protocol_bench,
    session_bench,
    sim_models_speed,
    spool_bench,
    virtual_board_speed,
)
from bench.report import BenchSelectionError, load_line, machine, merge, select, short_name, table, with_table

BENCH_DIR = Path(__file__).resolve().parent
README = BENCH_DIR.parent / "README.md"


def main() -> int:
    modules = (
        virtual_board_speed,
        sim_models_speed,
        protocol_bench,
        control_step,
        link_bench,
        spool_bench,
        session_bench,
        agent_cpu_bench,
        hil_bench,
        fleet_bench,
    )
    try:
        chosen = select(modules, os.environ.get("BENCH"))
    except BenchSelectionError as exc:
        print(exc, file=sys.stderr)
        return 2
    run_line = load_line() + " at the start"
    results: list[dict[str, Any]] = []
    failed = []
    for module in chosen:
        started = time.monotonic()
        print(f"running {module.__name__} ...", flush=True)
        try:
            rows = module.run()
        except Exception as exc:  # one broken benchmark must not cost the others' figures
            traceback.print_exc()
            failed.append(short_name(module))
            rows = [
                {"metric": f"{short_name(module)} FAILED", "value": repr(exc)[:200], "unit": "", "target": ""}
            ]
        results.extend({**row, "module": short_name(module)} for row in rows)
        print(f"  done in {time.monotonic() - started:.1f} s", flush=True)
    ran = [short_name(m) for m in chosen]
    if len(chosen) < len(modules):
        run_line += f"; this run: {', '.join(ran)} (other rows from earlier runs)"
        previous_path = BENCH_DIR / "results.json"
        previous = json.loads(previous_path.read_text()).get("results", []) if previous_path.exists() else []
        results = merge(previous, results, ran, [short_name(m) for m in modules])
    report = {"machine": machine(), "run": run_line, "results": results}
    (BENCH_DIR / "results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    markdown = table(report)
    (BENCH_DIR / "results.md").write_text(markdown)
    README.write_text(with_table(README.read_text(), markdown))
    print(markdown)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
