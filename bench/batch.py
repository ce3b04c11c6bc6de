"""Batch benchmark for issue 5: prints one table and writes BENCHMARKS.md. A script, not a test.

    python bench/batch.py            # the full run (about 2 minutes on 2 cores)
    python bench/batch.py --quick    # fewer conversations, for a smoke check

a. N single-turn conversations on the embedded echo backend (create thread -> message -> run -> reply):
   wall seconds including process start, conversations/s, peak RSS of the runner and its helper processes
   summed (sampled every 20 ms; pages they share after the fork count once per process, so an upper bound).
b. the same with each run delayed 200 ms (a scripted rule with delay_ms): batch wall time against the ideal
   N x 0.2 s / C, at C = 1, 16, 64, 256, as a ratio (the runner's own batch time, process start excluded).
c. result latency: milliseconds from the run's completion inside the backend to the engine holding the
   reply, streaming and polling (in-process, median over many runs).
d. start-up: `runner --help`, and `runner validate` of 100 specs (which must not import the SDK); and
   `runner run specs/examples/hello.yaml` (one conversation on the embedded backend) against `runner --help`,
   run in turn, as the median of the pairwise wall-time ratios (issue 10: at most 3x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=DeprecationWarning)
ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"a_wall": 3.9, "a_rss": 240.0, "b_64": 1.10, "b_256": 1.25, "c_stream": 10.0, "d_help": 0.3,
           "d_validate": 1.0, "d_hello_ratio": 3.0}


def write_specs(folder: Path, n: int, delay_ms: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        if delay_ms:
            # one rule shared by every spec: one backend whose every run takes delay_ms
            body = (f"assistant: {{model: scripted}}\n"
                    f"backend: {{rules: [{{user: 'hello (\\d+)', reply: 'done \\1', delay_ms: {delay_ms}}}]}}\n"
                    f"conversation: [{{user: 'hello {i}', expect: [{{contains: 'done {i}'}}]}}]\n")
        else:
            body = (f"assistant: {{model: echo}}\n"
                    f"conversation: [{{user: 'hello {i}', expect: [{{contains: 'hello {i}'}}]}}]\n")
        (folder / f"c{i:05d}.yaml").write_text(body, encoding="utf-8")


def tree_rss_kib(pid: int) -> int:
    """The resident memory of a process and all its descendants, summed (pages shared after a fork count
    once per process: an upper bound)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status", encoding="utf-8") as status:
                total += next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="utf-8") as children:
                    stack.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError):  # it ended meanwhile
            continue
    return total


def run_runner(args: list[str], cwd: Path) -> tuple[float, float, int, dict]:
    """Run `runner ...` as its own process: (wall seconds, peak RSS MiB of it and its helper processes together,
    exit code, summary JSON)."""
    summary = cwd / "summary.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "OPENAI_"))}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "runner", *args, "--summary", str(summary)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]
    ended = threading.Event()

    def sample() -> None:  # every 20 ms: cheap enough not to slow the runner down
        while not ended.wait(0.02):
            peak[0] = max(peak[0], tree_rss_kib(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    ended.set()
    sampler.join()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"runner {' '.join(args)} exited {code}: {proc.stderr.read().decode()[-2000:]}")
    return wall, max(peak[0], usage.ru_maxrss) / 1024, code, json.loads(summary.read_text(encoding="utf-8"))


def bench_a(work: Path, n: int) -> dict:
    write_specs(work / "a", n)
    wall, rss, _, summary = run_runner(["run", "a", "-j", "64", "-o", "out-a", "--record", "none"], work)
    assert summary["totals"]["passed"] == n, summary["totals"]
    return {"n": n, "wall": wall, "rate": n / wall, "rss": rss}


def bench_b(work: Path, sizes: dict[int, int]) -> list[dict]:
    rows = []
    for concurrency, n in sizes.items():
        folder = work / f"b{concurrency}"
        write_specs(folder, n, delay_ms=200)
        _, _, _, summary = run_runner(["run", folder.name, "-j", str(concurrency), "-o", f"out-b{concurrency}",
                                       "--record", "none"], work)
        assert summary["totals"]["passed"] == n, summary["totals"]
        ideal = n * 0.2 / concurrency
        rows.append({"c": concurrency, "n": n, "wall": summary["totals"]["seconds"], "ideal": ideal,
                     "ratio": summary["totals"]["seconds"] / ideal})
    return rows


def bench_c(samples: int) -> dict:
    """Stamp the backend's `thread.run.completed` and the moment the engine's turn has its reply."""
    sys.path.insert(0, str(ROOT))
    from runner.engine import conversation as conv
    from runner.engine.backend import BackendTarget, embedded_client
    from runner.server import executor as ex
    from runner.server.app import Backend
    from runner.spec import BackendConfig, load_spec

    completed: dict[str, float] = {}
    emit = ex.RunExecutor._emit

    def stamped_emit(self, run_id, event, data):  # type: ignore[no-untyped-def]
        if event == "thread.run.completed":
            completed[run_id] = time.perf_counter()
        return emit(self, run_id, event, data)

    ex.RunExecutor._emit = stamped_emit  # type: ignore[method-assign]
    held: dict[str, float] = {}

    async def stamped_turn(self, turn, record, assistant_id):  # type: ignore[no-untyped-def]
        await turn_fn(self, turn, record, assistant_id)
        if record.run_id:
            held[record.run_id] = time.perf_counter()  # the reply is in the record now

    turn_fn = conv._Conversation._turn
    conv._Conversation._turn = stamped_turn  # type: ignore[method-assign]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec_file = Path(tmp) / "s.yaml"
        spec_file.write_text("assistant: {model: echo}\nconversation: [{user: hi}]\n", encoding="utf-8")
        spec = load_spec(spec_file)
        for mode, stream in (("streaming", True), ("polling", False)):
            async def go(stream: bool = stream) -> list[float]:
                client = embedded_client(Backend())
                pool = conv.AssistantPool(client)
                target = BackendTarget(BackendConfig(stream=stream))
                latencies = []
                for _ in range(samples):
                    transcript = await conv.run_conversation(spec, client, target, pool, conv.EngineOptions())
                    run_id = transcript.turns[0].run_id
                    latencies.append((held[run_id] - completed[run_id]) * 1000)
                await client.close()
                return latencies

            values = asyncio.run(go())
            out[mode] = {"median": statistics.median(values), "p95": sorted(values)[int(len(values) * 0.95) - 1]}
    conv._Conversation._turn = turn_fn  # type: ignore[method-assign]
    ex.RunExecutor._emit = emit  # type: ignore[method-assign]
    return out


def bench_d(work: Path, repeats: int) -> dict:
    write_specs(work / "d", 100)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "OPENAI_"))}

    def timed(args: list[str]) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "runner", *args], cwd=work, env=env, check=True,
                           stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def wall(args: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "runner", *args], cwd=work, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        return time.perf_counter() - start

    hello = str(ROOT / "specs" / "examples" / "hello.yaml")
    pairs = [(wall(["run", hello, "--out", "hello-out"]), wall(["--help"])) for _ in range(max(repeats, 9))]
    return {"help": timed(["--help"]), "validate": timed(["validate", "d"]),
            "hello": statistics.median(run for run, _ in pairs),
            "hello_ratio": statistics.median(run / help_ for run, help_ in pairs)}


def main() -> None:
    parser = argparse.ArgumentParser(description="runner batch benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer conversations: a smoke check, not the figures")
    parser.add_argument("--no-write", action="store_true", help="print the table without writing BENCHMARKS.md")
    args = parser.parse_args()
    n = 200 if args.quick else 1000
    sizes = {1: 10, 16: 80, 64: 320, 256: 1000} if args.quick else {1: 50, 16: 400, 64: 1000, 256: 1000}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        a = bench_a(work, n)
        b = bench_b(work, sizes)
        d = bench_d(work, 5)
    c = bench_c(100 if args.quick else 300)
    rows: list[tuple[str, str, str, str, str]] = []

    def row(part: str, measure: str, value: str, shown: float | None = None, target: float | None = None,
            unit: str = "") -> None:
        goal = f"<= {target:g}{unit}" if target is not None else ""
        met = ("met" if shown <= target else "MISSED") if target is not None and shown is not None else ""
        rows.append((part, measure, value, goal, met))

    row("a", f"{a['n']} echo conversations, -j 64: wall incl. start", f"{a['wall']:.2f} s", a["wall"],
        TARGETS["a_wall"], " s")
    row("a", "conversations per second", f"{a['rate']:.0f}/s")
    row("a", "peak RSS (all processes, summed)", f"{a['rss']:.0f} MiB", a["rss"], TARGETS["a_rss"], " MiB")
    for r in b:
        target = {64: TARGETS["b_64"], 256: TARGETS["b_256"]}.get(r["c"])
        row("b", f"200 ms runs, C = {r['c']} (N = {r['n']}): {r['wall']:.2f} s vs ideal {r['ideal']:.2f} s",
            f"{r['ratio']:.2f}x", r["ratio"], target, "x")
    for mode, target in (("streaming", TARGETS["c_stream"]), ("polling", None)):
        row("c", f"result latency, {mode} (median / p95)",
            f"{c[mode]['median']:.2f} / {c[mode]['p95']:.2f} ms", c[mode]["median"], target, " ms")
    row("d", "runner --help", f"{d['help']:.3f} s", d["help"], TARGETS["d_help"], " s")
    row("d", "runner validate (100 specs)", f"{d['validate']:.3f} s", d["validate"], TARGETS["d_validate"], " s")
    row("d", f"runner run hello.yaml ({d['hello']:.3f} s) / runner --help, side by side", f"{d['hello_ratio']:.2f}x",
        d["hello_ratio"], TARGETS["d_hello_ratio"], "x")
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    header = ("", "measure", "value", "target", "")
    table = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
             "| " + " | ".join("-" * w for w in widths) + " |"]
    table += ["| " + " | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) + " |" for r in rows]
    print("\n".join(table))
    if not args.no_write and not args.quick:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        path = ROOT / "BENCHMARKS.md"
        # this script owns the title and its table; the `## ` sections after them (bench/serve_load.py's) stay
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        kept = old[old.index("\n## ") + 1:] if "\n## " in old else ""
        path.write_text(
            "# Benchmarks\n\nProduced by `python bench/batch.py` (issue 5's targets; see the script's docstring for "
            f"what each row measures) on {machine}, {time.strftime('%Y-%m-%d')}.\n\n" + "\n".join(table) + "\n"
            + ("\n" + kept if kept else ""), encoding="utf-8")


if __name__ == "__main__":
    main()
