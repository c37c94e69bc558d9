"""Agent and board faults (issue 7 item 4), timed from the board's own journal.

- The agent hangs (SIGSTOP) in a hold: the board applies its host-lost policy (depressurise
  at the recipe's ramp-down rate, never a dump; or finish the recipe) at the first control tick past
  ``host_lost_timeout_ms`` after it last heard the host; after SIGCONT the agent
  resynchronises and the subscriber gets every sample, the outage's included.
- The board resets mid-run: its new boot starts with the outputs safe, and the reset and its
  cause are reported.

(Broker SIGKILLs: ``test_soak.py``; an agent SIGKILLed and restarted mid-run, backfilled:
``tests/session/test_virtual_board_e2e.py``.)
"""

from __future__ import annotations

import asyncio
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import (
    command,
    everything_delivered,
    handle,
    idle,
    journal_of,
    live,
    report,
    run_ended,
    run_station,
    until,
)

from isopress.board_journal import BoardJournal, audit_bodies
from isopress.broker import Mosquitto
from isopress.rig import Station, StationSpec, sim_config_text
from isopress.soak import PersistentSubscriber
from isoproto import codes
from isoproto.samples import SAMPLE_FORMAT

pytestmark = [pytest.mark.mqtt, pytest.mark.micropython, pytest.mark.slow]

HOST_LOST_TIMEOUT_MS = 2000
CONTROL_PERIOD_MS = 10  # the sim's control_period_ms (and telemetry_decimation 1)

RECIPE: dict[str, Any] = {
    "name": "hold",
    "segments": [
        {"kind": "ramp", "target_mpa": 4.0, "rate_mpa_s": 2.0},
        {"kind": "hold", "duration_s": 6.0},
        {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.0},
    ],
}

# seq, board_ms, pressure, setpoint, pump, vent, faults, state, flags, segment, run_id
_MS, _P, _PUMP, _VENT, _FAULTS, _STATE, _FLAGS = 1, 2, 4, 5, 6, 7, 8


def _rows(journal: BoardJournal) -> list[tuple[Any, ...]]:
    return [struct.unpack(SAMPLE_FORMAT, journal.samples[s]) for s in sorted(journal.samples)]


@pytest.mark.parametrize(
    "policy", [codes.HOST_LOST_DEPRESSURISE, codes.HOST_LOST_FINISH], ids=["depressurise", "finish"]
)
def test_a_hung_agent_makes_the_board_apply_its_host_lost_policy_in_time_and_then_resyncs(
    broker: Mosquitto, tmp_path: Path, policy: int
) -> None:
    config = sim_config_text(
        {"profile": {"host_lost_timeout_ms": HOST_LOST_TIMEOUT_MS, "host_lost_policy": policy}}
    )
    spec = StationSpec(
        press_id=f"faults-hang-{policy}",
        workdir=tmp_path,
        broker=handle(broker),
        board_config_text=config,
        journal=True,
    )
    press = spec.press_id
    got: dict[str, Any] = {}

    async def body(station: Station, sub: PersistentSubscriber) -> None:
        assert (await command(broker, press, "load-recipe", {"recipe": RECIPE}))["accepted"]
        start = await command(broker, press, "start")
        run_id = int(start["board"]["value"])
        await until(lambda: live(sub, run_id, "holding"), 20, "holding", station)
        await asyncio.sleep(0.5)
        station.freeze_agent()
        frozen_at = time.monotonic()
        await asyncio.sleep(HOST_LOST_TIMEOUT_MS / 1000 + 1.5)
        station.thaw_agent()
        thawed_at = time.monotonic()
        got["frozen_s"] = thawed_at - frozen_at
        host_lost = 1 << codes.F_HOST_LOST
        await until(
            lambda: any(
                sample_faults & host_lost
                for sample_faults in (_faults(b) for (boot, _s), bodies in sub.bodies.items() for b in bodies)
            ),
            20,
            "a sample with host_lost at the subscriber",
            station,
        )
        got["upto"] = await everything_delivered(station, sub)
        got["resync_s"] = time.monotonic() - thawed_at
        await until(lambda: run_ended(sub, run_id) is not None, 60, "the run's summary", station)
        got["run"] = run_ended(sub, run_id)
        vented = lambda: sub.latest is not None and sub.latest["pressure_mpa"] < 0.5  # noqa: E731
        await until(vented, 30, "the vessel vented", station)
        got["state"] = sub.state
        got["sub"] = sub
        got["events"] = list(sub.events)

    station = run_station(spec, broker, body)
    journal = journal_of(station)
    rows = _rows(journal)
    first_lost = next(i for i, r in enumerate(rows) if r[_FAULTS] & (1 << codes.F_HOST_LOST))
    hit, before = rows[first_lost], rows[first_lost - 1]
    last_heard = journal.last_host_contact_before(hit[_MS])
    latency_ms = hit[_MS] - last_heard
    sub = got["sub"]
    boot = journal.boot_count
    historical = {s for b, s in sub.historical if b == boot}
    audit = audit_bodies(journal, sub.boot(boot), historical=historical, upto_seq=got["upto"])
    after_3_s = next(r for r in rows[first_lost:] if r[_MS] >= hit[_MS] + 3000)
    report(
        f"agent_sigstop policy {policy}",
        {
            "host_lost_timeout_ms": HOST_LOST_TIMEOUT_MS,
            "last_host_contact_board_ms": last_heard,
            "policy_applied_board_ms": hit[_MS],
            "host_lost_latency_ms": latency_ms,
            "tick_before_ms": before[_MS],
            "frozen_s": round(got["frozen_s"], 2),
            "resync_to_zero_loss_s": round(got["resync_s"], 2),
            "pressure_at_fault_mpa": round(hit[_P], 3),
            "pressure_3s_later_mpa": round(after_3_s[_P], 3),
            "samples": audit.as_dict(),
        },
    )
    # The board: at the first tick past the timeout, not before, not a tick later.
    assert last_heard >= 0
    assert before[_MS] - last_heard <= HOST_LOST_TIMEOUT_MS < latency_ms
    assert latency_ms <= HOST_LOST_TIMEOUT_MS + max(CONTROL_PERIOD_MS, hit[_MS] - before[_MS])
    if policy == codes.HOST_LOST_DEPRESSURISE:
        # depressurise under control: pump off, vent open, the dump valve kept closed
        assert hit[_STATE] == codes.ST_FAULT and hit[_PUMP] == 0
        assert after_3_s[_P] < hit[_P] - 1.0 and after_3_s[_FLAGS] & codes.FLAG_DUMP_CLOSED
        assert any(r[_VENT] > 0 for r in rows[first_lost : first_lost + 300])
        assert got["run"]["outcome"] == "fault"
    else:
        # finish: the hold goes on, then the recipe's own ramp down
        assert hit[_STATE] == codes.ST_HOLDING and abs(after_3_s[_P] - 4.0) < 0.5
        assert any(r[_STATE] == codes.ST_DEPRESSURISING for r in rows[first_lost:])
        assert got["run"]["outcome"] == "complete"
    # The agent: back in step after SIGCONT, every sample of the outage delivered unchanged.
    assert audit.clean and audit.produced > 500, audit.as_dict()
    assert audit.historical > 0  # the outage came from the board's history
    assert got["state"]["board_connected"]
    assert "records_lost" not in [e.get("kind") for e in got["events"]]
    # The board's own event says the same, at the same tick.
    raised = [
        e for e in got["events"] if e.get("kind") == "fault_raised" and e.get("code_name") == "host_lost"
    ]
    assert [e["board_ms"] for e in raised] == [hit[_MS]], raised


def _faults(body: bytes) -> int:
    return int(struct.unpack(SAMPLE_FORMAT, body)[_FAULTS])


def test_a_board_reset_mid_run_boots_safe_and_is_reported_with_its_cause(
    broker: Mosquitto, tmp_path: Path
) -> None:
    spec = StationSpec(
        press_id="faults-reset", workdir=tmp_path, broker=handle(broker), boot_count=4, journal=True
    )
    press = spec.press_id
    got: dict[str, Any] = {}

    async def body(station: Station, sub: PersistentSubscriber) -> None:
        assert (await command(broker, press, "load-recipe", {"recipe": RECIPE}))["accepted"]
        run_id = int((await command(broker, press, "start"))["board"]["value"])
        await until(lambda: live(sub, run_id, "holding"), 20, "holding", station)
        await asyncio.to_thread(station.board.restart, codes.RESET_HARD)
        await until(
            lambda: any(e.get("kind") == "board_reset" for e in sub.events), 20, "board_reset", station
        )
        await until(
            lambda: idle(sub) and (sub.state or {}).get("board", {}).get("boot_count") == 5, 20, "boot 5"
        )
        boot5 = lambda: sum(1 for b, _s in sub.bodies if b == 5) >= 100  # noqa: E731
        await until(boot5, 20, "boot 5's telemetry", station)
        got["upto"] = await everything_delivered(station, sub, first_seq=0)  # a new boot: from its first
        got["sub"] = sub

    station = run_station(spec, broker, body)
    old = _rows(journal_of_boot(station, 4))
    assert (
        old[-1][_STATE] == codes.ST_HOLDING and old[-1][_FLAGS] & codes.FLAG_DUMP_CLOSED
    )  # killed in the hold
    new = journal_of(station)
    rows = _rows(new)
    first = rows[0]
    assert first[0] == 0  # the new boot's first sample
    assert first[_STATE] == codes.ST_IDLE and first[_PUMP] == 0 and first[_VENT] == 0
    assert not first[_FLAGS] & codes.FLAG_DUMP_CLOSED  # the dump valve de-energised: open
    sub = got["sub"]
    reset = next(e for e in sub.events if e.get("kind") == "board_reset")
    assert "boot count 4 -> 5" in reset["reason"] and "hard" in reset["reason"], reset
    assert sub.state["board"]["reset_cause"] == "hard"
    audit = audit_bodies(new, sub.boot(5), upto_seq=got["upto"])
    assert audit.first_seq == 0 and audit.clean, audit.as_dict()


def journal_of_boot(station: Station, boot: int) -> BoardJournal:
    return BoardJournal.read(station.board.journal_path(boot), boot)
