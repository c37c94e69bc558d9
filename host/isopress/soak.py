"""The soak: a virtual press for a long while with the broker killed and the cable damaged.

``make soak`` (``python -m isopress.soak``) runs one station (:class:`~isopress.rig.Station`:
the real firmware under MicroPython in real time, a :class:`~isopress.faultproxy.SerialFaultProxy`
damaging the serial bytes both ways, the real ``isopress agent`` process) against a private
Mosquitto for ``duration_s`` (an hour; ``SOAK_S`` shortens it), while

- an operator presses a short recipe over and over (load, start, pause and resume in the
  hold), each command through MQTT and answered;
- the broker is SIGKILLed every ``broker_kill_every_s`` and started again ``broker_down_s``
  later, on the same port, from its persistence file;
- the link flips, drops, duplicates and inserts bytes (``byte_error_rate``), picks up
  garbage bursts, stalls, and is unplugged now and then (``unplug_every_s``);
- the agent hangs (SIGSTOP for ``agent_freeze_s``, shorter than the board's host-lost
  timeout, so the run goes on) every ``agent_freeze_every_s``, and is SIGKILLed and started
  again every ``agent_kill_every_s``.

A persistent MQTT subscriber (clean start off, a session expiry) records every telemetry
sample; the board's journal (:mod:`isopress.board_journal`) says what the board produced
and executed. The report (:class:`SoakReport`, printed and written as JSON) has samples
produced / delivered / lost / corrupted, commands sent / accepted / executed by the board,
the broker outages and the agent's reconnect time after each (from the agent's own log),
the faults injected, the agent's link counters, and the resident memory of the agent and
board processes at the start and the end. :meth:`SoakReport.problems` lists what broke a
promise (a sample lost or changed, a command lost or run twice, a reconnect slower than
``reconnect_limit_s``); ``python -m isopress.soak`` exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from isoproto import recipe as wire_recipe

from .agent.recipe import Recipe, recipe_segments
from .board_journal import BoardJournal, SampleAudit, audit_bodies, sample_body
from .broker import Mosquitto
from .faultproxy import FaultRates
from .rig import BrokerHandle, OperatorClient, Station, StationSpec

__all__ = [
    "SOAK_RECIPE",
    "BrokerOutage",
    "PersistentSubscriber",
    "SoakConfig",
    "SoakReport",
    "agent_connect_times",
    "agent_counters",
    "main",
    "rss_kib",
    "run_soak",
]

# About 10 s on the sim press: up at its pump's 2 MPa/s, a hold to pause and resume in, down.
SOAK_RECIPE: dict[str, Any] = {
    "name": "soak",
    "segments": [
        {"kind": "ramp", "target_mpa": 4.0, "rate_mpa_s": 2.0},
        {"kind": "hold", "duration_s": 4.0},
        {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.0},
    ],
}
_OPERATOR_COMMANDS = ("LOAD_RECIPE_CHUNK", "START", "PAUSE", "RESUME", "ABORT", "RESET_FAULTS")
_VERB_COMMAND = {
    "start": "START",
    "pause": "PAUSE",
    "resume": "RESUME",
    "abort": "ABORT",
    "reset": "RESET_FAULTS",
}


@dataclass(frozen=True, slots=True)
class SoakConfig:
    """What the soak does and for how long (the defaults are ``make soak``'s)."""

    workdir: Path
    duration_s: float = 3600.0
    broker_kill_every_s: float = 30.0  # 0: never
    broker_down_s: float = 1.0
    byte_error_rate: float = 1e-4  # per byte, each direction: flips, drops, dups, inserts
    garbage_bursts_per_s: float = 0.02
    stalls_per_s: float = 0.01
    unplug_every_s: float = 300.0  # mean time between simulated USB unplugs (0: never)
    agent_freeze_every_s: float = 450.0  # SIGSTOP the agent this often (0: never) ...
    agent_freeze_s: float = 3.0  # ... for this long (the sim board's host-lost timeout is 10 s)
    agent_kill_every_s: float = 900.0  # SIGKILL and restart the agent this often (0: never)
    settle_s: float = 30.0  # at the end: time for the last gaps to be backfilled and sent
    reconnect_limit_s: float = 5.0  # the agent back on the broker within this of its return
    seed: int = 1
    press_id: str = "soak-01"

    def __post_init__(self) -> None:
        if self.duration_s <= 0:
            raise ValueError(f"duration_s: {self.duration_s} must be > 0")
        for name in (
            "broker_kill_every_s",
            "broker_down_s",
            "unplug_every_s",
            "settle_s",
            "agent_freeze_every_s",
            "agent_freeze_s",
            "agent_kill_every_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0")
        if self.broker_kill_every_s and self.broker_kill_every_s <= self.broker_down_s:
            raise ValueError("broker_kill_every_s must be longer than broker_down_s")

    def link_rates(self) -> FaultRates:
        """The proxy's damage, the same in both directions."""
        return FaultRates(
            byte_error_rate=self.byte_error_rate,
            garbage_bursts_per_s=self.garbage_bursts_per_s,
            stalls_per_s=self.stalls_per_s,
            stall_s=0.3,
        )


# -- the persistent subscriber -----------------------------------------------------------------
class PersistentSubscriber:
    """A dashboard's subscriber: MQTT 5, clean start off, a session expiry, QoS 1; it reconnects
    on its own, so what the broker queued for it while it was away arrives afterwards.

    ``await sub.run()`` (in a task; cancel it to stop). It keeps each telemetry sample packed
    back into the board's 27 bytes (:func:`~isopress.board_journal.sample_body`), the latest
    state, the events and the run summaries.
    """

    def __init__(self, host: str, port: int, press_id: str, *, expiry_s: int = 3600) -> None:
        self.host = host
        self.port = port
        self.press_id = press_id
        self.expiry_s = expiry_s
        self.client_id = f"soak-sub-{uuid.uuid4().hex[:8]}"
        self.bodies: dict[tuple[int, int], set[bytes]] = {}  # (boot_count, seq) -> bodies got
        self.historical: set[tuple[int, int]] = set()
        self.received = 0  # samples, duplicates included
        self.latest: dict[str, Any] | None = None  # the newest live sample
        self.state: dict[str, Any] | None = None  # the retained state
        self.events: list[dict[str, Any]] = []
        self.runs: dict[str, dict[str, Any]] = {}
        self.connects = 0
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        """Connect, subscribe, record; on any broker error reconnect 0.1 s later, for ever."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.expiry_s
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.client_id,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    clean_start=False,
                    properties=props,
                    timeout=3,
                ) as client:
                    await client.subscribe(f"isopress/{self.press_id}/#", qos=1)
                    self.connects += 1
                    self.subscribed.set()
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        self.on_message(str(message.topic), payload)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    def on_message(self, topic: str, payload: bytes) -> None:
        """Record one message (public for tests)."""
        suffix = topic.removeprefix(f"isopress/{self.press_id}/")
        if suffix == "status":
            return
        try:
            doc: Any = json.loads(payload)
        except ValueError:
            return
        if suffix == "telemetry":
            for sample in doc["samples"]:
                key = (sample["boot_count"], sample["seq"])
                self.bodies.setdefault(key, set()).add(sample_body(sample))
                self.received += 1
                if sample["historical"]:
                    self.historical.add(key)
                elif self.latest is None or key > (self.latest["boot_count"], self.latest["seq"]):
                    self.latest = sample
        elif suffix == "state":
            self.state = doc
        elif suffix == "event":
            self.events.append(doc)
        elif suffix.startswith("run/"):
            self.runs[suffix.removeprefix("run/")] = doc

    def boot(self, boot_count: int) -> dict[int, set[bytes]]:
        """The samples of one boot: seq -> the distinct bodies received."""
        return {seq: bodies for (boot, seq), bodies in self.bodies.items() if boot == boot_count}

    def has_all(self, boot_count: int, first_seq: int, last_seq: int) -> bool:
        """True when every seq from first to last of that boot has arrived."""
        return all((boot_count, s) in self.bodies for s in range(first_seq, last_seq + 1))


# -- measurements ---------------------------------------------------------------------------------
def rss_kib(pid: int) -> int:
    """The resident set of a process in KiB (VmRSS), -1 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return -1


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def agent_connect_times(log_text: str) -> list[float]:
    """Wall times (epoch s) at which the agent says it connected to the broker (its log)."""
    out: list[float] = []
    for line in log_text.splitlines():
        if "isopress.agent.mqtt: connected to " not in line:
            continue
        m = _LOG_TIME.match(line)
        if m:  # logging's asctime: local time, ms
            out.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return out


def agent_counters(log_text: str) -> dict[str, dict[str, Any]]:
    """The counters the agent logs when it stops: ``serial`` (session) and ``mqtt``, summed
    over every agent process in the log."""
    totals: dict[str, dict[str, Any]] = {"serial": {}, "mqtt": {}}
    for line in log_text.splitlines():
        for key, marker in (("serial", "serial session counters: "), ("mqtt", "mqtt counters: ")):
            at = line.find(marker)
            if at < 0:
                continue
            try:
                doc = json.loads(line[at + len(marker) :])
            except ValueError:
                continue
            for name, value in doc.items():
                if isinstance(value, int):
                    totals[key][name] = totals[key].get(name, 0) + value
    return totals


@dataclass(slots=True)
class BrokerOutage:
    """One broker kill: when it died, when it listened again, when the agent was back."""

    killed_at: float
    back_at: float
    agent_connected_at: float | None = None

    @property
    def reconnect_s(self) -> float | None:
        """The agent's reconnect time after the broker's return (None: it never came back).

        ``back_at`` is when the soak's own probe found the port listening, so an agent that
        connects first (its retry landed between the broker's listen and the probe) has
        reconnected at once: 0, not the few ms negative the two clocks would say.
        """
        if self.agent_connected_at is None:
            return None
        return max(self.agent_connected_at - self.back_at, 0.0)


@dataclass(slots=True)
class SoakReport:
    """What the soak measured (see the module docstring)."""

    config: dict[str, Any]
    elapsed_s: float
    samples: list[SampleAudit]  # one audit per boot
    commands_sent: Counter[str] = field(default_factory=Counter)  # per verb
    commands_accepted: Counter[str] = field(default_factory=Counter)
    commands_unanswered: Counter[str] = field(default_factory=Counter)
    command_rejections: list[str] = field(default_factory=list)
    commands_executed: Counter[str] = field(default_factory=Counter)  # board journal, per command
    history_requests_executed: int = 0
    runs_completed: int = 0
    runs_other: Counter[str] = field(default_factory=Counter)  # outcome -> count
    outages: list[BrokerOutage] = field(default_factory=list)
    faults: dict[str, Any] = field(default_factory=dict)
    agent: dict[str, dict[str, Any]] = field(default_factory=dict)
    board_link: dict[str, Any] = field(default_factory=dict)
    board_loop: dict[str, Any] = field(default_factory=dict)  # overruns, loop/late us max, heap
    subscriber_connects: int = 0
    rss_kib: dict[str, dict[str, int]] = field(default_factory=dict)  # agent/board -> start/end
    reconnect_limit_s: float = 5.0

    @property
    def produced(self) -> int:
        return sum(a.produced for a in self.samples)

    @property
    def delivered(self) -> int:
        return sum(a.produced - len(a.missing) for a in self.samples)

    @property
    def lost(self) -> int:
        return sum(len(a.missing) for a in self.samples)

    @property
    def corrupted(self) -> int:
        return sum(len(a.corrupted) + len(a.unknown) for a in self.samples)

    def expected_executions(self) -> Counter[str]:
        """The board commands the accepted operator commands stand for (a recipe: its chunks)."""
        chunks = len(wire_recipe.recipe_chunks(recipe_segments(Recipe.model_validate(SOAK_RECIPE))))
        out: Counter[str] = Counter()
        for verb, n in self.commands_accepted.items():
            if verb == "load-recipe":
                out["LOAD_RECIPE_CHUNK"] += n * chunks
            else:
                out[_VERB_COMMAND[verb]] += n
        return out

    def reconnect_times(self) -> list[float | None]:
        return [o.reconnect_s for o in self.outages]

    def problems(self) -> list[str]:
        """Every broken promise, in words (empty: the soak passed)."""
        out: list[str] = []
        if self.lost:
            out.append(f"{self.lost} samples lost between the board and the subscriber")
        if self.corrupted:
            out.append(f"{self.corrupted} samples reached the subscriber changed (or invented)")
        if not self.produced:
            out.append("no sample was produced")
        unanswered = sum(self.commands_unanswered.values())
        if unanswered:
            out.append(f"{unanswered} commands got no reply: {dict(self.commands_unanswered)}")
        if self.command_rejections:
            out.append(f"{len(self.command_rejections)} commands rejected: {self.command_rejections[:3]}")
        expected = self.expected_executions()
        if dict(expected) != dict(self.commands_executed):
            out.append(
                f"the board executed {dict(self.commands_executed)}, the operator's accepted commands "
                f"stand for {dict(expected)} (a command lost or executed twice)"
            )
        for i, outage in enumerate(self.outages):
            took = outage.reconnect_s
            if took is None:
                out.append(f"broker outage {i + 1}: the agent never reconnected")
            elif took > self.reconnect_limit_s:
                out.append(f"broker outage {i + 1}: the agent took {took:.2f} s to reconnect")
        return out

    def as_dict(self) -> dict[str, Any]:
        """The whole report as JSON-ready data."""
        times = [t for t in self.reconnect_times() if t is not None]
        return {
            "config": self.config,
            "elapsed_s": round(self.elapsed_s, 1),
            "samples": {
                "produced": self.produced,
                "delivered": self.delivered,
                "lost": self.lost,
                "corrupted": self.corrupted,
                "per_boot": [a.as_dict() for a in self.samples],
            },
            "commands": {
                "sent": dict(self.commands_sent),
                "accepted": dict(self.commands_accepted),
                "unanswered": dict(self.commands_unanswered),
                "rejected": self.command_rejections,
                "executed_by_board": dict(self.commands_executed),
                "history_requests_executed_by_board": self.history_requests_executed,
            },
            "runs": {"complete": self.runs_completed, "other": dict(self.runs_other)},
            "broker": {
                "kills": len(self.outages),
                "reconnect_s": [None if t is None else round(t, 3) for t in self.reconnect_times()],
                "reconnect_s_max": round(max(times), 3) if times else None,
                "reconnect_s_mean": round(sum(times) / len(times), 3) if times else None,
                "agent_connects": self.agent.get("mqtt", {}).get("connects"),
                "subscriber_connects": self.subscriber_connects,
            },
            "faults_injected": self.faults,
            "agent_counters": self.agent,
            "board_link": self.board_link,
            "board_loop": self.board_loop,
            "rss_kib": self.rss_kib,
            "problems": self.problems(),
        }

    def text(self) -> str:
        """The summary a person reads at the end of ``make soak``."""
        d = self.as_dict()
        serial = self.agent.get("serial", {})
        link = self.faults
        to_b, to_h = link.get("to_board", {}), link.get("to_host", {})
        rss = self.rss_kib
        broker = d["broker"]
        lines = [
            f"soak: {self.elapsed_s:.0f} s of a virtual press (seed {self.config.get('seed')})",
            f"  samples   produced {self.produced}, delivered {self.delivered}, lost {self.lost}, "
            f"corrupted {self.corrupted} ({sum(a.historical for a in self.samples)} came flagged historical: "
            "backfilled or replayed from the spool)",
            f"  commands  sent {sum(self.commands_sent.values())} {dict(self.commands_sent)}, "
            f"accepted {sum(self.commands_accepted.values())}, executed by the board "
            f"{sum(self.commands_executed.values())} {dict(self.commands_executed)}",
            f"  runs      complete {self.runs_completed}, other {dict(self.runs_other)}",
            f"  broker    {broker['kills']} SIGKILLs, agent reconnect after the broker's return: "
            f"max {broker['reconnect_s_max']} s, mean {broker['reconnect_s_mean']} s "
            f"(agent connects {broker['agent_connects']})",
            f"  link      byte faults {to_b.get('byte_faults', 0)} to board / "
            f"{to_h.get('byte_faults', 0)} to host, "
            f"garbage bursts {to_b.get('garbage_bursts', 0) + to_h.get('garbage_bursts', 0)}, "
            f"stalls {to_b.get('stalls', 0) + to_h.get('stalls', 0)}, unplugs {link.get('disconnects', 0)}",
            f"  agent     SIGSTOPs {link.get('agent_sigstops', 0)}, SIGKILLs {link.get('agent_sigkills', 0)} "
            "(the counters below are from the processes that stopped cleanly)",
            f"            CRC rejects {serial.get('crc_errors')}, retransmits {serial.get('retransmits')}, "
            f"history requests {serial.get('history_requests')}, link losses {serial.get('link_losses')}, "
            f"samples backfilled {serial.get('samples_backfilled')}",
            f"  board     CRC rejects {self.board_link.get('crc_errors')}, duplicates answered "
            f"{self.board_link.get('duplicates')}, history requests {self.history_requests_executed}, "
            f"loop overruns {self.board_loop.get('loop_overruns')} (latest tick "
            f"{self.board_loop.get('late_us_max')} us late)",
            "  memory    RSS agent {a0} -> {a1} KiB, board {b0} -> {b1} KiB".format(
                a0=rss.get("agent", {}).get("start"),
                a1=rss.get("agent", {}).get("end"),
                b0=rss.get("board", {}).get("start"),
                b1=rss.get("board", {}).get("end"),
            ),
        ]
        problems = self.problems()
        lines.append("  result    " + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
        return "\n".join(lines)


# -- the run ----------------------------------------------------------------------------------
async def _until(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


class _Soak:
    def __init__(self, config: SoakConfig, broker: Mosquitto, progress: Callable[[str], None]) -> None:
        self.config = config
        self.broker = broker
        self.progress = progress
        handle = BrokerHandle(broker.host, broker.port, "mosquitto", broker.pid)
        rates = config.link_rates()
        self.station = Station(
            StationSpec(
                press_id=config.press_id,
                workdir=config.workdir / "station",
                broker=handle,
                seed=config.seed,
                to_board=rates,
                to_host=rates,
                proxy_disconnects_per_s=1.0 / config.unplug_every_s if config.unplug_every_s else 0.0,
                proxy_seed=config.seed,
                journal=True,
            )
        )
        self.sub = PersistentSubscriber(broker.host, broker.port, config.press_id)
        self.gate = asyncio.Lock()  # a broker kill never falls inside a command's exchange
        self.outages: list[BrokerOutage] = []
        self.agent_freezes = 0
        self.agent_kills = 0
        self.sent: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.unanswered: Counter[str] = Counter()
        self.rejections: list[str] = []

    async def hang_agent_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.agent_freeze_every_s)
            async with self.gate:
                self.station.freeze_agent()
                await asyncio.sleep(self.config.agent_freeze_s)
                self.station.thaw_agent()
                self.agent_freezes += 1
                # Commands wait until the agent has found its link stale and is back on it.
                await asyncio.sleep(3.0)
                await _until(self._board_connected, 30)
                self.progress(
                    f"agent stopped {self.config.agent_freeze_s} s and continued ({self.agent_freezes})"
                )

    async def kill_agent_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.agent_kill_every_s)
            async with self.gate:
                board, broker = self._agent_connects()
                await asyncio.to_thread(self.station.kill_agent)
                self.station.start_agent()
                self.agent_kills += 1
                # Commands wait until the new agent is on the board and on the broker.
                await _until(functools.partial(self._agent_back, (board, broker)), 60)
                self.progress(f"agent killed and restarted ({self.agent_kills})")

    async def kill_broker_periodically(self) -> None:
        every = self.config.broker_kill_every_s
        while True:
            await asyncio.sleep(every - self.config.broker_down_s)
            async with self.gate:
                killed = time.time()
                await asyncio.to_thread(self.broker.kill)
                await asyncio.sleep(self.config.broker_down_s)
                await asyncio.to_thread(self.broker.start)
                self.outages.append(BrokerOutage(killed, time.time()))
                self.progress(f"broker killed and back ({len(self.outages)})")

    async def command(self, verb: str, fields: dict[str, Any] | None = None) -> dict[str, Any] | None:
        async with self.gate:
            self.sent[verb] += 1
            try:
                async with OperatorClient(self.broker.host, self.broker.port, operator="soak") as op:
                    reply = await op.command(self.config.press_id, verb, fields, timeout_s=15.0)
            except (TimeoutError, aiomqtt.MqttError) as exc:
                self.unanswered[verb] += 1
                self.progress(f"{verb}: no reply ({exc!r})")
                return None
        if reply.get("accepted"):
            self.accepted[verb] += 1
        else:
            self.rejections.append(f"{verb}: {reply.get('error')}")
        return reply

    def _idle(self) -> bool:
        state = self.sub.state
        return (
            state is not None
            and bool(state.get("board_connected"))
            and state.get("state") in ("idle", "ready", "complete")
        )

    def _board_connected(self) -> bool:
        return bool((self.sub.state or {}).get("board_connected"))

    def _agent_connects(self) -> tuple[int, int]:
        """How often the agent's log says it connected to the board, and to the broker."""
        text = self.station.agent_log_text()
        return text.count(") connected on "), text.count("isopress.agent.mqtt: connected to ")

    def _agent_back(self, before: tuple[int, int]) -> bool:
        now = self._agent_connects()
        return now[0] > before[0] and now[1] > before[1]

    def _faulted(self) -> bool:
        state = self.sub.state
        return state is not None and bool(state.get("board_connected")) and state.get("state") == "fault"

    def _live_state(self, board_run_id: int, *states: str) -> bool:
        latest = self.sub.latest
        return latest is not None and latest["run_id"] == board_run_id and latest["state"] in states

    def _run_ended(self, board_run_id: int) -> bool:
        return any(r.get("board_run_id") == board_run_id for r in self.sub.runs.values())

    async def operate(self) -> None:
        """Recipes back to back: load, start, pause and resume in the hold, wait for the end."""
        while True:
            if not await _until(lambda: self._idle() or self._faulted(), 60):
                self.progress("the press did not come back to idle within 60 s")
                continue
            if self._faulted():  # as an operator would: the cause is gone, reset, go on
                state = self.sub.state or {}
                self.progress(f"the press is in {state.get('state')} ({state.get('faults')}): reset")
                await self.command("reset")
                await _until(self._idle, 10)
                continue
            if await self.command("load-recipe", {"recipe": SOAK_RECIPE}) is None:
                continue
            start = await self.command("start")
            if start is None or not start.get("accepted"):
                continue
            run_id = int(start["board"]["value"])
            if await _until(functools.partial(self._live_state, run_id, "holding"), 30):
                await self.command("pause")
                await asyncio.sleep(0.5)
                await self.command("resume")
            await _until(functools.partial(self._run_ended, run_id), 60)

    async def run(self) -> SoakReport:
        config = self.config
        began = time.monotonic()
        await asyncio.to_thread(self.station.start)
        sub_task = asyncio.create_task(self.sub.run())
        try:
            await asyncio.wait_for(self.sub.subscribed.wait(), 15)
            if not await _until(self._idle, 60):
                self.station.check_alive()
                raise RuntimeError(
                    f"the station never reached idle:\n{self.station.agent_log_text()[-3000:]}"
                )
            rss_start = self._rss()
            self.progress(
                f"station up (agent pid {self.station.agent_pid}, board pid {self.station.board.pid})"
            )
            tasks = [asyncio.create_task(self.operate())]
            if config.broker_kill_every_s:
                tasks.append(asyncio.create_task(self.kill_broker_periodically()))
            if config.agent_freeze_every_s:
                tasks.append(asyncio.create_task(self.hang_agent_periodically()))
            if config.agent_kill_every_s:
                tasks.append(asyncio.create_task(self.kill_agent_periodically()))
            try:
                end = began + config.duration_s
                next_note = time.monotonic() + 60
                while time.monotonic() < end:
                    await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
                    self.station.check_alive()
                    if time.monotonic() >= next_note:
                        next_note += 60
                        self.progress(self._note(began))
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if not self.broker.running:
                await asyncio.to_thread(self.broker.start)
            # Everything the board produced by now must reach the subscriber.
            journal = self._journal()
            upto = max(journal.samples) if journal.samples else -1
            first = min(s for b, s in self.sub.bodies if b == journal.boot_count) if self.sub.bodies else 0
            await _until(lambda: self.sub.has_all(journal.boot_count, first, upto), config.settle_s)
            rss_end = self._rss()
            elapsed = time.monotonic() - began
        finally:
            board_summary = await asyncio.to_thread(self.station.stop)
            sub_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sub_task
        return self._report(elapsed, upto, rss_start, rss_end, board_summary)

    def _rss(self) -> dict[str, int]:
        return {"agent": rss_kib(self.station.agent_pid), "board": rss_kib(self.station.board.pid)}

    def _note(self, began: float) -> str:
        samples = len(self.sub.bodies)
        return (
            f"{time.monotonic() - began:.0f} s: {samples} samples at the subscriber, "
            f"{sum(self.sent.values())} commands, {len(self.outages)} broker kills"
        )

    def _journal(self, boot_count: int | None = None) -> BoardJournal:
        board = self.station.board
        boot = board.boot_count if boot_count is None else boot_count
        return BoardJournal.read(board.journal_path(boot), boot)

    def _report(
        self,
        elapsed: float,
        upto: int,
        rss_start: dict[str, int],
        rss_end: dict[str, int],
        board_summary: dict[str, Any] | None,
    ) -> SoakReport:
        journal = self._journal()
        log_text = self.station.agent_log_text()
        connects = agent_connect_times(log_text)
        for outage in self.outages:
            outage.agent_connected_at = next((t for t in connects if t > outage.killed_at), None)
        executed: Counter[str] = Counter(c.name for c in journal.commands if c.name in _OPERATOR_COMMANDS)
        runs: Counter[str] = Counter(str(r.get("outcome")) for r in self.sub.runs.values())
        completed = runs.pop("complete", 0)
        proxy = self.station.proxy
        return SoakReport(
            config={k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.config).items()},
            elapsed_s=elapsed,
            samples=[
                audit_bodies(
                    journal,
                    self.sub.boot(journal.boot_count),
                    historical={s for b, s in self.sub.historical if b == journal.boot_count},
                    upto_seq=upto,
                )
            ],
            commands_sent=self.sent,
            commands_accepted=self.accepted,
            commands_unanswered=self.unanswered,
            command_rejections=self.rejections,
            commands_executed=executed,
            history_requests_executed=sum(1 for c in journal.commands if c.name == "REQUEST_HISTORY"),
            runs_completed=completed,
            runs_other=runs,
            outages=self.outages,
            faults={
                **(proxy.stats.as_dict() if proxy is not None else {}),
                "broker_kills": len(self.outages),
                "agent_sigstops": self.agent_freezes,
                "agent_sigkills": self.agent_kills,
            },
            agent=agent_counters(log_text),
            board_link=dict((board_summary or {}).get("link") or {}),
            board_loop={
                k: (board_summary or {}).get(k)
                for k in ("loop_overruns", "loop_us_max", "loop_us_p99", "late_us_max", "heap_free_min")
            },
            subscriber_connects=self.sub.connects,
            rss_kib={
                "agent": {"start": rss_start["agent"], "end": rss_end["agent"]},
                "board": {"start": rss_start["board"], "end": rss_end["board"]},
            },
            reconnect_limit_s=self.config.reconnect_limit_s,
        )


async def run_soak(config: SoakConfig, *, progress: Callable[[str], None] | None = None) -> SoakReport:
    """Run the soak (a private Mosquitto under ``config.workdir``) and return its report."""
    say = progress or (lambda _text: None)
    config.workdir.mkdir(parents=True, exist_ok=True)
    with Mosquitto(config.workdir / "broker") as broker:
        return await _Soak(config, broker, say).run()


def main(argv: list[str] | None = None) -> int:
    """``python -m isopress.soak``: run, print the summary, write the JSON; 1 on a problem."""
    parser = argparse.ArgumentParser(prog="python -m isopress.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration-s",
        type=float,
        default=float(os.environ.get("SOAK_S", "3600")),
        help="default $SOAK_S or 3600",
    )
    parser.add_argument("--broker-kill-every-s", type=float, default=30.0)
    parser.add_argument("--byte-error-rate", type=float, default=1e-4)
    parser.add_argument("--unplug-every-s", type=float, default=300.0)
    parser.add_argument("--agent-freeze-every-s", type=float, default=450.0)
    parser.add_argument("--agent-kill-every-s", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary folder")
    parser.add_argument(
        "--json", type=Path, default=None, help="write the report here (default workdir/soak.json)"
    )
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="isopress-soak-"))
    config = SoakConfig(
        workdir=workdir,
        duration_s=args.duration_s,
        broker_kill_every_s=args.broker_kill_every_s,
        byte_error_rate=args.byte_error_rate,
        unplug_every_s=args.unplug_every_s,
        agent_freeze_every_s=args.agent_freeze_every_s,
        agent_kill_every_s=args.agent_kill_every_s,
        seed=args.seed,
    )

    def say(text: str) -> None:
        print(f"[soak {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    say(f"{config.duration_s:.0f} s in {workdir}")
    report = asyncio.run(run_soak(config, progress=say))
    out = args.json or workdir / "soak.json"
    out.write_text(json.dumps(report.as_dict(), indent=2))
    print(report.text())
    print(f"  report    {out}")
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
