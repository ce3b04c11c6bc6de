"""Which variables a spec file uses: declared under `vars`, crossed by its `matrix`, or named by a template.

For `--var NAME=...`: a name that no selected spec uses is a typo, and silently ignoring it would run the
suite with the value the user meant to replace.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jinja2 import TemplateError, meta

from runner.spec.load import jinja_env
from runner.spec.yamlpos import load_yaml

_MATRIX_KEYWORDS = frozenset({"include", "exclude"})


def variables_used(file: str | Path) -> set[str]:
    """Every variable name the spec file declares, crosses or reads in a template (none for a file that
    cannot be read or parsed: loading it reports why)."""
    try:
        data = load_yaml(Path(file).read_text(encoding="utf-8"), str(file)).data
    except Exception:  # noqa: BLE001  # the loader has already said what is wrong with such a file
        return set()
    if not isinstance(data, dict):
        return set()
    names: set[str] = set()
    for section in ("vars", "matrix"):
        if isinstance(data.get(section), dict):
            names |= {str(key) for key in data[section] if key not in _MATRIX_KEYWORDS or section == "vars"}
    if isinstance(data.get("matrix"), dict):
        for extra in data["matrix"].get("include") or []:
            if isinstance(extra, dict):
                names |= {str(key) for key in extra}
    env = jinja_env()
    for text in _strings(data):
        if "{{" in text or "{%" in text:
            try:
                names |= meta.find_undeclared_variables(env.parse(text))
            except TemplateError:
                continue
    return names


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
