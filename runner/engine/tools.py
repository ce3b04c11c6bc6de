"""Answering the assistant's function calls with the turn's `tool_outputs` handlers."""

from __future__ import annotations

import functools
import json
from typing import Any

from jinja2 import TemplateError

from runner.spec.load import jinja_env
from runner.spec.model import ToolOutput


class ToolCallError(Exception):
    """A function call the runner cannot answer (no handler, or the handler failed)."""


@functools.lru_cache(maxsize=256)
def _template(source: str) -> Any:
    """A compiled tool-output template (compiled once, used for every call)."""
    return jinja_env().from_string(source)


def parse_arguments(raw: str) -> Any:
    """A call's arguments as data; the raw text when they are not JSON."""
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return raw


def answer_call(name: str, arguments: Any, handlers: dict[str, ToolOutput], variables: dict[str, Any],
                turn_number: int) -> str:
    """The output to send for one call, from the turn's handler for that function."""
    handler = handlers.get(name)
    if handler is None:
        known = ", ".join(sorted(handlers)) or "none"
        raise ToolCallError(
            f"the assistant called {name}({json.dumps(arguments, ensure_ascii=False)}) but turn {turn_number} "
            f"has no tool_outputs entry for {name!r} (handlers: {known})"
        )
    if handler.template is None:
        return handler.output or ""
    try:
        return _template(handler.template).render(
            {**variables, "args": arguments, "call": {"name": name, "arguments": arguments}})
    except TemplateError as exc:
        raise ToolCallError(f"tool_outputs.{name}.template failed for arguments "
                            f"{json.dumps(arguments, ensure_ascii=False)}: {exc}") from None
