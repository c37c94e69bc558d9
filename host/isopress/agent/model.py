"""The host-side data model: what the serial session hands the agent.

The serial session (protocol decoding, handshake, retransmits, backfill) turns board
frames into these values; everything else in the agent (spool, MQTT, commands, run
records) works only with them, so it can be tested without a board.

Numbers stay the board's numbers (``state``, ``faults``, ``kind``/``code``); the words
come from the ``isoproto.codes`` tables, the same ones the firmware is written against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from isoproto import codes, names

__all__ = [
    "BoardEvent",
    "BoardInfo",
    "BoardUpdate",
    "CommandResult",
    "DeviceProfile",
    "LinkDown",
    "Sample",
    "SessionCheckpoint",
    "SessionNotice",
    "describe_event",
    "fault_names",
    "host_lost_policy_name",
    "reason_name",
    "reason_text",
    "state_name",
]

U32_MAX = 0xFFFF_FFFF
DUTY_MAX = 65535  # pump and vent outputs are u16 duties (0 = off, 65535 = full)


def state_name(state: int) -> str:
    """The machine state's name (``names.STATE_NAMES``), or ``state_<n>`` for a newer board's state."""
    return names.STATE_NAMES[state] if 0 <= state < len(names.STATE_NAMES) else f"state_{state}"


def fault_names(faults: int) -> tuple[str, ...]:
    """Names of the fault bits set in a u16 fault mask, lowest bit first."""
    found: list[str] = []
    for bit in range(16):
        if faults & (1 << bit):
            found.append(names.FAULT_NAMES[bit] if bit < len(names.FAULT_NAMES) else f"fault_{bit}")
    return tuple(found)


def fault_text(bit: int) -> str:
    """Operator words for one fault bit."""
    return names.FAULT_TEXT[bit] if 0 <= bit < len(names.FAULT_TEXT) else f"fault {bit}"


def reason_name(reason: int) -> str:
    """A NAK reason code's name (``names.REASON_NAMES``)."""
    return names.REASON_NAMES[reason] if 0 <= reason < len(names.REASON_NAMES) else f"reason_{reason}"


def reason_text(reason: int) -> str:
    """A NAK reason code in words an operator can act on."""
    return names.REASON_TEXT[reason] if 0 <= reason < len(names.REASON_TEXT) else f"reason {reason}"


def host_lost_policy_name(policy: int) -> str:
    """``finish`` or ``depressurise`` (``codes.HOST_LOST_*``)."""
    return {codes.HOST_LOST_FINISH: "finish", codes.HOST_LOST_DEPRESSURISE: "depressurise"}.get(
        policy, f"policy_{policy}"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One telemetry sample, as measured on the board.

    ``(boot_count, seq)`` identifies a sample for ever: ``seq`` restarts when the board
    reboots, ``boot_count`` does not. ``wall_time`` is the host's UTC estimate of when the
    board took the sample: ``board_ms`` mapped through the board-clock offset the serial
    session measures from heartbeats (the same for live and backfilled samples).
    """

    boot_count: int
    seq: int  # u32 board sample sequence
    board_ms: int  # u32 board time since boot
    wall_time: datetime  # UTC, timezone-aware
    pressure_mpa: float
    setpoint_mpa: float
    pump_duty: int  # 0..65535
    vent_duty: int  # 0..65535
    faults: int  # u16 mask, bit n = names.FAULT_NAMES[n]
    state: int  # codes.ST_*
    flags: int  # codes.FLAG_*
    segment: int  # recipe segment index
    run_id: int  # board run id (u16), 0 = no run yet
    historical: bool = False  # backfilled from the board's history or replayed from the spool

    @property
    def state_name(self) -> str:
        """The machine state's name."""
        return state_name(self.state)

    @property
    def fault_names(self) -> tuple[str, ...]:
        """Names of the active faults."""
        return fault_names(self.faults)

    @property
    def dump_closed(self) -> bool:
        """True when the dump valve is energised (closed); open is the safe state."""
        return bool(self.flags & codes.FLAG_DUMP_CLOSED)


@dataclass(frozen=True, slots=True, kw_only=True)
class BoardEvent:
    """One board event (fault raised or cleared, state or segment change, run start/end, boot).

    ``kind`` is ``codes.EV_*``; the meaning of ``code``, ``detail`` and ``value`` depends on it
    (see ``isoproto.codes``). :func:`describe_event` turns it into words.
    """

    boot_count: int
    event_seq: int  # u32, own sequence, gap-detected like samples
    sample_seq: int  # sample sequence at which it happened
    board_ms: int
    wall_time: datetime
    kind: int
    code: int
    detail: int
    value: float  # e.g. the pressure at the event
    historical: bool = False

    @property
    def kind_name(self) -> str:
        """``names.EVENT_NAMES[kind]``."""
        return (
            names.EVENT_NAMES[self.kind] if 0 <= self.kind < len(names.EVENT_NAMES) else f"event_{self.kind}"
        )

    @property
    def reason(self) -> str:
        """The event in words an operator can act on."""
        return describe_event(self.kind, self.code, self.detail, self.value)


def describe_event(kind: int, code: int, detail: int, value: float) -> str:
    """Human-readable reason of a board event, from the ``isoproto.codes`` tables."""
    if kind == codes.EV_FAULT_RAISED:
        return f"fault raised: {fault_text(code)} (at {value:.1f} MPa)"
    if kind == codes.EV_FAULT_CLEARED:
        return f"fault cleared: {fault_text(code)}"
    if kind == codes.EV_STATE_CHANGED:
        return f"state {state_name(detail)} -> {state_name(code)} (at {value:.1f} MPa)"
    if kind == codes.EV_SEGMENT_CHANGED:
        return f"recipe segment {code} started (at {value:.1f} MPa)"
    if kind == codes.EV_RECIPE_LOADED:
        return f"recipe {detail & U32_MAX:08x} loaded"
    if kind == codes.EV_RUN_STARTED:
        return f"run {detail} started"
    if kind == codes.EV_RUN_ENDED:
        return f"run {detail} ended in state {state_name(code)} (at {value:.1f} MPa)"
    if kind == codes.EV_LOOP_OVERRUN:
        return f"control loop overran its period ({detail} times so far)"
    if kind == codes.EV_BOOT:
        cause = names.RESET_NAMES[code] if 0 <= code < len(names.RESET_NAMES) else f"cause {code}"
        return f"board booted (reset cause: {cause})"
    return f"event kind {kind} code {code} detail {detail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceProfile:
    """The limits the board enforces (its PROFILE message); recipes are checked against them."""

    max_working_mpa: float
    trip_mpa: float
    max_ramp_up_mpa_s: float
    max_ramp_down_mpa_s: float
    max_hold_s: float
    margin_mpa: float
    host_lost_timeout_ms: int
    host_lost_policy: int  # codes.HOST_LOST_*


@dataclass(frozen=True, slots=True, kw_only=True)
class BoardInfo:
    """What the board said about itself at the handshake (HELLO + PROFILE)."""

    firmware_version: str
    protocol_major: int
    protocol_minor: int
    board_id: str
    board_kind: str  # rp2 / esp32 / sim
    profile_hash: int  # u32 device-profile hash
    calibration_id: str
    calibration_date: str
    boot_count: int
    reset_cause: int  # codes.RESET_*
    profile: DeviceProfile
    latest_sample_seq: int = 0
    history_capacity: int = 0
    telemetry_period_ms: int = 10

    @property
    def protocol_version(self) -> str:
        """``major.minor``."""
        return f"{self.protocol_major}.{self.protocol_minor}"

    @property
    def reset_cause_name(self) -> str:
        """``names.RESET_NAMES[reset_cause]``."""
        table = names.RESET_NAMES
        return table[self.reset_cause] if 0 <= self.reset_cause < len(table) else f"cause_{self.reset_cause}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkDown:
    """The serial session lost the board (read error, heartbeat timeout, unplug)."""

    wall_time: datetime
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult:
    """The board's answer to one command: its ACK or NAK.

    ``problems`` lists ``(reason, index)`` pairs from a NAK (e.g. every bad recipe segment).
    """

    ok: bool
    result: int = codes.RESULT_OK  # codes.RESULT_*
    reason: int = codes.R_NONE  # codes.R_* (NAK only)
    detail: int = 0
    value: int = 0  # ACK value, e.g. the run id after START
    problems: tuple[tuple[int, int], ...] = field(default=())

    @property
    def reason_name(self) -> str:
        """The NAK reason's name."""
        return reason_name(self.reason)

    @property
    def reason_text(self) -> str:
        """The NAK reason in words."""
        return reason_text(self.reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionNotice:
    """Something the serial session tells the operator: the agent publishes it as an agent event.

    ``kind`` is the event's kind: ``records_lost`` (history the board no longer held when
    the host asked for it; ``detail`` = how many), ``board_refused`` (another protocol
    major), ``profile_mismatch`` (HELLO's profile hash is not the PROFILE's), ``board_reset``
    (the board rebooted while no agent was connected).
    """

    wall_time: datetime
    kind: str
    reason: str
    detail: int = 0


@dataclass(frozen=True, slots=True)
class SessionCheckpoint:
    """Opaque state of the serial session, stored atomically with the samples before it.

    The session emits one whenever what it must remember changes (e.g. "boot 4: everything
    up to seq 1234 received except 100..200"). The agent writes it into the spool in the
    same transaction as the samples and events of the same burst, so after an agent crash
    the stored checkpoint never claims more than the spool holds. At start-up the session
    reads it back (:func:`isopress.agent.service.read_session_checkpoint`) and backfills
    from there.
    """

    text: str


# What the serial session hands the agent, in the order it happened.
BoardUpdate = Sample | BoardEvent | BoardInfo | LinkDown | SessionCheckpoint | SessionNotice
