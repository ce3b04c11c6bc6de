"""Running specs from start to verdict: jobs, preflight, the batch, and the checks, for every front end.

The `runner run` command and the pytest plugin both go through here, so a spec behaves the same from
either. Imports the SDK (through the engine): keep it out of start-up paths that do not run anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runner.engine import EngineOptions, Job, preflight, resolve_backend, run_batch
from runner.engine.backend import redactor_for
from runner.expect import CheckContext, judge
from runner.redact import Redactor
from runner.report.transcript import Transcript
from runner.spec.model import Spec


@dataclass(frozen=True)
class BackendChoice:
    """The backend flags of a run: a remote endpoint, its key's variable, polling instead of streaming."""

    base_url: str | None = None
    api_key_env: str | None = None
    poll: bool = False


def repeated(specs: Sequence[Spec], times: int) -> list[tuple[Spec, str]]:
    """Each spec `times` times, as cases of their own (`repeat=2`), with the key they count toward."""
    import dataclasses

    if times <= 1:
        return [(spec, spec.label) for spec in specs]
    return [(dataclasses.replace(spec, case=",".join(filter(None, (spec.case, f"repeat={r}"))), repeats=spec.case),
             spec.label) for spec in specs for r in range(1, times + 1)]


@dataclass(frozen=True)
class PassRate:
    """How often a repeated conversation passed, and whether that is enough."""

    label: str
    passed: int
    runs: int
    minimum: float

    @property
    def rate(self) -> float:
        """The share of runs that passed."""
        return self.passed / self.runs if self.runs else 0.0

    @property
    def ok(self) -> bool:
        """Whether the rate reaches the minimum."""
        return self.runs > 0 and self.rate >= self.minimum


def pass_rates(transcripts: Sequence[Transcript], counts_toward: dict[str, str], expected: dict[str, int],
               minimum: float) -> list[PassRate]:
    """Pass rates per conversation, over its repeats (a repeat that never ran counts as failed)."""
    passed: dict[str, int] = dict.fromkeys(expected, 0)
    for transcript in transcripts:
        if transcript.passed:
            passed[counts_toward[transcript.key]] += 1
    return [PassRate(label, passed[label], runs, minimum) for label, runs in expected.items()]


def make_jobs(specs: Sequence[Spec], choice: BackendChoice) -> list[Job]:
    """One job per spec, on the backend the flags, the environment and the spec choose."""
    stream = False if choice.poll else None
    return [Job(spec, resolve_backend(spec, choice.base_url, choice.api_key_env, stream)) for spec in specs]


def problems(jobs: Sequence[Job], options: EngineOptions) -> list[str]:
    """Everything that would make a job fail before it starts (preflight), one line each."""
    from runner.record.cassettes import can_replay

    found = [problem for job in jobs
             for problem in preflight(job.spec, job.target,
                                      replaying=can_replay(options.record_mode, options.cassettes, job.spec))]
    if any(job.spec.pipeline == "responses" for job in jobs):
        from runner.engine.responses import pipeline_problems

        found += [problem for job in jobs if job.spec.pipeline == "responses"
                  for problem in pipeline_problems(job.spec)]
    return list(dict.fromkeys(found))  # cases and repeats of one spec share its problems: say each once


def check_contexts(jobs: Sequence[Job]) -> dict[str, CheckContext]:
    """Each spec's check context: its vars and folder, and a grader on the providers its backend offers."""
    from runner.expect.grader import Grader, live_settings
    from runner.server.providers import ProviderSet

    live = live_settings(os.environ)
    graders: dict[str, Grader] = {}
    contexts = {}
    for job in jobs:
        config = job.target.config
        key = config.key()
        if key not in graders:  # offline `scripted` rules can grade too, for demos and tests
            graders[key] = Grader(ProviderSet(rules=config.rules, live=live), os.environ.get("RUNNER_GRADER_MODEL"))
        contexts[job.spec.key] = CheckContext(spec_file=job.spec.file, variables=job.spec.vars,
                                               grader=graders[key])
    return contexts


async def execute(jobs: Sequence[Job], options: EngineOptions, *, concurrency: int = 8,
                  on_done: Callable[[Job, Transcript], Any] | None = None,
                  stop: Callable[[], bool] | None = None,
                  claim: Callable[[int], bool] | None = None) -> list[Transcript]:
    """Run and judge every job; `on_done` sees each judged transcript as soon as it exists; once `stop()`
    is true no further conversation starts; with `claim`, only the jobs it grants run (see `run_batch`)."""
    contexts = check_contexts(jobs)
    redact = batch_redactor(jobs, options)

    async def checked(job: Job, transcript: Transcript) -> None:
        await judge(job.spec, transcript, contexts[job.spec.key])

    def done(job: Job, transcript: Transcript) -> None:
        # after the checks judged the real reply, before anything writes, prints or sends the transcript
        redact.data(transcript)
        if on_done is not None:
            on_done(job, transcript)

    return await run_batch(jobs, options, concurrency=concurrency, after=checked, on_done=done, stop=stop,
                           claim=claim)


def batch_redactor(jobs: Sequence[Job], options: EngineOptions) -> Redactor:
    """What replaces the secrets of every backend of the batch by `<NAME>` (see `redactor_for`)."""
    redact = Redactor()
    for target in {job.target.config.key(): job.target for job in jobs}.values():
        redact = redact.union(redactor_for(target, options.secret_env))
    return redact
