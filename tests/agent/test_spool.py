"""The SQLite outbox: order, acknowledgement, bounds with drop accounting, restart."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from isopress.agent import spool as spool_module
from isopress.agent.spool import STREAM_EVENT, STREAM_RETAINED, STREAM_TELEMETRY, Outgoing, Spool, SpoolError


def _sample(seq: int, size: int = 10) -> Outgoing:
    return Outgoing(STREAM_TELEMETRY, "t", f'{{"seq":{seq},"pad":"{"x" * size}"}}', boot_count=1, seq=seq)


def test_rows_come_back_oldest_first_and_go_only_when_acknowledged(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as spool:
        spool.append([_sample(i) for i in range(5)])
        spool.append([Outgoing(STREAM_EVENT, "e", '{"k":1}', historical=True)])
        rows = spool.oldest(100)
        assert [r.stream for r in rows] == [0, 0, 0, 0, 0, 1]
        assert [r.row_id for r in rows] == sorted(r.row_id for r in rows)
        assert rows[-1].historical and not rows[0].historical
        spool.acknowledge(rows[:2])
        assert spool.rows == 4
        assert spool.payload_bytes == sum(len(r.body) for r in rows[2:])
        assert [r.body for r in spool.oldest(2)] == [rows[2].body, rows[3].body]
        spool.acknowledge(rows[:2])  # already gone: nothing happens
        assert spool.rows == 4
        assert spool.payload_bytes == sum(len(r.body) for r in rows[2:])


def test_the_spool_survives_a_restart_with_its_counts(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path) as spool:
        spool.append([_sample(i) for i in range(3)])
        spool.set_meta("loaded_recipe", '{"name":"r"}')
        last = spool.last_row_id()
        size = spool.payload_bytes
    with Spool(path) as again:
        assert again.rows == 3
        assert again.payload_bytes == size
        assert again.last_row_id() == last
        assert again.get_meta("loaded_recipe") == '{"name":"r"}'
        assert [r.row_id for r in again.oldest(10)] == [last - 2, last - 1, last]


def test_the_database_is_in_wal_mode(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as spool:
        spool.append([_sample(0)])
        assert spool.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert spool.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert spool.db.execute("PRAGMA locking_mode").fetchone()[0] == "exclusive"
        assert spool.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 470


def test_a_full_spool_drops_the_oldest_rows_and_counts_them(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_rows=100) as spool:
        spool.append([Outgoing(STREAM_RETAINED, "run/1", '{"run":1}', retain=True)])
        spool.append([_sample(i) for i in range(90)])
        spool.append([Outgoing(STREAM_EVENT, "e", '{"k":1}')])
        spool.append([_sample(i) for i in range(90, 120)])
        assert spool.rows == 100
        rows = spool.oldest(1000)
        assert rows[0].stream == STREAM_RETAINED  # run summaries are never dropped
        seqs = [int(r.body.split(",")[0].split(":")[1]) for r in rows if r.stream == STREAM_TELEMETRY]
        assert seqs == list(range(22, 120))  # 22 oldest samples dropped, the rest in order
        dropped = spool.take_dropped()
        assert (dropped.samples, dropped.events) == (22, 0)
        assert spool.take_dropped().total == 0  # reported once
        assert spool.dropped_totals().samples == 22


def test_the_byte_bound_holds_too(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_bytes=100_000) as spool:
        for start in range(0, 2000, 100):
            spool.append([_sample(i, size=100) for i in range(start, start + 100)])
        assert spool.payload_bytes <= 100_000
        assert spool.payload_bytes == spool.db.execute("SELECT sum(length(body)) FROM outbox").fetchone()[0]
        assert spool.take_dropped().samples == 2000 - spool.rows


def test_drop_counts_survive_a_restart_until_reported(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path, max_rows=100) as spool:
        spool.append([_sample(i) for i in range(150)])
    with Spool(path, max_rows=100) as again:
        assert again.take_dropped().samples == 50


def test_wait_for_rows_wakes_on_append(tmp_path: Path) -> None:
    async def scenario(spool: Spool) -> bool:
        waiter = asyncio.create_task(spool.wait_for_rows())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        spool.append([_sample(0)])
        await asyncio.wait_for(waiter, 1.0)
        return True

    with Spool(tmp_path / "s.db") as spool:
        assert asyncio.run(scenario(spool))


def test_an_unwritable_spool_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SpoolError, match="cannot open the spool"):
        Spool(blocker / "sub" / "s.db").open()


def test_a_failed_append_changes_nothing(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_rows=100) as spool:
        spool.append([_sample(i) for i in range(100)])
        bad = Outgoing(None, "t", "{}")  # type: ignore[arg-type]  # stream is NOT NULL
        with pytest.raises(sqlite3.IntegrityError):
            spool.append([_sample(100), bad])
        assert spool.rows == 100
        assert spool.db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 100
        assert spool.take_dropped().total == 0


def test_acknowledging_rows_dropped_in_flight_keeps_the_counts_right(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_rows=100) as spool:
        spool.append([_sample(i) for i in range(100)])
        in_flight = spool.oldest(50)
        spool.append([_sample(i) for i in range(100, 130)])  # drops 30 of the in-flight rows
        spool.acknowledge(in_flight)
        assert spool.rows == 80
        assert spool.payload_bytes == spool.db.execute("SELECT sum(length(body)) FROM outbox").fetchone()[0]


def test_meta_is_written_with_the_rows_or_not_at_all(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as spool:
        spool.append([_sample(1)], meta={"session_checkpoint": "boot 1 upto 1"})
        assert spool.get_meta("session_checkpoint") == "boot 1 upto 1"
        bad = Outgoing(None, "t", "{}")  # type: ignore[arg-type]  # stream is NOT NULL
        with pytest.raises(sqlite3.IntegrityError):
            spool.append([_sample(2), bad], meta={"session_checkpoint": "boot 1 upto 2"})
        assert spool.get_meta("session_checkpoint") == "boot 1 upto 1"
        assert spool.rows == 1


def test_row_ids_keep_growing_after_the_spool_drains(tmp_path: Path) -> None:
    # The MQTT link flags rows up to last_row_id() at connect as backlog: an id handed out
    # again after the table drained would make a live sample "historical".
    with Spool(tmp_path / "s.db") as spool:
        spool.append([_sample(i) for i in range(3)])
        first = spool.oldest(10)
        spool.acknowledge(first)
        assert spool.rows == 0
        mark = spool.last_row_id()
        spool.append([_sample(3)])
        spool.append([_sample(4), _sample(5)])
        later = spool.oldest(10)
        assert [r.row_id for r in later] == [mark + 1, mark + 2, mark + 3]
        assert spool.last_row_id() == mark + 3


def test_after_a_restart_new_rows_come_after_the_waiting_ones(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path) as spool:
        spool.append([_sample(i) for i in range(5)])
        spool.acknowledge(spool.oldest(2))  # rows 1, 2 gone; 3..5 wait
    with Spool(path) as again:
        assert again.last_row_id() == 5
        again.append([_sample(5)])
        rows = again.oldest(10)
        assert [r.row_id for r in rows] == [3, 4, 5, 6]
        assert [r.body for r in rows][-1] == _sample(5).body


def test_a_second_process_cannot_open_the_spool_while_the_agent_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("isopress.agent.spool._LOCK_WAIT_S", 0.1)
    path = tmp_path / "s.db"
    with Spool(path) as spool:
        spool.append([_sample(0)])
        with pytest.raises(SpoolError, match="is a second agent running"):
            Spool(path).open()
        other = sqlite3.connect(path, timeout=0.1)  # an sqlite3 shell, say
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("SELECT count(*) FROM outbox").fetchone()
        other.close()
        spool.append([_sample(1)])  # the agent's connection is unaffected
        assert spool.rows == 2
    with Spool(path) as again:  # released at close
        assert again.rows == 2


def test_a_spool_made_with_autoincrement_is_rebuilt_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(
        """
        PRAGMA journal_mode=WAL;
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT, stream INTEGER NOT NULL, topic TEXT NOT NULL,
            retain INTEGER NOT NULL, historical INTEGER NOT NULL, boot_count INTEGER, seq INTEGER,
            body TEXT NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('loaded_recipe', 'r');
        """
    )
    for seq in range(4):
        old.execute(
            "INSERT INTO outbox(stream, topic, retain, historical, boot_count, seq, body) "
            "VALUES (0, 't', 0, 0, 1, ?, ?)",
            (seq, _sample(seq).body),
        )
    old.execute("DELETE FROM outbox WHERE seq = 0")
    old.close()
    with Spool(path) as spool:
        (sql,) = spool.db.execute("SELECT sql FROM sqlite_master WHERE name = 'outbox'").fetchone()
        assert "AUTOINCREMENT" not in sql.upper()
        assert spool.get_meta("loaded_recipe") == "r"
        assert spool.rows == 3
        spool.append([_sample(4)])
        rows = spool.oldest(10)
        assert [r.row_id for r in rows] == [2, 3, 4, 5]
        assert [r.body for r in rows] == [_sample(seq).body for seq in (1, 2, 3, 4)]


def test_a_failed_small_burst_changes_nothing_either(tmp_path: Path) -> None:
    # A burst of a few rows is one multi-row INSERT, its own transaction: all or nothing.
    with Spool(tmp_path / "s.db") as spool:
        spool.append([_sample(0)])
        mark = spool.last_row_id()
        bad = Outgoing(None, "t", "{}")  # type: ignore[arg-type]  # stream is NOT NULL
        with pytest.raises(sqlite3.IntegrityError):
            spool.append([_sample(1), _sample(2), bad])
        assert spool.rows == 1
        assert spool.db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1
        assert spool.last_row_id() == mark
        spool.append([_sample(1), _sample(2)])
        assert [r.row_id for r in spool.oldest(10)] == [mark, mark + 1, mark + 2]


@pytest.mark.parametrize("seed", range(6))
def test_the_rows_kept_in_memory_are_always_the_table_s(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # oldest() serves waiting rows from memory while it has all of them: after any mix of
    # appends, acknowledgements (whole or partial, stale ones too), drops for space and
    # restarts it returns exactly what the table holds.
    import random

    monkeypatch.setattr("isopress.agent.spool._RECENT_MAX_ROWS", 150)
    rng = random.Random(seed)
    path = tmp_path / "s.db"
    spool = Spool(path, max_rows=400).open()
    seq = 0
    stale: list[list[object]] = []
    from_memory = deferred = 0
    try:
        for _ in range(400):
            op = rng.random()
            if op < 0.45:
                n = rng.choice([1, 2, 3, 9, 40])
                kind = rng.random()
                items = [
                    Outgoing(STREAM_RETAINED, "r", f'{{"r":{seq}}}', retain=True)
                    if kind < 0.05
                    else Outgoing(STREAM_EVENT, "e", f'{{"e":{seq}}}', historical=True)
                    if kind < 0.15
                    else _sample(seq + k)
                    for k in range(n)
                ]
                seq += n
                spool.append(items, meta={"session_checkpoint": str(seq)} if rng.random() < 0.1 else None)
            elif op < 0.85:
                rows = spool.oldest(rng.choice([1, 5, 250]))
                if rows:
                    cut = rng.randint(1, len(rows))
                    spool.acknowledge(rows[:cut])
                    stale.append(list(rows[:cut]))
            elif op < 0.9 and stale:
                spool.acknowledge(rng.choice(stale))  # type: ignore[arg-type]  # acknowledged before
            elif op < 0.95:
                spool.close()
                spool = Spool(path, max_rows=400).open()
            from_memory += spool._recent_whole and len(spool._recent) == spool.rows
            deferred += spool.acknowledged_in_table > 0
            assert spool.oldest(1000) == spool.oldest_in_table(1000)
            assert spool.rows == len(spool.oldest_in_table(10_000))
            in_table = spool.db.execute("SELECT count(*) FROM outbox").fetchone()[0]
            assert in_table == spool.rows + spool.acknowledged_in_table
    finally:
        spool.close()
    assert from_memory > 40, from_memory  # the memory path was exercised, not only the table's
    assert deferred > 10, deferred  # and acknowledged rows waited to be deleted


def test_the_live_flow_reads_no_rows_from_the_table(tmp_path: Path) -> None:
    # At 100 Hz: a few samples appended, read back, published, acknowledged, per period.
    # The rows come back from memory; the table sees inserts and deletes only.
    with Spool(tmp_path / "s.db") as spool:
        statements: list[str] = []
        spool.db.set_trace_callback(statements.append)
        for period in range(50):
            spool.append([_sample(3 * period + k) for k in range(3)])
            rows = spool.oldest(250)
            assert [r.body for r in rows] == [_sample(3 * period + k).body for k in range(3)]
            spool.acknowledge(rows)
        spool.db.set_trace_callback(None)
        assert not [s for s in statements if s.lstrip().upper().startswith("SELECT")], statements[:5]
        assert spool.rows == 0
        # 150 rows acknowledged 3 at a time: deleted in groups of _DELETE_EVERY_ROWS or just
        # over, not per batch.
        group = -(-spool_module._DELETE_EVERY_ROWS // 3) * 3
        deletes = [s for s in statements if s.lstrip().upper().startswith("DELETE")]
        assert group > 1 and len(deletes) == 150 // group, deletes


def test_acknowledged_rows_leave_at_once_and_the_table_in_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "_DELETE_EVERY_ROWS", 32)
    path = tmp_path / "s.db"

    def in_table(spool: Spool) -> int:
        return int(spool.db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    with Spool(path) as spool:
        for period in range(10):  # 30 rows acknowledged: fewer than a group
            spool.append([_sample(3 * period + k) for k in range(3)])
            spool.acknowledge(spool.oldest(250))
            assert spool.rows == 0 and spool.payload_bytes == 0 and spool.oldest(10) == []
        assert spool.acknowledged_in_table == 30 == in_table(spool)
        spool.append([_sample(30), _sample(31)])
        spool.acknowledge(spool.oldest(1))  # the 31st row
        spool.acknowledge(spool.oldest(1))  # the 32nd: the group is deleted
        assert spool.acknowledged_in_table == 0 == in_table(spool)
        spool.append([_sample(32), _sample(33)])
        spool.acknowledge(spool.oldest(1))
        assert [r.body for r in spool.oldest(10)] == [_sample(33).body]
        assert in_table(spool) == 2
        spool.delete_acknowledged()  # what the agent's housekeeping does once a second
        assert in_table(spool) == 1 and spool.acknowledged_in_table == 0
        spool.append([_sample(34)])
        spool.acknowledge(spool.oldest(1))
        assert in_table(spool) == 2
    with Spool(path) as again:  # a clean close deleted them
        assert again.rows == 1 and [r.body for r in again.oldest(10)] == [_sample(34).body]


def test_rows_acknowledged_but_not_yet_deleted_at_a_crash_are_published_again(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path).open()
    spool.append([_sample(i) for i in range(3)])
    spool.acknowledge(spool.oldest(10))
    assert spool.rows == 0
    spool.db.close()  # a crash: the process ends without Spool.close()
    spool._db = None
    with Spool(path) as again:
        assert [r.body for r in again.oldest(10)] == [_sample(i).body for i in range(3)]


def test_a_full_spool_does_not_count_acknowledged_rows_as_dropped(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_rows=10) as spool:
        spool.append([_sample(i) for i in range(6)])
        spool.acknowledge(spool.oldest(4))  # 4 acknowledged (still in the table), 2 wait
        spool.append([_sample(i) for i in range(6, 16)])  # 12 waiting: the 2 oldest go
        dropped = spool.take_dropped()
        assert dropped.samples == 2, dropped
        assert [r.body for r in spool.oldest(100)] == [_sample(i).body for i in range(6, 16)]
