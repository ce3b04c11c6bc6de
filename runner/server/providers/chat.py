"""The `chat` provider: any OpenAI-compatible Chat Completions server (Ollama, vLLM, llama.cpp, LM Studio)."""

from __future__ import annotations

from typing import Any

from runner.server.providers.base import ModelError, ModelReply, ModelRequest, ToolCallRequest
from runner.server.providers.upstream import UpstreamProvider, upstream_error


def chat_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """The run's context as Chat Completions messages (consecutive function calls share one assistant turn)."""
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    for item in request.items:
        if item["type"] == "message":
            messages.append({"role": item["role"], "content": item["content"]})
        elif item["type"] == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and last.get("tool_calls") and not last.get("content"):
                last["tool_calls"].append(call)
            else:  # no `content` key: llama.cpp-family servers refuse `"content": null` (llama-cpp-python: 500)
                messages.append({"role": "assistant", "tool_calls": [call]})
        elif item["type"] == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
    return messages


class ChatCompletionsProvider(UpstreamProvider):
    """Answers through `/chat/completions`."""

    name = "chat"

    async def respond(self, request: ModelRequest) -> ModelReply:
        """One Chat Completions call; its tool calls become the run's required action."""
        params: dict[str, Any] = {"model": request.model, "messages": chat_messages(request)}
        tools = [t for t in request.tools if t.get("type") == "function"]
        if tools:
            params["tools"] = tools
            params["parallel_tool_calls"] = request.parallel_tool_calls
            if request.tool_choice is not None:
                params["tool_choice"] = request.tool_choice
        if isinstance(request.response_format, dict):
            params["response_format"] = request.response_format
        for key in ("temperature", "top_p"):
            if getattr(request, key) is not None:
                params[key] = getattr(request, key)
        if request.max_output_tokens is not None:
            params["max_tokens"] = request.max_output_tokens
        try:
            completion = await self._get_client().chat.completions.create(**params)
        except Exception as exc:
            raise upstream_error(exc, self.name, self.redact) from None
        if not completion.choices:
            raise ModelError("chat provider: the upstream answered without any choice")
        choice = completion.choices[0]
        message = choice.message
        calls = [ToolCallRequest(name=c.function.name, arguments=c.function.arguments or "{}", call_id=c.id)
                 for c in (message.tool_calls or []) if getattr(c, "function", None) is not None]
        usage = completion.usage
        return ModelReply(
            text=None if calls else (message.content or ""), tool_calls=calls,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            incomplete_reason="max_completion_tokens" if choice.finish_reason == "length" else None,
        )
