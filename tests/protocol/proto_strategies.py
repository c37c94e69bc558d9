"""Hypothesis strategies built from the catalog: every message, any valid values."""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import strategies as st

from isoproto import catalog

_INT_RANGES = {
    "u8": (0, 0xFF),
    "u16": (0, 0xFFFF),
    "u32": (0, 0xFFFFFFFF),
    "i8": (-0x80, 0x7F),
    "i16": (-0x8000, 0x7FFF),
    "i32": (-0x80000000, 0x7FFFFFFF),
}

# the most records each array may hold so that every message still fits one frame
_MAX_ITEMS = {"segment[]": 18, "problem[]": 100}


def scalar(ftype: str) -> st.SearchStrategy[Any]:
    if ftype == "f32":
        return st.floats(width=32)  # NaN and the infinities included
    lo, hi = _INT_RANGES[ftype]
    return st.integers(lo, hi)


def _record(fields: tuple[Any, ...]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(*(scalar(f[1]) for f in fields))


def _bodies(stream_fields: tuple[Any, ...], max_items: int) -> st.SearchStrategy[list[bytes]]:
    fmt = "<" + catalog.wire_spec(stream_fields)
    return st.lists(_record(stream_fields).map(lambda r: struct.pack(fmt, *r)), max_size=max_items)


def field(msg_id: int, f: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    ftype = f[1]
    if ftype in _INT_RANGES or ftype == "f32":
        return scalar(ftype)
    if ftype == "str8":
        return st.text(max_size=12)
    if ftype == "body[]":
        return st.one_of(
            _bodies(catalog.fields(catalog.TELEMETRY), 8), _bodies(catalog.fields(catalog.EVENT), 10)
        )
    rec = catalog.record(ftype[:-2])
    assert rec is not None
    return st.lists(_record(rec), max_size=_MAX_ITEMS[ftype])


def _history() -> st.SearchStrategy[tuple[Any, ...]]:
    # the stream says what the bodies are: samples (0), events (1); other streams carry
    # bodies this version does not know (kept as bytes)
    head = st.tuples(scalar("u32"), scalar("u32"), st.integers(0, 1))
    samples_ = st.tuples(st.just(catalog.STREAM_SAMPLES), head, _bodies(catalog.fields(catalog.TELEMETRY), 8))
    events = st.tuples(st.just(catalog.STREAM_EVENTS), head, _bodies(catalog.fields(catalog.EVENT), 10))
    other = st.tuples(st.integers(2, 255), head, st.lists(st.binary(min_size=5, max_size=5), max_size=20))
    return st.one_of(samples_, events, other).map(lambda t: (t[0], *t[1], t[2]))


def values(msg_id: int) -> st.SearchStrategy[tuple[Any, ...]]:
    if msg_id == catalog.HISTORY:
        return _history()
    return st.tuples(*(field(msg_id, f) for f in catalog.fields(msg_id)))


def message() -> st.SearchStrategy[tuple[int, tuple[Any, ...]]]:
    """(msg_id, values) of any catalog message; values always fit one frame."""
    return st.sampled_from([m[0] for m in catalog.MESSAGES]).flatmap(
        lambda msg_id: values(msg_id).map(lambda v: (msg_id, v))
    )


def same(a: Any, b: Any) -> bool:
    """Equal, with floats compared as f32 bit patterns (NaN equals NaN)."""
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<f", a) == struct.pack("<f", b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (bytes, bytearray)) and isinstance(b, (bytes, bytearray)):
        return bytes(a) == bytes(b)
    return bool(a == b)
