"""The live providers against a real model server: llama.cpp's llama-server with SmolLM2-135M on loopback,
from the team's kit beside the repository (`../shared/live/`). `pytest -m live_local` runs only these.

Driven as users drive it: `runner run spec.yaml` as a process, reading the JSON transcript; `runner serve`
through the official SDK. The model is tiny, so the tests assert on shape (a completed run, a non-empty
reply, usage reported), never on wording. Skipped, with the reason, where the kit is absent or cannot start.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import local_model_server
import pytest
from serve_process import clean_env, serving

pytestmark = pytest.mark.live_local

INSTRUCTIONS = "You are terse. Reply with one short sentence."  # short replies keep a loaded CPU's runs short
TWO_TURNS = f"""
name: live-{{provider}}
assistant:
  model: {{provider}}/smollm2
  instructions: {INSTRUCTIONS}
conversation:
  - user: Reply with the single word pong.
  - user: Now reply with the single word ping.
"""


@pytest.fixture(scope="session")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_model_server.LocalModelServer]:
    """One local model server for the whole session, stopped by its PID at the end."""
    try:
        server = local_model_server.start(tmp_path_factory.mktemp("llm"))
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


def _env(provider: str, url: str) -> dict[str, str]:
    """The variables that point `provider` at the server at `url`, and nothing else of the caller's."""
    if provider == "chat":
        return clean_env(RUNNER_CHAT_BASE_URL=url)
    return clean_env(OPENAI_BASE_URL=url, OPENAI_API_KEY="sk-local-unused")


def _run(cwd: Path, spec: str, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    """`runner run spec.yaml ARGS` in `cwd`: the finished process and the spec's JSON transcript."""
    (cwd / "spec.yaml").write_text(textwrap.dedent(spec).lstrip("\n"), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "runner", "run", "spec.yaml", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    transcript = cwd / "transcripts" / "spec.json"
    assert transcript.is_file(), proc.stdout + proc.stderr
    return proc, json.loads(transcript.read_text(encoding="utf-8"))


def _assert_answered(proc: subprocess.CompletedProcess[str], data: Any, turns: int) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert data["verdict"] == "passed"
    assert len(data["turns"]) == turns
    for turn in data["turns"]:
        assert turn["status"] == "completed", turn["last_error"]
        assert turn["reply"].strip()
        usage = turn["usage"]
        assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.parametrize("mode", ["stream", "poll"])
@pytest.mark.parametrize("provider", ["chat", "openai"])
def test_a_two_turn_spec_runs_through_each_provider(llm, tmp_path: Path, provider: str, mode: str) -> None:  # type: ignore[no-untyped-def]
    # the second turn sends the first turn's items back: llama.cpp refuses untyped Responses items
    poll = ["--poll"] if mode == "poll" else []
    proc, data = _run(tmp_path, TWO_TURNS.format(provider=provider), _env(provider, llm.url),
                      "--record", "all", "--cassettes", "cassettes", *poll)
    _assert_answered(proc, data, turns=2)
    assert data["model"] == f"{provider}/smollm2"


@pytest.mark.parametrize("provider", ["chat", "openai"])
def test_a_two_turn_spec_runs_through_the_responses_pipeline(llm, tmp_path: Path, provider: str) -> None:  # type: ignore[no-untyped-def]
    """The responses pipeline on the embedded backend, whose Responses API calls the real model server."""
    proc, data = _run(tmp_path, TWO_TURNS.format(provider=provider), _env(provider, llm.url),
                      "--pipeline", "responses", "--record", "all", "--cassettes", "cassettes")
    _assert_answered(proc, data, turns=2)
    assert data["pipeline"] == "responses" and data["thread_id"].startswith("conv_")
    assert all(turn["run_id"].startswith("resp_") for turn in data["turns"])


def test_the_responses_pipeline_runs_against_the_servers_own_responses_api(llm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A remote Responses target without the Conversations API (llama.cpp's answers 404): each response carries the
    conversation so far as its input, stored nowhere."""
    # llama.cpp decodes greedily unless asked, and SmolLM2 then repeats itself until the timeout: sample as the
    # API's defaults say
    spec = TWO_TURNS.format(provider="smollm2").replace("model: smollm2/smollm2",
                                                        "model: smollm2-135m-instruct\n  temperature: 1.0")
    proc, data = _run(tmp_path, spec, clean_env(RUNNER_API_KEY="sk-local-unused"), "--pipeline", "responses",
                      "--base-url", llm.url, "--record", "all", "--cassettes", "cassettes")
    _assert_answered(proc, data, turns=2)
    assert data["pipeline"] == "responses" and data["thread_id"] is None
    import yaml

    recorded = yaml.safe_load((tmp_path / "cassettes" / "spec.yaml").read_text(encoding="utf-8"))
    asked = [json.loads(i["request"]["body"]) for i in recorded["interactions"]
             if i["request"]["uri"].endswith("/responses")]
    assert [[item["role"] for item in body["input"]] for body in asked] == [["user"], ["user", "assistant", "user"]]
    assert all(body["store"] is False and "conversation" not in body for body in asked)


@pytest.fixture
def own_llm(tmp_path: Path) -> Iterator[local_model_server.LocalModelServer]:
    """A server of the test's own, which the test may stop (the session's must stay up)."""
    try:
        server = local_model_server.start(tmp_path / "own-llm")
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


def _refuses_connections(url: str) -> bool:
    host, port = url.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return True
    return False


def test_a_recorded_conversation_replays_with_the_server_gone(own_llm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = _env("chat", own_llm.url)
    proc, recorded = _run(tmp_path, TWO_TURNS.format(provider="chat"), env, "--record", "once")
    _assert_answered(proc, recorded, turns=2)
    cassette = tmp_path / "cassettes" / "spec.yaml"
    assert cassette.is_file() and "/chat/completions" in cassette.read_text(encoding="utf-8")

    own_llm.stop()
    assert _refuses_connections(own_llm.url)  # the replay provably cannot reach a model
    proc, replayed = _run(tmp_path, TWO_TURNS.format(provider="chat"), env, "--record", "none")
    _assert_answered(proc, replayed, turns=2)
    for then, now in zip(recorded["turns"], replayed["turns"], strict=True):
        assert (now["reply"], now["usage"]) == (then["reply"], then["usage"])


@pytest.mark.parametrize("provider", ["chat", "openai"])
def test_a_request_the_server_refuses_fails_the_turn_with_its_status(llm, tmp_path: Path, provider: str) -> None:  # type: ignore[no-untyped-def]
    too_long = "hi " * 5000  # over the server's 4096-token context: llama-server answers 400
    spec = f"assistant: {{model: {provider}/smollm2}}\nconversation:\n  - user: {too_long}\n  - user: never sent\n"
    proc, data = _run(tmp_path, spec, _env(provider, llm.url), "--record", "all", "--cassettes", "cassettes")
    assert proc.returncode == 1
    assert data["verdict"] == "failed"
    turn = data["turns"][0]
    assert turn["status"] == "failed" and turn["last_error"]["code"] == "invalid_prompt"
    message = turn["last_error"]["message"]
    assert message.startswith(f"{provider} provider: the upstream refused the request (400): ")
    assert "context size" in message  # the upstream's own reason, passed on
    assert message in proc.stdout  # the runner says why the turn failed
    assert "Traceback" not in proc.stdout + proc.stderr
    assert data["turns"][1]["skipped"]


def test_runner_serve_answers_the_sdk_through_the_real_server(llm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from openai import OpenAI

    with serving(tmp_path, "--provider", "chat", env=clean_env(RUNNER_CHAT_BASE_URL=llm.url)) as server:
        client = OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)
        assistant = client.beta.assistants.create(model="smollm2", instructions=INSTRUCTIONS)
        thread = client.beta.threads.create()
        client.beta.threads.messages.create(thread.id, role="user", content="Reply with the single word pong.")
        polled = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                          poll_interval_ms=100)
        client.beta.threads.messages.create(thread.id, role="user", content="Now reply with the single word ping.")
        with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
            stream.until_done()
            streamed = stream.get_final_run()
            streamed_messages = stream.get_final_messages()
        replies = client.beta.threads.messages.list(thread.id, order="asc").data
    for run in (polled, streamed):
        assert run.status == "completed", run.last_error
        assert run.usage is not None and run.usage.prompt_tokens > 0 and run.usage.completion_tokens > 0
    assert [m.role for m in replies] == ["user", "assistant", "user", "assistant"]
    for message in (replies[1], replies[3], *streamed_messages):
        assert message.role == "assistant" and message.content[0].type == "text"
        assert message.content[0].text.value.strip()
    assert streamed_messages[-1].id == replies[3].id


EMBEDDED_DOCS = {
    "tides.md": "# Tides\n\nTides are caused by the gravitational pull of the moon and the sun on the oceans.\n",
    "bread.txt": "To bake sourdough bread you need flour, water, salt and a lively starter culture.\n",
    "volcano.txt": "Magma rises through the crust of the earth and erupts as lava and ash.\n",
}


@pytest.fixture
def embedding_llm(tmp_path: Path) -> Iterator[local_model_server.LocalModelServer]:
    """A server of the test's own answering /v1/embeddings."""
    try:
        server = local_model_server.start(tmp_path / "embedding-llm", *local_model_server.EMBEDDING_ARGS)
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


def test_runner_serve_ranks_file_search_by_the_servers_embeddings(embedding_llm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from openai import OpenAI

    args = ("--embeddings", embedding_llm.url, "--embeddings-model", "smollm2")
    with serving(tmp_path, *args, env=clean_env()) as server:
        client = OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=300)
        ids = {client.files.create(file=(name, text.encode(), "text/plain"), purpose="assistants").id: name
               for name, text in EMBEDDED_DOCS.items()}
        store = client.vector_stores.create(name="live")
        batch = client.vector_stores.file_batches.create_and_poll(store.id, file_ids=list(ids), poll_interval_ms=100)
        usage = client.vector_stores.retrieve(store.id).usage_bytes
        text_bytes = sum(len((part.text or "").encode()) for file_id in ids
                         for part in client.vector_stores.files.content(file_id, vector_store_id=store.id).data)
        by_meaning = client.vector_stores.search(store.id, query="satellite orbit")  # in no file: meaning only
        hybrid = client.vector_stores.search(store.id, query="What causes the tides of the oceans?")
        log = server.stop()
    assert batch.file_counts.completed == len(EMBEDDED_DOCS), log
    vector_bytes = usage - text_bytes  # one float32 vector per chunk (one chunk a file), of the model's size
    assert vector_bytes > 0 and vector_bytes % (4 * len(EMBEDDED_DOCS)) == 0
    # found by meaning alone: first of the semantic ranking, unseen by the keyword one, scores exactly 0.5
    assert by_meaning.data and {hit.file_id for hit in by_meaning.data} <= set(ids)
    assert by_meaning.data[0].score == pytest.approx(0.5)
    assert hybrid.data and all(0.0 <= hit.score <= 1.0 for hit in hybrid.data)
    assert ids[hybrid.data[0].file_id] == "tides.md"  # first by its keywords, whatever the tiny model thinks
    assert "file_search embeddings smollm2 at " in log
