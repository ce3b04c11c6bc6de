"""Answering the assistant's function calls with the turn's `tool_outputs` handlers."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from typing import Any

from jinja2 import TemplateError

from runner.spec import sandbox
from runner.spec.model import ToolOutput


class ToolCallError(Exception):
    """A function call the runner cannot answer (no handler, or the handler failed)."""


async def _call_python(reference: str, name: str, arguments: Any, spec_file: str) -> str:
    """Call the handler function with the call's arguments as keywords; its result, as text, is the output."""
    from runner.spec.callables import CallableNotFound, resolve_callable

    shown = json.dumps(arguments, ensure_ascii=False)
    try:
        function = resolve_callable(reference, spec_file)
        result = function(**arguments) if isinstance(arguments, dict) else function(arguments)
        if inspect.isawaitable(result):
            result = await result
    except CallableNotFound as exc:
        raise ToolCallError(str(exc)) from None
    except Exception as exc:  # the user's handler failed: the turn fails, saying how
        raise ToolCallError(f"{reference} raised {type(exc).__name__}: {exc} for {name}({shown})") from None
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


async def render_template(source: str, names: dict[str, Any]) -> str:
    """Render a tool-output template in a worker thread, within the template limits (runner.spec.sandbox):
    the event loop goes on meanwhile, and when the turn's --timeout cancels the call the render stops at
    its next step instead of running on; raise TemplateError when it fails."""
    cancelled = threading.Event()
    try:
        return await asyncio.to_thread(sandbox.render, source, names, cancelled=cancelled)
    finally:
        cancelled.set()  # done, or given up on by its turn: a render still running stops


def parse_arguments(raw: str) -> Any:
    """A call's arguments as data; the raw text when they are not JSON."""
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return raw


async def answer_call(name: str, arguments: Any, handlers: dict[str, ToolOutput], variables: dict[str, Any],
                      turn_number: int, spec_file: str) -> str:
    """The output to send for one call, from the turn's handler for that function."""
    handler = handlers.get(name)
    if handler is None:
        known = ", ".join(sorted(handlers)) or "none"
        raise ToolCallError(
            f"the assistant called {name}({json.dumps(arguments, ensure_ascii=False)}) but turn {turn_number} "
            f"has no tool_outputs entry for {name!r} (handlers: {known})"
        )
    if handler.python is not None:
        return await _call_python(handler.python, name, arguments, spec_file)
    if handler.template is None:
        return handler.output or ""
    try:
        return await render_template(
            handler.template, {**variables, "args": arguments, "call": {"name": name, "arguments": arguments}})
    except TemplateError as exc:
        raise ToolCallError(f"tool_outputs.{name}.template failed for arguments "
                            f"{json.dumps(arguments, ensure_ascii=False)}: {exc}") from None


async def answer_calls(entries: list[Any], turn: Any, spec: Any) -> None:
    """Fill in each recorded call's `output` (ToolCallRecord) from the turn's handlers, the calls answered
    concurrently; the first ToolCallError (or other failure) of them is raised."""
    answers = await asyncio.gather(*(
        answer_call(e.name, e.arguments, turn.tool_outputs, spec.vars, turn.index + 1, spec.file)
        for e in entries), return_exceptions=True)
    for entry, answer in zip(entries, answers, strict=True):
        if isinstance(answer, BaseException):
            raise answer
        entry.output = answer
