"""The session checkpoint's text: round trip, and refusals that name the field."""

from __future__ import annotations

import pytest

from isopress.agent.checkpoint import Checkpoint, StreamPosition


def test_a_checkpoint_round_trips_through_its_text() -> None:
    cp = Checkpoint(
        board_id="E6614103E7452D2F",
        boot_count=4,
        samples=StreamPosition(1234, ((100, 101), (0xFFFF_FFF0, 3))),
        events=StreamPosition(12, ()),
    )
    text = cp.to_text()
    assert '"boot_count":4' in text and " " not in text
    assert Checkpoint.from_text(text) == cp


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not JSON"),
        ('{"v": 2}', "unknown version 2"),
        ('{"v": 1, "board_id": 5}', "board_id must be a string"),
        ('{"v": 1, "board_id": "b", "boot_count": -1}', "boot_count must be an integer"),
        ('{"v": 1, "board_id": "b", "boot_count": 1, "samples": []}', "samples must be an object"),
        (
            '{"v": 1, "board_id": "b", "boot_count": 1, "samples": {"latest": 5, "missing": [[1]]},'
            ' "events": {"latest": 0}}',
            r"samples.missing\[0\] must be \[first, count\]",
        ),
        (
            '{"v": 1, "board_id": "b", "boot_count": 1, "samples": {"latest": 5},'
            ' "events": {"latest": true}}',
            "events.latest must be an integer",
        ),
    ],
)
def test_a_damaged_checkpoint_is_refused_naming_the_field(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Checkpoint.from_text(text)
