"""Executes runs: calls the model provider, records steps and messages, moves the run through its statuses.

Every state change is also an event in the official streaming vocabulary (`thread.run.in_progress`,
`thread.message.delta`, ...). Streaming requests subscribe to a run's events; polling requests just
read the stored objects. A run executes as its own asyncio task, so a client that stops listening
does not stop the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from runner.server import objects
from runner.server.budget import model_tool_choice, police_reply, select_messages
from runner.server.errors import APIError, invalid
from runner.server.ids import new_id
from runner.server.providers import ModelError, ModelReply, ModelRequest, ProviderSet
from runner.server.providers.base import api_error, count_tokens
from runner.server.store import Store
from runner.server.tools.code_interpreter.tool import file_paths
from runner.server.tools.file_search.citations import file_citations, search_output
from runner.server.tools.functions import (
    BUILTIN_FUNCTIONS,
    MAX_BUILTIN_ROUNDS,
    builtin_names,
    code_argument,
    model_tools,
    search_query,
)

if TYPE_CHECKING:
    from runner.server.tools.code_interpreter.tool import CodeInterpreter

# an event as it goes on the wire: its name and its JSON payload, serialised when it happened
Event = tuple[str, str]
ACTIVE_RUN_STATUSES = frozenset({"queued", "in_progress", "requires_action", "cancelling"})


def _step_delta(step_id: str, tool_call: dict[str, Any]) -> dict[str, Any]:
    """A `thread.run.step.delta` payload carrying one piece of one tool call."""
    return {"id": step_id, "object": "thread.run.step.delta",
            "delta": {"step_details": {"type": "tool_calls", "tool_calls": [tool_call]}}}


def _answering_outputs(private: dict[str, Any]) -> bool:
    """Whether the run's next model call answers tool outputs the run has had submitted."""
    return any(item.get("type") == "function_call_output" for item in private.get("items", []))


FILE_SEARCH_MAX_RESULTS = 20  # the API's default number of results for file_search
# what the backend's search answers: (vector store ids, query, max results, score threshold) -> results
Search = Callable[[list[str], str, int, float], list[dict[str, Any]]]


def _forced_builtin(run: dict[str, Any], private: dict[str, Any]) -> str | None:
    """The built-in tool the run's tool_choice asks for (`file_search`, `code_interpreter`), if it has not been
    called yet: the backend calls it before the model, with the last user message as the query or the code."""
    choice = run.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in BUILTIN_FUNCTIONS and not private.get("forced"):
        return str(choice["type"])
    return None


def message_text(message: dict[str, Any]) -> str:
    """The text parts of a message, joined."""
    return "".join(part["text"]["value"] for part in message.get("content", []) if part.get("type") == "text")


class RunExecutor:
    """Runs the backend's runs, one asyncio task each, and publishes their events."""

    def __init__(self, store: Store, providers: ProviderSet, search: Search | None = None,
                 ready: Callable[[list[str]], Awaitable[None]] | None = None,
                 code: CodeInterpreter | None = None) -> None:
        self.store = store
        self.providers = providers
        self.search = search  # the vector stores' search, for the file_search tool
        self.code = code  # the sandboxed sessions, for the code_interpreter tool (None: code is never run)
        self.ready = ready  # waits until vector stores have indexed the files being added to them
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._listeners: dict[str, list[asyncio.Queue[Event | None]]] = {}
        # inside _change(): what to publish once its writes are committed ((run, event) or (run, None): close)
        self._pending: list[tuple[str, Event | None]] | None = None

    # -- events -----------------------------------------------------------------------------------

    def listen(self, run_id: str) -> asyncio.Queue[Event | None]:
        """A queue receiving the run's events until it stops (terminal or `requires_action`), then None."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._listeners.setdefault(run_id, []).append(queue)
        return queue

    @contextlib.contextmanager
    def _change(self) -> Iterator[None]:
        """One state change of a run: its writes are one transaction, its events go out once committed.

        A crash never leaves half of a change stored (a message `in_progress` beside a finished run),
        and listeners never see events of a change that was rolled back. Changes inside a change join it.
        """
        if self._pending is not None:
            yield
            return
        pending: list[tuple[str, Event | None]] = []
        self._pending = pending
        try:
            with self.store.transaction():
                yield
        finally:
            self._pending = None
        for run_id, item in pending:
            if item is None:
                self._close(run_id)
            else:
                for queue in self._listeners.get(run_id, ()):
                    queue.put_nowait(item)

    def _emit(self, run_id: str, event: str, data: dict[str, Any]) -> None:
        if self._pending is None and not self._listeners.get(run_id):
            return
        item = (event, json.dumps(data))  # a snapshot: the executor keeps changing `data` afterwards
        if self._pending is not None:
            self._pending.append((run_id, item))
            return
        for queue in self._listeners[run_id]:
            queue.put_nowait(item)

    def unlisten(self, run_id: str) -> None:
        """Drop the listeners of a run whose stream will not be served (the request failed)."""
        self._listeners.pop(run_id, None)

    def _close(self, run_id: str) -> None:
        """End the run's listeners (after the events already emitted)."""
        if self._pending is not None:
            self._pending.append((run_id, None))
            return
        for queue in self._listeners.pop(run_id, ()):
            queue.put_nowait(None)

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, run: dict[str, Any], *, created: bool, thread: dict[str, Any] | None = None) -> None:
        """Schedule the run's execution (a new run when `created`, else one resuming after tool outputs); a
        run created with its thread announces the thread first, as the API's create-and-run stream does."""
        if thread is not None:
            self._emit(run["id"], "thread.created", thread)
        if created:
            self._emit(run["id"], "thread.run.created", run)
            self._emit(run["id"], "thread.run.queued", run)
        else:
            self._emit(run["id"], "thread.run.queued", run)
        task = asyncio.get_running_loop().create_task(self._drive(run["id"]))
        self._tasks[run["id"]] = task
        run_id: str = run["id"]
        task.add_done_callback(lambda done: self._on_done(run_id, done))

    def _on_done(self, run_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(run_id) is not task:
            return  # a newer execution of the run (resumed after tool outputs) has taken over
        del self._tasks[run_id]
        if not task.cancelled():
            return
        # cancelled before _drive began, so it never saw the CancelledError: finish the run here
        try:
            run = self.store.get("run", run_id)
            if run["status"] in ACTIVE_RUN_STATUSES:
                self._finish_cancelled(run)
        except APIError:  # its thread was deleted meanwhile
            pass
        finally:
            self._close(run_id)

    async def shutdown(self) -> None:
        """Cancel every executing run (their status becomes `cancelled`)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def recover(self) -> int:
        """Fail the runs a stopped process left executing (a restart finds them queued or in progress).

        Runs waiting for tool outputs keep waiting: their state is in the store, so they can resume.
        Returns how many runs were failed.
        """
        stranded = self.store.with_status("run", ("queued", "in_progress", "cancelling"))
        for run in stranded:
            if run["status"] == "cancelling":
                self._finish_cancelled(run)
            else:
                self._fail(run, "server_error", "the backend stopped while this run was executing; start a new run")
        return len(stranded)

    def _end_leftovers(self, run: dict[str, Any]) -> None:
        """End the steps and messages a run left in progress, as the run itself ended (failed or cancelled)."""
        ended_at = run["failed_at"] if run["status"] == "failed" else run["cancelled_at"]
        for step in self.store.of_run("run_step", run["id"]):
            if step["status"] != "in_progress":
                continue
            if run["status"] == "failed":
                step.update(status="failed", failed_at=ended_at, last_error={
                    "code": "server_error" if run["last_error"]["code"] == "invalid_prompt"
                    else run["last_error"]["code"], "message": run["last_error"]["message"]})
            else:
                step.update(status="cancelled", cancelled_at=ended_at)
            self.store.update("run_step", step)
        for msg in self.store.of_run("message", run["id"]):
            if msg["status"] != "in_progress":
                continue
            reason = "run_failed" if run["status"] == "failed" else "run_cancelled"
            msg.update(status="incomplete", incomplete_at=ended_at, incomplete_details={"reason": reason})
            self.store.update("message", msg)

    def stop(self, run_id: str) -> None:
        """Stop a run's execution without recording anything (its thread is being deleted)."""
        task = self._tasks.get(run_id)
        if task is not None:
            task.cancel()

    def refresh(self, run: dict[str, Any]) -> dict[str, Any]:
        """The run, `expired` (with its waiting step) if it has waited past `expires_at`."""
        waiting = run["status"] in ("queued", "requires_action") or (
            run["status"] == "in_progress" and run["id"] not in self._tasks)
        if not waiting or run["expires_at"] is None or run["expires_at"] > objects.now():
            return run
        with self._change():
            run.update(status="expired", required_action=None)
            private = self.store.private(run["id"])
            step_id = private.pop("tool_step", None)
            if step_id:
                step = self.store.get("run_step", step_id)
                step.update(status="expired", expired_at=objects.now())
                self.store.update("run_step", step)
            self.store.update("run", run, private=private)
            self._release_thread(run)
            self._emit(run["id"], "thread.run.expired", run)
            self._close(run["id"])
        return run

    def cancel(self, run: dict[str, Any]) -> dict[str, Any]:
        """Cancel a run that has not ended; 400 when it already has."""
        status = run["status"]
        if status not in ACTIVE_RUN_STATUSES:
            raise invalid(f"Cannot cancel run with status '{status}'.", "run_id")
        task = self._tasks.get(run["id"])
        if task is not None and not task.done():
            run["status"] = "cancelling"
            self.store.update("run", run)
            task.cancel()
            return run
        return self._finish_cancelled(run)

    def _finish_cancelled(self, run: dict[str, Any]) -> dict[str, Any]:
        with self._change():
            run.update(status="cancelled", cancelled_at=objects.now(), required_action=None)
            private = self.store.private(run["id"])
            private.pop("tool_step", None)
            self.store.update("run", run, private=private)
            self._end_leftovers(run)
            self._release_thread(run)
            self._emit(run["id"], "thread.run.cancelled", run)
            self._close(run["id"])
        return run

    def _release_thread(self, run: dict[str, Any]) -> None:
        thread_private = self.store.private(run["thread_id"])
        if thread_private.get("active_run") == run["id"]:
            thread_private.pop("active_run")
            self.store.set_private("thread", run["thread_id"], thread_private)

    # -- execution --------------------------------------------------------------------------------

    async def _drive(self, run_id: str) -> None:
        try:
            with self._change():
                run, private = self.store.get_with_private("run", run_id)
                run.update(status="in_progress", started_at=run["started_at"] or objects.now())
                self.store.update("run", run)
                self._emit(run_id, "thread.run.in_progress", run)
            await self._step(run, private)  # no await since the read: what it holds is what is stored
        except asyncio.CancelledError:
            with contextlib.suppress(APIError):  # APIError: the thread was deleted under the run
                self._finish_cancelled(self.store.get("run", run_id))
        except APIError:
            return  # the run or its thread was deleted while it executed: nothing left to record
        except Exception as exc:  # a bug must fail the run, never leave it in_progress forever
            with contextlib.suppress(APIError):
                self._fail(self.store.get("run", run_id), "server_error",
                           f"internal error: {type(exc).__name__}: {exc}")
            raise
        finally:
            self._close(run_id)  # however the execution stopped, a streaming client gets its end

    async def _step(self, run: dict[str, Any], private: dict[str, Any]) -> None:
        """Call the model for the run (as stored, with its private state) and record what it answered; the calls
        it makes to built-in tools are answered here and the model called again, until it replies or calls a
        function of the client's."""
        run_id: str = run["id"]
        forced = _forced_builtin(run, private)
        if forced in self._available() and not await self._builtin_step(
                run, private, [(new_id("call_"), str(forced), self._last_user_text(run))], None):
            return
        while True:
            resumed = _answering_outputs(private)
            rounds = int(private.get("builtin_rounds", 0))
            offered = self._builtins(run) if rounds < MAX_BUILTIN_ROUNDS else frozenset()
            request = self._request(run, private, resumed, offered)
            if request is None:
                self._end_incomplete(run, "max_prompt_tokens")
                return
            try:
                provider, request.model = self.providers.resolve(run["model"])
                answer = (await provider.respond(request)).redacted(self.providers.redact)
                # the run as it is now: requests may have updated it (its metadata) while the model answered
                run, private = self.store.get_with_private("run", run_id)
                reply = police_reply(answer, run, resumed=resumed)
                builtin_calls = [call for call in reply.tool_calls if call.name in self._builtins(run)]
                if builtin_calls and not offered:
                    raise ModelError(f"the model called {builtin_calls[0].name} {MAX_BUILTIN_ROUNDS} times in a row "
                                     "without replying")
            except ModelError as exc:
                self._fail(self.store.get("run", run_id), exc.code, exc.message)
                return
            except APIError as exc:
                if exc.status == 404:
                    raise  # the run or its thread was deleted meanwhile
                self._fail(self.store.get("run", run_id), "invalid_prompt", exc.message)
                return
            if builtin_calls:
                private["builtin_rounds"] = rounds + 1
                with self._change():
                    self._add_usage(run, reply)
                    self.store.update("run", run)
                calls = [(call.call_id or new_id("call_"), call.name,
                          search_query(call.arguments) if call.name == "file_search" else code_argument(call.arguments))
                         for call in builtin_calls]
                if not await self._builtin_step(run, private, calls, self._step_usage(reply)):
                    return
                reply.tool_calls = [call for call in reply.tool_calls if call not in builtin_calls]
                if not reply.tool_calls:
                    continue  # the model reads what was found
                reply.prompt_tokens = reply.completion_tokens = 0  # counted with the built-in tools' step
            with self._change():
                self._add_usage(run, reply)
                if reply.tool_calls:
                    self._require_action(run, private, reply)
                else:
                    self._complete_with_message(run, private, reply)
            return

    def _available(self) -> frozenset[str]:
        """The built-in tools this backend can run: file_search with a search, code_interpreter with sessions."""
        return frozenset(name for name, there in (("file_search", self.search), ("code_interpreter", self.code))
                         if there is not None)

    def _builtins(self, run: dict[str, Any]) -> frozenset[str]:
        """The built-in tools of the run that the backend answers for its model."""
        return builtin_names(run["tools"], self._available())

    def _last_user_text(self, run: dict[str, Any]) -> str:
        user = [m for m in self.store.children("message", run["thread_id"]) if m["role"] == "user"]
        return message_text(user[-1]) if user else ""

    async def _builtin_step(self, run: dict[str, Any], private: dict[str, Any], calls: list[tuple[str, str, str]],
                            usage: dict[str, int] | None) -> bool:
        """Run built-in tool calls (call id, tool, query or code) as one `tool_calls` step, streamed as it goes (a
        code call's input before it runs, its outputs after), their outputs kept for the model's next call; False
        when a call could not be made (no sandbox, an embedding endpoint down) and the run failed saying why."""
        step = objects.run_step(run, {"type": "tool_calls", "tool_calls": []})
        if usage is not None:
            step["usage"] = usage
        with self._change():
            self.store.insert("run_step", step, parent=run["thread_id"], run_id=run["id"])
            self._emit(run["id"], "thread.run.step.created", step)
            self._emit(run["id"], "thread.run.step.in_progress", step)
        items: list[dict[str, Any]] = []
        try:
            for index, (call_id, name, text) in enumerate(calls):
                if name == "file_search":
                    call, deltas, output = await self._search_call(run, private, call_id, text)
                else:
                    call, deltas, output = await self._code_call(run, private, step["id"], index, call_id, text)
                argument = "query" if name == "file_search" else "code"
                items += [{"type": "function_call", "call_id": call_id, "name": name,
                           "arguments": json.dumps({argument: text}, ensure_ascii=False)},
                          {"type": "function_call_output", "call_id": call_id, "output": output}]
                with self._change():
                    step["step_details"]["tool_calls"].append(call)
                    self.store.update("run_step", step)
                    for delta in deltas:
                        self._emit(run["id"], "thread.run.step.delta",
                                   _step_delta(step["id"], {"index": index, **delta}))
        except ModelError as exc:
            self._fail(self.store.get("run", run["id"]), exc.code, exc.message)
            return False
        with self._change():
            step.update(status="completed", completed_at=objects.now())
            self.store.update("run_step", step)
            self._emit(run["id"], "thread.run.step.completed", step)
            private["forced"] = True  # a forced tool is called once: the model answers what it gave
            private.setdefault("items", []).extend(items)
            self.store.set_private("run", run["id"], private)
        return True

    async def _search_call(self, run: dict[str, Any], private: dict[str, Any], call_id: str,
                           query: str) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
        """A file_search call: the run's vector stores searched for `query` (the call, its deltas, what the model
        reads of it, its results numbered for citations)."""
        assert self.search is not None
        options = next((t.get("file_search") or {} for t in run["tools"] if t.get("type") == "file_search"), {})
        ranking = options.get("ranking_options") or {}
        threshold = float(ranking.get("score_threshold", 0.0))
        stores = self._vector_store_ids(run)
        if self.ready is not None:  # a file just attached is searched once it is indexed, as the API waits
            await self.ready(stores)
        results = await asyncio.to_thread(self.search, stores, query,
                                          options.get("max_num_results") or FILE_SEARCH_MAX_RESULTS, threshold)
        call = {"id": call_id, "type": "file_search", "file_search": {
            "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": threshold},
            "results": [{"file_id": r["file_id"], "file_name": r["file_name"], "score": r["score"]} for r in results],
            "queries": [query]}}  # beyond the API's shape (which keeps the query to itself), as Responses shows it
        private.setdefault("results", {})[call_id] = [r["content"] for r in results]  # for include[]
        citable: list[list[str]] = private.setdefault("citable", [])  # per search of the run: its results' files
        output = search_output(len(citable), query, results)
        citable.append([r["file_id"] for r in results])
        return call, [call], output  # one delta: the SDKs cannot add results to a call by pieces

    async def _code_call(self, run: dict[str, Any], private: dict[str, Any], step_id: str, index: int, call_id: str,
                         code: str) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
        """A code_interpreter call: `code` run in the thread's session, its input streamed before it runs (the call,
        the delta of its outputs, what the model reads of it)."""
        assert self.code is not None
        self._emit(run["id"], "thread.run.step.delta", _step_delta(step_id, {
            "index": index, "id": call_id, "type": "code_interpreter",
            "code_interpreter": {"input": code, "outputs": []}}))
        outcome = await self.code.call(run["thread_id"], self._code_file_ids(run), code)
        private.setdefault("code_files", {}).update(outcome.files)  # what the reply may link as sandbox:/mnt/data/…
        private.setdefault("code_images", []).extend(outcome.images)  # what the reply shows
        call = {"id": call_id, "type": "code_interpreter",
                "code_interpreter": {"input": code, "outputs": outcome.outputs}}
        delta = {"type": "code_interpreter", "code_interpreter": {
            "outputs": [{"index": i, **output} for i, output in enumerate(outcome.outputs)]}}
        return call, [delta], outcome.model_output

    def _code_file_ids(self, run: dict[str, Any]) -> list[str]:
        """The files a run's code finds in /mnt/data: its assistant's and its thread's code interpreter files."""
        ids: list[str] = []
        for kind, object_id in (("assistant", run["assistant_id"]), ("thread", run["thread_id"])):
            with contextlib.suppress(APIError):
                resources = self.store.get(kind, object_id).get("tool_resources") or {}  # type: ignore[arg-type]
                ids.extend((resources.get("code_interpreter") or {}).get("file_ids") or [])
        return list(dict.fromkeys(ids))

    def _vector_store_ids(self, run: dict[str, Any]) -> list[str]:
        """The vector stores a run searches: its assistant's and its thread's."""
        ids: list[str] = []
        for kind, object_id in (("assistant", run["assistant_id"]), ("thread", run["thread_id"])):
            with contextlib.suppress(APIError):  # an assistant deleted since the run started searches nothing
                resources = self.store.get(kind, object_id).get("tool_resources") or {}  # type: ignore[arg-type]
                ids.extend((resources.get("file_search") or {}).get("vector_store_ids") or [])
        return list(dict.fromkeys(ids))

    def _request(self, run: dict[str, Any], private: dict[str, Any], resumed: bool,
                 builtins: frozenset[str]) -> ModelRequest | None:
        """The model call for the run's next step (`resumed`: answering its tool outputs; `builtins`: the built-in
        tools offered as functions); None when the context cannot fit `max_prompt_tokens`."""
        own_items: list[dict[str, Any]] = private.get("items", [])
        fixed = count_tokens(run["instructions"]) + sum(
            count_tokens(str(item.get("arguments") or item.get("output") or "")) for item in own_items)
        thread_items = [{"type": "message", "role": m["role"], "content": message_text(m)}
                        for m in self.store.children("message", run["thread_id"])]
        selected = select_messages(thread_items, run["truncation_strategy"], run["max_prompt_tokens"], fixed)
        if selected is None:
            return None
        items = [*selected, *own_items]
        return ModelRequest(
            model=run["model"], instructions=run["instructions"], items=items,
            tools=model_tools(run["tools"], builtins),
            tool_choice=model_tool_choice(run["tool_choice"], resumed), parallel_tool_calls=run["parallel_tool_calls"],
            response_format=run["response_format"], temperature=run["temperature"], top_p=run["top_p"],
            max_output_tokens=run["max_completion_tokens"],
        )

    def _end_incomplete(self, run: dict[str, Any], reason: str) -> None:
        with self._change():
            run.update(status="incomplete", incomplete_details={"reason": reason})
            self.store.update("run", run)
            self._release_thread(run)
            self._emit(run["id"], "thread.run.incomplete", run)
            self._close(run["id"])

    def _add_usage(self, run: dict[str, Any], reply: ModelReply) -> None:
        usage = run["usage"] or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        usage["prompt_tokens"] += reply.prompt_tokens
        usage["completion_tokens"] += reply.completion_tokens
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        run["usage"] = usage

    @staticmethod
    def _step_usage(reply: ModelReply) -> dict[str, int]:
        return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                "total_tokens": reply.prompt_tokens + reply.completion_tokens}

    def _require_action(self, run: dict[str, Any], private: dict[str, Any], reply: ModelReply) -> None:
        calls: list[dict[str, Any]] = [
            {"id": call.call_id or new_id("call_"), "type": "function",
             "function": {"name": call.name, "arguments": call.arguments}}
            for call in reply.tool_calls
        ]
        step = objects.run_step(run, {
            "type": "tool_calls",
            "tool_calls": [{**c, "function": {**c["function"], "output": None}} for c in calls],
        })
        step["usage"] = self._step_usage(reply)
        with self._change():
            self.store.insert("run_step", step, parent=run["thread_id"], run_id=run["id"])
            self._announce_tool_calls(run["id"], step, calls)
            private["tool_step"] = step["id"]
            private.setdefault("items", []).extend(
                {"type": "function_call", "call_id": c["id"], "name": c["function"]["name"],
                 "arguments": c["function"]["arguments"]}
                for c in calls
            )
            run.update(status="requires_action", required_action={
                "type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": calls},
            })
            self.store.update("run", run, private=private)
            self._emit(run["id"], "thread.run.requires_action", run)
            self._close(run["id"])

    def _announce_tool_calls(self, run_id: str, step: dict[str, Any], calls: list[dict[str, Any]]) -> None:
        """The events of a tool-call step, as the hosted API streamed them: the step created and in progress
        with no calls yet, then per call a delta opening it (index, id, name) and one with its arguments.

        The SDKs' stream helpers add each delta to the created step's snapshot (strings are appended), so the
        calls must arrive by deltas only; a new index is what fires their tool_call_created hooks, a delta of
        the current index their tool_call_delta, and the next index or requires_action their tool_call_done.
        """
        announced = {**step, "step_details": {"type": "tool_calls", "tool_calls": []}}
        self._emit(run_id, "thread.run.step.created", announced)
        self._emit(run_id, "thread.run.step.in_progress", announced)
        for index, call in enumerate(calls):
            function = call["function"]
            opening = {"index": index, "id": call["id"], "type": "function",
                       "function": {"name": function["name"], "arguments": "", "output": None}}
            self._emit(run_id, "thread.run.step.delta", _step_delta(step["id"], opening))
            if function["arguments"]:
                arguments = {"index": index, "type": "function", "function": {"arguments": function["arguments"]}}
                self._emit(run_id, "thread.run.step.delta", _step_delta(step["id"], arguments))

    def submit_tool_outputs(self, run: dict[str, Any], outputs: list[dict[str, Any]]) -> dict[str, Any]:
        """Record the outputs of the calls a run is waiting for and resume it; 400 when they don't fit."""
        if run["status"] != "requires_action":
            raise invalid(
                f"Runs in status \"{run['status']}\" do not accept tool outputs.", "run_id")
        pending = {c["id"]: c for c in run["required_action"]["submit_tool_outputs"]["tool_calls"]}
        given: dict[str, str] = {}
        for i, item in enumerate(outputs):
            call_id = str(item.get("tool_call_id"))
            if call_id not in pending:
                raise invalid(f"No tool call found with id '{call_id}'.", f"tool_outputs[{i}].tool_call_id")
            given[call_id] = str(item.get("output") or "")
        missing = [cid for cid in pending if cid not in given]
        if missing:
            raise invalid(f"Expected tool outputs for call_ids {list(pending)}, got {list(given)}.",
                          "tool_outputs")
        with self._change():
            private = self.store.private(run["id"])
            step = self.store.get("run_step", private.pop("tool_step"))
            for call in step["step_details"]["tool_calls"]:
                call["function"]["output"] = given[call["id"]]
            step.update(status="completed", completed_at=objects.now())
            self.store.update("run_step", step)
            private.setdefault("items", []).extend(
                {"type": "function_call_output", "call_id": cid, "output": out} for cid, out in given.items()
            )
            run.update(status="queued", required_action=None)
            self.store.update("run", run, private=private)
            self._emit(run["id"], "thread.run.step.completed", step)
        return run

    def _complete_with_message(self, run: dict[str, Any], private: dict[str, Any], reply: ModelReply) -> None:
        text = reply.text or ""
        msg = objects.message(run["thread_id"], "assistant", [], run_id=run["id"],
                              assistant_id=run["assistant_id"], status="in_progress")
        step = objects.run_step(run, {"type": "message_creation", "message_creation": {"message_id": msg["id"]}})
        with self._change():
            self.store.insert("run_step", step, parent=run["thread_id"], run_id=run["id"])
            self._emit(run["id"], "thread.run.step.created", step)
            self._emit(run["id"], "thread.run.step.in_progress", step)
            self.store.insert("message", msg, parent=run["thread_id"], run_id=run["id"])
            self._emit(run["id"], "thread.message.created", msg)
            self._emit(run["id"], "thread.message.in_progress", msg)
            annotations = sorted(file_citations(text, private.get("citable", []))
                                 + file_paths(text, private.get("code_files", {})), key=lambda a: a["start_index"])
            # the figures the run's code showed come first, as the hosted API put them, then the text
            content = [{"type": "image_file", "image_file": {"file_id": file_id}}
                       for file_id in private.get("code_images", [])] + objects.text_content(text, annotations)
            self._emit(run["id"], "thread.message.delta", {
                "id": msg["id"], "object": "thread.message.delta",
                "delta": {"content": [{"index": i, **part} if part["type"] != "text" else {
                    "index": i, "type": "text", "text": {
                        "value": text, "annotations": [{"index": j, **a} for j, a in enumerate(annotations)]}}
                    for i, part in enumerate(content)]},
            })
            finished = objects.now()
            msg["content"] = content
            if reply.incomplete_reason:  # cut short by the token budget: the API's `incomplete` outcome
                msg.update(status="incomplete", incomplete_at=finished, incomplete_details={"reason": "max_tokens"})
                self.store.update("message", msg)
                self._emit(run["id"], "thread.message.incomplete", msg)
            else:
                msg.update(status="completed", completed_at=finished)
                self.store.update("message", msg)
                self._emit(run["id"], "thread.message.completed", msg)
            step.update(status="completed", completed_at=finished, usage=self._step_usage(reply))
            self.store.update("run_step", step)
            self._emit(run["id"], "thread.run.step.completed", step)
            if reply.incomplete_reason:
                run.update(status="incomplete", incomplete_details={"reason": reply.incomplete_reason})
            else:
                run.update(status="completed", completed_at=finished)
            self.store.update("run", run, private=private)
            self._release_thread(run)
            self._emit(run["id"], f"thread.run.{run['status']}", run)
            self._close(run["id"])

    def _fail(self, run: dict[str, Any], code: str, message: str) -> None:
        with self._change():
            run.update(status="failed", failed_at=objects.now(),
                       last_error=api_error(code, message, self.providers.redact), required_action=None)
            self.store.update("run", run)
            self._end_leftovers(run)
            self._release_thread(run)
            self._emit(run["id"], "thread.run.failed", run)
            self._close(run["id"])
