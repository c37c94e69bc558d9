"""The rp2/esp32 boards' link stream (isofw.streams.PolledStream) on the MicroPython unix
port's stdio, whose reads block like a board's USB CDC: select.poll says what is there.
The whole link runs on it: HELLO on attach, a handshake and a command over pipes."""

from __future__ import annotations

import os
import select
import time
from pathlib import Path

import pytest

from isopress import micropython_port
from isoproto import codec, framing
from isoproto.ids import ACK, HEARTBEAT, HELLO, HELLO_HOST, PROFILE, RESET_FAULTS, TELEMETRY

pytestmark = pytest.mark.micropython

_SCRIPT = r"""
import select, sys, time
from board import SimBoard, read_config
from isofw.app import boot
from isofw.core import Inputs
from isofw.link import Link
from isofw.streams import PolledStream

board = SimBoard(read_config(), 1e6, 1, 0.0, False)
core = boot(board)
rx_poll = select.poll()
rx_poll.register(sys.stdin, select.POLLIN)
tx_poll = select.poll()
tx_poll.register(sys.stdout, select.POLLOUT)
link = Link(core, PolledStream(sys.stdin.buffer, sys.stdout.buffer, rx_poll, tx_poll))
inputs = Inputs()
now = 0
slowest = 0
start = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), start) < 4000:  # 4 s of real time
    board.read_inputs(inputs)
    core.step(now, inputs)
    t0 = time.ticks_us()
    link.service(now)
    us = time.ticks_diff(time.ticks_us(), t0)
    if us > slowest:
        slowest = us
    board.wait_next_tick()
    time.sleep_ms(10)
    now += 10
print("slowest service %d us, executed %d" % (slowest, link.receiver.executed_count), file=sys.stderr)
"""


def test_the_link_on_polled_stdio_never_blocks_and_speaks_the_protocol(tmp_path: Path) -> None:
    script = tmp_path / "polled.py"
    script.write_text(_SCRIPT)
    # from source, so the unix port's default heap (the 180 KB gate runs the built bundle)
    proc = micropython_port.popen(script, path=micropython_port.firmware_search_path("sim"))
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    decoder = framing.StreamDecoder()
    got: list[tuple[int, tuple[object, ...]]] = []
    fd = proc.stdout.fileno()

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.02)
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    return
                got.extend(codec.decode(p) for p in decoder.feed(data))

    try:
        deadline = time.monotonic() + 20.0
        while len(got) < 2 and time.monotonic() < deadline:  # it compiles from source first
            pump(0.05)
        assert [m[0] for m in got[:2]] == [HELLO, PROFILE]
        pump(0.5)  # nothing sent yet: the board's loop must run on (telemetry flows)
        assert len([m for m in got if m[0] == TELEMETRY]) > 10
        # a frame in two halves, a pause between: the board waits for the rest, not the loop
        hello_host = framing.frame(codec.encode(HELLO_HOST, (1, 0, 321, 40)))
        proc.stdin.write(hello_host[:5])
        proc.stdin.flush()
        pump(0.3)
        proc.stdin.write(hello_host[5:] + framing.frame(codec.encode(RESET_FAULTS, (40,))))
        proc.stdin.flush()
        pump(0.5)
        hellos = [m[1] for m in got if m[0] == HELLO]
        assert len(hellos) == 2 and hellos[1][13] == 321
        acks = [m[1] for m in got if m[0] == ACK]
        assert [a[0] for a in acks] == [40]
        assert [m for m in got if m[0] == HEARTBEAT]
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    words = err.decode().split()
    slowest_us = int(words[words.index("service") + 1])
    assert slowest_us < 100_000, err  # a blocking read would have stalled for the 300 ms pause
    assert "executed 1" in err.decode()
