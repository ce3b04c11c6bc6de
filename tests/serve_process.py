"""Start `runner serve` as a real process on a free port, for tests that need the backend over HTTP."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


class Server:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop the server and return everything it wrote to stderr (what it wrote to stdout, uvicorn's access
        log, is then in `stdout`)."""
        self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.stdout = out
        return self.log + err

    log = ""
    stdout = ""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "OPENAI_"))}
    return {**env, **extra}


@contextlib.contextmanager
def serving(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "serve", "--port", "0", "--db", str(tmp_path / "backend.sqlite3"), *args],
        env=env or clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    lines = []
    deadline = time.monotonic() + 60
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"Assistants API on (http://\S+/v1)", line)
        if match:
            server = Server(proc, match.group(1))
            server.log = "".join(lines)
            try:
                yield server
            finally:
                if proc.poll() is None:
                    server.stop()
            return
    proc.kill()
    raise AssertionError("runner serve did not start:\n" + "".join(lines) + (proc.stderr.read() or ""))
