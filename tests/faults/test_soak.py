"""The soak (``make soak``) in a minute: broker SIGKILLed every 10 s, the cable damaged and
unplugged, the agent hung and killed, recipes pressed throughout; nothing lost, changed,
dropped or run twice. (Issue 7 item 4's broker test: the agent back within 5 s of each return.)"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from isopress.board_journal import SampleAudit
from isopress.soak import (
    BrokerOutage,
    PersistentSubscriber,
    SoakConfig,
    SoakReport,
    agent_connect_times,
    agent_counters,
    main,
    rss_kib,
    run_soak,
)

SOAK_TEST_S = 60.0


@pytest.mark.mqtt
@pytest.mark.micropython
@pytest.mark.slow
def test_a_minute_of_soak_with_the_broker_killed_every_10_s_loses_nothing(tmp_path: Path) -> None:
    config = SoakConfig(
        workdir=tmp_path,
        duration_s=SOAK_TEST_S,
        broker_kill_every_s=10.0,
        byte_error_rate=1e-4,
        unplug_every_s=25.0,
        agent_freeze_every_s=22.0,  # SIGSTOP 3 s at ~22 s and ~47 s
        agent_kill_every_s=35.0,  # SIGKILL and restart at ~35 s
        seed=3,
    )
    notes: list[str] = []
    report = asyncio.run(run_soak(config, progress=notes.append))
    summary = report.as_dict()
    print(report.text())  # the figures, in the test log (-s)
    assert report.problems() == [], (report.text(), notes)
    # It did what it says: the broker died and came back, the cable was damaged, the press ran.
    assert len(report.outages) >= 5
    times = report.reconnect_times()
    assert all(t is not None and 0 <= t <= 5.0 for t in times), times
    # 100 Hz when the loop keeps time; a loaded machine makes the real-time board miss ticks
    assert report.produced > 30 * 100
    assert report.delivered == report.produced and report.lost == 0 and report.corrupted == 0
    assert sum(report.commands_sent.values()) >= 8 and report.runs_completed >= 1
    # Two runs started on the board; the second need not have ended inside the minute (at
    # load 10 a full run missed that by seconds, with nothing lost or run twice).
    assert report.commands_executed["START"] >= 2
    assert sum(report.commands_executed.values()) == sum(report.expected_executions().values())
    faults = report.faults
    assert faults["agent_sigstops"] >= 1 and faults["agent_sigkills"] >= 1
    assert faults["to_board"]["byte_faults"] + faults["to_host"]["byte_faults"] > 0
    assert report.agent["serial"]["crc_errors"] >= 0 and report.board_link["commands_executed"] > 0
    for part in ("agent", "board"):
        assert report.rss_kib[part]["start"] > 0 and report.rss_kib[part]["end"] > 0
    assert json.loads(json.dumps(summary))["samples"]["lost"] == 0
    assert "result    PASS" in report.text()


def test_the_agents_log_gives_its_connect_times_and_counters() -> None:
    log = "\n".join(
        [
            "2026-12-02 18:00:00,250 INFO isopress.agent.mqtt: connected to 127.0.0.1:1883 as agent-p",
            "2026-12-02 18:00:01,000 WARNING isopress.agent.mqtt: broker 127.0.0.1:1883: lost; reconnecting",
            "2026-12-02 18:00:03,500 INFO isopress.agent.mqtt: connected to 127.0.0.1:1883 as agent-p",
            '2026-12-02 18:00:09,000 INFO isopress.agent: mqtt counters: {"connects": 2, "last_error": "x"}',
            '2026-12-02 18:00:09,001 INFO isopress.agent: serial session counters: {"crc_errors": 4}',
            '2026-12-02 18:00:19,001 INFO isopress.agent: serial session counters: {"crc_errors": 1}',
        ]
    )
    times = agent_connect_times(log)
    first = datetime(2026, 12, 2, 18, 0, 0, 250000).timestamp()
    assert times == pytest.approx([first, first + 3.25])
    assert agent_counters(log) == {"serial": {"crc_errors": 5}, "mqtt": {"connects": 2}}


def test_soak_settings_are_checked_and_rss_is_read() -> None:
    with pytest.raises(ValueError, match="duration_s"):
        SoakConfig(workdir=Path("."), duration_s=0)
    with pytest.raises(ValueError, match="broker_kill_every_s"):
        SoakConfig(workdir=Path("."), broker_kill_every_s=1.0, broker_down_s=2.0)
    import os

    assert rss_kib(os.getpid()) > 1000 and rss_kib(2**22 + 7) == -1


def test_the_subscriber_keeps_samples_as_the_boards_bytes() -> None:
    sub = PersistentSubscriber("127.0.0.1", 1, "p")
    sample = {
        "boot_count": 2,
        "seq": 7,
        "board_ms": 70,
        "wall_time": "2026-12-02T18:00:00Z",
        "pressure_mpa": 1.5,
        "setpoint_mpa": 1.5,
        "pump_duty": 3,
        "vent_duty": 0,
        "faults": 0,
        "state": "holding",
        "flags": 31,
        "segment": 1,
        "run_id": 1,
        "historical": False,
    }
    body = json.dumps({"press_id": "p", "samples": [sample, {**sample, "historical": True}]}).encode()
    sub.on_message("isopress/p/telemetry", body)
    sub.on_message("isopress/p/state", b'{"state": "holding"}')
    sub.on_message("isopress/p/run/r1", b'{"board_run_id": 1, "outcome": "complete"}')
    assert sub.received == 2 and len(sub.bodies[(2, 7)]) == 1 and (2, 7) in sub.historical
    assert sub.latest is not None and sub.latest["seq"] == 7 and sub.state == {"state": "holding"}
    assert sub.runs["r1"]["outcome"] == "complete" and sub.has_all(2, 7, 7) and not sub.has_all(2, 6, 7)


def test_main_rejects_a_bad_duration(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match="duration_s"):
        main(["--duration-s", "0", "--workdir", "/tmp/isopress-soak-never"])
    assert time.monotonic() - started < 5


def _report(**changes: object) -> SoakReport:
    audit = SampleAudit(
        boot_count=1,
        first_seq=0,
        last_seq=99,
        produced=100,
        delivered=100,
        received=100,
        missing=(),
        corrupted=(),
        unknown=(),
        historical=0,
    )
    report = SoakReport(
        config={"seed": 1},
        elapsed_s=10.0,
        samples=[audit],
        commands_sent=Counter({"load-recipe": 1, "start": 1}),
        commands_accepted=Counter({"load-recipe": 1, "start": 1}),
        commands_executed=Counter({"LOAD_RECIPE_CHUNK": 1, "START": 1}),
        outages=[BrokerOutage(killed_at=100.0, back_at=101.0, agent_connected_at=101.5)],
    )
    for name, value in changes.items():
        setattr(report, name, value)
    return report


def test_the_soak_report_names_every_broken_promise() -> None:
    assert _report().problems() == [] and "result    PASS" in _report().text()
    lost = _report(samples=[dataclasses.replace(_report().samples[0], missing=(5, 6))])
    assert lost.problems() == ["2 samples lost between the board and the subscriber"]
    changed = _report(samples=[dataclasses.replace(_report().samples[0], corrupted=(5,))])
    assert "changed" in changed.problems()[0]
    twice = _report(commands_executed=Counter({"LOAD_RECIPE_CHUNK": 1, "START": 2}))
    assert "executed twice" in twice.problems()[0]
    lost_cmd = _report(commands_executed=Counter({"LOAD_RECIPE_CHUNK": 1}))
    assert "lost or executed twice" in lost_cmd.problems()[0]
    slow = _report(outages=[BrokerOutage(100.0, 101.0, 106.5)])
    assert slow.problems() == ["broker outage 1: the agent took 5.50 s to reconnect"]
    # the agent's connect logged 5 ms before the soak's probe saw the port: reconnected at once
    first = _report(outages=[BrokerOutage(100.0, 101.0, 100.995)])
    assert first.reconnect_times() == [0.0] and first.problems() == []
    never = _report(outages=[BrokerOutage(100.0, 101.0, None)])
    assert never.problems() == ["broker outage 1: the agent never reconnected"]
    assert "FAIL" in never.text() and never.as_dict()["broker"]["reconnect_s"] == [None]
