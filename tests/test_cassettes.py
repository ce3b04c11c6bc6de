"""Cassettes: record a conversation's provider traffic against a fake upstream, stop it, replay offline."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
from click.testing import CliRunner
from fake_upstream import fake_upstream, response_body

from runner.cli import cli

KEY = "sk-record-" + "q7" * 16
TOKEN = "tok-" + "w1" * 10  # a user-listed secret that appears in a prompt
SPEC = """
name: weather
assistant:
  model: gpt-test
  tools:
    - name: get_weather
      parameters: {type: object, properties: {city: {type: string}}}
vars: {token: ""}
conversation:
  - user: "What is the weather in Paris? (ref {{ token }})"
    tool_outputs: {get_weather: '{"celsius": 21}'}
    expect: [{contains: "21"}]
  - user: Thanks!
    expect: [{contains: welcome}]
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("CI", "RUNNER_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "RUNNER_CHAT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "weather.yaml").write_text(SPEC, encoding="utf-8")
    return tmp_path


def _answers(fake) -> None:  # type: ignore[no-untyped-def]
    fake.queue("/responses", (200, response_body(calls=[("get_weather", {"city": "Paris"})]), {}),
               (200, response_body(text="It is 21 degrees."), {}),
               (200, response_body(text="You are welcome."), {}))


def _run(*args: str, env: dict[str, str]) -> object:
    return CliRunner().invoke(cli, ["run", "specs", *args], env=env)


def _record(workdir: Path) -> dict[str, str]:
    """Record the spec against a fake upstream, stop it, and return the environment to replay with."""
    with fake_upstream() as fake:
        _answers(fake)
        env = {"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": KEY, "MY_TOKEN": TOKEN}
        result = _run("--record", "once", "--secret-env", "MY_TOKEN", "--var", f"token={TOKEN}", env=env)
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
        assert len(fake.received) == 3
    return {**env, "CI": "true"}  # same URL (matching is on method, URL and body); nothing listens there now


CASSETTE = Path("cassettes") / "specs" / "weather.yaml"


def block_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, fail loudly if anything tries to reach the network."""
    attempts: list[str] = []

    async def refuse(self, request):  # type: ignore[no-untyped-def]
        attempts.append(str(request.url))
        raise AssertionError(f"network access during replay: {request.url}")

    monkeypatch.setattr(httpx2.AsyncHTTPTransport, "handle_async_request", refuse)
    return attempts


def test_record_then_replay_offline_with_identical_verdicts(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _record(workdir)
    no_network = block_network(monkeypatch)
    cassette = workdir / CASSETTE
    first = json.loads((workdir / "transcripts" / "specs" / "weather.json").read_text(encoding="utf-8"))
    text = cassette.read_text(encoding="utf-8")
    assert text.count("uri: ") == 3 and "/v1/responses" in text
    for secret in (KEY, TOKEN, "Bearer", "authorization", "x-stainless"):
        assert secret.lower() not in text.lower(), secret
    assert "(ref <MY_TOKEN>)" in text  # the listed secret was in a prompt, and is filtered out
    # the upstream is gone; replay in CI mode (the default there is --record none)
    result = _run("--secret-env", "MY_TOKEN", "--var", f"token={TOKEN}", env=env)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert no_network == []
    again = json.loads((workdir / "transcripts" / "specs" / "weather.json").read_text(encoding="utf-8"))
    assert [t["reply"] for t in again["turns"]] == [t["reply"] for t in first["turns"]]
    assert [[c["passed"] for c in t["checks"]] for t in again["turns"]] == \
        [[c["passed"] for c in t["checks"]] for t in first["turns"]]
    assert again["turns"][0]["tool_calls"] == first["turns"][0]["tool_calls"]


def test_a_changed_prompt_fails_the_replay_naming_spec_and_turn(workdir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    env = _record(workdir)
    no_network = block_network(monkeypatch)
    spec = workdir / "specs" / "weather.yaml"
    spec.write_text(SPEC.replace("Thanks!", "Thank you!"), encoding="utf-8")
    result = _run("--secret-env", "MY_TOKEN", "--var", f"token={TOKEN}", env=env)
    output = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert no_network == []
    assert "replay: turn 2 of specs/weather.yaml sent POST http://127.0.0.1:" in output
    assert "differs from the closest request recorded in cassettes/specs/weather.yaml: its body at" in output
    assert "--record new_episodes" in output and "--record all" in output
    assert KEY not in output and TOKEN not in output


def test_missing_cassette_in_ci_says_how_to_record(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_network = block_network(monkeypatch)
    env = {"CI": "1", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": KEY}
    result = _run(env=env)
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "there is no cassette at cassettes/specs/weather.yaml" in result.output  # type: ignore[attr-defined]
    assert no_network == []
    assert not (workdir / "cassettes").exists()  # replay never writes


def test_new_episodes_adds_the_changed_request(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _record(workdir)
    spec = workdir / "specs" / "weather.yaml"
    spec.write_text(SPEC.replace("Thanks!", "Thank you!"), encoding="utf-8")
    port = int(env["OPENAI_BASE_URL"].rsplit(":", 1)[1].split("/")[0])
    with fake_upstream(port) as fake:  # the upstream is back where it was recorded
        fake.queue("/responses", (200, response_body(text="You are most welcome."), {}))
        result = _run("--record", "new_episodes", "--var", f"token={TOKEN}", "--secret-env", "MY_TOKEN",
                      env={**env, "CI": ""})
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
        assert len(fake.received) == 1  # only the changed turn went out
    assert (workdir / CASSETTE).read_text(encoding="utf-8").count("uri: ") == 4
    block_network(monkeypatch)
    replay = _run("--var", f"token={TOKEN}", "--secret-env", "MY_TOKEN", env=env)
    assert replay.exit_code == 0, replay.output  # type: ignore[attr-defined]


def test_record_all_records_the_cassette_again_from_nothing(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _record(workdir)
    spec = workdir / "specs" / "weather.yaml"
    spec.write_text(SPEC.replace("Thanks!", "Thank you!"), encoding="utf-8")
    with fake_upstream() as fake:
        _answers(fake)
        result = _run("--record", "all", "--var", f"token={TOKEN}", "--secret-env", "MY_TOKEN",
                      env={**env, "OPENAI_BASE_URL": fake.url})
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    cassette = (workdir / CASSETTE).read_text(encoding="utf-8")
    assert cassette.count("uri: ") == 3 and "Thanks!" not in cassette  # the old recording is gone, not kept
    block_network(monkeypatch)
    assert _run("--var", f"token={TOKEN}", "--secret-env", "MY_TOKEN", env=env).exit_code == 0  # type: ignore[attr-defined]


def test_tool_call_ids_a_backend_makes_up_match_by_their_order() -> None:
    from types import SimpleNamespace

    from runner.record.cassettes import _same_body

    def body(*ids: str) -> SimpleNamespace:
        items = [{"type": "function_call", "call_id": i, "arguments": '{"q": "call_abcdefghijkl"}'} for i in ids]
        return SimpleNamespace(body=json.dumps({"input": items, "note": "call_ZZZZZZZZZZZZ"}).encode())

    _same_body(body("call_aaaaaaaaaaaa", "call_bbbbbbbbbbbb", "call_aaaaaaaaaaaa"),
               body("call_xxxxxxxxxxxx", "call_yyyyyyyyyyyy", "call_xxxxxxxxxxxx"))
    with pytest.raises(AssertionError):  # the same id twice is not two different ids
        _same_body(body("call_aaaaaaaaaaaa", "call_bbbbbbbbbbbb"), body("call_xxxxxxxxxxxx", "call_xxxxxxxxxxxx"))
    with pytest.raises(AssertionError):  # the text of arguments is compared as it is
        _same_body(SimpleNamespace(body=b'{"a": "x call_abcdefghijkl"}'),
                   SimpleNamespace(body=b'{"a": "x call_mnopqrstuvwx"}'))


def test_a_remote_endpoints_traffic_is_recorded_and_replayed(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --base-url, the cassette holds the Assistants endpoint's traffic, and replay needs no server."""
    from conftest import EXAMPLES
    from serve_process import serving

    (workdir / "specs" / "weather.yaml").unlink()
    for name in ("hello.yaml", "multi_turn.yaml"):
        (workdir / "specs" / name).write_text((EXAMPLES / name).read_text(encoding="utf-8"), encoding="utf-8")
    with serving(workdir, "--provider", "echo") as server:
        url = server.url
        recorded = _run("--base-url", url, "--record", "once", env={})
        assert recorded.exit_code == 0, recorded.output  # type: ignore[attr-defined]
    cassette = (workdir / "cassettes" / "specs" / "multi_turn.yaml").read_text(encoding="utf-8")
    assert "/v1/assistants" in cassette and "/v1/threads" in cassette
    no_network = block_network(monkeypatch)
    # the next `runner serve --port 0` listens elsewhere: recordings match on method, path, query and body
    elsewhere = "http://127.0.0.1:9/v1"
    replayed = _run("--base-url", elsewhere, "--record", "none", env={"CI": "1"})
    assert replayed.exit_code == 0, replayed.output  # type: ignore[attr-defined]
    assert "2 passed, 0 failed" in replayed.output  # type: ignore[attr-defined]
    assert no_network == []


def test_a_remote_endpoint_is_recorded_only_when_asked(workdir: Path) -> None:
    """Pointing the runner at an endpoint means talking to it: no cassette is written or replayed unless
    --record says so (a stale one would silently answer instead of the server)."""
    from conftest import EXAMPLES
    from serve_process import serving

    (workdir / "specs" / "weather.yaml").unlink()
    (workdir / "specs" / "hello.yaml").write_text((EXAMPLES / "hello.yaml").read_text(encoding="utf-8"),
                                                  encoding="utf-8")
    stale = workdir / "cassettes" / "specs" / "hello.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("interactions: []\nversion: 1\n", encoding="utf-8")  # would fail any replay
    for ci in ({}, {"CI": "1"}):
        with serving(workdir, "--provider", "echo") as server:
            result = _run("--base-url", server.url, env=ci)
            assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert stale.read_text(encoding="utf-8") == "interactions: []\nversion: 1\n"
    assert sorted(p.name for p in (workdir / "cassettes").rglob("*.yaml")) == ["hello.yaml"]


def test_a_replay_mismatch_says_what_differs(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _record(workdir)
    block_network(monkeypatch)
    spec = workdir / "specs" / "weather.yaml"
    spec.write_text(SPEC.replace("Thanks!", "Thank you!"), encoding="utf-8")
    result = _run("--secret-env", "MY_TOKEN", "--var", f"token={TOKEN}", env=env)
    output = result.output  # type: ignore[attr-defined]
    assert "it differs from the closest request recorded in cassettes/specs/weather.yaml: its body at input[" \
        in output
    assert '.content: the recording has "Thanks!", this run sent "Thank you!"' in output \
        or '.text: the recording has "Thanks!", this run sent "Thank you!"' in output, output


def test_a_provider_recording_replays_whatever_the_providers_address(workdir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    env = _record(workdir)
    no_network = block_network(monkeypatch)
    moved = {**env, "OPENAI_BASE_URL": "https://models.example.invalid:8443/v1"}
    result = _run("--var", f"token={TOKEN}", "--secret-env", "MY_TOKEN", env=moved)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert no_network == []


def test_stable_replays_diff_clean(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _record(workdir)
    block_network(monkeypatch)
    outputs = []
    for name in ("first", "second"):
        result = _run("--stable", "-o", name, "--var", f"token={TOKEN}", "--secret-env", "MY_TOKEN", env=env)
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
        outputs.append({p.relative_to(workdir / name): p.read_bytes() for p in (workdir / name).rglob("*.*")
                        if p.name != ".lastfailed"})  # the transcripts, without the memory for --last-failed
    assert outputs[0] == outputs[1] and len(outputs[0]) == 2
    data = json.loads(outputs[0][Path("specs/weather.json")])
    assert data["thread_id"] == "thread_1" and [t["run_id"] for t in data["turns"]] == ["run_1", "run_2"]
    assert data["started_at"] == 0 and all(t["latency_ms"] is None for t in data["turns"])


def test_replay_needs_no_api_key(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI replays cassettes without any secret: the live provider is assumed, the cassette answers."""
    env = _record(workdir)
    no_network = block_network(monkeypatch)
    keyless = {"CI": "1", "OPENAI_BASE_URL": env["OPENAI_BASE_URL"], "OPENAI_API_KEY": "", "MY_TOKEN": TOKEN}
    result = _run("--var", f"token={TOKEN}", "--secret-env", "MY_TOKEN", env=keyless)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert no_network == []
    # recording still needs a key: without a cassette, the preflight says what to set
    (workdir / CASSETTE).unlink()
    result = _run("--record", "once", env={"OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""})
    assert result.exit_code == 2 and "set OPENAI_API_KEY" in result.output  # type: ignore[attr-defined]
