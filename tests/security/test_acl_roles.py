"""The deployed ACL's three roles against a real agent over mutual TLS: nothing leaks.

Each refused attempt is followed by a command that is allowed (a marker): once the
marker's reply is back, the broker has routed every earlier attempt (each publish waited
for its PUBACK, and Mosquitto forwards before it acknowledges) and the agent, which
handles commands one at a time in arrival order, has dealt with everything delivered
before it. So "the agent received exactly one command" means the attempts never reached it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from security_helpers import (
    DEPLOYED_ACL,
    GOOD_RECIPE,
    Lab,
    agent_config,
    collecting,
    command_payload,
    eventually,
    handled,
    hang_guard,
    mqtt_client,
    publish_command,
    running_agent,
)

from isopress.agent.topics import PressTopics, parse_command_topic
from isopress.broker import Mosquitto

pytestmark = pytest.mark.mqtt

LOAD = {"recipe": GOOD_RECIPE}


async def _attempts_then_marker(
    broker: Mosquitto,
    lab: Lab,
    folder: Path,
    attempts: list[tuple[str, str, str]],
    *,
    marker_user: str = "alice",
) -> dict[str, Any]:
    """Run an agent for press-01; publish each (user, press, operator) load-recipe; then the marker.

    Returns what the agent saw: commands received, handled, board calls, the marker's reply.
    """
    config = agent_config(broker, lab, folder, "press-01")
    # Bounded: a hang (seen once in a full run on a machine at load 10) fails in a minute
    # with every task's stack, instead of at pytest's 600 s timeout with none.
    async with hang_guard(60.0), running_agent(config) as (agent, board):
        for user, press_id, operator in attempts:
            await publish_command(
                broker, lab, user, press_id, operator, "load-recipe", command_payload(LOAD), reply_timeout_s=0
            )
        marker = await publish_command(
            broker, lab, marker_user, "press-01", marker_user, "load-recipe", command_payload(LOAD)
        )
        return {
            "received": agent.link.stats.commands_received,
            "handled": handled(agent),
            "board_calls": list(board.calls),
            "marker": marker,
        }


def _only_the_marker(seen: dict[str, Any]) -> None:
    assert seen["marker"] is not None and seen["marker"]["accepted"], seen["marker"]
    assert seen["received"] == 1, seen
    assert seen["handled"] == 1 and seen["board_calls"] == ["load_recipe"], seen


def test_a_viewers_command_never_reaches_the_agent(
    secure_broker: Mosquitto, lab: Lab, tmp_path: Path
) -> None:
    # Under its own name (which the operators' pattern would allow but for its deny
    # lines) and under an operator's.
    seen = asyncio.run(
        _attempts_then_marker(
            secure_broker,
            lab,
            tmp_path / "agent",
            [("viewer-lab", "press-01", "viewer-lab"), ("viewer-lab", "press-01", "alice")],
        )
    )
    _only_the_marker(seen)


def test_without_its_deny_lines_a_viewer_could_command(
    secure_broker: Mosquitto, lab: Lab, tmp_path: Path
) -> None:
    # Why every non-operator block carries the two deny lines: take them out of the
    # viewer's block and the pattern lets its command through to the agent. (This is the
    # scenario of the test above against a broken ACL: it shows that test can fail.)
    broken_acl = tmp_path / "broken.acl"
    broken_acl.write_text(
        "\n".join(
            line
            for line in DEPLOYED_ACL.read_text().splitlines()
            if not line.startswith("topic deny isopress/+/cmd/viewer-lab/")
        )
        + "\n"
    )
    broker = Mosquitto(tmp_path / "broken-broker", secure=lab.secure_files(acl_file=broken_acl))
    broker.start()
    try:
        seen = asyncio.run(
            _attempts_then_marker(broker, lab, tmp_path / "agent", [("viewer-lab", "press-01", "viewer-lab")])
        )
    finally:
        broker.stop()
    assert seen["received"] == 2 and seen["board_calls"] == ["load_recipe", "load_recipe"], seen


def test_an_operator_cannot_command_under_another_operators_name(
    secure_broker: Mosquitto, lab: Lab, tmp_path: Path
) -> None:
    seen = asyncio.run(
        _attempts_then_marker(
            secure_broker,
            lab,
            tmp_path / "agent",
            [
                ("alice", "press-01", "bob"),
                ("bob", "press-01", "alice"),
                ("bob", "press-01", "agent-press-01"),
            ],
            marker_user="bob",  # bob may command under his own name
        )
    )
    _only_the_marker(seen)


def test_an_agent_user_cannot_command_any_press(secure_broker: Mosquitto, lab: Lab, tmp_path: Path) -> None:
    # agent-press-02 under its own name (the pattern, but for its deny lines) and under
    # an operator's, to press-01.
    seen = asyncio.run(
        _attempts_then_marker(
            secure_broker,
            lab,
            tmp_path / "agent",
            [("agent-press-02", "press-01", "agent-press-02"), ("agent-press-02", "press-01", "alice")],
        )
    )
    _only_the_marker(seen)


def test_nobody_but_its_agent_publishes_a_press_status_state_telemetry_event_or_run(
    secure_broker: Mosquitto, lab: Lab, tmp_path: Path
) -> None:
    topics = PressTopics("press-01")
    targets = [topics.status, topics.state, topics.telemetry, topics.event, topics.run("r1")]
    spoofers = ["alice", "bob", "viewer-lab", "agent-press-02"]

    async def body() -> tuple[list[Any], list[Any], list[Any]]:
        config = agent_config(secure_broker, lab, tmp_path / "agent", "press-01")
        async with collecting(secure_broker, lab, "viewer-lab", f"{topics.base}/#") as live:
            async with running_agent(config) as (_agent, _board):
                await eventually(lambda: b"online" in [p for t, p, _r in live.messages if t == topics.status])
                for user in spoofers:
                    async with mqtt_client(secure_broker, lab, user) as client:
                        for topic in targets:
                            for retain in (False, True):
                                marker = json.dumps({"spoof": user, "retain": retain}).encode()
                                await client.publish(topic, marker, qos=1, retain=retain)
                # The agent's own next publication, after every spoof attempt was routed.
                reply = await publish_command(
                    secure_broker, lab, "alice", "press-01", "alice", "load-recipe", command_payload(LOAD)
                )
                assert reply is not None and reply["accepted"]
                await eventually(
                    lambda: any(b"command_accepted" in p for t, p, _r in live.messages if t == topics.event),
                    10,
                    "the agent's command_accepted event",
                )
            live_spoofs = live.containing(b'"spoof"')
        # A subscriber that comes later gets the retained truth, not a spoof.
        async with collecting(secure_broker, lab, "bob", f"{topics.base}/#") as later:
            await eventually(lambda: any(t == topics.status for t in later.topics()), 5, "retained status")
            await asyncio.sleep(0.3)
            retained_status = [p for t, p, _r in later.messages if t == topics.status]
            return live_spoofs, later.containing(b'"spoof"'), retained_status

    live_spoofs, later_spoofs, retained_status = asyncio.run(body())
    assert live_spoofs == [] and later_spoofs == []
    assert retained_status == [b"offline"]  # the agent's own clean "offline" at its stop


def test_an_agent_reads_only_its_own_press_commands(secure_broker: Mosquitto, lab: Lab) -> None:
    async def body() -> list[str]:
        async with collecting(secure_broker, lab, "agent-press-01", "isopress/#") as seen:
            # What the other press's agent publishes, and commands for both presses.
            async with mqtt_client(secure_broker, lab, "agent-press-02") as other:
                for topic in ("status", "state", "telemetry", "event", "run/r1", "reply/alice/x"):
                    await other.publish(f"isopress/press-02/{topic}", b"press-02 data", qos=1)
            for press_id in ("press-02", "press-01"):
                await publish_command(
                    secure_broker,
                    lab,
                    "alice",
                    press_id,
                    "alice",
                    "pause",
                    command_payload(),
                    reply_timeout_s=0,
                )
            await eventually(lambda: "isopress/press-01/cmd/alice/pause" in seen.topics(), 5, "own command")
            await asyncio.sleep(0.2)
            return seen.topics()

    assert asyncio.run(body()) == ["isopress/press-01/cmd/alice/pause"]


def test_an_agent_for_press_x_ignores_commands_for_press_y(
    secure_broker: Mosquitto, lab: Lab, tmp_path: Path
) -> None:
    # The topic parser: only this press's cmd/<operator>/<verb>, nothing that looks like it.
    own = PressTopics("press-01")
    assert parse_command_topic(own, "isopress/press-01/cmd/alice/start") == ("alice", "start")
    for foreign in (
        "isopress/press-02/cmd/alice/start",
        "isopress/press-01x/cmd/alice/start",
        "isopress/press-0/cmd/alice/start",
        "isopress/press-01/cmd/alice/start/now",
        "isopress/press-01/cmd//start",
        "isopress/press-01/cmd/alice",
        "isopress/press-01/reply/alice/start",
    ):
        assert parse_command_topic(own, foreign) is None, foreign

    # The ACL: an agent configured for press-02 but logged in as press-01's agent user
    # (a copy-paste slip) is delivered none of press-02's commands, and what it publishes
    # for press-02 reaches nobody.
    config = agent_config(secure_broker, lab, tmp_path / "agent", "press-02", user="agent-press-01")

    async def body() -> tuple[dict[str, Any] | None, int, list[str], list[str]]:
        async with (
            collecting(secure_broker, lab, "viewer-lab", "isopress/press-02/#") as viewer,
            running_agent(config) as (agent, board),
        ):
            reply = await publish_command(
                secure_broker,
                lab,
                "alice",
                "press-02",
                "alice",
                "load-recipe",
                command_payload(LOAD),
                reply_timeout_s=1.5,
            )
            return reply, agent.link.stats.commands_received, list(board.calls), viewer.topics()

    reply, received, calls, viewer_saw = asyncio.run(body())
    assert reply is None and received == 0 and calls == []
    assert viewer_saw == []  # not even its "online"


def test_replies_reach_only_the_operator_who_sent_the_command(
    secure_broker: Mosquitto, lab: Lab, tmp_path: Path
) -> None:
    config = agent_config(secure_broker, lab, tmp_path / "agent", "press-01")

    async def body() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with collecting(secure_broker, lab, "bob", "isopress/#") as bob, running_agent(config):
            out["own"] = await publish_command(
                secure_broker, lab, "alice", "press-01", "alice", "pause", command_payload()
            )
            # A response topic in bob's reply tree, or outside the reply tree: the agent
            # answers in alice's own reply topic instead.
            for response_topic in ("isopress/press-01/reply/bob/inbox", "elsewhere/alice"):
                out[response_topic] = await publish_command(
                    secure_broker,
                    lab,
                    "alice",
                    "press-01",
                    "alice",
                    "pause",
                    command_payload(),
                    response_topic=response_topic,
                    listen_on="isopress/press-01/reply/alice",
                )
            await asyncio.sleep(0.2)
        out["bob_saw_replies"] = [t for t in bob.topics() if "/reply/" in t]
        out["bob_saw_commands"] = [t for t in bob.topics() if "/cmd/" in t]
        return out

    out = asyncio.run(body())
    for key in ("own", "isopress/press-01/reply/bob/inbox", "elsewhere/alice"):
        reply = out[key]
        assert reply is not None and reply["operator"] == "alice" and not reply["accepted"], (key, reply)
        assert "not allowed while the press is idle" in reply["error"]
    assert out["bob_saw_replies"] == []
    assert len(out["bob_saw_commands"]) == 3  # operators see the commands sent (an audit), not replies


def test_a_viewer_reads_the_public_topics_and_nothing_else(
    secure_broker: Mosquitto, lab: Lab, tmp_path: Path
) -> None:
    config = agent_config(secure_broker, lab, tmp_path / "agent", "press-01")

    async def body() -> set[str]:
        async with (
            collecting(secure_broker, lab, "viewer-lab", "#") as viewer,
            running_agent(config) as (agent, _board),
        ):
            reply = await publish_command(
                secure_broker, lab, "alice", "press-01", "alice", "load-recipe", command_payload(LOAD)
            )
            assert reply is not None and reply["accepted"]
            await eventually(lambda: agent.spool.rows == 0, 5, "spool drained")
            await asyncio.sleep(0.2)
        return {t.split("/", 2)[2].split("/")[0] for t in viewer.topics()}

    assert asyncio.run(body()) == {"status", "state", "telemetry", "event"}
