"""The agent's configuration: one TOML file, validated by pydantic, with environment overrides.

Every section forbids unknown keys, so a typo is an error that names the key (and the
nearest known one) instead of a silently ignored setting. Environment variables
``ISOPRESS_<SECTION>__<KEY>`` (``__`` between levels, case-insensitive) override the file;
their values are read as TOML values when they parse (``1883``, ``true``, ``"x"``, ``[1, 2]``)
and as plain strings otherwise. Variables without ``__`` (``ISOPRESS_HOME``) are not config.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "AgentConfig",
    "AgentSection",
    "BrokerSection",
    "CommandsSection",
    "ConfigError",
    "ReconnectSection",
    "RunsSection",
    "SerialSection",
    "SpoolSection",
    "TelemetrySection",
    "TlsSection",
    "load_config",
    "parse_config",
]

ENV_PREFIX = "ISOPRESS_"
_PRESS_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ReconnectSection(_Section):
    """Capped, jittered exponential backoff between reconnect attempts (serial and broker)."""

    initial_s: float = Field(default=0.5, gt=0, le=60, description="first delay, s")
    max_s: float = Field(default=30.0, gt=0, le=3600, description="cap on the delay, s")
    multiplier: float = Field(default=2.0, ge=1.0, le=10.0, description="growth per failed attempt")

    @model_validator(mode="after")
    def _cap_above_initial(self) -> ReconnectSection:
        if self.max_s < self.initial_s:
            raise ValueError(f"max_s ({self.max_s}) must be >= initial_s ({self.initial_s})")
        return self


class AgentSection(_Section):
    """Who this agent is."""

    press_id: str = Field(description="the press's name in MQTT topics: isopress/<press_id>/...")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("press_id")
    @classmethod
    def _topic_safe(cls, value: str) -> str:
        if not _PRESS_ID.match(value):
            raise ValueError(
                "must be 1-64 characters A-Z a-z 0-9 _ . - (no /, +, # or spaces): it is a topic level"
            )
        return value


class SerialSection(_Section):
    """The board's serial link."""

    port: str = Field(description="pyserial URL: /dev/isopress-<serial>, /dev/pts/N, socket://host:port")
    baudrate: int = Field(default=115200, gt=0)
    heartbeat_period_ms: int = Field(default=500, ge=50, le=60000, description="host heartbeat to the board")
    heartbeat_timeout_ms: int = Field(
        default=2000, ge=100, le=600000, description="board silent this long = link lost"
    )
    reconnect: ReconnectSection = ReconnectSection()

    @model_validator(mode="after")
    def _timeout_above_period(self) -> SerialSection:
        if self.heartbeat_timeout_ms < 2 * self.heartbeat_period_ms:
            raise ValueError(
                f"heartbeat_timeout_ms ({self.heartbeat_timeout_ms}) must be at least twice "
                f"heartbeat_period_ms ({self.heartbeat_period_ms})"
            )
        return self


class TlsSection(_Section):
    """TLS to the broker (files are PEM)."""

    ca_file: Path = Field(description="CA certificate(s) that signed the broker's certificate")
    cert_file: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    key_file: Path | None = Field(default=None, description="client key (mutual TLS)")

    @model_validator(mode="after")
    def _files_exist(self) -> TlsSection:
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: no such file: {path}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class BrokerSection(_Section):
    """The MQTT 5 broker."""

    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    tls: TlsSection | None = None
    username: str | None = None
    password_file: Path | None = Field(default=None, description="file holding the password (first line)")
    client_id: str | None = Field(default=None, description="default isopress-agent-<press_id>")
    keepalive_s: int = Field(default=15, ge=2, le=3600)
    session_expiry_s: int = Field(
        default=86400, ge=0, le=0xFFFFFFFF, description="broker keeps the session this long"
    )
    connect_timeout_s: float = Field(default=10.0, gt=0)
    publish_timeout_s: float = Field(
        default=10.0, gt=0, description="no PUBACK within this = connection presumed dead"
    )
    # Capped at 4 s: the agent is back within 5 s of the broker's return, however long it was
    # away (docs/fault-tolerance.md); a lab's handful of agents is no storm at that rate.
    reconnect: ReconnectSection = ReconnectSection(max_s=4.0)

    @model_validator(mode="after")
    def _password_file(self) -> BrokerSection:
        if self.password_file is not None:
            if self.username is None:
                raise ValueError("password_file needs username")
            if not Path(self.password_file).is_file():
                raise ValueError(f"password_file: no such file: {self.password_file}")
        return self

    def password(self) -> str | None:
        """The password read from ``password_file`` (first line), or None."""
        if self.password_file is None:
            return None
        lines = Path(self.password_file).read_text().splitlines()
        return lines[0] if lines else ""


class SpoolSection(_Section):
    """The store-and-forward spool (SQLite, WAL)."""

    path: Path = Field(default=Path("/var/lib/isopress/spool.sqlite3"), description="database file")
    max_rows: int = Field(
        default=2_000_000, ge=100, description="oldest rows dropped (and reported) beyond this"
    )
    max_bytes: int = Field(default=512 * 1024 * 1024, ge=100_000, description="payload bytes kept, at most")
    synchronous: Literal["normal", "full"] = Field(
        default="normal",
        description="normal survives an agent crash; full also a power cut, at more disk writes",
    )


class RunsSection(_Section):
    """Where run records are written."""

    folder: Path = Path("/var/lib/isopress/runs")


class TelemetrySection(_Section):
    """Batching of telemetry samples into MQTT messages."""

    # 25 ms: p50 latency about 15 ms at 100 Hz (half a period plus the broker round trip)
    # for 40 messages/s; each message costs more CPU than each sample (bench/spool_bench.py).
    batch_period_ms: int = Field(
        default=25, ge=1, le=100, description="at most one batch per period (>= 10 batches/s)"
    )
    max_batch: int = Field(default=250, ge=1, le=2000, description="samples per message, at most")


class CommandsSection(_Section):
    """Command intake."""

    max_age_s: float = Field(
        default=10.0, gt=0, le=3600, description="older commands (by sent_at) are rejected"
    )
    max_clock_skew_s: float = Field(
        default=5.0, ge=0, le=600, description="sent_at this far in the future is tolerated"
    )
    board_timeout_s: float = Field(
        default=10.0, gt=0, description="board ACK/NAK awaited this long; then the reply says pending"
    )


class AgentConfig(_Section):
    """The whole agent configuration file."""

    agent: AgentSection
    serial: SerialSection
    broker: BrokerSection = BrokerSection()
    spool: SpoolSection = SpoolSection()
    runs: RunsSection = RunsSection()
    telemetry: TelemetrySection = TelemetrySection()
    commands: CommandsSection = CommandsSection()

    @property
    def client_id(self) -> str:
        """The MQTT client id (persistent session key)."""
        return self.broker.client_id or f"isopress-agent-{self.agent.press_id}"


class ConfigError(ValueError):
    """A configuration file that cannot be used; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))


def _known_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The field names of the section at ``loc`` (for 'did you mean')."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _describe(error: Mapping[str, Any], origin: Mapping[str, str]) -> str:
    loc = tuple(error["loc"])
    path = ".".join(str(p) for p in loc) or "(file)"
    where = origin.get(path, "")
    suffix = f" (from {where})" if where else ""
    if error["type"] == "extra_forbidden":
        known = _known_keys(AgentConfig, loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = (
            f"; did you mean '{guess[0]}'?"
            if guess
            else (f"; known keys: {', '.join(known)}" if known else "")
        )
        return f"{path}: unknown key{hint}{suffix}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{path}: required key is missing{suffix}"
    value = error.get("input")
    shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
    return f"{path}: {message}{shown}{suffix}"


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Overlay ``ISOPRESS_A__B=v`` onto ``data``; returns (path -> variable, problems)."""
    origin: dict[str, str] = {}
    problems: list[str] = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            problems.append(f"{name}: empty key level in the variable name")
            continue
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(f"{name}: {'.'.join(parts)} is not inside a section")
                break
            node = child
        else:
            node[parts[-1]] = _env_value(environ[name])
            origin[".".join(parts)] = f"environment {name}"
    return origin, problems


def parse_config(
    text: str, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> AgentConfig:
    """Validate TOML ``text`` (plus environment overrides) into an :class:`AgentConfig`.

    Raises :class:`ConfigError` listing every problem; nothing is half-loaded.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    origin, problems = _apply_env(data, os.environ if environ is None else environ)
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems += [_describe(e, origin) for e in exc.errors()]
        raise ConfigError(source, problems) from None
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Read and validate a config file (see :func:`parse_config`)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    return parse_config(text, str(path), environ)
