"""The virtual board in real time on a pty, under the real MicroPython unix port in an
RP2040-sized heap, driven through pyserial like a USB board."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from vboard_host import SerialHost

from isofw.recipe import hold, ramp
from isopress.virtual_board import VirtualBoard
from isoproto import codes
from isoproto.ids import ACK, HELLO, HISTORY, LOAD_RECIPE_CHUNK, REQUEST_HISTORY, START, TELEMETRY
from isoproto.recipe import recipe_id

pytestmark = [pytest.mark.micropython, pytest.mark.slow]

RECIPE = [ramp(20.0, 2.0), hold(30.0), ramp(0.0, 1.0)]


@pytest.fixture
def board() -> Iterator[VirtualBoard]:
    vb = VirtualBoard(boot_count=4)
    vb.start()
    yield vb
    vb.stop()


@pytest.fixture
def host(board: VirtualBoard) -> Iterator[SerialHost]:
    h = SerialHost(board.port)
    yield h
    h.close()


def test_the_board_on_a_pty_answers_runs_a_recipe_and_streams_in_real_time(
    board: VirtualBoard, host: SerialHost
) -> None:
    hello = host.handshake(nonce=0x5A5A)
    assert hello[4] == "sim" and hello[8] == 4 and hello[9] == codes.RESET_POWER_ON
    rid = recipe_id(RECIPE)
    reply = host.command(LOAD_RECIPE_CHUNK, rid, len(RECIPE), 0, [tuple(s) for s in RECIPE])
    assert reply == (ACK, (0, codes.RESULT_OK, rid))
    reply = host.command(START, rid)
    assert reply[0] == ACK and reply[1][2] == 1  # run id 1
    mark = len(host.messages)
    started = time.monotonic()
    host.pump(3.0)
    wall_s = time.monotonic() - started
    samples = [v for v in host.of(TELEMETRY, since=mark)]
    seqs = [s[0] for s in samples]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # consecutive: nothing lost
    board_s = (samples[-1][1] - samples[0][1]) / 1000
    assert abs(board_s - wall_s) < 0.5, (board_s, wall_s)  # board time is real time
    assert len(samples) >= 0.8 * 100 * wall_s  # 100 samples a second
    pressures = [s[2] for s in samples]
    assert pressures[-1] - pressures[0] > 0.6 * 2.0 * board_s  # ramping at 2 MPa/s
    assert all(s[7] == codes.ST_PRESSURISING for s in samples[10:])
    # backfill of what was already sent: the board answers from its ring
    mark = len(host.messages)
    assert host.command(REQUEST_HISTORY, 0, seqs[5], 16)[0] == ACK
    chunks = [host.wait_for(HISTORY, since=mark)]
    host.pump(0.2)
    chunks = host.of(HISTORY, since=mark)
    assert [c[0] for c in chunks] == [0, 0] and chunks[-1][3] == 1
    assert chunks[0][1] == seqs[5] and len(chunks[0][4]) + len(chunks[1][4]) == 16
    board.check_alive()


def test_restart_looks_like_a_board_reset(board: VirtualBoard, host: SerialHost) -> None:
    assert host.handshake(nonce=1)[8] == 4
    host.pump(0.5)
    mark = len(host.messages)
    board.restart(reset_cause=codes.RESET_WATCHDOG)
    hello = host.wait_for(HELLO, since=mark, timeout_s=10.0)  # unsolicited, after boot
    assert hello[13] == 0  # no nonce: nobody asked
    assert hello[8] == 5 and hello[9] == codes.RESET_WATCHDOG
    assert host.handshake(nonce=2)[8] == 5  # the host handshakes again, same port
    mark = len(host.messages)
    host.pump(0.5)
    seqs = [v[0] for v in host.of(TELEMETRY, since=mark)]
    assert seqs and seqs[0] < 200  # a new sequence: the board rebooted
    summary = board.stop()
    assert summary is not None and summary["boot_count"] == 5 and summary["stopped_by"] == "SIGINT"
    assert len(board.logs) == 2


def test_isopress_virtual_board_prints_its_port_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "isopress.cli", "virtual-board", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("virtual board on /dev/pts/"), line
        host = SerialHost(line.split(" on ", 1)[1].strip())
        try:
            assert host.handshake(nonce=9)[3] == "sim-0001"
        finally:
            host.close()
        proc.terminate()
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert '"stopped_by": "SIGINT"' in err  # the board ended its loop and reported
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
