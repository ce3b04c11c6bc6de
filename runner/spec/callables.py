"""User code named by a spec (`module:function`): found beside the spec first, then on the Python path."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


class CallableNotFound(Exception):
    """A `module:function` that cannot be imported or is not callable."""


def resolve_callable(reference: str, spec_file: str) -> Callable[..., Any]:
    """The function `reference` names, importing its module with the spec's folder on the path."""
    module_name, _, attr = reference.partition(":")
    folder = str(Path(spec_file).resolve().parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import error, or the module's own error at import: both are the user's to fix
        raise CallableNotFound(f"cannot import {module_name} (for {reference}): {type(exc).__name__}: {exc}") from None
    finally:
        if added:
            sys.path.remove(folder)
    target = getattr(module, attr, None)
    if not callable(target):
        raise CallableNotFound(f"{module_name} has no function {attr!r} (for {reference})")
    return target


def spec_callables(spec: Any) -> list[tuple[str, str]]:
    """Every (where, `module:function`) a spec names: python checks and python tool handlers."""
    found: list[tuple[str, str]] = []

    def walk(checks: Any) -> None:
        for check in checks:
            if check.type == "python":
                found.append((check.where, check.arg if isinstance(check.arg, str) else check.arg["function"]))
            elif check.type == "not":
                walk([check.arg])
            elif check.type in ("all", "any"):
                walk(check.arg)

    walk(spec.expect)
    for turn in spec.turns:
        walk(turn.expect)
        for handler in turn.tool_outputs.values():
            if handler.python:
                found.append((spec.file, handler.python))
    return found
