"""``isopress agent`` as a process: last will on SIGKILL, clean stop on SIGTERM, no board, refusals."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from agent_helpers import Subscriber, eventually, unique_press_id, with_subscriber

from isopress.broker import Mosquitto

pytestmark = pytest.mark.mqtt

ISOPRESS = str(Path(sys.executable).parent / "isopress")


def _config(broker: Mosquitto, tmp_path: Path, press_id: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f"""
[agent]
press_id = "{press_id}"
[serial]
port = "/dev/null"
[broker]
host = "{broker.host}"
port = {broker.port}
keepalive_s = 5
[broker.reconnect]
initial_s = 0.1
max_s = 1.0
[spool]
path = "{tmp_path / "spool.sqlite3"}"
[runs]
folder = "{tmp_path / "runs"}"
""")
    return path


def _start(config: Path, *options: str) -> subprocess.Popen[bytes]:
    log = (config.parent / "agent.log").open("ab")
    return subprocess.Popen(
        [ISOPRESS, "agent", "--config", str(config), *(options or ("--fake-board",))],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def test_sigkill_leaves_the_last_will_and_a_restart_comes_back_online(
    broker: Mosquitto, tmp_path: Path
) -> None:
    press_id = unique_press_id("proc")
    config = _config(broker, tmp_path, press_id)
    rcs: list[int | None] = []

    async def body(sub: Subscriber) -> None:
        proc = _start(config)
        try:
            await eventually(lambda: sub.on("/status")[-1:] == ["online"], 15, "online")
            await eventually(lambda: len(sub.on("/telemetry")) > 5, 10, "telemetry")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            await eventually(lambda: sub.on("/status")[-1:] == ["offline"], 10, "last will")
            proc = _start(config)
            await eventually(lambda: sub.on("/status")[-1:] == ["online"], 15, "online again")
            proc.send_signal(signal.SIGTERM)
            rcs.append(await asyncio.to_thread(proc.wait, 15))
            await eventually(
                lambda: sub.on("/status")[-1:] == ["offline"],
                10,
                f"offline on SIGTERM {sub.on('/status')} {(config.parent / 'agent.log').read_text()[-4000:]}",
            )
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    sub = asyncio.run(with_subscriber(broker, f"isopress/{press_id}/#", body))
    assert sub.on("/status") == ["online", "offline", "online", "offline"]
    assert rcs == [0]


def test_a_port_url_pyserial_cannot_open_stops_the_agent_with_words(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = _config(broker, tmp_path, unique_press_id("proc"))
    proc = subprocess.run(
        [ISOPRESS, "agent", "--config", str(config), "--port", "bogus://press"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "--port: 'bogus://press' is not a serial port URL pyserial can open" in proc.stderr
    assert "protocol 'bogus' not known" in proc.stderr and "socket://host:port" in proc.stderr


def test_without_a_board_the_agent_stays_online_and_keeps_trying_the_port(
    broker: Mosquitto, tmp_path: Path
) -> None:
    press_id = unique_press_id("proc")
    config = _config(broker, tmp_path, press_id)
    log = tmp_path / "agent.log"
    rcs: list[int | None] = []

    async def body(sub: Subscriber) -> None:
        proc = _start(config, "--port", str(tmp_path / "no-board"))  # no --fake-board: the serial session
        try:
            await eventually(lambda: sub.on("/status")[-1:] == ["online"], 15, "online")
            await eventually(
                lambda: log.read_text().count("cannot open serial port") >= 2, 10, "two attempts"
            )
            states = sub.on("/state")
            assert states and states[-1]["board_connected"] is False and states[-1]["state"] == "unknown"
            proc.send_signal(signal.SIGTERM)
            rcs.append(await asyncio.to_thread(proc.wait, 15))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    asyncio.run(with_subscriber(broker, f"isopress/{press_id}/#", body))
    assert rcs == [0]
    assert f"cannot open serial port {tmp_path / 'no-board'}" in log.read_text()


def test_a_bad_config_stops_the_agent_with_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text('[agent]\npress_id = "p"\n[serial]\nport = "x"\n[broker]\nprot = 1\n')
    proc = subprocess.run(
        [ISOPRESS, "agent", "--config", str(bad), "--fake-board"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "broker.prot: unknown key; did you mean 'port'?" in proc.stderr
