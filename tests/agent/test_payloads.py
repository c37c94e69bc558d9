"""Payload JSON vs the models and the checked-in schemas; recipe hashing and checks; backoff."""

from __future__ import annotations

import hashlib
import json
import math
import random
import struct
from datetime import UTC, datetime

import pytest
from agent_helpers import GOOD_RECIPE, make_info, make_sample
from pydantic import ValidationError

from isopress.agent.backoff import Backoff
from isopress.agent.model import BoardEvent, describe_event, fault_names
from isopress.agent.payloads import (
    EventPayload,
    TelemetryBatch,
    agent_event_body,
    event_body,
    sample_body,
    telemetry_batch,
    with_historical,
)
from isopress.agent.recipe import (
    MAX_RECIPE_SEGMENTS,
    Recipe,
    check_recipe,
    ramp_duration_s,
    recipe_canonical_bytes,
    recipe_duration_s,
    recipe_id,
    recipe_segments,
    recipe_sha256,
    segments_duration_s,
)
from isopress.agent.schemas import main as schemas_main
from isopress.agent.schemas import render_schemas, schema_folder
from isoproto import codes, names
from isoproto import recipe as wire_recipe


def test_checked_in_schemas_match_the_models() -> None:
    rendered = render_schemas()
    folder = schema_folder()
    on_disk = {p.name: p.read_text() for p in folder.glob("*.schema.json")}
    assert set(on_disk) == set(rendered), "run: python -m isopress.agent.schemas"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"{name} is stale: run python -m isopress.agent.schemas"
    assert schemas_main(["--check"]) == 0


def test_the_schema_check_notices_a_stale_file(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from isopress.agent import schemas

    fake = {**schemas.render_schemas()}
    fake["telemetry.schema.json"] = fake["telemetry.schema.json"].replace("pressure", "presure")
    monkeypatch.setattr(schemas, "render_schemas", lambda: fake)
    assert schemas.main(["--check"]) == 1


def test_the_hand_built_telemetry_json_is_a_valid_batch() -> None:
    samples = [make_sample(i, state=codes.ST_HOLDING) for i in range(3)]
    bodies = [with_historical(sample_body(s), i == 2) for i, s in enumerate(samples)]
    batch = TelemetryBatch.model_validate_json(telemetry_batch('press-"x"', bodies))
    assert batch.press_id == 'press-"x"'
    assert [s.seq for s in batch.samples] == [0, 1, 2]
    assert [s.historical for s in batch.samples] == [False, False, True]
    assert batch.samples[0].state == "holding"
    assert batch.samples[1].wall_time.tzinfo is not None


def test_event_json_is_valid_and_speaks_words() -> None:
    event = BoardEvent(
        boot_count=2,
        event_seq=9,
        sample_seq=1234,
        board_ms=5000,
        wall_time=datetime.now(UTC),
        kind=codes.EV_FAULT_RAISED,
        code=codes.F_OVERPRESSURE_SW,
        detail=0,
        value=412.5,
    )
    payload = EventPayload.model_validate_json(with_historical(event_body(event), True))
    assert payload.kind == "fault_raised" and payload.code_name == "overpressure_sw"
    assert (
        payload.reason == "fault raised: over-pressure: above the recipe maximum plus margin (at 412.5 MPa)"
    )
    assert payload.historical and payload.source == "board"
    agent = EventPayload.model_validate_json(
        with_historical(
            agent_event_body("spool_overflow", "dropped", detail=5, when=datetime.now(UTC)), False
        )
    )
    assert agent.source == "agent" and agent.event_seq is None


def test_every_event_kind_has_words() -> None:
    assert describe_event(codes.EV_STATE_CHANGED, codes.ST_HOLDING, codes.ST_PRESSURISING, 250.0) == (
        "state pressurising -> holding (at 250.0 MPa)"
    )
    assert (
        describe_event(codes.EV_BOOT, codes.RESET_WATCHDOG, 0, 0.0) == "board booted (reset cause: watchdog)"
    )
    for kind in range(1, len(names.EVENT_NAMES)):
        assert describe_event(kind, 1, 1, 0.0)
    assert fault_names((1 << codes.F_ESTOP) | 1) == ("overpressure_hw", "estop")


def test_recipe_hash_is_over_the_protocol_segment_records() -> None:
    recipe = Recipe.model_validate(GOOD_RECIPE)
    expected = (
        struct.pack("<Bfff", codes.SEG_RAMP, 250.0, 1.0, 0.0)
        + struct.pack("<Bfff", codes.SEG_HOLD, 0.0, 0.0, 300.0)
        + struct.pack("<Bfff", codes.SEG_RAMP, 0.0, 0.5, 0.0)
    )
    assert recipe_canonical_bytes(recipe) == expected
    # the same bytes and id as the protocol's own functions (the board's)
    assert wire_recipe.recipe_bytes(recipe_segments(recipe)) == expected
    assert wire_recipe.recipe_id(recipe_segments(recipe)) == recipe_id(recipe)
    assert recipe_sha256(recipe) == hashlib.sha256(expected).hexdigest()
    assert recipe_id(recipe) == int.from_bytes(hashlib.sha256(expected).digest()[:4], "big")
    renamed = Recipe.model_validate({**GOOD_RECIPE, "name": "other name"})
    assert recipe_sha256(renamed) == recipe_sha256(recipe)  # the name is not what the press does
    # the ramp down at the board's DOWN_RATE_PERMILLE of its 0.5 MPa/s, after a 2 s soft start
    assert recipe_duration_s(recipe) == pytest.approx(250 + 300 + 250 / 0.495 + 1.0)
    assert recipe_duration_s(recipe, start_mpa=250.0) == pytest.approx(300 + 250 / 0.495 + 1.0)
    assert ramp_duration_s(10.0, 9.9, 1.0) == pytest.approx(math.sqrt(2 * 0.1 * 2.0 / 0.99))
    assert ramp_duration_s(0.0, 10.0, 2.0) == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("start_mpa", "target_mpa", "rate_mpa_s", "entry_mpa_s"),
    [
        (0.0, 250.0, 1.0, 0.0),
        (250.0, 0.0, 0.5, 0.0),
        (300.0, 200.0, 2.0, 0.0),
        (10.0, 9.9, 1.0, 0.0),
        (5.0, 4.0, 0.25, 0.0),
        (100.0, 50.0, 0.5, 0.99),
        (1.0, 0.55, 0.3, 0.5),
    ],
)
def test_host_ramp_durations_are_the_boards(
    start_mpa: float, target_mpa: float, rate_mpa_s: float, entry_mpa_s: float
) -> None:
    # The host's copy of the board's ramp timing (isofw.recipe.ramp_s with the guarded
    # down-rate and the soft start): the firmware tree is on this test's path.
    from isofw.recipe import SOFT_START_S, ramp_s

    down = target_mpa < start_mpa
    board_rate = rate_mpa_s * codes.DOWN_RATE_PERMILLE / 1000 if down else rate_mpa_s
    expected = ramp_s(target_mpa - start_mpa, entry_mpa_s, board_rate, SOFT_START_S if down else 0.0)
    got = ramp_duration_s(start_mpa, target_mpa, rate_mpa_s, entry_mpa_s)
    assert got == pytest.approx(expected, rel=1e-12)


def test_host_recipe_durations_follow_the_boards_setpoint_generator() -> None:
    # The firmware's generator, stepped in 10 ms ticks, ends the recipe when the host says.
    from isofw.recipe import Recipe as BoardRecipe
    from isofw.recipe import SetpointGenerator

    segments = [("ramp", 100.0, 2.0, None), ("ramp", 40.0, 1.0, None), ("ramp", 39.8, 0.3, None)]
    segments += [("hold", None, None, 5.0), ("ramp", 0.0, 0.5, None)]
    board = BoardRecipe()
    for i, (kind, target, rate, duration) in enumerate(segments):
        seg_kind = codes.SEG_RAMP if kind == "ramp" else codes.SEG_HOLD
        board.put(i, (seg_kind, target or 0.0, rate or 0.0, duration or 0.0))
    board.count = len(segments)
    gen = SetpointGenerator()
    gen.start(board, 0, 0.0)
    ms = 0
    while not gen.done:
        ms += 10
        gen.update(ms)
    assert segments_duration_s(segments) == pytest.approx(ms / 1000.0, abs=0.011)


def test_recipe_check_edges() -> None:
    profile = make_info().profile
    at_limits = Recipe.model_validate(
        {
            "name": "edge",
            "segments": [
                {"kind": "ramp", "target_mpa": 400.0, "rate_mpa_s": 2.0},
                {"kind": "hold", "duration_s": 3600.0},
                {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.0},
            ],
        }
    )
    assert check_recipe(at_limits, profile) == []
    bad = Recipe.model_validate(
        {
            "name": "bad",
            "segments": [
                {"kind": "ramp", "target_mpa": -1.0, "rate_mpa_s": 0.0},
                {"kind": "hold", "duration_s": 0.0},
            ],
        }
    )
    assert [(p.field, p.reason) for p in check_recipe(bad, profile)] == [
        ("segments[0].target_mpa", "target_negative"),
        ("segments[0].rate_mpa_s", "rate_not_positive"),
        ("segments[1].duration_s", "value_out_of_range"),
    ]
    empty = Recipe.model_validate({"name": "e", "segments": []})
    assert [p.reason for p in check_recipe(empty, profile)] == ["empty_recipe"]
    long = Recipe.model_validate({"name": "l", "segments": [{"kind": "hold", "duration_s": 1}] * 33})
    assert [(p.reason, p.value, p.limit) for p in check_recipe(long, profile)] == [
        ("too_many_segments", 33, MAX_RECIPE_SEGMENTS)
    ]
    with pytest.raises(ValidationError):
        Recipe.model_validate(
            {"name": "n", "segments": [{"kind": "ramp", "target_mpa": float("inf"), "rate_mpa_s": 1}]}
        )


def test_backoff_is_capped_jittered_and_resets() -> None:
    backoff = Backoff(0.5, 8.0, 2.0, rng=random.Random(3))
    delays = [backoff.next_delay_s() for _ in range(10)]
    ceilings = [0.5, 1, 2, 4, 8, 8, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert backoff.next_delay_s() <= 0.5
    many = Backoff(0.1, 30.0)
    many.attempts = 10_000  # a very long outage must not overflow
    assert many.ceiling_s() == 30.0
    with pytest.raises(ValueError):
        Backoff(1.0, 0.5)


def test_sample_json_keys_are_exactly_the_model_fields() -> None:
    keys = set(json.loads(with_historical(sample_body(make_sample(1)), False)))
    from isopress.agent.payloads import TelemetrySample

    assert keys == set(TelemetrySample.model_fields)
