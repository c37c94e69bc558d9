"""Serial fault injection (issue 7 item 3): a byte error rate of 1e-3 both ways through two
recipes. The fault proxy flips, drops, duplicates and inserts bytes between the real agent and
the real firmware (MicroPython, real time); the board's journal is the ground truth.

- zero corrupted frames accepted: every sample at the persistent subscriber packs back to the
  exact 27 bytes the board recorded (none changed, none invented);
- zero commands lost: every operator command is answered, accepted;
- zero executed twice: the board's journal holds each command once (chunks, start, pause,
  resume, abort: exactly what the accepted commands stand for);
- every gap backfilled: no sample the board produced is missing at the subscriber.
"""

from __future__ import annotations

import asyncio
from collections import Counter
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

from isopress.agent.recipe import Recipe, recipe_segments
from isopress.board_journal import audit_bodies
from isopress.broker import Mosquitto
from isopress.faultproxy import FaultRates
from isopress.rig import Station, StationSpec
from isopress.soak import PersistentSubscriber, agent_counters
from isoproto import recipe as wire_recipe

pytestmark = [pytest.mark.mqtt, pytest.mark.micropython, pytest.mark.slow]

BYTE_ERROR_RATE = 1e-3

RECIPE: dict[str, Any] = {
    "name": "faulty cable",
    "segments": [
        {"kind": "ramp", "target_mpa": 4.0, "rate_mpa_s": 2.0},
        {"kind": "hold", "duration_s": 3.0},
        {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.0},
    ],
}


# The host says little (heartbeats, commands: ~1.5 KB a run against the board's ~100 KB), so
# at 1e-3 its direction sees one or two faults; the second case damages it ten times as often
# so that commands, their replies and the retransmissions are really put to the test.
@pytest.mark.parametrize(
    ("to_board_rate", "seed"),
    [(BYTE_ERROR_RATE, 7), (10 * BYTE_ERROR_RATE, 11)],
    ids=["1e-3", "1e-2-to-board"],
)
def test_recipes_through_a_cable_with_byte_error_rate_1e_3_lose_and_change_nothing(
    broker: Mosquitto, tmp_path: Path, to_board_rate: float, seed: int
) -> None:
    # flips, drops, duplicates and inserts alike
    spec = StationSpec(
        press_id=f"faults-ber-{seed}",
        workdir=tmp_path,
        broker=handle(broker),
        to_board=FaultRates(byte_error_rate=to_board_rate),
        to_host=FaultRates(byte_error_rate=BYTE_ERROR_RATE),
        proxy_seed=seed,
        journal=True,
    )
    press = spec.press_id
    replies: list[tuple[str, dict[str, Any]]] = []

    async def body(station: Station, sub: PersistentSubscriber) -> None:
        async def cmd(verb: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
            reply = await command(broker, press, verb, fields)
            replies.append((verb, reply))
            return reply

        # 1: a whole recipe, paused and resumed in its hold
        await cmd("load-recipe", {"recipe": RECIPE})
        run1 = int((await cmd("start"))["board"]["value"])
        await until(lambda: live(sub, run1, "holding"), 20, "holding", station)
        await cmd("pause")
        await asyncio.sleep(0.5)
        await cmd("resume")
        await until(lambda: run_ended(sub, run1) is not None, 40, "run 1's summary", station)
        # 2: started again and aborted on the way up
        await until(lambda: idle(sub), 20, "idle after run 1", station)
        await cmd("load-recipe", {"recipe": RECIPE})
        run2 = int((await cmd("start"))["board"]["value"])
        await until(lambda: live(sub, run2, "pressurising"), 20, "pressurising", station)
        await asyncio.sleep(0.5)
        await cmd("abort")
        await until(lambda: run_ended(sub, run2) is not None, 40, "run 2's summary", station)
        got["upto"] = await everything_delivered(station, sub)
        got["runs"] = [run_ended(sub, run1), run_ended(sub, run2)]
        got["sub"] = sub

    got: dict[str, Any] = {}
    station = run_station(spec, broker, body)  # it checked the proxy did not fail
    proxy = station.proxy
    assert proxy is not None
    board_link = (station.board.summary or {}).get("link") or {}
    journal = journal_of(station)
    sub = got["sub"]
    boot = journal.boot_count
    historical = {seq for b, seq in sub.historical if b == boot}
    audit = audit_bodies(journal, sub.boot(boot), historical=historical, upto_seq=got["upto"])
    counters = agent_counters(station.agent_log_text())["serial"]
    executed = Counter(c.name for c in journal.commands if c.name != "REQUEST_HISTORY")
    chunks = len(wire_recipe.recipe_chunks(recipe_segments(Recipe.model_validate(RECIPE))))
    stats = proxy.stats
    report(
        f"serial_faults to_board {to_board_rate:g} to_host {BYTE_ERROR_RATE:g}",
        {
            "bytes_through": {"to_board": stats.to_board.bytes_in, "to_host": stats.to_host.bytes_in},
            "bytes_corrupted": {
                "to_board": stats.to_board.as_dict(),
                "to_host": stats.to_host.as_dict(),
            },
            "frames_rejected_by_crc": {
                "agent": counters["crc_errors"],
                "board": board_link.get("crc_errors"),
            },
            "cobs_errors_agent": counters["cobs_errors"],
            "retransmits": counters["retransmits"],
            "commands_sent_by_session": counters["commands_sent"],
            "backfill_requests": counters["history_requests"],
            "history_requests_executed_by_board": sum(
                1 for c in journal.commands if c.name == "REQUEST_HISTORY"
            ),
            "samples_backfilled": counters["samples_backfilled"],
            "board_duplicates_answered": board_link.get("duplicates"),
            "operator_commands": len(replies),
            "executed_by_board": dict(executed),
            "samples": audit.as_dict(),
        },
    )
    # zero commands lost: each one answered and accepted
    assert [v for v, r in replies if not r.get("accepted")] == [], replies
    assert [v for v, _r in replies] == [
        "load-recipe",
        "start",
        "pause",
        "resume",
        "load-recipe",
        "start",
        "abort",
    ]
    # zero executed twice (and none lost on the way to the board)
    assert executed == Counter(
        {"LOAD_RECIPE_CHUNK": 2 * chunks, "START": 2, "PAUSE": 1, "RESUME": 1, "ABORT": 1}
    ), journal.commands
    # zero corrupted frames accepted, every gap backfilled
    assert audit.corrupted == () and audit.unknown == (), audit.as_dict()
    assert audit.missing == (), audit.as_dict()
    assert audit.produced > 1000  # two recipes' worth of samples
    assert [r["outcome"] for r in got["runs"]] == ["complete", "aborted"]
    # ...and the cable really was that bad, both ways
    assert stats.to_host.byte_faults >= 20 and stats.to_board.bytes_in > 1000
    if to_board_rate > BYTE_ERROR_RATE:
        assert stats.to_board.byte_faults >= 5
    for direction, rate in ((stats.to_host, BYTE_ERROR_RATE), (stats.to_board, to_board_rate)):
        assert direction.byte_faults <= direction.bytes_in * rate * 3 + 10
    assert counters["crc_errors"] + counters["cobs_errors"] > 0  # the agent saw damaged frames
    assert counters["history_requests"] > 0 and counters["samples_backfilled"] > 0
