"""Load benchmark for issue 11: `runner serve` over loopback HTTP under N concurrent clients. A script, not a test.

    python bench/serve_load.py                      # 32 and 64 clients, 60 s each
    python bench/serve_load.py --quick              # ~10 s per client count, a smoke check
    python bench/serve_load.py --clients 8,32 --seconds 30 --write --label "after"
    python bench/serve_load.py --repeat 3 --write --label after   # medians of 3 runs per client count
    git archive main runner | tar -x -C /tmp/base                 # another version of the server, to compare:
    python bench/serve_load.py --baseline /tmp/base --baseline-label before --label after --repeat 3 --write

For each client count a fresh `runner serve --provider echo --port 0 --db <tmp>` is started as its own process
and this process drives it (the clients never share the server's CPU or event loop). Each client loops over one
cycle until the time is up:

    POST /v1/threads -> POST /v1/threads/{id}/messages -> POST /v1/threads/{id}/runs (stream=true, the SSE
    stream read to its `done`) -> GET /v1/threads/{id}/messages (the reply must echo the message)

The clients are raw httpx2 AsyncClients (one keep-alive connection each), not the AsyncOpenAI SDK: the SDK
spends client CPU per call (pydantic models, its SSE parser) and on a 2-core machine that CPU is taken from
the server being measured. `--client sdk` drives the same cycle through AsyncOpenAI (on the same httpx2
clients), the client users actually have, to see what it costs.

Reported per client count: requests/s and cycles/s (completed cycles, over the wall time until the last one
ended), p50/p99 of the cycle latency, errors by request and status, the CPU the server, the clients and the
rest of the machine used (as a share of one core: a server near 100% is bound by its single event loop;
"other" is whatever else the shared machine ran meanwhile), the server's CPU time per request (what a change
to the server changes, and much less noisy than requests/s on a shared machine), and a consistency check of
the SQLite file opened read-only once the server has stopped: every thread the clients created is there with
its message and the echoed reply, every run is completed with its completed step, nothing is left in
progress, the counts match what the clients saw, and `PRAGMA integrity_check` is ok.

`--write` puts the figures in the "Serve load" section of BENCHMARKS.md as rows labelled `--label` (and
`--baseline-label`); rows of other labels are kept, and so is any text after the table in that section.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import platform
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

warnings.filterwarnings("ignore", category=DeprecationWarning)  # --client sdk: every Assistants call warns
ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Serve load"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Seen:
    """What the clients saw, to compare with the database afterwards."""

    threads: set[str] = field(default_factory=set)
    messages: dict[str, str] = field(default_factory=dict)  # user message id -> thread id
    runs: dict[str, str] = field(default_factory=dict)  # run id -> thread id
    completed: set[str] = field(default_factory=set)  # threads whose cycle ended with the echoed reply listed


@dataclass
class Load:
    """The outcome of one client count."""

    clients: int
    wall: float = 0.0
    requests: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    seen: Seen = field(default_factory=Seen)
    server_cpu: float = 0.0  # CPU seconds over the measured window
    loop_cpu: float = 0.0  # the server's main thread: its event loop
    client_cpu: float = 0.0
    other_cpu: float = 0.0  # what the rest of the machine used meanwhile (the machine may be shared)
    problems: list[str] = field(default_factory=list)  # what the consistency check found wrong
    timing: dict[str, dict[str, float]] | None = None  # --store-timing: statement word -> count, seconds

    def percentile(self, q: float) -> float:
        """The q-th percentile (nearest rank) of the cycle latencies, in seconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


class CycleError(Exception):
    """One request of a cycle failed; `key` says which and how, for the error counts."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


# -- the server -----------------------------------------------------------------------------------

@contextlib.contextmanager
def serving(db: Path, log_level: str, timing: Path | None = None,
            tree: Path | None = None) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start `runner serve` on a free port (its log in a file, so a full pipe never blocks it); stop it by PID.

    With `timing`, the server runs under bench/store_timing.py, which writes its SQLite time there on shutdown;
    with `tree`, it imports `runner` from that folder (another version of the code) instead.
    """
    log = db.with_suffix(".log")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "OPENAI_"))}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    command = [sys.executable, "-m", "runner"]
    if timing is not None:
        env["SERVE_LOAD_TIMING"] = str(timing)
        command = [sys.executable, str(ROOT / "bench" / "store_timing.py")]
    with open(log, "wb") as sink:
        proc = subprocess.Popen([*command, "serve", "--provider", "echo", "--port", "0", "--db", str(db),
                                 "--log-level", log_level],
                                stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, env=env, cwd=db.parent)
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None:
            match = re.search(r"Assistants API on (http://\S+/v1)", log.read_text(encoding="utf-8", errors="replace"))
            url = match.group(1) if match else None
            if url is None and (proc.poll() is not None or time.monotonic() > deadline):
                raise SystemExit("runner serve did not start:\n" + log.read_text(encoding="utf-8", errors="replace"))
            time.sleep(0.05)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # graceful: uvicorn finishes, the store closes
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds a process (or one of its threads) has used so far."""
    with open(f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, not idle or waiting for I/O) since boot."""
    with open("/proc/stat", encoding="ascii") as stat:
        ticks = [int(t) for t in stat.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS


# -- the clients ----------------------------------------------------------------------------------

def _checked(response: httpx2.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise CycleError(f"{what} {response.status_code}")
    body: dict[str, Any] = response.json()
    return body


async def _request(client: httpx2.AsyncClient, method: str, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = await client.request(method, url, **kwargs)
    except httpx2.HTTPError as exc:
        raise CycleError(f"{what} {type(exc).__name__}") from None
    return _checked(response, what)


async def _streamed_run(client: httpx2.AsyncClient, thread_id: str, assistant_id: str) -> str:
    """Create a streamed run and read its events to `done`; the run's id once it completed."""
    what = "POST /threads/{id}/runs"
    run_id = None
    completed = done = False
    try:
        async with client.stream("POST", f"/threads/{thread_id}/runs",
                                 json={"assistant_id": assistant_id, "stream": True}) as response:
            if response.status_code != 200:
                await response.aread()
                raise CycleError(f"{what} {response.status_code}")
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event is not None:
                    if event == "thread.run.created":
                        run_id = json.loads(line[6:])["id"]
                    elif event == "thread.run.completed":
                        completed = True
                    elif event == "done":
                        done = True
    except httpx2.HTTPError as exc:
        raise CycleError(f"{what} {type(exc).__name__}") from None
    if run_id is None or not completed or not done:
        raise CycleError(f"{what} stream ended without {'done' if completed else 'thread.run.completed'}")
    return run_id


async def cycle(client: httpx2.AsyncClient, assistant_id: str, text: str, seen: Seen) -> None:
    """One thread -> message -> streamed run -> list cycle; raises CycleError at the first failed request."""
    thread = await _request(client, "POST", "/threads", "POST /threads", json={})
    seen.threads.add(thread["id"])
    message = await _request(client, "POST", f"/threads/{thread['id']}/messages", "POST /threads/{id}/messages",
                             json={"role": "user", "content": text})
    seen.messages[message["id"]] = thread["id"]
    run_id = await _streamed_run(client, thread["id"], assistant_id)
    seen.runs[run_id] = thread["id"]
    page = await _request(client, "GET", f"/threads/{thread['id']}/messages", "GET /threads/{id}/messages")
    replies = [(m["role"], m["content"][0]["text"]["value"]) for m in page["data"]]
    if replies != [("assistant", text), ("user", text)]:
        raise CycleError("GET /threads/{id}/messages wrong content")
    seen.completed.add(thread["id"])


async def sdk_cycle(client: Any, assistant_id: str, text: str, seen: Seen) -> None:
    """The same cycle through the official AsyncOpenAI SDK (--client sdk), as the users' programs make it."""
    import openai

    what = "POST /threads"
    try:
        thread = await client.beta.threads.create()
        seen.threads.add(thread.id)
        what = "POST /threads/{id}/messages"
        message = await client.beta.threads.messages.create(thread.id, role="user", content=text)
        seen.messages[message.id] = thread.id
        what = "POST /threads/{id}/runs"
        run_id, completed = None, False
        async for event in await client.beta.threads.runs.create(thread.id, assistant_id=assistant_id, stream=True):
            if event.event == "thread.run.created":
                run_id = event.data.id
            elif event.event == "thread.run.completed":
                completed = True
        if run_id is None or not completed:
            raise CycleError(f"{what} stream ended without thread.run.completed")
        seen.runs[run_id] = thread.id
        what = "GET /threads/{id}/messages"
        page = await client.beta.threads.messages.list(thread.id)
    except openai.APIStatusError as exc:
        raise CycleError(f"{what} {exc.status_code}") from None
    except openai.APIError as exc:
        raise CycleError(f"{what} {type(exc).__name__}") from None
    if [(m.role, m.content[0].text.value) for m in page.data] != [("assistant", text), ("user", text)]:
        raise CycleError("GET /threads/{id}/messages wrong content")
    seen.completed.add(thread.id)


def snapshot(server_pid: int) -> tuple[float, float, float, float]:
    """CPU seconds used so far by the server, its main thread (the event loop), this process (the clients) and
    the whole machine."""
    return cpu_seconds(server_pid), cpu_seconds(server_pid, server_pid), time.process_time(), machine_busy_seconds()


async def drive(url: str, server_pid: int, clients: int, seconds: float, load: Load, sdk: bool = False) -> None:
    """Run `clients` concurrent clients for `seconds`; a cycle begun before the end is finished."""
    limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
    timeout = httpx2.Timeout(120.0)
    sessions = [httpx2.AsyncClient(base_url=url, limits=limits, timeout=timeout) for _ in range(clients)]
    sdks: list[Any] = []
    if sdk:
        from openai import AsyncOpenAI

        sdks = [AsyncOpenAI(api_key="unused", base_url=url, max_retries=0, http_client=s) for s in sessions]
    try:
        assistant = await _request(sessions[0], "POST", "/assistants", "POST /assistants", json={"model": "echo"})
        # open every connection first, so the window measures cycles and not connection set-up
        await asyncio.gather(*(s.get(f"/assistants/{assistant['id']}") for s in sessions))
        before = snapshot(server_pid)
        start = time.perf_counter()
        end = start + seconds

        async def client_loop(index: int, session: httpx2.AsyncClient) -> None:
            n = 0
            while time.perf_counter() < end:
                began = time.perf_counter()
                try:
                    if sdks:
                        await sdk_cycle(sdks[index], assistant["id"], f"hello {index}-{n}", load.seen)
                    else:
                        await cycle(session, assistant["id"], f"hello {index}-{n}", load.seen)
                except CycleError as exc:
                    load.errors[exc.key] += 1
                    if "Error" in exc.key:  # a transport error: the connection may be gone, so back off a little
                        await asyncio.sleep(0.1)
                else:
                    load.latencies.append(time.perf_counter() - began)
                    load.requests += 4
                n += 1

        await asyncio.gather(*(client_loop(i, s) for i, s in enumerate(sessions)))
        load.wall = time.perf_counter() - start
        server, loop, client, machine = (b - a for a, b in zip(before, snapshot(server_pid), strict=True))
        load.server_cpu, load.loop_cpu, load.client_cpu = server, loop, client
        load.other_cpu = max(0.0, machine - server - client)
    finally:
        await asyncio.gather(*(s.aclose() for s in sessions))


# -- the database afterwards ----------------------------------------------------------------------

def check_database(db: Path, seen: Seen) -> list[str]:
    """What is wrong with the stored objects, given what the clients saw (empty: consistent)."""
    problems: list[str] = []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if integrity != "ok":
            problems.append(f"integrity_check: {integrity}")
        rows = conn.execute("SELECT id, kind, parent, run_id, json_extract(body, '$.status') FROM objects").fetchall()
    finally:
        conn.close()
    by_kind: dict[str, dict[str, tuple[str | None, str | None, str | None]]] = collections.defaultdict(dict)
    for object_id, kind, parent, run_id, status in rows:
        by_kind[kind][object_id] = (parent, run_id, status)
    threads, messages = by_kind["thread"], by_kind["message"]
    runs, steps = by_kind["run"], by_kind["run_step"]

    def compare(what: str, stored: set[str], expected: set[str]) -> None:
        if stored != expected:
            problems.append(f"{what}: {len(stored)} stored, {len(expected)} seen by the clients "
                            f"({len(expected - stored)} missing, {len(stored - expected)} unexpected)")

    compare("threads", set(threads), seen.threads)
    compare("user messages", {i for i, (_, run, _) in messages.items() if run is None}, set(seen.messages))
    compare("runs", set(runs), set(seen.runs))
    for message_id, thread_id in seen.messages.items():
        if message_id in messages and messages[message_id][0] != thread_id:
            problems.append(f"message {message_id} is not under its thread {thread_id}")
    not_completed = [i for i, (_, _, status) in runs.items() if status != "completed"]
    if not_completed:
        problems.append(f"{len(not_completed)} run(s) not completed, e.g. {not_completed[0]}")
    replies = collections.Counter(run for _, run, _ in messages.values() if run is not None)
    for run_id, thread_id in seen.runs.items():
        if run_id in runs and runs[run_id][0] != thread_id:
            problems.append(f"run {run_id} is not under its thread {thread_id}")
        if replies.get(run_id) != 1:
            problems.append(f"run {run_id} has {replies.get(run_id, 0)} reply message(s), not 1")
    open_ones = [i for table in (messages, steps) for i, (_, _, status) in table.items() if status != "completed"]
    if open_ones:
        problems.append(f"{len(open_ones)} message(s)/step(s) not completed, e.g. {open_ones[0]}")
    if len(steps) != len(runs):
        problems.append(f"{len(steps)} run steps for {len(runs)} runs")
    per_thread = collections.Counter(parent for parent, _, _ in messages.values())
    short = [t for t in seen.completed if per_thread.get(t) != 2]
    if short:
        problems.append(f"{len(short)} completed thread(s) without exactly 2 messages, e.g. {short[0]}")
    return problems


# -- one client count, and the report -------------------------------------------------------------

def measure(clients: int, seconds: float, log_level: str, store_timing: bool = False, sdk: bool = False,
            tree: Path | None = None) -> Load:
    """Start a fresh server, load it with `clients` clients for `seconds`, stop it, check its database."""
    load = Load(clients)
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        db = Path(tmp) / "load.sqlite3"
        timing = Path(tmp) / "timing.json" if store_timing else None
        with serving(db, log_level, timing, tree) as (proc, url):
            asyncio.run(drive(url, proc.pid, clients, seconds, load, sdk))
        load.problems = check_database(db, load.seen)
        if timing is not None:
            load.timing = json.loads(timing.read_text(encoding="utf-8")) if timing.exists() else {}
    return load


def timing_lines(groups: list[list[Load]]) -> list[str]:
    """Per client count, the medians of what SQLite cost per cycle on the server's event loop (--store-timing): CPU
    time of the loop's thread, and wall time (which on a shared machine includes waiting for a core)."""
    lines = []
    for loads in groups:
        per: dict[str, list[float]] = collections.defaultdict(list)
        for load in loads:
            cycles = max(1, len(load.latencies))
            words = load.timing or {}
            loop = {w: t for w, t in words.items() if "off the event loop" not in w}
            statements = {w: t for w, t in loop.items() if not w.startswith("store calls")}
            held = [w for w in loop if w.startswith(("store calls", "BEGIN", "COMMIT", "ROLLBACK"))]
            per["statements"].append(sum(t["count"] for t in statements.values()) / cycles)
            per["commits"].append(words.get("COMMIT", {}).get("count", 0) / cycles)
            per["statement ms"].append(sum(t["cpu"] for t in statements.values()) * 1000 / cycles)
            per["commit ms"].append(words.get("COMMIT", {}).get("cpu", 0) * 1000 / cycles)
            per["held ms"].append(sum(loop[w]["cpu"] for w in held) * 1000 / cycles)
            per["held wall ms"].append(sum(loop[w]["seconds"] for w in held) * 1000 / cycles)
            per["server ms"].append(load.server_cpu * 1000 / cycles)
            per["share"].append(per["held ms"][-1] / per["server ms"][-1] if load.server_cpu else 0.0)
        m = {key: statistics.median(values) for key, values in per.items()}
        lines.append(f"{loads[0].clients} clients, per cycle: {m['statements']:.1f} SQL statements "
                     f"({m['commits']:.1f} COMMIT) using {m['statement ms']:.2f} ms CPU (COMMIT {m['commit ms']:.2f} "
                     f"ms); the store (statements + JSON) used {m['held ms']:.2f} ms CPU of the server's "
                     f"{m['server ms']:.2f} ms ({m['share']:.0%}) and held its event loop {m['held wall ms']:.2f} ms "
                     "wall clock")
    return lines


def figures(load: Load) -> dict[str, float]:
    """One run's figures: rates per second, latencies in seconds, CPU as a share of one core."""
    return {"requests/s": load.requests / load.wall, "cycles/s": len(load.latencies) / load.wall,
            "p50": load.percentile(50), "p99": load.percentile(99), "server": load.server_cpu / load.wall,
            "server ms": load.server_cpu * 1000 / max(1, load.requests), "loop": load.loop_cpu / load.wall,
            "client": load.client_cpu / load.wall, "other": load.other_cpu / load.wall}


def describe(load: Load) -> str:
    """One run in a line, for the log of a repeated measurement."""
    f = figures(load)
    return (f"{load.clients} clients: {f['requests/s']:.0f} requests/s, p50 {f['p50']:.2f} s, p99 {f['p99']:.2f} s, "
            f"{sum(load.errors.values())} errors, CPU server {f['server']:.0%} (its event loop {f['loop']:.0%}; "
            f"{f['server ms']:.2f} ms/request) "
            f"client {f['client']:.0%} "
            f"other {f['other']:.0%}, {'consistent' if not load.problems else 'INCONSISTENT'}")


def table(groups: list[list[Load]], label: str, seconds: float) -> list[list[str]]:
    """Markdown table rows (header first): per client count, the median of each figure over its repeats,
    the errors of all of them, and whether every database was consistent."""
    header = ["", "clients", "requests/s", "cycles/s", "cycle p50", "cycle p99", "errors", "server CPU",
              "server CPU/request", "client CPU", "other CPU", "database"]
    rows = [header]
    for loads in groups:
        f = {key: statistics.median(figures(load)[key] for load in loads) for key in figures(loads[0])}
        errors: collections.Counter[str] = sum((load.errors for load in loads), collections.Counter())
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "0"
        runs = f", median of {len(loads)}" if len(loads) > 1 else ""
        rows.append([label, f"{loads[0].clients} ({seconds:g} s{runs})",
                     f"{f['requests/s']:.0f}", f"{f['cycles/s']:.1f}", f"{f['p50']:.2f} s", f"{f['p99']:.2f} s",
                     shown, f"{f['server']:.0%}", f"{f['server ms']:.2f} ms",
                     *(f"{f[key]:.0%}" for key in ("client", "other")),
                     "consistent" if not any(load.problems for load in loads) else "INCONSISTENT"])
    return rows


def render(rows: list[list[str]]) -> list[str]:
    """Rows as an aligned Markdown table."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(rows[0], widths, strict=True)) + " |",
             "| " + " | ".join("-" * w for w in widths) + " |"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows[1:]]
    return lines


def write_section(rows: list[list[str]], labels: set[str]) -> None:
    """Replace these labels' rows in the "Serve load" section of BENCHMARKS.md; other labels' rows, and the
    notes written under the table, are kept."""
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(f"\n{SECTION}\n")
    before, old = (text, "") if start < 0 else (text[:start], text[start + 1:])
    after = ""
    following = old.find("\n## ", len(SECTION))
    if following >= 0:
        old, after = old[:following + 1], old[following + 1:]
    lines = old.splitlines()
    table_at = [i for i, line in enumerate(lines) if line.startswith("|")]
    notes = "\n".join(lines[table_at[-1] + 1:]).strip("\n") if table_at else ""
    kept = [[c.strip() for c in lines[i].strip().strip("|").split("|")] for i in table_at
            if not lines[i].startswith("| -")]
    kept = [r for r in kept[1:] if len(r) == len(rows[0]) and r[0] not in labels]  # [0]: the old header
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    section = (f"{SECTION}\n\nProduced by `python bench/serve_load.py --write` (issue 11; see the script's docstring "
               "for what each column measures): `runner serve --provider echo` over loopback HTTP, N clients for "
               "the seconds shown, one cycle = create thread -> message -> streamed run -> list (4 requests); CPU "
               "is a share of one core, \"other\" what the rest of the shared machine used meanwhile: requests/s "
               "follows the server's share of a core, its CPU per request is the steadier figure. Last written on "
               f"{machine}, {time.strftime('%Y-%m-%d')}.\n\n"
               + "\n".join(render([rows[0], *kept, *rows[1:]])) + "\n" + (f"\n{notes}\n" if notes else ""))
    path.write_text(before.rstrip("\n") + "\n\n" + section + ("\n" + after if after else ""), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="32,64", help="client counts to measure, comma-separated")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of load per client count")
    parser.add_argument("--quick", action="store_true", help="about 10 s per client count: a smoke check")
    parser.add_argument("--log-level", default="info", help="the server's --log-level (info logs every request)")
    parser.add_argument("--write", action="store_true", help="put the figures in BENCHMARKS.md")
    parser.add_argument("--label", default="current", help="the rows' label in BENCHMARKS.md (e.g. before, after)")
    parser.add_argument("--client", choices=("httpx2", "sdk"), default="httpx2",
                        help="raw httpx2 requests (default: the least client CPU) or the official AsyncOpenAI SDK")
    parser.add_argument("--store-timing", action="store_true",
                        help="time the server's SQLite statements (bench/store_timing.py) and print their share")
    parser.add_argument("--repeat", type=int, default=1, help="runs per client count; the table shows medians")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also measure the server of another copy of the code (a folder holding its runner/ "
                             "package, e.g. from `git archive`), alternating run by run with this one")
    parser.add_argument("--baseline-label", default="baseline", help="the baseline rows' label")
    args = parser.parse_args()
    seconds = 10.0 if args.quick else args.seconds
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    trees: list[tuple[str, Path | None]] = [(args.label, None)]
    if args.baseline is not None:
        if not (args.baseline / "runner" / "__main__.py").exists():
            parser.error(f"--baseline {args.baseline}: no runner package in it")
        trees.insert(0, (args.baseline_label, args.baseline.resolve()))
    groups: dict[str, list[list[Load]]] = {label: [[] for _ in counts] for label, _ in trees}
    for _ in range(args.repeat):
        # round-robin over client counts and code versions: drift on a shared machine hits all of them alike
        for index, clients in enumerate(counts):
            for label, tree in trees:
                load = measure(clients, seconds, args.log_level, args.store_timing, args.client == "sdk", tree)
                groups[label][index].append(load)
                print(f"{label}: {describe(load)}", file=sys.stderr, flush=True)
                for problem in load.problems:
                    print(f"{label}: {clients} clients: database: {problem}", file=sys.stderr)
    rows: list[list[str]] = []
    for label, _ in trees:
        rows += table(groups[label], label, seconds)[0 if not rows else 1:]
    print("\n".join(render(rows)))
    if args.store_timing:
        for label, _ in trees:
            print("\n".join(f"{label}: {line}" for line in timing_lines(groups[label])))
    if args.write:
        write_section(rows, {label for label, _ in trees})
    if any(load.problems for group in groups.values() for loads in group for load in loads):
        sys.exit(1)


if __name__ == "__main__":
    main()
