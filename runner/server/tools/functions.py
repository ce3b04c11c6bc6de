"""The built-in tools as a model is offered them: functions that the backend answers itself.

No upstream model knows this backend's `file_search` or `code_interpreter`, so each built-in tool of a run goes to
the model as a function tool of the same name; a call to it is run by the backend (a step of the official kind,
not a `requires_action`), and its output goes back to the model, until the model replies.
"""

from __future__ import annotations

import json
from typing import Any

FILE_SEARCH_FUNCTION: dict[str, Any] = {"type": "function", "function": {
    "name": "file_search",
    "description": ("Search the files the user and the assistant have provided for passages relevant to a query. "
                    "Use it whenever the answer may be in those files, and cite the passages you use by copying "
                    "their markers (like 【0:0†source】) into your reply."),
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "description": "What to look for: a question or keywords."}},
        "required": ["query"], "additionalProperties": False},
}}
CODE_INTERPRETER_FUNCTION: dict[str, Any] = {"type": "function", "function": {
    "name": "code_interpreter",
    "description": ("Run Python code in a stateful session (variables persist between calls) with the user's files "
                    "in /mnt/data, and read what it printed. Use it to compute, analyse data and draw charts "
                    "(matplotlib figures are shown to the user); files written to /mnt/data can be linked in your "
                    "reply as sandbox:/mnt/data/NAME. There is no network."),
    "parameters": {"type": "object", "properties": {
        "code": {"type": "string", "description": "The Python code to run."}},
        "required": ["code"], "additionalProperties": False},
}}
BUILTIN_FUNCTIONS = {"file_search": FILE_SEARCH_FUNCTION, "code_interpreter": CODE_INTERPRETER_FUNCTION}
MAX_BUILTIN_ROUNDS = 8  # model calls in a row answered by built-in tools before the model must reply


def builtin_names(tools: list[dict[str, Any]], available: frozenset[str]) -> frozenset[str]:
    """The built-in tools of a run that its model may call, by name: those among its tools that the backend can
    run (`available`), except where one of its own functions has the name (the client's function is called then)."""
    functions = {t["function"]["name"] for t in tools if t.get("type") == "function"}
    return frozenset(t["type"] for t in tools
                     if t.get("type") in available and t["type"] in BUILTIN_FUNCTIONS and t["type"] not in functions)


def model_tools(tools: list[dict[str, Any]], builtins: frozenset[str]) -> list[dict[str, Any]]:
    """The run's tools as the model is offered them: its functions, and each of `builtins` as a function."""
    return [t for t in tools if t.get("type") == "function"] + [BUILTIN_FUNCTIONS[name] for name in sorted(builtins)]


def search_query(arguments: str) -> str:
    """The query of a model's `file_search` call: its `query` argument (a small model may send the query as
    bare text, or a list of `queries`, and is taken at its word)."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments.strip()
    if isinstance(parsed, dict):
        if isinstance(parsed.get("query"), str):
            return str(parsed["query"])
        queries = parsed.get("queries")
        if isinstance(queries, list):
            return " ".join(str(q) for q in queries)
        return " ".join(str(v) for v in parsed.values() if isinstance(v, str))
    return parsed if isinstance(parsed, str) else arguments.strip()


def code_argument(arguments: str) -> str:
    """The code of a model's `code_interpreter` call: its `code` argument (a small model may send the code bare,
    or under another name, and is taken at its word)."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(parsed, dict):
        if isinstance(parsed.get("code"), str):
            return str(parsed["code"])
        strings = [v for v in parsed.values() if isinstance(v, str)]
        return strings[0] if len(strings) == 1 else arguments
    return parsed if isinstance(parsed, str) else arguments
