"""The pytest plugin: spec files as test items, with readable failures and the runner's options."""

from __future__ import annotations

import shutil

import pytest
from conftest import EXAMPLES

FAILING = """name: failing
assistant: {model: echo}
conversation:
  - user: Bonjour
    expect: [{contains: Hello}]
"""


@pytest.fixture
def specs(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("CI", "RUNNER_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    shutil.copy(EXAMPLES / "hello.yaml", pytester.path / "hello.spec.yaml")
    (pytester.path / "bad.spec.yaml").write_text(FAILING, encoding="utf-8")
    (pytester.path / "typo.spec.yaml").write_text(
        "assistant: {model: echo}\nconversation: [{user: hi, expect: [{containz: x}]}]\n", encoding="utf-8")
    (pytester.path / "not_a_spec.yaml").write_text("just: data\n", encoding="utf-8")
    return pytester


def test_specs_are_collected_and_failures_read_well(specs: pytest.Pytester) -> None:
    result = specs.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*conversation: failing*",
        '*turn 1 contains [[]*bad.spec.yaml:5:25]: expected the reply to contain "Hello"; reply: "Bonjour"*',
        "*transcript: transcripts/bad.spec.json*",
        "*conversation: typo*",
        "*typo.spec.yaml:2:37: conversation[[]0].expect[[]0].containz: unknown check 'containz'*",
    ])
    assert "\x1b[" not in result.stdout.str()  # no terminal colours in failure reports
    assert (specs.path / "transcripts" / "hello.spec.json").exists()


def test_tags_are_markers_and_vars_are_options(specs: pytest.Pytester) -> None:
    result = specs.runpytest("-p", "no:cacheprovider", "-m", "smoke")
    result.assert_outcomes(passed=1)
    assert "PytestUnknownMarkWarning" not in result.stdout.str()
    overridden = specs.runpytest("-p", "no:cacheprovider", "-k", "failing", "--runner-var", "x=1")
    overridden.assert_outcomes(failed=1)


def test_the_example_specs_pass_under_pytest(pytester: pytest.Pytester) -> None:
    """The project's examples, collected with a wider glob (rules files are never taken for specs)."""
    shutil.copytree(EXAMPLES, pytester.path, dirs_exist_ok=True)  # with knowledge/, which retrieval.yaml uploads
    # the live example's cassette, where a spec at the top of the working folder finds it
    shutil.copytree(EXAMPLES.parent.parent / "cassettes" / "specs" / "examples", pytester.path / "cassettes")
    from runner.engine.backend import sandbox_problem

    sandbox = sandbox_problem() is None
    if not sandbox:  # code.yaml runs code, which needs bubblewrap (CI installs it)
        (pytester.path / "code.yaml").unlink()
    result = pytester.runpytest("-p", "no:cacheprovider", "-o", "runner_spec_glob=*.yaml", "--runner-record", "none")
    result.assert_outcomes(passed=9 + sandbox)  # greetings_matrix.yaml is four items


def test_a_spec_on_both_pipelines_is_two_items(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CI", "RUNNER_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (pytester.path / "both.spec.yaml").write_text(
        "backend: {pipeline: both}\nassistant: {model: echo}\nconversation: [{user: hi, expect: [{equals: hi}]}]\n",
        encoding="utf-8")
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*both.spec.yaml::both.spec PASSED*", "*both.spec[[]pipeline=responses] PASSED*"])
