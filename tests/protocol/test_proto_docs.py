"""docs/protocol.md and the catalog (and the numbers derived from the code) agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from isopress import protocol_docs
from isoproto import catalog, framing, samples
from isoproto.history import records_per_chunk


def _doc() -> str:
    return protocol_docs.doc_path().read_text(encoding="utf-8")


def test_catalog_section_is_generated_from_the_catalog() -> None:
    doc = _doc()
    assert protocol_docs.update(doc) == doc, "run: python -m isopress.protocol_docs"
    for entry in catalog.MESSAGES:
        assert f"### {entry[1]}\n" in doc
        for f in entry[4]:
            assert f"| `{f[0]}` |" in doc


def test_a_catalog_change_makes_the_check_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc_copy = tmp_path / "protocol.md"
    doc_copy.write_text(_doc(), encoding="utf-8")
    assert protocol_docs.main(["--check", str(doc_copy)]) == 0
    tele = catalog.message(catalog.TELEMETRY)
    assert tele is not None
    changed = (*tele[:4], (*tele[4], ("spare", "u8", "", "a field added in 1.1", 1)))
    monkeypatch.setattr(catalog, "MESSAGES", tuple(changed if m is tele else m for m in catalog.MESSAGES))
    assert protocol_docs.main(["--check", str(doc_copy)]) == 1
    assert protocol_docs.main([str(doc_copy)]) == 0  # rewrites the section
    assert "| `spare` | u8 |  | 1.1 | a field added in 1.1 |" in doc_copy.read_text(encoding="utf-8")
    assert protocol_docs.main(["--check", str(doc_copy)]) == 0


def test_a_document_without_the_markers_is_an_error() -> None:
    with pytest.raises(protocol_docs.CatalogDocError):
        protocol_docs.update("# no catalog here\n")


def test_the_numbers_in_the_document_are_the_codes() -> None:
    doc = _doc()
    tele_frame = framing.frame_size(samples.TELEMETRY_PAYLOAD_SIZE)
    bytes_per_s = 115_200 // 10  # 8N1: 10 bits a byte
    assert tele_frame == 32 and f"**{tele_frame}-byte frame**" in doc
    assert f"**{framing.MAX_PAYLOAD} bytes**" in doc and f"**{framing.MAX_FRAME} bytes**" in doc
    assert f"**{framing.OVERHEAD} bytes**" in doc
    assert "**11 520 bytes/s**" in doc and bytes_per_s == 11_520
    assert f"Computed limit: {bytes_per_s // tele_frame} telemetry samples per second**" in doc
    assert f"at most {records_per_chunk(samples.SAMPLE_BODY_SIZE)} samples or " in doc
    assert f"{records_per_chunk(samples.EVENT_BODY_SIZE)} events per frame" in doc
    budget = 200 * tele_frame + 2 * 18 + 10 * 27 + 10 * 12
    assert f"**{budget:,} ({round(100 * budget / bytes_per_s)} %)**".replace(",", " ") in doc
