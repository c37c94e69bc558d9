"""The HIL trace: what the plant and the board did, one row per moment, and its CSV form.

A row holds the plant's true pressure, the board's measured pressure and setpoint, the
board's outputs, its state, recipe segment and active faults. Rows need not be evenly
spaced: the virtual-board runner writes one every ``telemetry_decimation`` control ticks
and one at every moment an output, the state, the segment or the set of active faults
changes (the hard over-pressure trip at the virtual millisecond it fired), so the
metrics can time reactions to the millisecond.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from isoproto import names

__all__ = [
    "TRACE_COLUMNS",
    "TraceError",
    "TraceRow",
    "check_sorted",
    "read_trace_csv",
    "trace_to_csv",
    "write_trace_csv",
]

TRACE_COLUMNS = (
    "t_s",
    "true_mpa",
    "measured_mpa",
    "setpoint_mpa",
    "pump_duty",
    "vent_duty",
    "dump_closed",
    "state",
    "segment",
    "faults",
)


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the line and the column."""


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One moment of a HIL run.

    ``pump_duty`` and ``vent_duty`` are the board's commanded outputs in 0..1;
    ``dump_closed`` is True while the dump valve is energised (closed; open is safe);
    ``state`` is a name from ``isoproto.names.STATE_NAMES``; ``segment`` is the recipe
    segment index (-1 before the run); ``faults`` the codes of the active faults
    (``isoproto.names.FAULT_NAMES``).
    """

    t_s: float
    true_mpa: float
    measured_mpa: float
    setpoint_mpa: float
    pump_duty: float
    vent_duty: float
    dump_closed: bool
    state: str
    segment: int
    faults: tuple[str, ...] = ()

    @property
    def outputs_dumped(self) -> bool:
        """Pump off and dump valve open: the vessel is being emptied as fast as it can."""
        return self.pump_duty == 0.0 and not self.dump_closed


def _fmt(value: float) -> str:
    return f"{value:.6g}" if abs(value) < 1e6 else repr(value)


def write_trace_csv(out: TextIO, rows: Iterable[TraceRow]) -> None:
    """Write rows as CSV with a header (faults joined with ``|``)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TRACE_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                f"{r.t_s:.3f}",
                _fmt(r.true_mpa),
                _fmt(r.measured_mpa),
                _fmt(r.setpoint_mpa),
                _fmt(r.pump_duty),
                _fmt(r.vent_duty),
                "1" if r.dump_closed else "0",
                r.state,
                str(r.segment),
                "|".join(r.faults),
            ]
        )


def trace_to_csv(rows: Iterable[TraceRow]) -> str:
    """The CSV text of a trace."""
    buf = io.StringIO()
    write_trace_csv(buf, rows)
    return buf.getvalue()


def _number(text: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"line {line}, {column}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise TraceError(f"line {line}, {column}: not finite: {text!r}")
    return value


def _parse_row(fields: dict[str, str], line: int) -> TraceRow:
    state = fields["state"]
    if state not in names.STATE_NAMES:
        raise TraceError(f"line {line}, state: unknown state {state!r}")
    faults = tuple(f for f in fields["faults"].split("|") if f)
    for code in faults:
        if code not in names.FAULT_NAMES:
            raise TraceError(f"line {line}, faults: unknown fault code {code!r}")
    if fields["dump_closed"] not in ("0", "1"):
        raise TraceError(f"line {line}, dump_closed: must be 0 or 1, got {fields['dump_closed']!r}")
    try:
        segment = int(fields["segment"])
    except ValueError:
        raise TraceError(f"line {line}, segment: not an integer: {fields['segment']!r}") from None
    return TraceRow(
        t_s=_number(fields["t_s"], line, "t_s"),
        true_mpa=_number(fields["true_mpa"], line, "true_mpa"),
        measured_mpa=_number(fields["measured_mpa"], line, "measured_mpa"),
        setpoint_mpa=_number(fields["setpoint_mpa"], line, "setpoint_mpa"),
        pump_duty=_number(fields["pump_duty"], line, "pump_duty"),
        vent_duty=_number(fields["vent_duty"], line, "vent_duty"),
        dump_closed=fields["dump_closed"] == "1",
        state=state,
        segment=segment,
        faults=faults,
    )


def read_trace_csv(source: str | Path | TextIO) -> list[TraceRow]:
    """Read a trace CSV (a path or an open text file); TraceError names what is wrong."""
    if isinstance(source, str | Path):
        with open(source, newline="", encoding="utf-8") as f:
            return read_trace_csv(f)
    reader = csv.reader(source)
    header = next(reader, None)
    if header is None or tuple(header) != TRACE_COLUMNS:
        raise TraceError(f"line 1: header must be {','.join(TRACE_COLUMNS)}")
    rows: list[TraceRow] = []
    for line, values in enumerate(reader, start=2):
        if len(values) != len(TRACE_COLUMNS):
            raise TraceError(f"line {line}: {len(values)} columns, expected {len(TRACE_COLUMNS)}")
        row = _parse_row(dict(zip(TRACE_COLUMNS, values, strict=True)), line)
        if rows and row.t_s < rows[-1].t_s:
            raise TraceError(f"line {line}, t_s: time goes backwards ({row.t_s} after {rows[-1].t_s})")
        rows.append(row)
    return rows


def check_sorted(rows: Sequence[TraceRow]) -> None:
    """Raise TraceError unless the rows are in time order."""
    for i in range(1, len(rows)):
        if rows[i].t_s < rows[i - 1].t_s:
            raise TraceError(f"row {i}: time goes backwards ({rows[i].t_s} after {rows[i - 1].t_s})")
