"""The byte pipe: a pty and socket:// on the event loop, loop:// through a reader thread, the ends."""

from __future__ import annotations

import asyncio
import os
import tty
from typing import Any

import pytest

from isopress.agent.serial_link import LinkClosed, LinkOpenError, SerialLink, check_port_url


def test_a_pty_moves_bytes_both_ways_and_its_end_is_a_read_error() -> None:
    async def body() -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        async with SerialLink(os.ttyname(slave)) as link:
            assert not link.uses_reader_thread
            os.write(master, b"\x00frame one\x00frame two")
            got = b""
            while len(got) < 20:
                got += await link.read(1.0)
            assert got == b"\x00frame one\x00frame two"
            link.write(b"to the board")
            await asyncio.sleep(0.05)
            assert os.read(master, 100) == b"to the board"
            assert await link.read(0.05) == b""  # nothing: a timeout, not an error
            os.close(master)
            os.close(slave)
            with pytest.raises(LinkClosed, match="read error on /dev/pts/"):
                await link.read(1.0)
                await link.read(1.0)
            with pytest.raises(LinkClosed):
                link.write(b"more")

    asyncio.run(body())


def test_a_socket_url_reads_whatever_arrived_in_one_call_and_eof_ends_it() -> None:
    async def body() -> None:
        peer: list[asyncio.StreamWriter] = []
        connected = asyncio.Event()

        async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            peer.append(w)
            connected.set()

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with SerialLink(f"socket://127.0.0.1:{port}") as link:
            await asyncio.wait_for(connected.wait(), 5)
            peer[0].write(bytes(range(1, 201)) * 10)
            await peer[0].drain()
            await asyncio.sleep(0.05)
            assert await link.read(1.0) == bytes(range(1, 201)) * 10  # 2000 bytes, one read
            peer[0].close()
            with pytest.raises(LinkClosed, match="end of file"):
                await link.read(1.0)
        server.close()
        await server.wait_closed()

    asyncio.run(body())


def test_ports_without_a_descriptor_are_read_by_a_thread() -> None:
    async def body() -> None:
        async with SerialLink("loop://") as link:
            assert link.uses_reader_thread
            link.write(b"echo")
            got = b""
            while len(got) < 4:
                got += await link.read(1.0)
            assert got == b"echo"

    asyncio.run(body())


def test_a_board_that_stops_reading_ends_the_link_instead_of_blocking_the_loop() -> None:
    async def body() -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        try:
            async with SerialLink(os.ttyname(slave), max_out_bytes=8192) as link:
                with pytest.raises(LinkClosed, match="the board does not read"):
                    for _ in range(10_000):  # nobody reads the master: the pty buffer fills
                        link.write(b"x" * 254)
                with pytest.raises(LinkClosed, match="does not read"):
                    await link.read(0.1)
        finally:
            os.close(master)
            os.close(slave)

    asyncio.run(body())


async def _until_last_chunk_ends(chunks: list[bytes], tail: bytes, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not chunks or not chunks[-1].endswith(tail):
        if loop.time() > deadline:
            raise AssertionError(f"no chunk ending in {tail!r} within {timeout_s} s")
        await asyncio.sleep(0.01)


async def _send_frames_every_5_ms(master: int, count: int) -> bytes:
    """Write count small frames into the pty, one every 5 ms; returns what was sent."""
    sent = b""
    for n in range(count):
        frame = b"\x00frame %03d" % n
        os.write(master, frame)
        sent += frame
        await asyncio.sleep(0.005)
    return sent


def test_a_read_interval_gathers_frames_into_fewer_chunks_and_zero_reads_at_once() -> None:
    async def body() -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        chunks: list[bytes] = []
        try:
            async with SerialLink(os.ttyname(slave)) as link:
                link.set_receiver(chunks.append)
                link.set_read_interval(0.1)
                sent = await _send_frames_every_5_ms(master, 60)  # for 0.3 s
                await asyncio.sleep(0.3)
                assert b"".join(chunks) == sent  # every byte, in order
                # One chunk per 0.1 s interval (the first is read as it arrives), not per frame.
                assert len(chunks) <= 6, len(chunks)
                # A long rest starts now; 0 ends it: the next bytes come as they arrive.
                link.set_read_interval(30.0)
                os.write(master, b"starts a rest")
                await _until_last_chunk_ends(chunks, b"starts a rest")
                os.write(master, b"waits in the kernel")
                await asyncio.sleep(0.1)
                assert not chunks[-1].endswith(b"waits in the kernel")
                link.set_read_interval(0.0)
                await _until_last_chunk_ends(chunks, b"waits in the kernel")
                # Back-pressure during a rest: nothing is read until resume_reading.
                link.set_read_interval(30.0)
                os.write(master, b"rest again")
                await _until_last_chunk_ends(chunks, b"rest again")
                link.pause_reading()
                link.set_read_interval(0.0)  # ends the rest, but reading stays paused
                os.write(master, b"after the pause")
                await asyncio.sleep(0.1)
                assert not chunks[-1].endswith(b"after the pause")
                link.resume_reading()
                await _until_last_chunk_ends(chunks, b"after the pause")
                link.set_read_interval(30.0)
                os.write(master, b"closed while resting")
                await _until_last_chunk_ends(chunks, b"closed while resting")
            assert link.closed_reason == "closed by the host"
        finally:
            os.close(master)
            os.close(slave)

    asyncio.run(body())


def test_after_a_rest_bytes_already_there_are_read_without_watching_the_descriptor() -> None:
    # The rest's end asks poll(0) first: a board that writes all the time is read once per
    # interval with no add_reader/remove_reader round (and no extra loop pass) each time.
    async def body() -> tuple[int, int, bytes, bytes]:
        master, slave = os.openpty()
        tty.setraw(slave)
        chunks: list[bytes] = []
        loop = asyncio.get_running_loop()
        watched: list[int] = []
        add_reader = loop.add_reader

        def counting_add_reader(fd: int, callback: Any, *args: Any) -> None:
            watched.append(fd)
            add_reader(fd, callback, *args)

        loop.add_reader = counting_add_reader  # type: ignore[method-assign]
        try:
            async with SerialLink(os.ttyname(slave)) as link:
                link.set_receiver(chunks.append)
                link.set_read_interval(0.05)
                sent = await _send_frames_every_5_ms(master, 100)  # for 0.5 s
                await asyncio.sleep(0.2)
                return len(watched), len(chunks), b"".join(chunks), sent
        finally:
            os.close(master)
            os.close(slave)

    watches, chunks, got, sent = asyncio.run(body())
    assert got == sent  # every byte, in order
    assert chunks >= 5, chunks  # read about once per 50 ms interval
    # Watched at open, then only when a rest ended before the next bytes (the frames come
    # every 5 ms, so nearly never): far fewer watches than reads.
    assert watches <= 1 + chunks // 3, (watches, chunks)


def test_opening_a_missing_device_says_which_and_why() -> None:
    async def body() -> None:
        with pytest.raises(
            LinkOpenError, match=r"cannot open serial port /dev/isopress-nothing-here: .*No such file"
        ):
            await SerialLink("/dev/isopress-nothing-here").open()

    asyncio.run(body())


def test_port_urls_are_checked_before_anything_opens() -> None:
    assert check_port_url("/dev/isopress-E6614103E7452D2F") == ""
    assert check_port_url("socket://127.0.0.1:5000") == ""
    assert "protocol 'bogus' not known" in check_port_url("bogus://x")
    assert "socket://host:port" in check_port_url("socket://no-port")
