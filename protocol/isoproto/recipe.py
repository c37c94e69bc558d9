# Recipes and profiles on the wire: their canonical bytes, their 32-bit ids, splitting a
# recipe into LOAD_RECIPE_CHUNK messages (host) and putting it back together (board).
#
# Canonical recipe bytes: every segment as LOAD_RECIPE_CHUNK carries it, in order:
# kind u8, target_mpa f32, rate_mpa_s f32, duration_s f32 (little-endian, 13 bytes each).
# recipe_id = the first 4 bytes of SHA-256 over them, read big-endian, so that
# "%08x" % recipe_id is the start of the SHA-256 hex digest. Floats are hashed as f32,
# exactly as the board receives them, so both sides compute the same id.
# profile_hash is the same over the PROFILE body (the 8 profile fields, 29 bytes).

import hashlib
import struct

from isoproto.codes import (
    R_CHUNK_OUT_OF_RANGE,
    R_EMPTY_RECIPE,
    R_MALFORMED,
    R_NONE,
    R_RECIPE_HASH,
    R_RECIPE_INCOMPLETE,
    R_TOO_MANY_SEGMENTS,
)

SEGMENT_FORMAT = "<Bfff"
SEGMENT_SIZE = 13
SEGMENTS_PER_CHUNK = 18  # (250 - 10 header bytes) // 13
PROFILE_FORMAT = "<ffffffIB"


def _digest_id(data: bytes | bytearray | memoryview) -> int:
    d = hashlib.sha256(data).digest()
    return (d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]


def recipe_bytes(segments: list | tuple) -> bytes:
    """Canonical bytes of segments: (kind, target_mpa, rate_mpa_s, duration_s) tuples."""
    out = bytearray(SEGMENT_SIZE * len(segments))
    for i in range(len(segments)):
        s = segments[i]
        struct.pack_into(SEGMENT_FORMAT, out, i * SEGMENT_SIZE, s[0], s[1], s[2], s[3])
    return bytes(out)


def recipe_id(segments: list | tuple) -> int:
    return _digest_id(recipe_bytes(segments))


def profile_hash(profile_values: list | tuple) -> int:
    """Id of a device profile: its 8 PROFILE values in catalog order."""
    return _digest_id(struct.pack(PROFILE_FORMAT, *profile_values))


def recipe_chunks(segments: list | tuple) -> list[tuple]:
    """LOAD_RECIPE_CHUNK values (without cmd_seq) for a whole recipe, in sending order."""
    rid = recipe_id(segments)
    total = len(segments)
    out = []
    for first in range(0, total, SEGMENTS_PER_CHUNK):
        out.append((rid, total, first, [tuple(s) for s in segments[first : first + SEGMENTS_PER_CHUNK]]))
    return out


class RecipeAssembler:
    """Board side: collects LOAD_RECIPE_CHUNK in order and checks the recipe id.

    add() returns codes.R_NONE when the chunk was taken (then `complete` tells whether the
    recipe is whole and its id checked) or the reason to NAK it with; a refused chunk
    abandons the recipe being collected. Limits on the values themselves (profile) are
    the firmware's job, done on the complete recipe.
    """

    def __init__(self, max_segments: int = 32) -> None:
        self.max_segments = max_segments
        self.segments = []
        self.recipe_id = 0
        self.total = 0
        self.complete = False
        self._hash = None

    def clear(self) -> None:
        self.segments = []
        self.total = 0
        self.complete = False
        self._hash = None

    def add(self, recipe_id: int, total: int, first_index: int, segments: list | tuple) -> int:
        if total == 0:
            self.clear()
            return R_EMPTY_RECIPE
        if total > self.max_segments:
            self.clear()
            return R_TOO_MANY_SEGMENTS
        if not segments:
            self.clear()
            return R_MALFORMED
        if first_index == 0:
            self.clear()
            self.recipe_id = recipe_id
            self.total = total
            self._hash = hashlib.sha256()
        elif self._hash is None or recipe_id != self.recipe_id or total != self.total:
            self.clear()
            return R_RECIPE_INCOMPLETE  # the chunk with index 0 of this recipe never came
        if first_index != len(self.segments) or first_index + len(segments) > total:
            self.clear()
            return R_CHUNK_OUT_OF_RANGE
        hasher = self._hash
        one = bytearray(SEGMENT_SIZE)
        for s in segments:
            struct.pack_into(SEGMENT_FORMAT, one, 0, s[0], s[1], s[2], s[3])
            hasher.update(one)
            self.segments.append(tuple(s))
        if len(self.segments) == total:
            d = hasher.digest()
            self._hash = None
            if ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) != recipe_id:
                self.clear()
                return R_RECIPE_HASH
            self.complete = True
        return R_NONE
