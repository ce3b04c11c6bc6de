"""A turn's `run:` options: the spec's shorthands put in the API's form, and the checks the schema cannot make."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from runner.spec.model import BUILTIN_TOOLS, RunOptions
from runner.spec.yamlpos import Path as YPath

KEYWORD_CHOICES = ("auto", "none", "required")
HOSTED_TOOLS = BUILTIN_TOOLS  # the API's built-in tools a tool_choice may name

# a problem found in the options: where inside `run:` (a YAML path relative to it) and what is wrong
Problem = tuple[YPath, str]


def api_tool_choice(value: Any) -> Any:
    """A spec's tool_choice as the API writes it: a plain name is a built-in tool or a function."""
    if not isinstance(value, str) or value in KEYWORD_CHOICES:
        return value
    if value in HOSTED_TOOLS:
        return {"type": value}
    return {"type": "function", "function": {"name": value}}


def build_run_options(raw: Mapping[str, Any], tool_names: set[str] | None, model_where: str = "", *,
                      builtins: set[str] | None = None) -> tuple[RunOptions, list[Problem]]:
    """RunOptions from a schema-valid, rendered `run:` mapping, and its problems; `tool_names` are the
    assistant's functions and `builtins` its built-in tools (None for an existing assistant, whose tools the
    spec cannot know)."""
    choice = api_tool_choice(raw.get("tool_choice"))
    problems = (_tool_choice_problems(raw.get("tool_choice"), choice, tool_names, builtins or set())
                if choice is not None else [])
    options = RunOptions(
        tool_choice=choice,
        model=raw.get("model"),
        temperature=raw.get("temperature"),
        top_p=raw.get("top_p"),
        max_prompt_tokens=raw.get("max_prompt_tokens"),
        max_completion_tokens=raw.get("max_completion_tokens"),
        response_format=raw.get("response_format"),
        parallel_tool_calls=raw.get("parallel_tool_calls"),
        truncation_strategy=raw.get("truncation_strategy"),
        model_where=model_where,
    )
    return options, problems


def _tool_choice_problems(written: Any, choice: Any, tool_names: set[str] | None, builtins: set[str]
                          ) -> list[Problem]:
    """A tool_choice must name a tool the run will have (the backend would refuse the run with a 400)."""
    if tool_names is None:
        return []
    here: YPath = ("tool_choice",)
    if choice == "required" and not tool_names:
        return [(here, "'required' needs a function in assistant.tools (none declared)")]
    if not isinstance(choice, dict):
        return []
    kind = choice.get("type")
    if kind in HOSTED_TOOLS:
        if kind in builtins:
            return []
        return [(here, f"{kind!r} needs the {kind} tool, which assistant.tools does not have: add "
                       f"`- {kind}` to assistant.tools")]
    name = str(choice["function"]["name"])
    if name in tool_names:
        return []
    if isinstance(written, str):
        # a plain word may be a misspelt keyword as much as a misspelt function
        candidates = sorted(tool_names) + [*KEYWORD_CHOICES, *HOSTED_TOOLS]
        return [(here, f"{name!r} is neither auto, none, required, file_search, code_interpreter "
                       f"nor a function in assistant.tools{_hint(name, candidates, tool_names)}")]
    return [((*here, "function", "name"),
             f"no function named {name!r} in assistant.tools{_hint(name, sorted(tool_names), tool_names)}")]


def _hint(name: str, candidates: list[str], tool_names: set[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (tools: {', '.join(sorted(tool_names)) or 'none declared'})"
