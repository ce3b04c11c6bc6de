"""Streaming on the Responses pipeline: a turn's responses are read from their `response.*` events (the
finished response from the end event) when the backend streams, plainly with `--poll`, with the same
transcript either way; a backend refusing `stream` is answered plainly (and asked plainly from then on); an
`error` event or a stream without its end fails the turn with a message; a remote endpoint's streamed
traffic records to a cassette and replays."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES

from runner.cli import cli
from runner.server import response_events
from runner.server.errors import APIError
from runner.server.routes import responses as responses_route

SPECS = ["hello.yaml", "multi_turn.yaml", "weather_tool.yaml", "weather.rules.yaml"]
SHORT = ("assistant: {model: echo}\n"
         "conversation:\n"
         "  - user: one two three four five six\n"
         "    run: {max_completion_tokens: 2}\n"
         "    expect: [{status: incomplete}, {equals: one two}]\n"
         "  - user: and again\n")


@pytest.fixture
def runner_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for name in ("CI", "RUNNER_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "RUNNER_CHAT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "specs").mkdir()
    for name in SPECS:
        (tmp_path / "specs" / name).write_text((EXAMPLES / name).read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "specs" / "short.yaml").write_text(SHORT, encoding="utf-8")
    return CliRunner()


@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The types of the events the embedded backend streamed."""
    sent: list[str] = []
    original = response_events.sse

    def counting(event: dict[str, Any]) -> bytes:
        sent.append(event["type"])
        return original(event)

    monkeypatch.setattr(response_events, "sse", counting)
    return sent


def _transcripts(folder: Path) -> dict[str, Any]:
    """The transcripts of a folder, by name, without the conversations' and responses' ids (random: the stable
    view numbers the Assistants API's ids only)."""
    found = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.rglob("*.json"))}
    for data in found.values():
        assert data.pop("thread_id").startswith("conv_")
        for turn in data["turns"]:
            assert turn.pop("run_id").startswith("resp_")
    return found


def _run(runner: CliRunner, *args: str, env: dict[str, str] | None = None, specs: tuple[str, ...] = ("specs",)) -> Any:
    return runner.invoke(cli, ["run", *specs, "--pipeline", "responses", "--stable", *args], env=env)


def test_a_streamed_run_gives_the_polled_runs_transcript(runner_here: CliRunner, tmp_path: Path,
                                                         streamed: list[str]) -> None:
    result = _run(runner_here, "-o", "streamed")
    assert result.exit_code == 0, result.output
    assert "response.completed" in streamed and "response.incomplete" in streamed
    assert "response.output_text.delta" in streamed and "response.function_call_arguments.delta" in streamed
    count = len(streamed)
    polled = _run(runner_here, "--poll", "-o", "polled")
    assert len(streamed) == count  # --poll: not one event more
    assert "4 passed, 0 failed" in result.output and "4 passed, 0 failed" in polled.output
    assert _transcripts(tmp_path / "streamed") == _transcripts(tmp_path / "polled")
    weather = _transcripts(tmp_path / "streamed")["weather_tool.json"]
    assert weather["turns"][0]["tool_calls"][0]["name"] == "get_weather" and weather["turns"][0]["usage"]


def test_a_spec_that_does_not_stream_is_not_streamed(runner_here: CliRunner, tmp_path: Path,
                                                     streamed: list[str]) -> None:
    (tmp_path / "specs" / "plain.yaml").write_text(
        "backend: {stream: false}\nassistant: {model: echo}\nconversation: [{user: hi, expect: [{equals: hi}]}]\n",
        encoding="utf-8")
    result = runner_here.invoke(cli, ["run", "specs/plain.yaml", "--pipeline", "responses"])
    assert result.exit_code == 0, result.output
    assert streamed == []


@pytest.fixture
def refusing(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The embedded backend refuses `stream` as a backend without streaming does; returns each request's `stream`."""
    asked: list[bool] = []
    original = responses_route.read_body

    async def read_body(request: Any, schema: str) -> dict[str, Any]:
        body: dict[str, Any] = await original(request, schema)
        if schema == "CreateResponse":
            asked.append(bool(body.get("stream")))
            if body.get("stream"):
                raise APIError(400, "Streaming is not supported by this backend.", param="stream")
        return body

    monkeypatch.setattr(responses_route, "read_body", read_body)
    return asked


def test_a_backend_refusing_stream_is_answered_plainly_and_asked_plainly_after(
        runner_here: CliRunner, tmp_path: Path, refusing: list[bool]) -> None:
    result = _run(runner_here, "-o", "refused", "-j", "1")
    assert result.exit_code == 0, result.output
    # one refusal per backend (weather_tool.yaml's rules make a second), then every response asked plainly
    assert refusing[0] is True and refusing.count(True) == 2
    assert len(refusing) > 5
    refusing.clear()
    polled = _run(runner_here, "--poll", "-o", "polled")
    assert refusing and not any(refusing)
    assert "4 passed, 0 failed" in result.output and "4 passed, 0 failed" in polled.output
    assert _transcripts(tmp_path / "refused") == _transcripts(tmp_path / "polled")


@pytest.fixture
def stream_end(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """What the embedded backend's streams send in place of a response's end event (nothing by default)."""
    ending: list[dict[str, Any]] = []
    original = response_events.finish

    def finish(response: dict[str, Any]) -> list[dict[str, Any]]:
        return [event for event in original(response) if not event["type"].startswith("response.")
                or event["type"].startswith("response.output_") or event["type"].startswith("response.content_")
                or event["type"].startswith("response.function_call")] + ending

    monkeypatch.setattr(response_events, "finish", finish)
    yield ending


def test_a_stream_without_its_end_fails_the_turn_saying_so(runner_here: CliRunner, tmp_path: Path,
                                                           stream_end: list[dict[str, Any]]) -> None:
    result = runner_here.invoke(cli, ["run", "specs/multi_turn.yaml", "--pipeline", "responses"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    data = json.loads((tmp_path / "transcripts" / "specs" / "multi_turn.json").read_text(encoding="utf-8"))
    first = data["turns"][0]
    assert first["error"] == ("the backend's event stream ended before the response did (no response.completed, "
                              "response.incomplete or response.failed event)")
    assert data["error"] == f"turn 1: {first['error']}"
    assert all(turn["skipped"] for turn in data["turns"][1:])


def test_an_error_event_fails_the_turn_with_its_message(runner_here: CliRunner, tmp_path: Path,
                                                        stream_end: list[dict[str, Any]]) -> None:
    stream_end.append({"type": "error", "code": "server_error", "message": "the model went away", "param": None})
    result = runner_here.invoke(cli, ["run", "specs/hello.yaml", "--pipeline", "responses"])
    assert result.exit_code == 1
    data = json.loads((tmp_path / "transcripts" / "specs" / "hello.json").read_text(encoding="utf-8"))
    assert data["turns"][0]["error"] == ("the backend's event stream reported an error: the model went away "
                                         "(server_error)")
    assert "the model went away" in result.output


def test_a_remote_endpoints_streamed_responses_record_and_replay(runner_here: CliRunner, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from serve_process import serving
    from test_cassettes import block_network

    specs = ("specs/hello.yaml", "specs/multi_turn.yaml", "specs/short.yaml")  # weather's rules are the embedded's
    with serving(tmp_path, "--provider", "echo") as server:
        recorded = _run(runner_here, "--base-url", server.url, "--record", "once", "-o", "recorded", specs=specs)
    assert recorded.exit_code == 0, recorded.output
    cassette = (tmp_path / "cassettes" / "specs" / "multi_turn.yaml").read_text(encoding="utf-8")
    assert "/v1/responses" in cassette and "event: response.completed" in cassette and '"stream":true' in \
        cassette.replace(" ", "")
    no_network = block_network(monkeypatch)
    replayed = _run(runner_here, "--base-url", "http://127.0.0.1:9/v1", "--record", "none", "-o", "replayed",
                    env={"CI": "1"}, specs=specs)
    assert no_network == []
    assert replayed.exit_code == 0, replayed.output
    recorded_data, replayed_data = _transcripts(tmp_path / "recorded"), _transcripts(tmp_path / "replayed")
    for data in (*recorded_data.values(), *replayed_data.values()):
        data.pop("backend")  # the endpoints' addresses differ
    assert replayed_data == recorded_data


def _without_conversations(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Make the embedded backend answer `POST /conversations` 404, as a Responses server without the
    Conversations API does (llama.cpp's); returns the body of every response created from then on."""
    from runner.server.routes import conversations as conversations_route

    created: list[dict[str, Any]] = []
    conversation_body, response_body = conversations_route.read_body, responses_route.read_body

    async def refuse(request: Any, schema: str) -> dict[str, Any]:
        if schema == "CreateConversationBody":
            raise APIError(404, "File Not Found")
        return dict(await conversation_body(request, schema))

    async def record(request: Any, schema: str) -> dict[str, Any]:
        body: dict[str, Any] = await response_body(request, schema)
        if schema == "CreateResponse":
            created.append(body)
        return body

    monkeypatch.setattr(conversations_route, "read_body", refuse)
    monkeypatch.setattr(responses_route, "read_body", record)
    return created


def test_without_the_conversations_api_each_response_carries_the_conversation_so_far(
        runner_here: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = _run(runner_here, "-o", "kept")
    assert kept.exit_code == 0, kept.output
    created = _without_conversations(monkeypatch)
    result = runner_here.invoke(cli, ["run", "specs", "--pipeline", "responses", "--stable", "-o", "stateless"])
    assert result.exit_code == 0, result.output
    assert created and all(body.get("conversation") is None and body["store"] is False for body in created)
    # multi-turn's last response holds the earlier turns, each user message once, with their replies
    last = next(b for b in reversed(created) if "shipped" in str(b["input"][-1].get("content")))
    roles = [item.get("role") for item in last["input"] if item["type"] == "message"]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    stateless = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in (tmp_path / "stateless").rglob("*.json")}
    assert all(data["thread_id"] is None for data in stateless.values())
    assert _transcripts_like(stateless) == _transcripts_like(
        {p.name: json.loads(p.read_text(encoding="utf-8")) for p in (tmp_path / "kept").rglob("*.json")})


def _transcripts_like(found: dict[str, Any]) -> dict[str, Any]:
    """Transcripts with the conversations' and responses' ids and the timings left out."""
    for data in found.values():
        data.pop("thread_id")
        for turn in data["turns"]:
            turn.pop("run_id")
    return found
