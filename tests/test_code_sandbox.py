"""The code interpreter's sandboxed sessions (runner.server.tools.code_interpreter): state kept between calls, and
hostile code contained, each limit named in the output, with the next call working and nothing left running.

Tests that start a sandbox skip, saying why, where bubblewrap is missing or cannot start (the rest still run).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from runner.server.tools.code_interpreter import (
    CodeLimits,
    CodeResult,
    CodeSession,
    SandboxConfig,
    SandboxUnavailable,
    SessionManager,
    cgroups,
    files,
    prepare,
)
from runner.server.tools.code_interpreter.limits import describe

REPO = Path(__file__).resolve().parent.parent
HANG_GUARD = 120.0  # seconds: a call that takes this long is a hung test, not a slow one
LIMITS = CodeLimits(cpu_seconds=1, wall_seconds=15, memory_mb=256, processes=16, disk_mb=8, files=100,
                    output_chars=2000, interrupt_grace_seconds=1)
SHORT_WALL = replace(LIMITS, wall_seconds=1.5, interrupt_grace_seconds=0.5)  # for code that only waits


def _sandbox_or_skip() -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
    try:
        prepare()
    except SandboxUnavailable as exc:
        pytest.skip(f"no sandbox here: {exc}")


@pytest.fixture
def session(tmp_path: Path) -> Iterator[CodeSession]:
    """A session with small limits; closed after the test, which checks it left no process behind."""
    _sandbox_or_skip()
    session = CodeSession(tmp_path / "session", LIMITS)
    seen: set[int] = set()
    session_pids = session.pids

    def pids() -> set[int]:
        found = session_pids()
        seen.update(found)
        return found

    session.pids = pids  # type: ignore[method-assign]
    yield session
    seen.update(session_pids())
    session.close()
    _assert_gone(seen)
    assert not (tmp_path / "session").exists()


def call(session: CodeSession, code: str) -> CodeResult:
    """Run `code` in a thread, failing the test if it hangs (the limits should end every call long before)."""
    box: list[CodeResult | BaseException] = []

    def target() -> None:
        try:
            box.append(session.run(textwrap.dedent(code)))
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    assert box, f"the call hung for {HANG_GUARD} s"
    if isinstance(box[0], BaseException):
        raise box[0]
    session.pids()  # noted, to check they are gone at the end
    return box[0]


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie is dead; it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _readable_by_others(path: Path) -> bool:
    """Whether a user who is neither the owner nor in the group can reach and read `path` (its folders
    searchable by others, itself readable)."""
    path = path.resolve()
    folders_ok = all(parent.stat().st_mode & 0o001 for parent in [path, *path.parents])
    return folders_ok and bool(path.stat().st_mode & 0o004)


def _assert_gone(pids: set[int]) -> None:
    """Every pid in `pids` ends (they are SIGKILLed; ending takes the kernel a moment)."""
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if _alive(pid)], "processes of the sandbox are still running"


def _works(session: CodeSession) -> None:
    """The session answers a plain call."""
    result = call(session, "print('still here'); 6 * 7")
    assert result.error is None and result.limit is None
    assert "still here" in result.logs and result.value == "42"


# -- state and output ---------------------------------------------------------------------------------------------


def test_state_persists_between_calls_and_the_last_expression_is_shown(session: CodeSession) -> None:
    first = call(session, """
        import math
        def area(r):
            return math.pi * r * r
        total = 41
        print("defined")
    """)
    assert first.error is None and first.value is None and first.logs == "defined"
    assert not first.restarted and not first.ended
    second = call(session, "total += 1\nround(area(1), 2), total")
    assert second.value == "(3.14, 42)" and second.logs == "(3.14, 42)"
    assert call(session, "_").value == "(3.14, 42)"  # the last value, as in a REPL
    assert call(session, "x = None\nx").value is None


def test_an_exception_is_output_with_the_codes_traceback(session: CodeSession) -> None:
    result = call(session, "a = 1\nb = 0\na / b")
    assert result.error == "ZeroDivisionError: division by zero" and result.limit is None
    assert 'File "<cell 1>", line 3' in result.logs and "a / b" in result.logs
    assert "kernel.py" not in result.logs
    syntax = call(session, "def broken(:\n    pass")
    assert syntax.error is not None and syntax.error.startswith("SyntaxError") and "def broken(:" in syntax.logs
    leaving = call(session, "import sys; sys.exit(3)")
    assert leaving.error == "SystemExit: 3" and not leaving.ended
    assert call(session, "a").value == "1"  # none of these ended the session


def test_stdout_stderr_and_subprocess_output_are_the_logs_in_order(session: CodeSession) -> None:
    result = call(session, """
        import subprocess, sys
        print("one")
        print("two", file=sys.stderr)
        subprocess.run(["echo", "three"])
        print("four")
    """)
    assert result.logs.split("\n") == ["one", "two", "three", "four"]


def test_long_output_is_cut_in_the_middle_and_says_so(session: CodeSession) -> None:
    result = call(session, "print('start'); print('x' * 100_000); print('the end')")
    assert result.truncated
    assert result.logs.startswith("start") and result.logs.endswith("the end")
    assert "characters of logs cut" in result.logs and len(result.logs) < LIMITS.output_chars + 200
    assert not call(session, "print('short')").truncated


def test_files_written_to_mnt_data_are_listed_and_read_safely(session: CodeSession, tmp_path: Path) -> None:
    assert session.write_file("input.csv", b"a,b\n1,2\n") == "/mnt/data/input.csv"
    result = call(session, """
        import os
        rows = open("/mnt/data/input.csv").read().splitlines()
        os.makedirs("out", exist_ok=True)
        open("out/report.txt", "w").write(str(len(rows)))
        open("/tmp/scratch", "w").write("not listed")
        os.getcwd()
    """)
    assert result.value == "'/mnt/data'"
    assert result.files == ("/mnt/data/out/report.txt",)  # the input it only read is not listed
    assert session.read_file("/mnt/data/out/report.txt") == b"2"
    assert call(session, "open('out/report.txt', 'a').write('!')").files == ("/mnt/data/out/report.txt",)
    assert call(session, "1").files == ()

    secret = tmp_path / "host-secret.txt"
    secret.write_text("host secret")
    call(session, f"import os; os.symlink({str(secret)!r}, 'link.txt'); os.mkfifo('pipe')")
    for name in ("link.txt", "pipe", "out", "../session/etc/passwd"):
        with pytest.raises((OSError, ValueError)):
            session.read_file(name)  # the host never follows the code's symlink to its own file, nor blocks
    session.write_file("link.txt", b"replaced")  # replaces the symlink, not the host file it points to
    assert secret.read_text() == "host secret" and session.read_file("link.txt") == b"replaced"
    with pytest.raises(ValueError):
        session.write_file("../escape", b"x")


# -- hostile code -------------------------------------------------------------------------------------------------


def test_host_files_and_environment_are_invisible(session: CodeSession, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's secret")
    monkeypatch.setenv("RUNNER_TEST_SECRET", "sk-not-for-the-sandbox")
    session.stop()  # the next call starts a sandbox with that variable in the server's environment
    result = call(session, f"open({str(secret)!r}).read()")
    assert result.error is not None and result.error.startswith("FileNotFoundError")
    assert "the host's secret" not in result.logs
    looked = call(session, f"""
        import os
        [os.path.exists(p) for p in ({str(REPO / "pyproject.toml")!r}, "/etc/shadow", "/root/.bashrc", "/home",
                                     "/var", "/sys")]
    """)
    # (the repository's folder itself may show, empty, as the path to a virtualenv made inside it)
    assert looked.value == "[False, False, False, False, False, False]"
    environment = call(session, "import os; sorted(os.environ)")
    assert "RUNNER_TEST_SECRET" not in environment.logs and "sk-not" not in environment.logs
    written = call(session, "open('/usr/evil', 'w')")
    assert written.error is not None and "Read-only file system" in written.error
    _works(session)


def test_the_network_is_unreachable(session: CodeSession) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.5)
        port = server.getsockname()[1]
        result = call(session, f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)")
        assert result.error is not None and result.error.startswith("ConnectionRefusedError")
        with pytest.raises(TimeoutError):
            server.accept()  # the sandbox's 127.0.0.1 is its own
    outside = call(session, "import socket; socket.create_connection(('192.0.2.1', 80), timeout=3)")
    assert outside.error is not None and "Network is unreachable" in outside.error  # TEST-NET-1: no route
    _works(session)


def test_a_fork_bomb_is_stopped_by_the_process_limit(session: CodeSession) -> None:
    call(session, "kept = 'state'")
    result = call(session, """
        import os
        while True:
            os.fork()
    """)
    assert result.limit == "processes" and result.error is not None and result.error.startswith("BlockingIOError")
    assert describe("processes", LIMITS) in result.logs and not result.ended
    assert call(session, "kept").value == "'state'"
    threads = call(session, """
        import threading, time
        for _ in range(100):
            threading.Thread(target=time.sleep, args=(2,), daemon=True).start()
    """)
    assert threads.limit == "processes" and "can't start new thread" in threads.logs
    _works(session)


def test_a_fork_bomb_that_ignores_errors_is_stopped_and_said(session: CodeSession) -> None:
    session.limits = SHORT_WALL
    result = call(session, """
        import os
        while True:
            try:
                os.fork()
            except BaseException:
                pass
    """)
    assert result.limit in ("processes", "wall_seconds", "cpu_seconds")
    assert "Execution stopped" in result.logs
    if prepare().pids_cgroup:  # the cgroup counts refused forks, whatever stopped the call in the end
        assert "process limit" in result.logs
    _works(session)


def test_allocating_past_the_memory_limit_is_a_memory_error(session: CodeSession) -> None:
    call(session, "kept = 1")
    result = call(session, "block = bytearray(1 << 30)")
    assert result.limit == "memory_mb" and result.error == "MemoryError" and not result.ended
    assert describe("memory_mb", LIMITS) in result.logs
    growing = call(session, """
        chunks = []
        while True:
            chunks.append(b"x" * (16 << 20))
    """)
    assert growing.limit == "memory_mb"
    assert call(session, "del chunks; kept").value == "1"


def test_processes_together_past_the_memory_cgroup_are_killed_and_said(session: CodeSession) -> None:
    if not prepare().memory_cgroup:
        pytest.skip("no memory cgroup here: memory is limited per process (RLIMIT_AS), as the test above checks")
    result = call(session, """
        import os, time
        children = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                block = b"x" * (120 << 20)  # each fits RLIMIT_AS; the three do not fit the cgroup
                time.sleep(2)
                os._exit(0)
            children.append(pid)
        [os.waitpid(pid, 0)[1] for pid in children]
    """)
    assert result.limit == "memory_mb" and "ran out of memory" in result.logs
    _works(session)


def test_a_busy_loop_is_stopped_by_the_cpu_limit(session: CodeSession) -> None:
    call(session, "kept = 'state'")
    result = call(session, "while True:\n    pass")
    assert result.limit == "cpu_seconds" and result.error is not None and result.error.startswith("CPUTimeExceeded")
    assert describe("cpu_seconds", LIMITS) in result.logs and not result.ended
    assert call(session, "kept").value == "'state'"


def test_sleeping_past_the_wall_limit_is_interrupted(session: CodeSession) -> None:
    session.limits = SHORT_WALL
    call(session, "kept = 'state'")
    result = call(session, "import time\nprint('waiting', flush=True)\ntime.sleep(1000)")
    assert result.limit == "wall_seconds" and result.error == "KeyboardInterrupt" and not result.ended
    assert result.logs.startswith("waiting") and describe("wall_seconds", SHORT_WALL) in result.logs
    assert call(session, "kept").value == "'state'"


def test_code_that_ignores_the_interrupt_is_killed_and_the_session_restarted(session: CodeSession) -> None:
    session.limits = SHORT_WALL
    call(session, "kept = 'state'")
    first = session.pids()
    result = call(session, """
        import signal, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("stubborn", flush=True)
        while True:
            time.sleep(1)
    """)
    assert result.limit == "wall_seconds" and result.ended
    assert "stubborn" in result.logs and "session ended" in result.logs
    _assert_gone(first)
    after = call(session, "kept")
    assert after.restarted and after.error == "NameError: name 'kept' is not defined"
    assert "restarted" in after.logs and "gone" in after.logs
    _works(session)


def test_killing_its_own_interpreter_restarts_the_session(session: CodeSession) -> None:
    session.write_file("kept.txt", b"files survive")
    call(session, "kept = 'state'")
    first = session.pids()
    killed = call(session, "import os; print('bye', flush=True); os.kill(os.getpid(), 9)")
    assert killed.ended and killed.limit is None and "SIGKILL" in (killed.error or "")
    assert "bye" in killed.logs and "the next call starts a new one" in killed.logs
    _assert_gone(first)
    after = call(session, "open('kept.txt').read()")
    assert after.restarted and after.value == "'files survive'" and "SIGKILL" in after.logs
    exited = call(session, "import os; os._exit(1)")
    assert exited.ended and "status 1" in (exited.error or "")
    assert call(session, "kept").error == "NameError: name 'kept' is not defined"
    _works(session)


def test_writing_past_the_disk_limit_is_stopped_and_undone(session: CodeSession) -> None:
    session.write_file("input.txt", b"kept")
    one_file = call(session, "open('big.bin', 'wb').write(b'x' * (9 << 20))")
    assert one_file.limit == "disk_mb" and "File too large" in (one_file.error or "")
    call(session, "import os; os.remove('big.bin')")
    many = call(session, """
        for i in range(12):
            open(f"part{i}.bin", "wb").write(b"x" * (1 << 20))
    """)
    assert many.limit == "disk_mb" and describe("disk_mb", LIMITS) in many.logs
    assert "was removed" in many.logs and many.files == ()
    assert call(session, "import os; sorted(os.listdir('.'))").value == "['input.txt']"
    tmp = call(session, """
        for i in range(12):
            open(f"/tmp/part{i}.bin", "wb").write(b"x" * (1 << 20))
    """)
    assert tmp.limit == "disk_mb" and "No space left on device" in (tmp.error or "")
    entries = call(session, "import os\nfor i in range(500): os.mkdir(f'd{i}')")
    assert entries.limit == "files" and describe("files", LIMITS) in entries.logs
    assert call(session, "import os; sorted(os.listdir('.'))").value == "['input.txt']"
    _works(session)


def test_nothing_the_code_starts_outlives_its_call(session: CodeSession) -> None:
    result = call(session, """
        import subprocess
        child = subprocess.Popen(["sleep", "1000"])
        child.pid
    """)
    assert result.error is None
    assert call(session, "import os; sorted(int(p) for p in os.listdir('/proc') if p.isdigit())").value == "[1, 2]"
    _works(session)


def test_a_matplotlib_figure_becomes_a_png_image(tmp_path: Path) -> None:
    if importlib.util.find_spec("matplotlib") is None:  # found, not imported: numpy's threads would take signals
        pytest.skip("matplotlib is not installed (the `code` extra)")
    _sandbox_or_skip()
    session = CodeSession(tmp_path / "session", replace(LIMITS, memory_mb=1024, cpu_seconds=20, wall_seconds=60))
    shown = call(session, """
        import matplotlib.pyplot as plt
        plt.plot([1, 2, 3], [2, 4, 3])
        plt.title("shown")
        plt.show()
        plt.figure()
        plt.bar(["a", "b"], [3, 5])
        print("two figures")
    """)
    assert shown.error is None and shown.logs == "two figures", shown.logs
    assert len(shown.images) == 2 and all(image.startswith(b"\x89PNG\r\n\x1a\n") for image in shown.images)
    assert shown.files == ()  # images are outputs, not files of /mnt/data
    assert call(session, "1").images == ()  # shown figures are closed
    again = call(session, "plt.plot([3, 2, 1]); plt.show()")
    assert len(again.images) == 1
    pids = session.pids()
    session.close()
    _assert_gone(pids)


# -- the manager ---------------------------------------------------------------------------------------------------


def test_the_manager_keeps_one_session_per_key_and_ends_idle_ones() -> None:
    _sandbox_or_skip()

    async def scenario() -> None:
        async with SessionManager(limits=LIMITS, idle_seconds=0.5) as manager:
            await manager.write_files("thread_a", {"data.csv": b"x\n1\n"})
            results = await asyncio.gather(
                asyncio.wait_for(manager.run("thread_a", "who = 'a'; open('data.csv').read()"), HANG_GUARD),
                asyncio.wait_for(manager.run("thread_b", "who = 'b'"), HANG_GUARD))
            assert results[0].value == "'x\\n1\\n'" and results[1].error is None
            assert (await manager.run("thread_a", "who")).value == "'a'"
            assert (await manager.run("thread_b", "who")).value == "'b'"
            assert await manager.read_file("thread_a", "/mnt/data/data.csv") == b"x\n1\n"
            pids = manager.pids("thread_a") | manager.pids("thread_b")
            assert pids
            deadline = time.monotonic() + 30
            while manager.session_keys() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # the sweeper ends both after half a second without a call
            assert manager.session_keys() == []
            _assert_gone(pids)
            fresh = await manager.run("thread_a", "who")
            assert fresh.error == "NameError: name 'who' is not defined" and "new Python session" in fresh.logs
            later = manager.pids("thread_a")
            root = manager.root
        _assert_gone(later)
        assert not root.exists()

    asyncio.run(scenario())


def test_the_manager_closes_every_session_at_shutdown() -> None:
    _sandbox_or_skip()

    async def scenario() -> set[int]:
        manager = SessionManager(limits=LIMITS)
        await asyncio.gather(*(manager.run(f"thread_{i}", "x = 1") for i in range(3)))
        pids = set().union(*(manager.pids(key) for key in manager.session_keys()))
        assert len(pids) >= 3
        await manager.close("thread_0")
        assert manager.session_keys() == ["thread_1", "thread_2"]
        await manager.aclose()
        assert not manager.root.exists()
        return pids

    _assert_gone(asyncio.run(scenario()))


def test_past_max_sessions_the_least_recently_used_is_stopped_and_says_so() -> None:
    _sandbox_or_skip()

    async def scenario() -> set[int]:
        async with SessionManager(limits=LIMITS, max_sessions=1) as manager:
            await manager.run("thread_a", "who = 'a'")
            first = manager.pids("thread_a")
            assert (await manager.run("thread_b", "who = 'b'")).error is None
            _assert_gone(first)  # made room for thread_b
            again = await manager.run("thread_a", "who")
            assert again.restarted and "to make room" in again.logs and again.error is not None
            return manager.pids("thread_a") | manager.pids("thread_b")

    _assert_gone(asyncio.run(scenario()))


def test_the_helper_threads_leave_signals_to_the_main_thread() -> None:
    """A SIGTERM the main thread holds back (the transcript writer between its renames) waits for it, rather than
    running on one of the sandbox's helper threads; and the kernel still gets the interrupts it needs."""
    _sandbox_or_skip()

    async def scenario() -> None:
        async with SessionManager(limits=SHORT_WALL) as manager:
            assert (await manager.run("thread_a", "1")).value == "1"  # the spawner and the pool's threads exist
            seen: list[int] = []
            previous = signal.signal(signal.SIGTERM, lambda *_: seen.append(1))
            held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.1)
                assert seen == []
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
            time.sleep(0.01)
            signal.signal(signal.SIGTERM, previous)
            assert seen == [1]
            interrupted = await manager.run("thread_a", "import time; time.sleep(100)")
            assert interrupted.limit == "wall_seconds" and not interrupted.ended

    asyncio.run(scenario())


# -- refusing rather than running unsandboxed ---------------------------------------------------------------------


def test_a_missing_bwrap_is_refused_saying_what_to_install(tmp_path: Path) -> None:
    config = SandboxConfig(bwrap=str(tmp_path / "no-such-bwrap"))
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        prepare(config)
    session = CodeSession(tmp_path / "session", config=config)
    with pytest.raises(SandboxUnavailable, match="never run unsandboxed"):
        session.run("print('must not run')")
    assert not session.alive
    session.close()


def test_root_without_a_pids_cgroup_is_refused() -> None:
    if os.getuid() != 0:
        pytest.skip("as an unprivileged user RLIMIT_NPROC limits processes: nothing to refuse")
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap (bwrap) is not installed: its absence is refused first")
    with pytest.raises(SandboxUnavailable, match="cannot limit the processes"):
        prepare(SandboxConfig(use_cgroups=False))


def test_an_unprivileged_user_is_limited_by_rlimits(tmp_path: Path) -> None:
    """The fallback of an ordinary machine: no cgroup, RLIMIT_NPROC in the sandbox's user namespace, RLIMIT_AS.
    Run here as an unprivileged uid (setpriv) with the system's Python, which that uid can read."""
    _sandbox_or_skip()
    system_python = "/usr/bin/python3"
    if os.getuid() != 0 or shutil.which("setpriv") is None or not os.access(system_python, os.X_OK):
        pytest.skip("needs root, setpriv and /usr/bin/python3 to act as an unprivileged user")
    if not _readable_by_others(REPO):  # a clone in a private folder (mktemp -d is 0700)
        pytest.skip(f"the source at {REPO} is not readable by another user, which this test runs as")
    folder = Path(tempfile.mkdtemp(prefix="runner-code-unprivileged-"))
    try:
        os.chown(folder, 100123, 100123)
        script = textwrap.dedent(f"""
            import json, sys
            from pathlib import Path
            from runner.server.tools.code_interpreter import CodeLimits, CodeSession, prepare
            sandbox = prepare()
            limits = CodeLimits(processes=16, memory_mb=256, wall_seconds=20, disk_mb=8)
            session = CodeSession(Path({str(folder)!r}) / "s", limits)
            hidden = "import os\\nos.mkdir('d')\\nfor i in range(12): open(f'd/{{i}}', 'wb').write(bytes(1 << 20))\\n" \\
                "os.chmod('d', 0)"  # files the host could not measure, were it not to open the folder up again
            results = [session.run(code) for code in (
                "import os\\nwhile True:\\n    os.fork()", "block = bytearray(300 << 20)", hidden, "6 * 7")]
            session.close()
            print(json.dumps({{"cgroup": sandbox.pids_cgroup, "results": [[r.limit, r.value] for r in results]}}))
        """)
        done = subprocess.run(["setpriv", "--reuid", "100123", "--regid", "100123", "--clear-groups",
                               system_python, "-c", script], capture_output=True, text=True, timeout=HANG_GUARD,
                              cwd=folder, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        if done.returncode != 0 and "SandboxUnavailable" in done.stderr:
            pytest.skip(f"bwrap cannot run unprivileged here: {done.stderr.strip().splitlines()[-1]}")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout.splitlines()[-1])
        assert report == {"cgroup": False, "results": [
            ["processes", None], ["memory_mb", None], ["disk_mb", None], [None, "42"]]}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- parts that need no sandbox ------------------------------------------------------------------------------------


def test_limits_are_checked() -> None:
    assert CodeLimits() == CodeLimits(cpu_seconds=30, wall_seconds=60, memory_mb=1024, processes=64, disk_mb=512,
                                      files=10_000, output_chars=20_000)
    for bad in ({"cpu_seconds": 0}, {"memory_mb": -1}, {"processes": 2}, {"wall_seconds": True}):
        with pytest.raises(ValueError):
            CodeLimits(**bad)  # type: ignore[arg-type]


def test_cgroup_hierarchies_are_found_for_v1_and_v2(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    unified = tmp_path / "unified"
    (proc / "mountinfo").write_text(
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        f"41 31 0:38 / {unified} rw - cgroup2 cgroup2 rw\n")
    (proc / "cgroup").write_text("4:memory:/service/a\n0::/user.slice/me\n")
    (unified / "user.slice" / "me").mkdir(parents=True)
    (unified / "user.slice" / "me" / "cgroup.controllers").write_text("cpu pids memory\n")
    found = {name: (h.own, h.version) for name, h in cgroups.hierarchies(proc).items()}
    # memory from v1 where it is mounted, pids from v2 (which offers memory too, but one hierarchy has it)
    assert found == {"memory": (Path("/sys/fs/cgroup/memory/service/a"), 1), "pids": (unified / "user.slice/me", 2)}


def test_scan_counts_without_following_symlinks(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_bytes(b"12345")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "big").write_bytes(b"x" * 1000)
    (tmp_path / "link").symlink_to(outside)
    usage = files.scan(tmp_path, 100)
    assert usage.files == {"sub/a.txt": (5, (tmp_path / "sub" / "a.txt").stat().st_mtime_ns)}
    assert usage.bytes == 5 and usage.entries == 3 and usage.others == {"sub", "link"}
    assert usage.over(4, 100) == "disk_mb" and usage.over(5, 2) == "files" and usage.over(5, 3) is None
    shutil.rmtree(outside)


def test_paths_outside_mnt_data_are_refused() -> None:
    assert files.relative("/mnt/data/a/b.csv") == "a/b.csv" and files.relative("b.csv") == "b.csv"
    for bad in ("/etc/passwd", "../x", "a/../../x", "/mnt/data/", "a//b", "a\0b"):
        with pytest.raises(ValueError):
            files.relative(bad)


def test_the_kernel_is_standard_library_only() -> None:
    """kernel.py runs inside the sandbox before any site folder is added: it must import nothing else."""
    source = (REPO / "runner/server/tools/code_interpreter/kernel.py").read_text()
    imported = {line.split()[1].split(".")[0] for line in source.splitlines()
                if line.startswith(("import ", "from ")) and "__future__" not in line}
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_a_python_whose_libraries_live_under_tmp_imports_them(tmp_path: Path) -> None:
    """The private /tmp must not hide the Python's own libraries (a virtualenv made under /tmp, as CI's clone
    is): they are mounted over it."""
    _sandbox_or_skip()
    site_dir = Path(tempfile.mkdtemp(prefix="runner-site-", dir="/tmp"))
    try:
        (site_dir / "tmp_library.py").write_text("ANSWER = 42\n")
        config = SandboxConfig(site_dirs=(str(site_dir),))
        session = CodeSession(tmp_path / "session", LIMITS, config=config)
        try:
            result = session.run("import tmp_library\ntmp_library.ANSWER")
            assert result.error is None and result.value == "42", result.logs
        finally:
            session.close()
    finally:
        shutil.rmtree(site_dir)
