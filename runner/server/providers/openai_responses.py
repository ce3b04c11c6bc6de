"""The `openai` provider: a real model through the OpenAI Responses API (or any server speaking it)."""

from __future__ import annotations

from typing import Any

from runner.server.providers.base import ModelError, ModelReply, ModelRequest, ToolCallRequest
from runner.server.providers.upstream import UpstreamProvider, upstream_error


def responses_input(request: ModelRequest) -> list[dict[str, Any]]:
    """The run's context as Responses input items, each in its full typed form (llama.cpp's server refuses
    the untyped shorthand `{"role", "content": str}` with 400 "Cannot determine type of 'item'")."""
    items: list[dict[str, Any]] = []
    for item in request.items:
        if item["type"] == "message":
            part = "output_text" if item["role"] == "assistant" else "input_text"  # the API's rule per role
            items.append({"type": "message", "role": item["role"],
                          "content": [{"type": part, "text": str(item["content"])}]})
        elif item["type"] == "function_call":
            items.append({"type": "function_call", "call_id": item["call_id"], "name": item["name"],
                          "arguments": item["arguments"]})
        elif item["type"] == "function_call_output":
            items.append({"type": "function_call_output", "call_id": item["call_id"], "output": item["output"]})
    return items


def responses_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assistants function tools as Responses tools (the other Assistants tools have no upstream here)."""
    out = []
    for tool in tools:
        if tool.get("type") != "function":
            continue
        function = tool["function"]
        converted: dict[str, Any] = {"type": "function", "name": function["name"],
                                     "parameters": function.get("parameters") or {"type": "object", "properties": {}}}
        if function.get("description"):
            converted["description"] = function["description"]
        converted["strict"] = bool(function.get("strict"))
        out.append(converted)
    return out


def responses_tool_choice(choice: Any) -> Any:
    """An Assistants tool_choice as the Responses API writes it."""
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "name": choice["function"]["name"]}
    return choice


def responses_text_format(response_format: Any) -> dict[str, Any] | None:
    """An Assistants response_format as the Responses `text.format` (None for `auto`)."""
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        out = {"type": "json_schema", "name": spec.get("name", "response"), "schema": spec.get("schema") or {}}
        for key in ("description", "strict"):
            if spec.get(key) is not None:
                out[key] = spec[key]
        return out
    return {"type": response_format.get("type", "text")}


class OpenAIResponsesProvider(UpstreamProvider):
    """Answers through the Responses API."""

    name = "openai"

    async def respond(self, request: ModelRequest) -> ModelReply:
        """One Responses call; its function calls become the run's required action."""
        params: dict[str, Any] = {"model": request.model, "input": responses_input(request), "store": False}
        if request.instructions:
            params["instructions"] = request.instructions
        tools = responses_tools(request.tools)
        if tools:
            params["tools"] = tools
            params["parallel_tool_calls"] = request.parallel_tool_calls
            if request.tool_choice is not None:
                params["tool_choice"] = responses_tool_choice(request.tool_choice)
        text_format = responses_text_format(request.response_format)
        if text_format is not None:
            params["text"] = {"format": text_format}
        for key in ("temperature", "top_p"):
            if getattr(request, key) is not None:
                params[key] = getattr(request, key)
        if request.max_output_tokens is not None:
            params["max_output_tokens"] = request.max_output_tokens
        try:
            response = await self._get_client().responses.create(**params)
        except Exception as exc:
            raise upstream_error(exc, self.name, self.redact) from None
        return self._reply(response)

    def _reply(self, response: Any) -> ModelReply:
        if getattr(response, "error", None):
            raise ModelError(f"openai provider: {response.error.code}: {response.error.message}")
        texts: list[str] = []
        calls: list[ToolCallRequest] = []
        for item in response.output or []:
            if item.type == "message":
                texts.extend(part.text for part in item.content if part.type == "output_text")
            elif item.type == "function_call":
                calls.append(ToolCallRequest(name=item.name, arguments=item.arguments, call_id=item.call_id))
        usage = response.usage
        incomplete = None
        if response.status == "incomplete" and response.incomplete_details is not None:
            incomplete = "max_completion_tokens" if response.incomplete_details.reason == "max_output_tokens" else None
        return ModelReply(
            text="".join(texts) if not calls else None, tool_calls=calls,
            prompt_tokens=usage.input_tokens if usage else 0, completion_tokens=usage.output_tokens if usage else 0,
            incomplete_reason=incomplete,
        )
