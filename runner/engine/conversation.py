"""One conversation through the Assistants pipeline of the official SDK.

    knowledge files (uploaded, and indexed for file_search, once per batch) -> assistant (shared per config) ->
    thread with the first message -> per turn: message (with its attachments), run (streamed, or polled honouring
    openai-poll-after-ms), tool outputs, reply, the run's file searches and code runs, the files its code
    produced -> transcript

The engine records what happened; judging it is the checks' job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.engine.backend import BackendTarget, redactor_for
from runner.engine.calls import idempotent, poll
from runner.engine.code import code_runs_in, produced, reply_files, reply_images
from runner.engine.knowledge import Knowledge, KnowledgeError
from runner.engine.once import Once
from runner.engine.outputs import OutputFetcher
from runner.engine.retrieval import citations_in, names_found, searches_in
from runner.engine.steps import run_steps
from runner.engine.tools import ToolCallError, answer_calls, parse_arguments
from runner.redact import Redactor
from runner.report.transcript import ToolCallRecord, Transcript, TurnRecord
from runner.sdk import threads as sdk_threads
from runner.spec.model import BUILTIN_TOOLS, AssistantConfig, BuiltinTool, Spec, Turn

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from runner.record.cassettes import CassetteSession

# the SDK warns on every Assistants call since the hosted API's sunset; this backend is the point
warnings.filterwarnings("ignore", message="The Assistants API is deprecated", category=DeprecationWarning)
warnings.filterwarnings("ignore", message="deprecated", category=DeprecationWarning)

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "expired", "incomplete"})
STOPPED_STATUSES = TERMINAL_STATUSES | {"requires_action"}  # the run waits for nothing but us
TIMEOUT_STATUS = "timeout"


@dataclass(frozen=True)
class EngineOptions:
    """How conversations run."""

    timeout: float = 60.0
    keep: bool = False
    record_mode: str | None = None  # none | once | new_episodes | all; None: no cassettes
    # a remote endpoint's traffic goes to cassettes only when a mode was asked for (`--record ...`): by
    # default the runner talks to the endpoint, which is what pointing it at one means
    remote_record_mode: str | None = None
    cassettes: Path = Path("cassettes")
    secret_env: tuple[str, ...] = ()  # more variables whose values are secrets


class AssistantPool:
    """One assistant per distinct config (and knowledge files) on a backend, shared by the conversations that
    use it, with the batch's knowledge files on that backend."""

    def __init__(self, client: AsyncOpenAI) -> None:
        from runner.sdk import assistants

        self.assistants = assistants(client)
        self.knowledge = Knowledge(client)
        self._ids: Once[str] = Once()
        self._tools: dict[str, set[str]] = {}  # the tool types of the existing assistants found by id
        self.created: list[str] = []

    async def get(self, config: AssistantConfig, vector_store_id: str | None = None,
                  code_file_ids: tuple[str, ...] = ()) -> str:
        """The id of an assistant with this config searching this vector store (the batch's one for a set of
        files) and with these files for its code interpreter, creating it on first use."""
        key = config.key() if vector_store_id is None else f"{config.key()}\nvector store {vector_store_id}"
        if code_file_ids:
            key += "\ncode files " + " ".join(code_file_ids)
        return await self._ids.get(key, lambda: self._create(config, vector_store_id, code_file_ids))

    async def existing(self, assistant_id: str) -> str:
        """Check once that an assistant given by id exists on the backend; return its id."""
        return await self._ids.get("id:" + assistant_id, lambda: self._retrieve(assistant_id))

    def tool_types(self, assistant_id: str) -> set[str]:
        """The types of the tools of an existing assistant found with `existing` (`function`, `file_search`)."""
        return self._tools.get(assistant_id, set())

    async def _create(self, config: AssistantConfig, vector_store_id: str | None,
                      code_file_ids: tuple[str, ...]) -> str:
        params = config.to_create_params()
        resources: dict[str, Any] = {}
        if vector_store_id is not None:
            resources["file_search"] = {"vector_store_ids": [vector_store_id]}
        if code_file_ids:
            resources["code_interpreter"] = {"file_ids": list(code_file_ids)}
        if resources:
            params["tool_resources"] = resources
        assistant = await self.assistants.create(**params)
        self.created.append(assistant.id)
        return assistant.id

    async def _retrieve(self, assistant_id: str) -> str:
        assistant = await self.assistants.retrieve(assistant_id)
        self._tools[assistant.id] = {tool.type for tool in assistant.tools or []}
        return assistant.id

    async def delete_created(self) -> None:
        """Delete the assistants, vector stores and files this pool created (remote backends, unless --keep)."""
        for assistant_id in self.created:
            with contextlib.suppress(Exception):  # cleanup is best effort: the verdicts are already in
                await self.assistants.delete(assistant_id)
        self.created.clear()
        await self.knowledge.delete_created()


@dataclass
class _RunState:
    run: Any = None
    messages: list[Any] | None = None


class _Conversation:
    def __init__(self, spec: Spec, client: AsyncOpenAI, target: BackendTarget, pool: AssistantPool,
                 options: EngineOptions, streaming: dict[str, bool], cassette: CassetteSession | None) -> None:
        self.spec = spec
        self.client = client
        self.threads = sdk_threads(client)
        self.target = target
        self.pool = pool
        self.options = options
        self.streaming = streaming  # one per backend session, shared: {"stream": False} once it refused
        self.cassette = cassette
        self.thread_id: str | None = None  # the first turn's run creates the thread
        self.redact = redactor_for(target, options.secret_env)
        self.thread_resources: dict[str, Any] | None = None  # the spec's files, for an existing assistant
        self.file_names: dict[str, str] = {}  # file id -> name of the files uploaded, for citations
        self.outputs = OutputFetcher(client, lambda exc: describe_error(exc, self.redact))

    async def run(self) -> Transcript:
        spec = self.spec
        transcript = Transcript(
            spec_file=spec.file, name=spec.label, case=spec.case, description=spec.description,
        tags=list(spec.tags),
            backend=self.target.describe(), model=spec.assistant.model if spec.assistant else None,
            assistant=spec.assistant.to_create_params() if spec.assistant else None,
            assistant_id=spec.assistant_id, started_at=time.time(),
        )
        start = time.perf_counter()
        records = [TurnRecord(index=t.index, user=t.user) for t in spec.turns]
        transcript.turns = records
        try:
            await self._converse(transcript, records)
        finally:
            transcript.duration_ms = (time.perf_counter() - start) * 1000
        return transcript

    async def _converse(self, transcript: Transcript, records: list[TurnRecord]) -> None:
        spec = self.spec
        stage = ""
        try:
            async with asyncio.timeout(self.options.timeout):  # --timeout bounds every wait on the backend
                if spec.assistant is None and spec.assistant_id is not None:
                    # first: its tools say where the spec's files go
                    stage = f"finding assistant {spec.assistant_id}"
                    transcript.assistant_id = await self.pool.existing(spec.assistant_id)
                stage = ("indexing the knowledge files" if "file_search" in self._file_tools()
                         else "uploading the files")
                store_id, code_file_ids = await self._knowledge(transcript) if spec.files else (None, ())
                if spec.assistant is not None:
                    stage = "creating the assistant"
                    transcript.assistant_id = await self.pool.get(spec.assistant, store_id, code_file_ids)
        except TimeoutError:
            transcript.error = f"{stage}: the backend did not answer within {self.options.timeout:g} s (--timeout)"
            for record in records:
                record.skipped = True
            return
        except Exception as exc:
            transcript.error = (knowledge_error(exc, self.redact) if isinstance(exc, KnowledgeError)
                                else f"{stage}: {describe_error(exc, self.redact)}")
            for record in records:
                record.skipped = True
            return
        try:
            for turn, record in zip(spec.turns, records, strict=True):
                if self.cassette is not None:
                    self.cassette.turn = turn.index  # so a replay mismatch can name its turn
                await self._turn(turn, record, transcript.assistant_id or "")
                transcript.thread_id = self.thread_id
                if ends_conversation(transcript, records, turn, record):
                    break
        finally:
            if self.thread_id is not None and not self.target.embedded and not self.options.keep:
                with contextlib.suppress(Exception):  # best effort: the verdict does not depend on cleanup
                    await self._delete_thread_stores()
                    await self.threads.delete(self.thread_id)
            if not self.target.embedded and not self.options.keep:
                for file_id in self.outputs.fetched:  # the files the code made: deleting the thread leaves them
                    with contextlib.suppress(Exception):
                        await self.client.files.delete(file_id)

    def _builtins(self) -> set[str]:
        """The built-in tools of the conversation's assistant: the spec's, or an existing assistant's."""
        spec = self.spec
        if spec.assistant is not None:
            return {tool.type for tool in spec.assistant.tools if isinstance(tool, BuiltinTool)}
        return self.pool.tool_types(spec.assistant_id or "") & set(BUILTIN_TOOLS)

    def _file_tools(self) -> list[str]:
        """The built-in tools the spec's files and attachments go to: those of the assistant's that use files, or
        file_search for an existing assistant that has neither (it may gain one; files are for searching first)."""
        return [tool for tool in BUILTIN_TOOLS if tool in self._builtins()] or ["file_search"]

    async def _knowledge(self, transcript: Transcript) -> tuple[str | None, tuple[str, ...]]:
        """The spec's files on the backend, for the tools that use them: indexed in a vector store for file_search
        (the assistant's, shared by the batch, or for an existing assistant the thread's, its own when turns
        attach files, which would join it), and as they are for code_interpreter. Returns the store's id and the
        code interpreter's file ids."""
        spec = self.spec
        tools = self._file_tools()
        store_id: str | None = None
        if "file_search" in tools:
            own = spec.assistant is None and any(turn.attachments for turn in spec.turns)
            store = await self.pool.knowledge.store(spec.files, shared=not own)
            store_id, uploaded = store.id, store.files
        else:
            uploaded = tuple(await asyncio.gather(*(self.pool.knowledge.upload(f) for f in spec.files)))
        code_file_ids = tuple(u.file_id for u in uploaded) if "code_interpreter" in tools else ()
        if spec.assistant is None:
            resources: dict[str, Any] = {}
            if store_id is not None:
                resources["file_search"] = {"vector_store_ids": [store_id]}
            if code_file_ids:
                resources["code_interpreter"] = {"file_ids": list(code_file_ids)}
            self.thread_resources = resources
        transcript.files = [u.record() for u in uploaded]
        transcript.vector_store_id = store_id
        self.file_names.update({u.file_id: u.name for u in uploaded})
        return store_id, code_file_ids

    async def _delete_thread_stores(self) -> None:
        """Delete the vector store the backend made for the thread's attachments: deleting the thread leaves it."""
        if self.thread_id is None or not any(turn.attachments for turn in self.spec.turns):
            return
        thread = await self.threads.retrieve(self.thread_id)
        search = thread.tool_resources.file_search if thread.tool_resources else None
        for store_id in (search.vector_store_ids or []) if search else []:
            if not self.pool.knowledge.made(store_id):  # the batch's own go at its end
                await self.client.vector_stores.delete(store_id)

    def _searches_wanted(self, turn: Turn) -> bool:
        """Whether the turn's run may have searched (only then are its steps listed for searches)."""
        if "file_search" in self._builtins():
            return True
        # an existing assistant whose tools do not say: the files went to file_search
        return self.spec.assistant is None and bool(turn.attachments or self.spec.files)

    def _code_wanted(self) -> bool:
        """Whether the conversation's runs may have run code (only then are their steps listed for code runs)."""
        return "code_interpreter" in self._builtins()

    async def _user_message(self, turn: Turn, record: TurnRecord) -> dict[str, Any]:
        """The turn's user message, with its attachments uploaded (once per batch) for the tools that use files."""
        message: dict[str, Any] = {"role": "user", "content": turn.user}
        if turn.attachments:
            uploaded = await asyncio.gather(*(self.pool.knowledge.upload(f) for f in turn.attachments))
            record.attachments = [u.record() for u in uploaded]
            self.file_names.update({u.file_id: u.name for u in uploaded})
            tools = [{"type": tool} for tool in self._file_tools()]
            message["attachments"] = [{"file_id": u.file_id, "tools": tools} for u in uploaded]
        return message

    async def _tool_records(self, turn: Turn, record: TurnRecord, state: _RunState) -> None:
        """What the run's built-in tools did, for the transcript: its steps listed once (when it may have searched
        or run code) for its searches and code runs, then the files its code produced, fetched."""
        searching, coding = self._searches_wanted(turn), self._code_wanted()
        if searching or coding:
            what = " and ".join(w for w, on in (("file searches", searching), ("code runs", coding)) if on)
            try:
                steps = await run_steps(self.threads, state.run, search_content=searching)
            except Exception as exc:  # the checks on searches or code could not be judged: the turn says why
                raise KnowledgeError(f"listing the run's steps for its {what}", exc) from exc
            record.searches = searches_in(steps) if searching else []
            record.code_runs = code_runs_in(steps) if coding else []
        messages = state.messages or []
        record.images, record.files = reply_images(messages), reply_files(messages)
        made = produced(record.code_runs, record.images, record.files)
        if made:
            record.outputs = await self.outputs.fetch(made)

    async def _turn(self, turn: Turn, record: TurnRecord, assistant_id: str) -> None:
        # the turn's `run:` options override the assistant's settings for this run only
        options: dict[str, Any] = turn.run.to_params()
        if turn.instructions is not None:
            options["instructions"] = turn.instructions
        if turn.additional_instructions is not None:
            options["additional_instructions"] = turn.additional_instructions
        start = time.perf_counter()
        finished: float | None = None
        state = _RunState()
        try:
            async with asyncio.timeout(self.options.timeout):
                message = await self._user_message(turn, record)
                if self.thread_id is None and "additional_instructions" in options:
                    # create_and_run has no additional_instructions: make the thread first
                    self.thread_id = (await self.threads.create(**self._thread_params(), **idempotent())).id
                if self.thread_id is not None:
                    await self.threads.messages.create(thread_id=self.thread_id, **message, **idempotent())
            start = time.perf_counter()
            async with asyncio.timeout(self.options.timeout):
                await self._follow(turn, record, assistant_id, options, state, message)
                finished = time.perf_counter()
                if state.run is not None:
                    await self._tool_records(turn, record, state)
        except TimeoutError:
            record.status = TIMEOUT_STATUS
            record.error = f"the backend did not finish within {self.options.timeout:g} s (--timeout)"
            await self._cancel_quietly(state.run)
        except ToolCallError as exc:
            record.error = str(exc)
            await self._cancel_quietly(state.run)
            if state.run is not None:
                record.status = "cancelled"
        except KnowledgeError as exc:
            record.error = knowledge_error(exc, self.redact)
            await self._cancel_quietly(state.run)
        except Exception as exc:
            record.error = describe_error(exc, self.redact)
            await self._cancel_quietly(state.run)
        except asyncio.CancelledError:
            if not self.target.embedded:  # the batch was cancelled (Ctrl-C twice): leave no run going remotely
                await self._cancel_quietly(state.run)
            raise
        record.latency_ms = ((finished or time.perf_counter()) - start) * 1000
        run = state.run
        if run is not None:
            record.run_id = run.id
            if record.status is None:
                record.status = run.status
            record.last_error = run.last_error.model_dump() if run.last_error else None
            record.incomplete_details = run.incomplete_details.model_dump() if run.incomplete_details else None
            record.usage = run.usage.model_dump() if run.usage else None
        messages = state.messages or []
        record.messages = [{"id": m.id, "text": _message_text(m)} for m in messages]
        record.reply = "\n".join(m["text"] for m in record.messages)
        record.citations = citations_in(messages, {**self.file_names, **names_found(record.searches)})

    def _thread_params(self) -> dict[str, Any]:
        """What a new thread is made with besides its messages: the knowledge store, for an existing assistant."""
        return {"tool_resources": self.thread_resources} if self.thread_resources is not None else {}

    def _start_run(self, assistant_id: str, options: dict[str, Any], message: dict[str, Any], *,
                   stream: bool) -> Any:
        """Start the turn's run (a coroutine, or for `stream` the raw event stream's context manager); the
        first turn creates the thread with its message in the same call."""
        if self.thread_id is None:
            create_and_run = (self.threads.with_streaming_response.create_and_run if stream
                              else self.threads.create_and_run)
            return create_and_run(assistant_id=assistant_id, stream=stream, **options, **idempotent(),
                                  thread={"messages": [message], **self._thread_params()})
        create = self.threads.runs.with_streaming_response.create if stream else self.threads.runs.create
        return create(thread_id=self.thread_id, assistant_id=assistant_id, stream=stream, **options, **idempotent())

    async def _follow(self, turn: Turn, record: TurnRecord, assistant_id: str, options: dict[str, Any],
                      state: _RunState, message: dict[str, Any]) -> None:
        if self.target.config.stream and self.streaming.get("stream", True):
            try:
                await self._follow_stream(self._start_run(assistant_id, options, message, stream=True), turn,
                                          record, state)
                return
            except Exception as exc:
                if state.run is not None or not refuses_streaming(exc):
                    raise
                self.streaming["stream"] = False  # this backend does not stream: poll from now on
        run = await self._start_run(assistant_id, options, message, stream=False)
        self.thread_id = run.thread_id
        await self._follow_poll(run, turn, record, state)

    async def _follow_stream(self, stream: Any, turn: Turn, record: TurnRecord, state: _RunState) -> None:
        """Follow a run's server-sent events, resubmitting tool outputs until it stops for good.

        The events are read raw and only those the transcript needs (the run's, and finished messages) are
        parsed, each into its own SDK type: validating every event against the SDK's whole event union was
        the largest CPU cost of a conversation.
        """
        from openai.types.beta.threads import Message, Run

        state.messages = []
        while True:
            async with stream as response:
                async for kind, data in sse_events(response):
                    if kind in ("thread.message.completed", "thread.message.incomplete"):
                        state.messages.append(Message.model_validate(json.loads(data)))
                    elif kind.startswith("thread.run.") and not kind.startswith("thread.run.step."):
                        state.run = Run.model_validate(json.loads(data))
                        self.thread_id = state.run.thread_id  # known from the first event on
                    elif kind == "error":
                        raise RuntimeError(f"the backend's event stream reported an error: {data[:500]}")
            run = state.run
            if run is None:
                raise RuntimeError("the backend's event stream ended without any run event")
            if run.status != "requires_action":
                return
            outputs = await self._answer_calls(run, turn, record)
            stream = self.threads.runs.with_streaming_response.submit_tool_outputs(
                run_id=run.id, thread_id=run.thread_id, tool_outputs=outputs, stream=True, **idempotent())

    async def _follow_poll(self, run: Any, turn: Turn, record: TurnRecord, state: _RunState) -> None:
        state.run = run
        thread_id = run.thread_id
        while True:
            state.run = run = await self._poll(run)
            if run.status != "requires_action":
                break
            outputs = await self._answer_calls(run, turn, record)
            state.run = run = await self.threads.runs.submit_tool_outputs(
                run_id=run.id, thread_id=thread_id, tool_outputs=outputs, **idempotent())
        page = await self.threads.messages.list(thread_id=thread_id, run_id=run.id, order="asc", limit=100)
        state.messages = [m for m in page.data if m.role == "assistant"]

    async def _poll(self, run: Any) -> Any:
        """Retrieve the run until it stops (see runner.engine.calls.poll)."""
        return await poll(run, lambda: self.threads.runs.with_raw_response.retrieve(run.id, thread_id=run.thread_id),
                          lambda r: r.status in STOPPED_STATUSES)

    async def _answer_calls(self, run: Any, turn: Turn, record: TurnRecord) -> list[Any]:
        """Outputs for every call the run waits for; parallel calls are answered concurrently."""
        entries = [ToolCallRecord(id=c.id, name=c.function.name, arguments=parse_arguments(c.function.arguments))
                   for c in run.required_action.submit_tool_outputs.tool_calls]
        record.tool_calls.extend(entries)
        await answer_calls(entries, turn, self.spec)
        return [{"tool_call_id": e.id, "output": e.output} for e in entries]

    async def _cancel_quietly(self, run: Any) -> None:
        if run is not None and run.status in TERMINAL_STATUSES:
            return
        thread_id = run.thread_id if run is not None else self.thread_id
        if thread_id is None:  # not even the thread was created
            return
        try:
            async with asyncio.timeout(5):
                if run is None:  # the run was created but its id never reached us: take the newest
                    page = await self.threads.runs.list(thread_id=thread_id, limit=1, order="desc")
                    if not page.data or page.data[0].status in TERMINAL_STATUSES:
                        return
                    run = page.data[0]
                await self.threads.runs.cancel(run_id=run.id, thread_id=thread_id)
        except Exception:  # the turn already failed; a run we could not cancel expires on its own
            pass


async def sse_events(response: Any) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs of a server-sent event stream, until its `done` event or its end.

    Lines (ending in LF or CRLF) are cut from the body's bytes here: httpx2's text and line decoders cost
    more than the rest of the parsing.
    """
    event: str = ""
    data: list[str] = []
    pending = b""
    async for chunk in _with_final_newline(response.http_response.aiter_bytes()):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8")
            if line.endswith("\r"):
                line = line[:-1]
            if not line:
                if event or data:
                    if event == "done":
                        return
                    yield event or "message", "\n".join(data)
                event, data = "", []
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if (event or data) and event != "done":
        yield event or "message", "\n".join(data)


async def _with_final_newline(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield chunk
    yield b"\n"  # ends a last line that has no newline of its own


def _message_text(message: Any) -> str:
    return "".join(part.text.value for part in message.content if getattr(part, "type", None) == "text")


def refuses_streaming(exc: Exception) -> bool:
    """Whether a backend's error says it does not stream: a 400 whose param or message names `stream`."""
    from openai import BadRequestError

    return isinstance(exc, BadRequestError) and "stream" in (str(getattr(exc, "param", "")) + str(exc)).lower()


def ends_conversation(transcript: Transcript, records: list[TurnRecord], turn: Turn, record: TurnRecord) -> bool:
    """After a turn: its error becomes the conversation's, and when the turn did not end as it expected the later
    turns are skipped and True says to stop. A run that ended as expected (even `failed`) leaves the thread
    (or conversation) usable."""
    if record.error is not None:
        transcript.error = f"turn {turn.index + 1}: {record.error}"
    if record.status == turn.expected_status and record.error is None:
        return False
    for later in records[turn.index + 1:]:
        later.skipped = True
    return True


def knowledge_error(exc: KnowledgeError, redact: Redactor) -> str:
    """What the knowledge files' failure says in a transcript: what failed, and the backend's error."""
    return f"{exc}: {describe_error(exc.cause, redact)}" if exc.cause is not None else str(exc)


def describe_error(exc: BaseException, redact: Redactor) -> str:
    """A one-line description of a backend error, without credentials."""
    from openai import APIConnectionError, APIStatusError, APITimeoutError

    if isinstance(exc, APITimeoutError):
        text = "the backend did not answer in time"
    elif isinstance(exc, APIConnectionError):
        text = f"cannot reach the backend: {exc.__cause__ or exc}"
    elif isinstance(exc, APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") if isinstance(body.get("message"), str) else exc.message
        text = f"the backend answered {exc.status_code}: {message}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return redact.text(text)


async def run_conversation(spec: Spec, client: AsyncOpenAI, target: BackendTarget, pool: AssistantPool,
                           options: EngineOptions, streaming: dict[str, bool] | None = None,
                           cassette: CassetteSession | None = None) -> Transcript:
    """Run one conversation and return its transcript (checks not yet judged)."""
    conversation = _Conversation(spec, client, target, pool, options, streaming if streaming is not None else {},
                                 cassette)
    transcript = await conversation.run()
    if cassette is not None:
        report_mismatches(transcript, cassette)
    return transcript


def report_mismatches(transcript: Transcript, cassette: CassetteSession) -> None:
    """A replay that met an unrecorded request is the runner's error, stated at the turn that made it."""
    for turn_index, message in cassette.mismatches:
        if turn_index is not None and turn_index < len(transcript.turns):
            transcript.turns[turn_index].error = message
        transcript.error = transcript.error or message
        break
