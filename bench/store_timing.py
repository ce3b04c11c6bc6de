"""`runner ...` with the backend's SQLite statements timed: how long they hold the server's event loop.

    SERVE_LOAD_TIMING=out.json python bench/store_timing.py serve --provider echo --port 0 --db x.sqlite3

bench/serve_load.py --store-timing starts the server this way. Every statement the store executes is timed
(wall clock and the thread's CPU time, around `execute` and the fetch of its rows) and counted by its first
word (BEGIN, COMMIT, INSERT, UPDATE, SELECT, ...), and so is every call of a store method (statements and
JSON); the totals are written as JSON to $SERVE_LOAD_TIMING when the store closes (a graceful shutdown).
Statements run on the event loop's thread, so their time is time no request progresses.
"""

from __future__ import annotations

import collections
import json
import os
import sqlite3
import sys
import threading
import time
from typing import Any

STORE = "store calls (statements + JSON, outside BEGIN/COMMIT)"
# word -> [count, wall seconds, CPU seconds of the thread]: on a busy machine the wall clock also counts the time
# the server waited for a core, so the CPU time is the cost; wall - CPU is I/O waits (fsync) only on an idle machine
TOTALS: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])


class _TimedCursor(sqlite3.Cursor):
    """A cursor whose fetches count as SELECT time (a query's rows are computed as they are fetched)."""

    def fetchone(self) -> Any:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return super().fetchone()
        finally:
            _add("SELECT", start, cpu, count=0)

    def fetchall(self) -> list[Any]:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return super().fetchall()
        finally:
            _add("SELECT", start, cpu, count=0)


def _add(word: str, start: float, cpu: float, count: int = 1) -> None:
    totals = TOTALS[word]
    totals[0] += count
    totals[1] += time.perf_counter() - start
    totals[2] += time.thread_time() - cpu


class TimedConnection(sqlite3.Connection):
    """A connection that counts and times its statements by their first word."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        """Execute and time one statement."""
        word = sql.split(None, 1)[0].upper()
        if threading.current_thread() is not threading.main_thread():
            word = f"{word} (off the event loop)"  # e.g. a background checkpoint: it does not block requests
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return self.cursor(_TimedCursor).execute(sql, parameters)
        finally:
            _add(word, start, cpu)

    def close(self) -> None:
        """Close, then write the totals where $SERVE_LOAD_TIMING says."""
        super().close()
        target = os.environ.get("SERVE_LOAD_TIMING")
        if target:
            with open(target, "w", encoding="utf-8") as out:
                json.dump({word: {"count": int(n), "seconds": wall, "cpu": cpu}
                           for word, (n, wall, cpu) in TOTALS.items()}, out)


def main() -> None:
    """Run the runner CLI with every SQLite connection it opens timed."""
    connect = sqlite3.connect

    def timed_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return connect(*args, **kwargs, factory=TimedConnection)

    sqlite3.connect = timed_connect  # type: ignore[assignment]
    from runner.server.store import Store

    depth = [0]

    def timed(method: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:  # the outermost call only: a store method calling another counts once
                    _add(STORE, start, cpu)
        return wrapper

    for name in ("insert", "get", "private", "set_private", "update", "delete", "list", "with_status", "of_run",
                 "children", "answer_for", "remember_answer"):
        if hasattr(Store, name):
            setattr(Store, name, timed(getattr(Store, name)))
    from runner.cli import main as runner_main

    sys.argv = ["runner", *sys.argv[1:]]
    runner_main()


if __name__ == "__main__":
    main()
