"""The board's two numbered record streams as the host follows them: samples and events.

One :class:`isoproto.reliable.SequenceTracker` per stream finds the gaps (a live record
skipped because the board's TX was full, a link outage, an agent restart, a record at the
end of a stream that only a HEARTBEAT reveals) and says what to ask for again
(``REQUEST_HISTORY``); HISTORY chunks fill them. Live and backfilled records become
:class:`~.model.Sample` / :class:`~.model.BoardEvent` with their wall time from the
:class:`~.board_clock.BoardClock`. What the board no longer holds is counted lost and
reported (:class:`~.model.SessionNotice` ``records_lost``). :meth:`BoardStreams.position`
is what a :class:`~.checkpoint.Checkpoint` stores.

Where tracking starts at a handshake (:meth:`BoardStreams.start`):

- the stored checkpoint names this boot of this board: where it left off (everything
  after it is asked for: an agent killed mid-run loses no sample the board still holds);
- a new boot of a board already followed (or named by the checkpoint): from seq 0, the
  boot's first record (what the board no longer holds is counted lost);
- otherwise (a new spool, another board): at the board's present.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from isoproto import codec, codes, samples
from isoproto.errors import ProtocolError
from isoproto.ids import STREAM_EVENTS, STREAM_SAMPLES
from isoproto.reliable import SequenceTracker

from .board_clock import BoardClock
from .checkpoint import Checkpoint, StreamPosition
from .model import BoardEvent, BoardUpdate, Sample, SessionNotice

__all__ = ["BoardStreams", "StreamCounts"]

_U32 = 0xFFFF_FFFF
_BEFORE_ZERO = _U32  # a tracker at "one before seq 0": the next record, 0, is the first of a boot
_SAMPLES_PER_REQUEST = 64  # 8 HISTORY chunks of 8 samples
_EVENTS_PER_REQUEST = 40  # 4 chunks of 10 events
# A request whose last chunk has not come this long after it was sent is asked again. The
# board sends one chunk per 10 ms tick (a 64-sample reply takes ~80 ms); what bounds the
# retry from below is only not asking twice for a reply still on its way. It was 3 s: on a
# damaged cable each lost last chunk (~1 reply in 5 at 1e-3 towards the host) then cost 3 s,
# and a few in a row can take a gap past the board's ~10 s of history (one sample was lost
# so in one run of tests/faults' 1e-2 case on a loaded machine).
_HISTORY_RETRY_MS = 1000
_BUSY_HOLDOFF_MS = 200  # after a NAK busy, this stream waits before asking again


class StreamCounts:
    """Records counted per stream (live, backfilled, lost), over the whole session."""

    __slots__ = ("events_backfilled", "events_live", "samples_backfilled", "samples_live")

    def __init__(self) -> None:
        self.samples_live = 0
        self.samples_backfilled = 0
        self.events_live = 0
        self.events_backfilled = 0


class BoardStreams:
    """Samples and events of one board: live records, gaps, history, losses (see the module)."""

    def __init__(self, stored: Checkpoint | None = None, clock: BoardClock | None = None) -> None:
        # One request open per stream: the board keeps at most two open (a third is NAKed busy).
        self.samples = SequenceTracker(
            STREAM_SAMPLES, max_request=_SAMPLES_PER_REQUEST, retry_ms=_HISTORY_RETRY_MS, max_requests=1
        )
        self.events = SequenceTracker(
            STREAM_EVENTS, max_request=_EVENTS_PER_REQUEST, retry_ms=_HISTORY_RETRY_MS, max_requests=1
        )
        self.clock = clock if clock is not None else BoardClock()
        self.counts = StreamCounts()
        self.board_id = ""
        self.boot_count = -1  # -1: no handshake yet
        self.history_capacity = 0
        self._stored = stored
        self._reported_lost = [0, 0]
        self._holdoff_ms = [0, 0]

    @property
    def started(self) -> bool:
        """True after the first handshake."""
        return self.boot_count >= 0

    # -- where tracking starts ------------------------------------------------------------
    def start(
        self,
        *,
        board_id: str,
        boot_count: int,
        reset_cause_name: str,
        latest_sample: int,
        latest_event: int,
        history_capacity: int,
        out: list[BoardUpdate],
    ) -> bool:
        """A handshake: set the trackers (see the module); True when this is a new boot."""
        previous = (self.board_id, self.boot_count) if self.started else None
        key = (board_id, boot_count)
        self.board_id, self.boot_count = key
        self.history_capacity = history_capacity
        if previous is None:
            stored, self._stored = self._stored, None
            if stored is not None and (stored.board_id, stored.boot_count) == key:
                self.samples.restore(stored.samples.latest, stored.samples.missing)
                self.events.restore(stored.events.latest, stored.events.missing)
            elif stored is not None and stored.board_id == board_id:
                self._from_zero()
                out.append(
                    _notice(
                        "board_reset",
                        f"the board rebooted while no agent was connected (boot {stored.boot_count} -> "
                        f"{boot_count}, reset cause: {reset_cause_name}); records of boot "
                        f"{stored.boot_count} after sample {stored.samples.latest} could not be recovered",
                        boot_count,
                    )
                )
            else:
                self.samples.reset((latest_sample - 1) & _U32)
                self.events.reset((latest_event - 1) & _U32)
        elif previous != key:
            self.report_losses(out)  # what was still missing of the old boot
            self._from_zero()
        else:
            self.forget_requests()  # same boot: the open requests died with the old link
        self.note_latest(latest_sample, latest_event)
        new_boot = previous != key
        if new_boot:
            self.clock.reset()
        return new_boot

    def _from_zero(self) -> None:
        self.samples.reset(_BEFORE_ZERO)
        self.events.reset(_BEFORE_ZERO)

    def note_latest(self, latest_sample: int, latest_event: int) -> None:
        """The board's newest seqs (HELLO, HEARTBEAT): a gap at the end of a stream shows here."""
        # A board without any sample yet says latest_sample_seq 0, as one whose only sample
        # is 0: only a later seq shows sample 0 missing. (Event 0, the boot event, always exists.)
        if latest_sample != 0:
            self.samples.note_latest(latest_sample)
        self.events.note_latest(latest_event)

    # -- records ----------------------------------------------------------------------------
    def on_telemetry(self, payload: bytes, now: float, out: list[BoardUpdate]) -> None:
        """A live TELEMETRY payload."""
        v = samples.telemetry_values(payload)
        if not self.samples.observe(v[0]):
            return
        clock = self.clock
        if not clock.known:
            clock.observe(v[1], now)  # until the first heartbeat
        self.counts.samples_live += 1
        out.append(self._sample(v, clock.wall_time(v[1], now), False))

    def on_event(self, payload: bytes, now: float, out: list[BoardUpdate]) -> None:
        """A live EVENT payload."""
        if len(payload) < samples.EVENT_PAYLOAD_SIZE:
            raise ProtocolError(f"EVENT of {len(payload)} bytes, needs {samples.EVENT_PAYLOAD_SIZE}")
        v = samples.unpack_event(payload, 1)
        if not self.events.observe(v[0]):
            return
        self.counts.events_live += 1
        out.append(self._event(v, self.clock.wall_time(v[2], now), False))

    def on_heartbeat(self, payload: bytes, now: float) -> None:
        """A HEARTBEAT: the board clock, and the newest seqs."""
        _mid, (board_ms, _state, latest_sample, latest_event) = codec.decode(payload)
        self.clock.observe(board_ms, now)
        self.note_latest(latest_sample, latest_event)

    def on_history(self, payload: bytes, now: float, out: list[BoardUpdate]) -> None:
        """A HISTORY chunk: the records still missing, flagged historical."""
        _mid, (stream, first_seq, oldest_seq, last_chunk, bodies) = codec.decode(payload)
        wall = self.clock.wall_time
        if stream == STREAM_SAMPLES:
            tracker = self.samples
            for body in bodies:
                if len(body) < samples.SAMPLE_BODY_SIZE:
                    raise ProtocolError(f"HISTORY sample body of {len(body)} bytes")
                v = samples.unpack_sample(body)
                if tracker.on_backfill(v[0]):
                    self.counts.samples_backfilled += 1
                    out.append(self._sample(v, wall(v[1], now), True))
        elif stream == STREAM_EVENTS:
            tracker = self.events
            for body in bodies:
                if len(body) < samples.EVENT_BODY_SIZE:
                    raise ProtocolError(f"HISTORY event body of {len(body)} bytes")
                v = samples.unpack_event(body)
                if tracker.on_backfill(v[0]):
                    self.counts.events_backfilled += 1
                    out.append(self._event(v, wall(v[2], now), True))
        else:
            raise ProtocolError(f"HISTORY of unknown stream {stream}")
        tracker.history_done(first_seq, len(bodies), oldest_seq, bool(last_chunk))

    def _sample(self, v: Sequence[Any], wall: datetime, historical: bool) -> Sample:
        return Sample(
            boot_count=self.boot_count,
            seq=v[0],
            board_ms=v[1],
            wall_time=wall,
            pressure_mpa=v[2],
            setpoint_mpa=v[3],
            pump_duty=v[4],
            vent_duty=v[5],
            faults=v[6],
            state=v[7],
            flags=v[8],
            segment=v[9],
            run_id=v[10],
            historical=historical,
        )

    def _event(self, v: Sequence[Any], wall: datetime, historical: bool) -> BoardEvent:
        return BoardEvent(
            boot_count=self.boot_count,
            event_seq=v[0],
            sample_seq=v[1],
            board_ms=v[2],
            wall_time=wall,
            kind=v[3],
            code=v[4],
            detail=v[5],
            value=v[6],
            historical=historical,
        )

    # -- history requests -------------------------------------------------------------------
    def requests(self, now_ms: int) -> list[tuple[int, int, int]]:
        """``(stream, from_seq, count)`` to send as REQUEST_HISTORY now."""
        out: list[tuple[int, int, int]] = []
        for tracker in (self.samples, self.events):
            if now_ms >= self._holdoff_ms[tracker.stream]:
                out.extend(tracker.requests(now_ms))
        return out

    def _tracker(self, stream: int) -> SequenceTracker:
        return self.samples if stream == STREAM_SAMPLES else self.events

    def request_failed(self, stream: int, from_seq: int) -> None:
        """A REQUEST_HISTORY got no reply (or could not be queued): ask again at the next chance."""
        self._tracker(stream).cancel_request(from_seq)

    def request_refused(self, stream: int, from_seq: int, count: int, reason: int, now_ms: int) -> None:
        """A REQUEST_HISTORY was NAKed: busy -> ask again after a hold-off; unavailable -> lost."""
        tracker = self._tracker(stream)
        if reason == codes.R_HISTORY_UNAVAILABLE:
            tracker.give_up(from_seq, count)
            return
        tracker.cancel_request(from_seq)
        self._holdoff_ms[stream] = now_ms + _BUSY_HOLDOFF_MS

    def forget_requests(self) -> None:
        """The link went: the requests still open are forgotten (asked again when it is back)."""
        for tracker in (self.samples, self.events):
            tracker.restore(tracker.latest, tracker.missing_ranges())

    @property
    def missing(self) -> int:
        """Records missing in both streams (not yet backfilled, not given up)."""
        return self.samples.missing + self.events.missing

    # -- loss and position ------------------------------------------------------------------
    def report_losses(self, out: list[BoardUpdate]) -> None:
        """A ``records_lost`` notice for what was newly counted lost in each stream."""
        for tracker, what in ((self.samples, "samples"), (self.events, "events")):
            new = tracker.lost - self._reported_lost[tracker.stream]
            if new <= 0:
                continue
            self._reported_lost[tracker.stream] = tracker.lost
            capacity = self.history_capacity
            held = (
                f" (its history keeps the newest {capacity} samples)"
                if capacity and what == "samples"
                else ""
            )
            reason = (
                f"{new} {what} lost: the board no longer held them when the host could ask{held}; "
                f"{tracker.lost} {what} lost in this session"
            )
            out.append(_notice("records_lost", reason, new))

    def position(self) -> Checkpoint | None:
        """What a checkpoint stores now (None before the first handshake)."""
        if not self.started:
            return None
        return Checkpoint(
            board_id=self.board_id,
            boot_count=self.boot_count,
            samples=StreamPosition(self.samples.latest & _U32, tuple(self.samples.missing_ranges())),
            events=StreamPosition(self.events.latest & _U32, tuple(self.events.missing_ranges())),
        )


def _notice(kind: str, reason: str, detail: int = 0) -> SessionNotice:
    return SessionNotice(wall_time=datetime.now(UTC), kind=kind, reason=reason, detail=detail)
