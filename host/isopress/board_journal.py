"""The virtual board's journal: what the board itself produced, executed and heard.

A virtual board started with ``journal_dir`` (:class:`~isopress.virtual_board.VirtualBoard`)
appends, per boot, one line per sample it recorded (the 27-byte body its history ring
holds and TELEMETRY carries), per command it executed (cmd_seq and payload) and per tick at
which it last saw the host (``firmware/boards/sim/realtime.py``). Fault-injection tests and
the soak compare what a subscriber got against it:

- :func:`sample_body` packs a subscriber's JSON sample back into the wire body, so
  "delivered unchanged" is a byte comparison, not a float tolerance;
- :func:`audit_samples` says, for one boot, which samples were produced, delivered,
  missing, corrupted (delivered with other bytes than the board's) or unknown (a seq the
  board never produced);
- :class:`BoardJournal` also lists the commands executed (a command executed twice shows as
  two entries) and the host contacts (for the host-lost timing).
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isoproto import ids, names
from isoproto.samples import SAMPLE_FORMAT

__all__ = ["BoardJournal", "ExecutedCommand", "SampleAudit", "audit_bodies", "audit_samples", "sample_body"]

_STATE_CODES = {name: code for code, name in enumerate(names.STATE_NAMES)}
_COMMAND_NAMES = {
    value: name
    for name, value in vars(ids).items()
    if name.isupper()
    and isinstance(value, int)
    and ids.is_command(value)
    and "_FIRST" not in name
    and "_LAST" not in name
}


@dataclass(frozen=True, slots=True)
class ExecutedCommand:
    """One command the board executed: its cmd_seq and payload (msg id first)."""

    seq: int
    payload: bytes

    @property
    def msg_id(self) -> int:
        """The command's message id."""
        return self.payload[0]

    @property
    def name(self) -> str:
        """The command's catalog name (e.g. ``START``)."""
        return _COMMAND_NAMES.get(self.msg_id, f"0x{self.msg_id:02x}")

    @property
    def body(self) -> bytes:
        """The payload after msg id and cmd_seq: what the command says, whatever its seq."""
        return self.payload[3:]


@dataclass(slots=True)
class BoardJournal:
    """One boot's journal, parsed."""

    boot_count: int
    samples: dict[int, bytes] = field(default_factory=dict)  # seq -> 27-byte body
    commands: list[ExecutedCommand] = field(default_factory=list)
    host_seen_ms: list[int] = field(default_factory=list)  # board ms of each new host contact

    @classmethod
    def read(cls, path: Path, boot_count: int) -> BoardJournal:
        """Parse a journal file (a last line cut short by a kill is skipped)."""
        journal = cls(boot_count)
        text = path.read_text() if path.exists() else ""
        for line in text.splitlines():
            kind, _, rest = line.partition(" ")
            try:
                if kind == "S":
                    body = bytes.fromhex(rest)
                    if len(body) == struct.calcsize(SAMPLE_FORMAT):
                        journal.samples[struct.unpack_from("<I", body)[0]] = body
                elif kind == "C":
                    seq, _, payload = rest.partition(" ")
                    journal.commands.append(ExecutedCommand(int(seq), bytes.fromhex(payload)))
                elif kind == "H":
                    journal.host_seen_ms.append(int(rest))
            except ValueError:
                continue  # the line a SIGKILL cut short
        return journal

    def commands_named(self, *names_: str) -> list[ExecutedCommand]:
        """The executed commands with these catalog names, in order."""
        wanted = {getattr(ids, n) for n in names_}
        return [c for c in self.commands if c.msg_id in wanted]

    def last_host_contact_before(self, board_ms: int) -> int:
        """The board ms of the host's last contact before ``board_ms`` (-1: none)."""
        before = [ms for ms in self.host_seen_ms if ms < board_ms]
        return before[-1] if before else -1


def sample_body(sample: Mapping[str, Any]) -> bytes:
    """A subscriber's JSON sample (``TelemetrySample``) packed back into the board's 27 bytes."""
    state = sample["state"]
    code = _STATE_CODES[state] if state in _STATE_CODES else int(str(state).removeprefix("state_"))
    return struct.pack(
        SAMPLE_FORMAT,
        sample["seq"],
        sample["board_ms"],
        sample["pressure_mpa"],
        sample["setpoint_mpa"],
        sample["pump_duty"],
        sample["vent_duty"],
        sample["faults"],
        code,
        sample["flags"],
        sample["segment"],
        sample["run_id"],
    )


@dataclass(frozen=True, slots=True)
class SampleAudit:
    """One boot's samples: the board's journal against what a subscriber received.

    ``produced`` counts the journal's samples from ``first_seq`` on (the first sample the
    subscriber got: an agent starting on a running board begins at the board's present).
    """

    boot_count: int
    first_seq: int
    last_seq: int
    produced: int
    delivered: int  # distinct seqs received
    received: int  # messages, duplicates included
    missing: tuple[int, ...]  # produced, never received
    corrupted: tuple[int, ...]  # received with bytes the board did not produce
    unknown: tuple[int, ...]  # received, never produced
    historical: int  # distinct seqs that came (at least once) flagged historical

    @property
    def clean(self) -> bool:
        """Nothing missing, corrupted or unknown."""
        return not (self.missing or self.corrupted or self.unknown)

    def as_dict(self) -> dict[str, Any]:
        """For a JSON report (the seq lists cut to their first 20)."""
        return {
            "boot_count": self.boot_count,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "produced": self.produced,
            "delivered": self.delivered,
            "received": self.received,
            "missing": len(self.missing),
            "corrupted": len(self.corrupted),
            "unknown": len(self.unknown),
            "historical": self.historical,
            "missing_first": list(self.missing[:20]),
            "corrupted_first": list(self.corrupted[:20]),
        }


def audit_samples(
    journal: BoardJournal, received: Iterable[Mapping[str, Any]], *, upto_seq: int | None = None
) -> SampleAudit:
    """Compare ``received`` samples (any boots; this journal's boot is taken) with the journal.

    ``upto_seq``: count the board's samples only up to here (default: its last one).
    """
    got: dict[int, set[bytes]] = {}
    historical: set[int] = set()
    count = 0
    for sample in received:
        if sample["boot_count"] != journal.boot_count:
            continue
        count += 1
        got.setdefault(sample["seq"], set()).add(sample_body(sample))
        if sample.get("historical"):
            historical.add(sample["seq"])
    return audit_bodies(journal, got, historical=historical, received=count, upto_seq=upto_seq)


def audit_bodies(
    journal: BoardJournal,
    got: Mapping[int, Collection[bytes]],
    *,
    historical: Collection[int] = (),
    received: int | None = None,
    upto_seq: int | None = None,
) -> SampleAudit:
    """:func:`audit_samples` on what a subscriber kept: seq -> the distinct bodies it got."""
    produced_seqs = sorted(journal.samples)
    first = min(got) if got else (produced_seqs[0] if produced_seqs else 0)
    last = upto_seq if upto_seq is not None else (produced_seqs[-1] if produced_seqs else -1)
    expected = [s for s in produced_seqs if first <= s <= last]
    missing = tuple(s for s in expected if s not in got)
    corrupted = tuple(
        sorted(
            s
            for s, bodies in got.items()
            if s in journal.samples and any(b != journal.samples[s] for b in bodies)
        )
    )
    unknown = tuple(sorted(s for s in got if s not in journal.samples))
    return SampleAudit(
        boot_count=journal.boot_count,
        first_seq=first,
        last_seq=last,
        produced=len(expected),
        delivered=len(got),
        received=received if received is not None else sum(len(b) for b in got.values()),
        missing=missing,
        corrupted=corrupted,
        unknown=unknown,
        historical=len(historical),
    )
