"""The JSON payloads of the MQTT interface, as pydantic models.

These models are the contract with dashboards, loggers and scripts: ``docs/schemas/`` is
generated from them (``python -m isopress.agent.schemas``) and a test fails when the
checked-in schemas differ. The hot path (telemetry at 100 Hz and spool replay) builds the
same JSON by hand (:func:`sample_body`, :func:`telemetry_batch`); tests validate that JSON
against these models.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from .model import BoardEvent, BoardInfo, Sample, fault_names, state_name
from .recipe import Recipe, RecipeProblem
from .spool import STREAM_EVENT, STREAM_TELEMETRY, Outgoing
from .topics import PressTopics

__all__ = [
    "COMMAND_ID_PATTERN",
    "AbortCommand",
    "CommandReply",
    "EventPayload",
    "LoadRecipeCommand",
    "PauseCommand",
    "ResetCommand",
    "ResumeCommand",
    "RunSummary",
    "StartCommand",
    "StatePayload",
    "TelemetryBatch",
    "TelemetrySample",
    "event_body",
    "iso_utc",
    "sample_body",
    "sample_body_json",
    "telemetry_batch",
]

_OUT = ConfigDict(extra="forbid", frozen=True)


def iso_utc(when: datetime) -> str:
    """ISO 8601 UTC with microseconds and a ``Z``: ``2026-11-25T22:15:30.123456Z``."""
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# -- telemetry ----------------------------------------------------------------------------
class TelemetrySample(BaseModel):
    """One board sample in a telemetry batch."""

    model_config = _OUT
    boot_count: int = Field(
        ge=0, description="board boot the sequence belongs to; (boot_count, seq) is unique"
    )
    seq: int = Field(ge=0, le=0xFFFFFFFF, description="board sample sequence (u32)")
    board_ms: int = Field(ge=0, le=0xFFFFFFFF, description="board time since boot, ms")
    wall_time: AwareDatetime = Field(description="UTC time the board took the sample (host estimate)")
    pressure_mpa: float = Field(description="measured vessel pressure, MPa")
    setpoint_mpa: float = Field(description="controller setpoint, MPa")
    pump_duty: int = Field(ge=0, le=65535, description="pump output, 0..65535")
    vent_duty: int = Field(ge=0, le=65535, description="vent valve output, 0..65535")
    faults: int = Field(ge=0, le=0xFFFF, description="active faults, bit n = FAULT_NAMES[n] (docs/mqtt.md)")
    state: str = Field(description="machine state name (idle, ready, pressurising, holding, ...)")
    flags: int = Field(
        ge=0, le=0xFF, description="FLAG_* bits: 1 dump closed, 2 closure locked, 4 e-stop ok, ..."
    )
    segment: int = Field(ge=0, description="recipe segment index")
    run_id: int = Field(ge=0, description="board run id (0: no run since boot)")
    historical: bool = Field(
        description="true: backfilled from the board's history or replayed from the spool"
    )


class TelemetryBatch(BaseModel):
    """``isopress/<press_id>/telemetry``: samples in board order (QoS 1, not retained)."""

    model_config = _OUT
    press_id: str
    samples: list[TelemetrySample] = Field(min_length=1)


_SAMPLE_FORMAT = (
    '{"boot_count":%d,"seq":%d,"board_ms":%d,"wall_time":"%s","pressure_mpa":%r,"setpoint_mpa":%r,'
    '"pump_duty":%d,"vent_duty":%d,"faults":%d,"state":%s,"flags":%d,"segment":%d,"run_id":%d}'
)
_STATE_JSON: dict[int, str] = {}  # state -> its name as a JSON string, filled as states are seen


def sample_body(sample: Sample) -> str:
    """The JSON of one sample, without ``historical`` (added at publish time, see :func:`with_historical`).

    Formatted by hand, the same text as :func:`sample_body_json` (a property test holds
    them equal): finite floats print as ``repr`` does in ``json.dumps``, integers as
    ``%d``, the state name is JSON-encoded once per state. A NaN or infinite float, or a
    field that is not a plain ``int``/``float``, takes ``json.dumps``.
    """
    p, sp = sample.pressure_mpa, sample.setpoint_mpa
    state_json = _STATE_JSON.get(sample.state)
    if state_json is None:
        state_json = _STATE_JSON[sample.state] = json.dumps(state_name(sample.state))
    when = sample.wall_time
    if (
        type(p) is float
        and type(sp) is float
        and p - p == 0.0  # NaN and infinities give NaN
        and sp - sp == 0.0
        and when.tzinfo is UTC
        and _all_int(sample)
    ):
        return _SAMPLE_FORMAT % (
            sample.boot_count,
            sample.seq,
            sample.board_ms,
            when.isoformat(timespec="microseconds")[:-6] + "Z",  # "+00:00" off
            p,
            sp,
            sample.pump_duty,
            sample.vent_duty,
            sample.faults,
            state_json,
            sample.flags,
            sample.segment,
            sample.run_id,
        )
    return sample_body_json(sample)


def _all_int(s: Sample) -> bool:
    # type() rather than isinstance: a bool (or an IntEnum) prints differently with %d
    return (
        type(s.boot_count) is int
        and type(s.seq) is int
        and type(s.board_ms) is int
        and type(s.pump_duty) is int
        and type(s.vent_duty) is int
        and type(s.faults) is int
        and type(s.state) is int
        and type(s.flags) is int
        and type(s.segment) is int
        and type(s.run_id) is int
    )


def sample_body_json(sample: Sample) -> str:
    """:func:`sample_body` through ``json.dumps`` (its fallback, and the reference in tests)."""
    return json.dumps(
        {
            "boot_count": sample.boot_count,
            "seq": sample.seq,
            "board_ms": sample.board_ms,
            "wall_time": iso_utc(sample.wall_time),
            "pressure_mpa": sample.pressure_mpa,
            "setpoint_mpa": sample.setpoint_mpa,
            "pump_duty": sample.pump_duty,
            "vent_duty": sample.vent_duty,
            "faults": sample.faults,
            "state": state_name(sample.state),
            "flags": sample.flags,
            "segment": sample.segment,
            "run_id": sample.run_id,
        },
        separators=(",", ":"),
    )


def with_historical(body: str, historical: bool) -> str:
    """Append ``"historical": ...`` to a JSON object's text (no re-parse on the hot path)."""
    return body[:-1] + (',"historical":true}' if historical else ',"historical":false}')


def telemetry_batch(press_id: str, bodies: list[str]) -> str:
    """A :class:`TelemetryBatch` JSON from sample bodies that already carry ``historical``."""
    return '{"press_id":' + json.dumps(press_id) + ',"samples":[' + ",".join(bodies) + "]}"


# -- events -------------------------------------------------------------------------------
class EventPayload(BaseModel):
    """``isopress/<press_id>/event``: one board or agent event (QoS 1, not retained).

    Board events carry the board's numbers (``boot_count``, ``event_seq``, ``sample_seq``,
    ``board_ms``); agent events (link lost, board reset, spool overflow, ...) have them null.
    """

    model_config = _OUT
    source: Literal["board", "agent"]
    kind: str = Field(description="fault_raised, fault_cleared, state_changed, ... or an agent event kind")
    code: int = Field(description="board: kind-specific code (fault bit, new state, ...); agent: 0")
    code_name: str | None = Field(description="the code as a name where it has one (fault or state name)")
    detail: int = Field(description="kind-specific detail (previous state, run id, ...)")
    value: float = Field(description="kind-specific value, e.g. the pressure at the event in MPa")
    reason: str = Field(description="the event in words an operator can act on")
    boot_count: int | None
    event_seq: int | None = Field(description="board event sequence (u32)")
    sample_seq: int | None = Field(description="sample sequence at which the event happened")
    board_ms: int | None
    wall_time: AwareDatetime
    historical: bool


def _code_name(event: BoardEvent) -> str | None:
    from isoproto import codes, names

    if event.kind in (codes.EV_FAULT_RAISED, codes.EV_FAULT_CLEARED):
        raised = fault_names(1 << event.code) if 0 <= event.code < 16 else ()
        return raised[0] if raised else None
    if event.kind in (codes.EV_STATE_CHANGED, codes.EV_RUN_ENDED):
        return state_name(event.code)
    if event.kind == codes.EV_BOOT:
        return names.RESET_NAMES[event.code] if 0 <= event.code < len(names.RESET_NAMES) else None
    return None


def event_body(event: BoardEvent) -> str:
    """The JSON of a board event, without ``historical``."""
    return json.dumps(
        {
            "source": "board",
            "kind": event.kind_name,
            "code": event.code,
            "code_name": _code_name(event),
            "detail": event.detail,
            "value": event.value,
            "reason": event.reason,
            "boot_count": event.boot_count,
            "event_seq": event.event_seq,
            "sample_seq": event.sample_seq,
            "board_ms": event.board_ms,
            "wall_time": iso_utc(event.wall_time),
        },
        separators=(",", ":"),
    )


def agent_event_body(kind: str, reason: str, *, detail: int = 0, value: float = 0.0, when: datetime) -> str:
    """The JSON of an agent event (without ``historical``)."""
    return json.dumps(
        {
            "source": "agent",
            "kind": kind,
            "code": 0,
            "code_name": None,
            "detail": detail,
            "value": value,
            "reason": reason,
            "boot_count": None,
            "event_seq": None,
            "sample_seq": None,
            "board_ms": None,
            "wall_time": iso_utc(when),
        },
        separators=(",", ":"),
    )


# -- state --------------------------------------------------------------------------------
class RecipeRef(BaseModel):
    """The recipe loaded on the board, as the agent knows it."""

    model_config = _OUT
    name: str
    sha256: str = Field(description="SHA-256 of the canonical segment bytes")
    recipe_id: str = Field(description="the board's u32 recipe id, 8 hex digits")


class BoardRef(BaseModel):
    """The board as it introduced itself at the last handshake."""

    model_config = _OUT
    board_id: str
    board_kind: str
    firmware_version: str
    protocol_version: str = Field(description="major.minor")
    boot_count: int
    reset_cause: str
    profile_hash: str = Field(description="device-profile hash, 8 hex digits")
    calibration_id: str
    calibration_date: str

    @classmethod
    def from_info(cls, info: BoardInfo) -> BoardRef:
        """From the handshake data."""
        return cls(
            board_id=info.board_id,
            board_kind=info.board_kind,
            firmware_version=info.firmware_version,
            protocol_version=info.protocol_version,
            boot_count=info.boot_count,
            reset_cause=info.reset_cause_name,
            profile_hash=f"{info.profile_hash:08x}",
            calibration_id=info.calibration_id,
            calibration_date=info.calibration_date,
        )


class StatePayload(BaseModel):
    """``isopress/<press_id>/state``: the press as the agent sees it (retained, QoS 1).

    Published when something in it changes (not per sample).
    """

    model_config = _OUT
    press_id: str
    board_connected: bool = Field(description="false while the serial link is down")
    state: str = Field(description="machine state name; 'unknown' before the first sample")
    run_id: str | None = Field(description="the run record id while a run is on (see run/<run_id>)")
    board_run_id: int = Field(description="the board's run id (0: none since boot)")
    recipe: RecipeRef | None
    faults: list[str] = Field(description="active fault names")
    board: BoardRef | None = Field(description="null until the first handshake")
    updated_at: AwareDatetime


# -- run summary ----------------------------------------------------------------------------
class RunSummary(BaseModel):
    """``isopress/<press_id>/run/<run_id>``: retained when a run ends; also ``run.json`` in the record."""

    model_config = _OUT
    run_id: str
    press_id: str
    board_run_id: int
    operator: str | None = Field(description="the operator segment of the start command's topic")
    recipe: RecipeRef | None
    board: BoardRef | None
    started_at: AwareDatetime
    ended_at: AwareDatetime | None
    outcome: str = Field(description="complete, fault, estop, aborted, interrupted or running")
    final_state: str
    faults: list[str] = Field(description="every fault raised during the run, by name, in order")
    samples: int = Field(description="samples in the trace")
    peak_mpa: float | None
    record_path: str = Field(description="folder of the run record on the agent's host")
    metrics: dict[str, object] | None = Field(description="isopress.hil metrics of the trace, when available")


# -- commands -------------------------------------------------------------------------------
_IN = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# A command's own id: a UUID (hex or with dashes) fits; 8 characters at least so that
# counters like "1", "2" are not mistaken for ids.
COMMAND_ID_PATTERN = r"^[A-Za-z0-9_.:-]{8,64}$"


class _Command(BaseModel):
    model_config = _IN
    command_id: str = Field(
        pattern=COMMAND_ID_PATTERN,
        description=(
            "new for every command (a UUID); the same operator's id seen again within "
            "commands.max_age_s is a replay and is refused"
        ),
    )
    sent_at: AwareDatetime = Field(
        description="when the operator sent it (UTC); older than max_age_s is rejected"
    )


class LoadRecipeCommand(_Command):
    """``cmd/<operator>/load-recipe``: load a recipe (checked against the board's profile first)."""

    recipe: Recipe


class StartCommand(_Command):
    """``cmd/<operator>/start``: start the loaded recipe.

    ``recipe_sha256``, when given, must match the loaded recipe (guards against starting
    a recipe someone else loaded meanwhile).
    """

    recipe_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class PauseCommand(_Command):
    """``cmd/<operator>/pause``: hold the current pressure."""


class ResumeCommand(_Command):
    """``cmd/<operator>/resume``: continue a paused run."""


class AbortCommand(_Command):
    """``cmd/<operator>/abort``: end the run, depressurising at the recipe's ramp-down rate."""


class ResetCommand(_Command):
    """``cmd/<operator>/reset``: clear latched faults whose cause is gone."""


class BoardAnswer(BaseModel):
    """The board's ACK or NAK."""

    model_config = _OUT
    ok: bool
    result: int
    reason: str = Field(description="NAK reason name ('none' for an ACK)")
    reason_text: str
    detail: int
    value: int


class CommandReply(BaseModel):
    """Sent to the command's MQTT 5 response topic, with its correlation data."""

    model_config = _OUT
    verb: str
    operator: str
    accepted: bool = Field(description="true only when the board acknowledged the command")
    error: str | None = Field(description="why the command was rejected, in words (null when accepted)")
    problems: list[RecipeProblem] = Field(
        description="every problem found (recipe checks: field, value, limit)"
    )
    state: str = Field(description="the machine state when the command was handled")
    board: BoardAnswer | None = Field(description="the board's answer, when the command reached the board")
    run_id: str | None = Field(default=None, description="the run record id (start)")
    recipe: RecipeRef | None = Field(default=None, description="the recipe loaded (load-recipe)")
    received_at: AwareDatetime
    command_id: str | None = Field(default=None, description="the command's command_id (once parsed)")
    pending: bool = Field(
        default=False,
        description="true: the board did not answer within commands.board_timeout_s and the command "
        "may still execute; its final reply (pending false) follows on the same response topic",
    )


COMMAND_MODELS: dict[str, type[_Command]] = {
    "load-recipe": LoadRecipeCommand,
    "start": StartCommand,
    "pause": PauseCommand,
    "resume": ResumeCommand,
    "abort": AbortCommand,
    "reset": ResetCommand,
}


# -- spool rows -------------------------------------------------------------------------------
def sample_outgoing(topics: PressTopics, sample: Sample) -> Outgoing:
    """The spool row of a sample."""
    return Outgoing(
        STREAM_TELEMETRY,
        topics.telemetry,
        sample_body(sample),
        historical=sample.historical,
        boot_count=sample.boot_count,
        seq=sample.seq,
    )


def event_outgoing(topics: PressTopics, event: BoardEvent) -> Outgoing:
    """The spool row of a board event."""
    return Outgoing(
        STREAM_EVENT,
        topics.event,
        event_body(event),
        historical=event.historical,
        boot_count=event.boot_count,
        seq=event.event_seq,
    )


def agent_event_outgoing(
    topics: PressTopics, kind: str, reason: str, *, detail: int = 0, value: float = 0.0
) -> Outgoing:
    """The spool row of an agent event (link lost, board reset, spool overflow, ...)."""
    body = agent_event_body(kind, reason, detail=detail, value=value, when=datetime.now(UTC))
    return Outgoing(STREAM_EVENT, topics.event, body)
