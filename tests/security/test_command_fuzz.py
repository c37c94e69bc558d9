"""Command payload fuzz: whatever arrives on a command topic, the answer is a typed rejection.

Every verb's parser (the pydantic models of payloads.py and recipe.py, then the age,
replay and device-profile checks of commands.py) is fed arbitrary bytes, arbitrary JSON,
and valid payloads broken in one known way. Each must give a CommandReply with
accepted=false whose problems name the field that was broken, never raise, and never
reach the board; the press is set up so that the unbroken payload WOULD reach the board
(a control test proves it). A long mixed run under tracemalloc shows memory stays flat.

``make test`` runs a brief, derandomised version; ``make fuzz`` (HYPOTHESIS_PROFILE=fuzz)
runs FUZZ_HYPOTHESIS_EXAMPLES new examples per property and FUZZ_COMMAND_ITERATIONS
inputs in the memory run.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import logging
import os
import random
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isopress.agent.commands import CommandHandler
from isopress.agent.config import CommandsSection
from isopress.agent.fake_board import FakeBoard
from isopress.agent.model import CommandResult
from isopress.agent.mqtt import IncomingCommand
from isopress.agent.payloads import COMMAND_MODELS, CommandReply
from isopress.agent.press import LoadedRecipe, PressView
from isopress.agent.recipe import Recipe
from isopress.agent.replay import ReplayGuard
from isoproto import codes

FUZZING = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
EXAMPLES = int(os.environ.get("FUZZ_HYPOTHESIS_EXAMPLES", "5000")) if FUZZING else 200
ITERATIONS = int(os.environ.get("FUZZ_COMMAND_ITERATIONS", "100000" if FUZZING else "2000"))
WARM_UP = 3000  # pydantic's and the interpreter's caches, the replay guard's steady state
SEED = int(os.environ.get("FUZZ_SEED", "20261125"))

# Independent of the profile the protocol tests load: derandomised (the same examples
# every run) in `make test`, new random ones under `make fuzz`.
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=not FUZZING,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
VERBS = tuple(COMMAND_MODELS)
GOOD_RECIPE: dict[str, Any] = {
    "name": "250 MPa cycle",
    "segments": [
        {"kind": "ramp", "target_mpa": 250.0, "rate_mpa_s": 1.0},
        {"kind": "hold", "duration_s": 300.0},
        {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 0.5},
    ],
}
LOADED = LoadedRecipe.of(Recipe.model_validate(GOOD_RECIPE))
# A state in which each verb is allowed, so that only the payload can stop it.
STATE_FOR = {
    "load-recipe": codes.ST_IDLE,
    "start": codes.ST_READY,
    "pause": codes.ST_HOLDING,
    "resume": codes.ST_PAUSED,
    "abort": codes.ST_HOLDING,
    "reset": codes.ST_FAULT,
}
FLOAT_FIELDS = ("target_mpa", "rate_mpa_s", "duration_s")
OPTIONAL_FIELDS = ("recipe_sha256",)


class CountingBoard:
    """A BoardPort that counts calls (no list: the memory run must not grow it)."""

    def __init__(self) -> None:
        self.calls = 0

    async def _ok(self, *_args: Any) -> CommandResult:
        self.calls += 1
        return CommandResult(ok=True, value=1)

    load_recipe = start = _ok

    async def pause(self) -> CommandResult:
        return await self._ok()

    async def resume(self) -> CommandResult:
        return await self._ok()

    async def abort(self) -> CommandResult:
        return await self._ok()

    async def reset_faults(self) -> CommandResult:
        return await self._ok()


class Rig:
    """One handler per verb, its press in a state that allows the verb, a counting board."""

    def __init__(self, clock: list[datetime] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = clock if clock is not None else [NOW]
        self.board = CountingBoard()
        self.handlers: dict[str, CommandHandler] = {}
        info = FakeBoard().info
        for verb in VERBS:
            press = PressView("press-01")
            press.on_info(info)
            press.state = STATE_FOR[verb]
            press.recipe = LOADED
            self.handlers[verb] = CommandHandler(
                CommandsSection(), self.board, press, clock=lambda: self.clock[0], monotonic=lambda: 100.0
            )

    def handle(self, verb: str, payload: bytes, *, operator: str = "alice") -> CommandReply:
        handler = self.handlers.get(verb) or self.handlers["pause"]
        command = IncomingCommand(
            operator=operator,
            verb=verb,
            payload=payload,
            retain=False,
            response_topic=None,
            correlation_data=b"c",
            expiry_s=None,
            received_monotonic=100.0,
            received_at=self.clock[0],
        )
        outcome = self.loop.run_until_complete(handler.handle(command))
        assert outcome.reply is not None
        # What the agent publishes: it must serialise, and read back as a reply. (json.loads,
        # not model_validate_json: pydantic-core's JSON string cache would fill up in the
        # memory run and look like a leak of the handler's.)
        CommandReply.model_validate(json.loads(outcome.reply.model_dump_json()))
        return outcome.reply

    def forget_commands(self) -> None:
        """A fresh replay guard for every handler (tests that send many valid commands)."""
        for handler in self.handlers.values():
            handler.replay_guard = ReplayGuard(handler.settings.max_age_s)

    def close(self) -> None:
        self.loop.close()


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    commands_log = logging.getLogger("isopress.agent.commands")
    commands_log.disabled = True  # a warning per rejection, kept by pytest: noise, and memory
    rig = Rig()
    try:
        yield rig
    finally:
        rig.close()
        commands_log.disabled = False


def _assert_rejected(rig: Rig, reply: CommandReply, calls_before: int) -> set[str]:
    assert not reply.accepted, reply
    assert reply.error, reply
    assert reply.problems and all(p.field for p in reply.problems), reply
    assert rig.board.calls == calls_before, "a rejected command reached the board"
    return {p.field for p in reply.problems}


# -- valid payloads and how to break them -------------------------------------------------
def valid_payload(verb: str, rng: random.Random, sent_at: datetime = NOW) -> dict[str, Any]:
    """A payload of ``verb`` that the rig's handler accepts."""
    body: dict[str, Any] = {"command_id": f"{rng.getrandbits(128):032x}", "sent_at": sent_at.isoformat()}
    if verb == "load-recipe":
        body["recipe"] = copy.deepcopy(GOOD_RECIPE)
    elif verb == "start":
        body["recipe_sha256"] = LOADED.sha256
    return body


Where = tuple[str | int, ...]


def _walk(node: Any, path: Where = ()) -> Iterator[tuple[Where, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, i))


def _get(node: Any, path: Where) -> Any:
    for part in path:
        node = node[part]
    return node


def field_name(payload: dict[str, Any], path: Where) -> str:
    """The problem field the handler reports for ``path`` (pydantic's loc, joined by dots).

    Inside a segment pydantic puts the segment's kind (the union's tag) after its index;
    a broken ``kind`` or a broken segment as a whole is reported at the segment.
    """
    if not path:
        return "(payload)"
    parts = [str(p) for p in path]
    if path[:2] == ("recipe", "segments") and len(path) >= 4 and path[3] != "kind":
        kind = payload["recipe"]["segments"][path[2]]["kind"]
        parts = [*parts[:3], str(kind), *parts[3:]]
    elif path[:2] == ("recipe", "segments") and len(path) == 4:
        parts = parts[:3]
    return ".".join(parts)


def break_payload(verb: str, rng: random.Random) -> tuple[bytes, str]:
    """A valid payload of ``verb`` broken in one way, and the field the reply must name."""
    payload = valid_payload(verb, rng)
    nodes = [(p, v) for p, v in _walk(payload) if p]
    keys = [(p, v) for p, v in nodes if isinstance(p[-1], str)]
    objects = [(p, v) for p, v in _walk(payload) if isinstance(v, dict)]
    how = rng.choice(
        ["drop", "unknown", "wrong_type", "not_finite", "bad_string", "out_of_profile", "age", "root", "cut"]
    )
    if how == "drop":
        path, _ = rng.choice([(p, v) for p, v in keys if p[-1] not in OPTIONAL_FIELDS])
        expected = field_name(payload, path)
        del _get(payload, path[:-1])[path[-1]]
        return json.dumps(payload).encode(), expected
    if how == "unknown":
        path, obj = rng.choice(objects)
        key = f"x_{rng.getrandbits(32):x}"
        obj[key] = rng.choice([1, "a", None, [], {}])
        return json.dumps(payload).encode(), field_name(payload, (*path, key))
    if how == "wrong_type":
        path, value = rng.choice(nodes)
        expected = field_name(payload, path)
        if isinstance(value, dict | list):
            wrong: Any = rng.choice(["text", 7, 2.5, True])
            if isinstance(value, list):
                wrong = rng.choice([wrong, {"0": 1}])
        else:
            wrong = rng.choice([[], {}, [1, 2], {"a": 1}] + ([] if path[-1] in OPTIONAL_FIELDS else [None]))
        _get(payload, path[:-1])[path[-1]] = wrong
        return json.dumps(payload).encode(), expected
    if how == "not_finite" and verb == "load-recipe":
        path, _ = rng.choice([(p, v) for p, v in keys if p[-1] in FLOAT_FIELDS])
        _get(payload, path[:-1])[path[-1]] = rng.choice([float("nan"), float("inf"), float("-inf")])
        return json.dumps(payload).encode(), field_name(payload, path)  # NaN / Infinity tokens
    if how == "out_of_profile" and verb == "load-recipe":
        i = rng.randrange(len(payload["recipe"]["segments"]))
        segment = payload["recipe"]["segments"][i]
        if segment["kind"] == "ramp":
            key, value = rng.choice(
                [("target_mpa", 400.5), ("target_mpa", -1.0), ("rate_mpa_s", 0.0), ("rate_mpa_s", 2.5)]
            )
        else:
            key, value = rng.choice([("duration_s", 0.0), ("duration_s", -5.0), ("duration_s", 1e6)])
        segment[key] = value
        return json.dumps(payload).encode(), f"segments[{i}].{key}"  # the profile check's naming
    if how == "bad_string":
        choices: list[tuple[Where, Any]] = [
            (("command_id",), rng.choice(["", "short", "has space!", "x" * 65, "ünïcode-id"])),
            (("sent_at",), rng.choice(["yesterday", "", "2026-11-25T12:00:00", "2026-13-40T25:61:00Z"])),
        ]
        if verb == "load-recipe":
            choices.append((("recipe", "name"), rng.choice(["", "n" * 65])))
            choices.append((("recipe", "segments", 0, "kind"), rng.choice(["squeeze", "", "RAMP"])))
        if verb == "start":
            choices.append((("recipe_sha256",), rng.choice(["xyz", "A" * 64, "0" * 63, ""])))
        path, value = rng.choice(choices)
        _get(payload, path[:-1])[path[-1]] = value
        return json.dumps(payload).encode(), field_name(payload, path)
    if how == "age":
        offset_s = rng.choice([-1.0, 1.0]) * rng.uniform(61.0, 1e6)
        payload["sent_at"] = (NOW + timedelta(seconds=offset_s)).isoformat()
        return json.dumps(payload).encode(), "sent_at"
    if how == "root":
        return json.dumps(rng.choice([[payload], "text", 42, None, True, []])).encode(), "(payload)"
    # "cut" (and the load-recipe-only kinds for other verbs): the JSON text truncated.
    text = json.dumps(payload).encode()
    return text[: rng.randrange(len(text))], "(payload)"


# -- the control: an unbroken payload does reach the board --------------------------------
@pytest.mark.parametrize("verb", VERBS)
def test_the_unbroken_payload_of_each_verb_reaches_the_board(rig: Rig, verb: str) -> None:
    rig.forget_commands()
    before = rig.board.calls
    reply = rig.handle(verb, json.dumps(valid_payload(verb, random.Random(verb))).encode())
    assert reply.accepted, reply
    assert rig.board.calls == before + 1


# -- the properties -----------------------------------------------------------------------
@FUZZ_SETTINGS
@given(verb=st.sampled_from(VERBS), payload=st.binary(max_size=4096))
def test_arbitrary_bytes_are_a_typed_rejection(rig: Rig, verb: str, payload: bytes) -> None:
    before = rig.board.calls
    _assert_rejected(rig, rig.handle(verb, payload), before)


_KEYS = st.sampled_from(["command_id", "sent_at", "recipe", "name", "segments", "kind", "target_mpa",
                         "rate_mpa_s", "duration_s", "recipe_sha256"])  # fmt: skip
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=80)
    | st.sampled_from(["ramp", "hold", NOW.isoformat(), LOADED.sha256, "0123456789abcdef"]),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(_KEYS | st.text(max_size=12), children),
    max_leaves=25,
)


@FUZZ_SETTINGS
@given(verb=st.sampled_from(VERBS), document=_JSON)
def test_arbitrary_json_is_a_typed_rejection_unless_it_is_a_command(
    rig: Rig, verb: str, document: Any
) -> None:
    # Arbitrary JSON can spell a valid command (the generator knows the field names and
    # a fresh sent_at): then it runs, once. Otherwise, a typed rejection.
    _runs_only_if_valid(rig, verb, json.dumps(document).encode())


def _runs_only_if_valid(rig: Rig, verb: str, payload: bytes) -> None:
    before = rig.board.calls
    reply = rig.handle(verb, payload)
    if reply.accepted:
        assert rig.board.calls == before + 1
        COMMAND_MODELS[verb].model_validate(json.loads(payload))  # it really is a valid command
    else:
        _assert_rejected(rig, reply, before)


@FUZZ_SETTINGS
@given(verb=st.sampled_from(VERBS), rng=st.randoms(use_true_random=False))
def test_a_valid_payload_broken_in_one_way_is_refused_naming_that_field(
    rig: Rig, verb: str, rng: random.Random
) -> None:
    payload, expected = break_payload(verb, rng)
    before = rig.board.calls
    fields = _assert_rejected(rig, rig.handle(verb, payload), before)
    assert expected in fields, (expected, fields, payload)


@FUZZ_SETTINGS
@given(
    verb=st.sampled_from(VERBS),
    rng=st.randoms(use_true_random=False),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_byte_damage_to_a_valid_payload_runs_it_only_if_it_is_still_valid(
    rig: Rig, verb: str, rng: random.Random, flips: list[tuple[int, int]]
) -> None:
    # Damaged bytes may still spell a valid command (a changed letter in a name): then
    # it runs, once. Otherwise it is a typed rejection. Never anything else.
    data = bytearray(json.dumps(valid_payload(verb, rng)).encode())
    for where, value in flips:
        data[where % len(data)] = value
    _runs_only_if_valid(rig, verb, bytes(data))


@FUZZ_SETTINGS
@given(verb=st.text(max_size=20), operator=st.text(max_size=80), rng=st.randoms(use_true_random=False))
def test_any_topic_segments_with_a_valid_payload_run_only_as_a_known_verb_and_operator(
    rig: Rig, verb: str, operator: str, rng: random.Random
) -> None:
    from isopress.agent.topics import OPERATOR_PATTERN

    rig.forget_commands()  # every example is a new valid command: keep the guard from filling up
    known = verb if verb in COMMAND_MODELS else "pause"
    payload = json.dumps(valid_payload(known, rng)).encode()
    before = rig.board.calls
    reply = rig.handle(verb, payload, operator=operator)
    if verb in COMMAND_MODELS and OPERATOR_PATTERN.match(operator):
        assert reply.accepted and rig.board.calls == before + 1
    else:
        assert not reply.accepted and reply.error and rig.board.calls == before


# -- memory: a long mixed run stays flat --------------------------------------------------
def _mixed_input(rng: random.Random, clock: datetime) -> tuple[str, bytes]:
    verb = rng.choice(VERBS)
    kind = rng.random()
    if kind < 0.25:
        return verb, rng.randbytes(rng.randrange(0, 600))
    if kind < 0.85:
        return verb, break_payload(verb, rng)[0]
    if kind < 0.9:  # a copy of a recent command: refused by the replay guard
        return verb, json.dumps(
            valid_payload(verb, random.Random(int(clock.timestamp()) // 5), clock)
        ).encode()
    return verb, json.dumps(valid_payload(verb, rng, clock)).encode()  # valid: runs


def test_memory_stays_flat_over_a_long_mixed_run(record_property: Any) -> None:
    # The clock advances 10 ms per command, so valid commands age out of the replay guard
    # as they would in a long-running agent; the warm-up fills it to its steady state.
    rng = random.Random(SEED)
    clock = [NOW]
    commands_log = logging.getLogger("isopress.agent.commands")
    commands_log.disabled = True
    rig = Rig(clock)
    step = timedelta(milliseconds=10)
    accepted = 0

    def run(n: int) -> int:
        ok = 0
        for _ in range(n):
            clock[0] += step
            verb, payload = _mixed_input(rng, clock[0])
            ok += rig.handle(verb, payload).accepted
        return ok

    # Traced from the start: objects that the interpreter's free lists hand out again are
    # not seen by tracemalloc when they were allocated before it started, so a late start
    # shows the live set being replaced as "growth".
    tracemalloc.start()
    try:
        run(WARM_UP)
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        accepted = run(ITERATIONS // 2)
        gc.collect()
        middle, _ = tracemalloc.get_traced_memory()
        accepted += run(ITERATIONS - ITERATIONS // 2)
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        rig.close()
        commands_log.disabled = False
    guard_sizes = [len(h.replay_guard) for h in rig.handlers.values()]
    figures = {
        "iterations": ITERATIONS,
        "accepted": accepted,
        "board_calls": rig.board.calls,
        "traced_before_bytes": before,
        "traced_middle_bytes": middle,
        "traced_after_bytes": after,
        "traced_peak_bytes": peak,
        "replay_guard_sizes": guard_sizes,
    }
    for key, value in figures.items():
        record_property(key, value)
    print(f"\ncommand fuzz memory: {figures}")
    assert 0 < accepted < ITERATIONS // 5  # valid commands ran; everything else did not
    assert max(guard_sizes) < 200  # ~10 s of ~1.7 accepted commands/s per verb, not growing
    # Flat: no more than a few pages of noise (the guard's contents, dict resizes), and no
    # trend from the middle of the run to its end.
    assert after - before < 64 * 1024, figures
    assert after - middle < 32 * 1024, figures
