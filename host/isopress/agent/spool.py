"""The store-and-forward spool: an SQLite outbox (WAL) between the board and the broker.

Every sample, event and run summary is written here before it is published, and deleted
only after the broker acknowledged it (QoS 1 PUBACK). An agent crash, a broker outage or
a network cut therefore loses nothing that reached the host: the backlog is replayed, in
order, when the broker is back. Delivery is at least once: a row acknowledged by the broker
but not yet deleted at a crash is published again, so subscribers dedupe by
``(boot_count, seq)``. Acknowledged rows leave the spool's counts and :meth:`Spool.oldest`
at once, the table in groups (see :meth:`Spool.acknowledge`): at most
``_DELETE_EVERY_ROWS`` rows (80 ms at 100 Hz), or a second's worth when the agent's
housekeeping deletes them, are published again after a crash.

The spool is bounded (rows and payload bytes). When full, the oldest telemetry and event
rows are dropped first; the counts are kept (in the database, so they survive a restart)
until the agent reports them as an event.

Calls are synchronous and short (about 20 us for a transaction of a few samples with WAL
and ``synchronous=NORMAL``), so they run on the event loop thread: no executor hop per sample.
The agent is the database's only user: the connection holds SQLite's lock from open to
close (``locking_mode=EXCLUSIVE``), which spares the file-lock calls of every transaction
(and the ``-shm`` file); a second process (another agent on the same spool, an ``sqlite3``
shell) gets "database is locked" until the agent stops.

Durability (docs/operations.md): every append is committed before it is published. With
``synchronous=NORMAL`` a commit is in the WAL in the OS's page cache, so an agent crash
loses nothing; the WAL is flushed to disk at each checkpoint, so a power cut can roll
back the commits since the last one. ``synchronous=FULL`` flushes at every commit.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

__all__ = [
    "STREAM_EVENT",
    "STREAM_RETAINED",
    "STREAM_TELEMETRY",
    "Outgoing",
    "Spool",
    "SpoolError",
    "SpooledRow",
]

STREAM_TELEMETRY = 0  # samples: batched into telemetry messages
STREAM_EVENT = 1  # board and agent events: one message each
STREAM_RETAINED = 2  # run summaries: retained, never dropped for space

_OUTBOX_COLUMNS = """
    id INTEGER PRIMARY KEY,
    stream INTEGER NOT NULL,
    topic TEXT NOT NULL,
    retain INTEGER NOT NULL,
    historical INTEGER NOT NULL,
    boot_count INTEGER,
    seq INTEGER,
    body TEXT NOT NULL
"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS outbox ({_OUTBOX_COLUMNS});
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


# Row ids are given by the spool (see Spool._last_id), not by AUTOINCREMENT, whose
# sqlite_sequence row cost a second page write per transaction.
_INSERT = (
    "INSERT INTO outbox(id, stream, topic, retain, historical, boot_count, seq, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# A burst of up to this many rows (a read period's samples) is one multi-row INSERT: in
# autocommit mode one statement is one transaction, where BEGIN, executemany and COMMIT
# were three calls into SQLite per burst.
_ONE_STATEMENT_ROWS = 8
_INSERT_N = [
    "INSERT INTO outbox(id, stream, topic, retain, historical, boot_count, seq, body) VALUES "
    + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * n)
    for n in range(_ONE_STATEMENT_ROWS + 1)
]
# A spool created with AUTOINCREMENT is rebuilt without it at open when it holds at most
# this many rows (normally it is near empty); a bigger backlog is left as it is (ids are
# given by the spool either way) until an open finds it drained.
_REBUILD_MAX_ROWS = 100_000
_RECENT_MAX_ROWS = 10_000  # waiting rows kept in memory for oldest() (100 s at 100 Hz)
# Acknowledged rows are deleted from the table once this many are (one DELETE and commit per
# ~3 batches at 100 Hz, where each batch's own cost a commit and a WAL page): see
# acknowledge(). Few enough that the table stays one page (a bigger one writes two a commit).
_DELETE_EVERY_ROWS = 8
# A checkpoint (the WAL flushed to disk, with synchronous=NORMAL the only flush) every 470
# WAL pages rather than SQLite's 1000: at 100 Hz the spool writes ~51 pages/s (an insert
# per batch, a delete per _DELETE_EVERY_ROWS rows, a page each), so a power cut can roll
# back ~9 s of commits, as when every batch was deleted on its own (~76 pages/s, 700 pages).
_WAL_CHECKPOINT_PAGES = 470
_LOCK_WAIT_S = 5.0  # at open, how long to wait for another process to let go of the database
_REBUILD = f"""
CREATE TABLE outbox_new ({_OUTBOX_COLUMNS});
INSERT INTO outbox_new SELECT id, stream, topic, retain, historical, boot_count, seq, body FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
"""


class SpoolError(RuntimeError):
    """The spool database cannot be opened or written."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Something to publish: a JSON ``body`` for ``topic``.

    ``historical`` is True for data that came from the board's history (backfill).
    ``boot_count``/``seq`` identify samples and events (for dedupe and diagnostics).
    """

    stream: int
    topic: str
    body: str
    retain: bool = False
    historical: bool = False
    boot_count: int | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class SpooledRow:
    """A row waiting in the outbox; ``row_id`` orders the replay."""

    row_id: int
    stream: int
    topic: str
    retain: bool
    historical: bool
    body: str


@dataclass(frozen=True, slots=True)
class DropCounts:
    """Rows dropped because the spool was full, by kind, since they were last reported."""

    samples: int = 0
    events: int = 0

    @property
    def total(self) -> int:
        """Samples plus events."""
        return self.samples + self.events


class Spool:
    """The outbox. Use as a context manager (or :meth:`open` / :meth:`close`)."""

    def __init__(
        self,
        path: Path,
        *,
        max_rows: int = 2_000_000,
        max_bytes: int = 512 * 1024 * 1024,
        synchronous: Literal["normal", "full"] = "normal",
    ) -> None:
        self.path = path
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.synchronous = synchronous
        self._db: sqlite3.Connection | None = None
        self._rows = 0
        self._bytes = 0
        # The highest id in use. Waiting rows must come back in insert order, and the MQTT
        # link flags every row up to last_row_id() at connect as backlog, so ids only grow
        # while the spool is open: seeded at open from the highest id waiting (ids of rows
        # deleted before then are free again: nothing outside the table refers to them),
        # advanced by each committed append. SQLite's own max(rowid)+1 would restart at 1
        # whenever the table drains, below a connection's backlog mark.
        self._last_id = 0
        # The waiting rows as appended, oldest first, while they are ALL the waiting rows
        # (``_recent_whole``): oldest() then reads them here instead of from the table. That
        # holds from an empty spool on until rows are dropped for space or more than
        # _RECENT_MAX_ROWS wait (a broker outage); from then on oldest() reads the table,
        # until the spool is empty again.
        self._recent: collections.deque[SpooledRow] = collections.deque()
        self._recent_whole = False
        # Acknowledged rows still in the table, ids _acked_first.._acked_last (0: none):
        # always the table's oldest rows (see acknowledge()).
        self._acked_first = 0
        self._acked_last = 0
        self._changed = asyncio.Event()
        self.appended_at = -1e9  # time.monotonic() of the last append with rows

    # -- life cycle --------------------------------------------------------------------
    def open(self) -> Spool:
        """Open (or create) the database; counts what is waiting in it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=_LOCK_WAIT_S
            )
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"cannot open the spool {self.path}: {exc}") from exc
        try:
            # Before the first access, so that the WAL index lives in this process's memory.
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            db.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_PAGES}")
            db.executescript(_SCHEMA)
            with _transaction(db):  # takes the lock now: a second agent fails here, not later
                rows, size, last_id = db.execute(
                    "SELECT count(*), coalesce(sum(length(body)), 0), coalesce(max(id), 0) FROM outbox"
                ).fetchone()
                (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'outbox'").fetchone()
                if "AUTOINCREMENT" in sql.upper() and rows <= _REBUILD_MAX_ROWS:
                    for statement in _REBUILD.split(";"):
                        if statement.strip():
                            db.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            db.close()
            hint = (
                " (another process has it open: is a second agent running?)" if "locked" in str(exc) else ""
            )
            raise SpoolError(f"cannot open the spool {self.path}: {exc}{hint}") from exc
        self._db = db
        self._rows = int(rows)
        self._bytes = int(size)
        self._last_id = int(last_id)
        self._recent.clear()
        self._recent_whole = self._rows == 0
        self._acked_first = self._acked_last = 0
        if self._rows:
            self._changed.set()
        return self

    def close(self) -> None:
        """Delete the acknowledged rows and close the database (a clean close also checkpoints the WAL)."""
        if self._db is not None:
            try:
                self.delete_acknowledged()
            finally:
                self._db.close()
                self._db = None

    def __enter__(self) -> Spool:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection (raises :class:`SpoolError` when closed)."""
        if self._db is None:
            raise SpoolError("the spool is not open")
        return self._db

    # -- writing -----------------------------------------------------------------------
    def append(self, items: Sequence[Outgoing], *, meta: dict[str, str] | None = None) -> None:
        """Write ``items`` (and ``meta`` values) atomically, dropping the oldest rows if full."""
        if not items and not meta:
            return
        db = self.db
        added_bytes = sum(len(i.body) for i in items)
        rows, size = self._rows + len(items), self._bytes + added_bytes
        first_id = self._last_id + 1
        if (
            len(items) <= _ONE_STATEMENT_ROWS
            and not meta
            and rows <= self.max_rows
            and size <= self.max_bytes
        ):
            # The common case at 100 Hz (a few samples per read): one statement, its own transaction.
            values: list[int | str | None] = []
            for n, item in enumerate(items):
                values += _values(first_id + n, item)
            db.execute(_INSERT_N[len(items)], values)
            freed_rows = freed_bytes = 0
        else:
            self.delete_acknowledged()  # before: _make_room must not count them as dropped
            with _transaction(db):
                db.executemany(_INSERT, [_values(first_id + n, i) for n, i in enumerate(items)])
                for key, value in (meta or {}).items():
                    self.set_meta(key, value)
                # After the insert, so that a batch larger than the bound is trimmed too.
                freed_rows, freed_bytes = self._make_room(rows, size)
        # Counters change only once the transaction committed.
        if self._recent_whole:
            if freed_rows or len(self._recent) + len(items) > _RECENT_MAX_ROWS:
                self._forget_recent()
            else:
                self._recent.extend(
                    SpooledRow(first_id + n, i.stream, i.topic, bool(i.retain), bool(i.historical), i.body)
                    for n, i in enumerate(items)
                )
        self._last_id += len(items)
        self._rows += len(items) - freed_rows
        self._bytes += added_bytes - freed_bytes
        if items:
            self.appended_at = time.monotonic()
            self._changed.set()

    def _make_room(self, rows: int, size: int) -> tuple[int, int]:
        """Delete the oldest droppable rows until ``rows``/``size`` fit the bounds; returns what was freed."""
        excess_rows = rows - self.max_rows
        excess_bytes = size - self.max_bytes
        if excess_rows <= 0 and excess_bytes <= 0:
            return 0, 0
        db = self.db
        dropped = {STREAM_TELEMETRY: 0, STREAM_EVENT: 0}
        freed_rows = freed_bytes = 0
        last_id = 0
        # Oldest first, in chunks, until both bounds hold; run summaries are never dropped.
        while freed_rows < excess_rows or freed_bytes < excess_bytes:
            chunk = db.execute(
                "SELECT id, stream, length(body) FROM outbox "
                "WHERE stream IN (?, ?) AND id > ? ORDER BY id LIMIT 1000",
                (STREAM_TELEMETRY, STREAM_EVENT, last_id),
            ).fetchall()
            if not chunk:
                break
            for row_id, stream, length in chunk:
                if freed_rows >= excess_rows and freed_bytes >= excess_bytes:
                    break
                last_id = row_id
                freed_rows += 1
                freed_bytes += length
                dropped[stream] += 1
        if last_id:
            db.execute(
                "DELETE FROM outbox WHERE stream IN (?, ?) AND id <= ?",
                (STREAM_TELEMETRY, STREAM_EVENT, last_id),
            )
            self._add_meta_int("dropped_samples", dropped[STREAM_TELEMETRY])
            self._add_meta_int("dropped_events", dropped[STREAM_EVENT])
            self._add_meta_int("dropped_samples_total", dropped[STREAM_TELEMETRY])
            self._add_meta_int("dropped_events_total", dropped[STREAM_EVENT])
        return freed_rows, freed_bytes

    # -- reading and acknowledging -----------------------------------------------------
    def oldest(self, limit: int) -> list[SpooledRow]:
        """Up to ``limit`` waiting rows, oldest first."""
        if self._recent_whole and len(self._recent) == self._rows:
            return list(itertools.islice(self._recent, limit))
        return self.oldest_in_table(limit)

    def oldest_in_table(self, limit: int) -> list[SpooledRow]:
        """:meth:`oldest` read from the table (what it returns when the rows are not in memory)."""
        rows = self.db.execute(
            "SELECT id, stream, topic, retain, historical, body FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (self._acked_last, limit),
        ).fetchall()
        return [SpooledRow(r[0], r[1], r[2], bool(r[3]), bool(r[4]), r[5]) for r in rows]

    def acknowledge(self, rows: Sequence[SpooledRow]) -> None:
        """Forget rows the broker acknowledged.

        ``rows`` must be consecutive rows of one :meth:`oldest` result: they are then
        exactly the rows left between the first and the last id, and one range delete
        removes them. Rows dropped meanwhile (spool full) are simply gone already.

        They leave the counts and :meth:`oldest` at once, the table later when they are the
        oldest rows, as in the live flow (the rows in memory, nothing dropped): together
        with the next ones, once ``_DELETE_EVERY_ROWS`` wait for it, or at
        :meth:`delete_acknowledged` (the agent calls it once a second) or :meth:`close`.
        One DELETE and commit per group rather than per batch; the price is that a crash
        meanwhile publishes them again (at least once, as ever).
        """
        if not rows:
            return
        first, last = rows[0].row_id, rows[-1].row_id
        recent = self._recent
        n = len(rows)
        if (
            self._recent_whole
            and len(recent) == self._rows >= n
            and recent[0].row_id == first
            and recent[n - 1].row_id == last
            and (not self._acked_last or first == self._acked_last + 1)
        ):
            for _ in range(n):
                recent.popleft()
            self._rows -= n
            self._bytes -= sum(len(r.body) for r in rows)
            if not self._acked_last:
                self._acked_first = first
            self._acked_last = last
            if last - self._acked_first + 1 >= _DELETE_EVERY_ROWS:
                self.delete_acknowledged()
            if self._rows == 0:
                self._changed.clear()
            return
        self.delete_acknowledged()
        gone = self.db.execute("DELETE FROM outbox WHERE id BETWEEN ? AND ?", (first, last)).rowcount
        if gone == n:
            self._rows -= gone
            self._bytes -= sum(len(r.body) for r in rows)
        else:  # some were dropped for space while in flight: count again
            count, size = self.db.execute(
                "SELECT count(*), coalesce(sum(length(body)), 0) FROM outbox"
            ).fetchone()
            self._rows, self._bytes = int(count), int(size)
        if self._recent_whole:
            if recent and recent[0].row_id == first:
                while recent and recent[0].row_id <= last:
                    recent.popleft()
            if len(recent) != self._rows:  # not the rows acknowledged: read the table from now on
                self._forget_recent()
        if self._rows == 0:
            recent.clear()
            self._recent_whole = True
            self._changed.clear()

    def delete_acknowledged(self) -> None:
        """Delete the acknowledged rows still in the table (see :meth:`acknowledge`)."""
        if self._acked_last:
            self.db.execute(
                "DELETE FROM outbox WHERE id BETWEEN ? AND ?", (self._acked_first, self._acked_last)
            )
            self._acked_first = self._acked_last = 0

    @property
    def acknowledged_in_table(self) -> int:
        """Acknowledged rows not yet deleted from the table."""
        return self._acked_last - self._acked_first + 1 if self._acked_last else 0

    def _forget_recent(self) -> None:
        self.delete_acknowledged()  # only while the rows are in memory (see acknowledge())
        self._recent.clear()
        self._recent_whole = False

    def last_row_id(self) -> int:
        """The highest row id written since open, or waiting at open (0 for an empty spool).

        Rows appended later get higher ids, for as long as the spool stays open.
        """
        return self._last_id

    @property
    def rows(self) -> int:
        """Rows waiting."""
        return self._rows

    @property
    def payload_bytes(self) -> int:
        """Payload bytes waiting."""
        return self._bytes

    async def wait_for_rows(self) -> None:
        """Return once at least one row is waiting."""
        while self._rows == 0:
            self._changed.clear()
            await self._changed.wait()

    # -- drop accounting and small persistent values -------------------------------------
    def take_dropped(self) -> DropCounts:
        """Rows dropped since the last call (the counter is reset; totals are kept)."""
        samples = self._meta_int("dropped_samples")
        events = self._meta_int("dropped_events")
        if samples or events:
            with _transaction(self.db):
                self.set_meta("dropped_samples", "0")
                self.set_meta("dropped_events", "0")
        return DropCounts(samples, events)

    def dropped_totals(self) -> DropCounts:
        """Rows dropped since the spool was created."""
        return DropCounts(self._meta_int("dropped_samples_total"), self._meta_int("dropped_events_total"))

    def get_meta(self, key: str) -> str | None:
        """A small persistent value (e.g. the recipe last loaded), or None."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Store a small persistent value."""
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _meta_int(self, key: str) -> int:
        value = self.get_meta(key)
        return int(value) if value else 0

    def _add_meta_int(self, key: str, delta: int) -> None:
        if delta:
            self.set_meta(key, str(self._meta_int(key) + delta))


def _values(row_id: int, i: Outgoing) -> tuple[int, int, str, int, int, int | None, int | None, str]:
    return (row_id, i.stream, i.topic, int(i.retain), int(i.historical), i.boot_count, i.seq, i.body)


class _transaction:
    """BEGIN ... COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
