"""The code interpreter through the engine, against the embedded backend with its run steps and replies shaped as the
server shows a code run (so this needs no sandbox): the spec's files and attachments go to code_interpreter (and to
file_search too when the assistant has both), one step listing per turn gives the code runs, the reply's images and
file links are read, the files the code produced are fetched and saved beside the transcript, and removed from a
remote endpoint; the embedded backend executes code only for a batch that has the tool, and a machine without the
sandbox refuses such specs before anything runs."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import run_async

from runner.engine import batch as batch_module
from runner.engine.backend import BackendTarget, code_limits, open_client, preflight
from runner.engine.batch import Job, run_batch
from runner.engine.conversation import AssistantPool, EngineOptions, run_conversation
from runner.expect import judge
from runner.report.transcript import Transcript
from runner.report.writers import write_transcript
from runner.server.app import Backend, BackendSettings
from runner.spec import BackendConfig, Spec, load_spec

RULES = [{"user": ".*", "reply": "The total is 4158.80."}]
CODE = "assistant:\n  model: scripted\n  tools: [code_interpreter]\n"
BOTH = "assistant:\n  model: scripted\n  tools: [code_interpreter, file_search]\n"
ECHO = "assistant:\n  model: echo\n  tools: [code_interpreter]\n"  # needs no rules, as preflight sees it
_ID = re.compile(r"^(?:[a-z]+_|file-)[A-Za-z0-9]{16,}$")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sales.csv").write_text("region,amount\nnorth,1200.50\n", encoding="utf-8")
    (tmp_path / "data" / "more.csv").write_text("region,amount\nsouth,830.25\n", encoding="utf-8")
    return tmp_path


def spec_in(folder: Path, body: str, name: str = "spec.yaml", stream: bool = False) -> Spec:
    path = folder / name
    path.write_text(body + f"backend: {{stream: {str(stream).lower()}}}\n", encoding="utf-8")
    return load_spec(path)


class CodeShaped:
    """The embedded app, with each run's steps answered as a code run that showed an image, and (when polled) each
    reply carrying that image and a link to a file the code wrote: the shapes the server gives a code run. The
    image and the file are real Files of the backend. Requests are counted by method and path."""

    def __init__(self, backend: Backend, fail_steps: bool = False) -> None:
        from runner.server.app import create_app

        self.app = create_app(backend)
        self.backend = backend
        self.seen: list[str] = []
        self.step_queries: list[str] = []
        self.image_id = self.file_id = ""
        self.fail_steps = fail_steps

    async def make_outputs(self, client: Any) -> None:
        self.image_id = (await client.files.create(file=("image-1.png", b"\x89PNG fake"), purpose="assistants")).id
        self.file_id = (await client.files.create(file=("summary.csv", b"region,share\n"), purpose="assistants")).id

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        self.seen.append(f"{method} {'/'.join('{id}' if _ID.match(p) else p for p in path.split('/'))}")
        if method == "GET" and path.endswith("/steps"):
            self.step_queries.append(scope["query_string"].decode())
            if self.fail_steps:
                await _answer(send, 500, {"error": {"message": "broken here", "type": "server_error"}})
                return
            call = {"id": "call_1", "type": "code_interpreter", "code_interpreter": {
                "input": "print('total: 4158.80')", "outputs": [
                    {"type": "logs", "logs": "total: 4158.80\n"}, {"type": "image", "image": {"file_id": self.image_id}}]}}
            step = {"id": "step_1", "object": "thread.run.step", "type": "tool_calls",
                    "step_details": {"type": "tool_calls", "tool_calls": [call]}}
            await _answer(send, 200, {"object": "list", "data": [step], "has_more": False})
            return
        if method == "GET" and path.endswith("/messages"):
            await self._with_outputs(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _with_outputs(self, scope: Any, receive: Any, send: Any) -> None:
        """The backend's message list, its assistant messages given the image and the file link."""
        parts: list[bytes] = []
        status = 200

        async def keep(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        await self.app(scope, receive, keep)
        page = json.loads(b"".join(parts))
        for message in page.get("data", []):
            if message["role"] == "assistant":
                link = " [summary.csv](sandbox:/mnt/data/summary.csv)"
                start = len(message["content"][0]["text"]["value"]) + 15
                message["content"][0]["text"]["value"] += link
                message["content"][0]["text"]["annotations"].append({
                    "type": "file_path", "text": "sandbox:/mnt/data/summary.csv", "start_index": start,
                    "end_index": start + 29, "file_path": {"file_id": self.file_id}})
                message["content"].insert(0, {"type": "image_file", "image_file": {"file_id": self.image_id}})
        await _answer(send, status, page)

    def count(self, request: str) -> int:
        return self.seen.count(request)


async def _answer(send: Any, status: int, body: Any) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def client_for(app: CodeShaped) -> Any:
    import httpx2
    from openai import AsyncOpenAI

    from runner.engine.asgi import StreamingASGITransport

    http = httpx2.AsyncClient(transport=StreamingASGITransport(app), base_url="http://embedded.runner/v1")
    return AsyncOpenAI(api_key="x", base_url="http://embedded.runner/v1", http_client=http, max_retries=0)


async def conversations(specs: list[Spec], backend: Backend | None = None, target: BackendTarget | None = None,
                        options: EngineOptions | None = None, fail_steps: bool = False,
                        before: Any = None) -> tuple[list[Transcript], Backend, CodeShaped]:
    """Run `specs` on one backend with one pool (as a batch does), judged."""
    backend = backend or Backend(BackendSettings(rules=RULES))
    app = CodeShaped(backend, fail_steps)
    client = client_for(app)
    pool = AssistantPool(client)
    try:
        await app.make_outputs(client)
        if before is not None:
            specs = [await before(client)]
        transcripts = await asyncio.gather(*(
            run_conversation(s, client, target or BackendTarget(s.backend), pool, options or EngineOptions())
            for s in specs))
        return [await judge(s, t) for s, t in zip(specs, transcripts, strict=True)], backend, app
    finally:
        await client.close()


TURN = ("  - user: print('total')\n    run: {tool_choice: code_interpreter}\n    expect:\n"
        "      - code: {output_contains: 'total: 4158.80', error: false}\n      - files_created: summary.csv\n"
        "      - files_created: '*.png'\n      - image: true\n")


def test_files_go_to_the_code_interpreter_and_its_products_into_the_transcript(folder: Path, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_in(folder, "files: [data/sales.csv]\n" + CODE + "conversation:\n" + TURN +
                   "  - user: and this one?\n    attachments: [data/more.csv]\n")
    (transcript,), backend, app = run_async(conversations([spec]))
    assert transcript.verdict == "passed", transcript.to_dict()
    assistant = backend.store.get("assistant", transcript.assistant_id or "")
    assert assistant["tool_resources"] == {"code_interpreter": {"file_ids": [transcript.files[0]["file_id"]]}}
    assert transcript.vector_store_id is None and backend.store.list("vector_store").data == []  # nothing to index
    assert app.count("POST /v1/vector_stores") == 0
    messages = backend.store.list("message", parent=transcript.thread_id, order="asc").data
    attached = [m["attachments"] for m in messages if m["attachments"]]
    assert attached == [[{"file_id": transcript.turns[1].attachments[0]["file_id"],
                          "tools": [{"type": "code_interpreter"}]}]]
    first = transcript.turns[0]
    assert [(r.input, r.logs, r.images) for r in first.code_runs] == [
        ("print('total: 4158.80')", "total: 4158.80\n", [app.image_id])]
    assert first.images == [app.image_id]
    assert first.files == [{"file_id": app.file_id, "path": "sandbox:/mnt/data/summary.csv"}]
    assert [(o.name, o.kind, o.saved_as, o.data) for o in first.outputs] == [
        ("image-1.png", "image", "image-1.png", b"\x89PNG fake"), ("summary.csv", "file", "summary.csv",
                                                                   b"region,share\n")]
    # the same files again in turn 2: saved under names of their own
    assert [o.saved_as for o in transcript.turns[1].outputs] == ["image-1-2.png", "summary-2.csv"]
    # one step listing per turn, without the search results' text nobody asked for
    assert app.count("GET /v1/threads/{id}/runs/{id}/steps") == 2 and "include" not in app.step_queries[0]
    monkeypatch.chdir(tmp_path)
    json_path, md_path = write_transcript(tmp_path / "out", transcript)
    saved = json_path.parent / "spec.files"
    assert sorted(p.name for p in saved.iterdir()) == ["image-1-2.png", "image-1.png", "summary-2.csv",
                                                       "summary.csv"]
    assert "![image-1.png](spec.files/image-1.png)" in md_path.read_text(encoding="utf-8")


def test_with_both_tools_the_files_are_searched_and_read_and_one_listing_serves_both(folder: Path) -> None:
    turn = TURN.replace("      - files_created: summary.csv\n", "")  # streamed: the reply is the backend's own
    spec = spec_in(folder, "files: [data/sales.csv]\n" + BOTH + "conversation:\n" + turn +
                   "    attachments: [data/more.csv]\n", stream=True)
    (transcript,), backend, app = run_async(conversations([spec]))
    assert transcript.verdict == "passed", transcript.to_dict()
    resources = backend.store.get("assistant", transcript.assistant_id or "")["tool_resources"]
    assert resources == {"code_interpreter": {"file_ids": [transcript.files[0]["file_id"]]},
                         "file_search": {"vector_store_ids": [transcript.vector_store_id]}}
    (message,) = [m for m in backend.store.list("message", parent=transcript.thread_id).data if m["attachments"]]
    assert message["attachments"][0]["tools"] == [{"type": "file_search"}, {"type": "code_interpreter"}]
    assert app.count("GET /v1/threads/{id}/runs/{id}/steps") == 1 and "include" in app.step_queries[0]
    # the reply has no image or link of its own (streamed); the code run's image counts
    turn = transcript.turns[0]
    assert turn.images == [] and [o.name for o in turn.outputs] == ["image-1.png"] and turn.searches == []


def test_an_existing_assistant_with_the_code_interpreter_gets_the_files_on_its_thread(folder: Path) -> None:
    async def make(client: Any) -> Spec:
        assistant = await client.beta.assistants.create(model="scripted", tools=[{"type": "code_interpreter"}])
        return spec_in(folder, f"files: [data/sales.csv]\nassistant_id: {assistant.id}\nconversation:\n" + TURN)

    (transcript,), backend, app = run_async(conversations([], before=make))
    assert transcript.verdict == "passed", transcript.to_dict()
    thread = backend.store.get("thread", transcript.thread_id or "")
    assert thread["tool_resources"]["code_interpreter"]["file_ids"] == [transcript.files[0]["file_id"]]
    assert "file_search" not in thread["tool_resources"] and transcript.vector_store_id is None
    assert transcript.turns[0].code_runs and app.count("GET /v1/assistants/{id}") == 1


def test_a_step_listing_that_fails_is_the_turns_error(folder: Path) -> None:
    spec = spec_in(folder, CODE + "conversation:\n" + TURN)
    (transcript,), _, _ = run_async(conversations([spec], fail_steps=True))
    assert transcript.turns[0].error == ("listing the run's steps for its code runs: the backend answered 500: "
                                         "broken here")


def test_a_remote_endpoint_loses_the_files_the_code_made_unless_kept(folder: Path) -> None:
    spec = spec_in(folder, CODE + "conversation:\n" + TURN)
    remote = BackendTarget(BackendConfig(base_url="http://127.0.0.1:9/v1", stream=False))
    (transcript,), backend, app = run_async(conversations([spec], target=remote))
    assert transcript.verdict == "passed", transcript.to_dict()
    left = {f["id"] for f in backend.store.list("file").data}
    assert app.image_id not in left and app.file_id not in left
    (kept,), backend, app = run_async(conversations([spec], target=remote, options=EngineOptions(keep=True)))
    assert {app.image_id, app.file_id} <= {f["id"] for f in backend.store.list("file").data}
    (embedded,), backend, app = run_async(conversations([spec]))
    assert app.count("DELETE /v1/files/{id}") == 0


# --- the embedded backend's code interpreter -----------------------------------------------------------------


def test_code_limits_come_from_the_spec_or_the_defaults() -> None:
    from runner.server.tools.code_interpreter.limits import CodeLimits

    assert code_limits(BackendConfig()) == CodeLimits()
    chosen = code_limits(BackendConfig(code_timeout=2.5, code_memory=256))
    assert (chosen.wall_seconds, chosen.memory_mb, chosen.cpu_seconds) == (2.5, 256, CodeLimits().cpu_seconds)


def test_the_embedded_backend_executes_code_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("runner.engine.backend.embedded_client", lambda backend: backend)
    target = BackendTarget(BackendConfig(code_timeout=5))
    assert open_client(target).settings.code_interpreter is None  # type: ignore[attr-defined]
    limits = open_client(target, code=True).settings.code_interpreter  # type: ignore[attr-defined]
    assert limits is not None and limits.wall_seconds == 5


def test_a_batch_turns_code_on_only_for_backends_with_a_spec_that_runs_code(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[str | None, bool]] = []

    def fake_open(target: BackendTarget, *, replaying: bool = False, code: bool = False) -> Any:
        opened.append((target.config.provider, code))
        raise batch_module.BackendUnavailable("not here")

    monkeypatch.setattr(batch_module, "open_client", fake_open)
    specs = []
    for name, body in (("plain", "assistant: {model: echo}\n"), ("code", CODE),
                       ("other", "assistant: {model: echo}\nbackend: {provider: echo}\n")):
        (tmp_path / f"{name}.yaml").write_text(body + "conversation: [{user: hi}]\n", encoding="utf-8")
        specs.append(load_spec(tmp_path / f"{name}.yaml"))
    jobs = [Job(s, BackendTarget(s.backend)) for s in specs]
    transcripts = run_async(run_batch(jobs, EngineOptions()))
    assert opened == [(None, True), ("echo", False)]  # plain and code share the default backend, which runs code
    assert all(t.error == "backend unavailable: not here" for t in transcripts)


def _unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.server.tools.code_interpreter import sandbox

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise sandbox.SandboxUnavailable(f"bubblewrap (bwrap) is not installed: {sandbox.INSTALL_HINT}; code is "
                                         "never run unsandboxed")

    monkeypatch.setattr(sandbox, "prepare", refuse)


def test_without_the_sandbox_a_spec_that_runs_code_is_refused_saying_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _unavailable(monkeypatch)
    (tmp_path / "code.yaml").write_text(ECHO + "conversation: [{user: hi}]\n", encoding="utf-8")
    spec = load_spec(tmp_path / "code.yaml")
    (problem,) = preflight(spec, BackendTarget(spec.backend))
    assert problem.startswith(f"{tmp_path}/code.yaml:3:11: assistant.tools: code_interpreter cannot run code on "
                              "this machine: bubblewrap (bwrap) is not installed: install bubblewrap: `apt-get "
                              "install bubblewrap`")
    from runner.server.tools.code_interpreter import sandbox

    def says_the_tool(*args: Any) -> Any:
        raise sandbox.SandboxUnavailable("code_interpreter needs a sandbox and bubblewrap (bwrap) is not installed: "
                                         "install bubblewrap")

    monkeypatch.setattr(sandbox, "prepare", says_the_tool)
    assert preflight(spec, BackendTarget(spec.backend)) == [
        f"{tmp_path}/code.yaml:3:11: assistant.tools: code_interpreter needs a sandbox and bubblewrap (bwrap) is not "
        "installed: install bubblewrap"]  # said once
    # a remote endpoint runs code under its own sandbox; a spec without the tool needs none
    assert preflight(spec, BackendTarget(BackendConfig(base_url="http://127.0.0.1:9/v1"))) == []
    (tmp_path / "plain.yaml").write_text("assistant: {model: echo}\nconversation: [{user: hi}]\n", encoding="utf-8")
    plain = load_spec(tmp_path / "plain.yaml")
    assert preflight(plain, BackendTarget(plain.backend)) == []


def test_runner_run_refuses_it_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.cli import cli

    _unavailable(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "code.yaml").write_text(ECHO + "conversation: [{user: hi}]\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "code.yaml"])
    assert result.exit_code == 2, result.output
    assert "code.yaml:3:11: assistant.tools: code_interpreter cannot run code on this machine" in result.output
    assert "apt-get install bubblewrap" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "transcripts").exists()


def test_code_limits_are_refused_on_a_remote_endpoint(tmp_path: Path) -> None:
    (tmp_path / "code.yaml").write_text(ECHO + "backend: {code_timeout: 5, code_memory: 256}\n"
                                               "conversation: [{user: hi}]\n", encoding="utf-8")
    spec = load_spec(tmp_path / "code.yaml")
    problems = preflight(spec, BackendTarget(BackendConfig(base_url="http://127.0.0.1:9/v1")))
    assert [p.split(": ", 2)[1] for p in problems] == ["backend.code_timeout", "backend.code_memory"]
    assert problems[0].endswith("start the server with `--code-interpreter --code-timeout 5`")
    assert problems[1].endswith("start the server with `--code-interpreter --code-memory 256`")
