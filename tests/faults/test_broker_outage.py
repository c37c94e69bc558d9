"""A long broker outage with the deployed reconnect settings: the agent is back within 5 s of
the broker's return (its backoff is capped at broker.reconnect.max_s), and the persistent
subscriber misses no sample of the outage. (Short outages every 10 s: ``test_soak.py``.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import everything_delivered, handle, idle, journal_of, report, subscribed, until

from isopress.agent.config import load_config
from isopress.board_journal import audit_bodies
from isopress.broker import Mosquitto
from isopress.rig import Station, StationSpec
from isopress.soak import agent_connect_times

pytestmark = [pytest.mark.mqtt, pytest.mark.micropython, pytest.mark.slow]

OUTAGE_S = 12.0  # long enough for the backoff to reach its cap (0.5, 1, 2, 4, 4 s ...)
RECONNECT_LIMIT_S = 5.0


def test_after_a_long_broker_outage_the_agent_is_back_within_5_s_and_nothing_is_lost(
    broker: Mosquitto, tmp_path: Path, repo_root: Path
) -> None:
    deployed = load_config(repo_root / "deploy" / "agent.example.toml", environ={}).broker.reconnect
    assert deployed.max_s + 0.5 < RECONNECT_LIMIT_S  # the promise rests on this cap
    spec = StationSpec(
        press_id="faults-outage",
        workdir=tmp_path,
        broker=handle(broker),
        journal=True,
        broker_reconnect_s=(deployed.initial_s, deployed.max_s),
    )
    got: dict[str, Any] = {}

    async def body(station: Station) -> None:
        async with subscribed(broker, spec.press_id) as sub:
            await until(lambda: idle(sub), 30, "the press idle", station)
            await asyncio.sleep(1.0)
            got["killed_at"] = time.time()
            await asyncio.to_thread(broker.kill)
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(broker.start)
            got["back_at"] = time.time()
            got["upto"] = await everything_delivered(station, sub, timeout_s=40)
            got["delivered_at"] = time.time()
            got["sub"] = sub

    try:
        with Station(spec) as station:
            asyncio.run(body(station))
    finally:
        if not broker.running:
            broker.start()
    connects = [t for t in agent_connect_times(station.agent_log_text()) if t > got["killed_at"]]
    assert connects, station.agent_log_text()[-3000:]
    reconnect_s = connects[0] - got["back_at"]
    journal = journal_of(station)
    audit = audit_bodies(journal, got["sub"].boot(journal.boot_count), upto_seq=got["upto"])
    report(
        "broker_outage",
        {
            "outage_s": OUTAGE_S,
            "broker_reconnect": {"initial_s": deployed.initial_s, "max_s": deployed.max_s},
            "agent_reconnect_after_return_s": round(reconnect_s, 3),
            "all_delivered_after_return_s": round(got["delivered_at"] - got["back_at"], 2),
            "samples": audit.as_dict(),
        },
    )
    assert 0 <= reconnect_s <= RECONNECT_LIMIT_S
    assert audit.clean and audit.produced > 800, audit.as_dict()  # the outage's ~1200 included
