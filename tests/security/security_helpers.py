"""Helpers for the security tests: the lab PKI, logged-in clients, commands, an agent over TLS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from isopress.agent.config import AgentConfig, parse_config
from isopress.agent.fake_board import FakeBoard
from isopress.agent.service import Agent
from isopress.broker import Mosquitto, SecureFiles
from isoproto import codes

REPO = Path(__file__).resolve().parents[2]
PKI_SCRIPT = REPO / "deploy" / "mosquitto" / "isopress-pki.sh"
DEPLOYED_ACL = REPO / "deploy" / "mosquitto" / "isopress.acl"

# The users of the deployed ACL (deploy/mosquitto/isopress.acl), by role.
AGENTS = {"press-01": "agent-press-01", "press-02": "agent-press-02"}
OPERATORS = ("alice", "bob")
VIEWERS = ("viewer-lab",)
USERS = (*AGENTS.values(), *OPERATORS, *VIEWERS)

GOOD_RECIPE: dict[str, Any] = {
    "name": "250 MPa cycle",
    "segments": [
        {"kind": "ramp", "target_mpa": 250.0, "rate_mpa_s": 1.0},
        {"kind": "hold", "duration_s": 300.0},
        {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 0.5},
    ],
}


def _pki(folder: Path, *args: str, ca_name: str | None = None) -> None:
    env = {**os.environ, "DAYS": "2"}
    if ca_name:
        env["CA_NAME"] = ca_name
    subprocess.run(
        ["sh", str(PKI_SCRIPT), str(folder), *args], env=env, check=True, capture_output=True, timeout=60
    )


@dataclass(frozen=True)
class Lab:
    """A lab CA (broker and user certificates), a rogue CA, and every user's password."""

    folder: Path
    passwords: dict[str, str]

    @property
    def ca(self) -> Path:
        return self.folder / "lab" / "ca.pem"

    @property
    def rogue_ca(self) -> Path:
        return self.folder / "rogue" / "ca.pem"

    @property
    def passwd_file(self) -> Path:
        return self.folder / "passwd"

    def cert(self, user: str, *, rogue: bool = False) -> tuple[Path, Path]:
        """(certificate, key) of ``user``, from the lab CA or the rogue one."""
        where = self.folder / ("rogue" if rogue else "lab")
        return where / f"{user}.pem", where / f"{user}.key"

    def password_file(self, user: str) -> Path:
        """A file holding ``user``'s password (what an agent config's password_file names)."""
        return self.folder / "secrets" / f"{user}.password"

    def secure_files(
        self, *, rogue_server: bool = False, acl_file: Path = DEPLOYED_ACL, password_file: Path | None = None
    ) -> SecureFiles:
        """The broker's files: lab CA, broker certificate (the rogue CA's if asked), passwords, ACL."""
        cert, key = self.cert("broker", rogue=rogue_server)
        return SecureFiles(
            cafile=self.ca,
            certfile=cert,
            keyfile=key,
            password_file=password_file or self.passwd_file,
            acl_file=acl_file,
        )

    def add_user(self, user: str, password_file: Path) -> str:
        """What docs/security.md says: a certificate from the lab CA, a password in ``password_file``.

        Returns the password (also written where :meth:`password_file` finds it).
        """
        _pki(self.folder / "lab", "client", user)
        password = secrets.token_urlsafe(16)
        subprocess.run(
            ["mosquitto_passwd", "-b", str(password_file), user, password],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.password_file(user).write_text(password + "\n")
        self.passwords[user] = password
        return password


def make_lab(folder: Path) -> Lab:
    """Make the PKI with deploy/mosquitto/isopress-pki.sh and the password file with mosquitto_passwd."""
    for name, ca_name in (("lab", "isopress test lab CA"), ("rogue", "somebody else's CA")):
        where = folder / name
        _pki(where, "ca", ca_name=ca_name)
        _pki(where, "server", "broker", "IP:127.0.0.1,DNS:localhost")
    for user in USERS:
        _pki(folder / "lab", "client", user)
    _pki(folder / "rogue", "client", "alice")  # the right name, signed by the wrong CA
    passwords = {user: secrets.token_urlsafe(16) for user in USERS}
    (folder / "secrets").mkdir()
    for i, (user, password) in enumerate(passwords.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run(
            ["mosquitto_passwd", *create, "-b", str(folder / "passwd"), user, password],
            check=True,
            capture_output=True,
            timeout=30,
        )
        (folder / "secrets" / f"{user}.password").write_text(password + "\n")
    return Lab(folder, passwords)


_LAB_DEFAULT = object()


def mqtt_client(
    broker: Mosquitto,
    lab: Lab,
    user: str | None,
    *,
    password: str | object | None = _LAB_DEFAULT,
    cert_of: str | object | None = _LAB_DEFAULT,
    rogue_cert: bool = False,
    trust_rogue: bool = False,
    identifier: str | None = None,
    timeout_s: float = 5.0,
) -> aiomqtt.Client:
    """An MQTT 5 client over TLS, logged in as ``user`` (None: anonymous).

    By default it presents ``user``'s lab certificate and password and trusts the lab CA;
    ``cert_of=None`` presents no certificate, ``rogue_cert`` the rogue CA's, and
    ``trust_rogue`` makes it trust the rogue CA instead of the lab's.
    """
    who = user if cert_of is _LAB_DEFAULT else cert_of
    certfile = keyfile = None
    if isinstance(who, str):
        cert, key = lab.cert(who, rogue=rogue_cert)
        certfile, keyfile = str(cert), str(key)
    pw = (lab.passwords.get(user) if user else None) if password is _LAB_DEFAULT else password
    assert pw is None or isinstance(pw, str)
    return aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=identifier or f"test-{user or 'anon'}-{uuid.uuid4().hex[:6]}",
        protocol=aiomqtt.ProtocolVersion.V5,
        username=user,
        password=pw,
        tls_params=aiomqtt.TLSParameters(
            ca_certs=str(lab.rogue_ca if trust_rogue else lab.ca), certfile=certfile, keyfile=keyfile
        ),
        timeout=timeout_s,
    )


async def connect_error(client: aiomqtt.Client) -> str | None:
    """None when ``client`` connects (it disconnects again), else the error in words."""
    try:
        async with client:
            return None
    except aiomqtt.MqttError as exc:
        cause = exc.__cause__ or exc.__context__
        return f"{exc} ({cause!r})" if cause else str(exc)


@dataclass
class Collected:
    """What one subscriber received: (topic, payload, retain)."""

    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)

    def topics(self) -> list[str]:
        return [t for t, _p, _r in self.messages]

    def containing(self, marker: bytes) -> list[tuple[str, bytes, bool]]:
        return [m for m in self.messages if marker in m[1]]


@contextlib.asynccontextmanager
async def collecting(broker: Mosquitto, lab: Lab, user: str, *topic_filters: str) -> AsyncIterator[Collected]:
    """Subscribe as ``user`` and collect everything delivered while the block runs."""
    collected = Collected()
    async with mqtt_client(broker, lab, user) as client:
        for topic_filter in topic_filters:
            await client.subscribe(topic_filter, qos=1)

        async def pump() -> None:
            async for m in client.messages:
                payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                collected.messages.append((str(m.topic), payload, bool(m.retain)))

        task = asyncio.create_task(pump())
        try:
            yield collected
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def command_payload(
    fields: dict[str, Any] | None = None,
    *,
    command_id: str | None = None,
    sent_at: datetime | None = None,
) -> bytes:
    """A command's JSON: a new command_id and sent_at now unless given, plus ``fields``."""
    body = {
        "command_id": command_id or uuid.uuid4().hex,
        "sent_at": (sent_at or datetime.now(UTC)).isoformat(),
        **(fields or {}),
    }
    return json.dumps(body).encode()


async def publish_command(
    broker: Mosquitto,
    lab: Lab,
    user: str,
    press_id: str,
    operator: str,
    verb: str,
    payload: bytes,
    *,
    retain: bool = False,
    expiry_s: int | None = None,
    response_topic: str | None = None,
    listen_on: str | None = None,
    reply_timeout_s: float = 5.0,
) -> dict[str, Any] | None:
    """Publish a command as ``user`` on ``cmd/<operator>/<verb>``; the reply, or None.

    The reply is awaited on ``listen_on`` (default: the response topic, itself by default
    ``isopress/<press_id>/reply/<user>/<random>``); ``reply_timeout_s = 0`` waits for none.
    """
    response_topic = response_topic or f"isopress/{press_id}/reply/{user}/{uuid.uuid4().hex[:8]}"
    correlation = uuid.uuid4().bytes
    async with mqtt_client(broker, lab, user) as client:
        if reply_timeout_s > 0:
            await client.subscribe(listen_on or response_topic, qos=1)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = response_topic
        props.CorrelationData = correlation
        if expiry_s is not None:
            props.MessageExpiryInterval = expiry_s
        await client.publish(
            f"isopress/{press_id}/cmd/{operator}/{verb}", payload, qos=1, retain=retain, properties=props
        )
        if reply_timeout_s <= 0:
            return None
        try:
            async with asyncio.timeout(reply_timeout_s):
                async for message in client.messages:
                    props_in = message.properties
                    if props_in is None or getattr(props_in, "CorrelationData", None) != correlation:
                        continue
                    assert isinstance(message.payload, bytes)
                    reply: dict[str, Any] = json.loads(message.payload)
                    return reply
        except TimeoutError:
            return None
    return None


def agent_config(
    broker: Mosquitto,
    lab: Lab,
    folder: Path,
    press_id: str,
    *,
    user: str | None = None,
    extra: str = "",
) -> AgentConfig:
    """An agent config for ``press_id``, logged in as ``user`` (default its agent user) over mutual TLS."""
    user = user or AGENTS[press_id]
    cert, key = lab.cert(user)
    text = f"""
[agent]
press_id = "{press_id}"
log_level = "debug"
[serial]
port = "loop://"
[broker]
host = "{broker.host}"
port = {broker.port}
username = "{user}"
password_file = "{lab.password_file(user)}"
keepalive_s = 5
publish_timeout_s = 5.0
connect_timeout_s = 3.0
[broker.tls]
ca_file = "{lab.ca}"
cert_file = "{cert}"
key_file = "{key}"
[broker.reconnect]
initial_s = 0.05
max_s = 0.5
[spool]
path = "{folder / "spool.sqlite3"}"
[runs]
folder = "{folder / "runs"}"
{extra}
"""
    return parse_config(text, environ={})


async def eventually(check: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Wait until ``check()`` holds, or fail saying what did not happen."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_agent(config: AgentConfig, *, ready: bool = True) -> AsyncIterator[tuple[Agent, FakeBoard]]:
    """The assembled agent with a fake board; with ``ready``, connected and the press idle."""
    board = FakeBoard()
    async with Agent(config, board, board.updates()) as agent:
        try:
            if ready:
                await eventually(
                    lambda: agent.link.connected.is_set() and agent.press.state == codes.ST_IDLE,
                    10,
                    f"agent connected and idle (last broker error: {agent.link.stats.last_error!r})",
                )
            yield agent, board
        finally:
            board.close()


def handled(agent: Agent) -> int:
    """Commands the agent's handler dealt with (accepted, rejected or ignored)."""
    handler = agent.handler
    assert handler is not None
    return handler.accepted + handler.rejected + handler.ignored


@contextlib.asynccontextmanager
async def hang_guard(timeout_s: float) -> AsyncIterator[None]:
    """Fail a block that takes longer than ``timeout_s`` with every task's stack in the message.

    A test that waits on the network can hang only through a bug; this turns such a hang
    into a failure that says where each task was waiting (taken before the cancellation
    unwinds them).
    """
    loop = asyncio.get_running_loop()
    stacks: list[str] = []

    def snapshot() -> None:
        for task in asyncio.all_tasks(loop):
            frames = "".join(
                f"    {f.f_code.co_filename}:{f.f_lineno} in {f.f_code.co_name}\n" for f in task.get_stack()
            )
            stacks.append(f"  {task.get_name()}: {task.get_coro()!r}\n{frames}")

    handle = loop.call_later(timeout_s, snapshot)
    try:
        async with asyncio.timeout(timeout_s + 0.2):
            yield
    except TimeoutError:
        raise AssertionError(f"hung for {timeout_s} s; tasks:\n" + "".join(stacks)) from None
    finally:
        handle.cancel()
