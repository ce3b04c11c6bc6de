"""The team's local model server kit (`../shared/live/`: llama.cpp's llama-server with SmolLM2-135M), started
and stopped for tests. A user's clone has no kit beside it: the tests that need it skip, saying why."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

KIT = Path(__file__).resolve().parents[2] / "shared" / "live" / "start-model-server"
# llama-server answers /v1/embeddings only with --embeddings, and refuses them with pooling `none` (SmolLM2's
# own); an input must fit in one physical batch (512 tokens by default: less than a default 800-token chunk)
EMBEDDING_ARGS = ("--embeddings", "--pooling", "mean", "--batch-size", "2048", "--ubatch-size", "2048")


@dataclass
class LocalModelServer:
    """One running llama-server: its base URL (`http://127.0.0.1:PORT/v1`), PID and log."""

    url: str
    pid: int
    log: Path

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then wait until the process is gone (SIGKILL after `timeout`); no server is left running."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while _alive(self.pid):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _alive(pid: int) -> bool:
    """Whether `pid` still runs (the server is detached, so not our child: a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def start(workdir: Path, *args: str, **env: str) -> LocalModelServer:
    """Start a server with the kit (its PID and log kept in `workdir`; `args` go to llama-server); raise
    RuntimeError saying why not."""
    if not KIT.is_file():
        raise RuntimeError(f"the local model server kit is not beside the repository ({KIT})")
    workdir.mkdir(parents=True, exist_ok=True)
    pidfile, log = workdir / "llama-server.pid", workdir / "llama-server.log"
    # llama-server reads LLAMA_ARG_* (LLAMA_ARG_TOOLS would switch on its shell tools): keep them out
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
    proc = subprocess.run([str(KIT), *args], capture_output=True, text=True, timeout=300,
                          env={**environ, "PIDFILE": str(pidfile), "LOGFILE": str(log), **env})
    if proc.returncode != 0:
        raise RuntimeError(f"the local model server did not start: {proc.stderr.strip()[-500:]}")
    return LocalModelServer(proc.stdout.strip(), int(pidfile.read_text().strip()), log)
