"""The serial session: the board over its serial link, as :class:`~.board.BoardPort` and bursts of updates.

``async with SerialSession(config.serial, checkpoint=text) as session:`` then
``Agent(config, session, session.updates())``. One task (in the session's ``TaskGroup``)
runs the whole life of the link, one state at a time:

1. **open** the pyserial URL (:mod:`.serial_link`); failing that, wait (capped, jittered
   backoff, ``serial.reconnect``) and try again, for ever;
2. **handshake**: a lone 0x00 (ends any noise on the line), ``HELLO_HOST`` with a random
   nonce and the command sender's next ``cmd_seq``, repeated every heartbeat period until
   the ``HELLO`` that echoes the nonce and the ``PROFILE`` after it arrive (within
   ``serial.heartbeat_timeout_ms``). A board of another protocol major is refused with
   :func:`isoproto.version.board_version_problem`'s words (logged, and a ``board_refused``
   agent event once) and left alone for the backoff delay; a ``PROFILE`` that does not
   hash to ``HELLO.profile_hash`` fails the handshake (``profile_mismatch``). Then
   :class:`~.model.BoardInfo` goes out, and the sequence trackers start: from the stored
   checkpoint when it names this boot of this board, from seq 0 when the board rebooted,
   else at the board's present;
3. **serve**: every chunk from the board is handled in the link's reader callback (no
   task wakes per frame; the serve task wakes only for its timers): stream decoder, live
   ``TELEMETRY`` becomes :class:`~.model.Sample`, ``EVENT`` :class:`~.model.BoardEvent`,
   ``ACK``/``NAK`` settle commands, ``HEARTBEAT`` refines the board clock and reveals gaps
   at the end of a stream, ``HISTORY`` fills gaps (``historical=True``). Heartbeats go
   out every ``serial.heartbeat_period_ms``; the command sender's retransmission timer,
   the history requests and the checkpoint run off the same loop. With ``read_interval_s``
   (the agent passes its telemetry batch period) the port is read at most once per
   interval while no reply is awaited: a board's 100 Hz frames then cost one wake-up,
   one burst and one spool transaction per interval instead of per frame, and a sample
   waits in the kernel's buffer for the time it would have waited for its batch anyway;
   while a command or history request is in flight, reads are immediate. Nothing valid from the
   board for ``serial.heartbeat_timeout_ms``, or a read/write error, loses the link:
   ``LinkDown(reason)``, close, back off, go to 1. A ``HELLO`` the host did not ask for
   (the board restarted) or a command that failed after every retry (the board still
   waits for it) makes the session handshake again on the open link.

Commands (:class:`~.board.BoardPort`) go through :class:`isoproto.reliable.CommandSender`:
each call submits, writes what the sender says, and awaits the outcome; ``FAILED`` and a
link lost before the reply raise :class:`~.board.BoardUnavailable` with words (the command
may or may not have run); commands are refused at once while the board is not connected,
and never wait for a reconnect (a late ``start`` is worse than a refused one).

The two record streams (gaps, history, losses, where tracking starts) are
:class:`~.board_streams.BoardStreams`. Lost records (gone from the board's history before
the host could ask) are reported as ``records_lost`` agent events (a
:class:`~.model.SessionNotice` in the stream), counted in :attr:`SerialSession.stats`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from isoproto import PROTOCOL_MAJOR, PROTOCOL_MINOR, codec, codes, framing, named, version
from isoproto import recipe as wire_recipe
from isoproto.errors import EncodeError, ProtocolError
from isoproto.ids import (
    ABORT,
    ACK,
    EVENT,
    HEARTBEAT,
    HEARTBEAT_HOST,
    HELLO,
    HELLO_HOST,
    HISTORY,
    LOAD_RECIPE_CHUNK,
    NAK,
    PAUSE,
    PROFILE,
    REQUEST_HISTORY,
    RESET_FAULTS,
    RESUME,
    START,
    TELEMETRY,
)
from isoproto.reliable import OUTCOME_ACK, OUTCOME_FAILED, CommandOutcome, CommandSender, SenderBusyError

from .backoff import Backoff
from .board import BoardUnavailable
from .board_streams import BoardStreams
from .checkpoint import Checkpoint
from .config import SerialSection
from .model import (
    BoardInfo,
    BoardUpdate,
    CommandResult,
    DeviceProfile,
    LinkDown,
    SessionCheckpoint,
    SessionNotice,
)
from .recipe import Recipe, recipe_segments
from .serial_link import LinkClosed, LinkOpenError, SerialLink

__all__ = ["SerialSession", "SessionStats"]

log = logging.getLogger("isopress.agent.session")

_U32 = 0xFFFF_FFFF


class _LinkLost(Exception):
    """The link is unusable; the message is the reason (LinkDown.reason)."""


class _Refused(Exception):
    """The board speaks another protocol major (the message is the refusal)."""


class _Resync(Exception):
    """Handshake again on the open link (the board restarted, or a command failed)."""


@dataclass(slots=True)
class SessionStats:
    """Counters of one session (they survive reconnects and board reboots).

    The record counts are refreshed from the streams each time :attr:`SerialSession.stats` is read.
    """

    opens: int = 0  # port opened
    open_failures: int = 0
    handshakes: int = 0
    refusals: int = 0
    link_losses: int = 0
    resyncs: int = 0
    frames: int = 0  # good frames from the board
    undecodable: int = 0  # good CRC, payload not decodable (or of an unknown id)
    samples_live: int = 0
    samples_backfilled: int = 0
    events_live: int = 0
    events_backfilled: int = 0
    samples_lost: int = 0
    events_lost: int = 0
    history_requests: int = 0
    commands_failed: int = 0
    # the frame decoders' and command senders' counters, summed over every link and resync
    crc_errors: int = 0  # frames from the board that failed their CRC (dropped)
    cobs_errors: int = 0
    oversize_drops: int = 0
    commands_sent: int = 0  # first transmissions (history requests included)
    retransmits: int = 0
    command_timeouts: int = 0


class _Channel:
    """The bursts handed to the consumer of ``updates()``, in order.

    ``put`` never waits (the reader callback cannot); past ``maxsize`` bursts ``full``
    says so and the session pauses reading the port until ``on_space`` is called.
    """

    def __init__(self, maxsize: int) -> None:
        self._items: collections.deque[list[BoardUpdate]] = collections.deque()
        self._maxsize = maxsize
        self._getter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: BaseException | None = None
        self.on_space: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self._maxsize

    def put(self, burst: list[BoardUpdate]) -> None:
        if self._ended:
            return
        self._items.append(burst)
        _wake(self._getter)

    def end(self, error: BaseException | None = None) -> None:
        self._ended = True
        self._error = error
        _wake(self._getter)

    async def get(self) -> list[BoardUpdate] | None:
        while not self._items:
            if self._ended:
                if self._error is not None:
                    raise self._error
                return None
            self._getter = asyncio.get_running_loop().create_future()
            await self._getter
        burst = self._items.popleft()
        if self.on_space is not None and len(self._items) < self._maxsize:
            self.on_space()
        return burst


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _now() -> datetime:
    return datetime.now(UTC)


def _profile(values: Sequence[Any]) -> DeviceProfile:
    names = [f.name for f in dataclasses.fields(DeviceProfile)]
    return DeviceProfile(**dict(zip(names, values, strict=True)))


def _result(outcome: CommandOutcome) -> CommandResult:
    reply = outcome.reply
    assert reply is not None
    if outcome.status == OUTCOME_ACK:
        return CommandResult(ok=True, result=reply[1], value=reply[2])
    problems = tuple((int(p[0]), int(p[1])) for p in (reply[4] or ()))
    return CommandResult(ok=False, result=reply[1], reason=reply[2], detail=reply[3], problems=problems)


class SerialSession:
    """The board over a serial link: a :class:`~.board.BoardPort` and :meth:`updates` (see the module)."""

    def __init__(
        self,
        settings: SerialSection,
        *,
        checkpoint: str | None = None,
        checkpoint_interval_s: float = 1.0,
        max_bursts: int = 64,
        read_interval_s: float = 0.0,
        sender_window: int = 4,
        max_tries: int = 8,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.checkpoint_interval_s = checkpoint_interval_s
        if read_interval_s * 2000.0 >= settings.heartbeat_timeout_ms:
            raise ValueError(
                f"read_interval_s ({read_interval_s:g} s) must be under half of "
                f"serial.heartbeat_timeout_ms ({settings.heartbeat_timeout_ms} ms)"
            )
        self.read_interval_s = read_interval_s
        self._stats = SessionStats()
        self._rng = rng or random.Random()
        self._sender_args = {"window": sender_window, "max_tries": max_tries}
        self._sender = CommandSender(next_seq=self._rng.randrange(0x10000), **self._sender_args)
        stored: Checkpoint | None = None
        if checkpoint:
            try:
                stored = Checkpoint.from_text(checkpoint)
            except ValueError as exc:
                log.warning("%s; the session starts at the board's present", exc)
        self._streams = BoardStreams(stored)
        self._channel = _Channel(max_bursts)
        self._link: SerialLink | None = None
        self._decoder = framing.StreamDecoder()
        self._retired = SessionStats()  # the counters of decoders and senders replaced
        self._info: BoardInfo | None = None
        self._nonce = 0
        self._synced = False  # handshake done on the open link: commands may go
        self._board_up = False  # BoardInfo emitted since the last LinkDown
        self._down_reason = "not connected yet"
        self._resync_reason: str | None = None
        self._waiters: dict[int, asyncio.Future[CommandOutcome]] = {}
        self._history_asks: dict[int, tuple[int, int, int]] = {}  # cmd_seq -> (stream, from, count)
        self._last_rx = 0.0
        self._last_checkpoint_text = ""
        self._last_checkpoint_at = -1e9
        self._reported = ""  # the last refusal reported as an agent event
        self._kick: asyncio.Event | None = None  # wakes the serve task (its timers changed)
        self._failure: Exception | None = None
        self._group: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._updates_taken = False

    # -- life cycle --------------------------------------------------------------------
    async def __aenter__(self) -> SerialSession:
        self._loop = asyncio.get_running_loop()
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._runner = self._group.create_task(self._run(), name="serial-session")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._group is not None and self._runner is not None
        self._runner.cancel()
        try:
            # The caller's own exception propagates as it is (the runner never raises).
            await self._group.__aexit__(None, None, None)
        finally:
            self._close_link("the session closed")
            self._channel.end()

    @property
    def board_connected(self) -> bool:
        """True while the handshake is done and the link is up."""
        return self._synced

    @property
    def board_info(self) -> BoardInfo | None:
        """What the board said at the last handshake."""
        return self._info

    @property
    def stats(self) -> SessionStats:
        """The session's counters (link, frames, records, commands)."""
        counts, samples, events = self._streams.counts, self._streams.samples, self._streams.events
        stats = self._stats
        stats.samples_live, stats.samples_backfilled = counts.samples_live, counts.samples_backfilled
        stats.events_live, stats.events_backfilled = counts.events_live, counts.events_backfilled
        stats.samples_lost, stats.events_lost = samples.lost, events.lost
        retired, decoder, sender = self._retired, self._decoder, self._sender
        stats.crc_errors = retired.crc_errors + decoder.crc_errors
        stats.cobs_errors = retired.cobs_errors + decoder.cobs_errors
        stats.oversize_drops = retired.oversize_drops + decoder.oversize_drops
        stats.commands_sent = retired.commands_sent + sender.sent
        stats.retransmits = retired.retransmits + sender.retransmits
        stats.command_timeouts = retired.command_timeouts + sender.timeouts
        return stats

    def _retire_decoder(self) -> None:
        decoder, retired = self._decoder, self._retired
        retired.crc_errors += decoder.crc_errors
        retired.cobs_errors += decoder.cobs_errors
        retired.oversize_drops += decoder.oversize_drops
        self._decoder = framing.StreamDecoder()

    def _retire_sender(self, old: CommandSender) -> None:
        retired = self._retired
        retired.commands_sent += old.sent
        retired.retransmits += old.retransmits
        retired.command_timeouts += old.timeouts

    @property
    def sender(self) -> CommandSender:
        """The command sender (its counters: sent, retransmits, timeouts, RTO)."""
        return self._sender

    @property
    def streams(self) -> BoardStreams:
        """The sample and event streams (their trackers: received, gaps, backfilled, lost)."""
        return self._streams

    @property
    def queued_bursts(self) -> int:
        """Bursts handed out and not yet taken by the consumer of :meth:`updates`."""
        return len(self._channel)

    async def updates(self) -> AsyncIterator[list[BoardUpdate]]:
        """The bursts of board updates, in board order, until the session closes."""
        if self._updates_taken:
            raise RuntimeError("SerialSession.updates() can be iterated once")
        self._updates_taken = True
        while True:
            burst = await self._channel.get()
            if burst is None:
                return
            yield burst

    # -- the link's life ---------------------------------------------------------------
    async def _run(self) -> None:
        # A crash (a bug: every link problem is handled inside) ends updates() with the
        # error, so the consumer (the agent's dispatch task) fails loudly and names it.
        try:
            await self._connect_forever()
        except Exception as exc:
            log.exception("the serial session failed")
            self._channel.end(exc)

    async def _connect_forever(self) -> None:
        r = self.settings.reconnect
        backoff = Backoff(r.initial_s, r.max_s, r.multiplier, rng=self._rng)
        while True:
            link = SerialLink(self.settings.port, baudrate=self.settings.baudrate)
            try:
                await link.open()
            except LinkOpenError as exc:
                self._stats.open_failures += 1
                delay = backoff.next_delay_s()
                self._down_reason = str(exc)
                log.warning("%s; trying again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            self._stats.opens += 1
            self._link = link
            try:
                reason = await self._use(link, backoff)
            except BaseException:
                self._close_link("the session closed")
                raise
            self._close_link(reason)
            delay = backoff.next_delay_s()
            self._down_reason = reason
            if self._board_up:
                self._board_up = False
                self._stats.link_losses += 1
                burst: list[BoardUpdate] = [LinkDown(wall_time=_now(), reason=reason)]
                self._checkpoint_into(burst, asyncio.get_running_loop().time(), force=True)
                self._channel.put(burst)
                log.warning("serial link to the board lost: %s; reconnecting in %.1f s", reason, delay)
            else:
                log.warning("no board session on %s: %s; trying again in %.1f s", link.url, reason, delay)
            await asyncio.sleep(delay)

    async def _use(self, link: SerialLink, backoff: Backoff) -> str:
        """Handshake and serve until the link is lost; returns the reason."""
        self._retire_decoder()
        try:
            link.write(b"\0")
            leftover = await self._handshake(link, "a new link")
            backoff.reset()
            while True:
                try:
                    await self._serve(link, leftover)
                except _Resync as why:
                    self._stats.resyncs += 1
                    log.info("handshaking again: %s", why)
                    leftover = await self._handshake(link, str(why))
        except _Refused as refused:
            self._stats.refusals += 1
            message = str(refused)
            log.error("%s", message)
            self._notice_once("board_refused", message)
            return message
        except _LinkLost as lost:
            return str(lost)
        except LinkClosed as closed:
            return closed.reason

    def _notice_once(self, kind: str, reason: str) -> None:
        """An agent event for a refusal that repeats at every reconnect: once until a good handshake."""
        if reason != self._reported:
            self._reported = reason
            self._channel.put([SessionNotice(wall_time=_now(), kind=kind, reason=reason)])

    def _close_link(self, reason: str) -> None:
        """Forget the link: waiting commands fail (in words), a new sender numbers on."""
        self._synced = False
        link, self._link = self._link, None
        if link is not None:
            link.close(reason)
        old = self._sender
        old.resync()  # in flight: FAILED, may or may not have run
        self._settle_outcomes(lost=f"the serial link was lost before the board answered ({reason})")
        self._retire_sender(old)
        self._sender = CommandSender(next_seq=old.next_seq, **self._sender_args)
        self._history_asks.clear()
        for waiter in self._waiters.values():  # queued, never sent
            if not waiter.done():
                waiter.set_exception(
                    BoardUnavailable(f"the serial link was lost before the command was sent ({reason})")
                )

    # -- handshake ---------------------------------------------------------------------
    async def _handshake(self, link: SerialLink, why: str) -> list[bytes]:
        """HELLO_HOST until HELLO (our nonce) + PROFILE; returns the payloads after PROFILE."""
        loop = asyncio.get_running_loop()
        self._synced = False
        self._resync_reason = None
        nonce = self._rng.randrange(1, 0x10000)  # 0 marks the board's unsolicited HELLO
        self._nonce = nonce
        next_seq = self._sender.resync()  # commands in flight fail: the board may have run them
        self._settle_outcomes(lost=f"the session handshakes again ({why}) before the board answered")
        hello_host = framing.frame(
            codec.encode(HELLO_HOST, (PROTOCOL_MAJOR, PROTOCOL_MINOR, nonce, next_seq))
        )
        start = loop.time()
        deadline = start + self.settings.heartbeat_timeout_ms / 1000.0
        period = self.settings.heartbeat_period_ms / 1000.0
        resend_at = start
        hello: dict[str, Any] | None = None
        while True:
            now = loop.time()
            if now >= resend_at:
                link.write(hello_host)
                resend_at = now + period
            if now >= deadline:
                what = "HELLO and PROFILE" if hello is None else "PROFILE after HELLO"
                raise _LinkLost(
                    f"no {what} from the board within serial.heartbeat_timeout_ms = "
                    f"{self.settings.heartbeat_timeout_ms} ms of HELLO_HOST (is the firmware running?)"
                )
            data = await link.read(min(deadline, resend_at) - now)
            if not data:
                continue
            payloads = self._decoder.feed(data)
            arrived = loop.time()
            for i, payload in enumerate(payloads):
                self._stats.frames += 1
                msg_id = payload[0]
                if msg_id == HELLO:
                    problem = version.hello_problem(payload)
                    if problem:
                        raise _Refused(problem)
                    try:
                        _name, fields = named.decode_dict(payload)
                    except ProtocolError:
                        self._stats.undecodable += 1
                        continue
                    if fields["session_nonce"] == nonce:
                        hello = fields
                    elif fields["session_nonce"] == 0:
                        resend_at = arrived  # the board just booted: it may have missed ours
                elif msg_id == PROFILE and hello is not None:
                    try:
                        _pid, profile_values = codec.decode(payload)
                    except ProtocolError:
                        self._stats.undecodable += 1
                        continue
                    self._board_ready(hello, profile_values, arrived)
                    return payloads[i + 1 :]
                # anything else before the answer is dropped: a gap the trackers will see

    def _board_ready(self, hello: dict[str, Any], profile_values: tuple[Any, ...], now: float) -> None:
        computed = wire_recipe.profile_hash(profile_values)
        if computed != hello["profile_hash"]:
            reason = (
                f"profile_mismatch: HELLO says the active profile hashes to {hello['profile_hash']:08x}, "
                f"the PROFILE received hashes to {computed:08x} (firmware bug or damaged frame)"
            )
            self._notice_once("profile_mismatch", reason)
            raise _LinkLost(reason)
        self._stats.handshakes += 1
        self._reported = ""
        info = BoardInfo(
            firmware_version=hello["firmware"],
            protocol_major=hello["major"],
            protocol_minor=hello["minor"],
            board_id=hello["board_id"],
            board_kind=hello["board_kind"],
            profile_hash=hello["profile_hash"],
            calibration_id=hello["cal_id"],
            calibration_date=hello["cal_date"],
            boot_count=hello["boot_count"],
            reset_cause=hello["reset_cause"],
            profile=_profile(profile_values),
            latest_sample_seq=hello["latest_sample_seq"],
            history_capacity=hello["history_capacity"],
            telemetry_period_ms=hello["telemetry_period_ms"],
        )
        burst: list[BoardUpdate] = []
        first = not self._streams.started
        new_boot = self._streams.start(
            board_id=info.board_id,
            boot_count=info.boot_count,
            reset_cause_name=info.reset_cause_name,
            latest_sample=info.latest_sample_seq,
            latest_event=hello["latest_event_seq"],
            history_capacity=info.history_capacity,
            out=burst,
        )
        if new_boot and not first:
            log.warning(
                "the board rebooted: boot %d (reset cause %s)", info.boot_count, info.reset_cause_name
            )
        if not self._board_up or info != self._info:
            burst.insert(0, info)
        self._info = info
        self._board_up = True
        self._synced = True
        self._last_rx = now
        self._streams.report_losses(burst)
        self._checkpoint_into(burst, now, force=new_boot)
        log.info(
            "board %s (%s, firmware %s, protocol %s) connected on %s: boot %d, newest sample %d",
            info.board_id,
            info.board_kind,
            info.firmware_version,
            info.protocol_version,
            self.settings.port,
            info.boot_count,
            info.latest_sample_seq,
        )
        self._channel.put(burst)

    # -- serving -----------------------------------------------------------------------
    async def _serve(self, link: SerialLink, leftover: list[bytes]) -> None:
        """Frames are handled in the link's reader callback (:meth:`_on_chunk`); this task
        only wakes for its timers (heartbeat, retransmission, checkpoint, history retry,
        liveness) and when the callback or a command kicks it."""
        loop = asyncio.get_running_loop()
        period = self.settings.heartbeat_period_ms / 1000.0
        timeout = self.settings.heartbeat_timeout_ms / 1000.0
        now = loop.time()
        next_heartbeat = now + period  # HELLO_HOST counted as one
        next_checkpoint = now + self.checkpoint_interval_s
        kick = self._kick = asyncio.Event()
        link.on_close = lambda _reason: kick.set()
        self._channel.on_space = link.resume_reading
        if leftover:
            self._on_frames(leftover, now)
        link.set_receiver(self._on_chunk)
        self._pace_reads()
        try:
            while True:
                if link.closed_reason is not None:
                    raise LinkClosed(link.closed_reason)
                if self._failure is not None:
                    raise self._failure
                if self._resync_reason is not None:
                    raise _Resync(self._resync_reason)
                now = loop.time()
                if now >= next_heartbeat:
                    link.write(framing.frame(codec.encode(HEARTBEAT_HOST, (int(now * 1000) & _U32,))))
                    next_heartbeat = max(next_heartbeat + period, now + period / 2)
                deadline_ms = self._sender.next_deadline()
                if deadline_ms >= 0 and now * 1000 >= deadline_ms:
                    self._pump(now)
                if self._sender.needs_resync:
                    raise _Resync("a command got no reply after every retry (the board waits for it)")
                if now >= next_checkpoint:  # also the history retry timer when nothing arrives
                    next_checkpoint = now + self.checkpoint_interval_s
                    self._request_history(now)
                    burst: list[BoardUpdate] = []
                    self._checkpoint_into(burst, now)
                    if burst:
                        self._emit(burst)
                if now - self._last_rx >= timeout:
                    raise _LinkLost(
                        f"nothing from the board for {(now - self._last_rx) * 1000:.0f} ms "
                        f"(serial.heartbeat_timeout_ms = {self.settings.heartbeat_timeout_ms})"
                    )
                wake = min(next_heartbeat, self._last_rx + timeout, next_checkpoint)
                deadline_ms = self._sender.next_deadline()
                if deadline_ms >= 0:
                    wake = min(wake, deadline_ms / 1000.0)
                kick.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, wake - loop.time())):
                        await kick.wait()
        finally:
            link.set_receiver(None)
            link.set_read_interval(0.0)
            link.on_close = None
            self._channel.on_space = None
            self._kick = None
            link.resume_reading()  # a handshake again reads whatever the channel holds

    def _on_chunk(self, data: bytes) -> None:
        """The link's reader callback: decode, follow, emit; never raises into the loop."""
        try:
            payloads = self._decoder.feed(data)
            if payloads:
                assert self._loop is not None
                self._on_frames(payloads, self._loop.time())
        except Exception as exc:  # a bug: the serve task raises it and the session ends loudly
            self._failure = exc
            self._wake_serve()

    def _on_frames(self, payloads: Sequence[bytes], now: float) -> None:
        burst = self._on_payloads(payloads, now)
        if burst:
            self._emit(burst)
        if self._resync_reason is not None or self._sender.needs_resync:
            self._wake_serve()

    def _emit(self, burst: list[BoardUpdate]) -> None:
        """Hand a burst to the consumer; past the channel's bound, stop reading until it catches up."""
        self._channel.put(burst)
        if self._channel.full and self._link is not None:
            self._link.pause_reading()

    def _wake_serve(self) -> None:
        if self._kick is not None:
            self._kick.set()

    def _on_payloads(self, payloads: Sequence[bytes], now: float) -> list[BoardUpdate]:
        """Every frame decoded at once -> one burst (records in board order, then notices)."""
        # Nothing in here may raise past a record already counted by a tracker: that record
        # would be lost. Undecodable frames are counted and skipped.
        self._last_rx = now
        streams = self._streams
        burst: list[BoardUpdate] = []
        replies = False
        for payload in payloads:
            self._stats.frames += 1
            msg_id = payload[0]
            try:
                if msg_id == TELEMETRY:
                    streams.on_telemetry(payload, now, burst)
                elif msg_id == EVENT:
                    streams.on_event(payload, now, burst)
                elif msg_id == HEARTBEAT:
                    streams.on_heartbeat(payload, now)
                elif msg_id == HISTORY:
                    streams.on_history(payload, now, burst)
                elif msg_id in (ACK, NAK):
                    _mid, values = codec.decode(payload)
                    self._sender.on_reply(msg_id, values, int(now * 1000))
                    replies = True
                elif msg_id == HELLO:
                    self._on_hello(payload)
                elif msg_id == PROFILE:
                    self._on_profile(payload, burst)
                else:
                    self._stats.undecodable += 1  # a host->board id, or a newer minor's message
            except (ProtocolError, ValueError) as exc:
                self._stats.undecodable += 1
                log.debug("undecodable frame 0x%02x: %s", msg_id, exc)
        if replies:
            self._pump(now)
        self._request_history(now)
        streams.report_losses(burst)
        self._checkpoint_into(burst, now)
        return burst

    def _on_hello(self, payload: bytes) -> None:
        if version.hello_problem(payload):
            self._resync_reason = "the board sent a HELLO of another protocol version"
            return
        _name, fields = named.decode_dict(payload)
        if fields["session_nonce"] != self._nonce:  # ours again answers a repeated HELLO_HOST
            self._resync_reason = "the board sent a HELLO the host did not ask for (it restarted)"

    def _on_profile(self, payload: bytes, burst: list[BoardUpdate]) -> None:
        _mid, values = codec.decode(payload)
        info = self._info
        profile = _profile(values)
        if info is None or profile == info.profile:
            return
        log.info("the board's device profile changed: %s", profile)
        self._info = dataclasses.replace(info, profile=profile, profile_hash=wire_recipe.profile_hash(values))
        burst.append(self._info)

    # -- commands ------------------------------------------------------------------------
    def _pump(self, now: float) -> None:
        """Write what the sender has to send now, and settle the outcomes it decided."""
        link = self._link
        frames = self._sender.poll(int(now * 1000))
        if link is not None:
            try:
                for frame in frames:
                    link.write(frame)
            except LinkClosed:
                pass  # the serve task sees the link closed
        if frames:
            self._wake_serve()  # a retransmission deadline may now come before its timers
        self._settle_outcomes()
        self._pace_reads()

    def _pace_reads(self) -> None:
        """Read the port once per ``read_interval_s``, but at once while a reply is awaited.

        Records only wait in the kernel's buffer (they are batched for MQTT anyway); a
        command's ACK should not, nor should the HISTORY a request asked for.
        """
        link = self._link
        if link is not None and self.read_interval_s > 0.0:
            awaiting = self._sender.next_deadline() >= 0
            link.set_read_interval(0.0 if awaiting else self.read_interval_s)

    def _settle_outcomes(self, *, lost: str = "") -> None:
        """Hand each decided outcome to its waiter (or the history request it was).

        ``lost``: the words for commands failed because the link went or restarted.
        """
        for outcome in self._sender.take_outcomes():
            ask = self._history_asks.pop(outcome.seq, None)
            if ask is not None:
                self._history_outcome(ask, outcome)
                continue
            if outcome.status == OUTCOME_FAILED:
                self._stats.commands_failed += 1
            waiter = self._waiters.get(outcome.seq)
            if waiter is None or waiter.done():
                continue
            if outcome.status == OUTCOME_FAILED and lost:
                waiter.set_exception(
                    BoardUnavailable(f"{lost}; the command may or may not have been executed")
                )
            else:
                waiter.set_result(outcome)

    async def _command(self, what: str, msg_id: int, values: tuple[Any, ...]) -> CommandOutcome:
        seq = self._submit(what, msg_id, values)
        return await self._outcome(what, seq)

    def _submit(self, what: str, msg_id: int, values: tuple[Any, ...]) -> int:
        if not self._synced or self._link is None:
            raise BoardUnavailable(f"{what}: the board is not connected ({self._down_reason})")
        try:
            seq = self._sender.submit(msg_id, values)
        except SenderBusyError as exc:
            raise BoardUnavailable(f"{what}: {exc}") from None
        except EncodeError as exc:
            raise BoardUnavailable(f"{what} cannot be sent to the board: {exc}") from None
        assert self._loop is not None
        self._waiters[seq] = self._loop.create_future()
        return seq

    async def _outcome(self, what: str, seq: int) -> CommandOutcome:
        waiter = self._waiters[seq]
        assert self._loop is not None
        self._pump(self._loop.time())
        try:
            outcome = await waiter
        except BoardUnavailable as exc:
            raise BoardUnavailable(f"{what}: {exc}") from None
        finally:
            self._waiters.pop(seq, None)
        if outcome.status == OUTCOME_FAILED:
            raise BoardUnavailable(
                f"{what}: no reply from the board ({outcome.reason}); it may or may not have been "
                "executed, the session handshakes again"
            )
        return outcome

    async def load_recipe(self, recipe: Recipe, recipe_id: int) -> CommandResult:
        """Send the recipe in LOAD_RECIPE_CHUNKs; the first NAK, or the last chunk's ACK."""
        chunks = wire_recipe.recipe_chunks(recipe_segments(recipe))
        if chunks and chunks[0][0] != recipe_id:
            raise BoardUnavailable(
                f"load_recipe: recipe id {recipe_id:08x} is not the protocol's {chunks[0][0]:08x} "
                "for these segments"
            )
        seqs: list[int] = []
        try:
            for chunk in chunks:
                seqs.append(self._submit("load_recipe", LOAD_RECIPE_CHUNK, tuple(chunk)))
            result = CommandResult(ok=True)
            for seq in seqs:
                result = _result(await self._outcome("load_recipe", seq))
                if not result.ok:
                    break
            return result
        finally:
            for seq in seqs:  # chunks not awaited (after a NAK or an error): forget their outcome
                waiter = self._waiters.pop(seq, None)
                if waiter is not None and waiter.done() and not waiter.cancelled():
                    waiter.exception()

    async def start(self, recipe_id: int) -> CommandResult:
        """START the loaded recipe; the ACK's value is the board's run id."""
        return _result(await self._command("start", START, (recipe_id,)))

    async def pause(self) -> CommandResult:
        """PAUSE: hold the current pressure."""
        return _result(await self._command("pause", PAUSE, ()))

    async def resume(self) -> CommandResult:
        """RESUME a paused run."""
        return _result(await self._command("resume", RESUME, ()))

    async def abort(self) -> CommandResult:
        """ABORT the run (controlled depressurisation)."""
        return _result(await self._command("abort", ABORT, ()))

    async def reset_faults(self) -> CommandResult:
        """RESET_FAULTS whose cause is gone."""
        return _result(await self._command("reset_faults", RESET_FAULTS, ()))

    # -- history -------------------------------------------------------------------------
    def _request_history(self, now: float) -> None:
        if not self._synced or self._link is None:
            return
        sent = False
        for stream, from_seq, count in self._streams.requests(int(now * 1000)):
            try:
                seq = self._sender.submit(REQUEST_HISTORY, (stream, from_seq, count))
            except SenderBusyError:
                self._streams.request_failed(stream, from_seq)
                continue
            self._history_asks[seq] = (stream, from_seq, count)
            self._stats.history_requests += 1
            sent = True
        if sent:
            self._pump(now)

    def _history_outcome(self, ask: tuple[int, int, int], outcome: CommandOutcome) -> None:
        stream, from_seq, count = ask
        if outcome.status == OUTCOME_ACK:
            return  # HISTORY chunks follow
        if outcome.status == OUTCOME_FAILED or outcome.reply is None:
            self._streams.request_failed(stream, from_seq)
            return
        reason = outcome.reply[2]
        assert self._loop is not None
        self._streams.request_refused(stream, from_seq, count, reason, int(self._loop.time() * 1000))
        if reason not in (codes.R_BUSY, codes.R_HISTORY_UNAVAILABLE):
            log.warning(
                "REQUEST_HISTORY(stream %d, from %d, %d) refused: reason %d", stream, from_seq, count, reason
            )

    # -- checkpoint ------------------------------------------------------------------------
    def _checkpoint_into(self, burst: list[BoardUpdate], now: float, *, force: bool = False) -> None:
        """Append a SessionCheckpoint when it changed and one is due (at most one per interval)."""
        if not force and now - self._last_checkpoint_at < self.checkpoint_interval_s:
            return
        position = self._streams.position()
        if position is None:
            return
        text = position.to_text()
        if text != self._last_checkpoint_text:
            self._last_checkpoint_text = text
            self._last_checkpoint_at = now
            burst.append(SessionCheckpoint(text))
