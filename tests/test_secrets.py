"""Secrets are written as `<NAME>` in everything the runner writes or prints, and in what `runner serve` stores.

Each test plants a distinct secret in one path and reads back everything that path produces: transcripts
(JSON, Markdown), JUnit, summary, --json, console output, cassettes, the server's SQLite file and its log.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from click.testing import CliRunner
from conftest import run_async
from fake_upstream import FakeUpstream, chat_body, error_body, fake_upstream, response_body
from serve_process import clean_env, serving

from runner.cli import cli
from runner.engine.backend import BackendTarget, embedded_client, redactor_for
from runner.engine.conversation import AssistantPool, EngineOptions, run_conversation
from runner.redact import RedactingFilter, Redactor, forms, redact_logs
from runner.server.app import Backend, BackendSettings
from runner.server.providers import LiveSettings, UpstreamConfig
from runner.spec import BackendConfig, load_spec

TOKEN = 'tok"en/ü-' + "r8" * 8  # a --secret-env value with characters JSON and URLs escape
KEY = "sk-echoed-" + "a5" * 14  # the provider key an upstream quotes back
CHAT_KEY = "sk-chat-" + "c6" * 14
SERVE_KEY = "sk-serve-" + "s2" * 14  # runner serve --api-key-env
DOTENV = "from-dotenv-" + "d4" * 10

SPEC = """
name: secretive
assistant:
  model: {model}
  instructions: "Never repeat {{{{ token }}}}."
  tools:
    - name: lookup
      parameters: {{type: object, properties: {{ref: {{type: string}}}}}}
vars: {{token: ""}}
conversation:
  - user: "My token is {{{{ token }}}}"
    tool_outputs: {{lookup: {{template: '{{"seen": {{{{ args.ref | tojson }}}}}}'}}}}
    expect:
      - jinja: "{{{{ token in reply }}}}"
      - contains: never said
"""

ECHOED = """
assistant:
  model: {model}
  tools: [{{name: lookup, parameters: {{type: object, properties: {{auth: {{type: string}}}}}}}}]
conversation:
  - user: hi
    tool_outputs: {{lookup: ok}}
    expect: [{{contains: never said}}]
"""


def leaks(secret: str, *places: Path | str) -> list[str]:
    """Where any form of `secret` appears: in the files under (or at) each path, or in each text."""
    found = []
    needles = [form.encode("utf-8") for form in forms(secret)]
    for place in places:
        if isinstance(place, str):
            blobs = [("output", place.encode("utf-8"))]
        else:
            files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
            blobs = [(str(p), p.read_bytes()) for p in files]
        found += [where for where, blob in blobs if any(needle in blob for needle in needles)]
    return found


def _lookup_then_reply() -> Any:
    """An upstream answer: a lookup call with the user's message, then a reply quoting what it was sent."""
    def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        items = body["input"]
        user = next(i for i in reversed(items) if i.get("role") == "user")["content"][0]["text"]
        outputs = [i["output"] for i in items if i.get("type") == "function_call_output"]
        if not outputs:
            return 200, response_body(calls=[("lookup", {"ref": user})]), {}
        return 200, response_body(text=f"Told: {body['instructions']} / {user} / {outputs[0]}"), {}

    return answer


def _runner(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`runner ARGS` in its own process: helper processes are forked, which is no place for pytest."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "OPENAI_", "CI"))}
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, env={**environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_forms_of_a_secret_are_replaced_by_its_name_longest_first() -> None:
    redact = Redactor({"TOKEN": TOKEN, "SHORTER": TOKEN[:12]})
    for shown in (TOKEN, json.dumps(TOKEN), json.dumps(TOKEN, ensure_ascii=False), json.dumps(TOKEN).replace("/", "\\/"),
                  repr(TOKEN), repr(TOKEN.encode()), quote(TOKEN, safe=""), quote_plus(TOKEN), f" {TOKEN}\r\n"):
        assert "<TOKEN>" in redact.text(f"before {shown} after"), shown
        assert not leaks(TOKEN, redact.text(shown)), shown
    assert redact.text(f"x {TOKEN[:12]} y") == "x <SHORTER> y"
    assert redact.encoded(json.dumps({"k": TOKEN}).encode()) == b'{"k": "<TOKEN>"}'


def test_data_is_redacted_at_any_depth_and_dataclasses_in_place() -> None:
    @dataclasses.dataclass
    class Record:
        text: str
        nested: Any

    record = Record(f"a {KEY}", {KEY: [f"{KEY}!", (KEY, 3)], "n": 1.5, "b": KEY.encode()})
    assert Redactor({"K": KEY}).data(record) is record
    assert record == Record("a <K>", {"<K>": ["<K>!", ("<K>", 3)], "n": 1.5, "b": b"<K>"})
    assert not Redactor() and Redactor().text(KEY) == KEY


def test_placeholder_keys_are_not_secrets_but_named_variables_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "ollama")  # what local servers are given: replacing it would corrupt text
    monkeypatch.setenv("PIN", "4711")
    monkeypatch.delenv("RUNNER_CHAT_API_KEY", raising=False)
    monkeypatch.delenv("RUNNER_API_KEY", raising=False)
    redact = redactor_for(BackendTarget(BackendConfig()), ("PIN",))
    assert redact.text("ollama says 4711") == "ollama says <PIN>"


def _remove_redacting_filters() -> None:
    """Take back what redact_logs attached to this process's handlers (pytest's among them)."""
    loggers = [logging.getLogger(), *(item for item in logging.Logger.manager.loggerDict.values()
                                      if isinstance(item, logging.Logger))]
    for handler in [h for logger in loggers for h in logger.handlers] + [logging.lastResort]:
        for found in [f for f in getattr(handler, "filters", []) if isinstance(f, RedactingFilter)]:
            handler.removeFilter(found)


def test_log_records_lose_their_secrets_arguments_and_tracebacks_included() -> None:
    from uvicorn.logging import AccessFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False))
    logger = logging.getLogger("runner.test.secrets")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        redact_logs(Redactor({"SERVE_KEY": SERVE_KEY}), ["runner.test.secrets"])
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
        logger.warning('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", f"/v1/x?key={SERVE_KEY}", "1.1", 200)
        handler.setFormatter(logging.Formatter("%(message)s"))
        try:
            raise RuntimeError(f"Authorization: Bearer {SERVE_KEY}")
        except RuntimeError:
            logger.exception("failed with %r", {"authorization": f"Bearer {SERVE_KEY}"})
    finally:
        logger.removeHandler(handler)
        _remove_redacting_filters()
    text = stream.getvalue()
    assert '"GET /v1/x?key=<SERVE_KEY> HTTP/1.1" 200' in text and "Bearer <SERVE_KEY>" in text
    assert "RuntimeError" in text and not leaks(SERVE_KEY, text)


@pytest.mark.parametrize("pipeline", ["assistants", "responses"])
def test_a_secret_env_value_is_nowhere_in_what_a_run_writes_or_prints(tmp_path: Path, pipeline: str) -> None:
    """(1) A `--secret-env` value used in the instructions and, through --var, in a user message, across two
    processes (helpers send their transcripts through a pipe), recorded, then replayed offline; on each
    pipeline."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "secretive.yaml").write_text(SPEC.format(model="gpt-test"), encoding="utf-8")
    args = ["run", "specs", "-o", "out", "--junit", "reports/junit.xml", "--summary", "reports/summary.json", "--json",
            "--secret-env", "MY_TOKEN", "--var", f"token={TOKEN}", "--repeat", "2", "--processes", "2", "-j", "2",
            "--pipeline", pipeline]
    with fake_upstream() as fake:
        fake.queue("/responses", *[_lookup_then_reply()] * 4)
        env = {"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": KEY, "MY_TOKEN": TOKEN}
        recorded = _runner(tmp_path, env, *args, "--record", "once")
        assert len(fake.received) == 4, recorded.stdout + recorded.stderr
        assert TOKEN in fake.received[-1].body["instructions"]  # the upstream got the real value
    assert recorded.returncode == 1, recorded.stderr
    console = recorded.stdout + recorded.stderr
    assert "never said" in console and "<MY_TOKEN>" in console  # the failing check quoted the reply
    for folder in ("out", "reports", "cassettes"):
        assert (tmp_path / folder).is_dir()
    assert leaks(TOKEN, tmp_path / "out", tmp_path / "reports", tmp_path / "cassettes", console) == []
    assert leaks(KEY, tmp_path, console) == []
    written = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((tmp_path / "out").rglob("*.json"))]
    assert len(written) == 2
    for transcript in written:
        turn = transcript["turns"][0]
        assert [(c["type"], c["passed"]) for c in turn["checks"] if not c["implicit"]] == \
            [("jinja", True), ("contains", False)]  # judged on the real reply
        assert transcript["assistant"]["instructions"] == "Never repeat <MY_TOKEN>."
        assert turn["user"] == "My token is <MY_TOKEN>" and "Never repeat <MY_TOKEN>." in turn["reply"]
        assert turn["tool_calls"][0]["arguments"] == {"ref": "My token is <MY_TOKEN>"}
    assert "<MY_TOKEN>" in "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "cassettes").rglob("*.yaml"))
    # the upstream is gone: the cassettes answer, each request matching with the value put back as JSON needs it
    replayed = _runner(tmp_path, {**env, "CI": "true"}, *args)
    assert replayed.returncode == 1 and "replay:" not in replayed.stdout + replayed.stderr, replayed.stderr
    again = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((tmp_path / "out").rglob("*.json"))]
    assert [t["turns"][0]["reply"] for t in again] == [t["turns"][0]["reply"] for t in written]
    assert leaks(TOKEN, tmp_path / "out", tmp_path / "reports", replayed.stdout + replayed.stderr) == []


def _echo_authorization(fake: FakeUpstream, chat: bool = False, also: str = "") -> list[Any]:
    """Upstream answers quoting the Authorization header they received: in a tool call's arguments, then
    in the reply text (with `also`)."""
    def call(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        seen = {"auth": fake.received[-1].headers["authorization"]}
        return 200, (chat_body(calls=[("lookup", seen)]) if chat else response_body(calls=[("lookup", seen)])), {}

    def reply(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        said = f"you sent {fake.received[-1].headers['authorization']!r} ({also})"
        return 200, (chat_body(text=said) if chat else response_body(text=said)), {}

    return [call, reply]


def test_an_upstream_quoting_the_key_back_never_reaches_the_embedded_thread(write_spec) -> None:  # type: ignore[no-untyped-def]
    """(2) Through the embedded backend: the executor stores the reply and the call with the key replaced,
    so the thread read back through the SDK, and the transcript built from it, never hold it."""
    spec = load_spec(write_spec(ECHOED.format(model="gpt-test")))
    with fake_upstream() as fake:
        fake.queue("/responses", *_echo_authorization(fake))
        live = LiveSettings(openai=UpstreamConfig(base_url=fake.url, api_key=KEY))

        async def go() -> tuple[Any, list[str]]:
            client = embedded_client(Backend(BackendSettings(live=live)))
            transcript = await run_conversation(spec, client, BackendTarget(spec.backend), AssistantPool(client),
                                                EngineOptions(timeout=30))
            threads = client.beta.threads
            messages = await threads.messages.list(thread_id=transcript.thread_id)
            steps = await threads.runs.steps.list(run_id=transcript.turns[0].run_id, thread_id=transcript.thread_id)
            await client.close()
            return transcript, [m.model_dump_json() for m in messages.data] + [s.model_dump_json() for s in steps.data]

        transcript, thread = run_async(go())
        assert fake.received[0].headers["authorization"] == f"Bearer {KEY}"
    turn = transcript.turns[0]
    assert turn.tool_calls[0].arguments == {"auth": "Bearer <OPENAI_API_KEY>"}
    assert "you sent 'Bearer <OPENAI_API_KEY>'" in turn.reply
    assert leaks(KEY, json.dumps(transcript.to_dict()), *thread) == []
    assert "<OPENAI_API_KEY>" in "".join(thread)


def test_an_upstream_quoting_the_key_back_is_nowhere_in_a_runs_outputs(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """(2) The same through `runner run` on the `chat` provider, recorded: transcripts, reports, console and
    the cassette hold `<RUNNER_CHAT_API_KEY>`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chatty.yaml").write_text(ECHOED.format(model="chat/m"), encoding="utf-8")
    with fake_upstream() as fake:
        fake.queue("/chat/completions", *_echo_authorization(fake, chat=True))
        env = {"RUNNER_CHAT_BASE_URL": fake.url, "RUNNER_CHAT_API_KEY": CHAT_KEY, "CI": "", "OPENAI_API_KEY": "",
               "OPENAI_BASE_URL": "", "RUNNER_BASE_URL": ""}
        result = CliRunner().invoke(cli, ["run", "chatty.yaml", "--record", "once", "--junit", "junit.xml",
                                          "--summary", "summary.json", "--no-env-file"], env=env)
        assert fake.received[0].headers["authorization"] == f"Bearer {CHAT_KEY}"
    assert result.exit_code == 1, result.output
    assert "<RUNNER_CHAT_API_KEY>" in result.output
    assert leaks(CHAT_KEY, tmp_path, result.output) == []
    assert "<RUNNER_CHAT_API_KEY>" in (tmp_path / "cassettes" / "chatty.yaml").read_text(encoding="utf-8")


def _wait(threads: Any, thread_id: str, run_id: str) -> Any:
    deadline = time.monotonic() + 30
    while True:
        run = threads.runs.retrieve(run_id, thread_id=thread_id)
        if run.status not in ("queued", "in_progress") or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def test_runner_serve_stores_logs_and_serves_no_key_an_upstream_quotes_back(tmp_path: Path) -> None:
    """(2, 3) Through `runner serve`: what the SDK reads back, the SQLite file and the server's log hold
    neither the provider's key, nor the server's own, nor a value its env file loaded, even when an upstream
    error quotes the key."""
    from openai import OpenAI

    with fake_upstream() as fake:
        fake.queue("/responses", *_echo_authorization(fake, also=DOTENV))
        fake.queue("/responses", lambda body: (400, error_body(
            f"bad request from {fake.received[-1].headers['authorization']}"), {}))
        env = clean_env(OPENAI_API_KEY=KEY, OPENAI_BASE_URL=fake.url, SERVE_KEY=SERVE_KEY)
        (tmp_path / "serve.env").write_text(f"UPSTREAM_TOKEN={DOTENV}\n", encoding="utf-8")
        with serving(tmp_path, "--api-key-env", "SERVE_KEY", "--log-level", "debug", "--env-file", "serve.env",
                     env=env) as server:
            client = OpenAI(base_url=server.url, api_key=SERVE_KEY, max_retries=0)
            threads = client.beta.threads
            assistant = client.beta.assistants.create(model="gpt-test", tools=[{"type": "function", "function": {
                "name": "lookup", "parameters": {"type": "object", "properties": {}}}}])
            run = threads.create_and_run(assistant_id=assistant.id, thread={"messages": [{"role": "user",
                                                                                          "content": "hi"}]})
            run = _wait(threads, run.thread_id, run.id)
            assert run.status == "requires_action"
            call = run.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
            assert json.loads(call.function.arguments) == {"auth": "Bearer <OPENAI_API_KEY>"}
            threads.runs.submit_tool_outputs(run.id, thread_id=run.thread_id,
                                             tool_outputs=[{"tool_call_id": call.id, "output": "ok"}])
            assert _wait(threads, run.thread_id, run.id).status == "completed"
            failed = threads.runs.create(thread_id=run.thread_id, assistant_id=assistant.id)
            failed = _wait(threads, run.thread_id, failed.id)
            assert failed.status == "failed" and "<OPENAI_API_KEY>" in failed.last_error.message  # type: ignore[union-attr]
            served = [m.model_dump_json() for m in threads.messages.list(thread_id=run.thread_id).data]
            served += [s.model_dump_json() for r in (run, failed)
                       for s in threads.runs.steps.list(run_id=r.id, thread_id=run.thread_id).data]
            served.append(failed.model_dump_json())
            assert "you sent 'Bearer <OPENAI_API_KEY>' (<UPSTREAM_TOKEN>)" in "".join(served)
            client.close()
            log = server.stop() + server.stdout
        assert len(fake.received) == 3
    assert "POST /v1/threads/runs" in log  # the access log was on
    database = [p for p in tmp_path.iterdir() if p.name.startswith("backend.sqlite3") and p.is_file()]
    assert database and b"<OPENAI_API_KEY>" in b"".join(p.read_bytes() for p in database)
    for secret in (KEY, SERVE_KEY, DOTENV):
        assert leaks(secret, *database, log, *served) == [], secret


def test_env_file_values_are_nowhere_in_what_a_run_writes_or_prints(tmp_path: Path) -> None:
    """(3) A value loaded from an env file, used in a prompt through --var, in two processes."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "secretive.yaml").write_text(SPEC.format(model="echo"), encoding="utf-8")
    (tmp_path / "ci.env").write_text(f"FROM_DOTENV={DOTENV}\n", encoding="utf-8")
    result = _runner(tmp_path, {}, "run", "specs", "--env-file", "ci.env", "--var", f"token={DOTENV}", "-o", "out",
                     "--junit", "reports/junit.xml", "--summary", "reports/summary.json", "--json", "--repeat", "2",
                     "--processes", "2", "-j", "2")
    assert result.returncode == 1, result.stderr
    console = result.stdout + result.stderr
    assert "<FROM_DOTENV>" in console
    assert leaks(DOTENV, tmp_path / "out", tmp_path / "reports", console) == []
    transcript = json.loads(next((tmp_path / "out").rglob("*.json")).read_text(encoding="utf-8"))
    assert transcript["turns"][0]["reply"] == "My token is <FROM_DOTENV>"  # echo repeats the user's message
    assert [(c["type"], c["passed"]) for c in transcript["turns"][0]["checks"] if not c["implicit"]] == \
        [("jinja", True), ("contains", False)]


def test_an_upstream_quoting_the_key_back_never_reaches_a_stored_response_or_conversation() -> None:
    """(2) The Responses API on the same providers: the function call and the reply are stored, and streamed,
    with the key replaced."""
    with fake_upstream() as fake:
        fake.queue("/responses", *_echo_authorization(fake))
        live = LiveSettings(openai=UpstreamConfig(base_url=fake.url, api_key=KEY))
        lookup = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}

        async def go() -> list[str]:
            client = embedded_client(Backend(BackendSettings(live=live)))
            conv = await client.conversations.create()
            first = await client.responses.create(model="gpt-test", input="hi", tools=[lookup],  # type: ignore[list-item]
                                                  conversation=conv.id)
            call = first.output[0]
            chunks = [e.model_dump_json() async for e in await client.responses.create(
                model="gpt-test", tools=[lookup], conversation=conv.id, stream=True,  # type: ignore[list-item]
                input=[{"type": "function_call_output", "call_id": call.call_id, "output": "ok"}])]  # type: ignore[union-attr]
            items = await client.conversations.items.list(conv.id)
            stored = await client.responses.retrieve(first.id)
            await client.close()
            return [first.model_dump_json(), stored.model_dump_json(), items.model_dump_json(), *chunks]

        seen = run_async(go())
        assert fake.received[0].headers["authorization"] == f"Bearer {KEY}"
    assert leaks(KEY, *seen) == []
    assert "Bearer <OPENAI_API_KEY>" in seen[0] and "you sent 'Bearer <OPENAI_API_KEY>'" in seen[2]
