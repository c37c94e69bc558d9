"""``isopress demo``: the press's main job on this machine, with nothing installed by hand.

What runs, each part the real one:

- a broker: a private Mosquitto (``deploy/mosquitto``'s config, anonymous on loopback)
  when the binary is installed, otherwise the embedded broker (:mod:`isopress.minibroker`);
- the virtual board: the firmware under the MicroPython unix port, RP2040-sized heap, in
  real time, its serial link on a pty (:class:`~isopress.virtual_board.VirtualBoard`);
- the agent: ``isopress agent`` as a separate process, on that pty and that broker;
- an operator (``demo``): loads a short recipe and starts it over MQTT, as any operator
  tool does (:class:`~isopress.rig.OperatorClient`), then follows the telemetry on one
  live progress line until the run summary arrives.

It ends with the run record's folder, its plot and the ``mosquitto_sub`` line that shows
the telemetry (``--keep-running`` keeps everything up for it). Ctrl-C at any time stops
the parts in the safe order: an abort to the board if a run is on, the board (its outputs
safe: pump off, vent closed, dump valve open), the agent, the broker.

Files go to ``--workdir`` (default ``build/demo``): ``press/runs/`` keeps every demo's run
record; the spool, the broker's files and the logs are the last demo's. The board's boot
count is kept in ``boot_count`` and goes up by one per demo, as a real board's does per
power cycle, so a run left open by an interrupted demo is closed (interrupted) by the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiomqtt
from pydantic import ValidationError

from .agent.recipe import segments_duration_s

__all__ = ["DEFAULT_RECIPE", "DemoError", "DemoOptions", "load_recipe_file", "main_loop", "run_demo"]

# About 60 s on the sim press: up at 1.5 MPa/s (its pump gives about 2 MPa/s at low
# pressure), a 10 s hold, down at the profile's 1 MPa/s.
DEFAULT_RECIPE: dict[str, Any] = {
    "name": "demo: 30 MPa, hold 10 s",
    "segments": [
        {"kind": "ramp", "target_mpa": 30.0, "rate_mpa_s": 1.5},
        {"kind": "hold", "duration_s": 10.0},
        {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.0},
    ],
}
OPERATOR = "demo"
_CONNECT_TIMEOUT_S = 45.0  # board boot + agent start + handshake, on a loaded machine
_RUN_TAIL_S = 60.0  # beyond the recipe's nominal length before the demo gives up
_ABORT_TIMEOUT_S = 3.0


class DemoError(RuntimeError):
    """Something the demo needs did not start or stopped; the message says what and why."""


@dataclass(slots=True)
class DemoOptions:
    """What ``isopress demo``'s command line sets."""

    workdir: Path = Path("build/demo")
    recipe: dict[str, Any] | None = None  # None: DEFAULT_RECIPE
    broker: str = "auto"  # auto, mosquitto, embedded
    press_id: str = "demo"
    keep_running: bool = False
    progress: str = "auto"  # auto (line on a terminal, else log), line, log


def load_recipe_file(path: Path) -> dict[str, Any]:
    """A recipe JSON file, validated as the agent will (DemoError names the field)."""
    from .agent.recipe import Recipe

    try:
        data = json.loads(path.read_text())
        Recipe.model_validate(data)
    except OSError as exc:
        raise DemoError(f"--recipe {path}: {exc.strerror}") from None
    except ValueError as exc:  # JSON or validation
        if isinstance(exc, ValidationError):
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(recipe)'}: {e['msg']}" for e in exc.errors()
            )
            raise DemoError(f"--recipe {path}: {problems}") from None
        raise DemoError(f"--recipe {path}: not JSON: {exc}") from None
    assert isinstance(data, dict)
    return data


def nominal_s(recipe: dict[str, Any]) -> float:
    """How long a recipe takes if every ramp runs at the board's rate from 0 MPa."""
    return segments_duration_s(
        (seg["kind"], seg.get("target_mpa"), seg.get("rate_mpa_s"), seg.get("duration_s"))
        for seg in recipe["segments"]
    )


def _segment_label(recipe: dict[str, Any], index: int) -> str:
    segments = recipe["segments"]
    if not 0 <= index < len(segments):
        return "-"
    seg = segments[index]
    what = (
        f"ramp to {seg['target_mpa']:g} MPa at {seg['rate_mpa_s']:g} MPa/s"
        if seg["kind"] == "ramp"
        else f"hold {seg['duration_s']:g} s"
    )
    return f"{index + 1}/{len(segments)} {what}"


class _Progress:
    """The live progress line: rewritten in place on a terminal, a line a second otherwise."""

    def __init__(self, out: TextIO, mode: str, recipe: dict[str, Any]) -> None:
        self.out = out
        self.inline = mode == "line" or (mode == "auto" and out.isatty())
        self.recipe = recipe
        self._last = 0.0
        self._started: float | None = None
        self._shown = False
        self.lines = 0

    def sample(self, s: dict[str, Any]) -> None:
        now = time.monotonic()
        if self._started is None:
            self._started = now
        if now - self._last < (0.1 if self.inline else 1.0):
            return
        self._last = now
        text = (
            f"[{now - self._started:5.1f} s] {s['state']:<14} {s['pressure_mpa']:7.2f} MPa"
            f"  setpoint {s['setpoint_mpa']:7.2f} MPa  segment {_segment_label(self.recipe, s['segment'])}"
        )
        self.lines += 1
        if self.inline:
            self.out.write("\r\x1b[K" + text)
            self._shown = True
        else:
            self.out.write("progress " + text + "\n")
        self.out.flush()

    def end(self) -> None:
        if self._shown:
            self.out.write("\n")
            self.out.flush()
            self._shown = False


def _next_boot_count(workdir: Path) -> int:
    path = workdir / "boot_count"
    try:
        boot = int(path.read_text().strip()) + 1
    except (OSError, ValueError):
        boot = 1
    path.write_text(f"{boot}\n")
    return boot


def _fresh(workdir: Path) -> None:
    """The last demo's spool, broker files and logs go; run records stay."""
    press = workdir / "press"
    for name in ("spool.sqlite3", "spool.sqlite3-wal", "spool.sqlite3-shm", "agent.log"):
        (press / name).unlink(missing_ok=True)
    shutil.rmtree(workdir / "broker", ignore_errors=True)


def watch_command(host: str, port: int, press_id: str) -> str:
    """The command line that shows the press's MQTT traffic."""
    return f"mosquitto_sub -h {host} -p {port} -t 'isopress/{press_id}/#' -v"


async def main_loop(options: DemoOptions, out: TextIO, *, stop: asyncio.Event) -> int:
    """The demo inside a running event loop; ``stop`` set (Ctrl-C) ends it early, safely.

    Returns the exit code: 0 for a complete run, 1 for any other outcome, 130 when stopped.
    """
    from .rig import Station, StationSpec, open_broker

    recipe = options.recipe or DEFAULT_RECIPE
    workdir = options.workdir.resolve()  # every path printed works from any folder
    workdir.mkdir(parents=True, exist_ok=True)
    _fresh(workdir)
    boot = _next_boot_count(workdir)
    started = time.monotonic()

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    say(
        f"isopress demo: recipe {recipe['name']!r} ({len(recipe['segments'])} segments, "
        f"about {nominal_s(recipe):.0f} s)"
    )
    try:
        broker_cm = open_broker(workdir / "broker", prefer=options.broker)
        broker = broker_cm.__enter__()
    except Exception as exc:
        raise DemoError(f"the MQTT broker did not start: {exc}") from exc
    station: Station | None = None
    try:
        what = f"Mosquitto (pid {broker.process_pid})" if broker.kind == "mosquitto" else "embedded broker"
        say(f"  broker        {what} on {broker.host}:{broker.port}")
        spec = StationSpec(
            press_id=options.press_id, workdir=workdir / "press", broker=broker, boot_count=boot
        )
        station = Station(spec)
        try:
            station.board.start()
        except Exception as exc:
            raise DemoError(f"the virtual board did not start: {exc}") from exc
        say(
            f"  virtual board firmware under MicroPython ({station.board.heap_bytes // 1024} KB heap), "
            f"real time, serial port {station.board.port}, boot {boot}, pid {station.board.pid}"
        )
        try:
            station.write_config()
            station.start_agent()
        except Exception as exc:
            raise DemoError(f"the agent did not start: {exc}") from exc
        say(f"  agent         isopress agent (pid {station.agent_pid}), log {station.agent_log}")
        say(f"  watch it      {watch_command(broker.host, broker.port, options.press_id)}")
        try:
            code = await _operate(options, recipe, broker.host, broker.port, station, out, stop, say)
        except aiomqtt.MqttError as exc:
            raise DemoError(f"MQTT: {exc} (broker {broker.host}:{broker.port})") from None
        except TimeoutError:
            log_path = station.agent_log
            raise DemoError(f"the agent did not answer a command in time; agent log: {log_path}") from None
        if code == 0 and options.keep_running and not stop.is_set():
            say("--keep-running: everything stays up; Ctrl-C stops it")
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                _check(station)
            return code  # Ctrl-C is how a kept-up demo ends
        return 130 if stop.is_set() else code
    finally:
        say("stopping: " + _shutdown(station, broker_cm))
        say(f"demo wall time {time.monotonic() - started:.1f} s")


def _shutdown(station: Any, broker_cm: Any) -> str:
    """Board first (outputs safe), then the agent, then the broker; says what was done."""
    done: list[str] = []
    if station is not None:
        if station.board.running:
            station.board.stop()  # the firmware leaves pump off, vent closed, dump valve open
            done.append("board outputs safe and board stopped")
        code = station.stop_agent()
        if code is not None:
            done.append(f"agent stopped (exit {code})")
        station.stop()
    broker_cm.__exit__(None, None, None)
    done.append("broker stopped")
    return ", ".join(done)


def _check(station: Any) -> None:
    from .rig import StationError

    try:
        station.check_alive()
    except StationError as exc:
        raise DemoError(str(exc)) from None


async def _operate(
    options: DemoOptions,
    recipe: dict[str, Any],
    host: str,
    port: int,
    station: Any,
    out: TextIO,
    stop: asyncio.Event,
    say: Callable[[str], None],
) -> int:
    """Subscribe, wait for the board, load and start as the operator, follow the run."""
    from .rig import OperatorClient

    press = options.press_id
    progress = _Progress(out, options.progress, recipe)
    run_id: str | None = None
    summary: dict[str, Any] | None = None
    async with (
        aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as sub,
        OperatorClient(host, port, operator=OPERATOR) as operator,
    ):
        await sub.subscribe(f"isopress/{press}/#", qos=1)
        messages = sub.messages.__aiter__()
        getter: asyncio.Future[aiomqtt.Message] | None = None  # kept across calls: never cancelled

        async def next_message(deadline: float, waiting_for: str) -> aiomqtt.Message | None:
            """The next message, None when stopped; DemoError past the deadline or if a part died."""
            nonlocal getter
            while not stop.is_set():
                _check(station)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DemoError(f"{waiting_for} did not happen in time; agent log: {station.agent_log}")
                if getter is None:
                    getter = asyncio.ensure_future(messages.__anext__())
                stopper = asyncio.ensure_future(stop.wait())
                waiting: set[asyncio.Future[Any]] = {stopper, getter}
                done, _ = await asyncio.wait(
                    waiting, timeout=min(left, 1.0), return_when=asyncio.FIRST_COMPLETED
                )
                stopper.cancel()
                if getter in done:
                    message, getter = getter.result(), None
                    return message
            return None

        deadline = time.monotonic() + _CONNECT_TIMEOUT_S
        while True:  # the agent's retained state: board connected and ready for a recipe
            message = await next_message(deadline, "the agent connecting to the board")
            if message is None:
                return 130
            if str(message.topic).endswith("/state") and isinstance(message.payload, bytes):
                state = json.loads(message.payload)
                if state["board_connected"] and state["state"] in ("idle", "ready", "complete"):
                    board = state["board"] or {}
                    say(
                        f"  board         {board.get('board_kind')} {board.get('board_id')}, firmware "
                        f"{board.get('firmware_version')}, protocol {board.get('protocol_version')}, "
                        f"calibration {board.get('calibration_id')}"
                    )
                    break
        loaded = await operator.command(press, "load-recipe", {"recipe": recipe})
        if not loaded["accepted"]:
            raise DemoError(f"load-recipe refused: {loaded['error']} {loaded['problems']}")
        sha = loaded["recipe"]["sha256"]
        say(f"operator {OPERATOR!r}: load-recipe accepted (sha256 {sha[:12]}...)")
        started = await operator.command(press, "start", {"recipe_sha256": sha})
        if not started["accepted"]:
            raise DemoError(f"start refused: {started['error']}")
        run_id = started["run_id"]
        say(f"operator {OPERATOR!r}: start accepted, run {run_id}")
        deadline = time.monotonic() + nominal_s(recipe) + _RUN_TAIL_S
        try:
            while summary is None:
                message = await next_message(deadline, f"the end of run {run_id}")
                if message is None:
                    break
                topic = str(message.topic)
                if topic.endswith("/telemetry"):
                    batch = json.loads(message.payload)
                    live = [s for s in batch["samples"] if not s.get("historical")]
                    if live:
                        progress.sample(live[-1])
                elif topic == f"isopress/{press}/run/{run_id}":
                    body = json.loads(message.payload)
                    if body["outcome"] != "running":
                        summary = body
        finally:
            progress.end()
        if summary is None:  # stopped mid-run: abort first, so the record says what happened
            with contextlib.suppress(Exception):
                reply = await operator.command(press, "abort", {}, timeout_s=_ABORT_TIMEOUT_S)
                say(f"operator {OPERATOR!r}: abort {'accepted' if reply['accepted'] else 'refused'}")
            say(
                f"run {run_id} stopped before its end; its record stays open in "
                f"{station.runs_folder / str(run_id)} and is closed (aborted) when the next demo's "
                "agent sees the rebooted board"
            )
            return 130
    _report(summary, press, host, port, options.keep_running, progress.lines, say)
    return 0 if summary["outcome"] == "complete" else 1


def _report(
    summary: dict[str, Any],
    press: str,
    host: str,
    port: int,
    keep_running: bool,
    progress_lines: int,
    say: Callable[[str], None],
) -> None:
    folder = Path(summary["record_path"])
    metrics = summary.get("metrics") or {}

    def number(key: str, unit: str, digits: int = 3) -> str:
        value = metrics.get(key)
        return f"{value:.{digits}f} {unit}" if isinstance(value, int | float) else "-"

    say(
        f"run {summary['run_id']}: {summary['outcome']}, {summary['samples']} samples, "
        f"peak {summary['peak_mpa']:.2f} MPa, faults: {', '.join(summary['faults']) or 'none'}"
    )
    say(
        f"  metrics       overshoot {number('overshoot_mpa', 'MPa')}, hold error RMS "
        f"{number('hold_error_rms_mpa', 'MPa')}, "
        f"worst ramp-rate error {number('ramp_rate_error_pct', '%', 2)}"
    )
    say(f"  run record    {folder}")
    say(f"  trace         {folder / 'trace.csv'}")
    plot = folder / "plot.png"
    say(f"  plot          {plot if plot.exists() else '(not drawn: see the agent log)'}")
    note = (
        "(works while this demo runs: it keeps running, Ctrl-C stops it)"
        if keep_running
        else "(works only while a demo runs: start it with --keep-running to watch at leisure)"
    )
    say(f"  telemetry     {watch_command(host, port, press)}")
    say(f"                {note}")
    if shutil.which("mosquitto_sub") is None:
        say("                (mosquitto_sub: sudo apt-get install -y mosquitto-clients)")


def run_demo(options: DemoOptions | None = None, out: TextIO = sys.stdout) -> int:
    """Run the demo; returns the process exit code (prints a clear error on failure)."""
    options = options or DemoOptions()

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            return await main_loop(options, out, stop=stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(main())
    except DemoError as exc:
        print(f"isopress demo: {exc}", file=sys.stderr)
        return 1
