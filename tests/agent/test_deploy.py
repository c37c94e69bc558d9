"""The deployment files: systemd unit and udev rule say what operations.md promises."""

from __future__ import annotations

import re
from pathlib import Path


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd unit as section -> key -> values (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        assert _, f"not key=value: {raw!r}"
        current.setdefault(key, []).append(value)
    return sections


def test_the_systemd_unit_runs_the_agent_hardened_and_restarts_it(repo_root: Path) -> None:
    unit = _unit(repo_root / "deploy" / "isopress-agent.service")
    service = unit["Service"]
    assert service["ExecStart"] == ["/usr/local/bin/isopress agent --config /etc/isopress/agent.toml"]
    assert service["ExecStartPre"] == ["/usr/local/bin/isopress config check /etc/isopress/agent.toml"]
    assert service["Restart"] == ["always"] and service["KillSignal"] == ["SIGTERM"]
    assert service["User"] == ["isopress"] and "dialout" in service["SupplementaryGroups"][0]
    assert service["StateDirectory"] == ["isopress"]
    for key, value in {
        "NoNewPrivileges": "true",
        "ProtectSystem": "strict",
        "ProtectHome": "true",
        "PrivateTmp": "true",
        "DevicePolicy": "closed",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == [value], key
    assert "char-ttyACM rw" in service["DeviceAllow"]
    assert unit["Unit"]["StartLimitBurst"] == ["20"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_udev_rule_names_the_rp2040_by_its_usb_serial(repo_root: Path) -> None:
    text = (repo_root / "deploy" / "99-isopress.rules").read_text()
    rules = re.sub(r"\\\n\s*", "", text)  # join continued lines
    rp2040 = [r for r in rules.splitlines() if 'ATTRS{idVendor}=="2e8a"' in r]
    assert len(rp2040) == 1
    rule = rp2040[0]
    assert 'SUBSYSTEM=="tty"' in rule
    assert 'SYMLINK+="isopress-$env{ID_SERIAL_SHORT}"' in rule
    assert 'ENV{ID_SERIAL_SHORT}=="?*"' in rule  # no serial, no name (never a shared name)


def test_docs_mqtt_links_every_schema_and_names_every_verb(repo_root: Path) -> None:
    from isopress.agent.payloads import COMMAND_MODELS
    from isopress.agent.schemas import SCHEMAS

    text = (repo_root / "docs" / "mqtt.md").read_text()
    for stem in SCHEMAS:
        assert f"(schemas/{stem}.schema.json)" in text, stem
    for verb in COMMAND_MODELS:
        assert f"| `{verb}` |" in text, verb


def test_docs_operations_names_every_config_section(repo_root: Path) -> None:
    from isopress.agent.config import AgentConfig

    text = (repo_root / "docs" / "operations.md").read_text()
    for section in AgentConfig.model_fields:
        assert f"`[{section}]`" in text, section
