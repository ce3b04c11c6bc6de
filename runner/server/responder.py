"""One Responses API `create`: the request checked and made into one model call, the provider's answer made into
the response's output items, status and usage, and what is kept (the response, a conversation's new items).

The model is reached through the backend's ProviderSet as runs reach it, and its answer held to the request's
`tool_choice`, `parallel_tool_calls` and `max_output_tokens` by the same policing (runner.server.budget).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.server import checks, items, objects, response_tools
from runner.server.budget import model_tool_choice, police_reply
from runner.server.errors import APIError, invalid, shown
from runner.server.ids import new_id
from runner.server.providers import ModelError, ModelReply, ModelRequest
from runner.server.providers.base import api_error
from runner.server.routes.conversations import append_items, conversation_of
from runner.server.tools.functions import (
    BUILTIN_FUNCTIONS,
    MAX_BUILTIN_ROUNDS,
    builtin_names,
    code_argument,
    model_tools,
    search_query,
)

if TYPE_CHECKING:
    from runner.server.app import Backend

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
    functions: list[dict[str, Any]] = field(default_factory=list)  # the request's functions, as providers take them
    builtins: response_tools.Builtins = field(default_factory=response_tools.Builtins)
    offered: frozenset[str] = frozenset()  # the built-in tools the model is offered as functions
    forced: str | None = None  # the built-in tool `tool_choice` asks for: called before the model
    include: list[str] = field(default_factory=list)


def _tools(b: Backend, tools: list[dict[str, Any]] | None, builtins: response_tools.Builtins,
           context: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the tools as the response shows them, the functions among them as the providers take them:
    Assistants-style); the built-in tools noted in `builtins`; 400 naming `tools[i].type` for a tool this backend
    does not run in Responses."""
    shown_tools, functions = [], []
    for i, tool in enumerate(tools or []):
        if tool["type"] in BUILTIN_FUNCTIONS:
            shown_tools.append(response_tools.check_tool(b, tool, i, builtins, context))
            continue
        if tool["type"] != "function":
            raise invalid(f"Tools of type '{shown(tool['type'])}' are not supported in Responses by this backend "
                          "(function, file_search and code_interpreter tools are).", f"tools[{i}].type")
        if "name" not in tool:
            raise invalid(f"Missing required parameter: 'tools[{i}].name'.", f"tools[{i}].name")
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        shown_tools.append({"type": "function", "parameters": None, "strict": None, **function})
        functions.append({"type": "function", "function": function})
    return shown_tools, functions


def _tool_choice(choice: Any, tools: list[dict[str, Any]]) -> Any:
    """The request's `tool_choice` as runs hold it (`{"type": "function", "function": {"name"}}`, or a built-in
    tool's `{"type": "file_search"}`)."""
    if choice == "required" and not tools:
        raise invalid("tool_choice 'required' must be specified with the 'tools' parameter.", "tool_choice")
    if choice is None or isinstance(choice, str):
        return choice or "auto"
    if choice["type"] in BUILTIN_FUNCTIONS:
        if choice["type"] not in {t["type"] for t in tools}:
            raise invalid(f"tool_choice names the tool '{choice['type']}', which is not among the tools.",
                          "tool_choice.type")
        return {"type": choice["type"]}
    if choice["type"] != "function":
        raise invalid(f"tool_choice of type '{shown(choice['type'])}' is not supported by this backend (none, "
                      "auto, required, a function, file_search and code_interpreter are).", "tool_choice")
    name = choice.get("name")
    if not isinstance(name, str):
        raise invalid("Missing required parameter: 'tool_choice.name'.", "tool_choice.name")
    if name not in {t.get("name") for t in tools}:
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
    context, conversation_id = _context(b, body)
    new = items.from_input(body.get("input"), "input")
    builtins = response_tools.Builtins()
    # the container of the last code call given, stored or handed back in the input, is the one `auto` reuses
    shown_tools, functions = _tools(b, body.get("tools"), builtins, context + new)
    choice = _tool_choice(body.get("tool_choice"), shown_tools)
    extra, model_items = items.model_input(context + new)
    instructions = "\n\n".join(t for t in [body.get("instructions") or "", *extra] if t)
    # answering its own calls' outputs, a forced choice is free again, as a run's (runner.server.budget)
    resumed = bool(new) and new[-1]["type"] == "function_call_output"
    parallel = body.get("parallel_tool_calls")
    parallel = True if parallel is None else parallel
    # the API's sampling defaults, sent upstream as the response shows them (a server defaulting to greedy
    # decoding otherwise samples differently from what the response says: llama.cpp's repeats without end)
    temperature, top_p = body.get("temperature", 1.0), body.get("top_p", 1.0)
    # a forced built-in tool binds a create as a forced function does: not one answering its own calls' outputs
    forced = (choice["type"] if isinstance(choice, dict) and choice["type"] in BUILTIN_FUNCTIONS and not resumed
              else None)
    offered = builtin_names([*functions, *({"type": name} for name in builtins.names)], builtins.names)
    request = ModelRequest(
        model=provider_model, instructions=instructions, items=model_items, tools=model_tools(functions, offered),
        tool_choice=model_tool_choice("auto" if forced else choice, resumed), parallel_tool_calls=parallel,
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
                    {"tool_choice": "auto" if forced else choice, "parallel_tool_calls": parallel,
                     "max_completion_tokens": body.get("max_output_tokens")},
                    resumed, store=body.get("store") is not False, conversation_id=conversation_id,
                    functions=functions, builtins=builtins, offered=offered, forced=forced,
                    include=list(body.get("include") or []))


def _exists(b: Backend, conversation_id: str) -> bool:
    try:
        conversation_of(b, conversation_id)
    except APIError:
        return False
    return True


def _output(reply: ModelReply, calls: response_tools.Calls) -> list[dict[str, Any]]:
    out = [items.function_call_item(call.call_id or new_id("call_"), call.name, call.arguments)
           for call in reply.tool_calls]
    if reply.text is not None and (reply.text or not out):
        message = items.message_item("assistant", reply.text,
                                     status="incomplete" if reply.incomplete_reason else "completed")
        message["content"][0]["annotations"] = response_tools.reply_annotations(reply.text, calls)
        out.append(message)
    return out


def _last_user_text(prepared: Prepared) -> str:
    users = [item for item in [*prepared.context, *prepared.input]
             if item["type"] == "message" and item["role"] == "user"]
    return items.text_of(users[-1]) if users else ""


async def _builtin_calls(b: Backend, prepared: Prepared, calls: response_tools.Calls,
                         made: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Run the model's built-in calls (call id, tool, its arguments), their outputs added to the model's input;
    their output items."""
    out = []
    for call_id, name, arguments in made:
        if name == "file_search":
            item, output = await response_tools.search(b, prepared.builtins, calls, search_query(arguments))
        else:
            item, output = await response_tools.run_code(b, prepared.builtins, calls, code_argument(arguments))
        out.append(item)
        prepared.request.items += [{"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments},
                                   {"type": "function_call_output", "call_id": call_id, "output": output}]
    return out


async def _answer(b: Backend, prepared: Prepared) -> tuple[ModelReply, list[dict[str, Any]]]:
    """The model's answer and the response's output items: the model called until it replies or calls a client
    function, the built-in calls it makes run in between (at most MAX_BUILTIN_ROUNDS in a row)."""
    request, calls, output = prepared.request, response_tools.Calls(), []
    resumed, used = prepared.resumed, ModelReply()
    provider, _ = b.providers.resolve(prepared.response["model"])
    if prepared.forced:  # the forced tool runs on the user's words, as a run's does; then the model is free
        argument = "query" if prepared.forced == "file_search" else "code"
        output += await _builtin_calls(b, prepared, calls, [
            (new_id("call_"), prepared.forced, json.dumps({argument: _last_user_text(prepared)}))])
        resumed = True
    for rounds in range(MAX_BUILTIN_ROUNDS + 1):
        offered = prepared.offered if rounds < MAX_BUILTIN_ROUNDS else frozenset()
        request.tools = model_tools(prepared.functions, offered)
        request.tool_choice = model_tool_choice(prepared.policy["tool_choice"], resumed)
        reply = police_reply((await provider.respond(request)).redacted(b.providers.redact), prepared.policy,
                             resumed=resumed)
        used.prompt_tokens += reply.prompt_tokens
        used.completion_tokens += reply.completion_tokens
        builtin = [c for c in reply.tool_calls if c.name in prepared.offered]
        if builtin and not offered:
            raise ModelError(f"the model called {builtin[0].name} {MAX_BUILTIN_ROUNDS} times in a row without "
                             "replying")
        if builtin:
            output += await _builtin_calls(b, prepared, calls, [(c.call_id or new_id("call_"), c.name, c.arguments)
                                                                 for c in builtin])
            reply.tool_calls = [c for c in reply.tool_calls if c not in builtin]
            resumed = True
            if not reply.tool_calls:
                continue  # the model reads what the tools gave
        reply.prompt_tokens, reply.completion_tokens = used.prompt_tokens, used.completion_tokens
        return reply, output + _output(reply, calls)
    raise AssertionError("unreachable: the last round offers no built-in tool")


async def complete(b: Backend, prepared: Prepared) -> dict[str, Any]:
    """Call the model, finish the response (`completed`, `incomplete` or `failed`) and keep what is kept; the
    response as stored (whole: `include` is the caller's to apply)."""
    response = dict(prepared.response)
    reply = ModelReply()  # what a failed call cost, as far as this backend knows: nothing
    try:
        reply, output = await _answer(b, prepared)
    except ModelError as exc:
        response.update(status="failed", error=api_error(exc.code, exc.message, b.providers.redact))
    else:
        response["output"] = output
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
