"""TEST PEER — a scripted board end of the serial link, for the session tests. NOT the firmware.

It is built from isoproto's own board-side pieces (FrameDecoder, FrameWriter,
CommandReceiver, RecordRing/HistoryReply, RecipeAssembler) and follows the board's link
contract (docs/protocol.md section 4, plus: a lone 0x00, HELLO and PROFILE unsolicited at
boot; commands dropped until a HELLO_HOST of its major; every HELLO_HOST answered HELLO +
PROFILE; HEARTBEAT every 250 ms; every sample live as TELEMETRY, every event as EVENT;
REQUEST_HISTORY answered ACK + paced HISTORY chunks, at most 2 pending, a third NAKed
R_BUSY). Its "press" is a toy: the pressure follows the recipe's setpoint exactly. What
it is for is the loss patterns a test scripts exactly: live samples or events skipped
(the board's TX full), commands or replies lost on the wire, a stall, garbage, a
disconnect, a reboot with a new boot_count, another protocol major.

It speaks over a ``socket://`` server (reconnectable) or a pseudo-terminal pair (the
session opens ``/dev/pts/N`` as it would the real board's device).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections import deque
from dataclasses import dataclass, field

from isoproto import PROTOCOL_MAJOR, PROTOCOL_MINOR, codec, codes, framing, samples
from isoproto.errors import DecodeError, UnknownMessageError
from isoproto.history import HistoryReply, RecordRing
from isoproto.ids import (
    ABORT,
    HEARTBEAT_HOST,
    HELLO,
    HELLO_HOST,
    LOAD_RECIPE_CHUNK,
    PAUSE,
    PROFILE,
    REQUEST_HISTORY,
    RESET_FAULTS,
    RESUME,
    START,
    STREAM_EVENTS,
    STREAM_SAMPLES,
)
from isoproto.receiver import DUPLICATE, EXECUTE, CommandReceiver, command_seq
from isoproto.recipe import RecipeAssembler, profile_hash
from isoproto.writer import FrameWriter

DEFAULT_PROFILE = (400.0, 420.0, 2.0, 1.0, 3600.0, 10.0, 5000, codes.HOST_LOST_DEPRESSURISE)
_RUNNING = (codes.ST_PRESSURISING, codes.ST_HOLDING, codes.ST_DEPRESSURISING)


@dataclass
class Script:
    """What the peer does wrong, on purpose (each field a test may set at any time)."""

    skip_live_samples: set[int] = field(default_factory=set)  # seqs not sent live (TX full)
    skip_live_events: set[int] = field(default_factory=set)
    drop_commands: int = 0  # the next N command frames from the host are lost on the wire
    drop_replies: int = 0  # the next N ACK/NAK frames are lost on the wire
    drop_history_chunks: int = 0  # the next N HISTORY chunks are lost on the wire
    muted: bool = False  # sends nothing at all (a stalled board)
    deaf: bool = False  # reads nothing (ignores the host)
    answer_hello: bool = True
    profile_hash_offset: int = 0  # HELLO's profile_hash off by this (a firmware bug)
    busy_beyond: int = 2  # REQUEST_HISTORY pending beyond this: NAK R_BUSY


class BoardPeer:
    """The scripted test board (see the module docstring)."""

    def __init__(
        self,
        *,
        transport: str = "socket",
        boot_count: int = 1,
        board_id: str = "PEER0001",
        period_ms: int = 10,
        heartbeat_ms: int = 250,
        history_samples: int = 1200,
        history_events: int = 200,
        major: int = PROTOCOL_MAJOR,
        reset_cause: int = codes.RESET_POWER_ON,
    ) -> None:
        self.transport = transport
        self.boot_count = boot_count
        self.board_id = board_id
        self.period_ms = period_ms
        self.heartbeat_ms = heartbeat_ms
        self.history_samples = history_samples
        self.history_events = history_events
        self.major = major
        self.reset_cause = reset_cause
        self.profile = DEFAULT_PROFILE
        self.script = Script()
        self.executed: list[tuple[int, int]] = []  # (msg_id, cmd_seq) of every command run
        self.hello_hosts: list[tuple[int, int, int, int]] = []  # (major, minor, nonce, next_cmd_seq)
        self.host_heartbeats = 0
        self.history_requests: list[tuple[int, int, int]] = []
        self.connections = 0
        self.garbage_frames = 0
        self._writer_out: asyncio.StreamWriter | None = None
        self._server: asyncio.Server | None = None
        self._master = -1
        self._slave = -1
        self._url = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._w = FrameWriter()
        self._pty_decoder = framing.FrameDecoder()
        self._pending_reply: HistoryReply | None = None
        self._boot_at = 0.0
        self._boot()

    # -- life cycle ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The pyserial URL the session opens."""
        return self._url

    async def start(self) -> BoardPeer:
        loop = asyncio.get_running_loop()
        if self.transport == "socket":
            self._server = await asyncio.start_server(self._on_connection, "127.0.0.1", 0)
            port = self._server.sockets[0].getsockname()[1]
            self._url = f"socket://127.0.0.1:{port}"
        else:
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)
            self._url = os.ttyname(self._slave)
            loop.add_reader(self._master, self._on_pty_readable)
            self.connections = 1
        self._boot_at = loop.time()
        self._tasks = [
            asyncio.create_task(self._tick_forever(), name="peer-tick"),
            asyncio.create_task(self._heartbeat_forever(), name="peer-heartbeat"),
        ]
        self._announce()
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.disconnect()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._slave >= 0:
            os.close(self._slave)
            self._slave = -1

    async def __aenter__(self) -> BoardPeer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def disconnect(self) -> None:
        """Drop the line (the board keeps running): socket closed, or the pty's master closed."""
        if self._writer_out is not None:
            self._writer_out.close()
            self._writer_out = None
        if self._master >= 0:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            self._master = -1

    def reboot(self, reset_cause: int = codes.RESET_WATCHDOG) -> None:
        """A board reset: new boot_count, sequences from 0, state idle, the host must handshake."""
        self.boot_count += 1
        self.reset_cause = reset_cause
        self._boot()
        self._boot_at = asyncio.get_running_loop().time()
        self._announce()

    def inject(self, data: bytes) -> None:
        """Raw bytes onto the line (garbage, damaged frames)."""
        self._write(data, force=True)

    # -- board state -----------------------------------------------------------------------
    def _boot(self) -> None:
        self.samples = RecordRing(self.history_samples, samples.SAMPLE_BODY_SIZE)
        self.events = RecordRing(self.history_events, samples.EVENT_BODY_SIZE)
        self.sample_seq = -1
        self.event_seq = -1
        self.receiver = CommandReceiver()
        self.assembler = RecipeAssembler()
        self.state = codes.ST_BOOT
        self.recipe: list[tuple[int, float, float, float]] = []
        self.recipe_id = 0
        self.run_id = 0
        self.segment = 0
        self.segment_elapsed_s = 0.0
        self.setpoint_mpa = 0.0
        self.paused_from = codes.ST_IDLE
        self._replies: deque[HistoryReply] = deque()
        self._event(codes.EV_BOOT, self.reset_cause, self.boot_count)

    @property
    def board_ms(self) -> int:
        return int((asyncio.get_running_loop().time() - self._boot_at) * 1000) & 0xFFFFFFFF

    @property
    def latest_sample_seq(self) -> int:
        return max(self.sample_seq, 0)

    def _announce(self) -> None:
        self._write(b"\0")
        self._send_hello(0)

    def _send_hello(self, nonce: int) -> None:
        values = (
            self.major,
            PROTOCOL_MINOR,
            "peer-1.0",
            self.board_id,
            "peer",
            (profile_hash(self.profile) + self.script.profile_hash_offset) & 0xFFFFFFFF,
            "peer-cal",
            "2026-11-25",
            self.boot_count,
            self.reset_cause,
            self.latest_sample_seq,
            self.history_samples,
            self.period_ms,
            nonce,
            max(self.event_seq, 0),
        )
        self._write(framing.frame(codec.encode(HELLO, values)))
        self._write(framing.frame(codec.encode(PROFILE, self.profile)))

    def _event(self, kind: int, code: int, detail: int) -> None:
        self.event_seq = (self.event_seq + 1) & 0xFFFFFFFF
        seq = self.event_seq
        off = self.events.append(seq)
        now = self.board_ms if self._boot_at else 0
        samples.pack_event_into(
            self.events.buf, off, seq, self.latest_sample_seq, now, kind, code, detail, self.setpoint_mpa
        )
        if seq not in self.script.skip_live_events:
            n = self._w.event_from(self.events.buf, off)
            self._write(bytes(self._w.frame[:n]))

    def _set_state(self, state: int) -> None:
        if state != self.state:
            previous, self.state = self.state, state
            self._event(codes.EV_STATE_CHANGED, state, previous)

    def _sample(self) -> None:
        self.sample_seq = (self.sample_seq + 1) & 0xFFFFFFFF
        seq = self.sample_seq
        off = self.samples.append(seq)
        flags = codes.FLAG_CLOSURE_LOCKED | codes.FLAG_ESTOP_OK | codes.FLAG_GLOVEBOX_OK | codes.FLAG_HOST_OK
        if self.state in (*_RUNNING, codes.ST_PAUSED):
            flags |= codes.FLAG_DUMP_CLOSED
        samples.pack_sample_into(
            self.samples.buf,
            off,
            seq,
            self.board_ms,
            self.setpoint_mpa,
            self.setpoint_mpa,
            30000 if self.state == codes.ST_PRESSURISING else 0,
            20000 if self.state == codes.ST_DEPRESSURISING else 0,
            0,
            self.state,
            flags,
            self.segment,
            self.run_id,
        )
        if seq not in self.script.skip_live_samples:
            n = self._w.telemetry_from(self.samples.buf, off)
            self._write(bytes(self._w.frame[:n]))

    def _advance(self, dt_s: float) -> None:
        if self.state == codes.ST_BOOT:
            self._set_state(codes.ST_IDLE)
        if self.state not in _RUNNING:
            return
        kind, target, rate, duration = self.recipe[self.segment]
        self.segment_elapsed_s += dt_s
        done = False
        if kind == codes.SEG_HOLD:
            self._set_state(codes.ST_HOLDING)
            done = self.segment_elapsed_s >= duration
        else:
            up = target >= self.setpoint_mpa
            self._set_state(codes.ST_PRESSURISING if up else codes.ST_DEPRESSURISING)
            step = rate * dt_s
            if abs(target - self.setpoint_mpa) <= step:
                self.setpoint_mpa = target
                done = True
            else:
                self.setpoint_mpa += step if up else -step
        if done:
            if self.segment + 1 >= len(self.recipe):
                self._set_state(codes.ST_COMPLETE)
                self._event(codes.EV_RUN_ENDED, codes.ST_COMPLETE, self.run_id)
            else:
                self.segment += 1
                self.segment_elapsed_s = 0.0
                self._event(codes.EV_SEGMENT_CHANGED, self.segment, 0)

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        period_s = self.period_ms / 1000.0
        next_at = loop.time()
        while True:
            self._advance(period_s)
            self._sample()
            self._send_history_chunk()
            next_at += period_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_ms / 1000.0)
            n = self._w.heartbeat(self.board_ms, self.state, self.latest_sample_seq, max(self.event_seq, 0))
            self._write(bytes(self._w.frame[:n]))

    def _send_history_chunk(self) -> None:
        if not self._replies:
            return
        reply = self._replies[0]
        n = self._w.history_chunk(reply)
        if not reply.active:
            self._replies.popleft()
        if n:
            if self.script.drop_history_chunks > 0:
                self.script.drop_history_chunks -= 1
            else:
                self._write(bytes(self._w.frame[:n]))

    # -- the line --------------------------------------------------------------------------
    def _write(self, data: bytes, *, force: bool = False) -> None:
        if self.script.muted and not force:
            return
        if self._writer_out is not None:
            self._writer_out.write(data)
        elif self._master >= 0:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._master, data)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer_out is not None:
            self._writer_out.close()
        self._writer_out = writer
        self.connections += 1
        decoder = framing.FrameDecoder()
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                self._on_bytes(decoder, data)
        except ConnectionError:
            pass
        finally:
            if self._writer_out is writer:
                self._writer_out = None
            writer.close()

    def _on_pty_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError:  # no slave side open (EIO): nothing to read
            return
        self._on_bytes(self._pty_decoder, data)

    def _on_bytes(self, decoder: framing.FrameDecoder, data: bytes) -> None:
        if self.script.deaf:
            return
        for payload in decoder.feed(data):
            self._on_payload(payload)

    def _on_payload(self, payload: bytes) -> None:
        msg_id = payload[0]
        if msg_id == HELLO_HOST:
            _mid, (major, minor, nonce, next_seq) = codec.decode(payload)
            self.hello_hosts.append((major, minor, nonce, next_seq))
            if major == self.major:
                self.receiver.reset(next_seq)
                self.host_heartbeats += 1
            if self.script.answer_hello:
                self._send_hello(nonce)
            return
        if msg_id == HEARTBEAT_HOST:
            self.host_heartbeats += 1
            return
        seq = command_seq(payload, len(payload))
        if seq < 0:
            self.garbage_frames += 1
            return
        if self.script.drop_commands > 0:
            self.script.drop_commands -= 1
            return
        verdict = self.receiver.accept(seq)
        if verdict == EXECUTE:
            n = self._execute(seq, payload)
            frame = bytes(self._w.frame[:n])
            self.receiver.executed(seq, frame, n)
            self._reply(frame)
            if msg_id == REQUEST_HISTORY and self._pending_reply is not None:
                self._replies.append(self._pending_reply)
                self._pending_reply = None
        elif verdict == DUPLICATE:
            buf, off, n = self.receiver.reply_frame(seq)
            self._reply(bytes(buf[off : off + n]))

    def _reply(self, frame: bytes) -> None:
        if self.script.drop_replies > 0:
            self.script.drop_replies -= 1
            return
        self._write(frame)

    def _execute(self, seq: int, payload: bytes) -> int:
        """Run one command; returns the length of the ACK/NAK built in the writer's frame."""
        w = self._w
        try:
            msg_id, values = codec.decode(payload)
        except UnknownMessageError:
            return w.nak(seq, codes.RESULT_ERROR, codes.R_UNKNOWN_COMMAND)
        except DecodeError:
            return w.nak(seq, codes.RESULT_ERROR, codes.R_MALFORMED)
        self.executed.append((msg_id, seq))
        idle_like = (codes.ST_IDLE, codes.ST_READY, codes.ST_COMPLETE)
        if msg_id == LOAD_RECIPE_CHUNK:
            _s, rid, total, first, segments = values
            if self.state not in idle_like:
                return w.nak(seq, codes.RESULT_REJECTED, codes.R_BAD_STATE)
            reason = self.assembler.add(rid, total, first, segments)
            if reason != codes.R_NONE:
                return w.nak(seq, codes.RESULT_REJECTED, reason)
            if not self.assembler.complete:
                return w.ack(seq, codes.RESULT_OK, 0)
            problems = [
                (codes.R_TARGET_TOO_HIGH, i)
                for i, s in enumerate(self.assembler.segments)
                if s[0] == codes.SEG_RAMP and s[1] > self.profile[0]
            ]
            if problems:
                self.assembler.clear()
                return w.nak(seq, codes.RESULT_REJECTED, problems[0][0], problems[0][1], problems)
            self.recipe = list(self.assembler.segments)
            self.recipe_id = rid
            self._set_state(codes.ST_READY)
            self._event(codes.EV_RECIPE_LOADED, 0, rid - (1 << 32) if rid >= 1 << 31 else rid)
            return w.ack(seq, codes.RESULT_OK, rid)
        if msg_id == START:
            if not self.recipe:
                return w.nak(seq, codes.RESULT_REJECTED, codes.R_NO_RECIPE)
            if values[1] != self.recipe_id:
                return w.nak(seq, codes.RESULT_REJECTED, codes.R_RECIPE_MISMATCH)
            if self.state not in (codes.ST_READY, codes.ST_COMPLETE):
                return w.nak(seq, codes.RESULT_REJECTED, codes.R_BAD_STATE)
            self.run_id += 1
            self.segment = 0
            self.segment_elapsed_s = 0.0
            self._event(codes.EV_RUN_STARTED, 0, self.run_id)
            self._set_state(codes.ST_PRESSURISING)
            return w.ack(seq, codes.RESULT_OK, self.run_id)
        if msg_id == PAUSE:
            if self.state not in _RUNNING:
                return w.nak(seq, codes.RESULT_REJECTED, codes.R_BAD_STATE)
            self.paused_from = self.state
            self._set_state(codes.ST_PAUSED)
            return w.ack(seq, codes.RESULT_OK)
        if msg_id == RESUME:
            if self.state != codes.ST_PAUSED:
                return w.nak(seq, codes.RESULT_REJECTED, codes.R_BAD_STATE)
            self._set_state(self.paused_from)
            return w.ack(seq, codes.RESULT_OK)
        if msg_id == ABORT:
            if self.state not in (*_RUNNING, codes.ST_PAUSED):
                return w.nak(seq, codes.RESULT_REJECTED, codes.R_BAD_STATE)
            self.setpoint_mpa = 0.0
            self._set_state(codes.ST_IDLE)
            self._event(codes.EV_RUN_ENDED, codes.ST_IDLE, self.run_id)
            return w.ack(seq, codes.RESULT_OK)
        if msg_id == RESET_FAULTS:
            return w.nak(seq, codes.RESULT_REJECTED, codes.R_BAD_STATE)
        if msg_id == REQUEST_HISTORY:
            _s, stream, from_seq, count = values
            self.history_requests.append((stream, from_seq, count))
            if len(self._replies) >= self.script.busy_beyond:
                return w.nak(seq, codes.RESULT_REJECTED, codes.R_BUSY)
            if stream not in (STREAM_SAMPLES, STREAM_EVENTS):
                return w.nak(seq, codes.RESULT_REJECTED, codes.R_VALUE_OUT_OF_RANGE)
            reply = HistoryReply(self.samples if stream == STREAM_SAMPLES else self.events, stream)
            reply.start(from_seq, count)
            self._pending_reply = reply  # queued after the ACK is written: chunks follow it
            return w.ack(seq, codes.RESULT_OK)
        return w.nak(seq, codes.RESULT_ERROR, codes.R_UNKNOWN_COMMAND)


def executed_names(peer: BoardPeer) -> list[str]:
    """The commands the peer ran, by name (for exactly-once assertions)."""
    from isoproto.catalog import message_name

    return [message_name(msg_id) for msg_id, _seq in peer.executed]


__all__ = ["DEFAULT_PROFILE", "BoardPeer", "Script", "executed_names"]
