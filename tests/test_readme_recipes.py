"""The README's recipes, run as a reader would run them."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from click.testing import CliRunner
from conftest import EXAMPLES
from serve_process import serving

from runner.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _serve_recipe() -> tuple[list[str], list[str]]:
    """The `runner serve` line and the `runner run ... --base-url` line of the README's serve section."""
    section = README[README.index("## The built-in backend over HTTP"):]
    block = section[section.index("```sh") + 5:section.index("```", section.index("```sh") + 5)]
    lines = [shlex.split(line.split("#")[0]) for line in block.strip().splitlines()]
    serve = next(words for words in lines if words[:2] == ["runner", "serve"])
    run = next(words for words in lines if words[:2] == ["runner", "run"] and "--base-url" in words)
    return serve[2:], run[2:]


def test_the_readme_serve_recipe_passes_on_the_projects_own_specs(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    serve_args, run_args = _serve_recipe()
    monkeypatch.chdir(ROOT)
    for name in ("CI", "RUNNER_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "RUNNER_CHAT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with serving(tmp_path, *serve_args) as server:
        url = run_args.index("--base-url") + 1
        run_args[url] = re.sub(r"http://127\.0\.0\.1:\d+/v1", server.url, run_args[url])
        result = CliRunner().invoke(cli, ["run", *run_args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert " 0 failed" in result.output


def test_a_spec_with_rules_is_refused_on_a_remote_endpoint(tmp_path: Path) -> None:
    spec = tmp_path / "weather_tool.yaml"
    spec.write_text((EXAMPLES / "weather_tool.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "weather.rules.yaml").write_text((EXAMPLES / "weather.rules.yaml").read_text(encoding="utf-8"),
                                                  encoding="utf-8")
    provider = tmp_path / "provider.yaml"
    provider.write_text("assistant: {model: echo}\nbackend: {provider: echo}\nconversation: [{user: hi}]\n",
                        encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", str(tmp_path), "--base-url", "http://127.0.0.1:9/v1",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert re.search(r"weather_tool\.yaml:\d+:\d+: backend\.rules: the rules of the `scripted` model configure "
                     r"the embedded backend, and http://127\.0\.0\.1:9/v1 answers with its own provider", result.output)
    assert re.search(r"provider\.yaml:2:\d+: backend\.provider: 'echo' configures the embedded backend",
                     result.output)
    assert "nothing was run" in result.output and not (tmp_path / "out").exists()
