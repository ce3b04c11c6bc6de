"""A batch of conversations: one client and one assistant pool per backend, bounded concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runner.engine.backend import BackendTarget, BackendUnavailable, open_client, secret_values
from runner.engine.conversation import AssistantPool, EngineOptions, run_conversation
from runner.engine.responses import run_responses_conversation
from runner.record.cassettes import REPLAYING_MODES, cassette_for, recording
from runner.report.transcript import Transcript, TurnRecord
from runner.spec.fingerprint import conversation_digest
from runner.spec.model import Spec


@dataclass(frozen=True)
class Job:
    """One conversation to run and the backend it runs on."""

    spec: Spec
    target: BackendTarget


class _BackendSession:
    def __init__(self, target: BackendTarget) -> None:
        self.target = target
        self.client: Any = None
        self.pool: AssistantPool | None = None
        self.streaming: dict[str, bool] = {}
        self.error: str | None = None

    def open(self, replaying: bool, code: bool = False) -> None:
        try:
            self.client = open_client(self.target, replaying=replaying, code=code)
        except BackendUnavailable as exc:
            self.error = str(exc)
            return
        self.pool = AssistantPool(self.client)

    async def close(self, keep: bool) -> None:
        if self.pool is not None and not self.target.embedded and not keep:
            await self.pool.delete_created()
        if self.client is not None:
            await self.client.close()


def _unavailable(job: Job, error: str) -> Transcript:
    spec = job.spec
    return Transcript(
        spec_file=spec.file, name=spec.label, case=spec.case, description=spec.description,
        tags=list(spec.tags),
        backend=job.target.describe(), model=spec.assistant.model if spec.assistant else None,
        assistant=spec.assistant.to_create_params() if spec.assistant else None, assistant_id=spec.assistant_id,
        turns=[TurnRecord(index=t.index, user=t.user, skipped=True) for t in spec.turns],
        error=f"backend unavailable: {error}",
    )


def backend_share(concurrency: int, backends: int) -> int:
    """How many of the batch's slots one backend may hold: all of them when it is alone, else three quarters,
    so a slow provider never starves the others."""
    return max(1, concurrency if backends <= 1 else (concurrency * 3) // 4)


async def run_batch(jobs: Sequence[Job], options: EngineOptions, *, concurrency: int = 8,
                    after: Callable[[Job, Transcript], Awaitable[None]] | None = None,
                    on_done: Callable[[Job, Transcript], None] | None = None,
                    stop: Callable[[], bool] | None = None,
                    claim: Callable[[int], bool] | None = None) -> list[Transcript]:
    """Run every job, at most `concurrency` at a time; `on_done` sees each transcript as soon as it exists.

    `after` runs right after each conversation, still inside its cassette, for work whose traffic belongs
    there (a grader's model calls). Once `stop()` is true, conversations not yet started are not started
    (running ones finish). With `claim`, a job runs only if `claim(its index)` is true when a slot is free
    for it (other processes share the list). Transcripts of the conversations that ran come back in the order
    of `jobs`.
    """
    sessions: dict[str, _BackendSession] = {}
    keys = [job.target.config.key() for job in jobs]
    # an embedded backend executes code only when a spec running on it has the code_interpreter tool
    running_code = {key for job, key in zip(jobs, keys, strict=True) if job.spec.runs_code}
    for job, key in zip(jobs, keys, strict=True):
        if key not in sessions:
            sessions[key] = _BackendSession(job.target)
            sessions[key].open(options.record_mode in REPLAYING_MODES, code=key in running_code)
    limit = asyncio.Semaphore(max(1, concurrency))
    share = backend_share(concurrency, len(sessions))
    backend_limits = {key: asyncio.Semaphore(share) for key in sessions}

    async def one(index: int, job: Job) -> Transcript | None:
        key = keys[index]
        session = sessions[key]
        converse = run_responses_conversation if job.spec.pipeline == "responses" else run_conversation
        # the backend's own limit first: a conversation waiting for a busy backend holds no global slot
        async with backend_limits[key], limit:
            if (stop is not None and stop()) or (claim is not None and not claim(index)):
                return None
            if session.error is not None or session.pool is None:
                transcript = _unavailable(job, session.error or "not opened")
            elif (mode := options.record_mode if job.target.embedded else options.remote_record_mode) is None:
                transcript = await converse(job.spec, session.client, job.target, session.pool, options,
                                            session.streaming)
                if after is not None:
                    await after(job, transcript)
            else:
                path, mode = cassette_for(options.cassettes, job.spec, mode)
                with recording(path, mode, job.spec.key,
                               secret_values(job.target, options.secret_env)) as cassette:
                    # a remote endpoint's traffic is recorded: a shared assistant would put its calls in
                    # whichever cassette came first, so each conversation makes (and removes) its own
                    pool = session.pool if job.target.embedded else AssistantPool(session.client)
                    transcript = await converse(job.spec, session.client, job.target, pool,
                                                options, session.streaming, cassette)
                    if pool is not session.pool and not options.keep:
                        await pool.delete_created()
                    if after is not None:
                        await after(job, transcript)
        # what the conversation was made of, so a later `runner rejudge` can tell when its spec's conversation changed
        transcript.conversation = conversation_digest(job.spec)
        if on_done is not None:
            on_done(job, transcript)
        return transcript

    try:
        return [t for t in await asyncio.gather(*(one(i, job) for i, job in enumerate(jobs))) if t is not None]
    finally:
        await asyncio.gather(*(s.close(options.keep) for s in sessions.values()), return_exceptions=True)
