"""The `echo` model: deterministic and offline, it replies with the last user message."""

from __future__ import annotations

from runner.server.providers.base import ModelReply, ModelRequest, count_tokens, prompt_tokens


class EchoProvider:
    """Replies with the text of the last user message."""

    name = "echo"

    async def respond(self, request: ModelRequest) -> ModelReply:
        """Echo the last user message back."""
        text = request.last_user_text()
        return ModelReply(text=text, prompt_tokens=prompt_tokens(request), completion_tokens=count_tokens(text))
