"""Press stations on this machine: a virtual board, its agent, a broker, and an operator's client.

What ``isopress demo``, ``isopress fleet``, the soak and the system tests have in common:

- :func:`open_broker`: a broker for them: a private Mosquitto from ``deploy/mosquitto`` when
  the binary is installed, otherwise the embedded :class:`~isopress.minibroker.MiniBroker`
  (in a thread of its own, so agent processes can connect to it);
- :class:`Station`: one press: a :class:`~isopress.virtual_board.VirtualBoard` (the real
  firmware under MicroPython, in real time, on a pty), optionally a
  :class:`~isopress.faultproxy.SerialFaultProxy` between board and agent, and the real
  ``isopress agent`` process with a config written for it; each part can be killed,
  stopped, continued or restarted on its own;
- :class:`OperatorClient`: commands as an operator's tool sends them (fresh
  ``command_id`` and ``sent_at``, a response topic under ``reply/<operator>/``,
  correlation data), with the reply returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .faultproxy import FaultRates, SerialFaultProxy
from .virtual_board import VirtualBoard

__all__ = ["BrokerHandle", "OperatorClient", "Station", "StationError", "open_broker", "sim_config_text"]


class StationError(RuntimeError):
    """A part of a station did not start or died; the message says which and why."""


# -- brokers ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BrokerHandle:
    """Where the broker listens, and which one it is (``mosquitto`` or ``embedded``)."""

    host: str
    port: int
    kind: str
    process_pid: int | None = None  # Mosquitto's pid (None for the embedded broker)


@contextlib.contextmanager
def open_broker(
    workdir: Path, *, prefer: str = "auto", mosquitto_extra: dict[str, str] | None = None
) -> Iterator[BrokerHandle]:
    """A broker on a free loopback port for as long as the ``with`` lasts.

    ``prefer``: ``auto`` (Mosquitto when installed, else embedded), ``mosquitto`` or
    ``embedded``. ``mosquitto_extra``: config lines added after the deployed file's (a
    later line wins), e.g. ``{"autosave_on_changes": "false"}`` for a comparison.
    """
    from .broker import BrokerError, Mosquitto, mosquitto_binary

    use_mosquitto = prefer == "mosquitto"
    if prefer == "auto":
        try:
            mosquitto_binary()
            use_mosquitto = True
        except BrokerError:
            use_mosquitto = False
    if use_mosquitto:
        with Mosquitto(workdir / "mosquitto", extra=mosquitto_extra) as broker:
            yield BrokerHandle(broker.host, broker.port, "mosquitto", broker.pid)
        return
    with _EmbeddedBroker() as handle:
        yield handle


class _EmbeddedBroker:
    """The MiniBroker on an event loop in a daemon thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._port = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="embedded-mqtt-broker", daemon=True)

    def _run(self) -> None:
        from .minibroker import MiniBroker

        async def main() -> None:
            self._stop = asyncio.Event()
            async with MiniBroker() as broker:
                self._port = broker.port
                self._ready.set()
                await self._stop.wait()

        try:
            self._loop.run_until_complete(main())
        except BaseException as exc:  # reported to the caller by __enter__
            self._error = exc
            self._ready.set()

    def __enter__(self) -> BrokerHandle:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None or not self._port:
            raise StationError(f"the embedded MQTT broker did not start: {self._error!r}")
        return BrokerHandle("127.0.0.1", self._port, "embedded")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


# -- the board's config ------------------------------------------------------------------------
def sim_config_text(overrides: dict[str, Any] | None = None) -> str:
    """The virtual board's ``config.json`` with top-level or ``{section: {key: value}}``
    overrides applied and its checksum resealed (what a user's edited, sealed file is)."""
    from .firmware_build import seal_config_text
    from .paths import firmware_root

    doc = json.loads((firmware_root() / "boards" / "sim" / "config.json").read_text())
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update(value)
        else:
            doc[key] = value
    return seal_config_text(json.dumps(doc, indent=2))


# -- a station -----------------------------------------------------------------------------------
@dataclass(slots=True)
class StationSpec:
    """What a station is made of (see :class:`Station`)."""

    press_id: str
    workdir: Path
    broker: BrokerHandle
    seed: int = 1
    boot_count: int = 1
    board_config_text: str | None = None  # None: the sim's config.json
    runtime: str = "micropython"
    to_board: FaultRates | None = None  # a fault proxy between board and agent when set
    to_host: FaultRates | None = None
    proxy_disconnects_per_s: float = 0.0
    proxy_seed: int = 1
    agent_toml: str = ""  # extra agent config, appended (e.g. "[telemetry]\nbatch_period_ms = 50")
    log_level: str = "info"
    agent_env: dict[str, str] = field(default_factory=dict)
    journal: bool = False  # the board journals to workdir/journal (isopress.board_journal)
    broker_reconnect_s: tuple[float, float] = (0.1, 2.0)  # the agent's broker.reconnect initial_s, max_s


class Station:
    """One press on this machine. ``with Station(spec) as st:`` starts board, proxy and agent.

    The agent's config is ``st.config_path`` (spool, runs and log under ``spec.workdir``);
    its stderr goes to ``st.agent_log``.
    """

    def __init__(self, spec: StationSpec) -> None:
        self.spec = spec
        spec.workdir.mkdir(parents=True, exist_ok=True)
        self.board = VirtualBoard(
            runtime=spec.runtime,
            seed=spec.seed,
            config_text=spec.board_config_text,
            boot_count=spec.boot_count,
            journal_dir=spec.workdir / "journal" if spec.journal else None,
        )
        self.proxy: SerialFaultProxy | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.config_path = spec.workdir / "agent.toml"
        self.agent_log = spec.workdir / "agent.log"
        self.runs_folder = spec.workdir / "runs"
        self.spool_path = spec.workdir / "spool.sqlite3"
        self._log_file: Any = None

    # -- life cycle --------------------------------------------------------------------
    def __enter__(self) -> Station:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Board first (its HELLO waits in the pty), then the proxy, then the agent."""
        self.board.start()
        spec = self.spec
        if spec.to_board is not None or spec.to_host is not None or spec.proxy_disconnects_per_s > 0:
            self.proxy = SerialFaultProxy(
                self.board.port,
                spec.workdir / "board-port",
                to_board=spec.to_board,
                to_host=spec.to_host,
                disconnects_per_s=spec.proxy_disconnects_per_s,
                seed=spec.proxy_seed,
            )
            self.proxy.start()
        self.write_config()
        self.start_agent()

    def stop(self) -> dict[str, Any] | None:
        """Agent (SIGTERM: it says offline), proxy, board; returns the board's summary."""
        self.stop_agent()
        if self.proxy is not None:
            self.proxy.close()
        summary = self.board.stop() if self.board.running else self.board.summary
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return summary

    @property
    def port(self) -> str:
        """The serial port the agent opens (the proxy's, or the board's)."""
        return self.proxy.port if self.proxy is not None else self.board.port

    def write_config(self) -> None:
        """The agent's TOML: this press, the broker, fast link-loss detection, local files."""
        spec = self.spec
        self.config_path.write_text(
            f"""[agent]
press_id = "{spec.press_id}"
log_level = "{spec.log_level}"
[serial]
port = "{self.port}"
heartbeat_period_ms = 250
heartbeat_timeout_ms = 2000
[serial.reconnect]
initial_s = 0.1
max_s = 1.0
[broker]
host = "{spec.broker.host}"
port = {spec.broker.port}
keepalive_s = 5
[broker.reconnect]
initial_s = {spec.broker_reconnect_s[0]}
max_s = {spec.broker_reconnect_s[1]}
[spool]
path = "{self.spool_path}"
[runs]
folder = "{self.runs_folder}"
{spec.agent_toml}
"""
        )

    # -- the agent process ---------------------------------------------------------------
    def start_agent(self) -> None:
        """Start ``isopress agent --config ...`` (again, after a kill)."""
        if self.agent is not None and self.agent.poll() is None:
            return
        if self._log_file is None:
            self._log_file = self.agent_log.open("ab")
        exe = Path(sys.executable).parent / "isopress"
        cmd = [str(exe), "agent", "--config", str(self.config_path)]
        self.agent = subprocess.Popen(
            cmd, stdout=self._log_file, stderr=self._log_file, env={**os.environ, **self.spec.agent_env}
        )

    def stop_agent(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM and wait; returns the exit code (None if it was not running)."""
        proc = self.agent
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc is not None else None
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        proc.terminate()
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def kill_agent(self) -> None:
        """SIGKILL: the agent vanishes (its last will says offline)."""
        if self.agent is not None and self.agent.poll() is None:
            self.agent.kill()
            self.agent.wait()

    def freeze_agent(self) -> None:
        """SIGSTOP: the agent hangs (no heartbeats reach the board)."""
        if self.agent is not None and self.agent.poll() is None:
            os.kill(self.agent.pid, signal.SIGSTOP)

    def thaw_agent(self) -> None:
        """SIGCONT after :meth:`freeze_agent`."""
        if self.agent is not None and self.agent.poll() is None:
            os.kill(self.agent.pid, signal.SIGCONT)

    @property
    def agent_pid(self) -> int:
        """The agent's process id (-1 when not running)."""
        return self.agent.pid if self.agent is not None and self.agent.poll() is None else -1

    def agent_log_text(self) -> str:
        """The agent's log so far."""
        return self.agent_log.read_text(errors="replace") if self.agent_log.exists() else ""

    def check_alive(self) -> None:
        """Raise :class:`StationError` naming the part that died (board or agent)."""
        if not self.board.running:
            raise StationError(
                f"{self.spec.press_id}: the virtual board died:\n{self.board.log_text()[-3000:]}"
            )
        if self.agent is None or self.agent.poll() is not None:
            code = self.agent.returncode if self.agent is not None else None
            raise StationError(
                f"{self.spec.press_id}: the agent exited ({code}):\n{self.agent_log_text()[-3000:]}"
            )


# -- an operator's client ----------------------------------------------------------------------
class OperatorClient:
    """Commands to a press as an operator's tool sends them.

    ``async with OperatorClient(host, port, operator="alice") as op:
    reply = await op.command("press-01", "start", {})``
    """

    def __init__(
        self, host: str, port: int, *, operator: str, username: str | None = None, password: str | None = None
    ) -> None:
        self.operator = operator
        self._client = aiomqtt.Client(
            host,
            port,
            identifier=f"isopress-operator-{operator}-{uuid.uuid4().hex[:8]}",
            protocol=aiomqtt.ProtocolVersion.V5,
            username=username,
            password=password,
        )
        self._replies: dict[bytes, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._subscribed: set[str] = set()

    async def __aenter__(self) -> OperatorClient:
        await self._client.__aenter__()
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._client.__aexit__(exc_type, exc, tb)

    async def _read(self) -> None:
        async for message in self._client.messages:
            props = message.properties
            correlation = getattr(props, "CorrelationData", None) if props is not None else None
            future = self._replies.pop(correlation, None) if isinstance(correlation, bytes) else None
            if future is not None and not future.done() and isinstance(message.payload, bytes):
                future.set_result(json.loads(message.payload))

    async def command(
        self, press_id: str, verb: str, fields: dict[str, Any] | None = None, *, timeout_s: float = 15.0
    ) -> dict[str, Any]:
        """Send one command; return the agent's reply (raises TimeoutError if none comes)."""
        reply_topic = f"isopress/{press_id}/reply/{self.operator}/{uuid.uuid4().hex[:8]}"
        filter_ = f"isopress/{press_id}/reply/{self.operator}/#"
        if filter_ not in self._subscribed:
            await self._client.subscribe(filter_, qos=1)
            self._subscribed.add(filter_)
        correlation = uuid.uuid4().bytes
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[correlation] = future
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = reply_topic
        props.CorrelationData = correlation
        props.MessageExpiryInterval = 30
        body = {"command_id": uuid.uuid4().hex, "sent_at": datetime.now(UTC).isoformat(), **(fields or {})}
        topic = f"isopress/{press_id}/cmd/{self.operator}/{verb}"
        await self._client.publish(topic, json.dumps(body).encode(), qos=1, properties=props)
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        finally:
            self._replies.pop(correlation, None)
