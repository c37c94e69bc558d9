"""Capped, jittered exponential backoff for reconnect loops.

"Equal jitter": the n-th delay is drawn uniformly from ``[d/2, d]`` with
``d = min(max_s, initial_s * multiplier**n)``. Half the delay is guaranteed (a flapping
broker is not hammered), the other half is random (a lab full of agents that lost the
same broker does not come back in lock-step).
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays for successive reconnect attempts; :meth:`reset` after a good connection."""

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        multiplier: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial_s <= 0 or max_s < initial_s or multiplier < 1.0:
            raise ValueError("backoff needs 0 < initial_s <= max_s and multiplier >= 1")
        self.initial_s = initial_s
        self.max_s = max_s
        self.multiplier = multiplier
        self.attempts = 0
        self._rng = rng or random.Random()

    def ceiling_s(self) -> float:
        """The cap of the next delay (before jitter)."""
        # min() before the power would overflow for a long outage; the loop is bounded.
        delay = self.initial_s
        for _ in range(self.attempts):
            delay *= self.multiplier
            if delay >= self.max_s:
                return self.max_s
        return min(delay, self.max_s)

    def next_delay_s(self) -> float:
        """The delay before the next attempt; each call counts one failed attempt."""
        ceiling = self.ceiling_s()
        self.attempts += 1
        return self._rng.uniform(ceiling / 2.0, ceiling)

    def reset(self) -> None:
        """Back to the initial delay (call once a connection has proved good)."""
        self.attempts = 0
