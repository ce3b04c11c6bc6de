"""The HTML report at scale: its size, and how soon it is usable, with 1,000 and 10,000 conversations.

    python bench/html_report.py                    # 1,000 and 10,000 conversations, 3 loads each
    python bench/html_report.py --sizes 500 --loads 1
    python bench/html_report.py --write            # and put the figures in BENCHMARKS.md's "HTML report" section

Synthetic transcripts shaped as `runner run` writes them (pretty JSON, one file a conversation, spec order):
a mix of one- and multi-turn chats, function calls, file_search turns with results and citations, code runs with
logs, about 12% failing and 2% ending in an error, ids and timings as real runs have them. They are written to a
temporary folder, reported as `runner report` does (load_folder, report_data, write_html: timed together as
"write"), and the page is loaded in headless Chromium (Debian's chromium and chromium-driver, through Selenium;
never downloaded). Per load:

- DOMContentLoaded: ms from navigation start until the whole document, the transcripts included, is parsed;
- table: ms from navigation start until the page's script had read the index (the summary and the table's
  fields, which come before it in the file) and rendered the summary, the filters and the table's first page
  (window.runnerReport.readyAt); the transcripts, after the script, are still being read then;
- first paint: the browser's first-contentful-paint, ms from navigation start;
- filter: ms the page takes to apply a text filter over every conversation's name, spec path and replies
  (the first one, which also builds the lowercased search text) and re-render the table, then a tag filter;
- chats ready: ms from navigation start until the transcripts (the bulk of the file) are read and parsed, from
  when a conversation opens at once and the text filter searches replies too (before, it opens when they are,
  and the filter searches names and spec paths);
- open: ms to render one conversation's chat (median of the first 50 opened one after the other; the slowest,
  usually the first, as "open max");
- heap: the page's used JS heap after load, MB.

The figures are medians of --loads loads (a fresh page each).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from markdown_tables import render, write_section

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SECTION = "## HTML report"

_PROSE = ("the order ships within two days of payment and the refund goes back to the card used for it; "
          "warranty covers defects in materials and workmanship for two years from delivery; "
          "kettle limescale descaling support contact number photo fault claim invoice region total")
WORDS = _PROSE.split(" ")


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def _id(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
                            for _ in range(24))


def _check(kind: str, arg: Any, passed: bool, reason: str, where: str) -> dict[str, Any]:
    return {"type": kind, "arg": arg, "passed": passed, "reason": reason, "where": where, "implicit": False,
            "judged": True}


def _turn(rng: random.Random, index: int, kind: str, fail: bool, spec: str) -> dict[str, Any]:
    user = _text(rng, rng.randint(6, 20))
    reply = _text(rng, rng.randint(15, 70))
    turn: dict[str, Any] = {
        "index": index, "user": user, "reply": reply, "messages": [{"id": _id(rng, "msg_"), "text": reply}],
        "tool_calls": [], "attachments": [], "searches": [], "citations": [], "code_runs": [], "images": [],
        "files": [], "outputs": [], "run_id": _id(rng, "run_"), "status": "completed", "last_error": None,
        "incomplete_details": None,
        "usage": {"completion_tokens": rng.randint(10, 200), "prompt_tokens": rng.randint(50, 900)},
        "latency_ms": round(rng.uniform(40, 2500), 1), "error": None, "checks": [], "skipped": False}
    turn["usage"]["total_tokens"] = turn["usage"]["completion_tokens"] + turn["usage"]["prompt_tokens"]
    line = 10 + index * 8
    checks = [{"type": "status", "arg": "completed", "passed": True,
               "reason": "expected the run to end completed; it ended completed", "where": "", "implicit": True,
               "judged": True}]
    if kind == "tools":
        city = rng.choice(["Paris", "Oslo", "Rome", "Lima"])
        turn["tool_calls"] = [{"id": _id(rng, "call_"), "name": "get_weather",
                               "arguments": {"city": city, "unit": "celsius"},
                               "output": json.dumps({"city": city, "temperature": rng.randint(-5, 30)})}]
        checks.append(_check("tool_called", {"name": "get_weather", "arguments": {"city": city}}, True,
                             f"get_weather was called with city={city}", f"{spec}:{line}:9"))
    elif kind == "retrieval":
        results = [{"file_id": _id(rng, "file-"), "file_name": rng.choice(["faq.txt", "warranty.md", "orders.pdf"]),
                    "score": round(rng.uniform(0.3, 0.95), 6), "text": _text(rng, rng.randint(40, 90))}
                   for _ in range(rng.randint(1, 3))]
        turn["searches"] = [{"queries": [user], "results": results}]
        turn["citations"] = [{"file_id": results[0]["file_id"], "file_name": results[0]["file_name"],
                              "text": "【0:0†" + results[0]["file_name"] + "】"}]
        checks.append(_check("file_search", {"file": results[0]["file_name"]}, True,
                             f"a file search found a result from {results[0]['file_name']}", f"{spec}:{line}:9"))
    elif kind == "code":
        turn["code_runs"] = [{"input": "import csv\nrows = list(csv.DictReader(open('/mnt/data/sales.csv')))\n"
                                       "print(sum(float(r['amount']) for r in rows))\n",
                              "logs": f"{rng.uniform(100, 9000):.2f}", "images": []}]
        checks.append(_check("code", {"output_contains": "."}, True, "code run 1 has logs containing \".\"",
                             f"{spec}:{line}:9"))
    word = rng.choice(WORDS)
    if fail:
        checks.append(_check("contains", "refund policy", False,
                             f'expected the reply to contain "refund policy"; reply: "{reply[:120]}"',
                             f"{spec}:{line + 2}:11"))
    else:
        checks.append(_check("icontains", word, True, f'expected the reply to contain "{word}" (any case); it does',
                             f"{spec}:{line + 2}:11"))
    turn["checks"] = checks
    return turn


def synthetic(n: int, seed: int = 15) -> list[dict[str, Any]]:
    """`n` transcripts as `Transcript.to_dict()` gives them, deterministic for a seed."""
    rng = random.Random(seed)
    out = []
    start = 1_796_000_000.0
    for i in range(n):
        kind = rng.choices(["chat", "tools", "retrieval", "code"], weights=[5, 2, 2, 1])[0]
        spec = f"specs/suite{i // 100:03d}/{kind}_{i:05d}.yaml"
        roll = rng.random()
        verdict = "error" if roll < 0.02 else "failed" if roll < 0.14 else "passed"
        turns = [_turn(rng, t, kind, verdict == "failed" and t == 0, spec) for t in range(rng.choice([1, 1, 2, 3, 4]))]
        passed = sum(c["passed"] for t in turns for c in t["checks"])
        total = sum(len(t["checks"]) for t in turns)
        out.append({
            "version": 1, "name": f"{kind}-{i:05d}", "verdict": verdict, "spec_file": spec,
            "pipeline": rng.choice(["assistants", "responses"]), "case": "",
            "description": "Synthetic conversation for the HTML report benchmark.",
            "tags": [kind, rng.choice(["smoke", "nightly", "regression"])],
            "backend": {"kind": "embedded", "provider": None, "rules": 5}, "model": rng.choice(["scripted", "echo"]),
            "assistant": {"model": "scripted", "name": "Support bot", "instructions": _text(rng, 20), "tools": []},
            "assistant_id": _id(rng, "asst_"), "thread_id": _id(rng, "thread_"), "files": [],
            "vector_store_id": None, "started_at": start + i * 0.05,
            "duration_ms": round(sum(t["latency_ms"] for t in turns) + rng.uniform(5, 40), 1),
            "error": "the backend went away: ConnectError: connection refused" if verdict == "error" else None,
            "checks": {"passed": passed, "failed": total - passed, "not_judged": 0},
            "conversation_checks": [], "turns": turns})
    return out


def write_folder(folder: Path, transcripts: list[dict[str, Any]]) -> None:
    """The transcripts as JSON files under `folder`, where `runner run` would put them."""
    for t in transcripts:
        path = folder / (t["spec_file"].removesuffix(".yaml") + ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(t, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def build(folder: Path, html: Path) -> tuple[int, float]:
    """Report on `folder` as `runner report` does; its size in bytes and the seconds it took."""
    from runner.report.html import load_folder, report_data, write_html

    started = time.perf_counter()
    loaded = load_folder(folder)
    size = write_html(html, report_data(loaded.conversations, html, source=str(folder)))
    return size, time.perf_counter() - started


def browser() -> Any:
    """Headless Chromium through Selenium, with the binaries on PATH (Selenium Manager never downloads)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800",
                "--enable-precise-memory-info"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)


def measure(driver: Any, html: Path) -> dict[str, float]:
    """Load the page afresh and read its timings (ms) and heap (MB)."""
    driver.get("about:blank")
    driver.get(html.as_uri())
    got = driver.execute_script("""
        const nav = performance.getEntriesByType('navigation')[0];
        const r = window.runnerReport;
        const text = r.filter({text: 'warranty refund'});
        const matched = r.rows();
        const tag = r.filter({text: '', tag: 'nightly'});
        const opens = [];
        for (let i = 0; i < Math.min(50, r.rows()); i++) opens.push(r.open(i));
        opens.sort((a, b) => a - b);
        const paint = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');
        return {dcl: nav.domContentLoadedEventEnd, table: r.readyAt, loaded: r.loadedAt,
                paint: paint ? paint.startTime : 0, script: r.scriptAt, parsed: r.parsedAt,
                text: text, matched: matched, tag: tag, open: opens[Math.floor(opens.length / 2)],
                open_max: opens[opens.length - 1],
                heap: performance.memory ? performance.memory.usedJSHeapSize / 1048576 : 0};
    """)
    return {k: float(v) for k, v in got.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="conversation counts, comma-separated")
    parser.add_argument("--loads", type=int, default=3, help="page loads per size (the figures are medians)")
    parser.add_argument("--write", action="store_true", help="put the figures in BENCHMARKS.md")
    parser.add_argument("--keep", metavar="DIR", help="keep the transcripts and reports in DIR")
    args = parser.parse_args()
    rows = [["conversations", "transcripts MB", "report bytes", "write s", "table ms", "first paint ms",
             "DOMContentLoaded ms", "chats ready ms", "text filter ms", "tag filter ms", "open ms", "open max ms",
             "heap MB"]]
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="html-bench-"))
    driver = browser()
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            folder = work / f"t{n}"
            shutil.rmtree(folder, ignore_errors=True)
            write_folder(folder, synthetic(n))
            on_disk = sum(p.stat().st_size for p in folder.rglob("*.json"))
            html = work / f"report-{n}.html"
            size, seconds = build(folder, html)
            loads = [measure(driver, html) for _ in range(args.loads)]

            def median(key: str, runs: list[dict[str, float]] = loads) -> float:
                return statistics.median(run[key] for run in runs)

            rows.append([f"{n:,}", f"{on_disk / 1e6:.1f}", f"{size:,}", f"{seconds:.2f}", f"{median('table'):.0f}",
                         f"{median('paint'):.0f}", f"{median('dcl'):.0f}", f"{median('loaded'):.0f}",
                         f"{median('text'):.0f}",
                         f"{median('tag'):.0f}", f"{median('open'):.1f}", f"{median('open_max'):.0f}",
                         f"{median('heap'):.0f}"])
            print("\n".join(render(rows)), flush=True)
    finally:
        driver.quit()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.write:
        chromium = driver.capabilities.get("browserVersion", "?")
        machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                   f"Chromium {chromium}")
        write_section(SECTION,
            f"{SECTION}\n\nProduced by `python bench/html_report.py --write` (issue 15; the script's docstring says "
            f"what each column measures) on {machine}, {time.strftime('%Y-%m-%d')}: synthetic transcripts shaped "
            "as `runner run` writes them (chats, function calls, file_search and code runs; 12% failing), reported "
            "as `runner report` does, and loaded from a file:// URL in headless Chromium; medians of "
            f"{args.loads} loads. The table shows 200 rows a page; a conversation's chat is built when it is opened. "
            "The table is up before the transcripts are read: they come after the page's script in the file, the "
            "summary and table fields before it."
            "\n\n" + "\n".join(render(rows)) + "\n")


if __name__ == "__main__":
    main()
