"""The kernel of a code interpreter session: runs inside the sandbox and executes each request's code in one
namespace that lasts as long as the session, like a notebook's.

The sandbox starts it as `python -I -S -B kernel.py CONFIG`. Requests arrive as JSON lines on fd 0 and answers
leave as JSON lines on fd 1; at start both move to other descriptors, fd 0 becomes /dev/null and fd 1 joins fd 2,
the host's log pipe, so whatever the code prints (its subprocesses and C libraries too) goes to the logs and
never into the answers. Standard library only: nothing of the runner is importable inside.

The kernel is trusted and the code is not, yet they share a process, so nothing here is a security boundary: the
limits hold without the kernel's help (hard rlimits set here before any code runs, cgroups, the host's clock and
its measure of /mnt/data). What the kernel adds is what makes an answer useful: the limit that stopped a call
named, the traceback as output, the value of a last expression, the matplotlib figures shown or left open.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import errno
import io
import json
import linecache
import math
import os
import queue
import resource
import signal
import sys
import threading
import time
import traceback
import types
import warnings
from typing import Any

KERNEL_FILE = __file__
KERNEL_PID = os.getpid()
MAX_IMAGES = 10  # figures saved per call; more are closed unsaved, and the answer says how many
EXIT_CPU = 128 + signal.SIGXCPU  # the status of a session whose leftover threads used up the CPU time between calls
DISK_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


class CPUTimeExceeded(BaseException):
    """Raised in the code when its call's CPU time is used up (a BaseException: `except Exception` lets it by)."""


class Kernel:
    """One session: the code's namespace, the request reader, and what each call answers."""

    def __init__(self, config: dict[str, Any]) -> None:
        """Set the session's hard limits, signals and descriptors from the host's `config`."""
        self.output_chars = int(config["output_chars"])
        self.user_namespace = _in_user_namespace()
        _hard_limit(resource.RLIMIT_AS, config.get("memory_bytes"))
        _hard_limit(resource.RLIMIT_FSIZE, config.get("file_bytes"))
        _hard_limit(resource.RLIMIT_CORE, 0)
        # in its own user namespace RLIMIT_NPROC counts the sandbox's processes, bwrap's init among them
        extra = 1 if self.user_namespace else 1 + int(config.get("host_processes") or 0)
        _hard_limit(resource.RLIMIT_NPROC, int(config["processes"]) + extra)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())  # the server's helper thread that started us blocked all
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the file size limit fails (EFBIG), not kills
        signal.signal(signal.SIGXCPU, self._cpu_exceeded)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for calls; between them they are late
        self.own_pid_namespace = _own_pid_namespace()

        import site  # with -S importing site adds nothing by itself: only the host's site folders go in

        for folder in config.get("site_dirs") or []:
            site.addsitedir(folder)
        warnings.filterwarnings("ignore", message=r".*(non-interactive|non-GUI backend)")  # Agg's plt.show()

        self.requests = os.fdopen(os.dup(0), "rb")  # os.dup: not inherited by the code's subprocesses
        self.answers = os.dup(1)
        self.log_fd = os.dup(2)  # kept to put fd 1 and 2 back before each call if the code closed them
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(self.log_fd, 1)
        self.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                       line_buffering=True, write_through=True)  # in order with C-level writes
        self.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                       line_buffering=True, write_through=True)
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - the code's stdin, for the whole session

        module = types.ModuleType("__main__")  # the code's globals: a real __main__ so its classes pickle
        sys.modules["__main__"] = module
        self.namespace = module.__dict__
        self.calls: queue.Queue[dict[str, Any]] = queue.Queue()
        self.main_thread = threading.get_ident()
        self.current: int | None = None
        self.running = False
        self.interrupted = False
        self.cpu_seconds = 0
        self.images: list[str] = []
        self.images_dropped = 0
        self.count = 0

    def serve(self) -> None:
        """Say the session is ready, then answer requests one at a time until the host closes fd 0."""
        self._send({"ready": True, "python": sys.version.split()[0], "user_namespace": self.user_namespace})
        threading.Thread(target=self._read, name="requests", daemon=True).start()
        while True:
            self._send(self.run(self.calls.get()))

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Execute one request's code; its answer (a late interrupt landing in the kernel's own code included)."""
        try:
            return self._run(request)
        except BaseException as exc:  # a signal meant for the code that arrived as it ended
            self.running = False
            return self._answer(request, None, exc)

    def _run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Execute the code in the session's namespace with the call's CPU time, and collect its output."""
        self.count += 1
        self.current = request["id"]
        self.cpu_seconds = int(request["cpu_seconds"])
        code, filename = str(request["code"]), f"<cell {self.count}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)  # tracebacks show the code
        self._reset_streams()
        self._patch_show()
        self.images, self.images_dropped, self.interrupted = [], 0, False
        self._set_cpu_limit()
        signal.signal(signal.SIGXCPU, self._cpu_exceeded)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        result: str | None = None
        error: BaseException | None = None
        self.running = True
        try:
            try:
                result = self._execute(code, filename)
                self._collect_figures()
            finally:
                if os.getpid() != KERNEL_PID:
                    os._exit(0)  # a fork of the session that ran to the end of the code: only the session answers
        except BaseException as exc:  # whatever the code raises is its output, never the kernel's end
            error = exc
        finally:
            self.running = False
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._stop_others()  # first, so what they printed before they died is in the call's logs
        self._flush(request.get("marker"))
        self._patch_show()
        return self._answer(request, result, error)

    def _execute(self, code: str, filename: str) -> str | None:
        """Run `code`; the repr of its last statement's value when that is an expression (as a REPL shows it)."""
        tree = ast.parse(code, filename)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body[-1].value)
            del tree.body[-1]
        exec(compile(tree, filename, "exec"), self.namespace)
        if last is None:
            return None
        value = eval(compile(last, filename, "eval"), self.namespace)
        if value is None:
            return None
        self.namespace["_"] = value
        return _cut(repr(value), self.output_chars)

    def _answer(self, request: dict[str, Any], result: str | None, error: BaseException | None) -> dict[str, Any]:
        """The answer to `request`: the expression's value, the error with its traceback, the limit that stopped
        the call, the figures."""
        answer: dict[str, Any] = {"id": request.get("id"), "result": result, "error": None, "limit": None,
                                  "images": self.images, "images_dropped": self.images_dropped}
        if error is not None:
            answer["error"] = _describe(error, self.output_chars)
            answer["limit"] = self._limit_of(error)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        answer["cpu"] = usage.ru_utime + usage.ru_stime
        return answer

    def _limit_of(self, error: BaseException) -> str | None:
        """Which limit `error` (or an error it was raised from or while handling) comes from, if any."""
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            if isinstance(current, CPUTimeExceeded):
                return "cpu_seconds"
            if isinstance(current, KeyboardInterrupt) and self.interrupted:
                return "wall_seconds"  # the host interrupted the call: it says which of its limits
            if isinstance(current, MemoryError):
                return "memory_mb"
            if isinstance(current, OSError) and current.errno in DISK_ERRNOS:
                return "disk_mb"
            if isinstance(current, BlockingIOError) and current.errno == errno.EAGAIN:
                return "processes"  # what fork() and subprocess raise when no process may be added
            if isinstance(current, RuntimeError) and "can't start new thread" in str(current):
                return "processes"
            current = current.__cause__ or current.__context__
        return None

    def _read(self) -> None:
        """Read requests: an interrupt is acted on at once, calls are queued for the main thread."""
        for line in self.requests:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("op") == "interrupt":
                if self.running and message.get("id") == self.current:
                    self.interrupted = True
                    signal.pthread_kill(self.main_thread, signal.SIGINT)  # wakes a sleep too, unlike a flag
            else:
                self.calls.put(message)
        self._end(0)  # the host closed the session

    def _end(self, status: int) -> None:
        """End the session now, with whatever the code left running."""
        self._stop_others()
        os._exit(status)

    def _cpu_exceeded(self, signum: int, frame: object) -> None:
        """SIGXCPU: the call's CPU time is used up (or, between calls, threads the code left behind used it)."""
        if self.running:
            raise CPUTimeExceeded(f"the call used up its {self.cpu_seconds} s of CPU time")
        self._end(EXIT_CPU)

    def _set_cpu_limit(self) -> None:
        """Move RLIMIT_CPU's soft limit to the CPU time used so far plus the call's (SIGXCPU when reached)."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = math.ceil(usage.ru_utime + usage.ru_stime) + self.cpu_seconds
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))

    def _reset_streams(self) -> None:
        """fd 1 and 2 to the log pipe and sys.stdout and sys.stderr to them, whatever the last call did."""
        os.dup2(self.log_fd, 1)
        os.dup2(self.log_fd, 2)
        sys.stdout = self.stdout
        sys.stderr = self.stderr
        sys.__stdout__ = self.stdout  # type: ignore[misc]  # what code reaching past sys.stdout writes to
        sys.__stderr__ = self.stderr  # type: ignore[misc]

    def _flush(self, marker: object) -> None:
        """Flush the code's streams, then write the call's marker: the host's logs of the call end there."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):  # a stream the code replaced and broke: its output is lost
                stream.flush()
        self._reset_streams()
        if isinstance(marker, str):
            _write_all(1, marker.encode())

    def _patch_show(self) -> None:
        """Once matplotlib's pyplot is loaded, make plt.show() save the open figures as the call's images."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None and getattr(pyplot.show, "__name__", "") != "_kernel_show":
            def _kernel_show(*args: object, **kwargs: object) -> None:
                self._collect_figures()

            pyplot.show = _kernel_show  # type: ignore[attr-defined]

    def _collect_figures(self) -> None:
        """Save every open matplotlib figure as a PNG image of the call, and close it (as a notebook shows it)."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return
        for number in pyplot.get_fignums():
            figure = pyplot.figure(number)
            if len(self.images) < MAX_IMAGES:
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png", bbox_inches="tight")
                self.images.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
            else:
                self.images_dropped += 1
            pyplot.close(figure)

    def _stop_others(self) -> None:
        """Kill every other process in the sandbox, so nothing the code started outlives its call."""
        if not self.own_pid_namespace:
            return  # kill(-1) outside the sandbox's pid namespace would reach the user's every process
        try:
            os.kill(-1, signal.SIGKILL)  # all but the namespace's init (bwrap) and ourselves
        except OSError:
            return
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)  # our own children: reaped, or they keep their pids
            except ChildProcessError:
                return
            if pid == 0:
                time.sleep(0.005)

    def _send(self, message: dict[str, Any]) -> None:
        """Write one answer line to the host."""
        _write_all(self.answers, (json.dumps(message) + "\n").encode())


def _describe(error: BaseException, limit: int) -> dict[str, str]:
    """An error's type, message and traceback (the code's frames only, at most `limit` characters, the end kept)."""
    try:
        message = str(error)
    except BaseException:  # the code's own exception class with a broken __str__
        message = ""
    try:
        exception = traceback.TracebackException(type(error), error, error.__traceback__, compact=True)
        _drop_kernel_frames(exception)
        text = "".join(exception.format())
    except BaseException:  # formatting the code's objects can fail: the type and message still go out
        text = f"{type(error).__name__}: {message}\n"
    if len(text) > limit:
        text = "[... traceback cut ...]\n" + text[-limit:]
    return {"type": type(error).__name__, "message": _cut(message, limit), "traceback": text}


def _drop_kernel_frames(exception: traceback.TracebackException) -> None:
    """Leave out the kernel's frames from a traceback and those it was chained to: they are not the code's."""
    seen: set[int] = set()
    todo = [exception]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.stack = traceback.StackSummary.from_list(
            [frame for frame in current.stack if frame.filename != KERNEL_FILE])
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]


def _cut(text: str, limit: int) -> str:
    """`text` with its middle cut to fit `limit` characters, saying so."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}[... {len(text) - 2 * half} characters cut ...]{text[-half:]}"


def _write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` (a pipe takes it in pieces)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _hard_limit(kind: int, value: object) -> None:
    """Set an rlimit's soft and hard value: the code cannot raise a hard limit again."""
    if not isinstance(value, int):
        return
    _, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, value))


def _in_user_namespace() -> bool:
    """Whether this process is in a user namespace of its own (not the whole uid range mapped to itself)."""
    try:
        with open("/proc/self/uid_map", encoding="ascii") as file:
            return file.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def _own_pid_namespace() -> bool:
    """Whether bwrap is this pid namespace's init, i.e. kill(-1) reaches the sandbox only."""
    try:
        with open("/proc/1/comm", encoding="utf-8") as file:
            return file.read().strip() == "bwrap" and os.getpid() != 1
    except OSError:
        return False


def main() -> None:
    """Run the session described by the JSON configuration in argv[1]."""
    Kernel(json.loads(sys.argv[1])).serve()


if __name__ == "__main__":
    main()
