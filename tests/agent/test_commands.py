"""Command intake: every bad command gets a reply naming the problem and never reaches the board."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from agent_helpers import GOOD_RECIPE, RecordingBoard, make_info, make_sample

from isopress.agent.board import BoardUnavailable
from isopress.agent.commands import CommandHandler, Outcome
from isopress.agent.config import CommandsSection
from isopress.agent.model import CommandResult
from isopress.agent.mqtt import IncomingCommand
from isopress.agent.payloads import CommandReply
from isopress.agent.press import LoadedRecipe, PressView
from isopress.agent.recipe import Recipe
from isoproto import codes

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def _press(state: int | None = codes.ST_IDLE) -> PressView:
    press = PressView("p1")
    press.on_info(make_info())
    if state is not None:
        press.on_sample(make_sample(1, state=state))
    return press


def _command(
    verb: str,
    payload: Any = None,
    *,
    operator: str = "alice",
    sent_at: datetime = NOW,
    retain: bool = False,
    expiry_s: int | None = None,
    received_monotonic: float = 100.0,
) -> IncomingCommand:
    if payload is None:
        payload = {}
    if isinstance(payload, dict):
        payload = {"command_id": uuid.uuid4().hex, "sent_at": sent_at.isoformat(), **payload}
        raw = json.dumps(payload).encode()
    else:
        raw = payload
    return IncomingCommand(
        operator=operator,
        verb=verb,
        payload=raw,
        retain=retain,
        response_topic="reply/alice",
        correlation_data=b"c1",
        expiry_s=expiry_s,
        received_monotonic=received_monotonic,
        received_at=NOW,
    )


def _handle(
    command: IncomingCommand,
    *,
    press: PressView | None = None,
    board: RecordingBoard | None = None,
    monotonic: float = 100.0,
    settings: CommandsSection | None = None,
) -> tuple[Outcome, RecordingBoard, PressView]:
    press = press if press is not None else _press()
    board = board or RecordingBoard()
    handler = CommandHandler(
        settings or CommandsSection(), board, press, clock=lambda: NOW, monotonic=lambda: monotonic
    )
    return asyncio.run(handler.handle(command)), board, press


def _rejected(outcome: Outcome) -> CommandReply:
    reply = outcome.reply
    assert reply is not None and not reply.accepted, reply
    assert reply.error
    return reply


def test_a_good_recipe_is_loaded_and_remembered() -> None:
    outcome, board, press = _handle(_command("load-recipe", {"recipe": GOOD_RECIPE}))
    assert outcome.reply is not None and outcome.reply.accepted and outcome.reply.error is None
    loaded = LoadedRecipe.of(Recipe.model_validate(GOOD_RECIPE))
    assert board.calls == [("load_recipe", (loaded.recipe, loaded.recipe_id))]
    assert press.recipe == loaded
    assert outcome.reply.recipe is not None and outcome.reply.recipe.sha256 == loaded.sha256
    assert outcome.reply.board is not None and outcome.reply.board.ok


def test_a_recipe_beyond_the_profile_lists_every_problem_and_reaches_nothing() -> None:
    recipe = {
        "name": "too much",
        "segments": [
            {"kind": "ramp", "target_mpa": 450.0, "rate_mpa_s": 3.0},
            {"kind": "hold", "duration_s": 7200.0},
            {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.5},
        ],
    }
    outcome, board, press = _handle(_command("load-recipe", {"recipe": recipe}))
    reply = _rejected(outcome)
    assert board.calls == [] and press.recipe is None
    got = {(p.field, p.value, p.limit, p.reason) for p in reply.problems}
    assert got == {
        ("segments[0].target_mpa", 450.0, 400.0, "target_too_high"),
        ("segments[0].rate_mpa_s", 3.0, 2.0, "rate_up_too_high"),
        ("segments[1].duration_s", 7200.0, 3600.0, "hold_too_long"),
        ("segments[2].rate_mpa_s", 1.5, 1.0, "rate_down_too_high"),
    }
    assert "4 problem(s)" in reply.error  # type: ignore[operator]


def test_non_finite_and_malformed_recipe_fields_are_listed() -> None:
    payload = b'{"sent_at": "2026-11-25T12:00:00Z", "recipe": {"name": "x", "segments": [{"kind": "ramp", '
    payload += b'"target_mpa": NaN, "rate_mpa_s": 1}, {"kind": "squeeze"}]}, "colour": "red"}'
    outcome, board, _ = _handle(_command("load-recipe", payload))
    reply = _rejected(outcome)
    fields = {p.field for p in reply.problems}
    assert "recipe.segments.0.ramp.target_mpa" in fields
    assert "recipe.segments.1" in fields
    assert "colour" in fields
    assert board.calls == []


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (_command("explode"), "unknown verb 'explode'; known verbs: load-recipe, start, pause"),
        (_command("pause", b"{not json"), "malformed JSON payload: Expecting property name"),
        (_command("pause", b"\xff\xfe"), "malformed JSON payload"),
        (_command("pause", b'{"sent_at": "yesterday"}'), "the payload does not match the pause command"),
        (_command("pause", b"{}"), "the payload does not match the pause command"),
        (_command("pause", sent_at=NOW - timedelta(seconds=30)), "stale command: sent 30.0 s ago"),
        (_command("pause", sent_at=NOW + timedelta(seconds=60)), "sent_at is 60.0 s in the future"),
        (_command("pause", expiry_s=5, received_monotonic=90.0), "MQTT message expiry passed"),
        (_command("pause", operator="al ice"), "bad operator name 'al ice'"),
    ],
)
def test_bad_commands_get_a_clear_reply_and_reach_nothing(command: IncomingCommand, expected: str) -> None:
    outcome, board, _ = _handle(command, press=_press(codes.ST_HOLDING))
    reply = _rejected(outcome)
    assert expected in reply.error, reply.error  # type: ignore[operator]
    assert board.calls == []
    assert reply.operator == command.operator and reply.verb == command.verb


def test_a_start_while_running_names_the_state() -> None:
    press = _press(codes.ST_PRESSURISING)
    press.recipe = LoadedRecipe.of(Recipe.model_validate(GOOD_RECIPE))
    outcome, board, _ = _handle(_command("start"), press=press)
    reply = _rejected(outcome)
    assert reply.error == "start is not allowed while the press is pressurising (only: ready, complete)"
    assert reply.state == "pressurising"
    assert board.calls == []


def test_start_needs_a_loaded_recipe_and_the_right_one() -> None:
    outcome, board, _ = _handle(_command("start"), press=_press(codes.ST_READY))
    assert "no recipe loaded" in _rejected(outcome).error  # type: ignore[operator]
    press = _press(codes.ST_READY)
    press.recipe = LoadedRecipe.of(Recipe.model_validate(GOOD_RECIPE))
    outcome, board, _ = _handle(_command("start", {"recipe_sha256": "0" * 64}), press=press)
    assert "is not the loaded recipe '250 MPa cycle'" in _rejected(outcome).error  # type: ignore[operator]
    assert board.calls == []


def test_an_accepted_start_reports_the_board_run_id() -> None:
    press = _press(codes.ST_READY)
    press.recipe = LoadedRecipe.of(Recipe.model_validate(GOOD_RECIPE))
    started: list[tuple[str, int]] = []

    def on_start(operator: str, recipe: LoadedRecipe | None, board_run_id: int) -> None:
        started.append((operator, board_run_id))
        press.run_id = "run-7"

    handler = CommandHandler(
        CommandsSection(),
        RecordingBoard(),
        press,
        on_start=on_start,
        clock=lambda: NOW,
        monotonic=lambda: 100.0,
    )
    outcome = asyncio.run(handler.handle(_command("start", {"recipe_sha256": press.recipe.sha256})))
    assert outcome.reply is not None and outcome.reply.accepted
    assert outcome.started_run == 7 and started == [("alice", 7)]
    assert outcome.reply.run_id == "run-7"


def test_no_board_or_no_state_yet_is_rejected() -> None:
    press = PressView("p1")
    outcome, board, _ = _handle(_command("pause"), press=press)
    assert _rejected(outcome).error == "the board is not connected"
    press.on_info(make_info())
    outcome, board, _ = _handle(_command("pause"), press=press)
    assert "state is not known yet" in _rejected(outcome).error  # type: ignore[operator]
    assert board.calls == []


def test_a_board_nak_is_passed_on_with_its_reason_and_problems() -> None:
    nak = CommandResult(ok=False, result=codes.RESULT_REJECTED, reason=codes.R_BAD_STATE, problems=((6, 1),))
    outcome, board, _ = _handle(
        _command("pause"), press=_press(codes.ST_HOLDING), board=RecordingBoard(result=nak)
    )
    reply = _rejected(outcome)
    assert reply.error == "the board refused: not allowed in the press's current state"
    assert reply.board is not None and reply.board.reason == "bad_state"
    assert [(p.field, p.reason) for p in reply.problems] == [("segments[1]", "target_too_high")]
    assert board.calls == [("pause", ())]


def test_an_unreachable_or_silent_board_is_a_rejection() -> None:
    board = RecordingBoard(error=BoardUnavailable("serial link down"))
    outcome, _, _ = _handle(_command("abort"), press=_press(codes.ST_HOLDING), board=board)
    assert _rejected(outcome).error == "the board could not be reached: serial link down"
    slow = RecordingBoard(delay_s=1.0)
    settings = CommandsSection(board_timeout_s=0.05)
    outcome, _, _ = _handle(_command("abort"), press=_press(codes.ST_HOLDING), board=slow, settings=settings)
    assert "no answer from the board within commands.board_timeout_s = 0.05 s" in _rejected(outcome).error  # type: ignore[operator]


def test_retained_commands_are_ignored_without_reply() -> None:
    outcome, board, _ = _handle(_command("pause", retain=True), press=_press(codes.ST_HOLDING))
    assert outcome.reply is None and board.calls == []


def test_every_command_is_logged_with_its_operator(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="isopress.agent.commands")
    _handle(_command("pause", operator="bob"), press=_press(codes.ST_HOLDING))
    _handle(_command("resume", operator="carol"), press=_press(codes.ST_HOLDING))
    _handle(_command("pause", operator="dave", retain=True), press=_press(codes.ST_HOLDING))
    text = caplog.text
    assert "pause from 'bob' accepted" in text
    assert "resume from 'carol' rejected: resume is not allowed while the press is holding" in text
    assert "pause from 'dave' ignored: retained" in text


@pytest.mark.parametrize(
    ("verb", "state", "call"),
    [
        ("pause", codes.ST_HOLDING, "pause"),
        ("resume", codes.ST_PAUSED, "resume"),
        ("abort", codes.ST_PAUSED, "abort"),
        ("reset", codes.ST_FAULT, "reset_faults"),
    ],
)
def test_simple_verbs_reach_the_board_in_their_states(verb: str, state: int, call: str) -> None:
    outcome, board, _ = _handle(_command(verb), press=_press(state))
    assert outcome.reply is not None and outcome.reply.accepted
    assert board.calls == [(call, ())]


def test_a_start_right_after_the_load_ack_is_judged_by_the_acknowledged_state() -> None:
    """The load-recipe ACK makes the view READY at once; samples from before the load
    (still saying idle) do not take it back, so an immediate start is accepted."""
    clock = [100.0]
    press = PressView("p1", monotonic=lambda: clock[0])
    press.on_info(make_info())
    press.on_sample(make_sample(1, state=codes.ST_IDLE))
    board = RecordingBoard(result=CommandResult(ok=True, value=1))
    handler = CommandHandler(CommandsSection(), board, press, clock=lambda: NOW, monotonic=lambda: 100.0)

    async def go() -> tuple[Outcome, Outcome]:
        loaded = await handler.handle(_command("load-recipe", {"recipe": GOOD_RECIPE}))
        assert press.state == codes.ST_READY and press.state_name == "ready"
        press.on_sample(make_sample(2, state=codes.ST_IDLE))  # taken before the board loaded it
        assert press.state == codes.ST_READY
        started = await handler.handle(_command("start", {}))
        return loaded, started

    loaded, started = asyncio.run(go())
    assert loaded.reply is not None and loaded.reply.accepted
    assert started.reply is not None and started.reply.accepted, started.reply
    assert [name for name, _ in board.calls] == ["load_recipe", "start"]


def test_the_acknowledged_state_yields_to_the_board_once_a_sample_shows_another() -> None:
    clock = [100.0]
    press = PressView("p1", monotonic=lambda: clock[0])
    press.on_info(make_info())
    press.on_sample(make_sample(1, state=codes.ST_IDLE))
    press.expect(codes.ST_READY, (codes.ST_IDLE, codes.ST_COMPLETE))
    press.on_sample(make_sample(2, state=codes.ST_READY))  # the board caught up
    press.on_sample(make_sample(3, state=codes.ST_IDLE))  # and went idle (e.g. a new profile)
    assert press.state == codes.ST_IDLE
    press.expect(codes.ST_READY, (codes.ST_IDLE, codes.ST_COMPLETE))
    press.on_sample(make_sample(4, state=codes.ST_FAULT))  # any other state is the board's word
    assert press.state == codes.ST_FAULT
    press.expect(codes.ST_READY, (codes.ST_IDLE, codes.ST_COMPLETE))
    clock[0] += 1.5  # past EXPECT_HOLD_S: a board still saying idle is believed
    press.on_sample(make_sample(5, state=codes.ST_IDLE))
    assert press.state == codes.ST_IDLE


def test_a_start_expectation_believes_samples_of_the_new_run_and_yields_to_an_abort() -> None:
    press = PressView("p1", monotonic=lambda: 100.0)
    press.on_info(make_info())
    press.on_sample(make_sample(1, state=codes.ST_READY, run_id=4))
    press.expect(codes.ST_PRESSURISING, (codes.ST_READY, codes.ST_COMPLETE), run_id=5)
    press.on_sample(make_sample(2, state=codes.ST_READY, run_id=4))  # from before the start
    assert press.state == codes.ST_PRESSURISING
    press.on_sample(make_sample(3, state=codes.ST_COMPLETE, run_id=5))  # a run over in no time
    assert press.state == codes.ST_COMPLETE
    press.expect(codes.ST_PRESSURISING, (codes.ST_READY, codes.ST_COMPLETE), run_id=6)
    press.settle()  # an abort was acknowledged: at ambient the board is ready at once
    press.on_sample(make_sample(4, state=codes.ST_READY, run_id=5))
    assert press.state == codes.ST_READY


def test_a_command_the_board_answers_late_is_pending_then_settled_never_abandoned() -> None:
    """Late execution: the board answers a start after commands.board_timeout_s. The first
    reply says pending (it may still execute); when the ACK comes the start is finished
    (the run is opened for its operator) and the final reply goes to on_settled."""
    press = _press(codes.ST_READY)
    press.recipe = LoadedRecipe.of(Recipe.model_validate(GOOD_RECIPE))
    board = RecordingBoard(result=CommandResult(ok=True, value=9), delay_s=0.3)
    started: list[tuple[str, int]] = []
    settled: list[tuple[IncomingCommand, Outcome]] = []

    async def on_settled(command: IncomingCommand, outcome: Outcome) -> None:
        settled.append((command, outcome))

    handler = CommandHandler(
        CommandsSection(board_timeout_s=0.05),
        board,
        press,
        on_start=lambda operator, recipe, run: started.append((operator, run)),
        on_settled=on_settled,
        clock=lambda: NOW,
        monotonic=lambda: 100.0,
    )
    start = _command("start", {})

    async def go() -> tuple[Outcome, Outcome, Outcome]:
        first = await handler.handle(start)
        assert started == [] and handler.pending  # not executed yet, not forgotten either
        meanwhile = await handler.handle(_command("load-recipe", {"recipe": GOOD_RECIPE}))
        abort = await handler.handle(_command("abort"))  # never refused for a pending command
        await asyncio.sleep(0.5)
        return first, meanwhile, abort

    first, meanwhile, abort = asyncio.run(go())
    assert first.reply is not None and first.reply.pending and not first.reply.accepted
    assert "may yet execute: its final reply follows on this response topic" in (first.reply.error or "")
    assert meanwhile.reply is not None and not meanwhile.reply.accepted
    assert "start from 'alice'" in (meanwhile.reply.error or "") and "may still execute" in (
        meanwhile.reply.error or ""
    )
    assert abort.reply is not None and "abort is not allowed while the press is ready" in (
        abort.reply.error or ""
    )
    assert [name for name, _ in board.calls] == ["start"]  # nothing else reached the board
    assert started == [("alice", 9)]  # the late ACK still opened the run for its operator
    finals = {c.verb: o for c, o in settled}
    final = finals["start"]
    assert final.late and final.reply is not None and final.reply.accepted and not final.reply.pending
    assert final.reply.board is not None and final.reply.board.value == 9
    assert final.reply.command_id == first.reply.command_id is not None
    assert settled[0][0] is start and not handler.pending


def test_a_pending_command_the_board_never_gets_settles_as_rejected() -> None:
    board = RecordingBoard(error=BoardUnavailable("no reply from the board (8 tries)"), delay_s=0.2)
    settled: list[Outcome] = []

    async def on_settled(_command: IncomingCommand, outcome: Outcome) -> None:
        settled.append(outcome)

    handler = CommandHandler(
        CommandsSection(board_timeout_s=0.05),
        board,
        _press(codes.ST_HOLDING),
        on_settled=on_settled,
        clock=lambda: NOW,
        monotonic=lambda: 100.0,
    )

    async def go() -> Outcome:
        first = await handler.handle(_command("pause"))
        await asyncio.sleep(0.4)
        return first

    first = asyncio.run(go())
    assert first.reply is not None and first.reply.pending
    (final,) = settled
    assert final.late and final.reply is not None and not final.reply.accepted and not final.reply.pending
    assert final.reply.error == "the board could not be reached: no reply from the board (8 tries)"
