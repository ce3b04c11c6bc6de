"""SQLite storage of the backend's objects, with the API's cursor pagination.

Each object is kept as its wire JSON plus a little private state (what a run is waiting for);
a single table keyed by id, ordered by insertion, is all the API's list endpoints need.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from runner.server.errors import invalid, not_found

Kind = Literal["assistant", "thread", "message", "run", "run_step", "file", "upload", "upload_part", "vector_store",
               "vector_store_file", "vector_store_file_batch", "conversation", "conversation_item", "response",
               "container"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    parent TEXT,
    run_id TEXT,
    body TEXT NOT NULL,
    private TEXT
);
CREATE INDEX IF NOT EXISTS objects_by_parent ON objects (kind, parent, seq);
CREATE INDEX IF NOT EXISTS objects_parent ON objects (parent);
CREATE INDEX IF NOT EXISTS objects_run ON objects (run_id);
CREATE TABLE IF NOT EXISTS answered (
    request TEXT PRIMARY KEY,
    status INTEGER NOT NULL,
    body TEXT NOT NULL
);
"""

# Commits append to the WAL; a checkpoint copies it back into the database and fsyncs both, which stalls the
# committing thread ~10-20 ms per 1000 pages. The checkpointer thread does that work off the event loop, at most
# every CHECKPOINT_EVERY seconds of writes; the loop's own autocheckpoint only remains as a bound on the WAL.
CHECKPOINT_EVERY = 0.2
BACKSTOP_PAGES = 10000

_NOUNS = {"assistant": "assistant", "thread": "thread", "message": "message", "run": "run", "run_step": "run step",
          "file": "file", "upload": "upload", "upload_part": "upload part", "vector_store": "vector store",
          "vector_store_file": "vector store file", "vector_store_file_batch": "vector store file batch",
          "conversation": "conversation", "conversation_item": "item", "response": "response",
          "container": "container"}


@contextlib.contextmanager
def immediate_transaction(db: sqlite3.Connection, lock: threading.RLock) -> Iterator[bool]:
    """The backend's transaction discipline on a shared connection (the store's, the search index's):
    BEGIN IMMEDIATE under the lock, ROLLBACK on any exception, COMMIT otherwise; inside a transaction
    already open, join it. Yields whether this call began (and so commits) the transaction."""
    with lock:
        if db.in_transaction:
            yield False
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            yield True
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


@dataclass
class Page:
    """One page of a list endpoint, in the API's `{object: list, data, first_id, last_id, has_more}` shape."""

    data: list[dict[str, Any]]
    has_more: bool

    def body(self) -> dict[str, Any]:
        """The list response body."""
        return {
            "object": "list",
            "data": self.data,
            "first_id": self.data[0]["id"] if self.data else None,
            "last_id": self.data[-1]["id"] if self.data else None,
            "has_more": self.has_more,
        }


class _Checkpointer:
    """Checkpoints a WAL database from its own thread and connection, so that commits on the event loop never
    wait for the copy and the fsyncs (SQLite releases the GIL meanwhile). PASSIVE: it never blocks a writer."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def wrote(self) -> None:
        """A write was committed: checkpoint soon (cheap when already due: no lock taken)."""
        if not self._wake.is_set():
            self._wake.set()

    def stop(self, wait: bool = True) -> None:
        """End the thread (after the checkpoint it may be doing); `wait` joins it."""
        self._stopping.set()
        self._wake.set()
        if wait:
            self._thread.join()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None)
        try:
            while True:
                self._wake.wait()
                # let writes gather: one checkpoint (two fsyncs) per interval, not per commit
                if self._stopping.wait(CHECKPOINT_EVERY):
                    return
                self._wake.clear()
                with contextlib.suppress(sqlite3.Error):  # e.g. busy: the next one, or the backstop, catches up
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            db.close()


class Store:
    """The backend's objects in one SQLite database (`:memory:` for the embedded backend)."""

    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # re-entrant: the writes inside a transaction() take it again
        self._lock = threading.RLock()
        self._checkpointer: _Checkpointer | None = None
        wal = False
        try:
            if path != ":memory:":
                wal = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
                # NORMAL under WAL: a commit does not fsync (checkpoints do); a crash of the process loses
                # nothing, a power cut may lose the last commits but never corrupts the database
                self._db.execute("PRAGMA synchronous=NORMAL")
                if wal:
                    self._db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
            self._db.executescript(_SCHEMA)
            if wal:
                self._checkpointer = _Checkpointer(path)
                # a Store dropped without close() must not leave its thread (and its connection) behind
                weakref.finalize(self, self._checkpointer.stop, False)
        except sqlite3.Error:
            self._db.close()
            raise

    def close(self) -> None:
        """Close the database (the last connection to close checkpoints what remains of the WAL)."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._db.close()

    def _wrote(self) -> None:
        """Called after each committed write."""
        if self._checkpointer is not None and not self._db.in_transaction:
            self._checkpointer.wrote()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Make the writes inside the block one SQLite transaction: all of them land, or none.

        A transaction inside another joins it. Never await inside one: the connection is shared.
        """
        with immediate_transaction(self._db, self._lock) as began:
            yield
        if began:
            self._wrote()

    def insert(
        self, kind: Kind, body: dict[str, Any], *, parent: str | None = None, run_id: str | None = None,
        private: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store a new object and return it."""
        with self._lock:
            self._db.execute(
                "INSERT INTO objects (id, kind, parent, run_id, body, private) VALUES (?, ?, ?, ?, ?, ?)",
                (body["id"], kind, parent, run_id, json.dumps(body), json.dumps(private) if private else None),
            )
            self._wrote()
        return body

    def get(self, kind: Kind, object_id: str, *, parent: str | None = None) -> dict[str, Any]:
        """The object with this id (and parent, when given); 404 when there is none."""
        row = self._db.execute(
            "SELECT body, parent FROM objects WHERE id = ? AND kind = ?", (object_id, kind)
        ).fetchone()
        if row is None or (parent is not None and row[1] != parent):
            raise not_found(_NOUNS[kind], object_id)
        body: dict[str, Any] = json.loads(row[0])
        return body

    def get_with_private(self, kind: Kind, object_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The object with this id and the private state kept beside it, in one read; 404 when there is none."""
        row = self._db.execute(
            "SELECT body, private FROM objects WHERE id = ? AND kind = ?", (object_id, kind)
        ).fetchone()
        if row is None:
            raise not_found(_NOUNS[kind], object_id)
        return json.loads(row[0]), json.loads(row[1]) if row[1] else {}

    def private(self, object_id: str) -> dict[str, Any]:
        """The private state kept beside an object (empty when none)."""
        row = self._db.execute("SELECT private FROM objects WHERE id = ?", (object_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def set_private(self, kind: Kind, object_id: str, private: dict[str, Any]) -> None:
        """Replace only the private state kept beside an object (its body is left as it is)."""
        with self._lock:
            cur = self._db.execute("UPDATE objects SET private = ? WHERE id = ? AND kind = ?",
                                   (json.dumps(private) if private else None, object_id, kind))
            self._wrote()
        if cur.rowcount == 0:
            raise not_found(_NOUNS[kind], object_id)

    def update(self, kind: Kind, body: dict[str, Any], *, private: dict[str, Any] | None = None) -> dict[str, Any]:
        """Replace an object's stored body (and private state, when given)."""
        with self._lock:
            if private is None:
                cur = self._db.execute(
                    "UPDATE objects SET body = ? WHERE id = ? AND kind = ?", (json.dumps(body), body["id"], kind)
                )
            else:
                cur = self._db.execute(
                    "UPDATE objects SET body = ?, private = ? WHERE id = ? AND kind = ?",
                    (json.dumps(body), json.dumps(private), body["id"], kind),
                )
            self._wrote()
        if cur.rowcount == 0:
            raise not_found(_NOUNS[kind], body["id"])
        return body

    def delete(self, kind: Kind, object_id: str) -> None:
        """Delete an object and everything under it (a thread's messages, runs and steps)."""
        with self.transaction():
            cur = self._db.execute("DELETE FROM objects WHERE id = ? AND kind = ?", (object_id, kind))
            if cur.rowcount == 0:
                raise not_found(_NOUNS[kind], object_id)
            if kind in ("thread", "vector_store", "conversation"):  # and everything under it
                self._db.execute("DELETE FROM objects WHERE parent = ?", (object_id,))

    def list(
        self, kind: Kind, *, parent: str | None = None, run_id: str | None = None, limit: int = 20,
        order: str = "desc", after: str | None = None, before: str | None = None,
        matching: dict[str, str] | None = None,
    ) -> Page:
        """A page of objects in insertion order, paginated the way the API does (`after`/`before` cursors);
        `matching`: only those whose top-level fields have these values (files by `purpose`)."""
        if not 1 <= limit <= 100:
            raise invalid("limit must be between 1 and 100", "limit")
        if order not in ("asc", "desc"):
            raise invalid("order must be 'asc' or 'desc'", "order")
        where: list[str] = ["kind = ?"]
        args: list[object] = [kind]
        if parent is not None:
            where.append("parent = ?")
            args.append(parent)
        if run_id is not None:
            where.append("run_id = ?")
            args.append(run_id)
        for name, value in (matching or {}).items():
            where.append("json_extract(body, ?) = ?")
            args.extend((f"$.{name}", value))
        for cursor, param in ((after, "after"), (before, "before")):
            if cursor is None:
                continue
            row = self._db.execute("SELECT seq FROM objects WHERE id = ? AND kind = ?", (cursor, kind)).fetchone()
            if row is None:
                raise invalid(f"No {_NOUNS[kind]} found with id '{cursor}' (used as `{param}`).", param)
            forward = (param == "after") == (order == "asc")
            where.append("seq > ?" if forward else "seq < ?")
            args.append(row[0])
        # `before` walks backwards from the cursor, so fetch in reverse and flip the page back
        reverse = before is not None and after is None
        direction = "ASC" if (order == "asc") != reverse else "DESC"
        rows = self._db.execute(
            f"SELECT body FROM objects WHERE {' AND '.join(where)} ORDER BY seq {direction} LIMIT ?",
            (*args, limit + 1),
        ).fetchall()
        data = [json.loads(r[0]) for r in rows[:limit]]
        if reverse:
            data.reverse()
        return Page(data, has_more=len(rows) > limit)

    def with_status(self, kind: Kind, statuses: tuple[str, ...]) -> builtins.list[dict[str, Any]]:
        """Every object of a kind whose status is one of `statuses`, oldest first."""
        marks = ", ".join("?" for _ in statuses)
        rows = self._db.execute(
            f"SELECT body FROM objects WHERE kind = ? AND json_extract(body, '$.status') IN ({marks}) ORDER BY seq",
            (kind, *statuses),
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def of_run(self, kind: Kind, run_id: str) -> builtins.list[dict[str, Any]]:
        """Every object of a kind a run made (its steps, its messages), oldest first."""
        rows = self._db.execute(
            "SELECT body FROM objects WHERE run_id = ? AND kind = ? ORDER BY seq ASC", (run_id, kind)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def answer_for(self, request: str) -> tuple[int, str] | None:
        """The stored answer to an idempotent request (`METHOD path key`), if it was answered before."""
        row = self._db.execute("SELECT status, body FROM answered WHERE request = ?", (request,)).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def remember_answer(self, request: str, status: int, body: str) -> None:
        """Keep the answer to an idempotent request, so its retries get it instead of a second effect."""
        self._db.execute("INSERT OR REPLACE INTO answered (request, status, body) VALUES (?, ?, ?)",
                         (request, status, body))
        self._wrote()

    def children(self, kind: Kind, parent: str, *, run_id: str | None = None) -> builtins.list[dict[str, Any]]:
        """Every object of a kind under a parent, oldest first (e.g. a thread's messages); with `run_id`, only
        those of that group (a run's, a file batch's)."""
        if run_id is None:
            rows = self._db.execute(
                "SELECT body FROM objects WHERE kind = ? AND parent = ? ORDER BY seq ASC", (kind, parent)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT body FROM objects WHERE kind = ? AND parent = ? AND run_id = ? ORDER BY seq ASC",
                (kind, parent, run_id),
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def group_of(self, object_id: str) -> str | None:
        """The group an object was stored in (`run_id`: its run, or its file batch), if any."""
        row = self._db.execute("SELECT run_id FROM objects WHERE id = ?", (object_id,)).fetchone()
        return row[0] if row else None

    def holding(self, kind: Kind, key: str, value: str) -> int:
        """How many objects of a kind keep `value` under `key` in their private state (a blob's holders)."""
        row = self._db.execute("SELECT COUNT(*) FROM objects WHERE kind = ? AND json_extract(private, ?) = ?",
                               (kind, f"$.{key}", value)).fetchone()
        return int(row[0])
