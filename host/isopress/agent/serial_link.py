"""The byte pipe to the board: a pyserial URL opened, read and written without blocking the loop.

``serial.serial_for_url`` opens a device path (``/dev/isopress-...``, ``/dev/ttyACM0``), a
pseudo-terminal of the virtual board (``/dev/pts/N``) or ``socket://host:port``. Those
three have a file descriptor, and the link uses the event loop's own readiness
callbacks on it (``loop.add_reader``/``add_writer``), then ``os.read``/``os.write`` on the
descriptor (non-blocking, as pyserial opens it): no thread, no hand-over between threads
per chunk, one system call per chunk, and a read returns whatever the kernel holds
(pyserial's socket ``in_waiting`` says only 0 or 1, so a blocking reader thread would have
to read a socket byte by byte). pyserial still opens and configures the port (termios,
baud rate, the socket). Ports without a descriptor (``loop://``, ``rfc2217://``, ...) get a
reader thread instead, which hands each chunk to the loop with ``call_soon_threadsafe``.

Received chunks either queue in the link for :meth:`SerialLink.read` (bounded: past
``max_chunks`` the link stops reading until they are taken), or, once a receiver is set
(:meth:`SerialLink.set_receiver`), go straight to it from the reader callback, like an
asyncio protocol's ``data_received``: no task wakes per chunk. A receiver that falls
behind calls :meth:`SerialLink.pause_reading`; then the kernel's buffer and the board's TX
ring take the back-pressure, as they would with a slow host. A receiver may also ask for reads
at most every so often (:meth:`SerialLink.set_read_interval`): after a chunk the link stops
watching the descriptor for that long and lets the next bytes gather in the kernel, so a
board that writes one small frame every 10 ms costs one wake-up per interval, not one per
frame (the agent reads at its telemetry batch period: a sample waits that long anyway).
Writes go straight to the port; what the port does not take at once waits in a bounded
output buffer and is flushed when the descriptor is writable. A read error, end of file
(socket closed, pty master gone, USB unplugged), a write error or a full output buffer
(the board stopped reading) ends the link: :meth:`SerialLink.read` then raises
:class:`LinkClosed` with the reason in words.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import serial

__all__ = ["LinkClosed", "LinkOpenError", "SerialLink", "check_port_url"]

log = logging.getLogger("isopress.agent.serial")

_READ_SIZE = 4096
_STALLED_S = 0.25  # a rest's timer this late means the loop was stalled (see _rest_over)
_THREAD_POLL_S = 0.05  # the fallback reader's read timeout: how fast it notices close()


class LinkOpenError(OSError):
    """The port could not be opened (missing device, permission, connection refused, ...)."""


class LinkClosed(Exception):
    """The link ended; ``reason`` says why in words (read error, end of file, closed here)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_port_url(url: str) -> str:
    """The problem with ``url`` as a pyserial URL, or "" when pyserial understands it (no port opened)."""
    try:
        port = serial.serial_for_url(url, do_not_open=True)
        parse = getattr(port, "from_url", None)  # URL handlers parse the rest only when opening
        if parse is not None:
            parse(url)
    except Exception as exc:  # pyserial's URL parsers raise what they raise (even KeyError)
        return (
            f"{url!r} is not a serial port URL pyserial can open ({exc}); expected a device path "
            "(/dev/isopress-..., /dev/ttyACM0, /dev/pts/N) or socket://host:port"
        )
    with contextlib.suppress(Exception):
        port.close()
    return ""


class SerialLink:
    """One open serial port; ``async with SerialLink(url) as link:`` opens it, exit closes it."""

    def __init__(
        self, url: str, *, baudrate: int = 115200, max_chunks: int = 256, max_out_bytes: int = 65536
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.max_chunks = max_chunks
        self.max_out_bytes = max_out_bytes
        self.bytes_in = 0
        self.bytes_out = 0
        self._port: Any = None
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._out = bytearray()
        self._writing = False
        self._reading = False
        self._closed: str | None = None  # the reason, once the link ended
        self._receiver: Callable[[bytes], None] | None = None
        self._paused = False
        self._read_interval_s = 0.0
        self._rest: asyncio.TimerHandle | None = None  # reading rests until this fires
        self._poll: select.poll | None = None  # the descriptor alone, to ask "readable now?"
        self.on_close: Callable[[str], None] | None = None  # called once, with the reason
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def uses_reader_thread(self) -> bool:
        """True when the port has no file descriptor and a thread reads it."""
        return self._thread is not None

    @property
    def closed_reason(self) -> str | None:
        """Why the link ended, or None while it is open."""
        return self._closed

    # -- life cycle --------------------------------------------------------------------
    async def open(self) -> None:
        """Open the port (in a worker thread: a ``socket://`` connect can take a while)."""
        self._loop = asyncio.get_running_loop()
        try:
            self._port = await asyncio.to_thread(
                serial.serial_for_url, self.url, baudrate=self.baudrate, timeout=0, write_timeout=0
            )
        except (OSError, ValueError, serial.SerialException) as exc:
            raise LinkOpenError(f"cannot open serial port {self.url}: {exc}") from exc
        try:
            self._fd = int(self._port.fileno())
        except (AttributeError, NotImplementedError, OSError, TypeError, ValueError):
            self._fd = -1
        if self._fd >= 0:
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)
            self._resume_reading()
        else:
            self._port.timeout = _THREAD_POLL_S
            self._port.write_timeout = None
            self._thread = threading.Thread(
                target=self._reader_thread, name=f"serial-{self.url}", daemon=True
            )
            self._thread.start()
        log.debug("serial port %s open (%s)", self.url, "thread" if self._thread else "event loop")

    async def __aenter__(self) -> SerialLink:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 1.0)

    def close(self, reason: str = "closed by the host") -> None:
        """Close the port; a pending or later :meth:`read` raises :class:`LinkClosed`."""
        self._end(reason)
        self._stop.set()
        self._end_rest(read=False)
        if self._fd >= 0 and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._reading = self._writing = False
        self._poll = None
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()

    # -- reading -----------------------------------------------------------------------
    def read_nowait(self) -> bytes:
        """Everything received and not yet read (b"" when nothing); LinkClosed once it ended."""
        if self._chunks:
            data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
            self._chunks.clear()
            if not self._reading and not self._paused and self._closed is None and self._fd >= 0:
                self._resume_reading()
            return data
        if self._closed is not None:
            raise LinkClosed(self._closed)
        return b""

    async def read(self, timeout_s: float) -> bytes:
        """What arrived, waiting up to ``timeout_s`` for something (b"" when nothing came)."""
        data = self.read_nowait()
        if data or timeout_s <= 0:
            return data
        assert self._loop is not None
        waiter = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_later(timeout_s, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return self.read_nowait()

    def set_receiver(self, receiver: Callable[[bytes], None] | None) -> None:
        """Hand every chunk to ``receiver(data)`` as it arrives (None: back to :meth:`read`).

        What was queued for read() goes to the receiver at once.
        """
        self._receiver = receiver
        if receiver is not None and self._chunks:
            data = b"".join(self._chunks)
            self._chunks.clear()
            if not self._reading and not self._paused and self._closed is None and self._fd >= 0:
                self._resume_reading()
            receiver(data)

    def set_read_interval(self, seconds: float) -> None:
        """Deliver to the receiver at most once per ``seconds`` (0: as soon as bytes arrive).

        What arrives meanwhile waits in the kernel's buffer and comes in the next chunk.
        Setting 0 ends a rest at once (e.g. a command is in flight and its reply should be
        read the moment it arrives). Descriptor ports only; the reader thread ignores it.
        """
        self._read_interval_s = max(0.0, seconds)
        if self._read_interval_s == 0.0 and self._rest is not None:
            self._end_rest()

    def pause_reading(self) -> None:
        """Stop reading the port until :meth:`resume_reading` (back-pressure; descriptor ports only)."""
        self._paused = True
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def resume_reading(self) -> None:
        """Read again after :meth:`pause_reading`."""
        self._paused = False
        if self._rest is not None:
            return  # the rest's end resumes
        if not self._reading and self._closed is None and self._fd >= 0 and self._port is not None:
            self._resume_reading()

    def _resume_reading(self) -> None:
        assert self._loop is not None
        self._loop.add_reader(self._fd, self._on_readable)
        self._reading = True

    def _on_readable(self) -> None:
        data = self._read_some()
        if data:
            self._take(data)

    def _read_some(self) -> bytes:
        # os.read on the descriptor: one system call per chunk (pyserial's read adds two
        # select() calls around it). b"": nothing to read now, or the link just ended.
        if self._port is None:
            return b""
        try:
            data = os.read(self._fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:  # EIO: the pty's other side closed; ECONNRESET; a USB unplug
            self._fail(f"read error on {self.url}: {exc}")
            return b""
        if not data:  # readable with nothing to read: the device or the socket is gone
            self._fail(f"read error on {self.url}: end of file (device disconnected or socket closed)")
        return data

    def _take(self, data: bytes) -> None:
        self._deliver(data)
        if (
            self._read_interval_s > 0.0
            and self._receiver is not None
            and self._reading
            and len(data) < _READ_SIZE  # a full read: more is waiting, take it now
        ):
            assert self._loop is not None
            self._loop.remove_reader(self._fd)
            self._reading = False
            self._rest = self._loop.call_later(self._read_interval_s, self._rest_over)

    def _end_rest(self, *, read: bool = True) -> None:
        """The read interval is over: watch the descriptor again (what gathered is read next)."""
        rest, self._rest = self._rest, None
        if rest is None:
            return
        rest.cancel()
        if not read or self._paused or self._closed is not None or self._port is None or self._reading:
            return
        # Not a read at once: a tty opened with timeout 0 (VMIN = VTIME = 0) answers "no
        # bytes" like an end of file, so only a read the loop reported readable is one.
        self._resume_reading()

    def _rest_over(self) -> None:
        """The rest's timer: read what gathered now if the descriptor is readable, else watch it.

        Not a blind read (see :meth:`_end_rest`): poll(0) asks the kernel "readable now?",
        which spares watching the descriptor for one wake-up when the bytes are already
        there (two epoll changes and a loop pass per read period, the usual case).
        """
        rest = self._rest
        assert self._loop is not None and rest is not None
        if self._loop.time() - rest.when() > _STALLED_S or self._poll is None or not self._poll.poll(0):
            # Nothing there yet: watch for it. Or the loop itself was stalled (the agent was
            # stopped, the machine swapped): then the bytes are read in a later pass, after
            # the session's heartbeat watchdog has judged the silence, as when watching.
            self._end_rest()
            return
        self._rest = None
        if self._paused or self._closed is not None or self._port is None or self._reading:
            return
        data = self._read_some()
        if data:
            self._deliver(data)
        if self._paused or self._closed is not None or self._port is None or self._reading or self._rest:
            return  # the receiver paused reading, the link ended, or it is watched/resting already
        if data and len(data) < _READ_SIZE and self._read_interval_s > 0.0 and self._receiver is not None:
            assert self._loop is not None
            self._rest = self._loop.call_later(self._read_interval_s, self._rest_over)
        else:  # nothing after all, a full read (more waiting), or no rests any more
            self._resume_reading()

    def _reader_thread(self) -> None:
        port = self._port
        loop = self._loop
        assert loop is not None
        while not self._stop.is_set():
            try:
                data = port.read(max(1, min(port.in_waiting, _READ_SIZE)))
            except Exception as exc:  # whatever the URL handler raises ends the link
                if not self._stop.is_set():
                    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                        loop.call_soon_threadsafe(self._fail, f"read error on {self.url}: {exc}")
                return
            if data:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._deliver, data)

    def _deliver(self, data: bytes) -> None:
        if self._closed is not None:
            return
        self.bytes_in += len(data)
        if self._receiver is not None:
            self._receiver(data)
            return
        self._chunks.append(data)
        if len(self._chunks) >= self.max_chunks and self._reading and self._loop is not None:
            self._loop.remove_reader(self._fd)  # back-pressure: read_nowait() resumes
            self._reading = False
        _wake(self._waiter)

    # -- writing -----------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Send ``data`` (in order with earlier writes). LinkClosed when the link has ended."""
        if self._closed is not None:
            raise LinkClosed(self._closed)
        if self._out:
            self._queue_out(data)
            return
        try:
            if self._thread is not None:
                self._port.write(data)
                written = len(data)
            else:
                written = self._write_some(data)
        except (OSError, serial.SerialException) as exc:
            self._fail(f"write error on {self.url}: {exc}")
            raise LinkClosed(self._closed or "write error") from exc
        self.bytes_out += written
        if written < len(data):
            self._queue_out(data[written:])

    def _write_some(self, data: bytes) -> int:
        # os.write on the descriptor, not port.write: with write_timeout 0, pyserial retries
        # a full buffer (EAGAIN) in a busy loop, which would stall the event loop.
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0

    def _queue_out(self, data: bytes) -> None:
        if len(self._out) + len(data) > self.max_out_bytes:
            self._fail(f"the board does not read: {len(self._out)} bytes waiting to be written to {self.url}")
            raise LinkClosed(self._closed or "output full")
        self._out += data
        if not self._writing and self._loop is not None:
            self._loop.add_writer(self._fd, self._on_writable)
            self._writing = True

    def _on_writable(self) -> None:
        if self._port is None:
            return
        try:
            written = self._write_some(bytes(self._out))
        except (OSError, serial.SerialException) as exc:
            self._fail(f"write error on {self.url}: {exc}")
            return
        self.bytes_out += written
        del self._out[:written]
        if not self._out and self._loop is not None:
            self._loop.remove_writer(self._fd)
            self._writing = False

    # -- ending ------------------------------------------------------------------------
    def _fail(self, reason: str) -> None:
        if self._closed is None:
            log.info("%s", reason)
        self.close(reason)

    def _end(self, reason: str) -> None:
        if self._closed is None:
            self._closed = reason
            if self.on_close is not None:
                self.on_close(reason)
        _wake(self._waiter)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
