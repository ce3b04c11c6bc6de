"""pytest plugin: spec files collected as test items, one per conversation.

    pytest specs/                      # collects *.spec.yaml (ini option `runner_spec_glob` to change)
    pytest specs/ --runner-record none # replay cassettes only, as in CI

A failing conversation reports its turns, checks, expected vs actual and the transcript path. Loaded
through the `pytest11` entry point; importing it is cheap (the SDK loads only when a spec runs).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.spec import Spec, SpecInvalid, load_cases
from runner.spec.load import RULES_SUFFIXES
from runner.spec.pipelines import piped

RECORD_MODES = ("none", "once", "new_episodes", "all")


def pytest_addoption(parser: pytest.Parser) -> None:
    """The runner's options, under their own group in `pytest --help`."""
    group = parser.getgroup("runner", "runner conversation specs")
    group.addoption("--runner-record", choices=RECORD_MODES, default=None,
                    help="cassette mode (default: none when CI is set, once otherwise)")
    group.addoption("--runner-cassettes", default="cassettes", help="folder of the cassettes")
    group.addoption("--runner-out", default="transcripts", help="folder of the transcripts")
    group.addoption("--runner-base-url", default=None, help="a remote Assistants-compatible endpoint")
    group.addoption("--runner-api-key-env", default=None, help="variable holding the remote endpoint's key")
    group.addoption("--runner-poll", action="store_true", help="poll runs instead of streaming them")
    group.addoption("--runner-timeout", type=float, default=60.0, help="seconds a run may take")
    group.addoption("--runner-var", action="append", default=[], metavar="KEY=VALUE", help="override a spec var")
    group.addoption("--runner-stable", action="store_true", help="write transcripts in the stable view")
    parser.addini("runner_spec_glob", "file name patterns of spec files collected as tests", type="args",
                  default=["*.spec.yaml", "*.spec.yml"])


def pytest_configure(config: pytest.Config) -> None:
    """Quiet the SDK's notice on every Assistants call (this backend is the point) for spec items."""
    config.addinivalue_line("filterwarnings", "ignore:The Assistants API is deprecated:DeprecationWarning")
    config.addinivalue_line("filterwarnings", r"ignore:deprecated:DeprecationWarning:runner\.engine\..*")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Spec files matching `runner_spec_glob` become SpecFile collectors."""
    patterns = parent.config.getini("runner_spec_glob")
    if file_path.name.endswith(RULES_SUFFIXES):  # scripted-model rules beside the specs are not specs
        return None
    cassettes = Path(parent.config.getoption("runner_cassettes")).resolve()  # as the runs find them: from here
    if file_path.resolve().is_relative_to(cassettes):  # a wide glob (`*.yaml`) must not take recordings for specs
        return None
    if any(fnmatch.fnmatch(file_path.name, pattern) for pattern in patterns):
        return SpecFile.from_parent(parent, path=file_path)
    return None


def _overrides(config: pytest.Config) -> dict[str, str]:
    out = {}
    for item in config.getoption("runner_var"):
        key, sep, value = item.partition("=")
        if not sep:
            raise pytest.UsageError(f"--runner-var expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


class SpecProblem(Exception):
    """The spec cannot run: invalid, or its backend cannot answer it."""


class ConversationFailed(Exception):
    """The conversation ran and did not pass."""


class SpecFile(pytest.File):
    """A spec file: one conversation."""

    def collect(self) -> Iterator[pytest.Item]:
        """One item for the conversation (or for the spec's errors, which fail it)."""
        try:
            cases = load_cases(self.path, _overrides(self.config))
        except SpecInvalid as exc:
            yield SpecItem.from_parent(self, name=self.path.name.split(".")[0], spec=None,
                                       errors=[str(e) for e in exc.errors])
            return
        for spec in piped(cases):  # one item per matrix case, and per pipeline for `pipeline: both`
            yield SpecItem.from_parent(self, name=spec.label, spec=spec, errors=[])


class SpecItem(pytest.Item):
    """One conversation, run through the same path as `runner run`."""

    def __init__(self, *, spec: Spec | None, errors: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.errors = errors
        self.transcript_path: Path | None = None
        if spec is not None:  # tags become markers: `pytest -m smoke`
            for tag in spec.tags:
                marker = tag.replace("-", "_")
                self.config.addinivalue_line("markers", f"{marker}: spec tag")
                self.add_marker(marker)

    def runtest(self) -> None:
        """Run the conversation; raise when it does not pass."""
        if self.spec is None:
            raise SpecProblem("\n".join(self.errors))
        import asyncio

        from runner.sdk import install_lazy_imports

        install_lazy_imports()  # before the engine's first import of the SDK
        from runner.engine import EngineOptions
        from runner.record.cassettes import default_record_mode
        from runner.report.writers import write_transcript
        from runner.run import BackendChoice, execute, make_jobs, problems

        option = self.config.getoption
        jobs = make_jobs([self.spec], BackendChoice(option("runner_base_url"), option("runner_api_key_env"),
                                                    option("runner_poll")))
        options = EngineOptions(timeout=option("runner_timeout"),
                                record_mode=option("runner_record") or default_record_mode(os.environ),
                                remote_record_mode=option("runner_record"),
                                cassettes=Path(option("runner_cassettes")))
        found = problems(jobs, options)
        if found:
            raise SpecProblem("\n".join(found))
        (transcript,) = asyncio.run(execute(jobs, options, concurrency=1))
        self.transcript_path = write_transcript(Path(option("runner_out")), transcript,
                                                stable=option("runner_stable"))[0]
        if not transcript.passed:
            raise ConversationFailed(transcript)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """A readable failure: what went wrong at which turn, expected vs actual, where the transcript is."""
        if isinstance(excinfo.value, SpecProblem):
            return f"spec error:\n{excinfo.value}"
        if isinstance(excinfo.value, ConversationFailed):
            import click

            from runner.report.console import conversation_line

            transcript = excinfo.value.args[0]
            text = click.unstyle(conversation_line(transcript))
            return f"{text}\ntranscript: {self.transcript_path}" if self.transcript_path else text
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        """Where the item comes from, for pytest's reports."""
        return self.path, 0, f"conversation: {self.name}"
