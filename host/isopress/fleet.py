"""``isopress fleet``: N presses on one broker, and what it costs to watch them all.

N :class:`~isopress.rig.Station` s (each the real firmware under MicroPython in real time
on a pty, and a real ``isopress agent`` process) against one broker; each presses a recipe
commanded over MQTT by an operator client, and one subscriber (this process) takes every
press's telemetry. After a warm-up, over a window of ``duration_s``, per press and overall:

- **produced / delivered**: the board's sample sequence numbers taken in the window (by
  the sample's ``wall_time``) and how many of them reached the subscriber; **missing** is
  every hole in the sequence of all the samples recorded (window and drain), so a sample
  lost at the window's edge counts too. The subscriber waits up to ``drain_s`` after the
  window for late (backfilled) samples before it calls a hole a loss.
- **latency**: subscriber arrival (``time.time()`` as the message is taken from the
  client) minus the sample's ``wall_time``. ``wall_time`` is the agent's estimate of when
  the board took the sample (:class:`~isopress.agent.board_clock.BoardClock`: board time
  plus the smallest host-minus-board offset of the recent frames, anchored to UTC), and
  every process here reads the same system clock, so no clock of our own is needed. The
  estimate is late by the fastest frame's trip over the pty (tens of µs), so a latency is
  never negative and is short by at most that much (plus ``board_ms``'s 1 ms truncation).
  Backfilled (``historical``) samples count, with their real, large latency: a sample
  that came late came late.
- **CPU and memory** from ``/proc``: each agent's and each board's CPU (utime + stime over
  the window, % of one core) and resident set size; the broker's (Mosquitto's pid; the
  embedded broker is a thread of this process, so it is counted with the subscriber); the
  subscriber's own; the machine's busy share of all cores and its load average (other
  work on the machine is what the machine's figure has beyond ours).

The telemetry rate is the board's: ``control_period_ms`` x ``telemetry_decimation`` in its
config (:func:`board_rate_settings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import aiomqtt

from .rig import (
    BrokerHandle,
    OperatorClient,
    Station,
    StationError,
    StationSpec,
    open_broker,
    sim_config_text,
)

__all__ = [
    "MAX_PRESSES",
    "Fleet",
    "FleetError",
    "FleetReport",
    "FleetSpec",
    "PressSamples",
    "TelemetryMonitor",
    "board_rate_settings",
    "format_report",
    "run_fleet",
]

MAX_PRESSES = 64  # each press is two processes: far beyond what a small machine holds
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class FleetError(ValueError):
    """A fleet that cannot be run as asked; the message names the setting and why."""


# -- settings ------------------------------------------------------------------------------------
def board_rate_settings(rate_hz: float) -> dict[str, int]:
    """The board config (``control_period_ms``, ``telemetry_decimation``) for a telemetry rate.

    The board sends one sample every ``telemetry_decimation`` control ticks; the control
    period stays the default 10 ms where the rate allows it (5 ms otherwise).
    """
    if not (isinstance(rate_hz, int | float) and math.isfinite(rate_hz) and rate_hz > 0):
        raise FleetError(f"rate: {rate_hz!r} Hz: must be a positive number of samples per second")
    period_ms = 1000.0 / rate_hz
    for control_ms in (10, 5):
        decimation = round(period_ms / control_ms)
        if 1 <= decimation <= 100 and abs(decimation * control_ms - period_ms) <= 1e-6 * period_ms:
            return {"control_period_ms": control_ms, "telemetry_decimation": decimation}
    raise FleetError(
        f"rate: {rate_hz:g} Hz is not a rate the board sends: its telemetry period is "
        "control_period_ms (10, or 5) x telemetry_decimation (1 to 100), so the rate is 100/k Hz "
        "(100, 50, 25, 20, 10, 5, 2, 1, ...) or 200/k Hz (200, 40, 8, ...)"
    )


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """What ``isopress fleet`` runs; :meth:`check` says what is wrong with it."""

    presses: int
    rate_hz: float
    duration_s: float = 10.0
    warmup_s: float = 3.0
    drain_s: float = 5.0
    broker: str = "auto"  # auto, mosquitto, embedded
    workdir: Path | None = None  # None: a temporary folder, removed afterwards

    def check(self) -> None:
        """Raise :class:`FleetError` naming the first setting that is out of range."""
        if not isinstance(self.presses, int) or not 1 <= self.presses <= MAX_PRESSES:
            raise FleetError(
                f"presses: {self.presses!r}: must be a whole number from 1 to {MAX_PRESSES} "
                "(each press is a MicroPython process and an agent process)"
            )
        board_rate_settings(self.rate_hz)
        if not (math.isfinite(self.duration_s) and 1.0 <= self.duration_s <= 3600.0):
            raise FleetError(f"duration: {self.duration_s!r} s: must be from 1 to 3600 seconds")
        if not (math.isfinite(self.warmup_s) and 0.0 <= self.warmup_s <= 120.0):
            raise FleetError(f"warmup: {self.warmup_s!r} s: must be from 0 to 120 seconds")
        if not (math.isfinite(self.drain_s) and 0.5 <= self.drain_s <= 120.0):
            raise FleetError(f"drain: {self.drain_s!r} s: must be from 0.5 to 120 seconds")
        if self.broker not in ("auto", "mosquitto", "embedded"):
            raise FleetError(f"broker: {self.broker!r}: must be auto, mosquitto or embedded")


# -- /proc ----------------------------------------------------------------------------------------
def _proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process, seconds (None if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _proc_rss_mb(pid: int) -> float | None:
    """Resident set size of a process, MB (None if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return (total - idle) / _CLK_TCK, total / _CLK_TCK


def load_average() -> tuple[float, float, float]:
    """The machine's 1, 5 and 15 minute load averages."""
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


class _CpuWindow:
    """CPU seconds of a set of processes and of the machine between two readings."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.started = time.monotonic()
        self.cpu0 = {name: _proc_cpu_s(pid) for name, pid in pids.items()}
        self.machine0 = _machine_busy_s()

    def close(self) -> tuple[dict[str, float | None], float, float]:
        """(% of one core per name, machine busy % of all cores, seconds elapsed)."""
        elapsed = time.monotonic() - self.started
        busy1, total1 = _machine_busy_s()
        busy0, total0 = self.machine0
        machine = 100.0 * (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
        out: dict[str, float | None] = {}
        for name, pid in self.pids.items():
            before, after = self.cpu0[name], _proc_cpu_s(pid)
            out[name] = (
                None if before is None or after is None else round(100.0 * (after - before) / elapsed, 2)
            )
        return out, round(machine, 1), elapsed


# -- the report ------------------------------------------------------------------------------------
@dataclass(slots=True)
class LatencyMs:
    """Sample-to-subscriber latency over a set of samples, ms."""

    p50: float | None
    p99: float | None
    max: float | None
    min: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> LatencyMs:
        if not values:
            return cls(None, None, None, None)
        ordered = sorted(values)

        def rank(q: float) -> float:
            return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 2)

        return cls(rank(0.5), rank(0.99), round(ordered[-1], 2), round(ordered[0], 2))


@dataclass(slots=True)
class PressResult:
    """One press over the window."""

    press_id: str
    boot_count: int | None
    seq_first: int | None  # the board's first and last sample taken in the window
    seq_last: int | None
    produced: int  # seq_last - seq_first + 1
    delivered: int  # of those, at the subscriber (each once)
    missing: int  # holes in everything recorded (window and drain)
    duplicates: int  # copies of a sample already delivered (delivery is at least once)
    historical: int  # delivered samples flagged historical (backfilled or replayed)
    produced_per_s: float  # the board's rate as measured (below nominal: the board fell behind)
    latency_ms: LatencyMs
    agent_cpu_pct: float | None
    agent_rss_mb: float | None
    board_cpu_pct: float | None
    board_rss_mb: float | None


@dataclass(slots=True)
class FleetReport:
    """The whole fleet over the window (``asdict`` is the ``--json`` output)."""

    presses: int
    rate_hz: float
    window_s: float
    broker_kind: str
    per_press: list[PressResult]
    produced: int
    delivered: int
    missing: int
    duplicates: int
    historical: int
    latency_ms: LatencyMs
    agents_cpu_pct: float  # sums, % of one core
    agents_rss_mb: float
    boards_cpu_pct: float
    boards_rss_mb: float
    broker_cpu_pct: float | None  # None: the embedded broker (in the subscriber's figure)
    broker_rss_mb: float | None
    subscriber_cpu_pct: float | None
    machine_busy_pct: float  # of all cores, everything on the machine
    others_cpu_pct: float  # % of one core: the machine's busy time beyond the fleet's processes
    cores: int
    load_average: tuple[float, float, float]
    notes: list[str] = field(default_factory=list)

    @property
    def zero_loss(self) -> bool:
        """No sample missing, and every press delivered."""
        return self.missing == 0 and all(p.delivered > 0 for p in self.per_press)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["zero_loss"] = self.zero_loss
        return out


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_report(report: FleetReport) -> str:
    """The report as a table a person reads."""
    head = (
        f"{'press':<10} {'seq range':>15} {'produced':>8} {'deliv.':>7} {'missing':>7} {'dup':>4} "
        f"{'hist':>5} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'agent %':>7} {'agent MB':>8} "
        f"{'board %':>7}"
    )
    lines = [
        f"isopress fleet: {report.presses} press(es) at {report.rate_hz:g} Hz, "
        f"{report.window_s:.1f} s window, {report.broker_kind} broker",
        "",
        head,
        "-" * len(head),
    ]
    for p in report.per_press:
        seq = "-" if p.seq_first is None else f"{p.seq_first}..{p.seq_last}"
        lat = p.latency_ms
        lines.append(
            f"{p.press_id:<10} {seq:>15} {p.produced:>8} {p.delivered:>7} {p.missing:>7} {p.duplicates:>4} "
            f"{p.historical:>5} {_fmt(lat.p50):>7} {_fmt(lat.p99):>7} {_fmt(lat.max):>7} "
            f"{_fmt(p.agent_cpu_pct):>7} {_fmt(p.agent_rss_mb):>8} {_fmt(p.board_cpu_pct):>7}"
        )
    lat = report.latency_ms
    lines += [
        "-" * len(head),
        f"{'overall':<10} {'':>15} {report.produced:>8} {report.delivered:>7} {report.missing:>7} "
        f"{report.duplicates:>4} {report.historical:>5} {_fmt(lat.p50):>7} {_fmt(lat.p99):>7} "
        f"{_fmt(lat.max):>7} {_fmt(report.agents_cpu_pct):>7} {_fmt(report.agents_rss_mb, 0):>8} "
        f"{_fmt(report.boards_cpu_pct):>7}",
        "",
        f"zero loss: {'yes' if report.zero_loss else 'NO'}; latency = subscriber arrival - the sample's "
        "wall_time (the agent's board clock); CPU in % of one core",
        f"broker ({report.broker_kind}): "
        + (
            f"{_fmt(report.broker_cpu_pct)} % CPU, {_fmt(report.broker_rss_mb)} MB"
            if report.broker_cpu_pct is not None
            else "in this process (counted with the subscriber)"
        )
        + f"; subscriber (this process): {_fmt(report.subscriber_cpu_pct)} % CPU",
        f"machine: {report.cores} cores, {report.machine_busy_pct:.1f} % busy during the window, of which "
        f"other work {report.others_cpu_pct:.0f} % of a core; load average "
        f"{' '.join(map(str, report.load_average))}",
    ]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


# -- the subscriber -----------------------------------------------------------------------------
class PressSamples:
    """The samples of one press the subscriber recorded, each once, by boot."""

    def __init__(self) -> None:
        # boot -> seq -> (wall time, arrival, historical)
        self.boots: dict[int, dict[int, tuple[float, float, bool]]] = {}
        self.duplicates = 0
        self.newest_wall = 0.0
        self.last_state: str | None = None

    def add(self, boot: int, seq: int, wall: float, arrival: float, historical: bool) -> None:
        samples = self.boots.setdefault(boot, {})
        if seq in samples:
            self.duplicates += 1
            return
        samples[seq] = (wall, arrival, historical)
        self.newest_wall = max(self.newest_wall, wall)

    def holes(self) -> int:
        return sum(max(s) - min(s) + 1 - len(s) for s in self.boots.values() if s)


class TelemetryMonitor:
    """One MQTT subscriber to every press's telemetry and state (``isopress/+/...``)."""

    def __init__(self, broker: BrokerHandle) -> None:
        self.broker = broker
        self._client: aiomqtt.Client | None = None  # made in __aenter__ (it needs the loop)
        self.states: dict[str, tuple[float, dict[str, Any]]] = {}  # press -> (arrival, state payload)
        self.streams: dict[str, PressSamples] = {}
        self.record_from_wall: float | None = None  # None: keep nothing
        self.messages = 0
        self._reader: asyncio.Task[None] | None = None
        self._state_changed = asyncio.Condition()

    async def __aenter__(self) -> TelemetryMonitor:
        self._client = client = aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            identifier=f"isopress-fleet-{os.getpid()}",
            protocol=aiomqtt.ProtocolVersion.V5,
        )
        await client.__aenter__()
        await client.subscribe("isopress/+/telemetry", qos=1)
        await client.subscribe("isopress/+/state", qos=1)
        self._reader = asyncio.create_task(self._read(client))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._client is not None:
            await self._client.__aexit__(exc_type, exc, tb)

    def check(self) -> None:
        """Raise if the reader died."""
        if self._reader is not None and self._reader.done() and not self._reader.cancelled():
            exc = self._reader.exception()
            raise StationError(f"the fleet's telemetry subscriber stopped: {exc!r}")

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            arrival = time.time()  # first thing: the latency ends here
            payload = message.payload
            assert isinstance(payload, bytes | bytearray)  # what paho delivers
            _, press, kind = message.topic.value.split("/", 2)
            self.messages += 1
            if kind == "state":
                self.states[press] = (arrival, json.loads(payload))
                async with self._state_changed:
                    self._state_changed.notify_all()
                continue
            stream = self.streams.get(press)
            if stream is None:
                stream = self.streams[press] = PressSamples()
            samples = json.loads(payload)["samples"]
            stream.last_state = samples[-1]["state"]
            start = self.record_from_wall
            if start is None:
                continue
            for s in samples:
                wall = datetime.fromisoformat(s["wall_time"]).timestamp()
                if wall >= start:
                    stream.add(s["boot_count"], s["seq"], wall, arrival, s["historical"])

    def ready(self, press: str, since: float) -> bool:
        """The press's agent said, after ``since``, that its board is connected and idle."""
        got = self.states.get(press)
        return (
            got is not None
            and got[0] >= since
            and got[1].get("board_connected") is True
            and (got[1].get("state") == "idle")
        )

    def in_state(self, press: str, state: str) -> bool:
        """The press's latest retained state names this machine state."""
        got = self.states.get(press)
        return got is not None and got[1].get("state") == state

    async def wait_state(self, press: str, state: str, *, timeout_s: float) -> None:
        """Until the press's retained state names ``state`` (TimeoutError after ``timeout_s``)."""
        async with self._state_changed:
            reached = self._state_changed.wait_for(lambda: self.in_state(press, state))
            await asyncio.wait_for(reached, timeout_s)

    def begin(self, wall: float) -> None:
        """Record samples taken from ``wall`` on; forget what was recorded before."""
        self.streams = {press: PressSamples() for press in self.streams}
        for stream in self.streams.values():
            stream.last_state = None
        self.record_from_wall = wall

    def settled(self, presses: Sequence[str], until_wall: float) -> bool:
        """Every press delivered a sample taken after ``until_wall`` and has no holes."""
        for press in presses:
            stream = self.streams.get(press)
            if stream is None or stream.newest_wall <= until_wall or stream.holes():
                return False
        return True

    def result(self, press: str, t0: float, t1: float, rate_hz: float) -> PressResult:
        """The press's samples in [t0, t1] (CPU and memory filled in by the caller)."""
        stream = self.streams.get(press) or PressSamples()
        notes_boot = None
        first = last = None
        produced = delivered = historical = 0
        latencies: list[float] = []
        for boot, samples in sorted(stream.boots.items()):
            in_window = sorted((seq, v) for seq, v in samples.items() if t0 <= v[0] <= t1)
            if not in_window:
                continue
            notes_boot = boot
            first, last = in_window[0][0], in_window[-1][0]
            produced += last - first + 1
            delivered += len(in_window)
            historical += sum(1 for _, v in in_window if v[2])
            latencies += [(v[1] - v[0]) * 1000.0 for _, v in in_window]
        return PressResult(
            press_id=press,
            boot_count=notes_boot,
            seq_first=first,
            seq_last=last,
            produced=produced,
            delivered=delivered,
            missing=stream.holes(),
            duplicates=stream.duplicates,
            historical=historical,
            produced_per_s=round(produced / (t1 - t0), 2) if t1 > t0 else 0.0,
            latency_ms=LatencyMs.of(latencies),
            agent_cpu_pct=None,
            agent_rss_mb=None,
            board_cpu_pct=None,
            board_rss_mb=None,
        )

    def latencies_ms(self, presses: Sequence[str], t0: float, t1: float) -> list[float]:
        out: list[float] = []
        for press in presses:
            stream = self.streams.get(press)
            for samples in stream.boots.values() if stream is not None else ():
                out += [(a - w) * 1000.0 for w, a, _ in samples.values() if t0 <= w <= t1]
        return out


# -- the fleet ------------------------------------------------------------------------------------
def recipe_for(hold_s: float) -> dict[str, Any]:
    """A gentle recipe the window fits in: 10 MPa at 2 MPa/s, hold, down at 1 MPa/s."""
    return {
        "name": "fleet",
        "segments": [
            {"kind": "ramp", "target_mpa": 10.0, "rate_mpa_s": 2.0},
            {"kind": "hold", "duration_s": round(min(7000.0, max(1.0, hold_s)), 1)},
            {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.0},
        ],
    }


class Fleet:
    """Press stations against one broker, watched by one subscriber.

    ``async with Fleet(broker, workdir, rate_hz=100) as fleet: await fleet.grow(4);
    report = await fleet.measure(10)``. :meth:`grow` and :meth:`shrink` change the number
    of presses of a running fleet (press ids are never reused: a retained state or a
    persistent session of a stopped press cannot be mistaken for a new one's).
    """

    def __init__(
        self,
        broker: BrokerHandle,
        workdir: Path,
        *,
        rate_hz: float,
        hold_s: float = 3600.0,
        log_level: str = "warning",
        ready_timeout_s: float | None = None,
    ) -> None:
        self.broker = broker
        self.workdir = workdir
        self.rate_hz = rate_hz
        self.board_config = sim_config_text(board_rate_settings(rate_hz))
        self.hold_s = hold_s
        self.log_level = log_level
        self.ready_timeout_s = ready_timeout_s
        self.stations: list[Station] = []
        self.monitor = TelemetryMonitor(broker)
        self._operator = OperatorClient(broker.host, broker.port, operator="fleet")
        self._next = 1
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fleet-station")

    async def __aenter__(self) -> Fleet:
        await self.monitor.__aenter__()
        await self._operator.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self.shrink(0)
        finally:
            await self._operator.__aexit__(exc_type, exc, tb)
            await self.monitor.__aexit__(exc_type, exc, tb)
            self._pool.shutdown(wait=True)

    @property
    def press_ids(self) -> list[str]:
        return [st.spec.press_id for st in self.stations]

    async def _in_pool(self, calls: Sequence[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(self._pool, c) for c in calls)))

    async def grow(self, total: int, *, batch: int = 4) -> None:
        """Start presses until there are ``total``, ``batch`` at a time (an agent's start-up
        is a second of CPU: a storm of them starves the presses already running); each
        press runs its recipe once its agent reports the board connected and idle."""
        while len(self.stations) < total:
            await self._grow_batch(min(batch, total - len(self.stations)))

    async def _grow_batch(self, count: int) -> None:
        new: list[Station] = []
        for _ in range(count):
            n = self._next
            self._next += 1
            spec = StationSpec(
                press_id=f"fleet-{n:02d}",
                workdir=self.workdir / f"fleet-{n:02d}",
                broker=self.broker,
                seed=n,
                board_config_text=self.board_config,
                log_level=self.log_level,
            )
            new.append(Station(spec))
        since = time.time()
        try:
            await self._in_pool([st.start for st in new])
        finally:
            self.stations += new
        timeout_s = self.ready_timeout_s or 60.0 + 5.0 * count
        pending = {st.spec.press_id: st for st in new}
        deadline = time.monotonic() + timeout_s
        while pending:
            for press, st in list(pending.items()):
                st.check_alive()
                if self.monitor.ready(press, since):
                    del pending[press]
            self.monitor.check()
            if pending and time.monotonic() > deadline:
                states = {
                    p: self.monitor.states.get(p, (0.0, {}))[1].get("state", "no state yet") for p in pending
                }
                raise StationError(
                    f"{len(pending)} press(es) not connected and idle {timeout_s:.0f} s after they "
                    f"started: {states}"
                )
            await asyncio.sleep(0.1)
        await asyncio.gather(*(self._press_recipe(st.spec.press_id) for st in new))

    async def _press_recipe(self, press: str) -> None:
        loaded = await self._operator.command(press, "load-recipe", {"recipe": recipe_for(self.hold_s)})
        if not loaded.get("accepted"):
            raise StationError(f"{press}: the recipe was refused: {loaded}")
        # The agent's view of the machine state follows the board's samples (one every
        # 100 ms at 10 Hz): start once it says "ready", or the agent refuses it as idle.
        await self.monitor.wait_state(press, "ready", timeout_s=15.0)
        started = await self._operator.command(press, "start", {})
        if not started.get("accepted"):
            raise StationError(f"{press}: start was refused: {started}")

    async def shrink(self, total: int) -> None:
        """Stop the newest presses until there are ``total``."""
        gone = self.stations[total:]
        del self.stations[total:]
        if gone:
            await self._in_pool([st.stop for st in gone])

    def _pids(self) -> dict[str, int]:
        pids = {"subscriber": os.getpid()}
        if self.broker.process_pid is not None:
            pids["broker"] = self.broker.process_pid
        for st in self.stations:
            pids["agent:" + st.spec.press_id] = st.agent_pid
            pids["board:" + st.spec.press_id] = st.board.pid
        return pids

    async def measure(self, duration_s: float, *, warmup_s: float = 3.0, drain_s: float = 5.0) -> FleetReport:
        """Warm up, then measure every press over ``duration_s`` (see the module docstring)."""
        presses = self.press_ids
        await asyncio.sleep(warmup_s)
        for st in self.stations:
            st.check_alive()
        t0 = time.time()
        self.monitor.begin(t0 - 1.0)  # a second before: a hole at the window's edge shows
        cpu = _CpuWindow(self._pids())
        await asyncio.sleep(duration_s)
        t1 = time.time()
        cpu_pct, machine_pct, _ = cpu.close()
        rss = {name: _proc_rss_mb(pid) for name, pid in cpu.pids.items()}
        loadavg = load_average()
        drain_until = time.monotonic() + drain_s
        while time.monotonic() < drain_until and not self.monitor.settled(presses, t1):
            self.monitor.check()
            await asyncio.sleep(0.1)
        for st in self.stations:
            st.check_alive()
        per_press = []
        notes = []
        for press in presses:
            r = self.monitor.result(press, t0, t1, self.rate_hz)
            r.agent_cpu_pct, r.agent_rss_mb = cpu_pct["agent:" + press], _round(rss["agent:" + press])
            r.board_cpu_pct, r.board_rss_mb = cpu_pct["board:" + press], _round(rss["board:" + press])
            if r.produced_per_s < 0.97 * self.rate_hz:
                notes.append(f"{press}: the board sent {r.produced_per_s:g} samples/s of {self.rate_hz:g}")
            per_press.append(r)
        self.monitor.record_from_wall = None
        lat = LatencyMs.of(self.monitor.latencies_ms(presses, t0, t1))
        cores = os.cpu_count() or 1
        ours = sum(v for v in cpu_pct.values() if v is not None)
        return FleetReport(
            presses=len(presses),
            rate_hz=self.rate_hz,
            window_s=round(t1 - t0, 2),
            broker_kind=self.broker.kind,
            per_press=per_press,
            produced=sum(p.produced for p in per_press),
            delivered=sum(p.delivered for p in per_press),
            missing=sum(p.missing for p in per_press),
            duplicates=sum(p.duplicates for p in per_press),
            historical=sum(p.historical for p in per_press),
            latency_ms=lat,
            agents_cpu_pct=round(sum(p.agent_cpu_pct or 0.0 for p in per_press), 2),
            agents_rss_mb=round(sum(p.agent_rss_mb or 0.0 for p in per_press), 1),
            boards_cpu_pct=round(sum(p.board_cpu_pct or 0.0 for p in per_press), 2),
            boards_rss_mb=round(sum(p.board_rss_mb or 0.0 for p in per_press), 1),
            broker_cpu_pct=cpu_pct.get("broker"),
            broker_rss_mb=_round(rss.get("broker")),
            subscriber_cpu_pct=cpu_pct["subscriber"],
            machine_busy_pct=machine_pct,
            others_cpu_pct=round(max(0.0, machine_pct * cores - ours), 1),
            cores=cores,
            load_average=loadavg,
            notes=notes,
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="isopress-fleet-") as tmp:
        yield Path(tmp)


async def _run(spec: FleetSpec, workdir: Path) -> FleetReport:
    with open_broker(workdir, prefer=spec.broker) as broker:
        hold_s = spec.warmup_s + spec.duration_s + spec.drain_s + 30.0
        async with Fleet(broker, workdir, rate_hz=spec.rate_hz, hold_s=hold_s) as fleet:
            await fleet.grow(spec.presses)
            return await fleet.measure(spec.duration_s, warmup_s=spec.warmup_s, drain_s=spec.drain_s)


def run_fleet(spec: FleetSpec) -> FleetReport:
    """Check ``spec``, run the fleet and return its report (raises FleetError, StationError)."""
    spec.check()
    with _workdir(spec.workdir) as workdir:
        return asyncio.run(_run(spec, workdir))
