"""The byte pipe: a pty and socket:// on the event loop, loop:// through a reader thread, the ends."""

from __future__ import annotations

import asyncio
import os
import tty

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
