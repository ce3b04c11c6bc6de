"""One conversation through the Assistants pipeline of the official SDK.

    assistant (shared per config) -> thread with the first message -> per turn: message, run
    (streamed, or polled honouring openai-poll-after-ms), tool outputs, reply -> transcript

The engine records what happened; judging it is the checks' job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.engine.backend import BackendTarget, redactor_for
from runner.engine.tools import ToolCallError, answer_call, parse_arguments
from runner.redact import Redactor
from runner.report.transcript import ToolCallRecord, Transcript, TurnRecord
from runner.sdk import threads as sdk_threads
from runner.spec.model import AssistantConfig, Spec, Turn

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from runner.record.cassettes import CassetteSession

# the SDK warns on every Assistants call since the hosted API's sunset; this backend is the point
warnings.filterwarnings("ignore", message="The Assistants API is deprecated", category=DeprecationWarning)
warnings.filterwarnings("ignore", message="deprecated", category=DeprecationWarning)

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "expired", "incomplete"})
STOPPED_STATUSES = TERMINAL_STATUSES | {"requires_action"}  # the run waits for nothing but us
POLL_FIRST_S, POLL_MAX_S = 0.05, 2.0  # polling without the backend's hint: start quick, back off
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
    """One assistant per distinct config on a backend, shared by the conversations that use it."""

    def __init__(self, client: AsyncOpenAI) -> None:
        from runner.sdk import assistants

        self.assistants = assistants(client)
        self._ids: dict[str, asyncio.Future[str]] = {}
        self.created: list[str] = []

    async def get(self, config: AssistantConfig) -> str:
        """The id of an assistant with this config, creating it on first use."""
        return await self._once(config.key(), self._create, config)

    async def existing(self, assistant_id: str) -> str:
        """Check once that an assistant given by id exists on the backend; return its id."""
        return await self._once("id:" + assistant_id, self._retrieve, assistant_id)

    async def _create(self, config: AssistantConfig) -> str:
        assistant = await self.assistants.create(**config.to_create_params())
        self.created.append(assistant.id)
        return assistant.id

    async def _retrieve(self, assistant_id: str) -> str:
        return (await self.assistants.retrieve(assistant_id)).id

    async def _once(self, key: str, make: Any, arg: Any) -> str:
        future = self._ids.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._ids[key] = future
            try:
                future.set_result(await make(arg))
            except BaseException as exc:
                del self._ids[key]  # let the next conversation try again, and see the same error
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters re-raise it themselves
                raise
        return await asyncio.shield(future)

    async def delete_created(self) -> None:
        """Delete the assistants this pool created (remote backends, unless --keep)."""
        for assistant_id in self.created:
            with contextlib.suppress(Exception):  # cleanup is best effort: the verdicts are already in
                await self.assistants.delete(assistant_id)
        self.created.clear()


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
        stage = "creating the assistant" if spec.assistant is not None else f"finding assistant {spec.assistant_id}"
        try:
            async with asyncio.timeout(self.options.timeout):  # --timeout bounds every wait on the backend
                if spec.assistant is not None:
                    transcript.assistant_id = await self.pool.get(spec.assistant)
                elif spec.assistant_id is not None:
                    transcript.assistant_id = await self.pool.existing(spec.assistant_id)
        except TimeoutError:
            transcript.error = f"{stage}: the backend did not answer within {self.options.timeout:g} s (--timeout)"
            for record in records:
                record.skipped = True
            return
        except Exception as exc:
            transcript.error = f"{stage}: {_describe_error(exc, self.redact)}"
            for record in records:
                record.skipped = True
            return
        try:
            for turn, record in zip(spec.turns, records, strict=True):
                if self.cassette is not None:
                    self.cassette.turn = turn.index  # so a replay mismatch can name its turn
                await self._turn(turn, record, transcript.assistant_id or "")
                transcript.thread_id = self.thread_id
                if record.error is not None:
                    transcript.error = f"turn {turn.index + 1}: {record.error}"
                # a run that ended as the turn expected (even `failed`) leaves the thread usable
                if record.status != turn.expected_status or record.error is not None:
                    for later in records[turn.index + 1:]:
                        later.skipped = True
                    break
        finally:
            if self.thread_id is not None and not self.target.embedded and not self.options.keep:
                with contextlib.suppress(Exception):  # best effort: the verdict does not depend on cleanup
                    await self.threads.delete(self.thread_id)

    async def _turn(self, turn: Turn, record: TurnRecord, assistant_id: str) -> None:
        # the turn's `run:` options override the assistant's settings for this run only
        options: dict[str, Any] = turn.run.to_params()
        if turn.instructions is not None:
            options["instructions"] = turn.instructions
        if turn.additional_instructions is not None:
            options["additional_instructions"] = turn.additional_instructions
        start = time.perf_counter()
        state = _RunState()
        try:
            async with asyncio.timeout(self.options.timeout):
                if self.thread_id is None and "additional_instructions" in options:
                    # create_and_run has no additional_instructions: make the thread first
                    self.thread_id = (await self.threads.create(**_once())).id
                if self.thread_id is not None:
                    await self.threads.messages.create(thread_id=self.thread_id, role="user", content=turn.user,
                                                       **_once())
            start = time.perf_counter()
            async with asyncio.timeout(self.options.timeout):
                await self._follow(turn, record, assistant_id, options, state)
        except TimeoutError:
            record.status = TIMEOUT_STATUS
            record.error = f"the backend did not finish within {self.options.timeout:g} s (--timeout)"
            await self._cancel_quietly(state.run)
        except ToolCallError as exc:
            record.error = str(exc)
            await self._cancel_quietly(state.run)
            if state.run is not None:
                record.status = "cancelled"
        except Exception as exc:
            record.error = _describe_error(exc, self.redact)
            await self._cancel_quietly(state.run)
        except asyncio.CancelledError:
            if not self.target.embedded:  # the batch was cancelled (Ctrl-C twice): leave no run going remotely
                await self._cancel_quietly(state.run)
            raise
        record.latency_ms = (time.perf_counter() - start) * 1000
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

    def _start_run(self, turn: Turn, assistant_id: str, options: dict[str, Any], *, stream: bool) -> Any:
        """Start the turn's run (a coroutine, or for `stream` the raw event stream's context manager); the
        first turn creates the thread with its message in the same call."""
        if self.thread_id is None:
            create_and_run = (self.threads.with_streaming_response.create_and_run if stream
                              else self.threads.create_and_run)
            return create_and_run(assistant_id=assistant_id, stream=stream, **options, **_once(),
                                  thread={"messages": [{"role": "user", "content": turn.user}]})
        create = self.threads.runs.with_streaming_response.create if stream else self.threads.runs.create
        return create(thread_id=self.thread_id, assistant_id=assistant_id, stream=stream, **options, **_once())

    async def _follow(self, turn: Turn, record: TurnRecord, assistant_id: str, options: dict[str, Any],
                      state: _RunState) -> None:
        if self.target.config.stream and self.streaming.get("stream", True):
            try:
                await self._follow_stream(self._start_run(turn, assistant_id, options, stream=True), turn, record,
                                          state)
                return
            except Exception as exc:
                if state.run is not None or not _refuses_streaming(exc):
                    raise
                self.streaming["stream"] = False  # this backend does not stream: poll from now on
        run = await self._start_run(turn, assistant_id, options, stream=False)
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
                async for kind, data in _sse_events(response):
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
                run_id=run.id, thread_id=run.thread_id, tool_outputs=outputs, stream=True, **_once())

    async def _follow_poll(self, run: Any, turn: Turn, record: TurnRecord, state: _RunState) -> None:
        state.run = run
        thread_id = run.thread_id
        while True:
            state.run = run = await self._poll(run)
            if run.status != "requires_action":
                break
            outputs = await self._answer_calls(run, turn, record)
            state.run = run = await self.threads.runs.submit_tool_outputs(
                run_id=run.id, thread_id=thread_id, tool_outputs=outputs, **_once())
        page = await self.threads.messages.list(thread_id=thread_id, run_id=run.id, order="asc", limit=100)
        state.messages = [m for m in page.data if m.role == "assistant"]

    async def _poll(self, run: Any) -> Any:
        """Retrieve the run until it stops: as often as the backend's openai-poll-after-ms says, or, without
        it, from 50 ms up, doubling to 2 s (the SDK's own poll would sleep a fixed second)."""
        delay = POLL_FIRST_S
        while run.status not in STOPPED_STATUSES:
            response = await self.threads.runs.with_raw_response.retrieve(run.id, thread_id=run.thread_id)
            run = response.parse()
            if run.status in STOPPED_STATUSES:
                break
            hinted = response.headers.get("openai-poll-after-ms")
            if hinted is not None and hinted.isdigit():
                await asyncio.sleep(int(hinted) / 1000)
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, POLL_MAX_S)
        return run

    async def _answer_calls(self, run: Any, turn: Turn, record: TurnRecord) -> list[Any]:
        """Outputs for every call the run waits for; parallel calls are answered concurrently."""
        entries = [ToolCallRecord(id=c.id, name=c.function.name, arguments=parse_arguments(c.function.arguments))
                   for c in run.required_action.submit_tool_outputs.tool_calls]
        record.tool_calls.extend(entries)
        answers = await asyncio.gather(*(
            answer_call(e.name, e.arguments, turn.tool_outputs, self.spec.vars, turn.index + 1, self.spec.file)
            for e in entries), return_exceptions=True)
        for entry, answer in zip(entries, answers, strict=True):
            if isinstance(answer, BaseException):
                raise answer
            entry.output = answer
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


def _once() -> dict[str, Any]:
    """An Idempotency-Key for one acting request: the SDK's retries of it resend the same key, and a backend
    that honours it (this project's does) acts once, so a retry never adds a user message twice."""
    return {"extra_headers": {"Idempotency-Key": uuid.uuid4().hex}}


async def _sse_events(response: Any) -> AsyncIterator[tuple[str, str]]:
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


def _refuses_streaming(exc: Exception) -> bool:
    from openai import BadRequestError

    return isinstance(exc, BadRequestError) and "stream" in (str(getattr(exc, "param", "")) + str(exc)).lower()


def _describe_error(exc: BaseException, redact: Redactor) -> str:
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
        _report_mismatches(transcript, cassette)
    return transcript


def _report_mismatches(transcript: Transcript, cassette: CassetteSession) -> None:
    """A replay that met an unrecorded request is the runner's error, stated at the turn that made it."""
    for turn_index, message in cassette.mismatches:
        if turn_index is not None and turn_index < len(transcript.turns):
            transcript.turns[turn_index].error = message
        transcript.error = transcript.error or message
        break
