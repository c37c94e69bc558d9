"""Board time to UTC: the minimum-delay offset, drift, the u32 wrap, a reboot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from isopress.agent.board_clock import BoardClock

T0 = datetime(2026, 11, 25, 22, 0, 0, tzinfo=UTC)


def _clock() -> BoardClock:
    clock = BoardClock(window=4)
    clock.anchor(100.0, T0)  # host monotonic 100 s is T0
    return clock


def test_the_least_delayed_heartbeat_sets_the_offset() -> None:
    clock = _clock()
    assert not clock.known
    assert clock.wall_time(5000, fallback_mono_s=100.5) == T0 + timedelta(seconds=0.5)  # arrival time
    # board_ms 1000 is host 100.0 s; heartbeats arrive 30, 2 and 11 ms late
    for board_ms, delay in ((1000, 0.030), (1250, 0.002), (1500, 0.011)):
        clock.observe(board_ms, 99.0 + board_ms / 1000 + delay)
    offset = clock.offset_s
    assert offset is not None and abs(offset - 99.002) < 1e-9
    assert clock.wall_time(1000, 0.0) == T0 + timedelta(seconds=0.002)
    assert clock.wall_time(1010, 0.0) - clock.wall_time(1000, 0.0) == timedelta(milliseconds=10)
    assert clock.wall_time(1000, 0.0).tzinfo is UTC


def test_a_drifting_board_clock_is_followed_through_the_window() -> None:
    clock = _clock()
    for i in range(4):
        clock.observe(1000 + 250 * i, 99.0 + (1000 + 250 * i) / 1000)  # no delay, offset 99.0
    # the board now runs 1 % slow: its ms are longer, the offset grows; the old minimum ages out
    for i in range(4, 12):
        board_ms = 1000 + 250 * i
        clock.observe(board_ms, 99.0 + 2.0 + (board_ms - 2000) / 1000 * 1.01)
    now_offset = 99.0 + 2.0 + (3750 - 2000) / 1000 * 1.01 - 3.75  # 99.0175
    offset = clock.offset_s
    # the minimum of the last 4 heartbeats: 0.75 s of 1 % drift behind now, the old 99.0 gone
    assert offset is not None and now_offset - 0.0076 < offset <= now_offset


def test_board_ms_is_unwrapped_across_the_u32_boundary_and_a_reboot_restarts() -> None:
    clock = _clock()
    clock.observe(0xFFFF_FF00, 100.0)  # 49.7 days of uptime, arriving at host 100 s
    assert clock.wall_time(0xFFFF_FF00, 0.0) == T0
    assert clock.wall_time(0x0000_0100, 0.0) == T0 + timedelta(milliseconds=0x200)  # after the wrap
    clock.observe(0x0000_0100, 100.0 + 0x200 / 1000)
    assert clock.wall_time(0x0000_0100, 0.0) == T0 + timedelta(milliseconds=0x200)
    clock.reset()
    assert not clock.known
    clock.observe(0, 150.0)  # a new boot: board_ms 0 is host 150 s
    assert clock.wall_time(0, 0.0) == T0 + timedelta(seconds=50)
