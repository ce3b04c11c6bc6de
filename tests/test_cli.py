"""The `runner` command through click's test runner, and once as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES

from runner import cli as cli_module
from runner.cli import cli
from runner.engine.backend import sandbox_problem
from runner.report.writers import transcript_stem

# code.yaml runs code, which needs the sandbox (bubblewrap, as CI installs it): without it, it is left out here
# (test_engine_code.py shows it refused, saying what to install)
SANDBOX = sandbox_problem() is None
CONVERSATIONS = 10 if SANDBOX else 9  # greetings_matrix.yaml is four cases; retrieval_live replays

FAILING = """
name: failing
assistant: {model: echo}
conversation:
  - user: Bonjour
    expect:
      - contains: Hello
      - regex: "^Bon"
  - user: second
"""


@pytest.fixture
def runner_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for name in ("CI", "RUNNER_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "RUNNER_CHAT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_hello_passes_and_writes_transcripts(runner_in: CliRunner, tmp_path: Path) -> None:
    result = runner_in.invoke(cli, ["run", str(EXAMPLES / "hello.yaml")])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "1 passed, 0 failed" in result.output
    data = json.loads(transcript_stem(tmp_path / "transcripts", str(EXAMPLES / "hello.yaml")).with_suffix(".json").read_text(encoding="utf-8"))
    assert data["verdict"] == "passed"
    assert data["turns"][0]["user"] == "你好呀" and data["turns"][0]["reply"] == "你好呀"
    assert data["assistant"] == {"model": "echo", "name": "Greeter", "instructions": "You are a friendly assistant."}
    assert data["backend"]["kind"] == "embedded"
    assert transcript_stem(tmp_path / "transcripts", str(EXAMPLES / "hello.yaml")).with_suffix(".md").read_text(encoding="utf-8").startswith("# hello — PASSED")


@pytest.fixture
def examples_project(examples_project: Path) -> Path:
    """The examples, less the one that runs code where no sandbox can run it."""
    if not SANDBOX:
        (examples_project / "specs" / "examples" / "code.yaml").unlink()
    return examples_project


def test_all_examples_pass(runner_in: CliRunner, examples_project: Path) -> None:
    result = runner_in.invoke(cli, ["run", "specs/examples", "--out", "out"])
    assert result.exit_code == 0, result.output
    assert f"{CONVERSATIONS} passed, 0 failed" in result.output


def test_failing_expectation_exits_1_showing_expected_and_actual(runner_in: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "failing.yaml").write_text(FAILING, encoding="utf-8")
    result = runner_in.invoke(cli, ["run", "failing.yaml"])
    assert result.exit_code == 1
    assert "FAIL" in result.output
    assert 'turn 1 contains [failing.yaml:7:19]: expected the reply to contain "Hello"; reply: "Bonjour"' in result.output
    assert "0 passed, 1 failed" in result.output
    data = json.loads((tmp_path / "transcripts" / "failing.json").read_text(encoding="utf-8"))
    assert data["verdict"] == "failed"
    assert [c["passed"] for c in data["turns"][0]["checks"]] == [True, False, True]
    assert data["turns"][1]["reply"] == "second"  # a failed check does not stop the conversation


def test_spec_error_exits_2_and_runs_nothing(runner_in: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "typo.yaml").write_text(
        "assistant:\n  model: echo\n  tempurature: 1\nconversation:\n  - user: 'hi {{ nme }}'\n", encoding="utf-8")
    (tmp_path / "good.yaml").write_text("assistant: {model: echo}\nconversation: [{user: hi}]\n", encoding="utf-8")
    result = runner_in.invoke(cli, ["run", "."])
    assert result.exit_code == 2
    assert "typo.yaml:3:3: assistant.tempurature: unknown field 'tempurature' (did you mean 'temperature'?)" in result.output
    assert "typo.yaml:5:11: conversation[0].user: template error: 'nme' is undefined" in result.output
    assert "2 errors in 1 of 2 spec files; nothing was run" in result.output
    assert not (tmp_path / "transcripts").exists()


def test_unavailable_model_is_a_spec_error(runner_in: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "live.yaml").write_text("assistant:\n  model: gpt-4o\nconversation: [{user: hi}]\n", encoding="utf-8")
    result = runner_in.invoke(cli, ["run", "live.yaml"])
    assert result.exit_code == 2
    assert ("live.yaml:2:10: assistant.model: the model 'gpt-4o' goes to the `openai` provider, which is not "
            "configured: set OPENAI_API_KEY") in result.output


def test_validate(runner_in: CliRunner, examples_project: Path) -> None:
    tmp_path = examples_project
    ok = runner_in.invoke(cli, ["validate", "specs/examples"])
    assert ok.exit_code == 0 and f"{6 + SANDBOX} spec files valid" in ok.output, ok.output
    (tmp_path / "bad.yaml").write_text("assistant: {model: echo}\nconversation: []\nconversation: []\n",
                                       encoding="utf-8")
    bad = runner_in.invoke(cli, ["validate", "bad.yaml"])
    assert bad.exit_code == 2
    assert "bad.yaml:3:1: conversation: duplicate key 'conversation' (first defined on line 2)" in bad.output
    missing = runner_in.invoke(cli, ["validate", "nothere.yaml"])
    assert missing.exit_code == 2 and "nothere.yaml: no such file or folder" in missing.output
    (tmp_path / "empty").mkdir()
    empty = runner_in.invoke(cli, ["validate", "empty"])
    assert empty.exit_code == 2 and "no spec files" in empty.output


def test_var_overrides_and_bad_var(runner_in: CliRunner, tmp_path: Path) -> None:
    result = runner_in.invoke(cli, ["run", str(EXAMPLES / "multi_turn.yaml"), "--var", "customer=Ada"])
    assert result.exit_code == 0, result.output
    data = json.loads(transcript_stem(tmp_path / "transcripts", str(EXAMPLES / "multi_turn.yaml")).with_suffix(".json").read_text(encoding="utf-8"))
    assert data["turns"][0]["user"] == "Hello, I am Ada."
    assert data["assistant"]["instructions"] == "You answer Ada's questions briefly."
    bad = runner_in.invoke(cli, ["run", str(EXAMPLES / "hello.yaml"), "--var", "oops"])
    assert bad.exit_code == 2 and "expected KEY=VALUE" in bad.output


def test_poll_mode_gives_the_same_verdicts(runner_in: CliRunner, examples_project: Path) -> None:
    result = runner_in.invoke(cli, ["run", "specs/examples", "--poll", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert f"{CONVERSATIONS} passed, 0 failed" in result.output


def test_no_temporary_files_are_left(runner_in: CliRunner, examples_project: Path) -> None:
    tmp_path = examples_project
    runner_in.invoke(cli, ["run", "specs/examples"])
    # the file remembering failures for --last-failed is meant to stay; a temporary one beside it is not
    leftovers = [p for p in (tmp_path / "transcripts").rglob("*") if p.name.startswith(".") and p.name != ".lastfailed"]
    assert leftovers == [] and (tmp_path / "transcripts" / ".lastfailed").is_file()


def test_interrupt_keeps_finished_transcripts(runner_in: CliRunner, examples_project: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path = examples_project
    from runner.engine import batch

    real = batch.run_batch

    async def first_then_ctrl_c(jobs, options, **kwargs):  # type: ignore[no-untyped-def]
        await real(jobs[:1], options, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr("runner.run.run_batch", first_then_ctrl_c)
    result = runner_in.invoke(cli, ["run", "specs/examples"])
    assert result.exit_code == 130
    assert f"interrupted: 1 of {CONVERSATIONS} conversations finished" in result.output
    written = sorted(p.name for p in (tmp_path / "transcripts").rglob("*.json"))
    assert len(written) == 1


def test_remote_backend_errors_never_show_the_key(runner_in: CliRunner, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-" + "s3cr3t" * 6
    monkeypatch.setenv("MY_ENDPOINT_KEY", secret)
    (tmp_path / "remote.yaml").write_text(
        "assistant: {model: gpt-4o}\n"
        "backend: {base_url: 'http://127.0.0.1:9/v1', api_key_env: MY_ENDPOINT_KEY}\n"
        "conversation: [{user: hi}]\n", encoding="utf-8")
    monkeypatch.setattr(cli_module, "_run_jobs", _no_retry(cli_module._run_jobs))
    result = runner_in.invoke(cli, ["run", "remote.yaml", "--timeout", "5"])
    assert result.exit_code == 1
    assert "cannot reach the backend" in result.output
    everything = result.output + "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "transcripts").rglob("*.*")
                                         if p.is_file())
    assert secret not in everything and "Bearer" not in everything
    assert "MY_ENDPOINT_KEY" in everything  # the variable's name is recorded, never its value


def _no_retry(run_jobs):  # type: ignore[no-untyped-def]
    """Keep the connection-refused test fast: no SDK retries."""
    from runner.engine import backend

    original = backend.open_client

    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        backend.open_client = lambda target, max_retries=0: original(target, max_retries=0)
        try:
            return run_jobs(*args, **kwargs)
        finally:
            backend.open_client = original

    return wrapped


def test_real_process_runs_hello(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "OPENAI_"))}
    proc = subprocess.run([sys.executable, "-m", "runner", "run", str(EXAMPLES / "hello.yaml")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "1 passed, 0 failed" in proc.stdout
    assert list((tmp_path / "transcripts").rglob("hello.json"))  # its path mirrors the spec's, from that cwd


def test_help_and_validate_do_not_import_the_sdk(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from runner.cli import cli\n"
        f"r = CliRunner().invoke(cli, ['validate', {str(EXAMPLES)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "CliRunner().invoke(cli, ['--help'])\n"
        "print(sorted(m for m in sys.modules if m == 'openai' or m.startswith(('openai.', 'httpx2'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_two_specs_with_one_output_path_are_a_usage_error(runner_in: CliRunner, tmp_path: Path) -> None:
    for name in ("x.yaml", "x.yml"):
        (tmp_path / name).write_text("assistant: {model: echo}\nconversation: [{user: hi}]\n", encoding="utf-8")
    result = runner_in.invoke(cli, ["run", "."])
    assert result.exit_code == 2
    assert "x.yml: its transcripts and cassette would overwrite those of x.yaml" in result.output


def test_junit_summary_and_diff(runner_in: CliRunner, tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    (tmp_path / "failing.yaml").write_text(FAILING, encoding="utf-8")
    first = runner_in.invoke(cli, ["run", "failing.yaml", str(EXAMPLES / "hello.yaml"), "--junit", "r/junit.xml",
                                   "--summary", "r/summary.json", "-o", "old"])
    assert first.exit_code == 1
    suite = ET.parse(tmp_path / "r" / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"
    failure = suite.find("testcase[@name='failing']/failure")
    assert failure is not None and 'expected the reply to contain "Hello"' in (failure.text or "")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text(encoding="utf-8"))
    assert summary["totals"]["passed"] == 1 and summary["totals"]["failed"] == 1
    (tmp_path / "failing.yaml").write_text(FAILING.replace("Bonjour", "Hello"), encoding="utf-8")
    second = runner_in.invoke(cli, ["run", "failing.yaml", str(EXAMPLES / "hello.yaml"), "-o", "new"])
    assert second.exit_code == 1  # `regex: ^Bon` fails now
    changed = runner_in.invoke(cli, ["diff", "old", "new"])
    assert changed.exit_code == 1
    assert "failing.yaml" in changed.output and "-Bonjour" in changed.output and "+Hello" in changed.output
    assert "1 changed, 1 unchanged" in changed.output
    same = runner_in.invoke(cli, ["diff", "old", "old"])
    assert same.exit_code == 0 and "0 changed, 2 unchanged" in same.output
    assert runner_in.invoke(cli, ["diff", "old", "missing"]).exit_code == 2


def test_a_var_that_no_selected_spec_uses_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("assistant: {model: echo}\nvars: {customer: Bo}\n"
                                     "conversation: [{user: 'Hi {{ customer }} from {{ city }}'}]\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("assistant: {model: echo}\nmatrix: {lang: [en]}\nconversation: [{user: hi}]\n",
                                     encoding="utf-8")
    runner = CliRunner()
    typo = runner.invoke(cli, ["run", str(tmp_path), "--var", "city=Oslo", "--var", "custmer=Ada",
                               "-o", str(tmp_path / "out")])
    assert typo.exit_code == 2
    assert "--var custmer: no selected spec uses a variable named 'custmer' (did you mean 'customer'?)" in typo.output
    assert not (tmp_path / "out").exists()
    # declared, read by a template without being declared, or crossed by a matrix: all count as used
    for name in ("customer", "city", "lang"):
        ok = runner.invoke(cli, ["run", str(tmp_path), "--var", "city=Oslo", "--var", f"{name}=x",
                                 "-o", str(tmp_path / "out")])
        assert ok.exit_code == 0, ok.output
    # only the selected specs count: b.yaml alone uses no `customer`
    alone = runner.invoke(cli, ["run", str(tmp_path), "-k", "b.yaml", "--var", "city=Oslo", "--var", "customer=Ada"])
    assert alone.exit_code == 2 and "'city' (they use: lang)" in alone.output


def test_a_run_that_could_not_write_its_folder_does_not_point_at_it(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hi.yaml").write_text("assistant: {model: echo}\nconversation: [{user: hi}]\n", encoding="utf-8")
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc, where no folder can be made")
    result = CliRunner().invoke(cli, ["run", "hi.yaml", "-o", "/proc/runner-no-such-folder"])
    assert result.exit_code == 1, result.output
    assert "cannot write the transcript of hi.yaml" in result.output
    assert "1 passed, 0 failed" in result.output and "transcripts in" not in result.output
