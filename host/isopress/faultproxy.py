"""A serial fault injector: a proxy between the agent and a board's serial port, pty to pty.

The agent opens the proxy's port (a symlink to a pseudo-terminal it re-creates after each
simulated unplug, the way udev keeps ``/dev/isopress-<serial>`` stable) instead of the
board's; the proxy copies bytes both ways and damages them at seeded, configurable rates:

- per byte, with probability ``byte_error_rate``: a bit flip, a dropped byte, a duplicated
  byte or an inserted random byte (in the proportions of the ``*_share`` weights);
- bursts of random garbage (``garbage_bursts_per_s``, up to ``garbage_max_bytes`` each);
- stalls (``stalls_per_s``): the direction stops for ``stall_s``, then delivers what it held
  (bounded: past ``stall_buffer_bytes`` the oldest bytes are dropped and counted);
- disconnects (``disconnects_per_s``): the agent's pty is hung up (its reads fail, as on a
  USB unplug) and a new one appears at the same path ``disconnect_s`` later; what the
  board sends meanwhile is lost.

Every fault is counted per direction (:class:`DirectionStats`), so a test can say exactly
what it survived. The same seed gives the same faults for the same byte stream. A test
rig only: nothing of it runs in the agent.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import select
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

__all__ = ["DirectionStats", "FaultRates", "ProxyStats", "SerialFaultProxy"]

_CHUNK = 4096


@dataclass(frozen=True, slots=True)
class FaultRates:
    """How often each fault happens, in one direction (all zero: a perfect cable)."""

    byte_error_rate: float = 0.0
    flip_share: float = 1.0
    drop_share: float = 1.0
    duplicate_share: float = 1.0
    insert_share: float = 1.0
    garbage_bursts_per_s: float = 0.0
    garbage_max_bytes: int = 64
    stalls_per_s: float = 0.0
    stall_s: float = 0.3
    stall_buffer_bytes: int = 65536

    def __post_init__(self) -> None:
        if not 0.0 <= self.byte_error_rate <= 1.0:
            raise ValueError(f"byte_error_rate: {self.byte_error_rate} is not a probability (0..1)")
        for name in ("flip_share", "drop_share", "duplicate_share", "insert_share"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0")
        if self.byte_error_rate > 0 and self._share_total() <= 0:
            raise ValueError("byte_error_rate > 0 needs at least one share > 0")
        for name in ("garbage_bursts_per_s", "stalls_per_s", "stall_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0")
        if self.garbage_max_bytes < 1 or self.stall_buffer_bytes < 1:
            raise ValueError("garbage_max_bytes and stall_buffer_bytes must be >= 1")

    def _share_total(self) -> float:
        return self.flip_share + self.drop_share + self.duplicate_share + self.insert_share


@dataclass(slots=True)
class DirectionStats:
    """What one direction carried and what was done to it."""

    bytes_in: int = 0
    bytes_out: int = 0
    flips: int = 0
    drops: int = 0
    duplicates: int = 0
    inserts: int = 0
    garbage_bursts: int = 0
    garbage_bytes: int = 0
    stalls: int = 0
    stall_overflow_bytes: int = 0
    lost_while_disconnected: int = 0

    @property
    def byte_faults(self) -> int:
        """Single-byte faults (flips, drops, duplicates, inserts)."""
        return self.flips + self.drops + self.duplicates + self.inserts

    def as_dict(self) -> dict[str, int]:
        """The counters by name (for reports)."""
        return {name: getattr(self, name) for name in self.__slots__} | {"byte_faults": self.byte_faults}


@dataclass(slots=True)
class ProxyStats:
    """Both directions and the disconnects."""

    to_board: DirectionStats = field(default_factory=DirectionStats)
    to_host: DirectionStats = field(default_factory=DirectionStats)
    disconnects: int = 0

    def as_dict(self) -> dict[str, object]:
        """Everything, for a JSON report."""
        return {
            "to_board": self.to_board.as_dict(),
            "to_host": self.to_host.as_dict(),
            "disconnects": self.disconnects,
        }


class _Damager:
    """The faults of one direction: bytes in, damaged bytes out, with a held-back stall buffer."""

    def __init__(self, rates: FaultRates, rng: random.Random, stats: DirectionStats) -> None:
        self.rates = rates
        self.rng = rng
        self.stats = stats
        self.held = bytearray()  # stalled bytes
        self.out = bytearray()  # admitted bytes the other side has not taken yet
        self.stalled_until = 0.0
        self._next_garbage = self._draw(rates.garbage_bursts_per_s, time.monotonic())
        self._next_stall = self._draw(rates.stalls_per_s, time.monotonic())
        total = rates._share_total()
        self._cuts = (
            rates.flip_share / total if total else 0.0,
            (rates.flip_share + rates.drop_share) / total if total else 0.0,
            (rates.flip_share + rates.drop_share + rates.duplicate_share) / total if total else 0.0,
        )

    def _draw(self, per_s: float, now: float) -> float:
        return now + self.rng.expovariate(per_s) if per_s > 0 else float("inf")

    def damage(self, data: bytes) -> bytes:
        """The bytes as they leave the cable (may be empty, longer or shorter)."""
        self.stats.bytes_in += len(data)
        p = self.rates.byte_error_rate
        if p <= 0:
            return data
        out = bytearray()
        rng = self.rng
        flip_cut, drop_cut, dup_cut = self._cuts
        for byte in data:
            if rng.random() >= p:
                out.append(byte)
                continue
            kind = rng.random()
            if kind < flip_cut:
                out.append(byte ^ (1 << rng.randrange(8)))
                self.stats.flips += 1
            elif kind < drop_cut:
                self.stats.drops += 1
            elif kind < dup_cut:
                out.append(byte)
                out.append(byte)
                self.stats.duplicates += 1
            else:
                out.append(byte)
                out.append(rng.randrange(256))
                self.stats.inserts += 1
        return bytes(out)

    def spontaneous(self, now: float) -> bytes:
        """Garbage bursts due by now (the line picks up noise whether or not data flows)."""
        out = b""
        while now >= self._next_garbage:
            n = self.rng.randint(1, self.rates.garbage_max_bytes)
            out += bytes(self.rng.randrange(256) for _ in range(n))
            self.stats.garbage_bursts += 1
            self.stats.garbage_bytes += n
            self._next_garbage = self._draw(self.rates.garbage_bursts_per_s, self._next_garbage)
        return out

    def admit(self, data: bytes, now: float) -> bytes:
        """Through the stall logic: what may be written now (the rest is held)."""
        if now >= self._next_stall:
            self.stalled_until = now + self.rates.stall_s
            self.stats.stalls += 1
            self._next_stall = self._draw(self.rates.stalls_per_s, self.stalled_until)
        self.held += data
        overflow = len(self.held) - self.rates.stall_buffer_bytes
        if overflow > 0:
            del self.held[:overflow]
            self.stats.stall_overflow_bytes += overflow
        if now < self.stalled_until:
            return b""
        out = bytes(self.held)
        self.held.clear()
        return out


class SerialFaultProxy:
    """``with SerialFaultProxy(board_port, link_path, ...) as proxy:`` the agent opens ``proxy.port``.

    ``board_port`` is the board's serial device (for the virtual board: its pty). The
    rates apply per direction (``to_board``: agent -> board, ``to_host``: board -> agent).
    ``disconnects_per_s`` unplugs the agent's side at random (seeded) moments for
    ``disconnect_s``; :meth:`disconnect` does it on demand.
    """

    def __init__(
        self,
        board_port: str | Path,
        link_path: str | Path,
        *,
        to_board: FaultRates | None = None,
        to_host: FaultRates | None = None,
        disconnects_per_s: float = 0.0,
        disconnect_s: float = 1.0,
        seed: int = 1,
    ) -> None:
        if disconnects_per_s < 0 or disconnect_s < 0:
            raise ValueError("disconnects_per_s and disconnect_s must be >= 0")
        self.board_port = str(board_port)
        self.link_path = Path(link_path)
        self.stats = ProxyStats()
        rng = random.Random(seed)
        self._to_board = _Damager(
            to_board or FaultRates(), random.Random(rng.getrandbits(64)), self.stats.to_board
        )
        self._to_host = _Damager(
            to_host or FaultRates(), random.Random(rng.getrandbits(64)), self.stats.to_host
        )
        self._rng = random.Random(rng.getrandbits(64))
        self.disconnects_per_s = disconnects_per_s
        self.disconnect_s = disconnect_s
        self._board_fd = -1
        self._master_fd = -1
        self._own_slave_fd = -1
        self._reconnect_at = 0.0
        self._next_disconnect = float("inf")
        self._disconnect_now = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.error: BaseException | None = None

    # -- life cycle --------------------------------------------------------------------
    def __enter__(self) -> SerialFaultProxy:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def port(self) -> str:
        """The path the agent opens (stable across simulated unplugs)."""
        return str(self.link_path)

    @property
    def connected(self) -> bool:
        """False while a simulated unplug lasts."""
        return self._master_fd >= 0

    def start(self) -> None:
        """Open the board's port, create the agent's pty and start copying."""
        self._board_fd = os.open(self.board_port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        with contextlib.suppress(OSError):  # a socket or pipe stand-in is not a tty
            tty.setraw(self._board_fd)
        self._plug()
        self._next_disconnect = self._draw_disconnect(time.monotonic())
        self._thread = threading.Thread(target=self._run, name="serial-fault-proxy", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop copying, remove the link and close every descriptor."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self._unplug()
        if self._board_fd >= 0:
            os.close(self._board_fd)
            self._board_fd = -1

    def disconnect(self) -> None:
        """Unplug the agent's side now, for ``disconnect_s``."""
        self._disconnect_now.set()

    def stall(self, seconds: float, *, to_host: bool = True) -> None:
        """Stall one direction now for ``seconds`` (held bytes are delivered afterwards)."""
        damager = self._to_host if to_host else self._to_board
        with self._lock:
            damager.stalled_until = max(damager.stalled_until, time.monotonic() + seconds)
            damager.stats.stalls += 1

    # -- the agent's pty -----------------------------------------------------------------
    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        # Our own slave descriptor keeps the pty alive between the agent's opens (a pty
        # whose slave side nobody holds reads as hung up).
        self._own_slave_fd = slave
        tmp = self.link_path.with_name(self.link_path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.link_path)
        self._master_fd = master  # last: `connected` means the path is there

    def _unplug(self) -> None:
        self.stats.to_host.lost_while_disconnected += len(self._to_host.out)
        self._to_host.out.clear()
        fds = (self._master_fd, self._own_slave_fd)
        self._master_fd = -1  # first: `connected` is False before the agent sees the hang-up
        self._own_slave_fd = -1
        with contextlib.suppress(FileNotFoundError):
            self.link_path.unlink()
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _draw_disconnect(self, now: float) -> float:
        return (
            now + self._rng.expovariate(self.disconnects_per_s)
            if self.disconnects_per_s > 0
            else float("inf")
        )

    # -- the copying thread ----------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
        except BaseException as exc:  # reported to the test through .error
            self.error = exc
            raise

    def _step(self) -> None:
        now = time.monotonic()
        if self._master_fd >= 0 and (self._disconnect_now.is_set() or now >= self._next_disconnect):
            self._disconnect_now.clear()
            self._unplug()
            self.stats.disconnects += 1
            self._reconnect_at = now + self.disconnect_s
        if self._master_fd < 0 and now >= self._reconnect_at:
            self._plug()
            self._next_disconnect = self._draw_disconnect(now)
        fds = [self._board_fd] + ([self._master_fd] if self._master_fd >= 0 else [])
        readable, _, _ = select.select(fds, [], [], 0.005)
        now = time.monotonic()
        if self._board_fd in readable:
            data = _read(self._board_fd)
            self._forward(self._to_host, data, now, to_agent=True)
        else:
            self._forward(self._to_host, b"", now, to_agent=True)
        if self._master_fd >= 0 and self._master_fd in readable:
            data = _read(self._master_fd)
            self._forward(self._to_board, data, now, to_agent=False)
        else:
            self._forward(self._to_board, b"", now, to_agent=False)

    def _forward(self, damager: _Damager, data: bytes, now: float, *, to_agent: bool) -> None:
        if to_agent and self._master_fd < 0:
            damager.stats.lost_while_disconnected += len(data)
            return
        with self._lock:
            damager.out += damager.admit(damager.damage(data) + damager.spontaneous(now), now)
        if damager.out:
            _flush(damager, self._master_fd if to_agent else self._board_fd)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, _CHUNK)
    except BlockingIOError:
        return b""
    except OSError as exc:
        if exc.errno == errno.EIO:  # the other side hung up: nothing to read now
            return b""
        raise


def _flush(damager: _Damager, fd: int) -> None:
    """Write what the other side takes now; keep the rest (bounded) for the next round."""
    try:
        n = os.write(fd, damager.out)
    except BlockingIOError:
        n = 0
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        n = 0
    del damager.out[:n]
    damager.stats.bytes_out += n
    overflow = len(damager.out) - damager.rates.stall_buffer_bytes
    if overflow > 0:  # nobody reads this side: like a full USB buffer, the oldest bytes go
        del damager.out[:overflow]
        damager.stats.stall_overflow_bytes += overflow
