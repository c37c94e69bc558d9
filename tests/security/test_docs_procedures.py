"""docs/security.md's procedures, followed step by step: add a press, an operator, a viewer; remove one.

The ACL blocks are read out of docs/security.md itself, so the page cannot drift from what
works; certificates come from isopress-pki.sh, passwords from mosquitto_passwd, and the
broker takes them with a reload (SIGHUP, what `systemctl reload mosquitto` sends).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest
from security_helpers import (
    DEPLOYED_ACL,
    GOOD_RECIPE,
    Lab,
    agent_config,
    collecting,
    command_payload,
    connect_error,
    eventually,
    mqtt_client,
    publish_command,
    running_agent,
)

from isopress.broker import Mosquitto

pytestmark = pytest.mark.mqtt

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
LOAD = {"recipe": GOOD_RECIPE}


def doc_block(user: str) -> str:
    """The fenced ACL block of docs/security.md that begins with ``user <user>``."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    stripped = ["\n".join(line.strip() for line in b.strip().splitlines()) + "\n" for b in blocks]
    found = [b for b in stripped if b.startswith(f"user {user}\n")]
    assert len(found) == 1, f"docs/security.md has {len(found)} ACL blocks for {user}"
    return found[0]


@pytest.fixture
def own_broker(lab: Lab, tmp_path: Path) -> Iterator[tuple[Mosquitto, Path, Path]]:
    """A secure broker with its own copies of the ACL and password files, to edit."""
    acl, passwd = tmp_path / "isopress.acl", tmp_path / "passwd"
    shutil.copy(DEPLOYED_ACL, acl)
    shutil.copy(lab.passwd_file, passwd)
    broker = Mosquitto(tmp_path / "broker", secure=lab.secure_files(acl_file=acl, password_file=passwd))
    broker.start()
    yield broker, acl, passwd
    broker.stop()


def _delete_password(passwd: Path, user: str) -> None:
    subprocess.run(["mosquitto_passwd", "-D", str(passwd), user], check=True, capture_output=True, timeout=30)


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def test_adding_an_operator_and_a_viewer_then_removing_the_operator(
    own_broker: tuple[Mosquitto, Path, Path], lab: Lab, tmp_path: Path
) -> None:
    broker, acl, passwd = own_broker

    async def body() -> None:
        config = agent_config(broker, lab, tmp_path / "agent", "press-01")
        async with running_agent(config) as (agent, board):
            lab.add_user("carol", passwd)
            lab.add_user("viewer-hall-screen", passwd)
            assert "Not authorized" in (await connect_error(mqtt_client(broker, lab, "carol")) or "")
            with acl.open("a") as f:
                f.write("\n" + doc_block("carol") + "\n" + doc_block("viewer-hall-screen"))
            broker.reload()

            async def carol_in() -> bool:
                return await connect_error(mqtt_client(broker, lab, "carol")) is None

            await _until(carol_in, "carol to be let in after the reload")
            reply = await publish_command(
                broker, lab, "carol", "press-01", "carol", "load-recipe", command_payload(LOAD)
            )
            assert reply is not None and reply["accepted"] and reply["operator"] == "carol", reply
            # The new viewer reads the press but cannot command it, under any name.
            async with collecting(broker, lab, "viewer-hall-screen", "isopress/press-01/status") as screen:
                await eventually(lambda: bool(screen.messages), 5, "the viewer reading the retained status")
            for name in ("viewer-hall-screen", "carol"):
                await publish_command(
                    broker,
                    lab,
                    "viewer-hall-screen",
                    "press-01",
                    name,
                    "pause",
                    command_payload(),
                    reply_timeout_s=0,
                )
            marker = await publish_command(
                broker, lab, "carol", "press-01", "carol", "pause", command_payload()
            )
            assert (
                marker is not None
                and agent.link.stats.commands_received == 2
                and board.calls == ["load_recipe"]
            )

            # Removing carol: password and block gone, reload; her open connection is cut.
            async with mqtt_client(broker, lab, "carol") as carol:
                _delete_password(passwd, "carol")
                acl.write_text(acl.read_text().replace(doc_block("carol"), ""))
                broker.reload()
                with pytest.raises(aiomqtt.MqttError):
                    async with asyncio.timeout(5):
                        async for _message in carol.messages:
                            pass
            assert "Not authorized" in (await connect_error(mqtt_client(broker, lab, "carol")) or "")

    asyncio.run(body())


def test_adding_a_press(own_broker: tuple[Mosquitto, Path, Path], lab: Lab, tmp_path: Path) -> None:
    broker, acl, passwd = own_broker
    lab.add_user("agent-press-03", passwd)
    with acl.open("a") as f:
        f.write("\n" + doc_block("agent-press-03"))
    broker.reload()
    config = agent_config(broker, lab, tmp_path / "agent", "press-03", user="agent-press-03")

    async def body() -> None:
        async with (
            collecting(broker, lab, "viewer-lab", "isopress/press-03/#") as viewer,
            running_agent(config) as (_agent, board),
        ):
            await eventually(
                lambda: (
                    ("isopress/press-03/status", b"online", True) in viewer.messages
                    or ("isopress/press-03/status", b"online", False) in viewer.messages
                ),
                5,
                "press-03 online, as the viewer sees it",
            )
            reply = await publish_command(
                broker, lab, "alice", "press-03", "alice", "load-recipe", command_payload(LOAD)
            )
            assert reply is not None and reply["accepted"], reply
            assert board.calls == ["load_recipe"]

    asyncio.run(body())
