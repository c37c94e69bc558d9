"""The host agent over the real serial session at 100 Hz.

``isopress agent`` (a subprocess) talks to the virtual board (the firmware under the
MicroPython unix port in real time, its link on a pty: isopress.virtual_board) and to a
real Mosquitto; this process subscribes to the telemetry. Measured over ``LIVE_S`` after a
warm-up, ``ROUNDS`` times (medians: the machine is shared):

- the agent process's CPU (psutil, user + system, % of one core): the serial link, the
  session (decoding, sequence tracking, board clock), spool, batching and MQTT;
- board-to-subscriber latency: the sample's ``wall_time`` (when the board took it, from
  the board-clock offset) to its arrival at the subscriber: the board's TX, the pty, the
  agent and the broker;
- samples per second arriving, and whether any sequence number is missing.

The board's own CPU is not in the agent's figure (another process).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import psutil

from isopress.broker import Mosquitto
from isopress.virtual_board import VirtualBoard

LIVE_S = 10.0
WARMUP_S = 4.0
ROUNDS = 3


def agent_config_file(broker: Mosquitto, folder: Path, port: str, press_id: str = "bench-session") -> Path:
    """An agent config for a benchmark: ``port`` to the board, the broker, a spool and runs in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "agent.toml"
    path.write_text(f"""
[agent]
press_id = "{press_id}"
log_level = "warning"
[serial]
port = "{port}"
[broker]
host = "{broker.host}"
port = {broker.port}
[broker.reconnect]
initial_s = 0.1
max_s = 1.0
[spool]
path = "{folder / "spool.sqlite3"}"
[runs]
folder = "{folder / "runs"}"
""")
    return path


def _start_agent(isopress: str, config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [isopress, "agent", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log
        )


async def _round(broker: Mosquitto, folder: Path, port: str) -> dict[str, Any]:
    config = agent_config_file(broker, folder, port)
    latencies_ms: list[float] = []
    seqs: list[int] = []
    isopress = str(Path(sys.executable).parent / "isopress")
    async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as sub:
        await sub.subscribe("isopress/bench-session/telemetry", qos=1)
        proc = _start_agent(isopress, config, folder / "agent.log")
        agent = psutil.Process(proc.pid)
        try:
            warm_until = time.monotonic() + WARMUP_S
            cpu_start: float | None = None
            started = 0.0
            async with asyncio.timeout(LIVE_S + WARMUP_S + 30):
                async for message in sub.messages:
                    now = datetime.now(UTC)
                    if time.monotonic() < warm_until:
                        continue
                    if cpu_start is None:
                        times = agent.cpu_times()
                        cpu_start = times.user + times.system
                        started = time.monotonic()
                    assert isinstance(message.payload, bytes)
                    for s in json.loads(message.payload)["samples"]:
                        seqs.append(s["seq"])
                        if not s["historical"]:  # a backfilled sample's age is not a latency
                            latencies_ms.append(
                                (now - datetime.fromisoformat(s["wall_time"])).total_seconds() * 1e3
                            )
                    if time.monotonic() - started >= LIVE_S:
                        break
            times = agent.cpu_times()
            assert cpu_start is not None
            elapsed = time.monotonic() - started
            cpu_pct = 100.0 * (times.user + times.system - cpu_start) / elapsed
        finally:
            proc.terminate()
            proc.wait(10)
    seqs.sort()
    missing = (seqs[-1] - seqs[0] + 1 - len(set(seqs))) if seqs else -1
    return {
        "cpu_pct": cpu_pct,
        "latencies_ms": latencies_ms,
        "samples_per_s": len(latencies_ms) / elapsed,
        "missing": missing,
    }


_SESSION_ONLY = """
import asyncio, sys, time
from isopress.agent.config import SerialSection
from isopress.agent.session import SerialSession

async def main():
    samples = 0
    async with SerialSession(SerialSection(port=sys.argv[1])) as session:
        async def consume():
            nonlocal samples
            async for burst in session.updates():
                samples += len(burst)
        task = asyncio.create_task(consume())
        await asyncio.sleep(float(sys.argv[3]))
        cpu0, wall0, n0 = time.process_time(), time.monotonic(), samples
        await asyncio.sleep(float(sys.argv[2]))
        print(100.0 * (time.process_time() - cpu0) / (time.monotonic() - wall0), samples - n0)
        task.cancel()

asyncio.run(main())
"""


def _p50_p99(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} / {values[int(0.99 * (len(values) - 1))]:.1f}"


def _session_only_cpu_pct(port: str) -> tuple[float, int]:
    """CPU of the serial session alone (no spool, no MQTT) in a process of its own, and updates seen."""
    out = subprocess.run(
        [sys.executable, "-c", _SESSION_ONLY, port, str(LIVE_S), str(WARMUP_S)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    cpu, updates = out.stdout.split()
    return float(cpu), int(updates)


def run() -> list[dict[str, Any]]:
    """Agent CPU and latency over the serial session to the real-time virtual board."""
    with tempfile.TemporaryDirectory(prefix="isopress-session-bench-") as tmp:
        folder = Path(tmp)
        with Mosquitto(folder / "broker") as broker, VirtualBoard() as board:
            rounds: list[dict[str, Any]] = []
            alone: list[tuple[float, int]] = []
            for n in range(ROUNDS):  # interleaved: the machine's load drifts
                rounds.append(asyncio.run(_round(broker, folder / f"round{n}", board.port)))
                alone.append(_session_only_cpu_pct(board.port))
            board.check_alive()
    latencies = sorted(ms for r in rounds for ms in r["latencies_ms"])
    cpus = [round(r["cpu_pct"], 2) for r in rounds]
    return [
        {
            "metric": "agent process CPU at 100 Hz over the serial session to the virtual board, % of one "
            f"core (median; rounds {cpus})",
            "value": round(statistics.median(r["cpu_pct"] for r in rounds), 2),
            "unit": "%",
            "target": "<= 5",
        },
        {
            "metric": "  of which the serial session alone (link, decoding, trackers, board clock; a process "
            f"of its own, median; rounds {[round(a[0], 2) for a in alone]})",
            "value": round(statistics.median(a[0] for a in alone), 2),
            "unit": "%",
            "target": "report",
        },
        {
            "metric": "board-to-subscriber latency at 100 Hz over the serial session, p50 / p99 "
            "(board TX, pty, agent, broker)",
            "value": _p50_p99(latencies),
            "unit": "ms",
            "target": "<= 20 / <= 100",
        },
        {
            "metric": "live samples per second at the subscriber; sequence numbers missing in the window, "
            "live or backfilled (all rounds)",
            "value": f"{statistics.median(r['samples_per_s'] for r in rounds):.1f}; "
            f"{sum(r['missing'] for r in rounds)}",
            "unit": "",
            "target": "100; 0",
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(f"{row['metric']}: {row['value']} {row['unit']} (target {row['target']})")
