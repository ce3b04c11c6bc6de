"""JSON Schema validation of a loaded spec, with messages a person can act on."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from runner.spec.errors import SpecError
from runner.spec.yamlpos import LoadedYaml

SCHEMA_FILE = Path(__file__).with_name("spec.schema.json")

_TYPE_NAMES = {
    "string": "a string", "number": "a number", "integer": "an integer", "boolean": "true or false",
    "object": "a mapping", "array": "a list", "null": "null",
}


@cache
def spec_schema() -> dict[str, Any]:
    """The spec format's JSON Schema (schemas/spec.schema.json)."""
    with SCHEMA_FILE.open(encoding="utf-8") as f:
        schema: dict[str, Any] = json.load(f)
    return schema


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(spec_schema())


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    kinds = (("a string", str), ("an integer", int), ("a number", float), ("a mapping", dict), ("a list", list))
    for name, py in kinds:
        if isinstance(value, py):
            return name
    return type(value).__name__


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _expected_types(types: str | list[str]) -> str:
    names = [_TYPE_NAMES.get(t, t) for t in ([types] if isinstance(types, str) else types)]
    return " or ".join(names)


def _unknown_key_errors(err: ValidationError, doc: LoadedYaml) -> Iterator[SpecError]:
    schema: Any = err.schema
    instance: Any = err.instance
    allowed = list(schema.get("properties", {}))
    is_check = schema is spec_schema()["$defs"]["check"]
    noun = "check" if is_check else "field"
    for key in instance:
        if key in allowed:
            continue
        hint = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        if hint:
            more = f" (did you mean {hint[0]!r}?)"
        else:
            more = f"; known {noun}s: {', '.join(allowed)}" if len(allowed) <= 24 else ""
        path = (*err.absolute_path, key)
        yield doc.error(tuple(path), f"unknown {noun} {key!r}{more}", at_key=True)


def _message(err: ValidationError) -> str:
    v, schema = err.validator, err.schema
    inst: Any = err.instance
    value: Any = err.validator_value
    if v == "required":
        missing = [k for k in value if k not in inst]
        return f"missing required field {missing[0]!r}" if missing else err.message
    if v == "type":
        got = "null" if inst is None else f"{_kind(inst)} {_short(inst)}"
        return f"expected {_expected_types(value)}, got {got}"
    if v == "enum":
        choices = ", ".join(str(c) for c in value)
        close = difflib.get_close_matches(inst, [c for c in value if isinstance(c, str)], n=1, cutoff=0.6) \
            if isinstance(inst, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"must be one of: {choices} (got {_short(inst)}{hint})"
    if v == "const":
        return f"must be {_short(value)} (got {_short(inst)})"
    if v == "maxProperties" and schema is spec_schema()["$defs"]["check"]:
        return (f"a check has exactly one key (check type -> argument), found {', '.join(inst)}: "
                "put each check in its own list item")
    if v in ("minProperties", "minItems") and not inst:
        return "must not be empty"
    if v == "dependentRequired":
        for present, needs in value.items():
            missing = [n for n in needs if present in inst and n not in inst]
            if missing:
                return f"{present!r} needs {', '.join(repr(n) for n in missing)} as well"
    if v == "pattern":
        return f"{_short(inst)} does not match the expected form {value}"
    return err.message


def _shape_of(sub: Any) -> str:
    if not isinstance(sub, dict):
        return "a valid value"
    if "const" in sub:
        return _short(sub["const"])
    kind = sub.get("properties", {}).get("type", {})
    if sub.get("type") == "object" and ("const" in kind or "enum" in kind):
        names = [kind["const"]] if "const" in kind else kind["enum"]
        return "{type: " + " | ".join(names) + ", ...}"
    if "enum" in sub:
        return "one of " + ", ".join(str(c) for c in sub["enum"])
    if "type" in sub:
        return _expected_types(sub["type"])
    text = str(sub.get("description", "a valid value")).rstrip(".")
    first = text.split(" ", 1)[0]
    acronym = len(first) > 1 and first.isupper()
    return text if acronym else text[:1].lower() + text[1:]  # within a sentence: "a function tool"


def _is_discriminator(err: ValidationError) -> bool:
    """A mismatch of the value's own shape, or of its `type` field, rules an alternative out; a value of the
    type an alternative names outside the choices of its enum was meant for it (a misspelt name)."""
    if err.validator == "enum" and not err.relative_path and isinstance(err.schema, dict) and "type" in err.schema:
        return False
    return not err.relative_path or tuple(err.relative_path) == ("type",)


def _explain_alternatives(err: ValidationError, doc: LoadedYaml) -> list[SpecError]:
    """For a failed oneOf/anyOf, report the problems of the alternatives the value was meant for."""
    by_alt: dict[int, list[ValidationError]] = {}
    for sub in err.context or []:
        by_alt.setdefault(sub.relative_schema_path[0], []).append(sub)  # type: ignore[arg-type]
    # an alternative whose shape (type/const/enum) the value does not even have was not meant
    meant = {
        i: subs for i, subs in by_alt.items()
        if not any(s.validator in ("type", "const", "enum") and _is_discriminator(s) for s in subs)
    }
    # of mappings that fit several forms, one that has every field its form requires is the one meant
    # (`{file_search: {...}}` is not a function tool lacking its `name`)
    complete = {i: subs for i, subs in meant.items()
                if not any(s.validator == "required" and not s.relative_path for s in subs)}
    if complete and len(complete) < len(meant):
        meant = complete
    if len(meant) == 1:
        (subs,) = meant.values()
        return [e for sub in subs for e in explain(sub, doc)]
    if not meant:
        alternatives: Any = err.validator_value
        shapes = " or ".join(_shape_of(alt) for alt in alternatives)
        got = f"{_kind(err.instance)} {_short(err.instance)}"
        return [doc.error(tuple(err.absolute_path), f"expected {shapes}, got {got}")]
    return explain(best_match(e for subs in meant.values() for e in subs), doc)


def explain(err: ValidationError, doc: LoadedYaml) -> list[SpecError]:
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        return list(_unknown_key_errors(err, doc))
    if isinstance(err.schema, dict) and "x-message" in err.schema and err.validator in ("oneOf", "anyOf"):
        return [doc.error(tuple(err.absolute_path), str(err.schema["x-message"]))]
    if err.validator in ("oneOf", "anyOf") and err.context:
        return _explain_alternatives(err, doc)
    return [doc.error(tuple(err.absolute_path), _message(err))]


def schema_errors(doc: LoadedYaml) -> list[SpecError]:
    """Every schema violation in the document, each located at its line and field."""
    out: list[SpecError] = []
    for err in _validator().iter_errors(doc.data):
        out.extend(explain(err, doc))
    return out
