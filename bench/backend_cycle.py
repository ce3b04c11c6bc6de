"""Benchmark: the Assistants cycle on the built-in backend's echo model, in-process and over HTTP.

One cycle = threads.create -> messages.create -> runs.create (polled to completion) -> messages.list,
driven by the official SDK, sequentially (one client, one conversation at a time). Prints cycles/s and
requests/s for each transport. A script, not a test:

    python bench/backend_cycle.py [--cycles 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)


async def cycles(client, n: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    assistant = await client.beta.assistants.create(model="echo")
    requests = 0
    start = time.perf_counter()
    for i in range(n):
        thread = await client.beta.threads.create()
        await client.beta.threads.messages.create(thread.id, role="user", content=f"hello {i}")
        run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                             poll_interval_ms=1)
        assert run.status == "completed", run.status
        page = await client.beta.threads.messages.list(thread.id)
        assert page.data[0].content[0].text.value == f"hello {i}"
        requests += 4  # create thread, create message, create run, list (plus any polls below)
    return time.perf_counter() - start, requests


def in_process(n: int) -> tuple[float, int]:
    from runner.engine.backend import embedded_client
    from runner.server.app import Backend

    async def go() -> tuple[float, int]:
        client = embedded_client(Backend())
        polls = _count_polls(client)
        elapsed, requests = await cycles(client, n)
        await client.close()
        return elapsed, requests + polls["n"]

    return asyncio.run(go())


def over_http(n: int) -> tuple[float, int]:
    from openai import AsyncOpenAI

    db = os.path.join(tempfile.mkdtemp(), "bench.sqlite3")
    proc = subprocess.Popen([sys.executable, "-m", "runner", "serve", "--port", "0", "--db", db,
                             "--log-level", "warning"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        url = None
        while url is None:
            line = proc.stderr.readline()
            if not line:
                raise SystemExit("runner serve did not start")
            match = re.search(r"on (http://\S+/v1)", line)
            url = match.group(1) if match else None

        async def go() -> tuple[float, int]:
            client = AsyncOpenAI(api_key="x", base_url=url, max_retries=0)
            polls = _count_polls(client)
            elapsed, requests = await cycles(client, n)
            await client.close()
            return elapsed, requests + polls["n"]

        return asyncio.run(go())
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _count_polls(client) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Count the retrieve calls create_and_poll makes beyond the first four requests of a cycle."""
    counter = {"n": 0}
    runs = client.beta.threads.runs
    original = runs.retrieve

    async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        counter["n"] += 1
        return await original(*args, **kwargs)

    runs.retrieve = counted
    return counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=300)
    args = parser.parse_args()
    print(f"{'transport':<12} {'cycles':>7} {'seconds':>8} {'cycles/s':>9} {'requests/s':>11}")
    for name, fn in (("in-process", in_process), ("http", over_http)):
        elapsed, requests = fn(args.cycles)
        print(f"{name:<12} {args.cycles:>7} {elapsed:>8.2f} {args.cycles / elapsed:>9.1f} {requests / elapsed:>11.1f}")


if __name__ == "__main__":
    main()
