"""The deployed broker files: both fixture variants come from one config; the ACL has its documented shape."""

from __future__ import annotations

import re
from pathlib import Path

from security_helpers import AGENTS, DEPLOYED_ACL, OPERATORS, VIEWERS

from isopress.broker import SecureFiles, render_config

DEPLOYED_CONF = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "isopress.conf"
SECURITY_KEYS = (
    "cafile",
    "certfile",
    "keyfile",
    "require_certificate",
    "use_identity_as_username",
    "tls_version",
    "password_file",
    "acl_file",
)
FILES = SecureFiles(
    cafile=Path("/t/ca.pem"),
    certfile=Path("/t/broker.pem"),
    keyfile=Path("/t/broker.key"),
    password_file=Path("/t/passwd"),
    acl_file=Path("/t/isopress.acl"),
)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _keys(text: str) -> dict[str, str]:
    return {line.split(None, 1)[0]: line.split(None, 1)[1] for line in _lines(text) if " " in line}


def test_the_deployed_config_is_secure() -> None:
    keys = _keys(DEPLOYED_CONF.read_text())
    assert keys["allow_anonymous"] == "false"
    assert keys["require_certificate"] == "true" and keys["tls_version"] == "tlsv1.2"
    assert keys["listener"] == "8883"
    assert keys["acl_file"].endswith("isopress.acl") and keys["password_file"]
    assert keys["per_listener_settings"] == "false"  # one password file and ACL for the listener


def test_plain_and_secure_variants_keep_every_other_deployed_setting(tmp_path: Path) -> None:
    template = DEPLOYED_CONF.read_text()
    deployed = _lines(template)
    plain = _lines(render_config(template, port=1234, workdir=tmp_path))
    secure = _lines(render_config(template, port=1234, workdir=tmp_path, secure=FILES))
    machine = ("listener", "persistence_location", "log_dest", "pid_file", "user")
    shared = [
        line for line in deployed if not line.startswith(machine + SECURITY_KEYS + ("allow_anonymous",))
    ]
    assert "persistence true" in shared and "autosave_on_changes true" in shared
    for line in shared:  # persistence, queues, packet size, logging: what a lab deploys
        assert line in plain and line in secure, line
    # plain: an anonymous loopback listener and nothing of the security
    assert "listener 1234 127.0.0.1" in plain and "allow_anonymous true" in plain
    assert not [line for line in plain if line.startswith(SECURITY_KEYS)]
    # secure: the deployed security as it is, with this broker's files, under its listener
    assert "allow_anonymous false" in secure and "allow_anonymous true" not in secure
    listener = secure.index("listener 1234 127.0.0.1")
    for line in (
        "require_certificate true",
        "tls_version tlsv1.2",
        "cafile /t/ca.pem",
        "keyfile /t/broker.key",
    ):
        assert secure.index(line) > listener, line
    assert "acl_file /t/isopress.acl" in secure and "password_file /t/passwd" in secure
    assert not [line for line in secure if "/etc/mosquitto" in line]


def _acl_blocks(text: str) -> tuple[list[str], dict[str, list[str]]]:
    patterns: list[str] = []
    blocks: dict[str, list[str]] = {}
    user: str | None = None
    for line in _lines(text):
        if line.startswith("pattern "):
            patterns.append(line)
        elif line.startswith("user "):
            user = line.split(None, 1)[1]
            assert user not in blocks, f"user {user} has two blocks"
            blocks[user] = []
        else:
            assert user is not None, (
                f"a topic line outside any user block applies to anonymous clients: {line}"
            )
            blocks[user].append(line)
    return patterns, blocks


def test_the_deployed_acl_has_the_documented_shape() -> None:
    # The role tests run this file; this checks its shape, the rules docs/security.md
    # gives for adding users, so that an edit that breaks them fails here by name.
    patterns, blocks = _acl_blocks(DEPLOYED_ACL.read_text())
    assert patterns == ["pattern write isopress/+/cmd/%u/+", "pattern read isopress/+/reply/%u/#"]
    assert set(blocks) == {*AGENTS.values(), *OPERATORS, *VIEWERS}
    public_reads = [f"topic read isopress/+/{t}" for t in ("status", "state", "telemetry", "event", "run/+")]
    for user, lines in blocks.items():
        denies = [f"topic deny isopress/+/cmd/{user}/+", f"topic deny isopress/+/reply/{user}/#"]
        if user in OPERATORS:
            assert lines == [*public_reads, "topic read isopress/+/cmd/+/+"], user
        elif user in VIEWERS:
            assert lines == [*denies, *public_reads], user
        else:
            press = user.removeprefix("agent-")
            assert AGENTS[press] == user
            writes = [f"topic write isopress/{press}/{t}" for t in ("status", "state", "telemetry", "event")]
            assert lines == [
                *denies,
                *writes,
                f"topic write isopress/{press}/run/+",
                f"topic write isopress/{press}/reply/+/#",
                f"topic read isopress/{press}/cmd/+/+",
            ], user
        for line in lines:
            assert re.fullmatch(r"topic (read|write|deny) isopress/[^ ]+", line), line
