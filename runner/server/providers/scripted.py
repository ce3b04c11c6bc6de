"""The `scripted` model: deterministic and offline, ordered rules map what it sees to what it answers.

A rule has one trigger, a regex searched in the last user message (`user`) or in the tool outputs
just submitted (`tool_output`), and one answer: `reply` text, one `call`, several `calls`, or an
`error` that fails the run. `\\1` and `\\g<name>` in answers insert the trigger's groups.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from typing import Any

from runner.server.providers.base import (
    ModelError,
    ModelReply,
    ModelRequest,
    ToolCallRequest,
    count_tokens,
    prompt_tokens,
)


def _expand(match: re.Match[str], value: Any) -> Any:
    if isinstance(value, str):
        return match.expand(value)
    if isinstance(value, dict):
        return {k: _expand(match, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(match, v) for v in value]
    return value


def _allowed(rule: dict[str, Any], tool_choice: Any) -> bool:
    """Whether a rule's answer is one the run's tool_choice permits (others are passed over)."""
    names = [c["name"] for c in rule.get("calls") or ([rule["call"]] if "call" in rule else [])]
    if tool_choice == "none":
        return not names
    if tool_choice == "required":
        return bool(names) or "error" in rule
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        return tool_choice["function"]["name"] in names or "error" in rule
    return True


class ScriptedProvider:
    """Answers by the first rule whose trigger matches."""

    name = "scripted"

    def __init__(self, rules: Sequence[dict[str, Any]]) -> None:
        self.rules = [
            (rule, re.compile(rule["user"] if "user" in rule else rule["tool_output"]))
            for rule in rules
        ]

    async def respond(self, request: ModelRequest) -> ModelReply:
        """Answer with the first matching rule; fail the run when none matches."""
        outputs = request.pending_outputs()
        if outputs:
            trigger, seen = "tool_output", "\n".join(str(o["output"]) for o in outputs)
        else:
            trigger, seen = "user", request.last_user_text()
        for rule, pattern in self.rules:
            if trigger not in rule or not _allowed(rule, request.tool_choice):
                continue
            match = pattern.search(seen)
            if match is None:
                continue
            return await self._answer(rule, match, request)
        what = "tool outputs" if trigger == "tool_output" else "user message"
        raise ModelError(f"scripted model: no `{trigger}` rule matches the {what} {seen[:200]!r}")

    async def _answer(self, rule: dict[str, Any], match: re.Match[str], request: ModelRequest) -> ModelReply:
        if rule.get("delay_ms"):
            await asyncio.sleep(rule["delay_ms"] / 1000)
        if "error" in rule:
            raise ModelError(_expand(match, rule["error"]))
        calls = rule.get("calls") or ([rule["call"]] if "call" in rule else [])
        if calls:
            requests = [
                ToolCallRequest(name=c["name"], arguments=json.dumps(_expand(match, c.get("arguments", {})),
                                                                     ensure_ascii=False))
                for c in calls
            ]
            completion = sum(count_tokens(c.name) + count_tokens(c.arguments) for c in requests)
            return ModelReply(tool_calls=requests, prompt_tokens=prompt_tokens(request),
                              completion_tokens=completion)
        text = _expand(match, rule["reply"])
        return ModelReply(text=text, prompt_tokens=prompt_tokens(request), completion_tokens=count_tokens(text))
