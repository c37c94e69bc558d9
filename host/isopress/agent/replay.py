"""The replay guard: one ``command_id`` from one operator is executed at most once.

Every command carries a ``command_id`` (docs/mqtt.md). The guard remembers the pair
(operator, command_id) of every well-formed, fresh command until the command's
``sent_at`` is older than ``commands.max_age_s``: from then on the age check refuses a
copy anyway, so forgetting it opens no window. Forgetting goes by the same wall clock as
the age check, so a clock step cannot open one either (a step back only keeps ids longer).

Memory is bounded by ``capacity`` ids. When that many commands arrived within one
``max_age_s``, new commands are refused until old ones age out; an id is never forgotten
early, which would let its copy through.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime

__all__ = ["REPLAY_CAPACITY", "ReplayGuard", "ReplayRefusal"]

# Far above what people at a press send in max_age_s (10 s by default), far below what
# would cost memory (an entry is ~200 bytes).
REPLAY_CAPACITY = 1024


@dataclass(frozen=True, slots=True)
class ReplayRefusal:
    """Why a command was refused: ``reason`` is a code name, ``message`` the words."""

    reason: str  # "replayed" or "too_many_commands"
    message: str


class ReplayGuard:
    """Remembers recent (operator, command_id) pairs; see the module docstring."""

    def __init__(self, max_age_s: float, capacity: int = REPLAY_CAPACITY) -> None:
        self.max_age_s = max_age_s
        self.capacity = capacity
        self._seen: dict[tuple[str, str], float] = {}  # (operator, id) -> sent_at, POSIX s
        self._by_age: list[tuple[float, tuple[str, str]]] = []  # heap of (sent_at, key)

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, operator: str, command_id: str, sent_at: datetime, now: datetime) -> ReplayRefusal | None:
        """None, and the pair remembered, for a new command; the refusal otherwise.

        Call it only for commands that passed the age check (``sent_at`` within
        ``max_age_s`` of ``now``), so that what is remembered is what could still run.
        """
        self._forget(now)
        key = (operator, command_id)
        if key in self._seen:
            return ReplayRefusal(
                "replayed",
                f"replayed command: command_id {command_id!r} from {operator!r} was already received "
                f"(every command needs a new command_id)",
            )
        if len(self._seen) >= self.capacity:
            return ReplayRefusal(
                "too_many_commands",
                f"more than {self.capacity} commands within commands.max_age_s = {self.max_age_s:g} s; "
                "refused until older ones age out",
            )
        sent_s = sent_at.timestamp()
        self._seen[key] = sent_s
        heapq.heappush(self._by_age, (sent_s, key))
        return None

    def _forget(self, now: datetime) -> None:
        oldest_kept_s = now.timestamp() - self.max_age_s
        while self._by_age and self._by_age[0][0] < oldest_kept_s:
            _, key = heapq.heappop(self._by_age)
            del self._seen[key]
