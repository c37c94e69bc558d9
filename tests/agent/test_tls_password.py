"""The [broker.tls] and password_file settings against a Mosquitto that requires them."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from agent_helpers import unique_press_id

from isopress.agent.config import parse_config
from isopress.agent.mqtt import MqttLink
from isopress.agent.spool import Spool
from isopress.broker import Mosquitto

pytestmark = pytest.mark.mqtt


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_certs(folder: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=isopress test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=folder,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=folder,
    )
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
        cwd=folder,
    )


def test_the_agent_connects_with_tls_and_a_password_file(tmp_path: Path) -> None:
    _make_certs(tmp_path)
    password_file = tmp_path / "broker.password"
    password_file.write_text("s3cret\n")
    mosquitto_passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(mosquitto_passwords), "agent", "s3cret"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    broker = Mosquitto(
        tmp_path / "broker",
        extra={
            "cafile": str(tmp_path / "ca.pem"),
            "certfile": str(tmp_path / "server.pem"),
            "keyfile": str(tmp_path / "server.key"),
            "allow_anonymous": "false",
            "password_file": str(mosquitto_passwords),
        },
    )
    broker.start()
    press_id = unique_press_id("tls")

    def config(password_line: str) -> str:
        return f"""
[agent]
press_id = "{press_id}"
[serial]
port = "/dev/null"
[broker]
host = "127.0.0.1"
port = {broker.port}
username = "agent"
{password_line}
[broker.tls]
ca_file = "{tmp_path / "ca.pem"}"
[broker.reconnect]
initial_s = 0.05
max_s = 0.2
[spool]
path = "{tmp_path / "spool.sqlite3"}"
"""

    async def connects(text: str) -> tuple[bool, str]:
        cfg = parse_config(text, environ={})
        with Spool(cfg.spool.path) as spool:
            async with MqttLink(cfg, spool) as link:
                try:
                    await asyncio.wait_for(link.connected.wait(), 3)
                except TimeoutError:
                    return False, link.stats.last_error
                return True, ""

    try:
        ok, _ = asyncio.run(connects(config(f'password_file = "{password_file}"')))
        assert ok, "TLS + password should connect"
        wrong = tmp_path / "wrong.password"
        wrong.write_text("nope\n")
        ok, error = asyncio.run(connects(config(f'password_file = "{wrong}"')))
        assert not ok and error  # refused, and the reason is kept for the log
    finally:
        broker.stop()
