"""One Responses API `create`: the request checked and made into one model call, the provider's answer made into
the response's output items, status and usage, and what is kept (the response, a conversation's new items).

The model is reached through the backend's ProviderSet as runs reach it, and its answer held to the request's
`tool_choice`, `parallel_tool_calls` and `max_output_tokens` by the same policing (runner.server.budget).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.server import checks, items, objects
from runner.server.budget import model_tool_choice, police_reply
from runner.server.errors import APIError, invalid, shown
from runner.server.ids import new_id
from runner.server.providers import ModelError, ModelReply, ModelRequest
from runner.server.routes.conversations import append_items, conversation_of

if TYPE_CHECKING:
    from runner.redact import Redactor
    from runner.server.app import Backend

_ERROR_CODES = ("server_error", "rate_limit_exceeded", "invalid_prompt")
# a reply cut by the budget: the executor's reason for runs, the Responses API's name for it
_INCOMPLETE_REASONS = {"max_completion_tokens": "max_output_tokens"}


@dataclass
class Prepared:
    """A checked create request: the response as it starts, and the model call it makes."""

    response: dict[str, Any]
    request: ModelRequest
    context: list[dict[str, Any]]  # the stored items before this response's input
    input: list[dict[str, Any]]
    policy: dict[str, Any]  # what police_reply holds the answer to
    resumed: bool
    store: bool
    conversation_id: str | None = None
    output: list[dict[str, Any]] = field(default_factory=list)


def _tools(tools: list[dict[str, Any]] | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the tools as the response shows them, the same as the providers take them: Assistants-style functions);
    400 naming `tools[i].type` for a tool this backend does not execute in Responses."""
    shown_tools, model_tools = [], []
    for i, tool in enumerate(tools or []):
        if tool["type"] != "function":
            raise invalid(f"Tools of type '{shown(tool['type'])}' are not supported in Responses by this backend "
                          "(function tools are).", f"tools[{i}].type")
        if "name" not in tool:
            raise invalid(f"Missing required parameter: 'tools[{i}].name'.", f"tools[{i}].name")
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        shown_tools.append({"type": "function", "parameters": None, "strict": None, **function})
        model_tools.append({"type": "function", "function": function})
    return shown_tools, model_tools


def _tool_choice(choice: Any, tools: list[dict[str, Any]]) -> Any:
    """The request's `tool_choice` as runs hold it (`{"type": "function", "function": {"name"}}`)."""
    if choice == "required" and not tools:
        raise invalid("tool_choice 'required' must be specified with the 'tools' parameter.", "tool_choice")
    if choice is None or isinstance(choice, str):
        return choice or "auto"
    if choice["type"] != "function":
        raise invalid(f"tool_choice of type '{shown(choice['type'])}' is not supported by this backend (none, "
                      "auto, required and a function are).", "tool_choice")
    name = choice.get("name")
    if not isinstance(name, str):
        raise invalid("Missing required parameter: 'tool_choice.name'.", "tool_choice.name")
    if name not in {t["name"] for t in tools}:
        raise invalid(f"tool_choice names the function '{shown(name)}', which is not among the tools.",
                      "tool_choice.name")
    return {"type": "function", "function": {"name": name}}


def _response_format(text: dict[str, Any] | None) -> Any:
    fmt = (text or {}).get("format") or {"type": "text"}
    if fmt["type"] != "json_schema":
        return {"type": fmt["type"]}
    return {"type": "json_schema", "json_schema": {k: fmt[k] for k in ("name", "description", "schema", "strict")
                                                   if k in fmt}}


def _context(b: Backend, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """(the items before this response's input, the conversation it goes into, if any)."""
    previous, conversation = body.get("previous_response_id"), body.get("conversation")
    if previous is not None and conversation is not None:
        raise invalid("previous_response_id and conversation cannot be used together.", "previous_response_id")
    if previous is not None:
        try:
            _, private = b.store.get_with_private("response", previous)
        except APIError:
            raise APIError(404, f"Previous response with id '{shown(previous)}' not found.",
                           param="previous_response_id") from None
        return list(private.get("items", [])), None
    if conversation is not None:
        conversation_id = conversation if isinstance(conversation, str) else conversation["id"]
        conversation_of(b, conversation_id, "conversation")
        return b.store.children("conversation_item", conversation_id), conversation_id
    return [], None


def prepare(b: Backend, body: dict[str, Any]) -> Prepared:
    """A checked create request (400 or 404 naming the parameter), with the response it starts, `in_progress`."""
    for name in checks.RESPONSE_UNSUPPORTED:
        if body.get(name) is not None:
            raise invalid(f"'{name}' is not supported by this backend.", name)
    if body.get("background"):
        raise invalid("Background responses are not supported by this backend.", "background")
    if not body.get("model"):
        raise invalid("Missing required parameter: 'model'.", "model")
    provider_model = b.providers.resolve(body["model"])[1]  # an unknown model is a 400 naming it
    if body.get("input") is None and body.get("conversation") is None and body.get("previous_response_id") is None:
        raise invalid("Missing required parameter: 'input'.", "input")
    shown_tools, model_tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), shown_tools)
    context, conversation_id = _context(b, body)
    new = items.from_input(body.get("input"), "input")
    extra, model_items = items.model_input(context + new)
    instructions = "\n\n".join(t for t in [body.get("instructions") or "", *extra] if t)
    # answering its own calls' outputs, a forced choice is free again, as a run's (runner.server.budget)
    resumed = bool(new) and new[-1]["type"] == "function_call_output"
    parallel = body.get("parallel_tool_calls")
    parallel = True if parallel is None else parallel
    # the API's sampling defaults, sent upstream as the response shows them (a server defaulting to greedy
    # decoding otherwise samples differently from what the response says: llama.cpp's repeats without end)
    temperature, top_p = body.get("temperature", 1.0), body.get("top_p", 1.0)
    request = ModelRequest(
        model=provider_model, instructions=instructions, items=model_items, tools=model_tools,
        tool_choice=model_tool_choice(choice, resumed), parallel_tool_calls=parallel,
        response_format=_response_format(body.get("text")), temperature=temperature,
        top_p=top_p, max_output_tokens=body.get("max_output_tokens"),
    )
    text = dict(body.get("text") or {})
    text.setdefault("format", {"type": "text"})
    response = {
        "id": new_id("resp_"), "object": "response", "created_at": objects.now(), "status": "in_progress",
        "background": False, "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or {}, "model": body["model"], "output": [], "parallel_tool_calls": parallel,
        "temperature": temperature, "top_p": top_p,
        "tool_choice": body.get("tool_choice") or "auto", "tools": shown_tools,
        "max_output_tokens": body.get("max_output_tokens"), "previous_response_id": body.get("previous_response_id"),
        "conversation": {"id": conversation_id} if conversation_id else None, "text": text,
        "truncation": "disabled", "completed_at": None,  # `usage` comes with the answer
    }
    return Prepared(objects.validated_response(response), request, context, new,
                    {"tool_choice": choice, "parallel_tool_calls": parallel,
                     "max_completion_tokens": body.get("max_output_tokens")},
                    resumed, store=body.get("store") is not False, conversation_id=conversation_id)


def _redacted(reply: ModelReply, redact: Redactor) -> ModelReply:
    """The reply with the providers' keys replaced (an upstream quoting its Authorization header back)."""
    reply.text = redact.text(reply.text) if reply.text is not None else None
    for call in reply.tool_calls:
        call.name, call.arguments, call.call_id = (redact.text(call.name), redact.text(call.arguments),
                                                   redact.text(call.call_id))
    return reply


def _exists(b: Backend, conversation_id: str) -> bool:
    try:
        conversation_of(b, conversation_id)
    except APIError:
        return False
    return True


def _output(reply: ModelReply) -> list[dict[str, Any]]:
    out = [items.function_call_item(call.call_id or new_id("call_"), call.name, call.arguments)
           for call in reply.tool_calls]
    if reply.text is not None and (reply.text or not out):
        out.append(items.message_item("assistant", reply.text,
                                      status="incomplete" if reply.incomplete_reason else "completed"))
    return out


async def complete(b: Backend, prepared: Prepared) -> dict[str, Any]:
    """Call the model, finish the response (`completed`, `incomplete` or `failed`) and keep what is kept."""
    response = dict(prepared.response)
    redact = b.providers.redact
    reply = ModelReply()  # what a failed call cost, as far as this backend knows: nothing
    try:
        provider, _ = b.providers.resolve(response["model"])
        reply = police_reply(_redacted(await provider.respond(prepared.request), redact), prepared.policy,
                             resumed=prepared.resumed)
    except ModelError as exc:
        code, message = exc.code, redact.text(exc.message)  # an upstream's error may quote the key it was sent
        if code not in _ERROR_CODES:
            message, code = f"{code}: {message}", "server_error"
        response.update(status="failed", error={"code": code, "message": message})
    else:
        response["output"] = _output(reply)
        if reply.incomplete_reason:
            reason = _INCOMPLETE_REASONS.get(reply.incomplete_reason, reply.incomplete_reason)
            response.update(status="incomplete", incomplete_details={"reason": reason})
        else:
            response.update(status="completed", completed_at=objects.now())
    response["usage"] = {"input_tokens": reply.prompt_tokens,
                         "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                         "output_tokens": reply.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                         "total_tokens": reply.prompt_tokens + reply.completion_tokens}
    response = objects.validated_response(response)
    prepared.output = response["output"]
    with b.store.transaction():
        if prepared.store:
            b.store.insert("response", response, private={
                "items": [*prepared.context, *prepared.input, *prepared.output], "input": prepared.input})
        # a failed response adds nothing (the client's retry must not find its input twice), nor does one whose
        # conversation was deleted while the model answered
        if (prepared.conversation_id is not None and response["status"] != "failed"
                and _exists(b, prepared.conversation_id)):
            append_items(b, prepared.conversation_id, [*prepared.input, *prepared.output])
    return response
