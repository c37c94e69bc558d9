"""The trace's CSV form: a round trip, and errors that name the line and the column."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from isopress.hil.trace import (
    TRACE_COLUMNS,
    TraceError,
    TraceRow,
    read_trace_csv,
    trace_to_csv,
    write_trace_csv,
)

ROWS = [
    TraceRow(0.0, 0.0, 0.12, 0.0, 0.0, 0.0, False, "idle", -1, ()),
    TraceRow(1.001, 12.3456, 12.4, 12.5, 0.61, 0.0, True, "pressurising", 0, ()),
    TraceRow(2.5, 419.9, 420.1, 380.0, 0.0, 0.0, False, "fault", 1, ("overpressure_hw", "rise_rate")),
]


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    with path.open("w", newline="") as f:
        write_trace_csv(f, ROWS)
    assert path.read_text().splitlines()[0] == ",".join(TRACE_COLUMNS)
    assert read_trace_csv(path) == ROWS
    assert read_trace_csv(io.StringIO(trace_to_csv(ROWS))) == ROWS
    assert ROWS[2].outputs_dumped and not ROWS[1].outputs_dumped


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1.0,2,3,4,0.5,0,1,melting,0,", "line 3, state: unknown state 'melting'"),
        ("1.0,2,3,4,0.5,0,1,holding,0,overpressure", "line 3, faults: unknown fault code 'overpressure'"),
        ("1.0,2,x,4,0.5,0,1,holding,0,", "line 3, measured_mpa: not a number: 'x'"),
        ("1.0,2,nan,4,0.5,0,1,holding,0,", "line 3, measured_mpa: not finite"),
        ("1.0,2,3,4,0.5,0,yes,holding,0,", "line 3, dump_closed: must be 0 or 1"),
        ("1.0,2,3,4,0.5,0,1,holding,one,", "line 3, segment: not an integer"),
        ("1.0,2,3,4,0.5,0,1,holding", "line 3: 8 columns, expected 10"),
        ("0.5,2,3,4,0.5,0,1,holding,0,", "line 3, t_s: time goes backwards"),
    ],
)
def test_bad_rows_are_named(line: str, message: str) -> None:
    text = ",".join(TRACE_COLUMNS) + "\n0.9,0,0,0,0,0,0,idle,-1,\n" + line + "\n"
    with pytest.raises(TraceError) as err:
        read_trace_csv(io.StringIO(text))
    assert str(err.value).startswith(message)


def test_a_wrong_header_is_refused() -> None:
    with pytest.raises(TraceError, match="line 1: header must be t_s,true_mpa"):
        read_trace_csv(io.StringIO("t,p\n1,2\n"))
