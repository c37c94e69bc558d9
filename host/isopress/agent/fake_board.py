"""FAKE BOARD — a stand-in for the serial session, for tests and manual runs of the agent.

This is NOT the virtual board (that runs the real firmware under MicroPython) and not a
plant model: the pressure simply follows the setpoint with a first-order lag. It exists so
that the agent's components (spool, MQTT, commands, run records) can be exercised end to
end without a board or a serial link. It implements :class:`~.board.BoardPort` and
produces the same :data:`~.model.BoardUpdate` stream the serial session does.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from isoproto import codes

from .model import BoardEvent, BoardInfo, BoardUpdate, CommandResult, DeviceProfile, LinkDown, Sample
from .recipe import HoldSegment, Recipe

__all__ = ["FakeBoard"]

_DEFAULT_PROFILE = DeviceProfile(
    max_working_mpa=400.0,
    trip_mpa=420.0,
    max_ramp_up_mpa_s=2.0,
    max_ramp_down_mpa_s=1.0,
    max_hold_s=3600.0,
    margin_mpa=10.0,
    host_lost_timeout_ms=5000,
    host_lost_policy=codes.HOST_LOST_DEPRESSURISE,
)
_RUNNING = (codes.ST_PRESSURISING, codes.ST_HOLDING, codes.ST_DEPRESSURISING)


def _ok(value: int = 0) -> CommandResult:
    return CommandResult(ok=True, value=value)


def _nak(reason: int) -> CommandResult:
    return CommandResult(ok=False, result=codes.RESULT_REJECTED, reason=reason)


class FakeBoard:
    """A press that answers commands and streams samples at ``period_ms`` of board time.

    ``speed`` > 1 runs board time faster than the wall clock (tests).
    """

    def __init__(
        self,
        *,
        boot_count: int = 1,
        period_ms: int = 10,
        speed: float = 1.0,
        profile: DeviceProfile = _DEFAULT_PROFILE,
        seed: int = 1,
        board_id: str = "FAKE0001",
    ) -> None:
        self.period_ms = period_ms
        self.speed = speed
        self.profile = profile
        self.board_id = board_id
        self.boot_count = boot_count
        self.reset_cause = codes.RESET_POWER_ON
        self.calls: list[str] = []
        self._rng = random.Random(seed)
        self._queue: asyncio.Queue[BoardUpdate | None] = asyncio.Queue(maxsize=10_000)
        self._closed = False
        self._reset_board_state()
        self.run_counter = 0

    def _reset_board_state(self) -> None:
        self.seq = 0
        self.event_seq = 0
        self.board_ms = 0
        self.state = codes.ST_IDLE
        self.faults = 0
        self.pressure_mpa = 0.0
        self.setpoint_mpa = 0.0
        self.segment = 0
        self.run_id = 0
        self.recipe: Recipe | None = None
        self.recipe_id = 0
        self._segment_elapsed_s = 0.0

    @property
    def info(self) -> BoardInfo:
        """What the board says at the handshake."""
        return BoardInfo(
            firmware_version="fake-0.1",
            protocol_major=1,
            protocol_minor=0,
            board_id=self.board_id,
            board_kind="fake",
            profile_hash=0x0F0F0F0F,
            calibration_id="fake-cal",
            calibration_date="2026-11-25",
            boot_count=self.boot_count,
            reset_cause=self.reset_cause,
            profile=self.profile,
            latest_sample_seq=self.seq,
            telemetry_period_ms=self.period_ms,
        )

    # -- the update stream ------------------------------------------------------------
    async def updates(self) -> AsyncIterator[list[BoardUpdate]]:
        """Board info, then bursts of samples and events until :meth:`close`."""
        ticker = asyncio.create_task(self._tick_forever())
        try:
            yield [self.info]
            while True:
                burst = [await self._queue.get()]
                while not self._queue.empty():
                    burst.append(self._queue.get_nowait())
                done = None in burst
                items = [u for u in burst if u is not None]
                if items:
                    yield items
                if done:
                    return
        finally:
            ticker.cancel()

    def close(self) -> None:
        """End the update stream."""
        self._closed = True
        self._queue.put_nowait(None)

    def reboot(self, reset_cause: int = codes.RESET_WATCHDOG) -> None:
        """Simulate a board reset: link lost, new boot count, sequences from 0, state idle."""
        self._queue.put_nowait(LinkDown(wall_time=datetime.now(UTC), reason="board reset"))
        self.boot_count += 1
        self.reset_cause = reset_cause
        self._reset_board_state()
        self._queue.put_nowait(self.info)
        self._event(codes.EV_BOOT, reset_cause, 0)

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        period_s = self.period_ms / 1000.0 / self.speed
        next_at = loop.time()
        while not self._closed:
            self._step(self.period_ms / 1000.0)
            next_at += period_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    def _event(self, kind: int, code: int, detail: int) -> None:
        self.event_seq += 1
        self._queue.put_nowait(
            BoardEvent(
                boot_count=self.boot_count,
                event_seq=self.event_seq,
                sample_seq=self.seq,
                board_ms=self.board_ms,
                wall_time=datetime.now(UTC),
                kind=kind,
                code=code,
                detail=detail,
                value=self.pressure_mpa,
            )
        )

    def _set_state(self, state: int) -> None:
        if state != self.state:
            previous, self.state = self.state, state
            self._event(codes.EV_STATE_CHANGED, state, previous)

    def _step(self, dt_s: float) -> None:
        self.board_ms += self.period_ms
        if self.state in _RUNNING and self.recipe is not None:
            self._advance_recipe(dt_s)
        elif self.state in (codes.ST_IDLE, codes.ST_READY, codes.ST_COMPLETE):
            self.setpoint_mpa = 0.0
        # First-order lag towards the setpoint, a little transducer noise.
        self.pressure_mpa += (self.setpoint_mpa - self.pressure_mpa) * min(1.0, dt_s / 0.3)
        measured = max(0.0, self.pressure_mpa + self._rng.gauss(0.0, 0.05))
        self.seq += 1
        sample = Sample(
            boot_count=self.boot_count,
            seq=self.seq,
            board_ms=self.board_ms,
            wall_time=datetime.now(UTC),
            pressure_mpa=measured,
            setpoint_mpa=self.setpoint_mpa,
            pump_duty=30000 if self.state == codes.ST_PRESSURISING else 0,
            vent_duty=20000 if self.state == codes.ST_DEPRESSURISING else 0,
            faults=self.faults,
            state=self.state,
            flags=codes.FLAG_CLOSURE_LOCKED
            | codes.FLAG_ESTOP_OK
            | codes.FLAG_GLOVEBOX_OK
            | codes.FLAG_HOST_OK
            | (codes.FLAG_DUMP_CLOSED if self.state in (*_RUNNING, codes.ST_PAUSED) else 0),
            segment=self.segment,
            run_id=self.run_id,
        )
        with contextlib.suppress(asyncio.QueueFull):  # nobody reading: like the board's ring, drop
            self._queue.put_nowait(sample)

    def _advance_recipe(self, dt_s: float) -> None:
        assert self.recipe is not None
        seg = self.recipe.segments[self.segment]
        self._segment_elapsed_s += dt_s
        done = False
        if isinstance(seg, HoldSegment):
            self._set_state(codes.ST_HOLDING)
            done = self._segment_elapsed_s >= seg.duration_s
        else:
            up = seg.target_mpa >= self.setpoint_mpa
            self._set_state(codes.ST_PRESSURISING if up else codes.ST_DEPRESSURISING)
            step = seg.rate_mpa_s * dt_s
            if abs(seg.target_mpa - self.setpoint_mpa) <= step:
                self.setpoint_mpa = seg.target_mpa
                done = True
            else:
                self.setpoint_mpa += step if up else -step
        if done:
            if self.segment + 1 >= len(self.recipe.segments):
                self._set_state(codes.ST_COMPLETE)
                self._event(codes.EV_RUN_ENDED, codes.ST_COMPLETE, self.run_id)
            else:
                self.segment += 1
                self._segment_elapsed_s = 0.0
                self._event(codes.EV_SEGMENT_CHANGED, self.segment, 0)

    # -- BoardPort ------------------------------------------------------------------------
    async def load_recipe(self, recipe: Recipe, recipe_id: int) -> CommandResult:
        """Load a recipe (idle, ready or complete)."""
        self.calls.append("load_recipe")
        if self.state not in (codes.ST_IDLE, codes.ST_READY, codes.ST_COMPLETE):
            return _nak(codes.R_BAD_STATE)
        self.recipe, self.recipe_id = recipe, recipe_id
        self._set_state(codes.ST_READY)
        self._event(codes.EV_RECIPE_LOADED, 0, recipe_id)
        return _ok()

    async def start(self, recipe_id: int) -> CommandResult:
        """Start the loaded recipe; the ACK value is the new run id."""
        self.calls.append("start")
        if self.state not in (codes.ST_READY, codes.ST_COMPLETE) or self.recipe is None:
            return _nak(codes.R_NO_RECIPE if self.recipe is None else codes.R_BAD_STATE)
        if recipe_id != self.recipe_id:
            return _nak(codes.R_RECIPE_MISMATCH)
        self.run_counter += 1
        self.run_id = self.run_counter
        self.segment = 0
        self._segment_elapsed_s = 0.0
        self.setpoint_mpa = self.pressure_mpa
        self._event(codes.EV_RUN_STARTED, 0, self.run_id)
        self._set_state(codes.ST_PRESSURISING)
        return _ok(self.run_id)

    async def pause(self) -> CommandResult:
        """Hold where we are."""
        self.calls.append("pause")
        if self.state not in _RUNNING:
            return _nak(codes.R_BAD_STATE)
        self._paused_from = self.state
        self._set_state(codes.ST_PAUSED)
        return _ok()

    async def resume(self) -> CommandResult:
        """Continue."""
        self.calls.append("resume")
        if self.state != codes.ST_PAUSED:
            return _nak(codes.R_BAD_STATE)
        self._set_state(self._paused_from)
        return _ok()

    async def abort(self) -> CommandResult:
        """End the run: vent to zero and report the run ended (idle)."""
        self.calls.append("abort")
        if self.state not in (*_RUNNING, codes.ST_PAUSED):
            return _nak(codes.R_BAD_STATE)
        self.setpoint_mpa = 0.0
        self._set_state(codes.ST_IDLE)
        self._event(codes.EV_RUN_ENDED, codes.ST_IDLE, self.run_id)
        return _ok()

    async def reset_faults(self) -> CommandResult:
        """Clear faults."""
        self.calls.append("reset_faults")
        if self.state not in (codes.ST_FAULT, codes.ST_ESTOP):
            return _nak(codes.R_BAD_STATE)
        self.faults = 0
        self._set_state(codes.ST_IDLE)
        return _ok()
