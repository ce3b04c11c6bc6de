"""What a model provider receives and returns: one model call of a run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

# Input items use the Responses API's shapes, which map cleanly onto every provider:
#   {"type": "message", "role": "user"|"assistant", "content": str}
#   {"type": "function_call", "call_id", "name", "arguments"}
#   {"type": "function_call_output", "call_id", "output"}
InputItem = dict[str, Any]


@dataclass
class ModelRequest:
    """Everything a provider needs for one model call of a run."""

    model: str
    instructions: str
    items: list[InputItem]
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    response_format: Any = "auto"
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None

    def last_user_text(self) -> str:
        """Text of the most recent user message ('' when there is none)."""
        for item in reversed(self.items):
            if item.get("type") == "message" and item.get("role") == "user":
                return str(item["content"])
        return ""

    def pending_outputs(self) -> list[InputItem]:
        """The function-call outputs the model has not answered yet (the run is resuming after tool calls)."""
        out: list[InputItem] = []
        for item in reversed(self.items):
            if item.get("type") != "function_call_output":
                break
            out.append(item)
        return list(reversed(out))


@dataclass
class ToolCallRequest:
    """A function call the model wants made."""

    name: str
    arguments: str
    call_id: str = ""


@dataclass
class ModelReply:
    """What the model answered: text, or function calls; and what it cost in tokens."""

    text: str | None = None
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    incomplete_reason: str | None = None  # the answer was cut short: `max_completion_tokens`


class ModelError(Exception):
    """The model call failed; the run fails with this code and message as its `last_error`."""

    def __init__(self, message: str, code: str = "server_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Provider(Protocol):
    """A model provider: answers one model call of a run."""

    name: str

    async def respond(self, request: ModelRequest) -> ModelReply:
        """Answer the request, or raise ModelError."""
        ...


TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]", re.UNICODE)  # what the offline providers count as a token


def count_tokens(text: str) -> int:
    """A deterministic token estimate for the offline providers (words and punctuation marks)."""
    return len(TOKEN_PATTERN.findall(text))


def prompt_tokens(request: ModelRequest) -> int:
    """Deterministic estimate of a request's prompt size."""
    total = count_tokens(request.instructions)
    for item in request.items:
        for key in ("content", "arguments", "output", "name"):
            if key in item:
                total += count_tokens(str(item[key]))
    return total
