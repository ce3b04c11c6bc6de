"""Environment files: `.env` (or --env-file) configures the providers, and its values count as secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_upstream import fake_upstream, response_body

from runner.cli import cli
from runner.envfile import load_env_file

KEY = "sk-from-dotenv-" + "z9" * 12
SPEC = "assistant: {model: gpt-test}\nconversation: [{user: Hello there, expect: [{contains: Hi}]}]\n"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("CI", "RUNNER_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "RUNNER_CHAT_BASE_URL",
                 "FROM_DOTENV", "SHORT"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "hello.yaml").write_text(SPEC, encoding="utf-8")
    return tmp_path


def _restore_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    # the CLI loads the file into os.environ: give every variable it may set back afterwards
    monkeypatch.setattr(os, "environ", os.environ.copy())


def test_dotenv_in_the_working_folder_configures_the_provider_and_stays_out_of_the_cassette(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_upstream() as fake:
        fake.queue("/responses", (200, response_body(text="Hi!"), {}))
        (workdir / ".env").write_text(f"OPENAI_BASE_URL={fake.url}\nexport OPENAI_API_KEY='{KEY}'\n",
                                      encoding="utf-8")
        _restore_environ(monkeypatch)
        result = CliRunner().invoke(cli, ["run", "hello.yaml", "--record", "once"])
        assert result.exit_code == 0, result.output
        assert fake.received[0].headers["authorization"] == f"Bearer {KEY}"
    cassette = (workdir / "cassettes" / "hello.yaml").read_text(encoding="utf-8")
    transcript = (workdir / "transcripts" / "hello.json").read_text(encoding="utf-8")
    assert KEY not in cassette and KEY not in transcript and KEY not in result.output
    assert fake.url.split("//")[1] not in cassette  # the base URL, 8 characters or more, is a loaded value too


def test_no_env_file_leaves_dotenv_alone(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (workdir / ".env").write_text(f"OPENAI_API_KEY={KEY}\n", encoding="utf-8")
    _restore_environ(monkeypatch)
    result = CliRunner().invoke(cli, ["run", "hello.yaml", "--no-env-file", "--record", "all"])
    assert result.exit_code == 2 and "OPENAI_API_KEY" in result.output  # the preflight: no key, nothing run
    assert "OPENAI_API_KEY" not in os.environ


def test_a_named_env_file_that_is_missing_is_a_usage_error(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _restore_environ(monkeypatch)
    result = CliRunner().invoke(cli, ["run", "hello.yaml", "--env-file", "missing.env"])
    assert result.exit_code == 2 and "--env-file" in result.output and "missing.env: not a file" in result.output


def test_the_environment_wins_and_short_values_are_not_secrets(tmp_path: Path) -> None:
    env_file = tmp_path / "settings.env"
    env_file.write_text("FROM_DOTENV=a-long-enough-value\nSHORT=1\nALREADY=from-file-value\nEMPTY\n",
                        encoding="utf-8")
    environ = {"ALREADY": "from-shell"}
    loaded = load_env_file(env_file, environ=environ)
    assert environ == {"ALREADY": "from-shell", "FROM_DOTENV": "a-long-enough-value", "SHORT": "1"}
    assert loaded.names == ("FROM_DOTENV", "SHORT") and loaded.secret_names == ("FROM_DOTENV",)
    assert load_env_file(None, environ={}).path is None or Path(".env").is_file()
