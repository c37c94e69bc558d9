"""Scenario files: a press, a transducer, a device profile, a recipe, faults, expectations.

A scenario is a TOML file (see ``docs/scenarios.md`` for every key). :func:`load_scenario`
reads and validates it into a frozen :class:`Scenario` or raises :class:`ScenarioError`
listing every problem as ``key.path: reason``; nothing is half-loaded.
:meth:`Scenario.to_board_json` turns it into the plain JSON document the virtual board
(MicroPython, no TOML) reads.

The ``[plant]``, ``[transducer]`` and ``[transducer2]`` tables override the models'
parameters; their keys and ranges come from the models themselves
(``firmware/boards/sim/plant.py`` and ``transducer.py``), so the file and the model can
never disagree about a name.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from isoproto import codes, names

from ..agent.recipe import segments_duration_s
from . import sim_models

__all__ = [
    "FAULT_KINDS",
    "FAULT_REACTIONS",
    "PARAMS_BY_KIND",
    "DriftParams",
    "ExpectSection",
    "ExpectedFault",
    "FaultKind",
    "FaultParams",
    "FaultSpec",
    "LeakParams",
    "NoParams",
    "ProfileSection",
    "RecipeSection",
    "RunSection",
    "Scenario",
    "ScenarioError",
    "Segment",
    "ShortParams",
    "SpikeParams",
    "StuckParams",
    "TransducerParams",
    "fault_param_names",
    "format_validation_error",
    "load_scenario",
    "loads_scenario",
    "scenario_key_paths",
]

BOARD_JSON_VERSION = 1
# Seconds of virtual time after the recipe's nominal end when run.sim_s is not given.
DEFAULT_TAIL_S = 30.0

FaultKind = Literal[
    "transducer_open_wire",
    "transducer_short",
    "transducer_stuck",
    "transducer_drift",
    "transducer_spike",
    "leak_change",
    "burst_bag",
    "pump_stuck_on",
    "closure_unlocked",
    "estop",
    "glovebox_lost",
    "host_lost",
]
FAULT_KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]

# What the board is expected to do about each injected fault (DESIGN.md decision 6):
# "dump" people are at risk: pump off and dump valve open; "vent" the run is at risk:
# stop pressurising and depressurise under control; "pause" stop following the recipe;
# "policy" host lost: the profile's host_lost_policy says vent or carry on.
FAULT_REACTIONS: dict[str, str] = {
    "transducer_open_wire": "dump",
    "transducer_short": "dump",
    "transducer_stuck": "dump",
    "transducer_drift": "dump",
    "transducer_spike": "dump",
    "pump_stuck_on": "dump",
    "closure_unlocked": "dump",
    "estop": "dump",
    "leak_change": "vent",
    "burst_bag": "vent",
    "glovebox_lost": "pause",
    "host_lost": "policy",
}

# Faults that cannot be undone after a while: a leak stays, a burst bag stays burst.
_PERMANENT_KINDS = ("leak_change", "burst_bag")

Number = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# -- fault parameters ----------------------------------------------------------------


class FaultParams(_Strict):
    """Base of every fault's ``params`` table."""


class NoParams(FaultParams):
    """Faults that take no parameters."""


class TransducerParams(FaultParams):
    """Which transducer the fault hits: 1, or 2 when ``[transducer2]`` is fitted."""

    transducer: Literal[1, 2] = 1


class ShortParams(TransducerParams):
    """A shorted loop drives ``current_ma`` (NAMUR NE43: anything from 21 mA up)."""

    current_ma: Number = Field(default=24.0, gt=21.0, le=50.0)


class StuckParams(TransducerParams):
    """The output freezes at ``at_mpa``, or where it was when the fault struck."""

    at_mpa: Number | None = Field(default=None, ge=0.0, le=2000.0)


class DriftParams(TransducerParams):
    """The reading drifts away from the truth at ``rate_mpa_s`` (either sign)."""

    rate_mpa_s: Number = Field(ge=-100.0, le=100.0)

    @field_validator("rate_mpa_s")
    @classmethod
    def _not_zero(cls, v: float) -> float:
        if v == 0.0:
            raise ValueError("a drift of 0 MPa/s is no fault")
        return v


class SpikeParams(TransducerParams):
    """Single-sample spikes at ``rate_hz`` of ``amplitude_mpa`` (defaults: the model's)."""

    rate_hz: Number | None = Field(default=None, gt=0.0, le=1000.0)
    amplitude_mpa: Number | None = Field(default=None, gt=0.0, le=2000.0)


class LeakParams(FaultParams):
    """The vessel's leak coefficient becomes ``leak_ml_s_per_mpa``."""

    leak_ml_s_per_mpa: Number

    @field_validator("leak_ml_s_per_mpa")
    @classmethod
    def _in_model_range(cls, v: float) -> float:
        lo, hi = sim_models.plant_ranges()["leak_ml_s_per_mpa"]
        if not lo <= v <= hi:
            raise ValueError(f"must be within {lo:g}..{hi:g}")
        return v


PARAMS_BY_KIND: dict[str, type[FaultParams]] = {
    "transducer_open_wire": TransducerParams,
    "transducer_short": ShortParams,
    "transducer_stuck": StuckParams,
    "transducer_drift": DriftParams,
    "transducer_spike": SpikeParams,
    "leak_change": LeakParams,
    "burst_bag": NoParams,
    "pump_stuck_on": NoParams,
    "closure_unlocked": NoParams,
    "estop": NoParams,
    "glovebox_lost": NoParams,
    "host_lost": NoParams,
}


class FaultSpec(_Strict):
    """One injected fault: what, when, for how long, with which parameters."""

    kind: FaultKind
    t_s: Number = Field(ge=0.0)
    duration_s: Number | None = Field(default=None, gt=0.0)
    params: SerializeAsAny[FaultParams] = Field(default_factory=dict, validate_default=True)

    @field_validator("params", mode="wrap")
    @classmethod
    def _params_of_kind(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if kind is None:  # the kind itself is wrong; that error says it all
            return NoParams()
        if isinstance(value, FaultParams):
            value = value.model_dump()
        return PARAMS_BY_KIND[kind].model_validate(value)

    @model_validator(mode="after")
    def _permanent_faults_have_no_duration(self) -> FaultSpec:
        if self.duration_s is not None and self.kind in _PERMANENT_KINDS:
            raise ValueError(f"duration_s: a {self.kind} cannot be undone; inject a leak_change to change it")
        return self


# -- plant and transducer overrides ------------------------------------------------------


@cache
def _overrides_model(name: str) -> type[BaseModel]:
    """A model whose fields are a sim model's parameters, each optional, within its range."""
    if name == "plant":
        defaults, ranges = sim_models.plant_defaults(), sim_models.plant_ranges()
    else:
        defaults, ranges = sim_models.transducer_defaults(), sim_models.transducer_ranges()
    fields: dict[str, Any] = {
        key: (Number | None, Field(default=None, ge=ranges[key][0], le=ranges[key][1])) for key in defaults
    }
    return create_model(f"{name.title()}Overrides", __config__=_Strict.model_config, **fields)


@cache
def control_fields() -> dict[str, tuple[float, float, float]]:
    """The board config's ``control`` keys: (lowest, highest, default), from the firmware."""
    from ..firmware_build import _board_config_module  # the board's own validator tables

    fields = _board_config_module().CONTROL_FIELDS
    return {str(name): (float(lo), float(hi), float(default)) for name, _kind, lo, hi, default in fields}


@cache
def _control_model() -> type[BaseModel]:
    fields: dict[str, Any] = {
        key: (Number | None, Field(default=None, ge=lo, le=hi))
        for key, (lo, hi, _default) in control_fields().items()
    }
    return create_model("ControlOverrides", __config__=_Strict.model_config, **fields)


def _check_model_overrides(value: Any, section: str) -> dict[str, float]:
    model = _overrides_model("plant" if section == "plant" else "transducer")
    overrides: dict[str, float] = model.model_validate(value).model_dump(exclude_none=True)
    check = sim_models.check_plant_params if section == "plant" else sim_models.check_transducer_params
    try:
        check(overrides)  # the model's own cross-checks (e.g. shunt vs reference)
    except ValueError as exc:
        key, _, reason = str(exc).partition(": ")
        line: InitErrorDetails = {
            "type": PydanticCustomError("value_error", "{reason}", {"reason": reason or str(exc)}),
            "loc": (key,) if reason else (),
            "input": overrides.get(key),
        }
        raise ValidationError.from_exception_data(section, [line]) from None
    return overrides


# -- the other sections ----------------------------------------------------------------------


class RunSection(_Strict):
    """How the virtual board runs the scenario."""

    sim_s: Number | None = Field(default=None, gt=0.0, le=7 * 86400.0)
    seed: int = Field(default=1, ge=0, le=2**32 - 1)
    start_s: Number = Field(default=1.0, ge=0.0, le=3600.0)
    control_rate_hz: int = Field(default=100, ge=1, le=1000)
    telemetry_decimation: int = Field(default=10, ge=1, le=100000)

    @field_validator("control_rate_hz")
    @classmethod
    def _whole_ms_period(cls, v: int) -> int:
        if 1000 % v:
            raise ValueError("the control period must be a whole number of ms (1000 % rate == 0)")
        return v


class ProfileSection(_Strict):
    """The device profile: what this press may do (the board checks recipes against it)."""

    max_working_mpa: Number = Field(default=400.0, ge=1.0, le=1000.0)
    trip_mpa: Number = Field(default=420.0, ge=1.0, le=1000.0)
    max_ramp_up_mpa_s: Number = Field(default=2.0, ge=0.001, le=50.0)
    max_ramp_down_mpa_s: Number = Field(default=1.0, ge=0.001, le=50.0)
    max_hold_s: Number = Field(default=7200.0, ge=1.0, le=604800.0)
    margin_mpa: Number = Field(default=10.0, ge=0.0, le=100.0)
    host_lost_timeout_s: Number = Field(default=10.0, ge=0.5, le=3600.0)
    host_lost_policy: Literal["finish", "depressurise"] = "depressurise"

    @model_validator(mode="after")
    def _trip_above_working(self) -> ProfileSection:
        if self.max_working_mpa + self.margin_mpa >= self.trip_mpa:
            raise ValueError(
                f"trip_mpa: must be above max_working_mpa + margin_mpa "
                f"({self.max_working_mpa + self.margin_mpa:g} MPa)"
            )
        return self


class Segment(_Strict):
    """A recipe segment: ``ramp`` (target_mpa, rate_mpa_s) or ``hold`` (duration_s)."""

    kind: Literal["ramp", "hold"]
    target_mpa: Number | None = Field(default=None, ge=0.0, le=2000.0)
    rate_mpa_s: Number | None = Field(default=None, gt=0.0, le=1000.0)
    duration_s: Number | None = Field(default=None, gt=0.0, le=1e7)

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Segment:
        needed = ("target_mpa", "rate_mpa_s") if self.kind == "ramp" else ("duration_s",)
        for name in ("target_mpa", "rate_mpa_s", "duration_s"):
            present = getattr(self, name) is not None
            if name in needed and not present:
                raise ValueError(f"{name}: required for a {self.kind}")
            if name not in needed and present:
                raise ValueError(f"{name}: not used by a {self.kind}")
        return self


class RecipeSection(_Strict):
    """The recipe the host loads and starts. The board may reject it (see expect)."""

    name: str = Field(default="recipe", min_length=1, max_length=64)
    segments: list[Segment] = Field(min_length=1, max_length=1000)


class ExpectedFault(_Strict):
    """A fault code the board must raise, optionally within ``max_latency_ms`` of the
    onset of the injected fault that preceded it."""

    code: str
    max_latency_ms: Number | None = Field(default=None, gt=0.0)

    @field_validator("code")
    @classmethod
    def _known_code(cls, v: str) -> str:
        if v not in names.FAULT_NAMES:
            raise ValueError(f"unknown fault code {v!r} (one of {', '.join(names.FAULT_NAMES)})")
        return v


class ExpectSection(_Strict):
    """What must hold for the scenario to pass. Keys left out are not checked."""

    rejected_at_load: bool = False
    final_state: str | None = None
    no_faults: bool = False
    faults: list[ExpectedFault] = Field(default_factory=list)
    no_other_faults: bool = False
    every_fault_detected: bool = False
    max_trip_latency_ms: Number | None = Field(default=None, gt=0.0)
    max_overshoot_mpa: Number | None = Field(default=None, ge=0.0)
    max_peak_mpa: Number | None = Field(default=None, ge=0.0)
    min_peak_mpa: Number | None = Field(default=None, ge=0.0)
    max_final_mpa: Number | None = Field(default=None, ge=0.0)
    max_hold_error_rms_mpa: Number | None = Field(default=None, ge=0.0)
    max_hold_error_max_mpa: Number | None = Field(default=None, ge=0.0)
    max_ramp_rate_error_pct: Number | None = Field(default=None, ge=0.0)
    max_depressurization_rate_mpa_s: Number | None = Field(default=None, gt=0.0)
    max_loop_overruns: int | None = Field(default=None, ge=0)

    @field_validator("final_state")
    @classmethod
    def _known_state(cls, v: str | None) -> str | None:
        if v is not None and v not in names.STATE_NAMES:
            raise ValueError(f"unknown state {v!r} (one of {', '.join(names.STATE_NAMES)})")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ExpectSection:
        if self.no_faults and self.faults:
            raise ValueError("no_faults: contradicts the faults listed in expect.faults")
        return self


# -- the scenario ------------------------------------------------------------------------------


class Scenario(_Strict):
    """A validated scenario file."""

    name: str = Field(min_length=1, max_length=120)
    description: str = ""
    run: RunSection = RunSection()
    plant: dict[str, float] = Field(default_factory=dict)
    transducer: dict[str, float] = Field(default_factory=dict)
    transducer2: dict[str, float] | None = None
    profile: ProfileSection = ProfileSection()
    control: dict[str, float] = Field(default_factory=dict)
    recipe: RecipeSection
    faults: list[FaultSpec] = Field(default_factory=list)
    expect: ExpectSection = ExpectSection()

    @field_validator("plant", "transducer", "transducer2", mode="wrap")
    @classmethod
    def _model_overrides(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        if value is None and info.field_name == "transducer2":
            return None
        return _check_model_overrides(value, str(info.field_name))

    @field_validator("control", mode="wrap")
    @classmethod
    def _control_overrides(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> dict[str, float]:
        overrides: dict[str, float] = _control_model().model_validate(value).model_dump(exclude_none=True)
        return overrides

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        problems = []
        range_mpa = self.transducer_params(1)["range_mpa"]
        if self.profile.trip_mpa >= range_mpa:
            problems.append(f"profile.trip_mpa: must be below the transducer's range_mpa ({range_mpa:g} MPa)")
        if self.transducer2 is not None:
            range2 = self.transducer_params(2)["range_mpa"]
            if self.profile.trip_mpa >= range2:
                problems.append(f"profile.trip_mpa: must be below transducer2's range_mpa ({range2:g} MPa)")
        sim_s = self.sim_s
        for i, fault in enumerate(self.faults):
            if (
                isinstance(fault.params, TransducerParams)
                and fault.params.transducer == 2
                and self.transducer2 is None
            ):
                problems.append(f"faults[{i}].params.transducer: this scenario has no [transducer2]")
            if fault.t_s >= sim_s:
                problems.append(f"faults[{i}].t_s: at or after the end of the run ({sim_s:g} s)")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # -- derived values -------------------------------------------------------------------
    @property
    def sim_s(self) -> float:
        """Virtual seconds to run: ``run.sim_s``, or the recipe's nominal length plus a tail."""
        if self.run.sim_s is not None:
            return self.run.sim_s
        return self.run.start_s + self.recipe_nominal_s() + DEFAULT_TAIL_S

    def plant_params(self) -> dict[str, float]:
        """Every plant parameter: the model's defaults with this scenario's overrides."""
        return {**sim_models.plant_defaults(), **self.plant}

    def transducer_params(self, which: int = 1) -> dict[str, float]:
        """Every parameter of transducer 1 or 2: the model's defaults with the overrides."""
        overrides = self.transducer if which == 1 else (self.transducer2 or {})
        return {**sim_models.transducer_defaults(), **overrides}

    def recipe_nominal_s(self) -> float:
        """How long the recipe takes if every ramp runs at the board's rate from the plant's start."""
        return segments_duration_s(
            ((s.kind, s.target_mpa, s.rate_mpa_s, s.duration_s) for s in self.recipe.segments),
            self.plant_params()["initial_pressure_mpa"],
        )

    def highest_target_mpa(self) -> float:
        """The highest ramp target of the recipe (0 when it has no ramp)."""
        return max((s.target_mpa or 0.0 for s in self.recipe.segments if s.kind == "ramp"), default=0.0)

    def with_seed(self, seed: int) -> Scenario:
        """The same scenario with another random seed (``isopress hil run --seed``)."""
        data = self.model_dump(mode="python")
        data["run"]["seed"] = seed
        return _validate(data, self.name)

    # -- for the virtual board ----------------------------------------------------------------
    def to_board_json(self) -> dict[str, Any]:
        """The plain JSON document the virtual board reads (see docs/scenarios.md)."""
        seed = self.run.seed
        profile = self.profile
        doc: dict[str, Any] = {
            "version": BOARD_JSON_VERSION,
            "name": self.name,
            "run": {
                "sim_ms": round(self.sim_s * 1000.0),
                "start_ms": round(self.run.start_s * 1000.0),
                "control_period_ms": 1000 // self.run.control_rate_hz,
                "telemetry_decimation": self.run.telemetry_decimation,
            },
            # Each model gets its own stream; the same run.seed gives the same run.
            "seeds": {"plant": 3 * seed, "transducer": 3 * seed + 1, "transducer2": 3 * seed + 2},
            "plant": self.plant_params(),
            "transducer": self.transducer_params(1),
            "transducer2": self.transducer_params(2) if self.transducer2 is not None else None,
            "profile": {
                "max_working_mpa": profile.max_working_mpa,
                "trip_mpa": profile.trip_mpa,
                "max_ramp_up_mpa_s": profile.max_ramp_up_mpa_s,
                "max_ramp_down_mpa_s": profile.max_ramp_down_mpa_s,
                "max_hold_s": profile.max_hold_s,
                "margin_mpa": profile.margin_mpa,
                "host_lost_timeout_ms": round(profile.host_lost_timeout_s * 1000.0),
                "host_lost_policy": (
                    codes.HOST_LOST_FINISH
                    if profile.host_lost_policy == "finish"
                    else codes.HOST_LOST_DEPRESSURISE
                ),
            },
            "control": dict(self.control),
            "recipe": {
                "name": self.recipe.name,
                "segments": [_board_segment(s) for s in self.recipe.segments],
            },
            "inputs": {
                "closure_locked": True,
                "estop_pressed": False,
                "glovebox_ok": True,
                "host_link": True,
            },
            "events": _board_events(self.faults),
        }
        return doc


def _board_segment(seg: Segment) -> dict[str, Any]:
    if seg.kind == "ramp":
        return {"kind": codes.SEG_RAMP, "target_mpa": seg.target_mpa, "rate_mpa_s": seg.rate_mpa_s}
    return {"kind": codes.SEG_HOLD, "duration_s": seg.duration_s}


def _transducer_action(fault: FaultSpec) -> dict[str, Any]:
    params = fault.params
    assert isinstance(params, TransducerParams)
    value, rate_hz = 0.0, 0.0
    if isinstance(params, ShortParams):
        value = params.current_ma
    elif isinstance(params, StuckParams):
        value = -1.0 if params.at_mpa is None else params.at_mpa  # < 0: where it was
    elif isinstance(params, DriftParams):
        value = params.rate_mpa_s
    elif isinstance(params, SpikeParams):
        value = params.amplitude_mpa or 0.0  # 0: the model's default
        rate_hz = params.rate_hz or 0.0
    return {
        "action": "transducer",
        "index": params.transducer - 1,
        "kind": fault.kind.removeprefix("transducer_"),
        "value": value,
        "rate_hz": rate_hz,
    }


# Faults that flip one of the board's inputs: (input, value while the fault lasts).
_INPUT_FAULTS = {
    "closure_unlocked": ("closure_locked", False),
    "estop": ("estop_pressed", True),
    "glovebox_lost": ("glovebox_ok", False),
    "host_lost": ("host_link", False),
}


def _board_events(faults: list[FaultSpec]) -> list[dict[str, Any]]:
    """The fault timeline as board actions in time order (ends of durations included)."""
    events: list[dict[str, Any]] = []
    for i, fault in enumerate(faults):
        start: dict[str, Any]
        end: dict[str, Any] | None = None
        if fault.kind.startswith("transducer_"):
            start = _transducer_action(fault)
            end = {**start, "kind": "none", "value": 0.0, "rate_hz": 0.0}
        elif fault.kind == "leak_change":
            assert isinstance(fault.params, LeakParams)
            start = {"action": "set_leak", "leak_ml_s_per_mpa": fault.params.leak_ml_s_per_mpa}
        elif fault.kind == "burst_bag":
            start = {"action": "burst_bag"}
        elif fault.kind == "pump_stuck_on":
            start = {"action": "pump_stuck_on", "on": True}
            end = {"action": "pump_stuck_on", "on": False}
        else:
            name, value = _INPUT_FAULTS[fault.kind]
            start = {"action": "input", "input": name, "on": value}
            end = {"action": "input", "input": name, "on": not value}
        events.append({"t_ms": round(fault.t_s * 1000.0), "fault": i, **start})
        if end is not None and fault.duration_s is not None:
            events.append({"t_ms": round((fault.t_s + fault.duration_s) * 1000.0), "fault": i, **end})
    events.sort(key=lambda e: (e["t_ms"], e["fault"]))
    return events


# -- loading and errors -------------------------------------------------------------------------


class ScenarioError(ValueError):
    """A scenario file that cannot be used; ``problems`` lists each as ``key.path: reason``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{source}: {count}\n" + "\n".join(f"  {p}" for p in problems))


_KEY_IN_MESSAGE = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.+)$", re.DOTALL)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _reason(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    simple = {
        "missing": "required",
        "extra_forbidden": "unknown key",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "int_type": "must be an integer",
        "int_from_float": "must be an integer",
        "bool_type": "must be true or false",
        "string_type": "must be text",
        "list_type": "must be a list (use [[...]] tables)",
        "dict_type": "must be a table",
        "model_type": "must be a table",
        "finite_number": "must be a finite number",
    }
    if kind in simple:
        return simple[kind]
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit:g}" if isinstance(limit, float | int) else str(error["msg"])
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s)"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def format_validation_error(exc: ValidationError) -> list[str]:
    """Each pydantic error as ``key.path: reason``, in the order the file has them."""
    problems: list[str] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        # Pydantic's "function-wrap"/"function-after" markers are not keys of the file.
        loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))
        path = _path(loc)
        reason = _reason(error)
        for line in reason.split("\n"):
            match = _KEY_IN_MESSAGE.match(line)
            if match and error["type"] == "value_error":
                key = match.group(1)
                full = f"{path}.{key}" if path else key
                problems.append(f"{full}: {match.group(2)}")
            else:
                problems.append(f"{path or '(file)'}: {line}")
    return problems


def _validate(data: Any, source: str) -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, format_validation_error(exc)) from None


def loads_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse and validate a scenario from TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(source, [f"(file): not valid TOML: {exc}"]) from None
    return _validate(data, source)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; :class:`ScenarioError` names every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(path), [f"(file): cannot read it: {exc}"]) from None
    return loads_scenario(text, str(path))


# -- documentation support ----------------------------------------------------------------------


def _model_paths(model: type[BaseModel], prefix: str) -> list[str]:
    paths: list[str] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        item = _list_item_model(field.annotation)
        section = _table_model(field.annotation)
        if item is not None:
            paths.extend(_model_paths(item, f"{path}[]."))
        elif section is not None:
            paths.extend(_model_paths(section, f"{path}."))
    return paths


def _table_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a nested table with its own keys (fault params are listed per kind)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation is not FaultParams:
        return annotation
    return None


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    args = getattr(annotation, "__args__", ())
    if getattr(annotation, "__origin__", None) is list and args:
        item = args[0]
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item
    return None


def scenario_key_paths() -> list[str]:
    """Every key a scenario file may hold, as ``section.key`` (``[]`` marks arrays).

    ``plant.*`` and ``transducer.*`` come from the sim models; ``transducer2`` takes the
    same keys as ``transducer``; fault parameters are listed per kind in
    :data:`PARAMS_BY_KIND`.
    """
    paths = _model_paths(Scenario, "")
    paths += [f"plant.{k}" for k in sim_models.plant_defaults()]
    paths += [f"transducer.{k}" for k in sim_models.transducer_defaults()]
    paths += [f"control.{k}" for k in control_fields()]
    for params in PARAMS_BY_KIND.values():
        paths += [f"faults[].params.{k}" for k in params.model_fields]
    return sorted(set(paths))


def fault_param_names(kind: str) -> list[str]:
    """The ``params`` keys a fault kind takes."""
    return sorted(PARAMS_BY_KIND[kind].model_fields)
