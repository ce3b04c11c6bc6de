"""A batch across processes, and Ctrl-C: once stops new conversations, twice cancels the running ones."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.parallel import JOBS_PER_PROCESS, can_fork, default_processes, slots

needs_fork = pytest.mark.skipif(not can_fork(), reason="helper processes are forked (Linux)")

# one rules file for all: one backend, so one assistant per process
DELAYED = ("assistant: {{model: scripted}}\nbackend: {{rules: delay.rules.yaml}}\n"
           "conversation: [{{user: 'hi {n}', expect: [{{contains: '{expect}'}}]}}]\n")


def write_delayed(folder: Path, count: int, delay_ms: int, *, failing: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "delay.rules.yaml").write_text(f"- {{user: 'hi (\\d+)', reply: 'ok \\1', delay_ms: {delay_ms}}}\n",
                                             encoding="utf-8")
    for n in range(count):
        (folder / f"c{n:03d}.yaml").write_text(
            DELAYED.format(n=n, expect="nope" if failing else f"ok {n}"), encoding="utf-8")


def runner_process(cwd: Path, *args: str, code: str = "") -> subprocess.Popen[str]:
    """`runner ARGS` in its own process (forking pytest itself is no place for helpers); `code` runs first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "OPENAI_", "CI"))}
    program = f"{code}\nimport sys\nfrom runner.cli import main\nsys.argv = ['runner', *{list(args)!r}]\nmain()\n"
    return subprocess.Popen([sys.executable, "-c", program], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout + stderr


def test_slots_share_the_concurrency_exactly() -> None:
    for concurrency in range(1, 12):
        for processes in range(1, concurrency + 1):
            shares = [slots(concurrency, processes, i) for i in range(processes)]
            assert sum(shares) == concurrency and min(shares) >= 1


def test_default_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    import runner.parallel as parallel

    monkeypatch.setattr(parallel, "can_fork", lambda: True)
    monkeypatch.setattr(parallel, "cores", lambda: 4)
    assert default_processes(1, 8) == 1  # one conversation: no helper
    assert default_processes(JOBS_PER_PROCESS * 2, 8) == 2
    assert default_processes(10_000, 8) == 4  # one per core
    assert default_processes(10_000, 2) == 2  # never more than the slots
    monkeypatch.setattr(parallel, "can_fork", lambda: False)
    assert default_processes(10_000, 8) == 1


@needs_fork
def test_two_processes_share_one_batch(tmp_path: Path) -> None:
    write_delayed(tmp_path / "s", 24, 40)
    code, output = finish(runner_process(tmp_path, "run", "s", "--processes", "2", "-j", "4", "--summary",
                                         "summary.json", "--junit", "junit.xml"))
    assert code == 0, output
    transcripts = [json.loads(p.read_text(encoding="utf-8")) for p in (tmp_path / "transcripts" / "s").glob("*.json")]
    assert len(transcripts) == 24 and all(t["verdict"] == "passed" for t in transcripts)
    # each process makes its own assistant on its own embedded backend: two ids, so both ran conversations
    assert len({t["assistant_id"] for t in transcripts}) == 2
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in summary["conversations"]] == [f"c{n:03d}" for n in range(24)]  # spec order
    assert (tmp_path / "junit.xml").read_text(encoding="utf-8").count("<testcase") == 24


@needs_fork
def test_fail_fast_stops_every_process(tmp_path: Path) -> None:
    write_delayed(tmp_path / "s", 40, 50, failing=True)
    code, output = finish(runner_process(tmp_path, "run", "s", "--processes", "2", "-j", "2", "--fail-fast"))
    assert code == 1, output
    ran = len(list((tmp_path / "transcripts" / "s").glob("*.json")))
    assert 1 <= ran <= 6, output  # the first failure, and what the two processes had already started
    assert f"{40 - ran} conversations not run" in output


@needs_fork
def test_a_helper_that_dies_is_reported_and_the_rest_is_kept(tmp_path: Path) -> None:
    """A helper killed mid-batch (here: a check that ends its process): exit 1, saying so, and the
    transcripts of every other conversation on disk."""
    folder = tmp_path / "s"
    write_delayed(folder, 0, 30)
    (folder / "checks.py").write_text(
        "import multiprocessing, os\n"
        "def alive(reply, turn):\n"
        "    if multiprocessing.parent_process() is not None and reply == 'ok 3':\n"
        "        os._exit(3)\n"
        "    return True\n", encoding="utf-8")
    for n in range(12):
        (folder / f"c{n:03d}.yaml").write_text(
            DELAYED.format(n=n, expect=f"ok {n}").replace("}]}]", "}, {python: 'checks:alive'}]}]"),
            encoding="utf-8")
    # the helper is the only one to take c003: the main process is held up until it has
    code, output = finish(runner_process(
        tmp_path, "run", "s", "--processes", "2", "-j", "2",
        code="import runner.parallel as p, time\n"
             "claim = p._Shared.claim\n"
             "def slow(self, index):\n"
             "    if index == 3 and p.multiprocessing.parent_process() is None: time.sleep(1)\n"
             "    return claim(self, index)\n"
             "p._Shared.claim = slow\n"))
    assert code == 1, output
    assert "helper process 1 ended with exit code 3" in output
    names = sorted(p.stem for p in (tmp_path / "transcripts" / "s").glob("*.json"))
    assert "c003" not in names and len(names) == 11, names


@needs_fork
def test_a_helper_that_fails_shows_its_traceback_once_and_the_others_carry_on(tmp_path: Path) -> None:
    write_delayed(tmp_path / "s", 12, 20)
    code, output = finish(runner_process(
        tmp_path, "run", "s", "--processes", "2", "-j", "2",
        code="import multiprocessing, runner.parallel as p\n"
             "real = p.execute\n"
             "async def execute(*args, **kwargs):\n"
             "    if multiprocessing.parent_process() is not None:\n"
             "        raise RuntimeError('a bug in the helper')\n"
             "    return await real(*args, **kwargs)\n"
             "p.execute = execute\n"))
    assert code == 1, output
    assert "helper process 1 failed:" in output and output.count("RuntimeError: a bug in the helper") == 1
    assert len(list((tmp_path / "transcripts" / "s").glob("*.json"))) == 12  # the main process took them all


def wait_for_transcripts(folder: Path, count: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while len(list(folder.glob("*.json"))) < count and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)


@pytest.mark.parametrize("processes", ["1", pytest.param("2", marks=needs_fork)])
def test_first_ctrl_c_lets_running_conversations_finish(tmp_path: Path, processes: str) -> None:
    write_delayed(tmp_path / "s", 20, 400)
    proc = runner_process(tmp_path, "run", "s", "--processes", processes, "-j", "2")
    out = tmp_path / "transcripts" / "s"
    wait_for_transcripts(out, 2, proc)
    proc.send_signal(signal.SIGINT)
    code, output = finish(proc)
    assert code == 130, output
    assert "stopping: no new conversation starts" in output
    transcripts = [json.loads(p.read_text(encoding="utf-8")) for p in out.glob("*.json")]
    # whatever was running when Ctrl-C came (at least one: the 400 ms runs overlap) finished normally,
    # and nothing new started after it
    assert 3 <= len(transcripts) <= 6, output
    assert all(t["verdict"] == "passed" for t in transcripts)
    assert f"interrupted: {len(transcripts)} of 20 conversations finished" in output
    assert "Traceback" not in output


HANG = ("import asyncio\n"
        "from runner.server.providers import echo\n"
        "original = echo.EchoProvider.respond\n"
        "async def respond(self, request):\n"
        "    if request.last_user_text() == 'slow':\n"
        "        await asyncio.sleep(120)\n"
        "    return await original(self, request)\n"
        "echo.EchoProvider.respond = respond\n")


@pytest.mark.parametrize("processes", ["1", pytest.param("2", marks=needs_fork)])
def test_second_ctrl_c_cancels_a_hanging_conversation(tmp_path: Path, processes: str) -> None:
    """SIGINT twice while one conversation hangs: exit 130, finished transcripts on disk, nothing half written."""
    specs = tmp_path / "specs"
    specs.mkdir()
    for name in ("a", "b", "c", "slow"):
        (specs / f"{name}.yaml").write_text(f"assistant: {{model: echo}}\nconversation: [{{user: {name}}}]\n",
                                            encoding="utf-8")
    proc = runner_process(tmp_path, "run", "specs", "-j", "4", "--processes", processes, "--junit", "j.xml",
                          code=HANG)
    out = tmp_path / "transcripts" / "specs"
    wait_for_transcripts(out, 3, proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert proc.poll() is None  # the first Ctrl-C waits for the hanging conversation
    proc.send_signal(signal.SIGINT)
    code, output = finish(proc)
    assert code == 130, output
    assert "cancelling the running conversations" in output
    assert "interrupted: 3 of 4 conversations finished" in output
    assert "Traceback" not in output
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.md", "b.json", "b.md", "c.json", "c.md"]
    junit = (tmp_path / "j.xml").read_text(encoding="utf-8")
    assert junit.count("<testcase") == 4  # the whole batch: the cancelled one is listed as skipped
    assert junit.count('<skipped message="not finished: the batch was interrupted (Ctrl-C)"') == 1
    assert 'skipped="1"' in junit and 'name="slow"' in junit


def test_second_ctrl_c_cancels_the_run_on_a_remote_backend(tmp_path: Path) -> None:
    import sqlite3

    from openai import OpenAI
    from serve_process import serving

    (tmp_path / "slow.rules.yaml").write_text("- {user: '.*', reply: late, delay_ms: 60000}\n", encoding="utf-8")
    (tmp_path / "slow.yaml").write_text("assistant: {model: scripted}\nconversation: [{user: hi}]\n",
                                        encoding="utf-8")
    with serving(tmp_path, "--rules", "slow.rules.yaml") as server:
        # polled: while a cassette records, a streamed run's events only arrive once it has ended
        proc = runner_process(tmp_path, "run", "slow.yaml", "--base-url", server.url, "--keep", "--poll")
        runs: list[tuple[str, str]] = []
        deadline = time.monotonic() + 60
        while not runs and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            with contextlib.closing(sqlite3.connect(tmp_path / "backend.sqlite3")) as db:
                runs = db.execute("SELECT id, parent FROM objects WHERE kind = 'run'").fetchall()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        code, output = finish(proc)
        assert code == 130, output
        ((run_id, thread_id),) = runs
        run = OpenAI(base_url=server.url, api_key="unused").beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        assert run.status in ("cancelling", "cancelled"), run.status
    assert not (tmp_path / "cassettes" / "slow.yaml").exists()  # half a conversation would fail its replay


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@needs_fork
def test_helpers_die_with_the_main_process_even_under_kill_9(tmp_path: Path) -> None:
    """kill -9 of `runner run` leaves no helper behind: the kernel tells each one (PR_SET_PDEATHSIG), and a
    pipe whose reader died fails instead of blocking the helper that writes to it."""
    write_delayed(tmp_path / "s", 240, 100)
    proc = runner_process(tmp_path, "run", "s", "--processes", "2", "-j", "4")
    wait_for_transcripts(tmp_path / "transcripts" / "s", 4, proc)
    helpers = _children(proc.pid)
    assert helpers, "the batch runs in two processes"
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in helpers if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], "helpers outlived the main process"
    # whatever was written is whole: every JSON transcript has its Markdown beside it
    out = tmp_path / "transcripts" / "s"
    assert {p.stem for p in out.glob("*.json")} <= {p.stem for p in out.glob("*.md")}
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("stage", ["runner.spec.load.load_cases", "runner.run.problems"])
def test_ctrl_c_before_the_batch_starts_exits_130_with_the_reports(tmp_path: Path, stage: str) -> None:
    """Ctrl-C while specs load or the preflight runs: exit 130 (not click's "Aborted!" and 1), and the JUnit
    file lists what was selected as not run."""
    write_delayed(tmp_path / "s", 3, 0)
    module, name = stage.rsplit(".", 1)
    code = (f"import os, signal, {module} as target\n"
            f"real = target.{name}\n"
            f"def interrupted(*a, **k):\n    os.kill(os.getpid(), signal.SIGINT)\n    return real(*a, **k)\n"
            f"target.{name} = interrupted\n"
            + ("import runner.cli\nrunner.cli.load_cases = interrupted\n" if name == "load_cases" else ""))
    proc = runner_process(tmp_path, "run", "s", "--junit", "j.xml", "--summary", "s.json", code=code)
    status, output = finish(proc)
    assert status == 130, output
    assert "Aborted!" not in output and "Traceback" not in output
    assert "interrupted before the batch started: nothing was run" in output
    junit = (tmp_path / "j.xml").read_text(encoding="utf-8")
    expected = 0 if name == "load_cases" else 3
    assert junit.count("<skipped") == expected and f'tests="{expected}"' in junit
    assert json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))["totals"]["conversations"] == 0
    assert not (tmp_path / "transcripts").exists()
