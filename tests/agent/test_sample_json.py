"""The hand-formatted sample JSON (the 100 Hz hot path) is json.dumps' text, for any sample."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isopress.agent.model import Sample
from isopress.agent.payloads import TelemetryBatch, sample_body, sample_body_json, with_historical

_U16 = st.integers(0, 0xFFFF)
_U32 = st.integers(0, 0xFFFFFFFF)
_FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.floats(-1.0, 700.0) | st.integers(-5, 500)
_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))])


@st.composite
def samples(draw: st.DrawFn) -> Sample:
    when = draw(
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=_ZONES)
    )
    return Sample(
        boot_count=draw(_U32),
        seq=draw(_U32),
        board_ms=draw(_U32),
        wall_time=when,
        pressure_mpa=draw(_FLOATS),
        setpoint_mpa=draw(_FLOATS),
        pump_duty=draw(_U16),
        vent_duty=draw(_U16),
        faults=draw(_U16),
        state=draw(st.integers(-3, 40)),  # beyond the known states too: state_<n>
        flags=draw(st.integers(0, 0xFF) | st.booleans()),  # a bool is JSON true, not 1
        segment=draw(st.integers(0, 300)),
        run_id=draw(_U16),
        historical=draw(st.booleans()),
    )


@settings(max_examples=1000, derandomize=True, database=None, deadline=None)
@given(samples())
def test_the_fast_sample_json_is_the_json_dumps_text(sample: Sample) -> None:
    fast = sample_body(sample)
    assert fast == sample_body_json(sample)
    finite = all(math.isfinite(v) for v in (sample.pressure_mpa, sample.setpoint_mpa))
    if finite:
        # Valid JSON (no NaN/Infinity) that the published schema accepts
        decoded = json.loads(fast, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        assert decoded["wall_time"].endswith("Z")
        assert datetime.fromisoformat(decoded["wall_time"]) == sample.wall_time
        if not isinstance(sample.flags, bool) and isinstance(sample.pressure_mpa, float):
            body = with_historical(fast, sample.historical)
            TelemetryBatch.model_validate_json('{"press_id":"p","samples":[' + body + "]}")


def test_the_fast_path_is_taken_for_an_ordinary_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    # (Equal text alone would pass if every sample fell back to json.dumps.)
    from isopress.agent import payloads

    sample = Sample(
        boot_count=1, seq=7, board_ms=70, wall_time=datetime(2026, 12, 3, 7, 0, 0, 5, tzinfo=UTC),
        pressure_mpa=250.125, setpoint_mpa=250.0, pump_duty=1, vent_duty=2, faults=3, state=4,
        flags=5, segment=6, run_id=8,
    )  # fmt: skip
    called: list[Sample] = []
    original = payloads.sample_body_json
    monkeypatch.setattr(payloads, "sample_body_json", lambda s: called.append(s) or original(s))
    body = sample_body(sample)
    assert not called
    assert body == original(sample)
    assert '"wall_time":"2026-12-03T07:00:00.000005Z"' in body
