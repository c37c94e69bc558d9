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
from dataclasses import dataclass, replace
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
    """What became of one command: the reply (None when ignored) and, for a start, the run.

    ``late``: the final outcome of a command whose first reply said ``pending``.
    """

    reply: CommandReply | None
    started_run: int | None = None  # the board's run id after an accepted start
    late: bool = False


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
        on_settled: Callable[[IncomingCommand, Outcome], Awaitable[None]] | None = None,
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
        self._on_settled = on_settled
        # commands the board has not answered in time: (verb, operator, command_id, since)
        self.pending: dict[int, tuple[str, str, str, float]] = {}
        self.pending_count = 0
        self._late: set[asyncio.Future[None]] = set()

    async def handle(self, command: IncomingCommand) -> Outcome:
        """Validate, execute and answer one command.

        The board's answer is awaited ``commands.board_timeout_s``. A command it has not
        answered by then is NOT abandoned: the serial session keeps delivering it (its
        retransmissions, exactly once on the board) until the board answers or the
        session gives up, so it may still execute. The reply then says ``pending``; when
        the board's answer comes, the command is finished as if it had come in time (a
        start still opens its run record) and ``on_settled`` gets the final outcome (the
        agent sends it as a second reply). While a command is pending, every other
        command but an abort is refused.
        """
        who = f"{command.verb} from {command.operator!r}"
        if command.retain:
            # A retained command would run again at every reconnect: never executed.
            self.ignored += 1
            log.warning("command %s ignored: retained command messages are never executed", who)
            return Outcome(None)
        state_at_receipt = self.press.state_name
        command_id: str | None = None
        try:
            model = self._parse(command)
            command_id = model.command_id
            self._validate(command, model)
            execution = asyncio.ensure_future(self._execute(command, model))
            done, _ = await asyncio.wait({execution}, timeout=self.settings.board_timeout_s)
            if execution not in done:
                return self._pending_outcome(command, command_id, state_at_receipt, execution)
            result, extra = execution.result()
        except _Rejected as rejected:
            return self._rejected(command, command_id, state_at_receipt, rejected)
        return self._answered(command, command_id, state_at_receipt, result, extra)

    def _rejected(
        self, command: IncomingCommand, command_id: str | None, state: str, rejected: _Rejected
    ) -> Outcome:
        self.rejected += 1
        log.warning("command %s from %r rejected: %s", command.verb, command.operator, rejected.error)
        for p in rejected.problems:
            log.warning("  %s = %r: %s", p.field, p.value, p.message)
        return Outcome(
            self._reply(
                command, state, error=rejected.error, problems=rejected.problems, command_id=command_id
            )
        )

    def _answered(
        self,
        command: IncomingCommand,
        command_id: str | None,
        state: str,
        result: CommandResult,
        extra: dict[str, Any],
    ) -> Outcome:
        who = f"{command.verb} from {command.operator!r}"
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
                self._reply(
                    command, state, error=error, problems=problems, board=answer, command_id=command_id
                )
            )
        self.accepted += 1
        if command.verb not in ("load-recipe", "start"):
            self.press.settle()  # e.g. an abort right after a start: the board's word again
        log.info("command %s accepted by the board (value %d)", who, result.value)
        reply = self._reply(command, state, board=answer, command_id=command_id, **extra)
        return Outcome(reply, started_run=result.value if command.verb == "start" else None)

    # -- commands the board has not answered in time -------------------------------------
    def _check_nothing_pending(self, command: IncomingCommand) -> None:
        if not self.pending or command.verb == "abort":  # the board decides on an abort
            return
        verb, operator, command_id, since = next(iter(self.pending.values()))
        waited_s = self._monotonic() - since
        raise _Rejected(
            f"{verb} from {operator!r} (command_id {command_id}) has been awaiting the board's "
            f"answer for {waited_s:.1f} s and may still execute; send this again after its final reply"
        )

    def _pending_outcome(
        self,
        command: IncomingCommand,
        command_id: str | None,
        state: str,
        execution: asyncio.Future[tuple[CommandResult, dict[str, Any]]],
    ) -> Outcome:
        self.pending_count += 1
        key = id(execution)
        self.pending[key] = (command.verb, command.operator, command_id or "?", self._monotonic())
        limit_s = self.settings.board_timeout_s
        error = (
            f"no answer from the board within commands.board_timeout_s = {limit_s:g} s; the command "
            "is still being delivered and may yet execute: its final reply follows on this response topic"
        )
        log.warning("command %s from %r pending: %s", command.verb, command.operator, error)

        def settled(done: asyncio.Future[tuple[CommandResult, dict[str, Any]]]) -> None:
            self.pending.pop(key, None)
            if done.cancelled():
                rejected = _Rejected(
                    "the agent stopped before the board answered; the command may or may not have executed"
                )
                outcome = self._rejected(command, command_id, state, rejected)
            elif isinstance(done.exception(), _Rejected):
                exc = done.exception()
                assert isinstance(exc, _Rejected)
                outcome = self._rejected(command, command_id, state, exc)
            elif done.exception() is not None:
                rejected = _Rejected(f"the command failed in the agent: {done.exception()!r}")
                outcome = self._rejected(command, command_id, state, rejected)
            else:
                result, extra = done.result()
                outcome = self._answered(command, command_id, state, result, extra)
            log.warning(
                "command %s from %r, pending, settled: %s",
                command.verb,
                command.operator,
                "accepted" if outcome.reply is not None and outcome.reply.accepted else "rejected",
            )
            if self._on_settled is not None:
                task = asyncio.ensure_future(self._on_settled(command, replace(outcome, late=True)))
                self._late.add(task)
                task.add_done_callback(self._late.discard)

        execution.add_done_callback(settled)
        return Outcome(self._reply(command, state, error=error, command_id=command_id, pending=True))

    # -- validation ----------------------------------------------------------------------
    def _parse(self, command: IncomingCommand) -> Any:
        """The command's model from its verb and payload (or _Rejected naming the problem)."""
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
        return model

    def _validate(self, command: IncomingCommand, model: Any) -> None:
        """Fresh, not a replay, nothing pending, a board in a state that allows it, a good recipe."""
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
        self._check_nothing_pending(command)
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

    # -- execution -----------------------------------------------------------------------
    async def _execute(self, command: IncomingCommand, model: Any) -> tuple[CommandResult, dict[str, Any]]:
        extra: dict[str, Any] = {}
        # No timeout here: cancelling would abandon a command the session still delivers
        # (handle() bounds the wait and lets it finish, see there).
        try:
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
