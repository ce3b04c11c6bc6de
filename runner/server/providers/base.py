"""What a model provider receives and returns: one model call of a run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from runner.redact import Redactor

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

    def redacted(self, redact: Redactor) -> ModelReply:
        """The reply with the providers' keys replaced by `<NAME>`: an upstream that quotes the request's
        Authorization header back must not put the key into what the backend stores."""
        self.text = redact.text(self.text) if self.text is not None else None
        for call in self.tool_calls:
            call.name, call.arguments, call.call_id = (redact.text(call.name), redact.text(call.arguments),
                                                       redact.text(call.call_id))
        return self


API_ERROR_CODES = ("server_error", "rate_limit_exceeded", "invalid_prompt")  # the codes the APIs' errors may have


def api_error(code: str, message: str, redact: Redactor) -> dict[str, str]:
    """A failed model call as the APIs' error object (a run's `last_error`, a response's `error`): the message
    without the providers' keys (an upstream's error may quote the key it was sent), a code the API does not
    have folded into the message under `server_error`."""
    message = redact.text(message)
    if code not in API_ERROR_CODES:
        message, code = f"{code}: {message}", "server_error"
    return {"code": code, "message": message}


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
