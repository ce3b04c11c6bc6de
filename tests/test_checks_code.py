"""The code-interpreter checks (`code`, `files_created`, `image`) on turn records: each passes when it should and
fails saying what the code runs were or what the code produced; the conversation-level record and the turn view
carry them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runner.expect.checks import CHECKS, CheckContext, code_error, conversation_record, turn_view
from runner.report.transcript import CodeRunRecord, OutputFile, Transcript, TurnRecord

TRACEBACK = ('Traceback (most recent call last):\n  File "<code>", line 1, in <module>\n'
             "ZeroDivisionError: division by zero\n")
LIMIT = "partial output\nExecution stopped: the code reached the time limit (60 s per call).\n"

RAN = TurnRecord(index=0, user="go", status="completed", code_runs=[
    CodeRunRecord(input="import csv\nprint('total: 4158.80')", logs="total: 4158.80\n", images=["file-img"]),
    CodeRunRecord(input="1 / 0", logs=TRACEBACK),
], images=["file-img"], files=[{"file_id": "file-csv", "path": "sandbox:/mnt/data/summary.csv"}], outputs=[
    OutputFile("file-img", "image-1.png", "image", size=10, saved_as="image-1.png", data=b"png"),
    OutputFile("file-csv", "summary.csv", "file", size=4, saved_as="summary.csv", data=b"a,b\n"),
    OutputFile("file-big", "huge.bin", "file", size=10**9, skipped="not saved: too large"),
])
CLEAN = TurnRecord(index=0, user="go", status="completed", code_runs=[CodeRunRecord(input="print(1)", logs="1\n")])
NOTHING = TurnRecord(index=0, user="hi", status="completed")


def run(kind: str, arg: Any, turn: TurnRecord) -> tuple[bool, str]:
    outcome = CHECKS[kind](arg, turn, CheckContext())
    assert not asyncio.iscoroutine(outcome)
    return outcome  # type: ignore[return-value]


def test_an_error_is_a_traceback_or_a_limit_that_stopped_the_code() -> None:
    assert code_error(CodeRunRecord("1/0", TRACEBACK))
    assert code_error(CodeRunRecord("while True: pass", LIMIT))
    assert not code_error(CodeRunRecord("print('x')", "x\n"))
    # printing the words is not stopping: the limit's sentence starts a line
    assert not code_error(CodeRunRecord("print(...)", "we said: Execution stopped: no\n"))


@pytest.mark.parametrize(("arg", "passes", "reason"), [
    (True, True, "2 code run(s)"),
    ({"contains": "import csv"}, True, 'code run 1 has code containing "import csv"'),
    ({"output_contains": "4158.80"}, True, 'code run 1 has logs containing "4158.80"'),
    ({"contains": "1 / 0", "error": True}, True, 'code run 2 has code containing "1 / 0" and an error'),
    ({"output_contains": "ZeroDivisionError", "error": True}, True, ""),
    ({"error": True}, True, "code run 2 has an error"),
    # keys combine on one run: the code with csv did not fail, the failing one has no csv
    ({"contains": "csv", "error": True}, False,
     'expected a code run with code containing "csv" and an error; the code runs were: 1: code '
     '"import csv\\nprint(\'total: 4158.80\')" -> ok, logs "total: 4158.80\\n"; 2: code "1 / 0" -> error, logs '
     '"Traceback'),
    ({"contains": "import csv", "error": False}, True, ""),
    # `error: false` alone: no run of the turn ended in an error
    ({"error": False}, False, "expected code to run without an error; the code runs were: "),
    ({"output_contains": "4158.8O"}, False, 'expected a code run with logs containing "4158.8O"; the code runs'),
])
def test_code_on_the_turns_code_runs(arg: Any, passes: bool, reason: str) -> None:
    passed, why = run("code", arg, RAN)
    assert passed is passes and why.startswith(reason), why


def test_code_without_code_runs_says_so() -> None:
    assert run("code", True, NOTHING) == (False, "expected code to run; none ran")
    assert run("code", {"error": False}, NOTHING) == (
        False, "expected code to run without an error; no code ran in this turn")
    assert run("code", {"error": False}, CLEAN) == (True, "1 code run(s), none ended in an error")
    assert run("code", {"contains": "x"}, NOTHING) == (
        False, 'expected a code run with code containing "x"; no code ran in this turn')


@pytest.mark.parametrize(("arg", "passes", "reason"), [
    ("summary.csv", True, "the code produced summary.csv, saved as summary.csv"),
    ("*.png", True, "the code produced image-1.png, saved as image-1.png"),
    ("huge.bin", True, "the code produced huge.bin (not saved: too large)"),  # produced, if not saved
    ("summary.CSV", False, 'expected the code to produce a file named "summary.CSV"; it produced image-1.png, '
                           "summary.csv, huge.bin"),
    ("*.txt", False, 'expected the code to produce a file named "*.txt"; it produced '),
])
def test_files_created_by_name_or_glob(arg: str, passes: bool, reason: str) -> None:
    passed, why = run("files_created", arg, RAN)
    assert passed is passes and why.startswith(reason), why


def test_files_created_without_files_says_so() -> None:
    assert run("files_created", "out.csv", CLEAN) == (
        False, 'expected the code to produce a file named "out.csv"; the code produced no file in this turn')


def test_image_in_a_code_run_or_the_reply() -> None:
    assert run("image", True, RAN) == (True, "the turn carries 1 image(s): 1 image output(s) of code runs, "
                                             "1 image(s) in the reply")
    reply_only = TurnRecord(index=0, user="go", images=["file-a", "file-b"])
    assert run("image", True, reply_only)[0]
    assert run("image", True, CLEAN) == (
        False, "expected an image in the reply or a code run; 0 image output(s) of code runs, 0 image(s) in the "
               'reply (the code runs were: 1: code "print(1)" -> ok, logs "1\\n")')


def test_the_conversation_record_and_the_turn_view_carry_the_code() -> None:
    transcript = Transcript(spec_file="s.yaml", name="s", backend={}, model=None, assistant=None,
                            turns=[RAN, CLEAN, TurnRecord(index=2, user="x", skipped=True,
                                                          code_runs=[CodeRunRecord("skipped")])])
    whole = conversation_record(transcript)
    assert [r.input for r in whole.code_runs] == ["import csv\nprint('total: 4158.80')", "1 / 0", "print(1)"]
    assert whole.images == ["file-img"] and len(whole.files) == 1 and len(whole.outputs) == 3
    assert run("files_created", "summary.csv", whole)[0] and run("code", {"output_contains": "1\n"}, whole)[0]
    view = turn_view(RAN)
    assert view["code_runs"][1] == {"input": "1 / 0", "logs": TRACEBACK, "images": [], "error": True}
    assert view["images"] == ["file-img"] and view["files"] == RAN.files
    assert view["outputs"][2] == {"file_id": "file-big", "name": "huge.bin", "kind": "file", "size": 10**9,
                                  "saved": False}
