"""A batch across processes, so the CPU-bound in-process pipeline uses every core, and Ctrl-C that loses nothing.

The main process forks its helpers once the specs are loaded and checked: nothing is imported or parsed
twice and nothing is pickled on the way in. Every process walks the same job list on its own event loop
and embedded backend, and claims each job just before starting it, so whichever process has a free slot
takes the next conversation. Each process writes the transcripts it finishes; helpers send theirs to the
main process, which reports progress, decides when to stop, and writes the batch's reports.

Ctrl-C once: no new conversation starts and the running ones finish. Twice: the running ones are cancelled
(a run on a remote backend is cancelled there too). Three times: helpers that still hang are killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from runner.engine import EngineOptions, Job
from runner.report.transcript import Transcript
from runner.run import batch_redactor, execute

# below this many jobs per process, a helper's own start (assistants, backend, grader) costs more than it saves
JOBS_PER_PROCESS = 40


@dataclass(frozen=True)
class Finished:
    """A conversation that ended, where its transcript was written, or why it could not be."""

    transcript: Transcript
    path: Path | None
    write_error: str | None = None


@dataclass
class BatchEnd:
    """How the batch ended: interrupted by Ctrl-C or not, and what went wrong outside any conversation."""

    interrupted: bool = False
    errors: list[str] = field(default_factory=list)


def can_fork() -> bool:
    """Whether helpers can be forked here: Linux only (macOS frameworks break after fork; Windows has none)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_processes(jobs: int, concurrency: int) -> int:
    """One process per core, but no more than the slots (`-j`) or one per JOBS_PER_PROCESS jobs."""
    if not can_fork():
        return 1
    return max(1, min(cores(), concurrency, jobs // JOBS_PER_PROCESS))


def slots(concurrency: int, processes: int, index: int) -> int:
    """Process `index`'s share of the batch's `concurrency` slots (the shares add up to it exactly)."""
    return concurrency // processes + (1 if index < concurrency % processes else 0)


class _Shared:
    """What the processes share: which jobs are taken, and whether to start new ones."""

    def __init__(self, jobs: int, processes: int) -> None:
        self.parallel = processes > 1
        if self.parallel:
            context = multiprocessing.get_context("fork")
            self._taken: Any = context.RawArray("b", jobs)
            self._lock: Any = context.Lock()
            self._stop: Any = context.RawValue("b", 0)
        else:
            self._local_stop = False

    def claim(self, index: int) -> bool:
        """Take job `index` unless another process already has."""
        with self._lock:
            if self._taken[index]:
                return False
            self._taken[index] = 1
            return True

    def stop(self) -> None:
        """No process starts another conversation from now on."""
        if self.parallel:
            self._stop.value = 1
        else:
            self._local_stop = True

    def stopping(self) -> bool:
        """Whether `stop` was called, in any process."""
        return bool(self._stop.value) if self.parallel else self._local_stop


def run_jobs(jobs: Sequence[Job], options: EngineOptions, *, concurrency: int, processes: int,
             write: Callable[[Transcript], Path], on_finished: Callable[[Finished], None],
             should_stop: Callable[[], bool] = lambda: False, on_start: Callable[[], None] = lambda: None,
             on_interrupt: Callable[[int], None] = lambda presses: None) -> BatchEnd:
    """Run and judge every job in `processes` processes sharing `concurrency` slots, write each transcript
    with `write`, and hand each to `on_finished` in this process as soon as it exists.

    `should_stop()` is asked after each conversation: once true, nothing new starts. `on_start` runs once
    the helpers exist (start threads, such as a progress display, only then); `on_interrupt(n)` is told of
    the n-th Ctrl-C.
    """
    processes = max(1, min(processes, concurrency, len(jobs))) if can_fork() else 1
    shared = _Shared(len(jobs), processes)
    # what start-up made (modules, specs) lives as long as the batch: keep it out of every collection (so the
    # helpers' collections never copy its pages either), and collect less often, since a conversation
    # allocates a great many short-lived objects and few cycles
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(7000, 20, 50)
    try:
        return _run(jobs, options, concurrency, processes, shared, write, on_finished, should_stop, on_start,
                    on_interrupt)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _run(jobs: Sequence[Job], options: EngineOptions, concurrency: int, processes: int, shared: _Shared,
         write: Callable[[Transcript], Path], on_finished: Callable[[Finished], None], should_stop: Callable[[], bool],
         on_start: Callable[[], None], on_interrupt: Callable[[int], None]) -> BatchEnd:
    helpers = _start_helpers(jobs, options, concurrency, processes, shared, write)
    on_start()
    end = BatchEnd()

    def finished(item: Finished) -> None:
        on_finished(item)
        if should_stop():
            shared.stop()

    def own(job: Job, transcript: Transcript) -> None:
        finished(_written(transcript, write))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        presses = 0
        batch = asyncio.ensure_future(execute(jobs, options, concurrency=slots(concurrency, processes, 0),
                                              on_done=own, stop=shared.stopping,
                                              claim=shared.claim if shared.parallel else None))

        def interrupted() -> None:
            nonlocal presses
            presses += 1
            end.interrupted = True
            shared.stop()
            if presses >= 2:
                batch.cancel()
                _signal(helpers, signal.SIGTERM if presses == 2 else signal.SIGKILL)
            on_interrupt(presses)

        # no signal handlers on Windows: there Ctrl-C stops at once
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, interrupted)
        closed = [loop.create_future() for _ in helpers]
        for helper, done in zip(helpers, closed, strict=True):
            loop.add_reader(helper.conn.fileno(), _receive, loop, helper, done, finished, end)
        try:
            await batch
        except asyncio.CancelledError:
            if not end.interrupted:
                raise
        await asyncio.gather(*closed)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # where signal handlers could not be installed
        end.interrupted = True
    except BaseException:
        shared.stop()  # a failure here must not leave helpers running the batch on their own
        _signal(helpers, signal.SIGTERM)
        raise
    finally:
        for helper in helpers:
            helper.process.join(timeout=5)
            if helper.process.is_alive():
                helper.process.kill()
                helper.process.join()
    for helper in helpers:
        code = helper.process.exitcode
        if code not in (0, None) and not end.interrupted and not helper.failed:
            end.errors.append(f"helper process {helper.index} ended with exit code {code}; the conversations it "
                              "was running did not finish")
    return end


@dataclass
class _Helper:
    index: int
    process: Any
    conn: Connection
    failed: bool = False  # it sent the traceback it died of


def _signal(helpers: list[_Helper], signum: int) -> None:
    for helper in helpers:
        if helper.process.is_alive():
            os.kill(helper.process.pid, signum)


def _written(transcript: Transcript, write: Callable[[Transcript], Path]) -> Finished:
    try:
        return Finished(transcript, write(transcript))
    except OSError as exc:
        return Finished(transcript, None, f"cannot write the transcript of {transcript.spec_file}: {exc}")


def _start_helpers(jobs: Sequence[Job], options: EngineOptions, concurrency: int, processes: int, shared: _Shared,
                   write: Callable[[Transcript], Path]) -> list[_Helper]:
    if processes <= 1:
        return []
    context = multiprocessing.get_context("fork")
    helpers: list[_Helper] = []
    # helpers ignore Ctrl-C (the terminal sends it to all of them): the main process decides what it means
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for index in range(1, processes):
            receiving, sending = context.Pipe(duplex=False)
            inherited = [h.conn for h in helpers] + [receiving]
            process = context.Process(target=_helper, name=f"runner-helper-{index}", daemon=True,
                                      args=(jobs, options, slots(concurrency, processes, index), shared, write,
                                            sending, inherited, os.getpid()))
            process.start()
            sending.close()
            helpers.append(_Helper(index, process, receiving))
    finally:
        signal.signal(signal.SIGINT, previous)
    return helpers


def _helper(jobs: Sequence[Job], options: EngineOptions, concurrency: int, shared: _Shared,
            write: Callable[[Transcript], Path], conn: Connection, inherited: list[Connection],
            parent: int) -> None:
    """A helper process's whole life: its share of the batch, each transcript written and sent on.

    It dies with the main process: the kernel sends it SIGTERM when the main process ends, however it ends
    (kill -9 included), and a pipe whose reader is gone fails instead of blocking, since no helper keeps a
    copy of any pipe's reading end.
    """
    for other in inherited:  # the reading ends forked along: held here, a dead reader's pipe would block
        other.close()
    _die_with(parent)
    sender: _Sender | None = None

    async def main() -> None:
        nonlocal sender
        loop = asyncio.get_running_loop()
        batch: asyncio.Future[Any] | None = None

        def parent_gone() -> None:
            shared.stop()
            if batch is not None:
                batch.cancel()

        sender = _Sender(conn, loop, parent_gone)
        current = sender

        def done(job: Job, transcript: Transcript) -> None:
            current.send(_written(transcript, write))

        batch = asyncio.ensure_future(execute(jobs, options, concurrency=concurrency, on_done=done,
                                              stop=shared.stopping, claim=shared.claim))
        loop.add_signal_handler(signal.SIGTERM, batch.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await batch
        await sender.drain()

    try:
        asyncio.run(main())
    except BaseException:
        # the main process shows it (the helper itself prints nothing), and a traceback may quote a key
        with contextlib.suppress(OSError):
            (sender or _Sender(conn, None, lambda: None)).send_now(
                batch_redactor(jobs, options).text(traceback.format_exc()))
        sys.exit(1)
    finally:
        conn.close()


def _die_with(parent: int) -> None:
    """Ask the kernel for SIGTERM when the main process ends (Linux), and exit if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


class _Sender:
    """Sends messages to the main process in the pipe's own framing (so `Connection.recv` reads them) without
    ever blocking the event loop: what the pipe cannot take now waits in a buffer, so SIGTERM is always heard.
    A pipe whose reader is gone calls `on_broken` and drops what is left."""

    def __init__(self, conn: Connection, loop: asyncio.AbstractEventLoop | None,
                 on_broken: Callable[[], None]) -> None:
        self.fd = conn.fileno()
        self.loop = loop
        self.on_broken = on_broken
        self.buffer = bytearray()
        self.waiting = False  # registered with the loop for writability
        self.emptied: asyncio.Event | None = asyncio.Event() if loop is not None else None
        if loop is not None:
            os.set_blocking(self.fd, False)

    def send(self, message: Any) -> None:
        """Queue a message and send what the pipe takes now."""
        self.buffer += _frame(message)
        self._flush()

    def send_now(self, message: Any) -> None:
        """Send what is queued and a last message, waiting for the pipe (no event loop runs any more)."""
        os.set_blocking(self.fd, True)
        self.buffer += _frame(message)
        while self.buffer:
            del self.buffer[:os.write(self.fd, self.buffer)]

    async def drain(self) -> None:
        """Wait until everything queued is in the pipe (or the pipe broke)."""
        while self.buffer and self.emptied is not None:
            self.emptied.clear()
            await self.emptied.wait()

    def _flush(self) -> None:
        try:
            while self.buffer:
                del self.buffer[:os.write(self.fd, self.buffer)]
        except BlockingIOError:
            if not self.waiting and self.loop is not None:
                self.loop.add_writer(self.fd, self._flush)
                self.waiting = True
            return
        except (BrokenPipeError, OSError):
            self.buffer.clear()
            self.on_broken()
        if self.waiting and self.loop is not None:
            self.loop.remove_writer(self.fd)
            self.waiting = False
        if self.emptied is not None:
            self.emptied.set()


def _frame(message: Any) -> bytes:
    """A message as `Connection.send` frames it: a pickle behind its length."""
    import struct
    from multiprocessing.reduction import ForkingPickler

    data = bytes(ForkingPickler.dumps(message))
    if len(data) > 0x7FFFFFFF:
        return struct.pack("!i", -1) + struct.pack("!Q", len(data)) + data
    return struct.pack("!i", len(data)) + data


def _receive(loop: asyncio.AbstractEventLoop, helper: _Helper, closed: asyncio.Future[None],
             finished: Callable[[Finished], None], end: BatchEnd) -> None:
    """Take every message a helper has sent: finished conversations, or the traceback it died of.

    All of them at once: a helper whose pipe is full waits, and this process has its own conversations
    to run between two calls.
    """
    while True:
        try:
            message = helper.conn.recv()
        except (EOFError, OSError):
            loop.remove_reader(helper.conn.fileno())
            helper.conn.close()
            closed.set_result(None)
            return
        if isinstance(message, Finished):
            finished(message)
        else:
            helper.failed = True
            end.errors.append(f"helper process {helper.index} failed:\n{message}")
        if not helper.conn.poll():
            return
