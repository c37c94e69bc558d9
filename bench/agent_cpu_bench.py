"""The agent's CPU at 100 Hz: ``isopress agent`` against the real-time virtual board, over ~30 s.

The whole service as a lab runs it: the virtual board (the firmware under the MicroPython
unix port, its link on a pty), ``isopress agent`` (a subprocess: serial link, session,
spool, batching, MQTT) and a real Mosquitto, with a subscriber in this process that checks
every sequence number arrives. After a warm-up, the agent's CPU time is read from
``/proc/<pid>/stat`` (utime + stime, the kernel's own accounting of that process) at the
start and end of the window: CPU time, unlike wall time, barely moves with the machine's
load, but the load average is reported alongside since a busy machine still adds cache
misses and context switches.

``python -m bench.agent_cpu_bench`` prints the rows; ``--profile FILE`` runs the agent
under cProfile and writes its stats to FILE (for ``python -m pstats``), which costs the
agent CPU, so the figure is then not the real one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt

from bench.session_bench import agent_config_file
from isopress.broker import Mosquitto
from isopress.virtual_board import VirtualBoard

WINDOW_S = 30.0
WARMUP_S = 5.0
PRESS_ID = "bench-cpu"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (``/proc/<pid>/stat`` fields 14 and 15)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def _measure(broker: Mosquitto, pid: int, window_s: float) -> dict[str, Any]:
    seqs: list[int] = []
    latencies_ms: list[float] = []
    batches = 0
    async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as sub:
        await sub.subscribe(f"isopress/{PRESS_ID}/telemetry", qos=1)
        warm_until = time.monotonic() + WARMUP_S
        cpu0 = wall0 = 0.0
        load0 = ""
        async with asyncio.timeout(WARMUP_S + window_s + 30):
            async for message in sub.messages:
                now = datetime.now(UTC)
                if time.monotonic() < warm_until:
                    continue
                if not wall0:
                    cpu0, wall0, load0 = cpu_seconds(pid), time.monotonic(), load_average()
                    continue
                assert isinstance(message.payload, bytes)
                batches += 1
                for s in json.loads(message.payload)["samples"]:
                    seqs.append(s["seq"])
                    if not s["historical"]:
                        latencies_ms.append(
                            (now - datetime.fromisoformat(s["wall_time"])).total_seconds() * 1e3
                        )
                if time.monotonic() - wall0 >= window_s:
                    break
        cpu1, wall1, load1 = cpu_seconds(pid), time.monotonic(), load_average()
    elapsed = wall1 - wall0
    seqs.sort()
    latencies_ms.sort()
    return {
        "cpu_pct": 100.0 * (cpu1 - cpu0) / elapsed,
        "elapsed_s": elapsed,
        "samples_per_s": len(seqs) / elapsed,
        "batches_per_s": batches / elapsed,
        "missing": (seqs[-1] - seqs[0] + 1 - len(set(seqs))) if seqs else -1,
        "p50_ms": statistics.median(latencies_ms) if latencies_ms else float("nan"),
        "p99_ms": latencies_ms[int(0.99 * (len(latencies_ms) - 1))] if latencies_ms else float("nan"),
        "load": f"{load0} -> {load1}",
    }


def measure(window_s: float = WINDOW_S, profile: Path | None = None) -> dict[str, Any]:
    """One window of the agent at 100 Hz (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="isopress-cpu-bench-") as tmp:
        folder = Path(tmp)
        with Mosquitto(folder / "broker") as broker, VirtualBoard() as board:
            config = agent_config_file(broker, folder / "agent", board.port, PRESS_ID)
            if profile is None:
                argv = [str(Path(sys.executable).parent / "isopress")]
            else:
                argv = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "isopress.cli"]
            with (folder / "agent.log").open("ab") as log:
                proc = subprocess.Popen(
                    [*argv, "agent", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log
                )
            try:
                result = asyncio.run(_measure(broker, proc.pid, window_s))
            finally:
                proc.terminate()
                proc.wait(30)
            board.check_alive()
    return result


def run() -> list[dict[str, Any]]:
    """The agent's CPU over a ~30 s window at 100 Hz, with what it delivered meanwhile."""
    r = measure()
    return [
        {
            "metric": f"agent process CPU at 100 Hz, {r['elapsed_s']:.0f} s of /proc utime+stime, "
            f"% of one core (virtual board, Mosquitto; load average {r['load']})",
            "value": round(r["cpu_pct"], 2),
            "unit": "%",
            "target": "<= 5",
        },
        {
            "metric": "  meanwhile: samples/s and telemetry batches/s at the subscriber; sequence numbers "
            "missing",
            "value": f"{r['samples_per_s']:.1f}; {r['batches_per_s']:.1f}; {r['missing']}",
            "unit": "",
            "target": "100; >= 10; 0",
        },
        {
            "metric": "  meanwhile: board-to-subscriber latency p50 / p99",
            "value": f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}",
            "unit": "ms",
            "target": "<= 20 / <= 100",
        },
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=WINDOW_S, help="seconds measured")
    parser.add_argument("--profile", type=Path, help="run the agent under cProfile, stats to this file")
    args = parser.parse_args()
    if args.profile is None and args.window == WINDOW_S:
        for row in run():
            print(f"{row['metric']}: {row['value']} {row['unit']} (target {row['target']})")
    else:
        print(measure(args.window, args.profile.resolve() if args.profile else None))
