"""The worked CI example replays from its committed cassette: no key, no network, stable transcripts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx2
import pytest
from click.testing import CliRunner

from runner.cli import cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for folder in ("specs/ci", "cassettes/specs/ci"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "RUNNER_BASE_URL", "RUNNER_CHAT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)

    async def no_network(self, request):  # type: ignore[no-untyped-def]
        raise AssertionError(f"network access during replay: {request.url}")

    monkeypatch.setattr(httpx2.AsyncHTTPTransport, "handle_async_request", no_network)
    return tmp_path


def test_the_ci_example_replays_offline_without_a_key(repo_copy: Path) -> None:
    runs = []
    for out in ("first", "second"):
        result = CliRunner().invoke(cli, ["run", "specs/ci", "--stable", "-o", out, "--junit", f"{out}.xml"],
                                    env={"CI": "true"})
        assert result.exit_code == 0, result.output
        runs.append((repo_copy / out / "specs" / "ci" / "support_reply.json").read_bytes())
    assert runs[0] == runs[1]  # two replays diff clean
    data = json.loads(runs[0])
    assert data["turns"][0]["tool_calls"][0]["arguments"] == {"order": "4711"}
    assert "Friday" in data["turns"][0]["reply"]


def test_a_changed_prompt_fails_the_ci_example(repo_copy: Path) -> None:
    spec = repo_copy / "specs" / "ci" / "support_reply.yaml"
    spec.write_text(spec.read_text(encoding="utf-8").replace("at most two sentences", "at most one sentence"),
                    encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "specs/ci"], env={"CI": "true"})
    assert result.exit_code == 1
    assert ("replay: turn 1 of specs/ci/support_reply.yaml sent POST https://api.openai.com/v1/responses, but it "
            "differs from the closest request recorded in cassettes/specs/ci/support_reply.yaml: its body at") \
        in result.output


@pytest.mark.parametrize("mode", ["none", "once"])
def test_repeats_replay_the_conversations_cassette(repo_copy: Path, mode: str) -> None:
    """`--repeat 3` on a suite recorded once runs offline: each repeat without a cassette of its own
    replays its conversation's, which stays as it was."""
    cassettes = repo_copy / "cassettes" / "specs" / "ci"
    before = {p.name: p.read_bytes() for p in cassettes.iterdir()}
    result = CliRunner().invoke(cli, ["run", "specs/ci", "--repeat", "3", "--record", mode], env={"CI": "true"})
    assert result.exit_code == 0, result.output
    assert "3/3 runs passed" in result.output
    written = sorted(p.name for p in (repo_copy / "transcripts" / "specs" / "ci").glob("*.json"))
    assert written == [f"support_reply[repeat={r}].json" for r in (1, 2, 3)]
    assert {p.name: p.read_bytes() for p in cassettes.iterdir()} == before


def test_a_repeat_with_a_cassette_of_its_own_replays_that(repo_copy: Path) -> None:
    cassettes = repo_copy / "cassettes" / "specs" / "ci"
    # the recorded reply changed (the requests stay as they were, so they still match)
    recorded = (cassettes / "support_reply.yaml").read_text(encoding="utf-8")
    own = recorded.replace('arrive on Friday.","annotations"', 'arrive on Monday.","annotations"')
    assert own != recorded
    (cassettes / "support_reply[repeat=2].yaml").write_text(own, encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "specs/ci", "--repeat", "2"], env={"CI": "true"})
    assert "2/2 runs passed" not in result.output
    second = json.loads((repo_copy / "transcripts" / "specs" / "ci" / "support_reply[repeat=2].json").read_text(
        encoding="utf-8"))
    assert "Monday" in second["turns"][0]["reply"]
