"""One conversation through the Responses pipeline of the official SDK, OpenAI's own path off the Assistants API.

    knowledge files (the batch's vector store; a turn's attachments in the conversation's own) -> conversation
    (with the assistant's metadata; none on a server without the Conversations API, where each response carries
    the conversation so far) -> per turn: responses.create (streamed, or plain when the backend does not stream
    or --poll says so) with the assistant's model, instructions and tools (functions, file_search over the
    stores, code_interpreter in an auto container), the turn's user text as input -> function calls answered
    with function_call_output items until the model answers with a message -> the built-in calls' records from
    the items -> transcript

The transcript has the Assistants pipeline's format (the conversation's id where a thread's would be, the last
response's where a run's would be), so the checks, the writers, JUnit and `runner diff` need no special case.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from runner.engine.code import code_runs_in_items, produced, reply_files_in_items
from runner.engine.conversation import (
    EngineOptions,
    describe_error,
    ends_conversation,
    knowledge_error,
    refuses_streaming,
    report_mismatches,
    sse_events,
)
from runner.engine.knowledge import Knowledge, KnowledgeError, Store, Uploaded
from runner.engine.outputs import OutputFetcher
from runner.engine.response_data import MalformedResponse, message_text, response_data
from runner.engine.retrieval import citations_in_items, names_found, searches_in_items
from runner.engine.tools import ToolCallError, answer_calls, parse_arguments
from runner.report.transcript import ToolCallRecord, Transcript, TurnRecord
from runner.spec.model import BUILTIN_TOOLS, BuiltinTool, KnowledgeFile, Spec, Turn

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from runner.engine.backend import BackendTarget
    from runner.record.cassettes import CassetteSession

PIPELINES = ("assistants", "responses")
INCLUDE = {"file_search": "file_search_call.results", "code_interpreter": "code_interpreter_call.outputs"}
MAX_CALL_ROUNDS = 20  # responses in one turn that only call functions: past this the turn fails, saying so
# the events that end a response's stream, each carrying the finished response
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
# the key of the backend session's shared streaming state: a backend may stream runs and refuse to stream
# responses (or the other way round), so each pipeline remembers its own refusal
STREAMING_KEY = "responses"
CONVERSATIONS_KEY = "conversations"  # False once the backend has answered that it has no Conversations API


class StreamFailed(Exception):
    """A response's event stream reported an error or ended without its end: the turn fails with this message."""


def pipeline_problems(spec: Spec) -> list[str]:
    """What the spec asks that the Responses pipeline cannot express, one line each, naming the spec and field."""
    if spec.assistant is None:
        return [f"{spec.file}: assistant_id: an existing assistant has no Responses equivalent; declare the "
                "assistant inline to run this spec with --pipeline responses"]
    return []


def _builtin_types(spec: Spec) -> set[str]:
    assert spec.assistant is not None
    return {tool.type for tool in spec.assistant.tools if isinstance(tool, BuiltinTool)}


def _tools(spec: Spec, files: _Files) -> list[dict[str, Any]]:
    """The assistant's tools in the Responses API's flat form: its functions, file_search over the conversation's
    vector stores, code_interpreter in an `auto` container with the conversation's files."""
    from runner.server.providers.openai_responses import responses_tools

    assert spec.assistant is not None
    tools = responses_tools([tool.to_api() for tool in spec.assistant.tools if not isinstance(tool, BuiltinTool)])
    for tool in spec.assistant.tools:
        if not isinstance(tool, BuiltinTool):
            continue
        if tool.type == "file_search":
            options = dict(tool.options or {})
            ranking = dict(options.pop("ranking_options", None) or {})
            if ranking.get("ranker") not in (None, "auto"):  # the Assistants API's rankers are not Responses'
                ranking.pop("ranker")
            tools.append({"type": "file_search", "vector_store_ids": files.store_ids(), **options,
                          **({"ranking_options": ranking} if ranking else {})})
        else:
            tools.append({"type": "code_interpreter", "container": {"type": "auto", "file_ids": files.code_file_ids}})
    return tools


class _Files:
    """A conversation's knowledge files on the backend: the batch's vector store of the spec's files, the
    conversation's own of its turns' attachments, and the code interpreter's files (the spec's, then the
    attachments, as a thread's tool_resources would gather them)."""

    def __init__(self, spec: Spec, knowledge: Knowledge) -> None:
        self.knowledge = knowledge
        builtins = _builtin_types(spec)
        self.tools = [tool for tool in BUILTIN_TOOLS if tool in builtins] or ["file_search"]
        self.shared: Store | None = None
        self.own: Store | None = None
        self.code_file_ids: list[str] = []
        self.names: dict[str, str] = {}  # file id -> name, for citations

    def store_ids(self) -> list[str]:
        return [store.id for store in (self.shared, self.own) if store is not None]

    async def add(self, files: tuple[KnowledgeFile, ...], *, attached: bool) -> list[Uploaded]:
        """Upload `files` for the tools that use them: the spec's (`attached=False`) into the batch's store, a
        turn's into the conversation's own; KnowledgeError when they cannot be uploaded or indexed."""
        if "file_search" in self.tools:
            if attached:
                self.own = await self.knowledge.extend(self.own, files)
                uploaded = [u for u in self.own.files if u.path in {f.path for f in files}]
            else:
                self.shared = await self.knowledge.store(files)
                uploaded = list(self.shared.files)
        else:
            uploaded = list(await asyncio.gather(*(self.knowledge.upload(f) for f in files)))
        if "code_interpreter" in self.tools:
            self.code_file_ids = list(dict.fromkeys([*self.code_file_ids, *(u.file_id for u in uploaded)]))
        self.names.update({u.file_id: u.name for u in uploaded})
        return uploaded


def _response_params(spec: Spec, turn: Turn, files: _Files) -> dict[str, Any]:
    """responses.create's parameters for a turn: the assistant's settings, overridden by the turn's `run:`."""
    from runner.server.providers.openai_responses import responses_text_format, responses_tool_choice

    assistant = spec.assistant
    assert assistant is not None
    run = turn.run.to_params()
    params: dict[str, Any] = {"model": run.get("model") or assistant.model}
    instructions = turn.instructions if turn.instructions is not None else assistant.instructions
    if turn.additional_instructions is not None:  # a run's additional_instructions follow its instructions
        instructions = "\n\n".join(filter(None, (instructions, turn.additional_instructions)))
    if instructions:
        params["instructions"] = instructions
    tools = _tools(spec, files)
    if tools:
        params["tools"] = tools
        if "parallel_tool_calls" in run:
            params["parallel_tool_calls"] = run["parallel_tool_calls"]
    builtins = _builtin_types(spec)
    if builtins:  # what the transcript shows of the built-in calls: the results found, the outputs printed
        params["include"] = [INCLUDE[tool] for tool in sorted(builtins)]
    if "tool_choice" in run:
        params["tool_choice"] = responses_tool_choice(run["tool_choice"])
    for key in ("temperature", "top_p"):
        value = run.get(key, getattr(assistant, key))
        if value is not None:
            params[key] = value
    if "max_completion_tokens" in run:
        params["max_output_tokens"] = run["max_completion_tokens"]
    text_format = responses_text_format(run.get("response_format", assistant.response_format))
    if text_format is not None:
        params["text"] = {"format": text_format}
    return params


class _Conversation:
    def __init__(self, spec: Spec, client: AsyncOpenAI, target: BackendTarget, options: EngineOptions,
                 knowledge: Knowledge, streaming: dict[str, bool]) -> None:
        from runner.engine.backend import redactor_for

        self.spec = spec
        self.client = client
        self.target = target
        self.options = options
        self.streaming = streaming  # one per backend session, shared: {"responses": False} once it refused
        self.redact = redactor_for(target, options.secret_env)
        self.conversation_id: str | None = None  # None on a server without the Conversations API
        self.history: list[dict[str, Any]] = []  # the items so far, sent whole where there is no conversation
        self.files = _Files(spec, knowledge)
        self.builtins = _builtin_types(spec)
        self.outputs = OutputFetcher(client, lambda exc: describe_error(exc, self.redact))

    async def run(self, cassette: CassetteSession | None) -> Transcript:
        spec = self.spec
        assert spec.assistant is not None
        transcript = Transcript(
            spec_file=spec.file, name=spec.label, case=spec.case, description=spec.description, tags=list(spec.tags),
            backend=self.target.describe(), model=spec.assistant.model, assistant=spec.assistant.to_create_params(),
            started_at=time.time(), pipeline="responses")
        start = time.perf_counter()
        records = [TurnRecord(index=t.index, user=t.user) for t in spec.turns]
        transcript.turns = records
        try:
            await self._converse(transcript, records, cassette)
        finally:
            transcript.duration_ms = (time.perf_counter() - start) * 1000
        return transcript

    async def _converse(self, transcript: Transcript, records: list[TurnRecord],
                        cassette: CassetteSession | None) -> None:
        assert self.spec.assistant is not None
        stage = "creating the conversation"
        try:
            async with asyncio.timeout(self.options.timeout):
                if self.spec.files:
                    stage = ("indexing the knowledge files" if "file_search" in self.files.tools
                             else "uploading the files")
                    transcript.files = [u.record() for u in await self.files.add(self.spec.files, attached=False)]
                    transcript.vector_store_id = self.files.shared.id if self.files.shared else None
                    stage = "creating the conversation"
                if self.streaming.get(CONVERSATIONS_KEY, True):
                    metadata = self.spec.assistant.metadata or {}
                    try:
                        conversation = await self.client.conversations.create(
                            metadata=dict(metadata) or None)  # type: ignore[arg-type]
                        self.conversation_id = conversation.id
                    except Exception as exc:
                        if not _lacks_conversations(exc):
                            raise
                        self.streaming[CONVERSATIONS_KEY] = False  # a Responses server without Conversations
        except TimeoutError:
            transcript.error = f"{stage}: the backend did not answer within {self.options.timeout:g} s (--timeout)"
        except KnowledgeError as exc:
            transcript.error = knowledge_error(exc, self.redact)
        except Exception as exc:
            transcript.error = f"{stage}: {describe_error(exc, self.redact)}"
        if transcript.error is not None:
            for record in records:
                record.skipped = True
            return
        transcript.thread_id = self.conversation_id
        try:
            for turn, record in zip(self.spec.turns, records, strict=True):
                if cassette is not None:
                    cassette.turn = turn.index
                await self._turn(turn, record)
                if ends_conversation(transcript, records, turn, record):
                    break
        finally:
            if not self.target.embedded and not self.options.keep:
                if self.conversation_id is not None:
                    with contextlib.suppress(Exception):  # best effort: the verdict does not depend on cleanup
                        await self.client.conversations.delete(self.conversation_id)
                for file_id in self.outputs.fetched:  # the files the code made: deleting the conversation leaves them
                    with contextlib.suppress(Exception):
                        await self.client.files.delete(file_id)

    async def _turn(self, turn: Turn, record: TurnRecord) -> None:
        start = time.perf_counter()
        response: Any = None
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        output: list[dict[str, Any]] = []  # every item of the turn's responses, as JSON data
        try:
            async with asyncio.timeout(self.options.timeout):
                if turn.attachments:  # as a thread's message attachments: its store, its code files
                    uploaded = await self.files.add(turn.attachments, attached=True)
                    record.attachments = [u.record() for u in uploaded]
                params = _response_params(self.spec, turn, self.files)
                start = time.perf_counter()
                given: Any = turn.user
                for _ in range(MAX_CALL_ROUNDS):
                    response = await self._create(params, given)
                    output += response["output"]
                    if response.get("usage") is not None:
                        usage["prompt_tokens"] += response["usage"]["input_tokens"]
                        usage["completion_tokens"] += response["usage"]["output_tokens"]
                    calls = [item for item in response["output"] if item["type"] == "function_call"]
                    if not calls or response["status"] != "completed":
                        break
                    given = await self._answer(calls, turn, record)
                else:
                    raise ToolCallError(f"the model called functions in {MAX_CALL_ROUNDS} responses in a row "
                                        "without answering")
        except TimeoutError:
            record.status = "timeout"
            record.error = f"the backend did not finish within {self.options.timeout:g} s (--timeout)"
        except (ToolCallError, StreamFailed, MalformedResponse) as exc:
            record.error = self.redact.text(str(exc))
        except KnowledgeError as exc:
            record.error = knowledge_error(exc, self.redact)
        except Exception as exc:
            record.error = describe_error(exc, self.redact)
        record.latency_ms = (time.perf_counter() - start) * 1000
        if response is None:
            return
        await self._tool_records(record, output)
        record.run_id = response["id"]
        if record.status is None:
            record.status = response["status"]
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        record.usage = usage
        if response.get("error") is not None:
            record.last_error = {"code": response["error"].get("code"), "message": response["error"]["message"]}
        if response.get("incomplete_details") is not None:
            record.incomplete_details = response["incomplete_details"]
        record.messages = [{"id": item.get("id"), "text": message_text(item)}
                           for item in response["output"] if item["type"] == "message"]
        record.reply = "\n".join(m["text"] for m in record.messages)

    async def _tool_records(self, record: TurnRecord, output: list[dict[str, Any]]) -> None:
        """What the turn's built-in tools did, from its responses' items, in the records a run's steps give: its
        searches, its code runs, the files its reply links (fetched) and the images its code showed (inline)."""
        if "file_search" in self.builtins:
            record.searches = searches_in_items(output)
        record.citations = citations_in_items(output, {**self.files.names, **names_found(record.searches)})
        if "code_interpreter" not in self.builtins:
            return
        record.code_runs, images = code_runs_in_items(output)
        record.files = reply_files_in_items(output)  # the Responses API shows figures in the code calls only
        kept = [self.outputs.keep(image_id, f"{image_id.rsplit('/', 1)[-1]}.png", "image", data)
                for image_id, data in images]
        record.outputs = kept + await self.outputs.fetch(produced([], [], record.files))

    async def _create(self, params: dict[str, Any], given: Any) -> dict[str, Any]:
        """One response to `given` in the conversation, or without one (a server lacking the Conversations API)
        with the conversation so far as its input; streamed when the target streams and has not refused to,
        else plain: a backend refusing `stream` (a 400 naming it) is answered plainly, and asked plainly after."""
        if self.conversation_id is not None:
            context: dict[str, Any] = {"input": given, "conversation": self.conversation_id}
        else:  # stateless, as the API documents it: the whole history each time, nothing stored
            if isinstance(given, str):
                given = [{"type": "message", "role": "user", "content": given}]
            context = {"input": [*self.history, *given], "store": False}
        response = None
        if self.target.config.stream and self.streaming.get(STREAMING_KEY, True):
            try:
                response = await self._create_streamed({**params, **context})
            except Exception as exc:
                if not refuses_streaming(exc):
                    raise
                self.streaming[STREAMING_KEY] = False  # this backend does not stream responses: ask plainly
        if response is None:
            response = await self.client.responses.create(**params, **context)
        data = response_data(response)
        if self.conversation_id is None and data["status"] != "failed":  # a failed response adds nothing
            self.history = [*context["input"], *({k: v for k, v in item.items() if v is not None}
                                                 for item in data["output"])]
        return data

    async def _create_streamed(self, params: dict[str, Any]) -> Any:
        """A response read from its server-sent events: the finished response its end event carries, as JSON data
        (checked by response_data, which takes what a transcript needs: llama.cpp's lacks fields the SDK's type
        requires).

        The events are read raw and only the end's response is parsed (as the Assistants pipeline does with a
        run's events): validating each delta against the SDK's event union would cost more than the turn.
        """
        create = self.client.responses.with_streaming_response.create
        try:
            async with create(**params, stream=True) as raw:
                async for kind, data in sse_events(raw):
                    if kind in TERMINAL_EVENTS:
                        return _ended(kind, data)
                    if kind == "error":
                        raise StreamFailed(f"the backend's event stream reported an error: {_stream_error(data)}")
        except UnicodeDecodeError:
            raise StreamFailed("the backend's event stream is not UTF-8 text") from None
        raise StreamFailed("the backend's event stream ended before the response did (no response.completed, "
                           "response.incomplete or response.failed event)")

    async def _answer(self, calls: list[dict[str, Any]], turn: Turn, record: TurnRecord) -> list[dict[str, Any]]:
        """The function_call_output items answering the calls (concurrently), recorded on the turn."""
        entries = [ToolCallRecord(id=call["call_id"], name=call["name"], arguments=parse_arguments(call["arguments"]))
                   for call in calls]
        record.tool_calls.extend(entries)
        await answer_calls(entries, turn, self.spec)
        return [{"type": "function_call_output", "call_id": e.id, "output": e.output} for e in entries]


def _ended(kind: str, data: str) -> Any:
    """The response a stream's end event carries (StreamFailed when the event holds none)."""
    try:
        event = json.loads(data)
    except ValueError:
        raise StreamFailed(f"the backend's {kind} event is not JSON: {data[:200]!r}") from None
    if not isinstance(event, dict) or not isinstance(event.get("response"), dict):
        raise StreamFailed(f"the backend's {kind} event carries no response object")
    return event["response"]


def _lacks_conversations(exc: Exception) -> bool:
    """Whether `conversations.create` failed because the server has no such route (llama.cpp's answers 404)."""
    from openai import APIStatusError

    return isinstance(exc, APIStatusError) and exc.status_code in (404, 405, 501)


def _stream_error(data: str) -> str:
    """An `error` event's message (and code), or its raw data, clipped, when it is not the documented shape."""
    try:
        event = json.loads(data)
    except ValueError:
        return data[:500]
    error = event.get("error", event) if isinstance(event, dict) else None  # flat, or nested as some servers do
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return data[:500]
    code = error.get("code")
    return f"{error['message'][:500]} ({code})" if code else error["message"][:500]


async def run_responses_conversation(spec: Spec, client: AsyncOpenAI, target: BackendTarget, pool: Any,
                                     options: EngineOptions, streaming: dict[str, bool] | None = None,
                                     cassette: CassetteSession | None = None) -> Transcript:
    """Run one conversation through the Responses API and return its transcript (checks not yet judged); takes
    the Assistants pipeline's arguments, of which it needs the pool's knowledge files; `streaming` is the backend
    session's shared state, where a refusal to stream is remembered."""
    conversation = _Conversation(spec, client, target, options, pool.knowledge,
                                 streaming if streaming is not None else {})
    transcript = await conversation.run(cassette)
    if cassette is not None:
        report_mismatches(transcript, cassette)
    return transcript
