"""The serial fault proxy: exact pass-through, counted damage, stalls, unplugs."""

from __future__ import annotations

import os
import select
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from isopress.faultproxy import FaultRates, SerialFaultProxy


class _BoardEnd:
    """A pty standing for the board: the proxy opens its slave, the test holds the master."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.master, view[:1024])
            view = view[n:]

    def receive(self, n: int, timeout_s: float = 5.0) -> bytes:
        out = b""
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                out += os.read(self.master, 65536)
        return out

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def board() -> Iterator[_BoardEnd]:
    end = _BoardEnd()
    yield end
    end.close()


def _agent(port: str) -> serial.Serial:
    return serial.serial_for_url(port, baudrate=115200, timeout=0.05)


def _read_agent(agent: serial.Serial, n: int, timeout_s: float = 5.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        out += agent.read(max(1, n - len(out)))
    return out


def _payload(n: int) -> bytes:
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


def test_a_perfect_cable_passes_every_byte_both_ways(board: _BoardEnd, tmp_path: Path) -> None:
    with SerialFaultProxy(board.path, tmp_path / "board") as proxy:
        agent = _agent(proxy.port)
        try:
            data = _payload(20000)
            board.send(data)
            assert _read_agent(agent, len(data)) == data
            agent.write(data[:5000])
            assert board.receive(5000) == data[:5000]
        finally:
            agent.close()
    assert proxy.stats.to_host.bytes_in == proxy.stats.to_host.bytes_out == 20000
    assert proxy.stats.to_host.byte_faults == 0 and proxy.stats.disconnects == 0
    assert not Path(proxy.port).exists()  # the link goes with the proxy


def test_bit_flips_keep_the_length_and_each_one_is_counted(board: _BoardEnd, tmp_path: Path) -> None:
    rates = FaultRates(byte_error_rate=0.01, drop_share=0, duplicate_share=0, insert_share=0)
    with SerialFaultProxy(board.path, tmp_path / "board", to_host=rates, seed=7) as proxy:
        agent = _agent(proxy.port)
        data = _payload(30000)
        board.send(data)
        got = _read_agent(agent, len(data))
        agent.close()
    assert len(got) == len(data)
    differing = sum(1 for a, b in zip(got, data, strict=True) if a != b)
    assert differing == proxy.stats.to_host.flips
    assert 200 <= differing <= 400  # 1 % of 30 000, seeded


def test_drops_duplicates_and_inserts_change_the_length_by_their_counts(
    board: _BoardEnd, tmp_path: Path
) -> None:
    rates = FaultRates(byte_error_rate=0.02, flip_share=0)
    with SerialFaultProxy(board.path, tmp_path / "board", to_host=rates, seed=3) as proxy:
        agent = _agent(proxy.port)
        data = _payload(20000)
        board.send(data)
        stats = proxy.stats.to_host
        deadline = time.monotonic() + 5
        while stats.bytes_in < len(data) and time.monotonic() < deadline:
            time.sleep(0.02)
        expected = len(data) - stats.drops + stats.duplicates + stats.inserts
        got = _read_agent(agent, expected)
        agent.close()
    assert stats.drops > 0 and stats.duplicates > 0 and stats.inserts > 0
    assert len(got) == expected


def test_the_same_seed_damages_the_same_stream_the_same_way(board: _BoardEnd, tmp_path: Path) -> None:
    rates = FaultRates(byte_error_rate=0.01, drop_share=0, duplicate_share=0, insert_share=0)
    runs = []
    for i in range(2):
        with SerialFaultProxy(board.path, tmp_path / f"board{i}", to_host=rates, seed=11) as proxy:
            agent = _agent(proxy.port)
            data = _payload(5000)
            board.send(data)
            runs.append(_read_agent(agent, len(data)))
            agent.close()
    assert runs[0] == runs[1] and runs[0] != _payload(5000)


def test_a_stall_holds_the_bytes_then_delivers_them_all(board: _BoardEnd, tmp_path: Path) -> None:
    with SerialFaultProxy(board.path, tmp_path / "board") as proxy:
        agent = _agent(proxy.port)
        proxy.stall(0.4)
        started = time.monotonic()
        board.send(b"held back")
        first = _read_agent(agent, 1, timeout_s=5)
        waited = time.monotonic() - started
        got = first + _read_agent(agent, 8)
        agent.close()
    assert got == b"held back"
    assert proxy.stats.to_host.stalls == 1
    assert 0.35 <= waited < 3.0


def test_random_stalls_delay_but_lose_nothing(board: _BoardEnd, tmp_path: Path) -> None:
    rates = FaultRates(stalls_per_s=4.0, stall_s=0.2)
    with SerialFaultProxy(board.path, tmp_path / "board", to_host=rates, seed=2) as proxy:
        agent = _agent(proxy.port)
        data = _payload(3000)
        for i in range(0, len(data), 100):  # 1.5 s of a steady stream
            board.send(data[i : i + 100])
            time.sleep(0.05)
        got = _read_agent(agent, len(data))
        agent.close()
    assert got == data
    assert proxy.stats.to_host.stalls >= 1


def test_garbage_bursts_reach_the_agent_and_are_counted(board: _BoardEnd, tmp_path: Path) -> None:
    rates = FaultRates(garbage_bursts_per_s=50.0, garbage_max_bytes=16)
    with SerialFaultProxy(board.path, tmp_path / "board", to_host=rates, seed=5) as proxy:
        agent = _agent(proxy.port)
        time.sleep(0.5)
        got = _read_agent(agent, 1, timeout_s=1)
        time.sleep(0.1)
        got += agent.read(100000)
        agent.close()
    stats = proxy.stats.to_host
    assert stats.garbage_bursts >= 5
    # everything the line made up reached the agent (bursts after the last read aside)
    assert 0 < len(got) <= stats.garbage_bytes


def test_an_unplug_fails_the_agents_reads_and_the_port_comes_back(board: _BoardEnd, tmp_path: Path) -> None:
    with SerialFaultProxy(board.path, tmp_path / "board", disconnect_s=0.3) as proxy:
        agent = _agent(proxy.port)
        board.send(b"before")
        assert _read_agent(agent, 6) == b"before"
        proxy.disconnect()
        with pytest.raises(serial.SerialException):
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                agent.read(1)
        agent.close()
        deadline = time.monotonic() + 3
        while not proxy.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proxy.connected and Path(proxy.port).exists()
        again = _agent(proxy.port)
        board.send(b"after")
        assert _read_agent(again, 5) == b"after"
        again.write(b"up")
        assert board.receive(2) == b"up"
        again.close()
    assert proxy.stats.disconnects == 1
    assert proxy.error is None


def test_bad_rates_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="byte_error_rate"):
        FaultRates(byte_error_rate=1.5)
    with pytest.raises(ValueError, match="stalls_per_s"):
        FaultRates(stalls_per_s=-1)
    with pytest.raises(ValueError, match="share"):
        FaultRates(byte_error_rate=0.1, flip_share=0, drop_share=0, duplicate_share=0, insert_share=0)
