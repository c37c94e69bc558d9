"""Recipes on the host: the pydantic model, its canonical hash, and the check against a profile.

The board checks every recipe again (it trusts nobody); the host checks first so an
operator gets every problem at once, in words, before anything reaches the board.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from isoproto import codes
from isoproto import recipe as wire_recipe

from .model import DeviceProfile, reason_name, reason_text

__all__ = [
    "MAX_RECIPE_SEGMENTS",
    "HoldSegment",
    "RampSegment",
    "Recipe",
    "RecipeProblem",
    "check_recipe",
    "ramp_duration_s",
    "recipe_canonical_bytes",
    "recipe_duration_s",
    "recipe_id",
    "recipe_segments",
    "recipe_sha256",
    "segments_duration_s",
]

# The LOAD_RECIPE_CHUNK count is a u8; the host keeps recipes far below that so that a
# recipe always fits the board's table. Raise it together with the firmware.
MAX_RECIPE_SEGMENTS = 32

_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RampSegment(BaseModel):
    """Ramp to ``target_mpa`` at ``rate_mpa_s`` (up or down by the sign of the change)."""

    model_config = _STRICT
    kind: Literal["ramp"]
    target_mpa: float = Field(description="pressure at the end of the ramp, MPa")
    rate_mpa_s: float = Field(description="ramp rate, MPa/s, positive whatever the direction")


class HoldSegment(BaseModel):
    """Hold the previous target for ``duration_s``."""

    model_config = _STRICT
    kind: Literal["hold"]
    duration_s: float = Field(description="hold time, s")


Segment = Annotated[RampSegment | HoldSegment, Field(discriminator="kind")]


class Recipe(BaseModel):
    """A press recipe: a name and a list of segments, starting from ambient pressure."""

    model_config = _STRICT
    name: str = Field(min_length=1, max_length=64, description="operator's name for the recipe")
    segments: list[Segment] = Field(description="ramps and holds, in order")


class RecipeProblem(BaseModel):
    """One reason a recipe cannot run on this press: the field, its value and the limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    field: str = Field(description="where, e.g. segments[2].rate_mpa_s")
    value: float | int | None = Field(description="the value given")
    limit: float | int | None = Field(description="the limit it breaks (None when there is no number)")
    reason: str = Field(description="code name, as the board's NAK reasons (names.REASON_NAMES)")
    message: str = Field(description="the problem in words")


def recipe_segments(recipe: Recipe) -> list[tuple[int, float, float, float]]:
    """The segments as the protocol carries them: ``(kind, target_mpa, rate_mpa_s, duration_s)``."""
    out: list[tuple[int, float, float, float]] = []
    for seg in recipe.segments:
        if isinstance(seg, RampSegment):
            out.append((codes.SEG_RAMP, seg.target_mpa, seg.rate_mpa_s, 0.0))
        else:
            out.append((codes.SEG_HOLD, 0.0, 0.0, seg.duration_s))
    return out


def recipe_canonical_bytes(recipe: Recipe) -> bytes:
    """The segments as the protocol's LOAD_RECIPE_CHUNK records, concatenated.

    Both sides hash these bytes (:func:`isoproto.recipe.recipe_bytes`, the board's own
    function), so the host and the board agree on which recipe is loaded.
    """
    return wire_recipe.recipe_bytes(recipe_segments(recipe))


def recipe_sha256(recipe: Recipe) -> str:
    """SHA-256 (hex) of the canonical segment bytes: the recipe hash in run records."""
    return hashlib.sha256(recipe_canonical_bytes(recipe)).hexdigest()


def recipe_id(recipe: Recipe) -> int:
    """The u32 recipe id the board uses: the first 4 bytes of the SHA-256, big-endian."""
    return int(recipe_sha256(recipe)[:8], 16)


def _problem(
    where: str, value: float | None, limit: float | None, reason: int, extra: str = ""
) -> RecipeProblem:
    message = reason_text(reason)
    if value is not None and limit is not None:
        message += f": {value:g} > {limit:g}" if reason != codes.R_TARGET_NEGATIVE else f": {value:g} < 0"
    if extra:
        message += f" ({extra})"
    return RecipeProblem(field=where, value=value, limit=limit, reason=reason_name(reason), message=message)


def check_recipe(recipe: Recipe, profile: DeviceProfile) -> list[RecipeProblem]:
    """Every way ``recipe`` breaks ``profile`` (empty when it can run).

    The press starts a recipe from ambient pressure (0 MPa); a ramp goes up or down by the
    sign of its target minus the previous target, and is checked against that direction's
    maximum rate.
    """
    problems: list[RecipeProblem] = []
    if not recipe.segments:
        problems.append(_problem("segments", None, None, codes.R_EMPTY_RECIPE))
    if len(recipe.segments) > MAX_RECIPE_SEGMENTS:
        problems.append(
            _problem("segments", len(recipe.segments), MAX_RECIPE_SEGMENTS, codes.R_TOO_MANY_SEGMENTS)
        )
    previous_mpa = 0.0
    for i, seg in enumerate(recipe.segments):
        at = f"segments[{i}]"
        if isinstance(seg, RampSegment):
            if seg.target_mpa < 0.0:
                problems.append(_problem(f"{at}.target_mpa", seg.target_mpa, 0.0, codes.R_TARGET_NEGATIVE))
            elif seg.target_mpa > profile.max_working_mpa:
                problems.append(
                    _problem(
                        f"{at}.target_mpa", seg.target_mpa, profile.max_working_mpa, codes.R_TARGET_TOO_HIGH
                    )
                )
            if seg.rate_mpa_s <= 0.0:
                problems.append(_problem(f"{at}.rate_mpa_s", seg.rate_mpa_s, None, codes.R_RATE_NOT_POSITIVE))
            elif seg.target_mpa >= previous_mpa and seg.rate_mpa_s > profile.max_ramp_up_mpa_s:
                problems.append(
                    _problem(
                        f"{at}.rate_mpa_s",
                        seg.rate_mpa_s,
                        profile.max_ramp_up_mpa_s,
                        codes.R_RATE_UP_TOO_HIGH,
                    )
                )
            elif seg.target_mpa < previous_mpa and seg.rate_mpa_s > profile.max_ramp_down_mpa_s:
                problems.append(
                    _problem(
                        f"{at}.rate_mpa_s",
                        seg.rate_mpa_s,
                        profile.max_ramp_down_mpa_s,
                        codes.R_RATE_DOWN_TOO_HIGH,
                    )
                )
            previous_mpa = seg.target_mpa
        elif seg.duration_s <= 0.0:
            problems.append(
                _problem(f"{at}.duration_s", seg.duration_s, None, codes.R_VALUE_OUT_OF_RANGE, "must be > 0")
            )
        elif seg.duration_s > profile.max_hold_s:
            problems.append(
                _problem(f"{at}.duration_s", seg.duration_s, profile.max_hold_s, codes.R_HOLD_TOO_LONG)
            )
    return problems


def ramp_duration_s(
    start_mpa: float, target_mpa: float, rate_mpa_s: float, entry_mpa_s: float = 0.0
) -> float:
    """How long the board's setpoint takes for a ramp (the firmware's ``recipe.ramp_s``).

    A down-rate is a limit to the board: a ramp down runs at ``codes.DOWN_RATE_PERMILLE``
    of it, after a soft start of ``codes.DOWN_SOFT_START_MS`` in which its rate goes
    linearly from ``entry_mpa_s`` (the rate of a ramp down just before it, else 0) to its
    own. A ramp up runs at its rate.
    """
    return _ramp_timing(start_mpa, target_mpa, rate_mpa_s, entry_mpa_s)[0]


def _ramp_timing(
    start_mpa: float, target_mpa: float, rate_mpa_s: float, entry_mpa_s: float
) -> tuple[float, float]:
    """(duration_s, the fall rate a ramp down hands to the next segment) as the board does."""
    if not (rate_mpa_s > 0.0 and math.isfinite(rate_mpa_s)):
        return 0.0, 0.0
    span = abs(target_mpa - start_mpa)
    if target_mpa >= start_mpa:
        return span / rate_mpa_s, 0.0
    rate = rate_mpa_s * float(codes.DOWN_RATE_PERMILLE) / 1000
    soft_s = float(codes.DOWN_SOFT_START_MS) / 1000
    entry = abs(entry_mpa_s)
    travelled_in_soft = 0.5 * (entry + rate) * soft_s
    if span >= travelled_in_soft:
        return soft_s + (span - travelled_in_soft) / rate, rate
    accel = (rate - entry) / soft_s
    end_s = 2.0 * span / (entry + math.sqrt(entry * entry + 2.0 * accel * span))
    return end_s, entry + accel * end_s


def segments_duration_s(
    segments: Iterable[tuple[str, float | None, float | None, float | None]], start_mpa: float = 0.0
) -> float:
    """Nominal duration of (kind, target_mpa, rate_mpa_s, duration_s) segments from start_mpa:
    every ramp as the board runs it (:func:`ramp_duration_s`), every hold."""
    total = 0.0
    pressure = start_mpa
    entry = 0.0  # the fall rate a ramp down hands to the next segment
    for kind, target_mpa, rate_mpa_s, duration_s in segments:
        if kind == "ramp":
            if target_mpa is None or rate_mpa_s is None:
                continue
            duration, entry = _ramp_timing(pressure, target_mpa, rate_mpa_s, entry)
            total += duration
            pressure = target_mpa
        elif duration_s is not None:
            total += max(duration_s, 0.0)
            entry = 0.0
    return total


def recipe_duration_s(recipe: Recipe, start_mpa: float = 0.0) -> float:
    """Nominal duration of the recipe (ramps at the board's rate, holds), from start_mpa."""
    return segments_duration_s(
        (
            (seg.kind, seg.target_mpa, seg.rate_mpa_s, None)
            if isinstance(seg, RampSegment)
            else (seg.kind, None, None, seg.duration_s)
            for seg in recipe.segments
        ),
        start_mpa,
    )


def recipe_from_json(data: Any) -> Recipe:
    """Validate a JSON-like object as a :class:`Recipe` (raises ``pydantic.ValidationError``)."""
    return Recipe.model_validate(data)
