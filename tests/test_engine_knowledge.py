"""Knowledge retrieval through the engine, on the embedded backend: files uploaded and indexed once per batch
and given to the assistant (or an existing assistant's thread), attachments on the first and later turns, the
run's searches and the reply's citations in the transcript, errors naming the file, and cleanup on remote
endpoints."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_async

from runner.engine.backend import BackendTarget
from runner.engine.conversation import AssistantPool, EngineOptions, run_conversation
from runner.expect import judge
from runner.report.transcript import Transcript
from runner.server.app import Backend, BackendSettings
from runner.spec import BackendConfig, Spec, load_spec

RULES = [
    {"tool_output": r"Order (?P<n>\d+) shipped on (?P<d>\d+ \w+)", "reply": r"Order \g<n> left on \g<d>."},
    {"tool_output": r"(?P<y>\w+)-year warranty", "reply": r"You have a \g<y>-year warranty."},
    {"tool_output": "No results", "reply": "I found nothing."},
    {"user": ".*", "reply": "no search"},
]
KNOWLEDGE = {
    "knowledge/warranty.md": "Every kettle has a two-year warranty covering defects.",
    "knowledge/faq.txt": "Returns are accepted within 30 days of delivery.",
    "orders/order-1042.txt": "Order 1042 shipped on 3 March by courier.",
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name, text in KNOWLEDGE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def spec_in(folder: Path, body: str, name: str = "spec.yaml", stream: bool = True) -> Spec:
    path = folder / name
    path.write_text(body + f"backend: {{stream: {str(stream).lower()}}}\n", encoding="utf-8")
    return load_spec(path)


ASSISTANT = "assistant:\n  model: scripted\n  tools: [file_search]\n"
ASK_WARRANTY = "  - user: How long is the warranty?\n    run: {tool_choice: file_search}\n"


class Counted:
    """The embedded app behind a client that counts requests by method and path (ids left out), and may answer
    some with an error."""

    def __init__(self, backend: Backend, fail: Callable[[str, str], bool] | None = None) -> None:
        from runner.server.app import create_app

        self.app = create_app(backend)
        self.seen: list[str] = []
        self.content_types: list[str] = []  # of the uploads
        self.fail = fail

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            self.seen.append(f"{method} {_shape(path)}")
            if path.endswith("/files") and method == "POST":
                self.content_types.append(dict(scope["headers"]).get(b"content-type", b"").decode())
            if self.fail is not None and self.fail(method, path):
                body = json.dumps({"error": {"message": "broken here", "type": "server_error"}}).encode()
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def count(self, request: str) -> int:
        return self.seen.count(request)


_ID = re.compile(r"^(?:[a-z]+_|file-)[A-Za-z0-9]{16,}$")


def _shape(path: str) -> str:
    return "/".join("{id}" if _ID.match(part) else part for part in path.split("/"))


def client_for(app: Counted) -> Any:
    import httpx2
    from openai import AsyncOpenAI

    from runner.engine.asgi import StreamingASGITransport

    http = httpx2.AsyncClient(transport=StreamingASGITransport(app), base_url="http://embedded.runner/v1")
    return AsyncOpenAI(api_key="x", base_url="http://embedded.runner/v1", http_client=http, max_retries=0)


async def conversations(specs: list[Spec], backend: Backend | None = None, target: BackendTarget | None = None,
                        options: EngineOptions | None = None, app: Counted | None = None,
                        ) -> tuple[list[Transcript], Backend, Counted]:
    """Run `specs` concurrently on one backend with one pool (as a batch does), judged."""
    backend = backend or Backend(BackendSettings(rules=RULES))
    app = app or Counted(backend)
    client = client_for(app)
    pool = AssistantPool(client)
    try:
        transcripts = await asyncio.gather(*(
            run_conversation(s, client, target or BackendTarget(s.backend), pool, options or EngineOptions())
            for s in specs))
        if target is not None and not target.embedded and not (options and options.keep):
            await pool.delete_created()
        return [await judge(s, t) for s, t in zip(specs, transcripts, strict=True)], backend, app
    finally:
        await client.close()


@pytest.mark.parametrize("stream", [True, False])
def test_files_are_indexed_for_the_assistant_and_the_searches_are_in_the_transcript(folder: Path,
                                                                                     stream: bool) -> None:
    spec = spec_in(folder, "files: ['knowledge/*']\n" + ASSISTANT + "conversation:\n" + ASK_WARRANTY +
                   "    expect:\n      - file_search: {file: warranty.md, contains: two-year}\n"
                   "      - equals: You have a two-year warranty.\n", stream=stream)
    (transcript,), backend, app = run_async(conversations([spec]))
    assert transcript.verdict == "passed", transcript.to_dict()
    assert [(f["path"], f["file_name"]) for f in transcript.files] == [("knowledge/faq.txt", "faq.txt"),
                                                                      ("knowledge/warranty.md", "warranty.md")]
    store = backend.store.get("vector_store", transcript.vector_store_id or "")
    assert store["status"] == "completed" and store["file_counts"]["completed"] == 2
    assistant = backend.store.get("assistant", transcript.assistant_id or "")
    assert assistant["tool_resources"]["file_search"]["vector_store_ids"] == [transcript.vector_store_id]
    (search,) = transcript.turns[0].searches
    assert search.results[0]["file_name"] == "warranty.md" and "two-year warranty" in search.results[0]["text"]
    assert search.results[0]["file_id"] == transcript.files[1]["file_id"] and search.results[0]["score"] > 0
    assert search.queries == ["How long is the warranty?"]  # the forced search asks with the user message
    assert app.count("POST /v1/files") == 2 and app.count("GET /v1/threads/{id}/runs/{id}/steps") == 1


def test_a_batch_shares_uploads_stores_and_assistants_for_the_same_files(folder: Path, tmp_path: Path) -> None:
    body = "files: ['knowledge/*']\n" + ASSISTANT + "conversation:\n" + ASK_WARRANTY
    same = [spec_in(folder, body, f"s{i}.yaml") for i in range(4)]
    other = tmp_path / "other"
    (other / "knowledge").mkdir(parents=True)
    (other / "knowledge" / "warranty.md").write_text("A one-year warranty only.", encoding="utf-8")
    (other / "knowledge" / "faq.txt").write_text(KNOWLEDGE["knowledge/faq.txt"], encoding="utf-8")
    changed = spec_in(other, body)  # the same paths, one with other contents
    fewer = spec_in(folder, body.replace("'knowledge/*'", "knowledge/warranty.md"), "fewer.yaml")
    transcripts, backend, app = run_async(conversations([*same, changed, fewer]))
    assert [t.turns[0].reply for t in transcripts] == ["You have a two-year warranty."] * 4 + [
        "You have a one-year warranty.", "You have a two-year warranty."]
    assert len({t.vector_store_id for t in transcripts[:4]}) == 1 and len({t.assistant_id for t in transcripts[:4]}) == 1
    assert len({t.vector_store_id for t in transcripts}) == 3 and len({t.assistant_id for t in transcripts}) == 3
    # faq.txt is one upload for both folders (same path, same contents); warranty.md two; fewer.yaml reuses
    assert app.count("POST /v1/files") == 3 and app.count("POST /v1/vector_stores") == 3
    assert len(backend.store.list("assistant").data) == 3


def test_attachments_on_the_first_and_a_later_turn_are_searched_in_the_threads_store(folder: Path) -> None:
    spec = spec_in(folder, ASSISTANT + """\
conversation:
  - user: When did order 1042 ship?
    attachments: [orders/order-1042.txt]
    run: {tool_choice: file_search}
    expect: [{file_search: {file: order-1042.txt, contains: 3 March}}, {contains: left on 3 March}]
  - user: And the warranty?
    attachments: [knowledge/warranty.md, orders/order-1042.txt]
    run: {tool_choice: file_search}
    expect: [{file_search: {file: warranty.md}}]
""")
    (transcript,), backend, app = run_async(conversations([spec]))
    assert transcript.verdict == "passed", [c.reason for t in transcript.turns for c in t.checks]
    first, second = transcript.turns
    assert [a["path"] for a in first.attachments] == ["orders/order-1042.txt"]
    assert [a["path"] for a in second.attachments] == ["knowledge/warranty.md", "orders/order-1042.txt"]
    assert second.attachments[1]["file_id"] == first.attachments[0]["file_id"]  # uploaded once
    assert app.count("POST /v1/files") == 2 and transcript.files == [] and transcript.vector_store_id is None
    messages = backend.store.children("message", transcript.thread_id or "")
    assert [[a["file_id"] for a in m.get("attachments") or []] for m in messages if m["role"] == "user"] == [
        [first.attachments[0]["file_id"]], [a["file_id"] for a in second.attachments]]
    # the first turn's message went with create_and_run: no separate thread or message call
    assert app.count("POST /v1/threads/runs") == 1 and app.count("POST /v1/threads") == 0


def test_an_existing_assistant_gets_the_store_on_its_thread(folder: Path) -> None:
    async def go() -> tuple[Transcript, Transcript, Backend]:
        backend = Backend(BackendSettings(rules=RULES))
        app = Counted(backend)
        client = client_for(app)
        assistant = await client.beta.assistants.create(model="scripted", tools=[{"type": "file_search"}])
        await client.close()
        plain = spec_in(folder, f"files: ['knowledge/*']\nassistant_id: {assistant.id}\nconversation:\n"
                                + ASK_WARRANTY + "    additional_instructions: be brief\n", "plain.yaml")
        attaching = spec_in(folder, f"files: ['knowledge/*']\nassistant_id: {assistant.id}\nconversation:\n"
                                    + ASK_WARRANTY + "    attachments: [orders/order-1042.txt]\n", "attaching.yaml")
        (one, two), _, _ = await conversations([plain, attaching], backend, app=app)
        return one, two, backend

    plain, attaching, backend = run_async(go())
    assert plain.verdict == attaching.verdict == "passed"
    assert plain.turns[0].reply == "You have a two-year warranty." and plain.turns[0].searches
    thread = backend.store.get("thread", plain.thread_id or "")  # made by threads.create (additional_instructions)
    assert thread["tool_resources"]["file_search"]["vector_store_ids"] == [plain.vector_store_id]
    # a conversation whose turns attach files has a store of its own: the attachments join it, not the shared one
    assert attaching.vector_store_id != plain.vector_store_id
    assert backend.store.get("vector_store", plain.vector_store_id or "")["file_counts"]["total"] == 2
    assert backend.store.get("vector_store", attaching.vector_store_id or "")["file_counts"]["total"] == 3


def test_a_file_that_fails_to_index_is_the_conversations_error_naming_it(folder: Path) -> None:
    (folder / "knowledge" / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    spec = spec_in(folder, "files: ['knowledge/*']\n" + ASSISTANT + "conversation:\n" + ASK_WARRANTY)
    (one, two), _, app = run_async(conversations([spec, spec]))
    assert one.verdict == "error" and all(t.skipped for t in one.turns)
    assert one.error is not None and one.error.startswith(
        "indexing the knowledge files: knowledge/scan.png failed: unsupported_file: ")
    assert two.error == one.error and app.count("POST /v1/vector_stores") == 1  # the failure is known once


def test_an_upload_the_backend_refuses_is_the_conversations_error(folder: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import runner.server.routes.files as files_routes

    monkeypatch.setattr(files_routes, "MAX_FILE_BYTES", 40)
    spec = spec_in(folder, "files: [knowledge/warranty.md]\n" + ASSISTANT + "conversation:\n" + ASK_WARRANTY)
    (transcript,), _, _ = run_async(conversations([spec]))
    assert transcript.error is not None and transcript.error.startswith(
        "uploading knowledge/warranty.md: the backend answered 413: ")
    attaching = spec_in(folder, ASSISTANT + "conversation:\n" + ASK_WARRANTY + "    attachments: [knowledge/warranty.md]\n",
                        "attaching.yaml")
    (transcript,), _, _ = run_async(conversations([attaching]))
    assert transcript.turns[0].error is not None and transcript.turns[0].error.startswith(
        "uploading knowledge/warranty.md: the backend answered 413: ")
    assert transcript.error == f"turn 1: {transcript.turns[0].error}" and transcript.turns[0].run_id is None


def test_steps_are_listed_only_for_turns_that_may_search_and_a_failure_is_the_turns_error(folder: Path) -> None:
    plain = spec_in(folder, "assistant: {model: echo}\nconversation: [{user: one}, {user: two}]\n", "plain.yaml")
    (transcript,), _, app = run_async(conversations([plain]))
    assert transcript.verdict == "passed" and not any("steps" in request for request in app.seen)
    backend = Backend(BackendSettings(rules=RULES))
    broken = Counted(backend, fail=lambda method, path: path.endswith("/steps"))
    spec = spec_in(folder, "files: ['knowledge/*']\n" + ASSISTANT + "conversation:\n" + ASK_WARRANTY)
    (transcript,), _, _ = run_async(conversations([spec], backend, app=broken))
    assert transcript.turns[0].status == "completed"
    assert transcript.turns[0].error == ("listing the run's steps for its file searches: the backend answered 500: "
                                         "broken here")


def test_remote_endpoints_delete_the_files_and_stores_made_unless_kept(folder: Path) -> None:
    spec = spec_in(folder, "files: ['knowledge/*']\n" + ASSISTANT + "conversation:\n" + ASK_WARRANTY +
                   "    attachments: [orders/order-1042.txt]\n")
    remote = BackendTarget(BackendConfig(base_url="http://127.0.0.1:9/v1"))
    (transcript,), backend, _ = run_async(conversations([spec], target=remote))
    assert transcript.verdict == "passed"
    assert backend.store.list("file").data == []
    assert backend.store.list("vector_store").data == []  # the assistant's, and the one made for the attachment
    (kept,), backend, _ = run_async(conversations([spec], target=remote, options=EngineOptions(keep=True)))
    assert len(backend.store.list("file").data) == 3
    (embedded,), backend, app = run_async(conversations([spec]))
    assert app.count("DELETE /v1/files/{id}") == 0 and len(backend.store.list("file").data) == 3


def test_an_upload_is_the_same_request_body_every_time(folder: Path) -> None:
    """The multipart boundary is the contents' digest, not random: a recorded upload replays from a cassette."""
    import hashlib

    spec = spec_in(folder, "files: [knowledge/warranty.md]\n" + ASSISTANT + "conversation:\n" + ASK_WARRANTY)
    _, _, first = run_async(conversations([spec]))
    _, _, second = run_async(conversations([spec]))
    digest = hashlib.sha256(KNOWLEDGE["knowledge/warranty.md"].encode()).hexdigest()
    assert first.content_types == second.content_types == [f"multipart/form-data; boundary=runner-{digest[:40]}"]
