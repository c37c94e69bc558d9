"""Heap gate: the firmware with its serial link attached (buffers, reply ring, FIFO)
boots and runs a 20-segment recipe in an RP2040-sized heap, commands and backfill
included. The figure is the smallest free heap after the loop's own collections."""

from __future__ import annotations

import pytest
from vboard_host import SerialHost

from isopress import micropython_port
from isopress.virtual_board import VirtualBoard
from isoproto import codes
from isoproto.ids import ACK, HISTORY, LOAD_RECIPE_CHUNK, PAUSE, REQUEST_HISTORY, RESUME, START, TELEMETRY
from isoproto.recipe import recipe_chunks, recipe_id

pytestmark = [pytest.mark.micropython, pytest.mark.slow]

# free heap the loop keeps after its collections: a tick allocates ~2 KB (boxed floats)
MIN_FREE_AFTER_GC = 8 * 1024


def _twenty_segments() -> list[tuple[int, float, float, float]]:
    segments: list[tuple[int, float, float, float]] = []
    for i in range(10):
        segments.append((codes.SEG_RAMP, 2.0 * (i + 1), 2.0, 0.0))
        segments.append((codes.SEG_HOLD, 0.0, 0.0, 0.5))
    segments[-2] = (codes.SEG_RAMP, 0.0, 1.0, 0.0)
    return segments


def test_the_firmware_with_its_link_runs_a_recipe_in_180_kb() -> None:
    segments = _twenty_segments()
    rid = recipe_id(segments)
    with VirtualBoard(heap_bytes=micropython_port.RP2040_HEAP_BYTES) as vb:
        host = SerialHost(vb.port)
        try:
            host.handshake(nonce=3)
            for chunk in recipe_chunks(segments):
                reply = host.command(LOAD_RECIPE_CHUNK, *chunk)
                assert reply[0] == ACK, reply
            assert host.command(START, rid)[0] == ACK
            host.pump(2.0)
            assert host.command(PAUSE)[0] == ACK
            assert host.command(RESUME)[0] == ACK
            first = host.of(TELEMETRY)[0][0]
            for k in (0, 2):  # backfill: two requests open at a time, as a host keeps them
                mark = len(host.messages)
                assert host.command(REQUEST_HISTORY, 0, first + 16 * k, 16)[0] == ACK
                assert host.command(REQUEST_HISTORY, 0, first + 16 * (k + 1), 16)[0] == ACK
                last_first = first + 16 * (k + 1) + 8  # the second reply's last chunk
                host.wait_for(HISTORY, lambda v, f=last_first: v[3] == 1 and v[1] == f, since=mark)
            host.pump(4.0)
            vb.check_alive()
        except AssertionError as exc:
            vb.check_alive()  # a dead firmware says why (MemoryError, traceback)
            raise AssertionError(f"{exc}\nboard log:\n{vb.log_text()[-3000:]}") from exc
        finally:
            host.close()
        summary = vb.stop()
    assert summary is not None, vb.log_text()
    assert summary["faults"] == 0 and summary["state"] == "running"
    assert summary["link"]["commands_executed"] == 9 and summary["link"]["history_chunks"] == 8
    assert summary["heap_free_min"] >= MIN_FREE_AFTER_GC, summary["heap_free_min"]
