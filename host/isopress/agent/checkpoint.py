"""What the serial session must remember across an agent restart, as the checkpoint's text.

``{"v": 1, "board_id": ..., "boot_count": 4, "samples": {"latest": 1234, "missing": [[100, 101]]},
"events": {...}}``: for one boot of one board and each stream, the newest seq the host has
accounted for and the ranges ``[first, count]`` still missing below it. Everything else up
to ``latest`` reached the agent (or was counted lost), in the same spool transaction as
this text. At start-up the session resumes from it when the board's ``boot_count`` is
the same, and backfills everything after ``latest`` and every missing range.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Checkpoint", "StreamPosition"]

_VERSION = 1
_U32 = 0xFFFF_FFFF


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """One stream's position: newest accounted seq and the missing ranges below it."""

    latest: int
    missing: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The session's checkpoint (see the module docstring)."""

    board_id: str
    boot_count: int
    samples: StreamPosition
    events: StreamPosition

    def to_text(self) -> str:
        """The compact JSON stored in the spool."""
        return json.dumps(
            {
                "v": _VERSION,
                "board_id": self.board_id,
                "boot_count": self.boot_count,
                "samples": _position_json(self.samples),
                "events": _position_json(self.events),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a stored checkpoint; ValueError naming the field when it is not one."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"session checkpoint is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("v") != _VERSION:
            raise ValueError(f"session checkpoint: unknown version {_get(data, 'v')!r} (this agent reads 1)")
        board_id = data.get("board_id")
        if not isinstance(board_id, str):
            raise ValueError("session checkpoint: board_id must be a string")
        return cls(
            board_id=board_id,
            boot_count=_u32(data.get("boot_count"), "boot_count"),
            samples=_position(data.get("samples"), "samples"),
            events=_position(data.get("events"), "events"),
        )


def _get(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else None


def _position_json(position: StreamPosition) -> dict[str, Any]:
    return {"latest": position.latest, "missing": [list(r) for r in position.missing]}


def _u32(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U32:
        raise ValueError(f"session checkpoint: {where} must be an integer 0..{_U32} (got {value!r})")
    return value


def _position(value: Any, where: str) -> StreamPosition:
    if not isinstance(value, dict):
        raise ValueError(f"session checkpoint: {where} must be an object")
    missing = value.get("missing", [])
    if not isinstance(missing, list):
        raise ValueError(f"session checkpoint: {where}.missing must be a list")
    ranges: list[tuple[int, int]] = []
    for i, item in enumerate(missing):
        if not isinstance(item, list) or len(item) != 2:
            raise ValueError(f"session checkpoint: {where}.missing[{i}] must be [first, count]")
        ranges.append((_u32(item[0], f"{where}.missing[{i}]"), _u32(item[1], f"{where}.missing[{i}]")))
    return StreamPosition(latest=_u32(value.get("latest"), f"{where}.latest"), missing=tuple(ranges))
