"""Review findings on the built-in backend: streams that always end, no lost updates, atomic state changes,
malformed requests as 400s, no half-written data, one server per database."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from runner.server.errors import APIError
from runner.server.store import Store


def _rows(store: Store, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return store._db.execute(sql, args).fetchall()


# -- store ----------------------------------------------------------------------------------------

def test_a_transaction_writes_everything_or_nothing() -> None:
    s = Store()
    s.insert("thread", {"id": "thread_1", "object": "thread"})
    with pytest.raises(RuntimeError), s.transaction():
        s.insert("message", {"id": "msg_1"}, parent="thread_1")
        s.update("thread", {"id": "thread_1", "object": "thread", "changed": True})
        with s.transaction():  # an inner transaction joins the outer one
            s.insert("message", {"id": "msg_2"}, parent="thread_1")
        raise RuntimeError("crash")
    assert s.children("message", "thread_1") == []
    assert s.get("thread", "thread_1") == {"id": "thread_1", "object": "thread"}
    with s.transaction():
        s.insert("message", {"id": "msg_3"}, parent="thread_1")
    assert [m["id"] for m in s.children("message", "thread_1")] == ["msg_3"]
    assert not s._db.in_transaction


def test_thread_delete_is_one_transaction() -> None:
    s = Store()
    s.insert("thread", {"id": "thread_1", "object": "thread"})
    s.insert("message", {"id": "msg_1"}, parent="thread_1")
    # the second statement of the delete fails: the first must not stand alone
    s._db.execute("CREATE TRIGGER no_children BEFORE DELETE ON objects WHEN old.kind = 'message' "
                  "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
    with pytest.raises(sqlite3.DatabaseError):
        s.delete("thread", "thread_1")
    assert s.get("thread", "thread_1")["id"] == "thread_1"
    assert s.get("message", "msg_1")["id"] == "msg_1"


def test_parent_and_run_lookups_use_an_index() -> None:
    s = Store()
    for sql in ("DELETE FROM objects WHERE parent = ?", "SELECT body FROM objects WHERE run_id = ? AND kind = ?"):
        plan = " ".join(str(row[-1]) for row in _rows(s, "EXPLAIN QUERY PLAN " + sql, *(["x"] * sql.count("?"))))
        assert "USING INDEX" in plan and "SCAN objects" not in plan, (sql, plan)


def test_set_private_changes_only_the_private_state() -> None:
    s = Store()
    s.insert("thread", {"id": "thread_1", "object": "thread", "metadata": {}})
    s.update("thread", {"id": "thread_1", "object": "thread", "metadata": {"k": "v"}})
    s.set_private("thread", "thread_1", {"active_run": "run_1"})
    assert s.private("thread_1") == {"active_run": "run_1"}
    assert s.get("thread", "thread_1")["metadata"] == {"k": "v"}
    s.set_private("thread", "thread_1", {})
    assert s.private("thread_1") == {}
    with pytest.raises(APIError) as info:
        s.set_private("thread", "thread_nope", {})
    assert info.value.status == 404 and "thread_nope" in info.value.message
