"""Spool and MQTT path of the host agent against a real Mosquitto.

1. Replay after an outage: the spool holds N samples (as after a broker outage), the MQTT
   link starts and drains it to the broker while a subscriber receives everything.
   Reports samples/s until the spool is empty (every row PUBACKed and deleted) and until
   the subscriber has them all.
2. Live at 100 Hz: ``isopress agent --fake-board`` (a subprocess) streams 100 Hz samples;
   this process subscribes and measures sample-to-subscriber latency (sample wall time,
   stamped when the sample reaches the host, to arrival at the subscriber: spool, batching,
   broker included) and the agent process's CPU. The serial link is not in this path
   (bench/session_bench.py measures the agent over the serial session to the virtual
   board), and the fake board's own work is included in the CPU figure.
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

from isopress.agent.config import parse_config
from isopress.agent.model import Sample
from isopress.agent.mqtt import MqttLink
from isopress.agent.payloads import sample_outgoing
from isopress.agent.spool import Spool
from isopress.agent.topics import PressTopics
from isopress.broker import Mosquitto

REPLAY_SAMPLES = 50_000
BASELINE_SAMPLES = 5_000  # one sample per message: slower, so fewer
LIVE_S = 10.0
ROUNDS = 3  # CPU figures on a shared machine are noisy: medians of interleaved rounds


def _config_text(broker: Mosquitto, folder: Path, press_id: str) -> str:
    return f"""
[agent]
press_id = "{press_id}"
log_level = "warning"
[serial]
port = "/dev/null"
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
"""


def _sample(seq: int) -> Sample:
    return Sample(
        boot_count=1,
        seq=seq,
        board_ms=seq * 10,
        wall_time=datetime.now(UTC),
        pressure_mpa=250.0 + seq * 1e-4,
        setpoint_mpa=250.0,
        pump_duty=1234,
        vent_duty=0,
        faults=0,
        state=4,
        flags=0x1F,
        segment=1,
        run_id=3,
    )


async def _replay(
    broker: Mosquitto, folder: Path, samples: int = REPLAY_SAMPLES, extra_toml: str = ""
) -> dict[str, float]:
    config = parse_config(_config_text(broker, folder, "bench-replay") + extra_toml, environ={})
    topics = PressTopics(config.agent.press_id)
    with Spool(config.spool.path) as spool:
        for start in range(0, samples, 1000):
            spool.append([sample_outgoing(topics, _sample(i)) for i in range(start, start + 1000)])
    received = 0
    historical = 0
    async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as sub:
        await sub.subscribe(topics.telemetry, qos=1)
        with Spool(config.spool.path) as spool:
            drained_at: list[float] = []

            async def watch_spool() -> None:
                while spool.rows:  # noqa: ASYNC110 - a benchmark polling a counter, 2 ms resolution
                    await asyncio.sleep(0.002)
                drained_at.append(time.perf_counter())

            started = time.perf_counter()
            async with MqttLink(config, spool):
                watcher = asyncio.create_task(watch_spool())
                async with asyncio.timeout(120):
                    async for message in sub.messages:
                        assert isinstance(message.payload, bytes)
                        batch = json.loads(message.payload)
                        received += len(batch["samples"])
                        historical += sum(1 for s in batch["samples"] if s["historical"])
                        if received >= samples:
                            break
                delivered_s = time.perf_counter() - started
                await asyncio.wait_for(watcher, 10)
                drained_s = drained_at[0] - started
    assert historical == samples, "replayed samples must be flagged historical"
    return {"drained_s": drained_s, "delivered_s": delivered_s}


def _start_agent(config_path: Path) -> subprocess.Popen[bytes]:
    isopress = str(Path(sys.executable).parent / "isopress")
    return subprocess.Popen(
        [isopress, "agent", "--config", str(config_path), "--fake-board"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _write_config(broker: Mosquitto, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "live.toml"
    config_path.write_text(_config_text(broker, folder / "live", "bench-live"))
    return config_path


async def _live(broker: Mosquitto, folder: Path) -> dict[str, Any]:
    config_path = _write_config(broker, folder)
    latencies_ms: list[float] = []
    batches = 0
    async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as sub:
        await sub.subscribe("isopress/bench-live/telemetry", qos=1)
        proc = _start_agent(config_path)
        agent = psutil.Process(proc.pid)
        try:
            warmup_until = time.monotonic() + 3.0
            cpu_start: float | None = None
            measure_start = 0.0
            async with asyncio.timeout(LIVE_S + 30):
                async for message in sub.messages:
                    now = datetime.now(UTC)
                    if time.monotonic() < warmup_until:
                        continue
                    if cpu_start is None:
                        times = agent.cpu_times()
                        cpu_start = times.user + times.system
                        measure_start = time.monotonic()
                    assert isinstance(message.payload, bytes)
                    batch = json.loads(message.payload)
                    batches += 1
                    for s in batch["samples"]:
                        sent = datetime.fromisoformat(s["wall_time"])
                        latencies_ms.append((now - sent).total_seconds() * 1000.0)
                    if time.monotonic() - measure_start >= LIVE_S:
                        break
            times = agent.cpu_times()
            assert cpu_start is not None
            elapsed = time.monotonic() - measure_start
            cpu_pct = 100.0 * (times.user + times.system - cpu_start) / elapsed
        finally:
            proc.terminate()
            proc.wait(10)
    return {
        "latencies_ms": latencies_ms,
        "samples_per_s": len(latencies_ms) / elapsed,
        "batches_per_s": batches / elapsed,
        "cpu_pct": cpu_pct,
    }


_BOARD_ONLY = """
import asyncio, sys, time
from isopress.agent.fake_board import FakeBoard

async def main():
    board = FakeBoard()
    async def consume():
        async for _ in board.updates():
            pass
    task = asyncio.create_task(consume())
    await asyncio.sleep(2.0)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(float(sys.argv[1]))
    print(100.0 * (time.process_time() - cpu0) / (time.monotonic() - wall0))
    task.cancel()

asyncio.run(main())
"""


def _fake_board_cpu_pct(seconds: float) -> float:
    """CPU of the fake board alone (its ticking and sample building), to tell it apart.

    The child prints its own CPU share over ``seconds`` after a 2 s warm-up.
    """
    out = subprocess.run(
        [sys.executable, "-c", _BOARD_ONLY, str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return float(out.stdout.strip().splitlines()[-1])


def run() -> list[dict[str, Any]]:
    """Measure replay rate, live latency and agent CPU (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="isopress-bench-") as tmp:
        folder = Path(tmp)
        with Mosquitto(folder / "broker") as broker:
            replay = asyncio.run(_replay(broker, folder))
            # the baseline: the same replay one sample a message (no batching)
            single = asyncio.run(
                _replay(broker, folder / "single", BASELINE_SAMPLES, "[telemetry]\nmax_batch = 1\n")
            )
            rounds: list[dict[str, Any]] = []
            board_cpus: list[float] = []
            for n in range(ROUNDS):
                rounds.append(asyncio.run(_live(broker, folder / f"round{n}")))
                board_cpus.append(_fake_board_cpu_pct(LIVE_S))
        # Latency over every sample of every round; CPU and rates as medians of the rounds.
        latencies = sorted(ms for r in rounds for ms in r["latencies_ms"])
        live = {
            "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
            "batches_per_s": statistics.median(r["batches_per_s"] for r in rounds),
            "cpu_pct": statistics.median(r["cpu_pct"] for r in rounds),
            "cpu_all": [round(r["cpu_pct"], 1) for r in rounds],
        }
        board_cpu = statistics.median(board_cpus)
    return [
        {
            "metric": f"spool replay after an outage ({REPLAY_SAMPLES} samples, all PUBACKed and deleted)",
            "value": round(REPLAY_SAMPLES / replay["drained_s"]),
            "unit": "samples/s",
            "target": ">= 5000",
            "baseline": round(BASELINE_SAMPLES / single["drained_s"]),
            "baseline_label": f"one sample a message ({BASELINE_SAMPLES} samples)",
            "ratio": round(
                (REPLAY_SAMPLES / replay["drained_s"]) / (BASELINE_SAMPLES / single["drained_s"]), 1
            ),
        },
        {
            "metric": "spool replay, delivered to a subscriber",
            "value": round(REPLAY_SAMPLES / replay["delivered_s"]),
            "unit": "samples/s",
            "target": ">= 5000",
        },
        {
            "metric": "sample-to-subscriber latency at 100 Hz, p50 (host part: spool, batching, broker)",
            "value": round(live["p50_ms"], 1),
            "unit": "ms",
            "target": "<= 20",
        },
        {
            "metric": "sample-to-subscriber latency at 100 Hz, p99 (host part)",
            "value": round(live["p99_ms"], 1),
            "unit": "ms",
            "target": "<= 100",
        },
        {
            "metric": "telemetry batches per second at 100 Hz",
            "value": round(live["batches_per_s"], 1),
            "unit": "1/s",
            "target": ">= 10",
        },
        {
            "metric": "agent process CPU at 100 Hz, fake board included, % of one core "
            f"(median; rounds {live['cpu_all']})",
            "value": round(live["cpu_pct"], 2),
            "unit": "%",
            # not the figure: the fake board runs inside this process (next rows)
            "target": "report (the fake board's own CPU is in it)",
        },
        {
            "metric": "  of which the fake board alone (measured in a process of its own, median)",
            "value": round(board_cpu, 2),
            "unit": "%",
            "target": "-",
        },
        {
            "metric": "agent CPU at 100 Hz without the fake board (difference of the two medians)",
            "value": round(live["cpu_pct"] - board_cpu, 2),
            "unit": "%",
            "target": "<= 5 (no serial session: see session_bench)",
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(f"{row['metric']}: {row['value']} {row['unit']} (target {row['target']})")
