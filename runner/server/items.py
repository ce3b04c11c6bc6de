"""Responses-style items: what a request gives (`input`, a conversation's `items`) made into the stored items the
Conversations and Responses APIs show, and the stored items made into the providers' model input.

The stored form is the SDK's `ConversationItem` (a message with typed content parts, a `function_call`, a
`function_call_output`, a built-in tool's call), validated by the SDK's type so it cannot drift from the API. The
backend speaks messages with text, function calls and its built-in tools' calls: any other item or content part is
a 400 naming where it was given. The model reads the messages and the function calls; the built-in calls of earlier
responses it does not read again, as a thread's runs do not (their results stay in what the model replied).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pydantic

from runner.server.errors import invalid, shown
from runner.server.ids import new_id

ROLES = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text", "text")


@cache
def _item_type() -> pydantic.TypeAdapter[Any]:
    from openai.types.conversations.conversation_item import ConversationItem

    return pydantic.TypeAdapter(ConversationItem)


def validated(item: dict[str, Any], param: str) -> dict[str, Any]:
    """A stored item checked by the SDK's `ConversationItem` type and dumped back (400 naming `param`)."""
    try:
        model = _item_type().validate_python(item)
    except pydantic.ValidationError as exc:
        raise invalid(f"Invalid value for '{param}': {exc.errors()[0]['msg']}.", param) from None
    body: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True, by_alias=True)
    return body


def _text(content: Any, param: str) -> str:
    """The text of a message's content (a string, or text parts); 400 naming the first part that is not text."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"Invalid type for '{param}': expected a string or an array of content parts.", param)
    texts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            raise invalid(f"Only text content parts ({', '.join(_TEXT_PARTS)}) are supported by this backend; "
                          f"got '{shown(str(kind))}'.", f"{param}[{i}]")
        texts.append(part["text"])
    return "".join(texts)


def _string(item: dict[str, Any], key: str, param: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        if value is None:
            raise invalid(f"Missing required parameter: '{param}.{key}'.", f"{param}.{key}")
        raise invalid(f"Invalid type for '{param}.{key}': expected a string.", f"{param}.{key}")
    return value


def message_item(role: str, text: str, *, status: str = "completed", item_id: str | None = None) -> dict[str, Any]:
    """A stored message item holding one text part (`output_text` for the assistant, `input_text` otherwise)."""
    part: dict[str, Any] = ({"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                            if role == "assistant" else {"type": "input_text", "text": text})
    return {"id": item_id or new_id("msg_"), "type": "message", "role": role, "status": status, "content": [part]}


def function_call_item(call_id: str, name: str, arguments: str, item_id: str | None = None) -> dict[str, Any]:
    """A stored `function_call` item (completed: the client answers it with a `function_call_output`)."""
    return {"id": item_id or new_id("fc_"), "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": "completed"}


def from_request(item: Any, param: str) -> dict[str, Any]:
    """One item a request gave (a message, easy or typed; a function call; a function call's output) in the
    stored form; 400 naming `param` (or inside it) for what this backend does not take."""
    if not isinstance(item, dict):
        raise invalid(f"Invalid type for '{param}': expected an object.", param)
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in ROLES:
            raise invalid(f"Invalid value for '{param}.role': expected one of {', '.join(ROLES)}.", f"{param}.role")
        if "content" not in item:
            raise invalid(f"Missing required parameter: '{param}.content'.", f"{param}.content")
        stored = message_item(role, _text(item["content"], f"{param}.content"))
    elif kind == "function_call":
        stored = function_call_item(_string(item, "call_id", param), _string(item, "name", param),
                                    _string(item, "arguments", param))
    elif kind == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else _text(output, f"{param}.output")
        stored = {"id": new_id("fco_"), "type": "function_call_output", "call_id": _string(item, "call_id", param),
                  "output": text, "status": "completed"}
    elif kind in ("file_search_call", "code_interpreter_call"):  # a response's output handed back as input
        return _builtin_call(item, kind, param)
    else:
        raise invalid(f"Items of type '{shown(str(kind))}' are not supported by this backend (messages, "
                      "function_call, function_call_output, file_search_call and code_interpreter_call are).",
                      f"{param}.type")
    return validated(stored, param)


def _builtin_call(item: dict[str, Any], kind: str, param: str) -> dict[str, Any]:
    """A built-in tool's call handed back as input, checked by its own SDK type (400 naming the field that is
    wrong) and stored with a new id (ids are the store's: a call handed to two conversations is two items) and
    only the fields the API defines."""
    from openai.types.responses import ResponseCodeInterpreterToolCall, ResponseFileSearchToolCall

    model_type = ResponseFileSearchToolCall if kind == "file_search_call" else ResponseCodeInterpreterToolCall
    fields = {k: item[k] for k in model_type.model_fields if k in item and k != "id"}
    fields.setdefault("status", "completed")
    try:
        model = model_type.model_validate({**fields, "id": new_id("fs_" if kind == "file_search_call" else "ci_")})
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join([param, *(str(part) for part in error["loc"])])
        raise invalid(f"Invalid value for '{where}': {error['msg']}.", where) from None
    body: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True)
    return body


def from_input(given: Any, param: str) -> list[dict[str, Any]]:
    """The stored items of a request's `input` (a string is one user message) or `items` list."""
    if isinstance(given, str):
        return [validated(message_item("user", given), param)]
    return [from_request(item, f"{param}[{i}]") for i, item in enumerate(given or [])]


def text_of(item: dict[str, Any]) -> str:
    """The text of a stored message item."""
    return "".join(str(part.get("text", "")) for part in item.get("content") or [])


def model_input(items: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Stored items as the providers take them: (system and developer texts, to join the instructions; the
    model's input items: user and assistant messages, function calls and their outputs)."""
    extra: list[str] = []
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item["type"]
        if kind == "message" and item["role"] in ("system", "developer"):
            extra.append(text_of(item))  # the providers take one set of instructions
        elif kind == "message":
            out.append({"type": "message", "role": item["role"], "content": text_of(item)})
        elif kind == "function_call":
            out.append({"type": "function_call", "call_id": item["call_id"], "name": item["name"],
                        "arguments": item["arguments"]})
        elif kind == "function_call_output":
            out.append({"type": "function_call_output", "call_id": item["call_id"], "output": item["output"]})
    return extra, out
