"""What the agent knows about the press right now, and the retained ``state`` payload built from it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .model import BoardEvent, BoardInfo, LinkDown, Sample, fault_names, state_name
from .payloads import BoardRef, RecipeRef, StatePayload
from .recipe import Recipe, recipe_id, recipe_sha256

__all__ = ["EXPECT_HOLD_S", "LoadedRecipe", "PressView"]

# How long an acknowledged state outranks samples still showing the state before it (see
# PressView.expect): several telemetry periods at 10 Hz, far less than any operator's pace.
EXPECT_HOLD_S = 1.0


@dataclass(frozen=True, slots=True)
class LoadedRecipe:
    """A recipe the board acknowledged, with its hashes."""

    recipe: Recipe
    sha256: str
    recipe_id: int

    @classmethod
    def of(cls, recipe: Recipe) -> LoadedRecipe:
        """Hash a recipe."""
        return cls(recipe, recipe_sha256(recipe), recipe_id(recipe))

    def ref(self) -> RecipeRef:
        """The state/run-summary form."""
        return RecipeRef(name=self.recipe.name, sha256=self.sha256, recipe_id=f"{self.recipe_id:08x}")


class PressView:
    """The latest board info, machine state, faults, run and recipe (fed by the board updates)."""

    def __init__(self, press_id: str, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.press_id = press_id
        self._monotonic = monotonic
        # (acknowledged state, the states it replaced, the run it started, until when)
        self._expected: tuple[int, tuple[int, ...], int | None, float] | None = None
        self.info: BoardInfo | None = None
        self.board_connected = False
        self.state: int | None = None
        self.faults = 0
        self.board_run_id = 0
        self.run_id: str | None = None
        self.recipe: LoadedRecipe | None = None

    @property
    def state_name(self) -> str:
        """The machine state's name, ``unknown`` before the first sample."""
        return state_name(self.state) if self.state is not None else "unknown"

    def on_info(self, info: BoardInfo) -> BoardInfo | None:
        """A handshake; returns the previous info when the board rebooted since (new boot count)."""
        previous = self.info
        self.info = info
        self.board_connected = True
        if previous is not None and previous.boot_count != info.boot_count:
            self._expected = None
            self.state = None
            self.faults = 0
            self.board_run_id = 0
            return previous
        return None

    def on_link_down(self, _down: LinkDown) -> None:
        """The serial link is gone."""
        self.board_connected = False

    def expect(self, state: int, replaces: tuple[int, ...], *, run_id: int | None = None) -> None:
        """The board acknowledged a command that took it from one of ``replaces`` to ``state``.

        The view says ``state`` at once, so the next command (a start right after the
        load-recipe ACK) is judged by it and not by a sample from before. Samples taken
        before the board executed the command can still arrive after its ACK (the same
        read brings both): a sample showing a state in ``replaces`` (and, for a start,
        not yet the new ``run_id``) does not move the state back, until a sample shows
        anything else, another command is acknowledged (:meth:`settle`) or
        :data:`EXPECT_HOLD_S` passed (three telemetry periods, when the board reports
        slower than that).
        """
        period_s = self.info.telemetry_period_ms / 1000.0 if self.info is not None else 0.0
        self.state = state
        self._expected = (state, replaces, run_id, self._monotonic() + max(EXPECT_HOLD_S, 3 * period_s))

    def settle(self) -> None:
        """Another command moved the board: the next sample's state is the state."""
        self._expected = None

    def on_sample(self, sample: Sample) -> None:
        """Live samples move the view; backfilled ones are the past and do not."""
        if sample.historical:
            return
        if self.info is not None and sample.boot_count != self.info.boot_count:
            return
        if self._expected is not None:
            _state, replaces, run_id, until = self._expected
            stale = sample.state in replaces and (run_id is None or sample.run_id != run_id)
            if stale and self._monotonic() < until:
                self.faults = sample.faults  # from before the command, but faults are faults
                return
            self._expected = None
        self.state = sample.state
        self.faults = sample.faults
        self.board_run_id = sample.run_id

    def on_event(self, _event: BoardEvent) -> None:
        """Events carry nothing the samples do not (kept for symmetry and future use)."""

    def payload(self) -> StatePayload:
        """The retained state message."""
        return StatePayload(
            press_id=self.press_id,
            board_connected=self.board_connected,
            state=self.state_name,
            run_id=self.run_id,
            board_run_id=self.board_run_id,
            recipe=self.recipe.ref() if self.recipe else None,
            faults=list(fault_names(self.faults)),
            board=BoardRef.from_info(self.info) if self.info else None,
            updated_at=datetime.now(UTC),
        )

    def payload_json(self) -> str:
        """The retained state message as JSON, without ``updated_at`` churn deciding change.

        (The caller compares :meth:`fingerprint` to decide whether to publish.)
        """
        return self.payload().model_dump_json()

    def fingerprint(self) -> tuple[object, ...]:
        """Everything in the state payload except the timestamp."""
        return (
            self.board_connected,
            self.state,
            self.faults,
            self.board_run_id,
            self.run_id,
            self.recipe.sha256 if self.recipe else None,
            self.info,
        )
