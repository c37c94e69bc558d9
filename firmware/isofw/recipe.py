# Recipes: bounded segment storage, validation against the device profile, the recipe id,
# and the setpoint generator that walks through the segments.
#
# A segment is (kind, target_mpa, rate_mpa_s, duration_s):
#   RAMP: to target_mpa at rate_mpa_s (up or down by the sign of target - current);
#   HOLD: at the previous target for duration_s.
# Segments are stored in preallocated arrays (float32, like the wire format), so a loaded
# recipe costs a fixed few hundred bytes and the recipe id is computed over exactly the
# numbers the board runs.

import math
import struct
from array import array

from isoproto.codes import (
    DOWN_RATE_PERMILLE,
    DOWN_SOFT_START_MS,
    R_BAD_SEGMENT_KIND,
    R_HOLD_TOO_LONG,
    R_NOT_FINITE,
    R_RATE_DOWN_TOO_HIGH,
    R_RATE_NOT_POSITIVE,
    R_RATE_UP_TOO_HIGH,
    R_TARGET_NEGATIVE,
    R_TARGET_TOO_HIGH,
    R_VALUE_OUT_OF_RANGE,
    SEG_HOLD,
    SEG_RAMP,
)

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x

try:
    from hashlib import sha256
except ImportError:  # a board build without hashlib: recipe ids cannot be checked
    sha256 = None

MAX_SEGMENTS = const(32)  # the issue asks for at least 20; 32 cost 416 bytes per store
_SEGMENT_FMT = "<Bfff"  # canonical bytes of one segment (same as the wire format)
_SEGMENT_SIZE = const(13)
_FIELD_LIMIT = 1e9  # any segment number beyond this is nonsense (and near float32's end)


def ramp(target_mpa: float, rate_mpa_s: float) -> tuple:
    return (SEG_RAMP, target_mpa, rate_mpa_s, 0.0)


def hold(duration_s: float) -> tuple:
    return (SEG_HOLD, 0.0, 0.0, duration_s)


def canonical_bytes(segments) -> bytes:
    """The bytes the recipe id covers: struct "<Bfff" per segment, concatenated."""
    out = bytearray(_SEGMENT_SIZE * len(segments))
    for i, seg in enumerate(segments):
        struct.pack_into(_SEGMENT_FMT, out, i * _SEGMENT_SIZE, seg[0], seg[1], seg[2], seg[3])
    return bytes(out)


_ONE = bytearray(_SEGMENT_SIZE)  # one segment's canonical bytes, reused: hashing allocates little


def recipe_id(segments, staged=None, staged_count: int = 0) -> int:
    """First 4 bytes of SHA-256 over the canonical segment bytes, read big-endian (as
    isoproto.recipe.recipe_id: "%08x" % id is the start of the hex digest).

    With staged (a Recipe), its first staged_count segments come before segments: the id
    of a recipe whose first chunks are staged, without building the whole list. Hashed
    one segment at a time: no buffer the size of the recipe (the board's heap is
    fragmented by then).
    """
    if sha256 is None:
        raise OSError("hashlib.sha256 missing on this build")
    h = sha256()
    for i in range(staged_count):
        seg = staged.segment(i)  # type: ignore[union-attr]
        struct.pack_into(_SEGMENT_FMT, _ONE, 0, seg[0], seg[1], seg[2], seg[3])
        h.update(_ONE)
    for seg in segments:
        struct.pack_into(_SEGMENT_FMT, _ONE, 0, seg[0], seg[1], seg[2], seg[3])
        h.update(_ONE)
    digest = h.digest()
    return (digest[0] << 24) | (digest[1] << 16) | (digest[2] << 8) | digest[3]


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def segment_problems(profile, seg, previous_target_mpa: float, index: int, problems: list):
    """Append (reason, index) for every problem of one segment; returns the segment's end target.

    previous_target_mpa decides whether a ramp goes up or down (the first ramp starts
    from ambient, 0 MPa). The run also clamps rates to the profile in the actual direction.
    """
    if len(seg) != 4:
        problems.append((R_VALUE_OUT_OF_RANGE, index))
        return previous_target_mpa
    kind, target, rate, duration = seg
    if kind not in (SEG_RAMP, SEG_HOLD):
        problems.append((R_BAD_SEGMENT_KIND, index))
        return previous_target_mpa
    if not (_finite(target) and _finite(rate) and _finite(duration)):
        problems.append((R_NOT_FINITE, index))
        return previous_target_mpa
    if not (-_FIELD_LIMIT < target < _FIELD_LIMIT and -_FIELD_LIMIT < rate < _FIELD_LIMIT):
        # Beyond float32 the canonical bytes cannot even be packed; no press needs it.
        problems.append((R_VALUE_OUT_OF_RANGE, index))
        return previous_target_mpa
    if not -_FIELD_LIMIT < duration < _FIELD_LIMIT:
        problems.append((R_VALUE_OUT_OF_RANGE, index))
        return previous_target_mpa
    if kind == SEG_HOLD:
        if duration <= 0.0:
            problems.append((R_VALUE_OUT_OF_RANGE, index))
        elif duration > profile.max_hold_s:
            problems.append((R_HOLD_TOO_LONG, index))
        return previous_target_mpa
    if target < 0.0:
        problems.append((R_TARGET_NEGATIVE, index))
    elif target > profile.max_working_mpa:
        problems.append((R_TARGET_TOO_HIGH, index))
    if rate <= 0.0:
        problems.append((R_RATE_NOT_POSITIVE, index))
    elif target >= previous_target_mpa:
        if rate > profile.max_ramp_up_mpa_s:
            problems.append((R_RATE_UP_TOO_HIGH, index))
    elif rate > profile.max_ramp_down_mpa_s:
        problems.append((R_RATE_DOWN_TOO_HIGH, index))
    return target


class Recipe:
    """A bounded recipe store: MAX_SEGMENTS segments in float32 arrays, plus its id."""

    __slots__ = ("count", "durations_s", "kinds", "rates_mpa_s", "recipe_id", "targets_mpa")

    def __init__(self):
        self.kinds = bytearray(MAX_SEGMENTS)
        self.targets_mpa = array("f", bytes(4 * MAX_SEGMENTS))
        self.rates_mpa_s = array("f", bytes(4 * MAX_SEGMENTS))
        self.durations_s = array("f", bytes(4 * MAX_SEGMENTS))
        self.count = 0
        self.recipe_id = 0

    def clear(self):
        self.count = 0
        self.recipe_id = 0

    def put(self, index: int, seg):
        self.kinds[index] = seg[0]
        self.targets_mpa[index] = seg[1]
        self.rates_mpa_s[index] = seg[2]
        self.durations_s[index] = seg[3]

    def segment(self, index: int) -> tuple:
        return (self.kinds[index], self.targets_mpa[index], self.rates_mpa_s[index], self.durations_s[index])

    def segments(self) -> list:
        return [self.segment(i) for i in range(self.count)]

    def copy_from(self, other):
        for i in range(other.count):
            self.kinds[i] = other.kinds[i]
            self.targets_mpa[i] = other.targets_mpa[i]
            self.rates_mpa_s[i] = other.rates_mpa_s[i]
            self.durations_s[i] = other.durations_s[i]
        self.count = other.count
        self.recipe_id = other.recipe_id

    def compute_id(self) -> int:
        return recipe_id(self.segments())

    def max_target_mpa(self) -> float:
        top = 0.0
        for i in range(self.count):
            if self.kinds[i] == SEG_RAMP and self.targets_mpa[i] > top:
                top = self.targets_mpa[i]
        return top

    def vent_rate_mpa_s(self, profile) -> float:
        """The rate for an autonomous depressurisation: the recipe's slowest ramp down.

        Decompression is what cracks samples, so the slowest down-rate the operator chose
        is the one known to be safe for this sample. Without a ramp down, half the
        profile's maximum.
        """
        rate = 0.0
        previous = 0.0
        for i in range(self.count):
            if self.kinds[i] != SEG_RAMP:
                continue
            target = self.targets_mpa[i]
            if target < previous and (rate == 0.0 or self.rates_mpa_s[i] < rate):
                rate = self.rates_mpa_s[i]
            previous = target
        if rate == 0.0:
            rate = 0.5 * profile.max_ramp_down_mpa_s
        return min(rate, profile.max_ramp_down_mpa_s)

    def problems(self, profile) -> list:
        """Every (reason, index) problem of the stored segments against profile."""
        problems = []
        previous = 0.0
        for i in range(self.count):
            previous = segment_problems(profile, self.segment(i), previous, i, problems)
        return problems


SOFT_START_S = DOWN_SOFT_START_MS / 1000  # a ramp down's rate changes over this time
DOWN_FRACTION = DOWN_RATE_PERMILLE / 1000  # of a down-rate the setpoint falls at (vent.py too)


def ramp_s(span_mpa: float, entry_mpa_s: float, rate_mpa_s: float, soft_s: float) -> float:
    """Duration of a ramp over span_mpa whose rate goes linearly from entry_mpa_s to
    rate_mpa_s over soft_s, then stays (magnitudes; soft_s 0: at rate_mpa_s throughout)."""
    span = abs(span_mpa)
    r0 = abs(entry_mpa_s)
    r1 = abs(rate_mpa_s)
    if soft_s <= 0.0:
        return span / r1
    d = 0.5 * (r0 + r1) * soft_s  # travelled during the soft start
    if span >= d:
        return soft_s + (span - d) / r1
    a = (r1 - r0) / soft_s
    # span = r0 t + a t^2 / 2, in the form without cancellation (a may be 0 or negative)
    return 2.0 * span / (r0 + math.sqrt(r0 * r0 + 2.0 * a * span))


class SetpointGenerator:
    """Turns a recipe and the time (integer ms) into a setpoint, its rate and the segment.

    Time is kept as integer milliseconds from the segment start, so float32 boards keep
    millisecond resolution however long the board has been up. pause()/resume() shift
    the segment start so paused time does not count against ramps or holds.
    """

    def __init__(self, profile=None):
        self.profile = profile
        self.recipe = None
        self.index = 0
        self.kind = 0
        self.setpoint_mpa = 0.0
        self.rate_mpa_s = 0.0
        self.done = True
        self._segment_start_ms = 0
        self._start_mpa = 0.0
        self._entry_mpa_s = 0.0  # the fall rate a ramp down's soft start begins at
        self._paused_at_ms = -1

    def start(self, recipe, now_ms: int, pressure_mpa: float):
        self.recipe = recipe
        self.index = 0
        self.done = recipe.count == 0
        self.setpoint_mpa = pressure_mpa
        self.rate_mpa_s = 0.0
        self._paused_at_ms = -1
        self._begin_segment(now_ms, 0.0)

    def _begin_segment(self, now_ms: int, entry_mpa_s: float):
        self._segment_start_ms = now_ms
        self._start_mpa = self.setpoint_mpa
        self._entry_mpa_s = entry_mpa_s
        recipe = self.recipe
        self.kind = recipe.kinds[self.index] if recipe is not None and recipe.count else 0

    def pause(self, now_ms: int):
        self._paused_at_ms = now_ms
        self.rate_mpa_s = 0.0

    def resume(self, now_ms: int):
        paused_at_ms = self._paused_at_ms
        if paused_at_ms >= 0:
            self._paused_at_ms = -1
            if self.direction() < 0:
                # A ramp down goes on from where it stopped with a new soft start: going
                # straight back to its rate is the step the soft start is there to avoid.
                self._begin_segment(now_ms, 0.0)
            else:
                self._segment_start_ms += now_ms - paused_at_ms

    def direction(self) -> int:
        """+1 if the current segment raises pressure, -1 if it lowers it, 0 for a hold."""
        recipe = self.recipe
        if self.done or recipe is None or recipe.kinds[self.index] != SEG_RAMP:
            return 0
        return 1 if recipe.targets_mpa[self.index] >= self._start_mpa else -1

    def update(self, now_ms: int) -> bool:
        """Advance to now_ms; returns True when the segment index changed (or the recipe ended)."""
        recipe = self.recipe
        if self.done or recipe is None or self._paused_at_ms >= 0:
            self.rate_mpa_s = 0.0
            return False
        i = self.index
        elapsed_s = (now_ms - self._segment_start_ms) / 1000.0
        finished = False
        end_ms = now_ms
        exit_mpa_s = 0.0  # the fall rate a finished ramp down hands to the next segment
        if recipe.kinds[i] == SEG_RAMP:
            target = recipe.targets_mpa[i]
            span = target - self._start_mpa
            rate = recipe.rates_mpa_s[i]
            profile = self.profile
            # Defence in depth: the run never exceeds the profile in the actual direction,
            # even when the ramp starts from a pressure the load-time check did not assume.
            if span >= 0.0:
                if profile is not None and rate > profile.max_ramp_up_mpa_s:
                    rate = profile.max_ramp_up_mpa_s
                distance = span
                entry = rate
                soft_s = 0.0
            else:
                if profile is not None and rate > profile.max_ramp_down_mpa_s:
                    rate = profile.max_ramp_down_mpa_s
                rate = rate * DOWN_FRACTION  # a limit: see DOWN_RATE_PERMILLE
                distance = -span
                # A ramp down starts softly: its rate goes linearly from the rate it enters
                # with (a ramp down just before it; else 0) to its own over SOFT_START_S. A
                # step in rate makes the pressure filter lag, the loop then asks for more
                # than the rate, and the fall cap holds the vent where the model, not the
                # vessel, says the rate is: 0.503 MPa/s in the first second of a 0.5.
                entry = self._entry_mpa_s
                soft_s = SOFT_START_S
            if elapsed_s < 0.0:  # (a float32 segment end a tick ahead of now)
                elapsed_s = 0.0
            if elapsed_s < soft_s:
                accel = (rate - entry) / soft_s
                travelled = (entry + 0.5 * accel * elapsed_s) * elapsed_s
                now_rate = entry + accel * elapsed_s
            else:
                travelled = rate * elapsed_s - 0.5 * (rate - entry) * soft_s
                now_rate = rate
            if travelled >= distance:
                self.setpoint_mpa = target
                self.rate_mpa_s = 0.0
                finished = True
                end_s = ramp_s(distance, entry, rate, soft_s) if rate > 0.0 else 0.0
                end_ms = self._segment_start_ms + int(end_s * 1000.0)
                if span < 0.0:  # a ramp down hands its final rate to the next segment
                    exit_mpa_s = rate if end_s >= soft_s else entry + (rate - entry) * end_s / soft_s
            elif span >= 0.0:
                self.setpoint_mpa = self._start_mpa + travelled
                self.rate_mpa_s = now_rate
            else:
                self.setpoint_mpa = self._start_mpa - travelled
                self.rate_mpa_s = -now_rate
        else:
            self.rate_mpa_s = 0.0
            finished = elapsed_s >= recipe.durations_s[i]
            end_ms = self._segment_start_ms + int(recipe.durations_s[i] * 1000.0)
        if not finished:
            return False
        if i + 1 >= recipe.count:
            self.done = True
        else:
            self.index = i + 1
            # The next segment starts where this one should have ended (not at now_ms),
            # so tick quantisation does not accumulate over many segments.
            self._begin_segment(end_ms, exit_mpa_s)
        return True
