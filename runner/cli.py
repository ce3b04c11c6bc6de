"""The `runner` command: parse the command line, call the layers, print, exit with the right code.

Exit codes: 0 every check passed; 1 a check failed or a run did not complete; 2 usage or spec error.
Nothing here imports the SDK until a command needs it, so `--help` and `validate` start fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from runner import __version__
from runner.spec import Spec, SpecInvalid, find_specs, load_cases
from runner.spec.paths import resolved

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parse_vars(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--var")
        out[key.strip()] = value
    return out


def _load_all(paths: tuple[str, ...], overrides: dict[str, str]) -> tuple[list[Spec], list[str], int]:
    """Load every spec named by `paths`; return the specs, every error line, and the number of files."""
    files = find_specs(paths)
    for raw in paths:
        if not os.path.exists(raw):  # not Path.exists: a name too long for the file system raises there
            raise click.BadParameter(f"{raw}: no such file or folder", param_hint="PATHS")
    if not files:
        raise click.UsageError(f"no spec files (*.yaml, *.yml) found in {', '.join(paths)}")
    specs: list[Spec] = []
    errors: list[str] = []
    for file in files:
        try:
            specs.extend(load_cases(file, overrides))
        except SpecInvalid as exc:
            errors.extend(str(e) for e in exc.errors)
    return specs, errors, len(files)


def _output_clashes(specs: list[Spec]) -> list[str]:
    """Spec files whose transcripts and cassettes would land on the same path (x.yaml beside x.yml)."""
    from runner.spec.paths import output_stem

    seen: dict[Path, str] = {}
    clashes = []
    for spec in specs:
        stem = output_stem(spec.file, spec.case)
        if stem in seen:
            clashes.append(f"{spec.file}: its transcripts and cassette would overwrite those of {seen[stem]}")
        seen[stem] = spec.file
    return clashes


def _check_report_paths(reports: dict[str, str | None], transcripts: Sequence[Path], nothing: str) -> None:
    """A usage error for a report path (by option) that is empty, or that would overwrite a transcript: one of
    `transcripts` (the JSON files), the Markdown beside one, or a file in its `<stem>.files/` folder."""
    files: set[Path] = set()
    folders: list[Path] = []
    for json_path in transcripts:
        real = resolved(json_path)
        stem = real.name[:-len(".json")] if real.name.endswith(".json") else real.name
        files |= {real, real.with_name(stem + ".md")}
        folders.append(real.with_name(stem + ".files"))
    taken: dict[Path, str] = {}  # each report's file, by the option that names it
    for option, value in reports.items():
        if value is None:
            continue
        if not value.strip():
            raise click.BadParameter("an empty path names no file", param_hint=option)
        target = resolved(Path(value))
        if target in files or any(target.is_relative_to(folder) for folder in folders):
            raise click.UsageError(f"{option} {value} is one of the transcripts (or the files beside them): the "
                                   f"report would overwrite it; {nothing}")
        if target in taken:
            raise click.UsageError(f"{taken[target]} and {option} both name {value}: one report would overwrite "
                                   f"the other; {nothing}")
        taken[target] = option


def _check_baseline(baseline: str | None, transcripts: str, what: str) -> None:
    """A usage error for a --baseline that is the transcripts folder itself: it would only ever show no change."""
    if baseline is not None and resolved(Path(baseline)) == resolved(Path(transcripts)):
        raise click.UsageError(f"--baseline {baseline}: the baseline is the folder {what}; give an earlier "
                               "run's transcripts (a copy of the folder)")


def _print_errors(errors: list[str], summary: str) -> None:
    for line in errors:
        click.echo(line, err=True)
    click.secho(f"{len(errors)} error{'s' if len(errors) != 1 else ''} {summary}", fg="red", bold=True, err=True)


def _in_files(files: int, bad: int) -> str:
    return f"in {bad} of {files} spec file{'s' if files != 1 else ''}; nothing was run"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="runner")
def cli() -> None:
    """Run scripted assistant conversations declared in YAML, check every reply, write transcripts."""


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def validate(paths: tuple[str, ...]) -> None:
    """Check spec files (or folders of them) without running anything. Exit 0 when all are valid, 2 otherwise."""
    specs, errors, files = _load_all(paths, {})
    if errors:
        _print_errors(errors, _in_files(files, files - len(specs)))
        sys.exit(EXIT_USAGE)
    click.echo(f"{files} spec file{'s' if files != 1 else ''} valid")


@cli.command()
@click.option("--print", "print_schema", is_flag=True, help="Print the schema itself instead of its path.")
def schema(print_schema: bool) -> None:
    """Print the path of the spec JSON Schema, for editors.

    The file is the one installed with runner, so an editor's YAML language server can validate and complete
    specs outside a clone of the repository: point `yaml.schemas` (VS Code) or a
    `# yaml-language-server: $schema=PATH` line at it.
    """
    from runner.spec.schema import SCHEMA_FILE

    if print_schema:
        click.echo(SCHEMA_FILE.read_text(encoding="utf-8"), nl=False)
    else:
        click.echo(str(SCHEMA_FILE.absolute()))


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--out", "out_dir", default="transcripts", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the transcripts (JSON and Markdown).")
@click.option("--var", "variables", multiple=True, metavar="KEY=VALUE", help="Override a spec variable (repeatable).")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds a run may take before it is cancelled and the turn fails.")
@click.option("--keep", is_flag=True, help="Keep the assistants and threads created on a remote backend.")
@click.option("--base-url", envvar="RUNNER_BASE_URL", metavar="URL",
              help="Run on a remote Assistants-compatible endpoint instead of the embedded backend "
                   "[env: RUNNER_BASE_URL].")
@click.option("--api-key-env", metavar="NAME",
              help="Environment variable holding the remote endpoint's API key (default RUNNER_API_KEY).")
@click.option("--poll", is_flag=True, help="Poll runs instead of streaming them.")
@click.option("--pipeline", type=click.Choice(["assistants", "responses", "both"]),
              help="The API the conversations go through: Assistants (threads, runs), Responses (conversations), or "
                   "both, with a table of where they differ. Overrides every spec's `backend: {pipeline: ...}`; "
                   "default: each spec's own (assistants when it says none).")
@click.option("-j", "--jobs", "--concurrency", "jobs", default=8, show_default=True, type=click.IntRange(min=1),
              help="Conversations run at the same time.")
@click.option("--processes", type=click.IntRange(min=1), metavar="N",
              help="Processes sharing the batch (Linux). Default: one per core for large batches, else one.")
@click.option("--record", "record_mode", type=click.Choice(["none", "once", "new_episodes", "all"]),
              help="Cassette mode for model-provider traffic: replay only, record what is missing once, add new "
                   "requests, or record everything again. Default: none when CI is set, once otherwise. A remote "
                   "endpoint (--base-url) is recorded or replayed only when this is given.")
@click.option("--cassettes", "cassette_dir", default="cassettes", show_default=True,
              type=click.Path(file_okay=False), help="Folder of the cassettes (one per conversation).")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False),
              help="Also write a JUnit XML report (one testcase per conversation) for CI systems.")
@click.option("--summary", "summary_file", type=click.Path(dir_okay=False),
              help="Also write a JSON summary of every verdict and failure.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the HTML report: one self-contained page with every conversation as a chat.")
@click.option("--baseline", type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="With --html: the transcripts of an earlier run, to show what changed since (as `runner diff`).")
@click.option("--stable", is_flag=True,
              help="Write transcripts in the stable view: ids numbered by appearance, no timestamps or timings, "
                   "so replays diff clean.")
@click.option("-k", "keyword", metavar="EXPR",
              help="Run the conversations whose name or path matches: words with and/or/not, as pytest's -k.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Run the conversations with this tag (repeatable).")
@click.option("--shard", metavar="K/N", help="Run slice K of N (deterministic): N CI machines cover the suite once.")
@click.option("--lf", "--last-failed", "last_failed", is_flag=True,
              help="Run only the conversations that failed last time (remembered in the output folder); all of "
                   "them when none did.")
@click.option("--ff", "--failed-first", "failed_first", is_flag=True,
              help="Run the conversations that failed last time first, then the rest.")
@click.option("--fail-fast", is_flag=True, help="Start no new conversation after the first failure.")
@click.option("--max-failures", type=click.IntRange(min=1), metavar="N",
              help="Start no new conversation after N failures.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(min=1), metavar="N",
              help="Run each conversation N times and judge it by its pass rate.")
@click.option("--min-pass-rate", default=1.0, show_default=True, type=click.FloatRange(0, 1), metavar="RATE",
              help="With --repeat: the share of runs that must pass (e.g. 0.8 for flaky prompts).")
@click.option("-q", "--quiet", is_flag=True, help="Print failures and the total only.")
@click.option("--json", "json_output", is_flag=True,
              help="Print the results as JSON on stdout (everything else goes to stderr).")
@click.option("--secret-env", multiple=True, metavar="NAME",
              help="An environment variable whose value is a secret, written as <NAME> in everything the run "
                   "writes or prints (repeatable; API keys always are).")
@click.option("--env-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Load provider settings and keys from this dotenv file (default: .env here, when present); "
                   "the environment wins over it, and its values count as secrets.")
@click.option("--no-env-file", is_flag=True, help="Do not load .env from the working folder.")
def run(paths: tuple[str, ...], out_dir: str, variables: tuple[str, ...], timeout: float, keep: bool,
        base_url: str | None, api_key_env: str | None, poll: bool, pipeline: str | None, jobs: int,
        record_mode: str | None, cassette_dir: str, junit_file: str | None, summary_file: str | None,
        html_file: str | None, baseline: str | None, stable: bool, keyword: str | None,
        tags: tuple[str, ...], shard: str | None, last_failed: bool, failed_first: bool, fail_fast: bool,
        max_failures: int | None, repeat: int,
        min_pass_rate: float, quiet: bool, json_output: bool, secret_env: tuple[str, ...],
        processes: int | None, env_file: str | None, no_env_file: bool) -> None:
    """Run the conversations in spec files (or folders of them) and check every expectation."""
    pending: list[Spec] = []  # the batch as far as it is known, for the reports of a Ctrl-C before it starts
    if baseline is not None and html_file is None:
        raise click.UsageError("--baseline is shown in the HTML report: give --html FILE too (or use runner diff)")
    _check_baseline(baseline, out_dir, "the run writes its transcripts to")
    try:
        secret_env = secret_env + _load_env(env_file, no_env_file)
        overrides = _parse_vars(variables)
        specs, errors, files = _load_all(paths, overrides)
        if errors:
            _print_errors(errors, _in_files(files, files - len(specs)))
            sys.exit(EXIT_USAGE)

        from runner.select import SelectionError, parse_shard, select

        try:
            selected = select(specs, keyword=keyword, tags=tags, shard=parse_shard(shard) if shard else None)
        except SelectionError as exc:
            raise click.UsageError(str(exc)) from None
        if not selected:
            _nothing_selected(specs, keyword, tags, shard)
        if overrides:
            _check_overrides_used(overrides, selected)
        from runner.run import repeated
        from runner.spec.pipelines import any_on_both, piped

        runs = repeated(piped(selected, pipeline), repeat)
        if last_failed or failed_first:
            runs = _failed_again(runs, Path(out_dir), only=last_failed, to_stderr=json_output)
        specs = [spec for spec, _ in runs]
        pending[:] = specs
        clashes = _output_clashes(specs)
        if clashes:
            _print_errors(clashes, "; nothing was run")
            sys.exit(EXIT_USAGE)
        from runner.report.writers import transcript_stem

        stems = {transcript_stem(Path(out_dir), spec.file, spec.case) for spec in specs}
        _check_report_paths({"--html": html_file, "--junit": junit_file, "--summary": summary_file},
                            [stem.with_name(stem.name + ".json") for stem in stems], "nothing was run")

        from runner.engine import EngineOptions
        from runner.record.cassettes import default_record_mode
        from runner.run import BackendChoice, make_jobs, problems

        options = EngineOptions(timeout=timeout, keep=keep, record_mode=record_mode or default_record_mode(os.environ),
                                remote_record_mode=record_mode, cassettes=Path(cassette_dir), secret_env=secret_env)
        jobs_list = make_jobs(specs, BackendChoice(base_url, api_key_env, poll))
        found = problems(jobs_list, options)
        if found:
            _print_errors(found, _in_files(files, len({p.split(":", 1)[0] for p in found})))
            sys.exit(EXIT_USAGE)
        outputs = Outputs(Path(out_dir), stable, Path(junit_file) if junit_file else None,
                          Path(summary_file) if summary_file else None, quiet, json_output,
                          Path(html_file) if html_file else None, Path(baseline) if baseline else None)
        rating = Rating({s.key: label for s, label in runs}, min_pass_rate) if repeat > 1 else None
        code = _run_jobs(jobs_list, options, outputs, jobs, 1 if fail_fast else max_failures, rating, processes,
                         parity=any_on_both(selected, pipeline))
    except KeyboardInterrupt:  # while loading or importing: the batch's own Ctrl-C handling is not up yet
        _interrupted_early(pending, junit_file, summary_file, html_file)
    import gc

    gc.freeze()  # the interpreter's last collections would walk every object of the batch (0.4 s after 1,000)
    sys.exit(code)


def _failed_again(runs: list[tuple[Spec, str]], out_dir: Path, *, only: bool,
                  to_stderr: bool) -> list[tuple[Spec, str]]:
    """--last-failed / --failed-first: the runs of the conversations that failed last time (only, or first)."""
    from runner.lastfailed import choose, load

    remembered = load(out_dir)
    if remembered.problem is not None:
        click.secho(remembered.problem, fg="yellow", err=True)
    chosen, note = choose(runs, remembered.failed, only=only)
    click.echo(note, err=to_stderr)
    return chosen


def _interrupted_early(pending: list[Spec], junit_file: str | None, summary_file: str | None,
                       html_file: str | None = None) -> None:
    """Ctrl-C before the batch started: say so, write the reports asked for (every conversation known so far
    listed as not run), and exit 130 as a Ctrl-C during the batch does."""
    why = "not run: interrupted (Ctrl-C) before the batch started"
    outputs = Outputs(Path("."), junit=Path(junit_file) if junit_file else None,
                      summary=Path(summary_file) if summary_file else None, html=Path(html_file) if html_file else None)
    for line in _write_reports(outputs, [], 0.0, {}, [(spec.file, spec.label, why) for spec in pending]):
        click.secho(line, fg="red", err=True)
    click.secho(f"\ninterrupted before the batch started: nothing was run ({len(pending)} conversations "
                "selected)" if pending else "\ninterrupted before the batch started: nothing was run",
                fg="yellow", err=True)
    sys.exit(EXIT_INTERRUPTED)


def _load_env(env_file: str | None, no_env_file: bool) -> tuple[str, ...]:
    """Load the environment file the flags name; return the variables that count as secrets."""
    from runner.envfile import EnvFileError, load_env_file

    try:
        return load_env_file(env_file, use_default=not no_env_file).secret_names
    except EnvFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--env-file") from None


def _check_overrides_used(overrides: dict[str, str], specs: list[Spec]) -> None:
    """A usage error for a --var that no selected spec uses (a typo would otherwise change nothing)."""
    import difflib

    from runner.spec.usage import variables_used

    used: set[str] = set()
    for file in dict.fromkeys(spec.file for spec in specs):
        used |= variables_used(file)
    for name in overrides:
        if name not in used:
            close = difflib.get_close_matches(name, sorted(used), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else (
                f" (they use: {', '.join(sorted(used))})" if used else " (they use no variables)")
            raise click.BadParameter(f"no selected spec uses a variable named {name!r}{hint}",
                                     param_hint=f"--var {name}")


def _nothing_selected(specs: list[Spec], keyword: str | None, tags: tuple[str, ...], shard: str | None) -> None:
    """Exit when the selection is empty: a usage error when -k/--tag match nothing (a typo must not pass CI),
    success when only the shard is empty (a small suite leaves some of N machines without work)."""
    from runner.select import select

    if (keyword or tags) and not select(specs, keyword=keyword, tags=tags):
        asked = " and ".join(filter(None, (f"-k {keyword!r}" if keyword else "",
                                           " ".join(f"--tag {t}" for t in tags))))
        known = sorted({t for spec in specs for t in spec.tags})
        hint = f" (tags in these specs: {', '.join(known)})" if tags and known else ""
        raise click.UsageError(f"{asked} selects none of the {len(specs)} conversations{hint}; nothing was run")
    click.echo(f"shard {shard} holds none of the {len(specs)} conversations selected; nothing to run", err=True)
    sys.exit(EXIT_OK)


@dataclass(frozen=True)
class Outputs:
    """Where `runner run` writes: transcripts, the optional CI reports, and how it reports on the console."""

    transcripts: Path
    stable: bool = False
    junit: Path | None = None
    summary: Path | None = None
    quiet: bool = False
    json_output: bool = False
    html: Path | None = None
    baseline: Path | None = None  # with html: the earlier run's transcripts, to show what changed
    title: str = "runner run"  # the HTML report's: what wrote it


@dataclass(frozen=True)
class Rating:
    """With --repeat: which conversation each run counts toward, and the pass rate each needs."""

    counts_toward: dict[str, str]
    minimum: float


def _run_jobs(jobs: list[Any], options: Any, outputs: Outputs, concurrency: int,
              max_failures: int | None = None, rating: Rating | None = None, processes: int | None = None,
              parity: bool = False) -> int:
    from runner.parallel import Finished, default_processes, run_jobs
    from runner.report.progress import Reporter, choose_mode
    from runner.report.transcript import Transcript
    from runner.report.writers import write_transcript

    done: list[Transcript] = []

    def failures() -> int:
        return sum(not t.passed for t in done)

    paths: dict[str, Path] = {}
    write_failures: list[str] = []
    mode = choose_mode(quiet=outputs.quiet, json_output=outputs.json_output, stream=sys.stdout, environ=os.environ)
    reporters: list[Reporter] = []  # made once the helper processes exist: its live display runs a thread

    def start() -> None:
        reporters.append(Reporter(mode, len(jobs), err=outputs.json_output,  # --json: stdout is for the JSON
                                  fold_runs=rating is not None))

    def running() -> int:
        return min(concurrency, len(jobs) - len(done))

    def finished(item: Finished) -> None:
        if item.write_error is not None:
            write_failures.append(item.write_error)
        elif item.path is not None:
            paths[item.transcript.key] = item.path
        done.append(item.transcript)
        reporters[0].finished(item.transcript, running=running())

    def interrupted(presses: int) -> None:
        if presses == 1:
            reporters[0].echo(click.style(f"stopping: no new conversation starts, the {running()} running finish "
                                          "(Ctrl-C again to cancel them)", fg="yellow"))
        elif presses == 2:
            reporters[0].echo(click.style("cancelling the running conversations (Ctrl-C again to kill them)",
                                          fg="yellow"))

    def write(transcript: Transcript) -> Path:
        path = write_transcript(outputs.transcripts, transcript, stable=outputs.stable)[0]
        transcript.release_files()  # saved: the batch need not hold (or send between processes) their bytes
        return path

    # importing the SDK is start-up: the batch's time begins after it (its Assistants resources load on first use)
    import openai.resources.beta.assistants  # noqa: F401
    import openai.resources.beta.threads.threads  # noqa: F401

    import runner.server.app  # noqa: F401

    start_time = time.perf_counter()
    end = run_jobs(jobs, options, concurrency=concurrency,
                   processes=processes or default_processes(len(jobs), concurrency), write=write,
                   on_finished=finished, on_start=start, on_interrupt=interrupted,
                   should_stop=lambda: max_failures is not None and failures() >= max_failures)
    seconds = time.perf_counter() - start_time
    reporter = reporters[0]
    order = {job.spec.key: i for i, job in enumerate(jobs)}
    done.sort(key=lambda t: order[t.key])  # reports in spec order, whatever order runs finished in
    write_failures.extend(end.errors)
    ran = {t.key for t in done}
    why = ("not finished: the batch was interrupted (Ctrl-C)" if end.interrupted
           else "not run: the batch stopped early (--fail-fast or --max-failures)")
    not_run = [(job.spec.file, job.spec.label, why) for job in jobs if job.spec.key not in ran]
    write_failures.extend(_write_reports(outputs, done, seconds, paths, not_run))
    write_failures.extend(_remember_failures(outputs.transcripts, done))
    if outputs.json_output:
        from runner.report.summary import to_summary

        click.echo(json.dumps(to_summary(done, seconds), ensure_ascii=False, indent=2))
    if end.interrupted:
        reporter.stop()
        for line in write_failures:
            click.secho(line, fg="red", err=True)
        click.secho(f"\ninterrupted: {len(done)} of {len(jobs)} conversations finished; "
                    f"their transcripts are in {outputs.transcripts}/", fg="yellow", err=True)
        return EXIT_INTERRUPTED
    verdicts_ok = complete = len(done) == len(jobs)
    where = str(outputs.transcripts) if paths or not done else None  # no "transcripts in" where none was written
    if rating is None:
        reporter.close(seconds, where)
        verdicts_ok = complete and all(t.passed for t in done)
    else:  # the verdicts by pass rate first, each with its failing runs folded, then the total
        reporter.stop()
        rates_ok, total = _report_pass_rates(done, rating, reporter, seconds, where)
        reporter.close(seconds, where, total)
        verdicts_ok = rates_ok
    if parity:  # a spec ran on both pipelines: where the two APIs gave different outcomes
        from runner.report.parity import parity_lines

        for line in parity_lines(done):
            click.echo(line, err=outputs.json_output)
    for line in write_failures:
        click.secho(line, fg="red", err=True)
    if len(done) < len(jobs):
        stopped = (f"stopped after {failures()} failure{'s' if failures() != 1 else ''}" if max_failures is not None
                   and failures() >= max_failures else "the batch ended early")
        click.secho(f"{stopped}: {len(jobs) - len(done)} conversation{'s' if len(jobs) - len(done) != 1 else ''} "
                    "not run", fg="red", err=True)
    return EXIT_OK if verdicts_ok and complete and not write_failures else EXIT_FAILED


def _report_pass_rates(done: list[Any], rating: Rating, reporter: Any, seconds: float,
                       out_dir: str | None) -> tuple[bool, str]:
    """Print each repeated conversation's verdict by pass rate, its failing runs folded under it; return
    whether every one reaches the minimum, and the closing total line."""
    from collections import Counter

    from runner.report.console import folded_runs, rated_total_line
    from runner.run import pass_rates

    expected = Counter(rating.counts_toward.values())
    rates = pass_rates(done, rating.counts_toward, dict(expected), rating.minimum)
    for rate in rates:
        mark = click.style("PASS" if rate.ok else "FAIL", fg="green" if rate.ok else "red", bold=True)
        reporter.echo(f"{mark}  {rate.label}: {rate.passed}/{rate.runs} runs passed ({rate.rate:.0%}; "
                      f"needs {rate.minimum:.0%})")
        failing = [t for t in done if rating.counts_toward[t.key] == rate.label and not t.passed]
        for line in folded_runs(failing, rate.runs - rate.passed - len(failing)):
            reporter.echo(line)
    return all(rate.ok for rate in rates), rated_total_line(rates, done, seconds, out_dir)


def _remember_failures(out_dir: Path, done: list[Any], to_run: Sequence[Any] = ()) -> list[str]:
    """Update the failures the output folder remembers for --last-failed (`to_run`: transcripts of conversations
    that must run again, as failures); what could not be written."""
    from runner.lastfailed import conversation_key, load, save, updated

    try:
        save(out_dir, updated(load(out_dir).failed, done) | {conversation_key(t.spec_file, t.case) for t in to_run})
    except OSError as exc:
        return [f"cannot remember the failures for --last-failed in {out_dir}: {exc}"]
    return []


def _write_reports(outputs: Outputs, done: list[Any], seconds: float, paths: dict[str, Path],
                   not_run: Sequence[tuple[str, str, str]] = ()) -> list[str]:
    """Write the JUnit and summary reports asked for (`not_run`: the batch's conversations that never started,
    as (spec file, name, why)); return what could not be written."""
    failures = []
    if outputs.junit is not None:
        from runner.report.junit import NotRun, write_junit

        try:
            write_junit(outputs.junit, done, seconds, paths, [NotRun(*entry) for entry in not_run])
        except OSError as exc:
            failures.append(f"cannot write the JUnit report {outputs.junit}: {exc}")
    if outputs.summary is not None:
        from runner.report.summary import write_summary

        try:
            write_summary(outputs.summary, done, seconds)
        except OSError as exc:
            failures.append(f"cannot write the summary {outputs.summary}: {exc}")
    if outputs.html is not None:
        try:
            _write_html_report(outputs, done, seconds, paths, not_run)
        except OSError as exc:
            failures.append(f"cannot write the HTML report {outputs.html}: {exc}")
    return failures


def _write_html_report(outputs: Outputs, done: list[Any], seconds: float, paths: dict[str, Path],
                       not_run: Sequence[tuple[str, str, str]]) -> None:
    """The run's HTML report: its transcripts as written (stable view included), those never run as skipped."""
    from runner.report.html import Conversation, compare_with, not_run_entry, report_data, write_html
    from runner.report.stable import stable_copy
    from runner.report.writers import transcript_stem

    assert outputs.html is not None
    conversations = []
    for t in done:
        json_path = paths.get(t.key)
        if json_path is None:  # its transcript could not be written: the report still shows it, without links
            stem = transcript_stem(outputs.transcripts, t.spec_file, t.case)
            json_path = stem.with_name(stem.name + ".json")
        relative = Path(os.path.relpath(json_path, outputs.transcripts)).as_posix()
        data = (stable_copy(t) if outputs.stable else t).to_dict()
        conversations.append(Conversation(relative, data, json_path.parent))
    for spec_file, name, why in not_run:
        conversations.append(Conversation("", not_run_entry(spec_file, name, why), outputs.transcripts, not_run=True))
    diff = compare_with(outputs.baseline, conversations) if outputs.baseline is not None else None
    write_html(outputs.html, report_data(conversations, outputs.html, title=outputs.title,
                                         source=str(outputs.transcripts), seconds=seconds, baseline=diff,
                                         baseline_label=str(outputs.baseline) if outputs.baseline else None,
                                         root=outputs.transcripts))


@cli.command()
@click.argument("transcripts_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("specs", nargs=-1, type=click.Path())
@click.option("--var", "variables", multiple=True, metavar="KEY=VALUE",
              help="Override a spec variable, as the run did (repeatable).")
@click.option("--cassettes", "cassette_dir", default="cassettes", show_default=True,
              type=click.Path(file_okay=False), help="Folder of the cassettes a grader's calls replay from.")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False),
              help="Also write a JUnit XML report, as `runner run --junit` does.")
@click.option("--summary", "summary_file", type=click.Path(dir_okay=False),
              help="Also write a JSON summary, as `runner run --summary` does.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the HTML report of the re-judged transcripts, as `runner run --html` does.")
@click.option("--baseline", type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="With --html: the transcripts of an earlier run, to show what changed since (as `runner diff`).")
@click.option("--stable", is_flag=True,
              help="Write every transcript in the stable view (those written so stay so without it).")
@click.option("--secret-env", multiple=True, metavar="NAME",
              help="An environment variable whose value is a secret, written as <NAME> (repeatable).")
@click.option("--env-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Load keys from this dotenv file (default: .env here, when present); its values count as secrets.")
@click.option("--no-env-file", is_flag=True, help="Do not load .env from the working folder.")
def rejudge(transcripts_dir: str, specs: tuple[str, ...], variables: tuple[str, ...], cassette_dir: str,
            junit_file: str | None, summary_file: str | None, html_file: str | None, baseline: str | None,
            stable: bool, secret_env: tuple[str, ...], env_file: str | None, no_env_file: bool) -> None:
    """Judge recorded transcripts again with their specs' current expectations: no backend, no model, no network.

    SPECS (files or folders, as for `run`) restrict and locate the specs; without them each transcript's own
    spec_file is used. A conversation whose spec changed beyond its expectations needs a run, and is not judged.
    Exit 0 when every transcript was judged and passed; 1 when a check failed or could not be judged, a
    conversation needs a run, a transcript's spec or case is gone, or a transcript could not be read or written;
    2 for a usage or spec error (nothing is written then).
    """
    from runner.rejudge import Scope, match, read_transcripts, spec_files, unjudgeable, write_back
    from runner.rejudge import rejudge as judge_all

    if baseline is not None and html_file is None:
        raise click.UsageError("--baseline is shown in the HTML report: give --html FILE too (or use runner diff)")
    _check_baseline(baseline, transcripts_dir, "being re-judged")
    secret_env = secret_env + _load_env(env_file, no_env_file)
    overrides = _parse_vars(variables)
    folder = Path(transcripts_dir)
    start_time = time.perf_counter()
    recorded, unreadable = read_transcripts(folder)
    if not recorded and not any(u.transcript for u in unreadable):
        raise click.UsageError(f"no transcripts (*.json) in {transcripts_dir}")
    _check_report_paths({"--html": html_file, "--junit": junit_file, "--summary": summary_file},
                        [r.path for r in recorded] + [u.path for u in unreadable if u.transcript],
                        "nothing was re-judged")
    scope = Scope(named=[Path(p) for p in specs])
    if specs:
        loaded, errors, files = _load_all(specs, overrides)
        scope.specs = loaded
    else:
        files = len(paths := spec_files(recorded))
        loaded, errors = [], []
        for file in paths:
            try:
                loaded.extend(load_cases(file, overrides))
            except SpecInvalid as exc:
                errors.extend(str(e) for e in exc.errors)
    if errors:
        _print_errors(errors, f"in the specs; nothing was re-judged ({files} spec file{'s' if files != 1 else ''})")
        sys.exit(EXIT_USAGE)
    matches = match(recorded, scope, loaded)
    if specs and recorded and all(m.status == "other" for m in matches):
        raise click.UsageError(f"none of the {len(recorded)} transcripts in {transcripts_dir} is of the specs given "
                               f"({', '.join(specs)}); nothing was re-judged")
    judged = judge_all(matches, Path(cassette_dir), secret_env)
    judged, unrendered = write_back(judged, stable)
    unreadable = [*unreadable, *unjudgeable(matches), *unrendered]
    seconds = time.perf_counter() - start_time
    sys.exit(_report_rejudge(folder, matches, judged, unreadable, seconds,
                             Outputs(folder, stable, Path(junit_file) if junit_file else None,
                                     Path(summary_file) if summary_file else None,
                                     html=Path(html_file) if html_file else None,
                                     baseline=Path(baseline) if baseline else None, title="runner rejudge")))


def _report_rejudge(folder: Path, matches: list[Any], judged: list[Any], unreadable: list[Any], seconds: float,
                    outputs: Outputs) -> int:
    """Print what `runner rejudge` found and did, write its reports; return the exit code."""
    from runner.report.console import conversation_line

    for item in judged:
        click.echo(conversation_line(item.transcript))
    left = [m for m in matches if m.status in ("needs_run", "gone")]
    for m in left:
        t = m.recorded.transcript
        if m.status == "needs_run":
            click.secho(f"{click.style('RUN', fg='yellow', bold=True)}   {t.spec_file}  {t.name}: needs a run, "
                        f"{m.why} (not re-judged: `runner run {t.spec_file}` records it again)")
        else:
            click.echo(f"{click.style('GONE', fg='yellow', bold=True)}  {t.spec_file}  {t.name}: {m.why}; "
                       f"not re-judged ({m.recorded.path})")
    for problem in unreadable:
        if problem.note:
            click.secho(f"warning: skipped {problem.path}: {problem.message}", fg="yellow", err=True)
        elif problem.transcript:
            click.secho(f"cannot read the transcript {problem.path}: {problem.message}", fg="red", err=True)
    changed = [j for j in judged if j.before != j.transcript.verdict]
    for item in changed:
        click.echo(f"verdict changed: {item.transcript.spec_file}  {item.transcript.name}: {item.before} -> "
                   f"{item.transcript.verdict}")
    transcripts = [j.transcript for j in judged]
    paths = {j.transcript.key: j.recorded.path for j in judged}
    not_run = [(m.recorded.transcript.spec_file, m.recorded.transcript.name,
                f"not re-judged: {'needs a run: ' if m.status == 'needs_run' else ''}{m.why}") for m in left]
    failures = [j.write_error for j in judged if j.write_error] + _write_reports(outputs, transcripts, seconds, paths,
                                                                                 not_run)
    # --last-failed after a re-judge takes what fails now, and what needs a run
    failures += _remember_failures(folder, transcripts,
                                   [m.recorded.transcript for m in left if m.status == "needs_run"])
    for line in failures:
        click.secho(line, fg="red", err=True)
    passed = sum(t.verdict == "passed" for t in transcripts)
    needs_run = sum(m.status == "needs_run" for m in left)
    parts = [f"{len(judged)} re-judged: {passed} passed, {len(judged) - passed} failed"]
    if changed:
        parts.append(f"{len(changed)} changed verdict")
    if needs_run:
        parts.append(f"{needs_run} need{'s' if needs_run == 1 else ''} a run")
    if len(left) - needs_run:
        parts.append(f"{len(left) - needs_run} not re-judged (spec or case gone)")
    bad = sum(u.transcript for u in unreadable)
    if bad:
        parts.append(f"{bad} unreadable")
    others = sum(m.status == "other" for m in matches)
    if others:
        parts.append(f"{others} of other specs left alone")
    ok = passed == len(judged) and not left and not bad and not failures
    click.secho(f"{'; '.join(parts)} in {seconds:.2f}s; transcripts in {folder}/", fg="green" if ok else "red",
                bold=True)
    return EXIT_OK if ok else EXIT_FAILED


@cli.command()
@click.argument("old", type=click.Path(exists=True, file_okay=False))
@click.argument("new", type=click.Path(exists=True, file_okay=False))
def diff(old: str, new: str) -> None:
    """Which conversations changed verdict, checks or reply between two transcript folders (exit 1 if any)."""
    from runner.report.diff import diff_dirs, format_diff

    result = diff_dirs(Path(old), Path(new))
    click.echo(format_diff(result))
    sys.exit(EXIT_FAILED if result.changed else EXIT_OK)


@cli.command()
@click.argument("transcripts_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", "out_file", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="The HTML file to write (one self-contained page).")
@click.option("--baseline", type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="The transcripts of an earlier run: show what changed since, as `runner diff` does.")
@click.option("--title", default="runner report", show_default=True, help="The page's title.")
def report(transcripts_dir: str, out_file: str, baseline: str | None, title: str) -> None:
    """Write the HTML report of a folder of transcripts (as `runner run --html` does for a run).

    A JSON file that cannot be read is skipped with a warning naming it, and listed at the top of the page; the
    report is written and the exit code is 1. Exit 0: written; 1: written without some files, or not written;
    2: no transcripts in the folder, or a usage error. The conversations' verdicts do not change the exit code.
    """
    from runner.report.html import compare_with, load_folder, report_data, write_html

    _check_baseline(baseline, transcripts_dir, "being reported")
    loaded = load_folder(Path(transcripts_dir))
    _check_report_paths({"-o": out_file}, [Path(transcripts_dir) / p for p in
                                           [c.path for c in loaded.conversations]
                                           + [p.path for p in loaded.problems]], "nothing was written")
    for problem in loaded.problems:
        click.secho(f"warning: skipped {Path(transcripts_dir) / problem.path}: {problem.message}", fg="yellow",
                    err=True)
    if not loaded.conversations:
        raise click.UsageError(f"{transcripts_dir}: no transcripts found (the JSON files `runner run` writes)"
                               + (f"; {len(loaded.problems)} unreadable" if loaded.problems else ""))
    diff = compare_with(Path(baseline), loaded.conversations) if baseline else None
    if diff is not None:
        for problem in diff.unreadable:
            click.secho(f"warning: skipped {Path(baseline or '') / problem.path} (baseline): {problem.message}",
                        fg="yellow", err=True)
    out = Path(out_file)
    data = report_data(loaded.conversations, out, title=title, source=transcripts_dir, baseline=diff,
                       baseline_label=baseline, problems=loaded.problems, root=Path(transcripts_dir))
    try:
        size = write_html(out, data)
    except OSError as exc:
        click.secho(f"cannot write the HTML report {out}: {exc}", fg="red", err=True)
        sys.exit(EXIT_FAILED)
    count = len(loaded.conversations)
    click.echo(f"wrote {out} ({count} conversation{'s' if count != 1 else ''}, {size:,} bytes)")
    skipped = len(loaded.problems) + (len(diff.unreadable) if diff is not None else 0)
    sys.exit(EXIT_FAILED if skipped else EXIT_OK)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (anything but loopback needs a key).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0 picks a free one).")
@click.option("--db", default="runner-backend.sqlite3", show_default=True, type=click.Path(dir_okay=False),
              help="SQLite file holding assistants, threads, messages and runs (kept across restarts).")
@click.option("--provider", type=click.Choice(["echo", "scripted", "openai", "chat"]),
              help="Answer every model with this provider.")
@click.option("--rules", "rules_file", type=click.Path(exists=True, dir_okay=False),
              help="Rules file of the `scripted` model.")
@click.option("--api-key-env", metavar="NAME", help="Require the key held by this environment variable (Bearer auth).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]), help="Server log level.")
@click.option("--embeddings", metavar="URL|local",
              help="Rank file_search by meaning too: an OpenAI-compatible API's /v1 URL, or `local` for "
                   "all-MiniLM-L6-v2 (default: RUNNER_EMBEDDINGS_BASE_URL; none: keyword search).")
@click.option("--embeddings-model", metavar="NAME",
              help="The embedding model the endpoint should use (default: RUNNER_EMBEDDINGS_MODEL).")
@click.option("--embeddings-key-env", metavar="NAME",
              help="The variable holding the embedding endpoint's key (default: RUNNER_EMBEDDINGS_API_KEY).")
@click.option("--code-interpreter", is_flag=True,
              help="Execute code_interpreter calls, in a bubblewrap sandbox (refused at start when none can run).")
@click.option("--code-timeout", type=float, metavar="S",
              help="Wall seconds a code call may take (default 60; also 30 s of CPU).")
@click.option("--code-memory", type=int, metavar="MB", help="Memory a code session may use, in MB (default 1024).")
@click.option("--env-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Load provider settings and keys from this dotenv file (default: .env here, when present).")
@click.option("--no-env-file", is_flag=True, help="Do not load .env from the working folder.")
def serve(host: str, port: int, db: str, provider: str | None, rules_file: str | None, api_key_env: str | None,
          log_level: str, embeddings: str | None, embeddings_model: str | None, embeddings_key_env: str | None,
          code_interpreter: bool, code_timeout: float | None, code_memory: int | None, env_file: str | None,
          no_env_file: bool) -> None:
    """Serve the built-in Assistants-compatible backend over HTTP (point OPENAI_BASE_URL at it)."""
    loaded_secrets = _load_env(env_file, no_env_file)
    from runner.server.providers import LiveSettings, model_problem
    from runner.server.providers.upstream import BadKey
    from runner.server.serve import ServeError, ServeOptions
    from runner.server.serve import serve as run_server
    from runner.spec.load import load_rules

    rules = None
    if rules_file:
        try:
            rules = load_rules(rules_file)
        except SpecInvalid as exc:
            _print_errors([str(e) for e in exc.errors], "in the rules file; the server was not started")
            sys.exit(EXIT_USAGE)
    options = ServeOptions(host=host, port=port, db=db, provider=provider, rules=rules, api_key_env=api_key_env,
                           log_level=log_level, embeddings=embeddings, embeddings_model=embeddings_model,
                           embeddings_key_env=embeddings_key_env, secret_env=loaded_secrets,
                           code_interpreter=code_interpreter, code_timeout=code_timeout, code_memory=code_memory)
    try:
        if provider:  # a forced provider must be able to answer, or every request would fail
            problem = model_problem(provider, force=provider, has_rules=rules is not None,
                                    live=LiveSettings.from_env(os.environ))
            if problem:
                raise ServeError(f"--provider {provider}: {problem}")
        run_server(options, announce=lambda line: click.echo(line, err=True))
    except (ServeError, BadKey) as exc:
        raise click.UsageError(str(exc)) from None


def main() -> None:
    """Console-script entry point."""
    from runner.sdk import install_lazy_imports

    install_lazy_imports()
    try:
        code = cli.main(prog_name="runner", standalone_mode=False)
    except click.exceptions.Abort:  # Ctrl-C outside a command's own handling (click would exit 1)
        click.secho("\ninterrupted: nothing was run", fg="yellow", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
