"""The benchmark report: which modules run, results.json, results.md and README's table.

A result row is ``{metric, value, unit, target}``; a row may add ``baseline`` (the same
measurement of a baseline taken in the same run), ``baseline_label`` (what the baseline
is) and ``ratio`` (value / baseline, or however the row says). Other keys (e.g. a fleet
search's trials) go into results.json only. ``module`` is set by ``bench/__main__.py``.
"""

from __future__ import annotations

import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


class BenchSelectionError(ValueError):
    """BENCH names a benchmark that does not exist."""


def short_name(module: ModuleType) -> str:
    return module.__name__.rsplit(".", 1)[-1]


def select(modules: tuple[ModuleType, ...], wanted: str | None) -> tuple[ModuleType, ...]:
    """The modules ``BENCH=name1,name2`` names (all when empty), in the list's order.

    A name is a module's name (``fleet_bench``) or a prefix of exactly one (``fleet``).
    """
    names = [n.strip() for n in (wanted or "").split(",") if n.strip()]
    if not names:
        return modules
    chosen: set[str] = set()
    available = [short_name(m) for m in modules]
    for name in names:
        hits = [a for a in available if a == name] or [a for a in available if a.startswith(name)]
        if len(hits) != 1:
            why = "matches no benchmark" if not hits else f"matches several ({', '.join(hits)})"
            raise BenchSelectionError(f"BENCH: {name!r} {why}; the benchmarks: {', '.join(available)}")
        chosen.add(hits[0])
    return tuple(m for m in modules if short_name(m) in chosen)


def machine() -> str:
    """The machine line: system, cores, CPU model, Python."""
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


def load_line() -> str:
    """When, and how loaded the machine was (other users share it)."""
    one, five, fifteen = os.getloadavg()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{stamp}, load average {one:.2f} {five:.2f} {fifteen:.2f}"


def merge(
    previous: list[dict[str, Any]], fresh: list[dict[str, Any]], ran: list[str], order: list[str]
) -> list[dict[str, Any]]:
    """Rows of the modules that ran replace theirs; the others' rows are kept; in list order."""
    kept = [r for r in previous if r.get("module") in order and r.get("module") not in ran]
    rows = kept + fresh
    return sorted(rows, key=lambda r: order.index(r["module"]))  # stable: a module's rows keep their order


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _baseline_cell(row: dict[str, Any]) -> str:
    if "baseline" not in row:
        return ""
    unit = f" {row['unit']}" if row.get("unit") else ""
    label = f"{row['baseline_label']}: " if row.get("baseline_label") else ""
    ratio = f" ({row['ratio']}x)" if row.get("ratio") is not None else ""
    return f"{label}{row['baseline']}{unit}{ratio}"


def table(report: dict[str, Any]) -> str:
    """The markdown table (with the machine lines) of results.md and README."""
    lines = [
        f"Machine: {report['machine']}",
        "",
        f"Run: {report['run']}",
        "",
        "| metric | value | target | baseline (ratio) |",
        "|---|---|---|---|",
    ]
    for r in report["results"]:
        unit = f" {r['unit']}" if r.get("unit") else ""
        lines.append(
            f"| {_cell(r['metric'])} | {_cell(r['value'])}{_cell(unit)} | {_cell(r.get('target', ''))} "
            f"| {_cell(_baseline_cell(r))} |"
        )
    return "\n".join(lines) + "\n"


_BLOCK = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.DOTALL)


def readme_table(readme: str) -> str | None:
    """What README shows between the markers (None: no markers)."""
    found = _BLOCK.search(readme)
    if found is None:
        return None
    return found.group(0)[len(README_START) : -len(README_END)].strip("\n") + "\n"


def with_table(readme: str, markdown: str) -> str:
    """README with the table between the markers replaced (unchanged without markers)."""
    return _BLOCK.sub(lambda _: f"{README_START}\n{markdown}{README_END}", readme, count=1)
