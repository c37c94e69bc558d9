"""``isopress agent --fake-board`` as a process, logged in as its agent user over mutual TLS."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from security_helpers import GOOD_RECIPE, Lab, collecting, command_payload, eventually, publish_command

from isopress.broker import Mosquitto

pytestmark = pytest.mark.mqtt

ISOPRESS = str(Path(sys.executable).parent / "isopress")


def _config(broker: Mosquitto, lab: Lab, folder: Path) -> Path:
    cert, key = lab.cert("agent-press-01")
    path = folder / "agent.toml"
    path.write_text(f"""
[agent]
press_id = "press-01"
[serial]
port = "/dev/null"
[broker]
host = "{broker.host}"
port = {broker.port}
username = "agent-press-01"
password_file = "{lab.password_file("agent-press-01")}"
keepalive_s = 5
[broker.tls]
ca_file = "{lab.ca}"
cert_file = "{cert}"
key_file = "{key}"
[broker.reconnect]
initial_s = 0.1
max_s = 1.0
[spool]
path = "{folder / "spool.sqlite3"}"
[runs]
folder = "{folder / "runs"}"
""")
    return path


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            [ISOPRESS, "agent", "--config", str(config), "--fake-board"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def test_the_agent_process_runs_over_mutual_tls_as_its_agent_user(
    secure_broker: Mosquitto, lab: Lab, tmp_path: Path
) -> None:
    config = _config(secure_broker, lab, tmp_path)
    log = tmp_path / "agent.log"

    async def body() -> tuple[list[bytes], dict[str, object] | None, int | None]:
        async with collecting(secure_broker, lab, "viewer-lab", "isopress/press-01/status") as viewer:
            proc = _start(config, log)
            try:
                await eventually(
                    lambda: [p for _t, p, _r in viewer.messages][-1:] == [b"online"],
                    15,
                    f"online; agent log: {log.read_text()[-3000:] if log.exists() else ''}",
                )
                reply = await publish_command(
                    secure_broker,
                    lab,
                    "alice",
                    "press-01",
                    "alice",
                    "load-recipe",
                    command_payload({"recipe": GOOD_RECIPE}),
                    reply_timeout_s=10,
                )
                proc.send_signal(signal.SIGTERM)
                rc = await asyncio.to_thread(proc.wait, 15)
                await eventually(
                    lambda: [p for _t, p, _r in viewer.messages][-1:] == [b"offline"], 10, "offline"
                )
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            return [p for _t, p, _r in viewer.messages], reply, rc

    statuses, reply, rc = asyncio.run(body())
    assert reply is not None and reply["accepted"], (reply, log.read_text()[-3000:])
    assert rc == 0
    assert statuses[-2:] == [b"online", b"offline"]
    assert "agent-press-01" in secure_broker.log_text()  # it logged in as its agent user
