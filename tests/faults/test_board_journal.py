"""The virtual board's journal (the ground truth of the fault tests) and the sample audit."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from isopress.agent.model import Sample
from isopress.agent.payloads import sample_body as agent_sample_body
from isopress.board_journal import BoardJournal, audit_samples, sample_body
from isopress.virtual_board import VirtualBoard
from isoproto.samples import unpack_sample


def _as_subscriber_sees(body: bytes, boot_count: int, historical: bool = False) -> dict[str, object]:
    """The agent's own path: wire body -> Sample -> published JSON."""
    v = unpack_sample(body)
    sample = Sample(
        boot_count=boot_count,
        seq=v[0],
        board_ms=v[1],
        wall_time=datetime.now(UTC),
        pressure_mpa=v[2],
        setpoint_mpa=v[3],
        pump_duty=v[4],
        vent_duty=v[5],
        faults=v[6],
        state=v[7],
        flags=v[8],
        segment=v[9],
        run_id=v[10],
        historical=historical,
    )
    doc: dict[str, object] = json.loads(agent_sample_body(sample))
    doc["historical"] = historical
    return doc


@pytest.mark.micropython
def test_the_board_journals_every_sample_it_records(tmp_path: Path) -> None:
    with VirtualBoard(journal_dir=tmp_path, boot_count=5) as vb:
        time.sleep(1.5)
        vb.check_alive()
    journal = BoardJournal.read(tmp_path / "boot-5.journal", 5)
    seqs = sorted(journal.samples)
    assert len(seqs) > 50 and seqs == list(range(seqs[-1] + 1))  # 100 Hz from seq 0, no gap
    assert journal.commands == [] and journal.host_seen_ms == []  # nobody talked to it
    for seq, body in journal.samples.items():
        assert unpack_sample(body)[0] == seq
        # what a subscriber gets from the agent packs back to the board's bytes
        assert sample_body(_as_subscriber_sees(body, 5)) == body


def _journal(n: int) -> BoardJournal:
    journal = BoardJournal(boot_count=2)
    for seq in range(n):
        sample = {
            "seq": seq,
            "board_ms": 10 * seq,
            "pressure_mpa": 0.1 * seq,
            "setpoint_mpa": 0.0,
            "pump_duty": 0,
            "vent_duty": 0,
            "faults": 0,
            "state": "idle",
            "flags": 31,
            "segment": 0,
            "run_id": 0,
        }
        journal.samples[seq] = sample_body(sample)
    return journal


def test_the_audit_finds_missing_corrupted_and_unknown_samples() -> None:
    journal = _journal(100)
    got = [_as_subscriber_sees(journal.samples[s], 2) for s in range(10, 100) if s != 50]
    got.append(_as_subscriber_sees(journal.samples[20], 2, historical=True))  # a duplicate: fine
    got.append(_as_subscriber_sees(journal.samples[7], 1))  # another boot: not this one's
    clean = audit_samples(journal, got)
    assert (clean.first_seq, clean.last_seq, clean.produced, clean.delivered) == (10, 99, 90, 89)
    assert clean.missing == (50,) and not clean.corrupted and not clean.unknown and not clean.clean
    assert clean.received == 90 and clean.historical == 1

    bad = dict(got[5])
    bad["pressure_mpa"] = float(bad["pressure_mpa"]) + 1e-3  # type: ignore[arg-type]
    stranger = dict(got[6])
    stranger["seq"] = 12345
    audit = audit_samples(journal, [*got, bad, stranger], upto_seq=60)
    assert audit.corrupted == (15,) and audit.unknown == (12345,) and audit.produced == 51


def test_a_journal_line_cut_short_by_a_kill_is_skipped(tmp_path: Path) -> None:
    body = _journal(1).samples[0]
    path = tmp_path / "boot-1.journal"
    path.write_text(f"S {body.hex()}\nH 120\nC 7 410700{'00' * 4}\nS {body.hex()[:20]}")
    journal = BoardJournal.read(path, 1)
    assert list(journal.samples) == [0] and journal.host_seen_ms == [120]
    assert [(c.seq, c.name) for c in journal.commands] == [(7, "START")]
    assert journal.last_host_contact_before(200) == 120 and journal.last_host_contact_before(100) == -1
