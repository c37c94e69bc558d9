"""Board time to wall time: the offset between the board's clock and the host's.

Each frame that carries ``board_ms`` (HEARTBEAT, and live TELEMETRY until the first
heartbeat) gives one observation: host monotonic time at arrival minus ``board_ms``. The
true offset is that minus the frame's delay on the way, and the delay is never negative,
so the smallest observation of a recent window is the best estimate (NTP's minimum-delay
filter). A window and not "the smallest ever", so that a board crystal running slower or
faster than the host's (tens of ppm: seconds a day) is followed.

Wall time is then ``anchor_wall + (board_ms + offset - anchor_monotonic)``, with the anchor
(one ``datetime.now(UTC)`` read against one monotonic read) renewed every minute, so a
stepped system clock moves sample times once instead of tearing them apart. ``board_ms``
is a u32 (it wraps after 49.7 days): it is unwrapped against the newest observation.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from isoproto.seqnum import seq32_diff

__all__ = ["BoardClock"]

_ANCHOR_EVERY_S = 60.0


class BoardClock:
    """Maps a board's ``board_ms`` to timezone-aware UTC (one board boot; :meth:`reset` on a new one)."""

    def __init__(self, window: int = 32, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._offsets: collections.deque[float] = collections.deque(maxlen=window)
        self._offset_s: float | None = None
        self._last_raw = 0  # newest observed board_ms (u32)
        self._last_s = 0.0  # the same, unwrapped, in seconds
        self._anchor_wall = datetime.now(UTC)
        self._anchor_mono = 0.0
        self._anchored = False
        self._monotonic = monotonic
        self.observations = 0

    @property
    def known(self) -> bool:
        """True once at least one observation came in."""
        return self._offset_s is not None

    @property
    def offset_s(self) -> float | None:
        """Host monotonic seconds minus board seconds (None before the first observation)."""
        return self._offset_s

    def reset(self) -> None:
        """The board rebooted: its clock started again."""
        self._offsets.clear()
        self._offset_s = None
        self._last_raw = 0
        self._last_s = 0.0

    def observe(self, board_ms: int, arrival_mono_s: float) -> None:
        """A frame stamped ``board_ms`` arrived at host monotonic time ``arrival_mono_s``."""
        if self._offset_s is None:
            self._last_raw, self._last_s = board_ms, board_ms / 1000.0
        else:
            self._last_s += seq32_diff(board_ms, self._last_raw) / 1000.0
            self._last_raw = board_ms
        offset = arrival_mono_s - self._last_s
        self._offsets.append(offset)
        self._offset_s = min(self._offsets)
        self.observations += 1
        if not self._anchored or arrival_mono_s - self._anchor_mono >= _ANCHOR_EVERY_S:
            self.anchor()

    def anchor(self, mono_s: float | None = None, wall: datetime | None = None) -> None:
        """Pin monotonic ``mono_s`` to wall time ``wall``; by default both read now, back to back."""
        if mono_s is None or wall is None:
            mono_s, wall = self._monotonic(), datetime.now(UTC)
        self._anchor_mono = mono_s
        self._anchor_wall = wall
        self._anchored = True

    def monotonic_of(self, board_ms: int) -> float | None:
        """Host monotonic time (s) of ``board_ms``, None before the first observation."""
        if self._offset_s is None:
            return None
        board_s = self._last_s + seq32_diff(board_ms, self._last_raw) / 1000.0
        return board_s + self._offset_s

    def wall_time(self, board_ms: int, fallback_mono_s: float) -> datetime:
        """UTC wall time of ``board_ms``; before any observation, that of ``fallback_mono_s``."""
        mono = self.monotonic_of(board_ms)
        if mono is None:
            mono = fallback_mono_s
        if not self._anchored:
            self.anchor()
        return self._anchor_wall + timedelta(seconds=mono - self._anchor_mono)
