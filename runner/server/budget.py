"""A run's parameters that shape one model call: what context it sees, and what of its answer may stand.

`truncation_strategy` and `max_prompt_tokens` decide which thread messages go in; `max_completion_tokens`,
`tool_choice` and `parallel_tool_calls` police the answer, so the rules hold on every provider, the
offline ones included (live upstreams enforce them too; policing again is harmless).
"""

from __future__ import annotations

from typing import Any

from runner.server.providers.base import TOKEN_PATTERN, ModelError, ModelReply, count_tokens


def select_messages(messages: list[dict[str, Any]], truncation: dict[str, Any] | None,
                    max_prompt_tokens: int | None, fixed_tokens: int) -> list[dict[str, Any]] | None:
    """The thread messages (input items with text `content`) a run's model call sees, oldest first; None
    when even the newest overflows the prompt budget (the run then ends `incomplete`, `max_prompt_tokens`).

    `fixed_tokens` is what the call carries besides messages (instructions, the run's own tool calls).
    """
    if truncation and truncation.get("type") == "last_messages" and truncation.get("last_messages"):
        messages = messages[-int(truncation["last_messages"]):]
    if max_prompt_tokens is None:
        return messages
    sizes = [count_tokens(str(m["content"])) for m in messages]
    total = fixed_tokens + sum(sizes)
    start = 0
    # `auto` (and `last_messages`) drop the oldest messages until the prompt fits
    while total > max_prompt_tokens and start < len(messages) - 1:
        total -= sizes[start]
        start += 1
    if total > max_prompt_tokens:
        return None
    return messages[start:]


def model_tool_choice(choice: Any, resumed: bool) -> Any:
    """The tool_choice one model call of a run is held to, given the run's (`resumed`: the run's own tool
    calls have their outputs, and the model is answering them).

    A forced call (`required`, or a named function) binds the run's first model call only: the model must
    be free to answer the outputs, or a forced run would call tools until it expires. A built-in tool
    (`file_search`, `code_interpreter`) is never a model's to call here: a forced `file_search` is run by the
    backend before the model is called (the executor), so every model call of such a run is `auto`.
    """
    choice = choice or "auto"
    if isinstance(choice, dict) and choice.get("type") != "function":
        return "auto"
    if resumed and (choice == "required" or isinstance(choice, dict)):
        return "auto"
    return choice


def police_reply(reply: ModelReply, run: dict[str, Any], *, resumed: bool = False) -> ModelReply:
    """Hold the answer to the run's tool_choice (as `model_tool_choice` applies it), parallel_tool_calls and
    max_completion_tokens."""
    choice = model_tool_choice(run.get("tool_choice"), resumed)
    if choice == "none" and reply.tool_calls:
        raise ModelError("the model called a function although tool_choice is 'none'")
    if choice == "required" and not reply.tool_calls:
        raise ModelError("tool_choice is 'required' but the model answered without calling a function")
    if isinstance(choice, dict) and choice.get("type") == "function":
        wanted = choice["function"]["name"]
        if not any(call.name == wanted for call in reply.tool_calls):
            raise ModelError(f"tool_choice requires a call to {wanted} but the model did not make one")
    if not run.get("parallel_tool_calls", True) and len(reply.tool_calls) > 1:
        reply.tool_calls = reply.tool_calls[:1]
    budget = run.get("max_completion_tokens")
    if budget is not None and reply.text is not None and reply.completion_tokens > budget:
        # cut at the budget's last token; text shorter than the budget (the upstream counts tokens its own
        # way) stays whole
        spans = list(TOKEN_PATTERN.finditer(reply.text))
        if len(spans) > budget:
            reply.text = reply.text[: spans[budget - 1].end()]
        reply.completion_tokens = budget
        reply.incomplete_reason = "max_completion_tokens"
    return reply
