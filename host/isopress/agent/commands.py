"""Command intake: validate everything on the host, then hand the command to the board.

A command goes to the board only when all of this holds: not retained, a known verb, an
operator name, well-formed JSON matching the verb's model, not expired (MQTT 5 message
expiry) and not older than ``commands.max_age_s`` by its ``sent_at``, its ``command_id``
not seen before from that operator (the replay guard), a board connected, the machine in
a state that allows the verb, and (load-recipe) a recipe within the board's device
profile. Every problem found is listed in the reply, each naming its field; every
command, accepted or rejected, is logged with its operator. Nothing a payload holds can
make the handler raise: whatever it is, the answer is a reply.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from isoproto import codes

from .board import BoardPort, BoardUnavailable
from .config import CommandsSection
from .model import CommandResult, reason_name, reason_text, state_name
from .mqtt import IncomingCommand
from .payloads import (
    COMMAND_MODELS,
    BoardAnswer,
    CommandReply,
    LoadRecipeCommand,
    StartCommand,
)
from .press import LoadedRecipe, PressView
from .recipe import RecipeProblem, check_recipe
from .replay import ReplayGuard
from .topics import OPERATOR_PATTERN

__all__ = ["ALLOWED_STATES", "CommandHandler", "Outcome"]

log = logging.getLogger("isopress.agent.commands")

_RUNNING = (codes.ST_PRESSURISING, codes.ST_HOLDING, codes.ST_DEPRESSURISING)

# The host's early check of the board's rules (the board checks again and is the authority).
ALLOWED_STATES: dict[str, tuple[int, ...]] = {
    "load-recipe": (codes.ST_IDLE, codes.ST_READY, codes.ST_COMPLETE),
    "start": (codes.ST_READY, codes.ST_COMPLETE),
    "pause": _RUNNING,
    "resume": (codes.ST_PAUSED,),
    "abort": (*_RUNNING, codes.ST_PAUSED),
    "reset": (codes.ST_FAULT, codes.ST_ESTOP),
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one command: the reply (None when ignored) and, for a start, the run."""

    reply: CommandReply | None
    started_run: int | None = None  # the board's run id after an accepted start


class _Rejected(Exception):
    def __init__(self, error: str, problems: list[RecipeProblem] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.problems = problems or []


# Called with (operator, loaded recipe, board run id) after the board accepted a start.
StartListener = Callable[[str, LoadedRecipe | None, int], Awaitable[None] | None]


class CommandHandler:
    """Turns :class:`~isopress.agent.mqtt.IncomingCommand` into board calls and replies."""

    def __init__(
        self,
        settings: CommandsSection,
        board: BoardPort,
        press: PressView,
        *,
        on_start: StartListener | None = None,
        on_recipe_loaded: Callable[[LoadedRecipe], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.board = board
        self.press = press
        self._on_start = on_start
        self._on_recipe_loaded = on_recipe_loaded
        self._clock = clock
        self._monotonic = monotonic
        self.accepted = 0
        self.rejected = 0
        self.ignored = 0
        self.replay_guard = ReplayGuard(settings.max_age_s)

    async def handle(self, command: IncomingCommand) -> Outcome:
        """Validate, execute and answer one command."""
        who = f"{command.verb} from {command.operator!r}"
        if command.retain:
            # A retained command would run again at every reconnect: never executed.
            self.ignored += 1
            log.warning("command %s ignored: retained command messages are never executed", who)
            return Outcome(None)
        state_at_receipt = self.press.state_name
        try:
            model = self._validate(command)
            result, extra = await self._execute(command, model)
        except _Rejected as rejected:
            self.rejected += 1
            log.warning("command %s rejected: %s", who, rejected.error)
            for p in rejected.problems:
                log.warning("  %s = %r: %s", p.field, p.value, p.message)
            return Outcome(
                self._reply(command, state_at_receipt, error=rejected.error, problems=rejected.problems)
            )
        answer = BoardAnswer(
            ok=result.ok,
            result=result.result,
            reason=result.reason_name,
            reason_text=result.reason_text,
            detail=result.detail,
            value=result.value,
        )
        if not result.ok:
            self.rejected += 1
            problems = [_nak_problem(reason, index) for reason, index in result.problems]
            error = f"the board refused: {result.reason_text or reason_name(result.reason)}"
            log.warning("command %s rejected by the board: %s (%s)", who, error, result.reason_name)
            return Outcome(
                self._reply(command, state_at_receipt, error=error, problems=problems, board=answer)
            )
        self.accepted += 1
        if command.verb not in ("load-recipe", "start"):
            self.press.settle()  # e.g. an abort right after a start: the board's word again
        log.info("command %s accepted by the board (value %d)", who, result.value)
        reply = self._reply(command, state_at_receipt, board=answer, **extra)
        return Outcome(reply, started_run=result.value if command.verb == "start" else None)

    # -- validation ----------------------------------------------------------------------
    def _validate(self, command: IncomingCommand) -> Any:
        model_type = COMMAND_MODELS.get(command.verb)
        if model_type is None:
            known = ", ".join(COMMAND_MODELS)
            raise _Rejected(f"unknown verb {command.verb!r}; known verbs: {known}")
        if not OPERATOR_PATTERN.match(command.operator):
            raise _Rejected(f"bad operator name {command.operator!r}: letters, digits, _ . @ - only")
        if command.expired(self._monotonic()):
            raise _Rejected("the command's MQTT message expiry passed before it could be executed")
        try:
            data = json.loads(command.payload)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            error = f"malformed JSON payload: {str(exc)[:200]}"
            raise _Rejected(error, [_payload_problem("(payload)", "malformed", error)]) from None
        try:
            model = model_type.model_validate(data)
        except ValidationError as exc:
            problems = [_schema_problem(e) for e in exc.errors()]
            raise _Rejected(f"the payload does not match the {command.verb} command", problems) from None
        now = self._clock()
        age_s = (now - model.sent_at).total_seconds()
        max_age_s, max_skew_s = self.settings.max_age_s, self.settings.max_clock_skew_s
        if age_s > max_age_s:
            error = f"stale command: sent {age_s:.1f} s ago, more than commands.max_age_s = {max_age_s:g} s"
            raise _Rejected(error, [_payload_problem("sent_at", "stale", error)])
        if -age_s > max_skew_s:
            error = f"sent_at is {-age_s:.1f} s in the future (clock skew above {max_skew_s:g} s)"
            raise _Rejected(error, [_payload_problem("sent_at", "clock_skew", error)])
        # From here on the command is well-formed and fresh: its id is spent whatever the
        # outcome, so a copy cannot run later when the state would allow it.
        refusal = self.replay_guard.admit(command.operator, model.command_id, model.sent_at, now)
        if refusal is not None:
            problem = _payload_problem("command_id", refusal.reason, refusal.message)
            raise _Rejected(refusal.message, [problem])
        if self.press.info is None or not self.press.board_connected:
            raise _Rejected("the board is not connected")
        if self.press.state is None:
            raise _Rejected("the press state is not known yet (no telemetry since the board connected)")
        allowed = ALLOWED_STATES[command.verb]
        if self.press.state not in allowed:
            names = ", ".join(state_name(s) for s in allowed)
            raise _Rejected(
                f"{command.verb} is not allowed while the press is {self.press.state_name} (only: {names})"
            )
        if isinstance(model, LoadRecipeCommand):
            problems = check_recipe(model.recipe, self.press.info.profile)
            if problems:
                raise _Rejected(
                    f"the recipe breaks the device profile ({len(problems)} problem(s))", problems
                )
        if isinstance(model, StartCommand):
            loaded = self.press.recipe
            if loaded is None:
                raise _Rejected("no recipe loaded through this agent: send load-recipe first")
            if model.recipe_sha256 is not None and model.recipe_sha256 != loaded.sha256:
                error = (
                    f"recipe_sha256 {model.recipe_sha256[:12]}... is not the loaded recipe "
                    f"{loaded.recipe.name!r} ({loaded.sha256[:12]}...)"
                )
                raise _Rejected(error, [_payload_problem("recipe_sha256", "recipe_mismatch", error)])
        return model

    # -- execution -----------------------------------------------------------------------
    async def _execute(self, command: IncomingCommand, model: Any) -> tuple[CommandResult, dict[str, Any]]:
        extra: dict[str, Any] = {}
        try:
            async with asyncio.timeout(self.settings.board_timeout_s):
                if isinstance(model, LoadRecipeCommand):
                    loaded = LoadedRecipe.of(model.recipe)
                    result = await self.board.load_recipe(model.recipe, loaded.recipe_id)
                    if result.ok:
                        self.press.recipe = loaded
                        # The board is READY now; the next sample may still say idle.
                        self.press.expect(codes.ST_READY, (codes.ST_IDLE, codes.ST_COMPLETE))
                        if self._on_recipe_loaded is not None:
                            self._on_recipe_loaded(loaded)
                    extra["recipe"] = loaded.ref()
                elif isinstance(model, StartCommand):
                    assert self.press.recipe is not None
                    result = await self.board.start(self.press.recipe.recipe_id)
                    if result.ok and self._on_start is not None:
                        maybe = self._on_start(command.operator, self.press.recipe, result.value)
                        if maybe is not None:
                            await maybe
                        extra["run_id"] = self.press.run_id
                    extra["recipe"] = self.press.recipe.ref()
                elif command.verb == "pause":
                    result = await self.board.pause()
                elif command.verb == "resume":
                    result = await self.board.resume()
                elif command.verb == "abort":
                    result = await self.board.abort()
                else:
                    result = await self.board.reset_faults()
        except BoardUnavailable as exc:
            raise _Rejected(f"the board could not be reached: {exc}") from None
        except TimeoutError:
            limit_s = self.settings.board_timeout_s
            raise _Rejected(
                f"no answer from the board within commands.board_timeout_s = {limit_s:g} s"
            ) from None
        return result, extra

    def _reply(
        self,
        command: IncomingCommand,
        state: str,
        *,
        error: str | None = None,
        problems: list[RecipeProblem] | None = None,
        board: BoardAnswer | None = None,
        **extra: Any,
    ) -> CommandReply:
        return CommandReply(
            verb=command.verb,
            operator=command.operator,
            accepted=error is None,
            error=error,
            problems=problems or [],
            state=state,
            board=board,
            received_at=command.received_at,
            **extra,
        )


def _schema_problem(error: Any) -> RecipeProblem:
    loc = ".".join(str(p) for p in error["loc"]) or "(payload)"
    value = error.get("input")
    shown = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    return RecipeProblem(field=loc, value=shown, limit=None, reason="malformed", message=message)


def _payload_problem(field: str, reason: str, message: str) -> RecipeProblem:
    return RecipeProblem(field=field, value=None, limit=None, reason=reason, message=message)


def _nak_problem(reason: int, index: int) -> RecipeProblem:
    return RecipeProblem(
        field=f"segments[{index}]",
        value=None,
        limit=None,
        reason=reason_name(reason),
        message=reason_text(reason),
    )
