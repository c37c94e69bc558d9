"""The agent's TOML configuration: validation, unknown keys, environment overrides, the CLI check."""

from __future__ import annotations

from pathlib import Path

import pytest

from isopress.agent.config import ConfigError, load_config, parse_config
from isopress.cli import main

MINIMAL = """
[agent]
press_id = "press-01"
[serial]
port = "socket://127.0.0.1:4000"
"""


def test_the_shipped_example_config_validates(repo_root: Path) -> None:
    config = load_config(repo_root / "deploy" / "agent.example.toml", environ={})
    assert config.agent.press_id == "press-01"
    assert config.serial.port.startswith("/dev/isopress-")
    assert config.broker.session_expiry_s == 86400
    assert config.client_id == "isopress-agent-press-01"


def test_defaults_fill_everything_but_press_id_and_port() -> None:
    config = parse_config(MINIMAL, environ={})
    assert config.broker.port == 1883
    assert config.telemetry.batch_period_ms == 25
    assert config.commands.max_age_s == 10.0
    assert config.spool.synchronous == "normal"


def test_an_unknown_key_is_an_error_naming_the_key_and_the_nearest_known_one() -> None:
    text = MINIMAL + '[broker]\nhots = "x"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, "agent.toml", environ={})
    assert info.value.problems == ["broker.hots: unknown key; did you mean 'host'?"]
    assert "agent.toml" in str(info.value)


def test_every_problem_is_listed_at_once() -> None:
    text = """
[agent]
press_id = "press 01/a"
[serial]
port = "/dev/ttyACM0"
heartbeat_period_ms = 1000
heartbeat_timeout_ms = 1500
[broker]
port = 70000
[telemetry]
batch_period_ms = 500
[spool]
max_row = 10
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ={})
    problems = "\n".join(info.value.problems)
    assert len(info.value.problems) == 5, problems
    assert "agent.press_id: " in problems and "topic level" in problems
    assert "serial: heartbeat_timeout_ms (1500) must be at least twice heartbeat_period_ms (1000)" in problems
    assert "broker.port: Input should be less than or equal to 65535 (got 70000)" in problems
    assert "telemetry.batch_period_ms: " in problems
    assert "spool.max_row: unknown key; did you mean 'max_rows'?" in problems


def test_a_missing_required_key_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('[agent]\npress_id = "p"\n', environ={})
    assert info.value.problems == ["serial: required key is missing"]


def test_bad_toml_is_reported_with_its_position() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("[agent\npress_id = 1\n", environ={})
    assert info.value.problems[0].startswith("not valid TOML: ")
    assert "line 1" in info.value.problems[0]


def test_environment_overrides_the_file_with_typed_values() -> None:
    env = {
        "ISOPRESS_BROKER__HOST": "broker.lab",
        "ISOPRESS_BROKER__PORT": "8883",
        "ISOPRESS_BROKER__RECONNECT__MAX_S": "5",
        "ISOPRESS_AGENT__PRESS_ID": "press-07",
        "ISOPRESS_HOME": "/not/config",  # no "__": not a config variable
    }
    config = parse_config(MINIMAL, environ=env)
    assert config.broker.host == "broker.lab"
    assert config.broker.port == 8883
    assert config.broker.reconnect.max_s == 5.0
    assert config.agent.press_id == "press-07"


def test_a_bad_environment_override_names_the_variable() -> None:
    env = {"ISOPRESS_BROKER__PORT": "eighty", "ISOPRESS_BROKER__HOTS": "x"}
    with pytest.raises(ConfigError) as info:
        parse_config(MINIMAL, environ=env)
    problems = "\n".join(info.value.problems)
    assert "broker.port: " in problems and "(from environment ISOPRESS_BROKER__PORT)" in problems
    assert (
        "broker.hots: unknown key; did you mean 'host'? (from environment ISOPRESS_BROKER__HOTS)" in problems
    )


def test_password_file_must_exist_and_is_read(tmp_path: Path) -> None:
    missing = MINIMAL + f'[broker]\nusername = "agent"\npassword_file = "{tmp_path / "nope"}"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(missing, environ={})
    assert "no such file" in info.value.problems[0]
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    config = parse_config(MINIMAL + f'[broker]\nusername = "agent"\npassword_file = "{secret}"\n', environ={})
    assert config.broker.password() == "s3cret"


def test_config_check_exits_0_for_a_valid_file(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(repo_root / "deploy" / "agent.example.toml")]) == 0
    assert "valid" in capsys.readouterr().out


def test_config_check_exits_2_listing_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text(MINIMAL + "[broker]\nhots = 'x'\nport = 0\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "broker.hots: unknown key; did you mean 'host'?" in err
    assert "broker.port: Input should be greater than or equal to 1 (got 0)" in err


def test_config_check_of_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(tmp_path / "absent.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
