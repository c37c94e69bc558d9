"""RunOptions: bad options are refused by name; the collection cadence a run gets."""

from __future__ import annotations

import pytest

from isopress.hil.runner import VIRTUAL_TIME_GC_EVERY_TICKS, RunOptions


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"runtime": "pypy"}, "runtime"),
        ({"controller": "bang_bang"}, "controller"),
        ({"gc_every_ticks": 0}, "gc_every_ticks"),
    ],
)
def test_a_bad_option_is_refused_naming_it(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        RunOptions(**kwargs)  # type: ignore[arg-type]


def test_virtual_time_collects_less_often_and_real_time_keeps_the_boards_cadence() -> None:
    assert RunOptions().loop_gc_every_ticks() == VIRTUAL_TIME_GC_EVERY_TICKS
    assert RunOptions(realtime=True).loop_gc_every_ticks() is None  # the config's gc_every_ticks
    assert RunOptions(realtime=True, gc_every_ticks=5).loop_gc_every_ticks() == 5
    assert RunOptions(gc_every_ticks=10).loop_gc_every_ticks() == 10
