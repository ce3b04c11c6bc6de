"""The spec format's reference (docs/spec.md), generated from its JSON Schema so the two never disagree.

    python -m runner.spec.reference            # print the reference
    python -m runner.spec.reference --write    # rewrite docs/spec.md (run it from the repository's root)

Every word about a field comes from the schema: its `title`, `description`, `examples`, `default`, enums
and constraints. This module only lays them out; to change what the reference says, edit the schema.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_OUTPUT = Path("docs/spec.md")
REGENERATE = "python -m runner.spec.reference --write"

# the document's outline: (heading level, title, where in the schema); $defs not named here come last
_OUTLINE: tuple[tuple[int, str, str], ...] = (
    (2, "Top-level fields", "#"),
    (2, "`assistant`", "#/$defs/assistant"),
    (3, "`response_format`", "#/$defs/response_format"),
    (3, "`metadata`", "#/$defs/metadata"),
    (3, "Tools (`tools`)", "#/$defs/tool"),
    (3, "Function tools", "#/$defs/function_tool"),
    (3, "File search tool", "#/$defs/file_search_tool"),
    (4, "File search options", "#/$defs/file_search_options"),
    (2, "`backend`", "#/$defs/backend"),
    (3, "Scripted-model rules (`rules`)", "#/$defs/rule"),
    (3, "Rule calls (`call`, `calls`)", "#/$defs/rule_call"),
    (2, "`vars`", "#/properties/vars"),
    (2, "`matrix`", "#/properties/matrix"),
    (2, "Knowledge files (`files`)", "#/properties/files"),
    (2, "Turns (`conversation`)", "#/$defs/turn"),
    (3, "Tool outputs (`tool_outputs`)", "#/$defs/tool_output"),
    (2, "Checks", "#/$defs/check"),
    (2, "Conversation-level checks (`expect`)", "#/properties/expect"),
)
_CHECKS = "#/$defs/check"
_TYPE_NAMES = {"string": "string", "number": "number", "integer": "integer", "boolean": "boolean",
               "object": "mapping", "array": "list", "null": "null"}


class _Dumper(yaml.SafeDumper):
    """Indents list items under their key, as the project's own specs are written."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


class _Flow(dict):  # type: ignore[type-arg]
    """A mapping written on one line."""


class _FlowList(list):  # type: ignore[type-arg]
    """A list written on one line."""


_Dumper.add_representer(_Flow, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True))
_Dumper.add_representer(_FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def _styled(value: Any, depth: int = 0, list_item: bool = False) -> Any:
    """Mark the collections written on one line: short ones of plain values, below the top two levels,
    except a one-key mapping in a list (`- contains: Paris`, as specs are written)."""
    if isinstance(value, dict):
        inner = {k: _styled(v, depth + 1) for k, v in value.items()}
        leaf = all(not isinstance(v, dict | list) for v in value.values())
        block = depth < 2 or (list_item and len(value) == 1) or len(_flow(value)) > 60
        return inner if block or not leaf else _Flow(inner)
    if isinstance(value, list):
        items = [_styled(v, depth + 1, list_item=True) for v in value]
        leaf = all(not isinstance(v, dict | list) for v in value)
        return _FlowList(items) if leaf and depth > 0 and len(_flow(value)) <= 60 else items
    return value


def _yaml_block(value: Any) -> str:
    text: str = yaml.dump(_styled(value), Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                          default_flow_style=False, width=100)
    return text.rstrip("\n")


def _flow(value: Any) -> str:
    """A value as one line of YAML, for table cells."""
    text: str = yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=True,
                          width=10_000)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(value: Any) -> str:
    return f"`{value if isinstance(value, str) else _flow(value)}`"


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text.endswith((".", "!", "?")) else text + "."


def _either(names: list[str]) -> str:
    """`a`, `a or b`, `a, b or c`."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


@dataclass
class _Section:
    level: int
    title: str
    pointer: str
    anchor: str = ""


@dataclass
class _Context:
    """The schema being rendered, where each part of it is documented, and where each $def is used."""

    schema: dict[str, Any]
    sections: list[_Section] = field(default_factory=list)
    used_at: dict[str, list[str]] = field(default_factory=dict)

    def resolve(self, pointer: str) -> Any:
        node: Any = self.schema
        for part in pointer.removeprefix("#").strip("/").split("/"):
            if part:
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def anchor(self, pointer: str) -> str | None:
        return next((s.anchor for s in self.sections if s.pointer == pointer), None)

    def label(self, pointer: str) -> str:
        node = self.resolve(pointer)
        return str(node.get("title") or pointer.rsplit("/", 1)[-1]).lower()


def _outline(schema: dict[str, Any]) -> list[_Section]:
    sections = [_Section(level, title, pointer) for level, title, pointer in _OUTLINE]
    placed = {s.pointer for s in sections}
    for name, node in schema.get("$defs", {}).items():  # a new $def is documented even before it is placed
        if f"#/$defs/{name}" not in placed:
            sections.append(_Section(2, str(node.get("title", f"`{name}`")), f"#/$defs/{name}"))
    seen: set[str] = set()
    check_names = set(schema.get("$defs", {}).get("check", {}).get("properties", {}))
    for section in sections:
        section.anchor = slug(section.title)
        if section.anchor in seen or section.anchor in check_names:
            raise ValueError(f"two headings would share the anchor #{section.anchor}")
        seen.add(section.anchor)
    return sections


def _walk_uses(ctx: _Context, node: Any, path: str, stack: tuple[str, ...]) -> None:
    """Record the spec paths (`conversation[].expect[]`) at which each $def appears."""
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        if ref in stack:  # a check inside a check: its first appearance is the one worth naming
            return
        ctx.used_at.setdefault(ref, []).append(path)
        _walk_uses(ctx, ctx.resolve(ref), path, (*stack, ref))
    for name, sub in node.get("properties", {}).items():
        _walk_uses(ctx, sub, f"{path}.{name}" if path else name, stack)
    if isinstance(node.get("items"), dict):
        _walk_uses(ctx, node["items"], f"{path}[]", stack)
    if isinstance(node.get("additionalProperties"), dict):
        _walk_uses(ctx, node["additionalProperties"], f"{path}.<name>", stack)
    for key in ("oneOf", "anyOf", "allOf"):
        for alt in node.get(key, []):
            _walk_uses(ctx, alt, path, stack)


def _link(ctx: _Context, pointer: str, plural: bool = False) -> str:
    anchor = ctx.anchor(pointer)
    label = ctx.label(pointer) + ("s" if plural else "")
    return f"[{label}](#{anchor})" if anchor else label


def shape(ctx: _Context, node: Any, plural: bool = False) -> str:
    """What a value must be, in words: `string`, `list of turns`, `` `true` or mapping ``, with links."""
    if not isinstance(node, dict):
        return "any value"
    if "$ref" in node:
        return _link(ctx, node["$ref"], plural)
    if "const" in node:
        return _code(node["const"])
    if "enum" in node:
        return "one of " + ", ".join(_code(v) for v in node["enum"])
    alternatives = node.get("oneOf") or node.get("anyOf")
    if alternatives and "type" not in node:
        return _either(list(dict.fromkeys(shape(ctx, alt, plural) for alt in alternatives)))
    types = node.get("type")
    if types is None:
        return "values" if plural else "any value"
    names = []
    for kind in [types] if isinstance(types, str) else types:
        if kind == "array" and isinstance(node.get("items"), dict):
            names.append("list of " + shape(ctx, node["items"], plural=True))
        elif kind == "object" and isinstance(node.get("additionalProperties"), dict) and not node.get("properties"):
            names.append(("mappings" if plural else "mapping") + " of names to "
                         + shape(ctx, node["additionalProperties"], plural=True))
        else:
            name = _TYPE_NAMES.get(kind, kind)
            names.append(name + ("s" if plural else ""))
    return _either(names)


def constraints(node: Any) -> list[str]:
    """The schema's limits on a value, as short phrases."""
    if not isinstance(node, dict):
        return []
    out = []
    if node.get("minLength") == 1:
        out.append("not empty")
    elif "minLength" in node:
        out.append(f"at least {node['minLength']} characters")
    if "maxLength" in node:
        out.append(f"at most {node['maxLength']} characters")
    low, high = node.get("minimum"), node.get("maximum")
    if low is not None and high is not None:
        out.append(f"from {low:g} to {high:g}")
    elif low is not None:
        out.append(f"at least {low:g}")
    elif high is not None:
        out.append(f"at most {high:g}")
    if "exclusiveMinimum" in node:
        out.append(f"more than {node['exclusiveMinimum']:g}")
    if "pattern" in node:
        out.append(f"matches `{node['pattern']}`")
    if node.get("minItems") == 1:
        out.append("at least one item")
    elif "minItems" in node:
        out.append(f"at least {node['minItems']} items")
    if node.get("uniqueItems"):
        out.append("no duplicates")
    if node.get("minProperties") == 1 and node.get("maxProperties") != 1:
        out.append("at least one entry")
    if "maxProperties" in node and node.get("maxProperties") != 1:
        out.append(f"at most {node['maxProperties']} entries")
    names = node.get("propertyNames", {})
    if "maxLength" in names:
        out.append(f"names of at most {names['maxLength']} characters")
    return out


def _details(ctx: _Context, node: Any, extra: list[str] | None = None) -> str:
    """Description, limits, default and short examples of a value, as one table cell's text."""
    if not isinstance(node, dict):
        return ""
    target = ctx.resolve(node["$ref"]) if "$ref" in node else {}
    parts = [_sentence(str(node.get("description") or target.get("description") or ""))]
    limits = constraints(node) + (extra or [])
    if limits:
        parts.append(_sentence(limits[0][0].upper() + limits[0][1:] + "".join(f", {c}" for c in limits[1:])))
    if "default" in node:
        parts.append(f"Default: {_code(node['default'])}.")
    short = [e for e in node.get("examples", []) if _is_short(e)]
    if short:
        parts.append(("Example" if len(short) == 1 else "Examples") + ": " + ", ".join(_code(e) for e in short) + ".")
    return " ".join(p for p in parts if p)


def _is_short(example: Any) -> bool:
    return not isinstance(example, dict | list) or len(_flow(example)) <= 40


def _exactly_one(node: dict[str, Any]) -> list[list[str]]:
    """Groups of fields of which an object needs exactly one (a oneOf of single `required` fields)."""
    groups = []
    for one_of in [node.get("oneOf", [])] + [part.get("oneOf", []) for part in node.get("allOf", [])]:
        names = [alt["required"][0] for alt in one_of if isinstance(alt, dict) and len(alt.get("required", [])) == 1]
        if one_of and len(names) == len(one_of):
            groups.append(names)
    return groups


def fields_table(ctx: _Context, node: dict[str, Any]) -> list[str]:
    """A Markdown table of an object's fields: name, type, required, what it is."""
    groups = _exactly_one(node)
    required = set(node.get("required", []))
    needs: dict[str, list[str]] = node.get("dependentRequired", {})
    rows = ["| Field | Type | Required | Description |", "| --- | --- | --- | --- |"]
    for name, sub in node.get("properties", {}).items():
        group = next((g for g in groups if name in g), None)
        if name in required:
            req = "**yes**"
        elif group:
            req = "exactly one of " + ", ".join(f"`{g}`" for g in group)
        else:
            req = "no"
        extra = [f"needs {', '.join(f'`{n}`' for n in needs[name])} as well"] if name in needs else []
        rows.append(f"| `{name}` | {_cell(shape(ctx, sub))} | {_cell(req)} | {_cell(_details(ctx, sub, extra))} |")
    more = node.get("additionalProperties")
    if isinstance(more, dict):
        rows.append(f"| *any other name* | {_cell(shape(ctx, more))} | no | {_cell(_details(ctx, more))} |")
    return rows


def _wrapped(path: str, examples: list[Any]) -> Iterator[Any]:
    """Examples placed under the key they are written at: one list for list items, else one block each."""
    key = path.rsplit(".", 1)[-1]
    if key.endswith("[]"):
        yield {key.removesuffix("[]"): list(examples)}
    elif key and key != "<name>":
        yield from ({key: e} for e in examples)
    else:
        yield from examples


def _example_blocks(values: Iterator[Any]) -> list[str]:
    out = []
    for value in values:
        out += ["```yaml", _yaml_block(value), "```", ""]
    return out


def _long_field_examples(ctx: _Context, node: dict[str, Any], pointer: str) -> list[str]:
    """Examples of fields too long for a table cell, as YAML blocks after the table."""
    out = []
    for name, sub in node.get("properties", {}).items():
        long = [e for e in sub.get("examples", []) if not _is_short(e)] if isinstance(sub, dict) else []
        if long and ctx.anchor(f"{pointer}/properties/{name}") is None:  # else its own section shows them
            out += [f"Example of `{name}`:", ""] + _example_blocks(_wrapped(name, long))
    return out


def _used_at(ctx: _Context, pointer: str) -> list[str]:
    paths = ctx.used_at.get(pointer, [])
    if not paths:
        return []
    return ["Written at " + ", ".join(f"`{p}`" for p in paths) + ".", ""]


def _alternatives(ctx: _Context, node: dict[str, Any], noun: str) -> list[str]:
    """A value with several forms: one bullet per form, then the fields of each mapping form."""
    alternatives = node.get("oneOf", [])
    out = [f"{noun} one of:", ""]
    for alt in alternatives:
        out.append(f"- {shape(ctx, alt)}: {_details(ctx, alt)}".rstrip(": "))
    out.append("")
    for alt in alternatives:
        if isinstance(alt, dict) and alt.get("properties"):
            out += [f"The fields of the mapping ({_sentence(alt.get('description', '')).rstrip('.').lower()}):", ""]
            out += fields_table(ctx, alt) + [""]
    return out


def _value_section(ctx: _Context, section: _Section, node: dict[str, Any], example_path: str) -> list[str]:
    """A section on one kind of value: description, where it goes, its fields or forms, examples."""
    out = [_sentence(str(node.get("description", ""))), ""]
    out += _used_at(ctx, section.pointer)
    if node.get("oneOf") and not node.get("properties"):
        out += _alternatives(ctx, node, "The value is")
    elif node.get("properties") or isinstance(node.get("additionalProperties"), dict):
        out += fields_table(ctx, node) + [""]
        out += _long_field_examples(ctx, node, section.pointer)
    elif "type" in node:
        out += [f"The value is a {shape(ctx, node)}.", ""]
    if node.get("examples"):
        out += ["Example:" if len(node["examples"]) == 1 else "Examples:", ""]
        out += _example_blocks(_wrapped(example_path, node["examples"]))
    return out


def _check_section(ctx: _Context, name: str, node: dict[str, Any]) -> list[str]:
    out = [f"### `{name}`", "", _sentence(str(node.get("description", ""))), ""]
    if node.get("oneOf"):
        out += _alternatives(ctx, node, "The argument is")
    else:
        out += [f"The argument: {_details_of_argument(ctx, node)}", ""]
        if node.get("properties"):
            out += fields_table(ctx, node) + [""]
    if node.get("examples"):
        out += _example_blocks(_wrapped("expect[]", [{name: e} for e in node["examples"]]))
    return out


def _details_of_argument(ctx: _Context, node: dict[str, Any]) -> str:
    text = shape(ctx, node)
    limits = constraints(node)
    return _sentence(text + (f" ({', '.join(limits)})" if limits else ""))


def _checks(ctx: _Context, section: _Section, node: dict[str, Any]) -> list[str]:
    out = [_sentence(str(node.get("description", ""))), ""]
    out += _used_at(ctx, section.pointer)
    out += ["| Check | Argument | What it checks |", "| --- | --- | --- |"]
    for name, sub in node.get("properties", {}).items():
        out.append(f"| [`{name}`](#{slug(name)}) | {_cell(shape(ctx, sub))} | {_cell(str(sub.get('title', '')))} |")
    out.append("")
    for name, sub in node.get("properties", {}).items():
        out += _check_section(ctx, name, sub)
    return out


def _contents(ctx: _Context) -> list[str]:
    out = ["## Contents", ""]
    check_names = list(ctx.resolve(_CHECKS).get("properties", {}))
    for section in ctx.sections:
        out.append("  " * (section.level - 2) + f"- [{section.title}](#{section.anchor})")
        if section.pointer == _CHECKS:
            out.append("  " * (section.level - 1) + "- " + ", ".join(f"[`{n}`](#{slug(n)})" for n in check_names))
    return out + [""]


def render_reference(schema: dict[str, Any]) -> str:
    """The spec format's reference as Markdown, every field and check taken from `schema`."""
    ctx = _Context(schema)
    ctx.sections = _outline(schema)
    _walk_uses(ctx, schema, "", ())
    out = [
        "# Spec reference",
        "",
        f"<!-- Generated from runner/spec/spec.schema.json by `{REGENERATE}`: edit the schema, not this file. -->",
        "",
        _sentence(str(schema.get("description", ""))),
        "",
        "A spec is a YAML file holding one conversation. This reference is generated from its "
        "JSON Schema, [`schemas/spec.schema.json`](../schemas/spec.schema.json) (`runner schema` prints the path of "
        "the copy installed with the runner, for your editor). Unknown fields are errors; `runner validate` "
        "reports every error with its file, line and column.",
        "",
    ]
    if schema.get("examples"):
        out += ["A minimal spec:", ""] + _example_blocks(iter(schema["examples"]))
    out += _contents(ctx)
    for section in ctx.sections:
        node = ctx.resolve(section.pointer)
        out += ["#" * section.level + " " + section.title, ""]
        if section.pointer == "#":
            out += fields_table(ctx, node) + [""]
            out += _long_field_examples(ctx, node, section.pointer)
        elif section.pointer == _CHECKS:
            out += _checks(ctx, section, node)
        else:
            first_use = next(iter(ctx.used_at.get(section.pointer, [])), section.pointer.rsplit("/", 1)[-1])
            out += _value_section(ctx, section, node, first_use)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the reference, or write it (`--write [FILE]`, default docs/spec.md)."""
    parser = argparse.ArgumentParser(prog="python -m runner.spec.reference", description=__doc__.splitlines()[0])
    parser.add_argument("--write", nargs="?", const=str(DEFAULT_OUTPUT), metavar="FILE",
                        help=f"write the reference to FILE (default {DEFAULT_OUTPUT}) instead of printing it")
    args = parser.parse_args(argv)
    from runner.spec.schema import SCHEMA_FILE

    text = render_reference(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
    if args.write is None:
        sys.stdout.write(text)
        return 0
    target = Path(args.write)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8", newline="\n")
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
