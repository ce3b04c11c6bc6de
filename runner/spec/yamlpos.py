"""Safe YAML loading that remembers where every node came from.

PyYAML's constructors drop positions, so we compose the node graph from the safe parser's events and
build plain Python values ourselves, recording each value's (line, column) by its path. Composing here
(not in PyYAML's composer) is what lets us stop a document at the depth and node limits, and building
here is what turns every failure of a value (a bad tag, a huge integer) into an error at its line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingEndEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from runner.spec.errors import SpecError, SpecInvalid, format_path
from runner.spec.limits import MAX_DEPTH, MAX_INT_DIGITS, MAX_NODES, MAX_VALUES

Path = tuple[str | int, ...]

# libyaml's parser, where installed, parses ~20x faster with the same marks; the safe constructor either way
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# libyaml's syntax messages are terse: the Python parser says them better, but is slow on large files
_REPHRASE_BYTES = 64 * 1024

# what YAML itself refuses, found before parsing so the message can say which character and where
_CONTROL = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CONTROL_NAMES = {0: "NUL", 0x1b: "ESC", 0x7f: "DEL", 0xfffe: "a non-character", 0xffff: "a non-character"}

_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"  # `=`, which the safe constructor cannot build: it is the text "="
_INT = "tag:yaml.org,2002:int"
_TAG_PREFIX = "tag:yaml.org,2002:"
_MAX_INT_BITS = math.ceil(MAX_INT_DIGITS * math.log2(10))  # the most bits an integer of that many digits has


class _Stop(Exception):
    """A limit was crossed: loading stops with this one error."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


@dataclass
class Positions:
    """Where each value (and each mapping key) of a loaded document sits in its file (1-based)."""

    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def of_value(self, path: Path) -> tuple[int, int]:
        """Position of the value at `path`, or of its nearest located ancestor."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, (1, 1))

    def of_key(self, path: Path) -> tuple[int, int]:
        """Position of the key naming `path` (falls back to the value's position)."""
        return self.keys.get(path) or self.of_value(path)


@dataclass
class LoadedYaml:
    """A YAML document as plain data, plus where each part of it came from."""

    file: str
    data: Any
    positions: Positions

    def error(self, path: Path, message: str, *, at_key: bool = False) -> SpecError:
        """Build a SpecError located at `path` (at its key when `at_key`)."""
        line, col = self.positions.of_key(path) if at_key else self.positions.of_value(path)
        return SpecError(self.file, line, col, format_path(path), message)


def _mark(node: Any) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _tag(tag: str) -> str:
    return "!!" + tag[len(_TAG_PREFIX):] if tag.startswith(_TAG_PREFIX) else tag


def control_character(text: str) -> tuple[int, int, str, str] | None:
    """The first character YAML does not allow in `text` (NUL, C0 and C1 controls but tab, newline and
    carriage return, DEL, U+FFFE/U+FFFF): its 1-based line, column, a description and its YAML escape;
    None without one."""
    found = _CONTROL.search(text)
    if found is None:
        return None
    pos = found.start()
    code = ord(found.group())
    name = _CONTROL_NAMES.get(code, "a control character")
    line = text.count("\n", 0, pos) + 1
    escape = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1, f"U+{code:04X} ({name})", escape


def _compose(loader: Any) -> yaml.Node | None:
    """The document's root node, composed from the parser's events as PyYAML's composer does, stopping
    at MAX_NODES nodes or MAX_DEPTH levels of nesting."""
    get = loader.get_event
    resolve = loader.resolve
    anchors: dict[str, yaml.Node] = {}
    count = 0

    def node(event: Any, depth: int) -> yaml.Node:
        nonlocal count
        count += 1
        if count > MAX_NODES:
            raise _Stop(event.start_mark, f"the document has more than {MAX_NODES:,} keys and values, "
                                          "the limit of a spec file")
        kind = type(event)
        if kind is AliasEvent:
            if event.anchor not in anchors:
                raise yaml.composer.ComposerError(None, None, f"found undefined alias {event.anchor!r}",
                                                  event.start_mark)
            return anchors[event.anchor]
        anchor = event.anchor
        if anchor is not None and anchor in anchors:
            raise yaml.composer.ComposerError(f"found duplicate anchor {anchor!r}; first occurrence",
                                              anchors[anchor].start_mark, "second occurrence", event.start_mark)
        tag = event.tag
        made: yaml.Node
        if kind is ScalarEvent:
            if tag is None or tag == "!":
                tag = resolve(yaml.ScalarNode, event.value, event.implicit)
            made = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
            if anchor is not None:
                anchors[anchor] = made
            return made
        if depth >= MAX_DEPTH:
            raise _Stop(event.start_mark, f"mappings and lists nest more than {MAX_DEPTH} deep, "
                                          "the limit of a spec file")
        if kind is SequenceStartEvent:
            if tag is None or tag == "!":
                tag = resolve(yaml.SequenceNode, None, event.implicit)
            made = yaml.SequenceNode(tag, [], event.start_mark, None, flow_style=event.flow_style)
            if anchor is not None:
                anchors[anchor] = made  # before the items: an item may be an alias of its own list
            items = made.value
            event = get()
            while type(event) is not SequenceEndEvent:
                items.append(node(event, depth + 1))
                event = get()
        else:
            if tag is None or tag == "!":
                tag = resolve(yaml.MappingNode, None, event.implicit)
            made = yaml.MappingNode(tag, [], event.start_mark, None, flow_style=event.flow_style)
            if anchor is not None:
                anchors[anchor] = made
            pairs = made.value
            event = get()
            while type(event) is not MappingEndEvent:
                key = node(event, depth + 1)
                pairs.append((key, node(get(), depth + 1)))
                event = get()
        made.end_mark = event.end_mark
        return made

    get()  # stream start
    event = get()
    if type(event) is StreamEndEvent:
        return None
    root = node(get(), 0)  # after the document start
    end = get()
    assert type(end) is DocumentEndEvent
    event = get()
    if type(event) is not StreamEndEvent:
        raise yaml.composer.ComposerError("expected a single document in the stream", root.start_mark,
                                          "but found another document", event.start_mark)
    return root


class _Builder:
    def __init__(self, loader: Any, file: str) -> None:
        self.loader = loader
        self.file = file
        self.positions = Positions()
        self.errors: list[SpecError] = []
        self._open: set[int] = set()  # mappings and lists being built: an alias back to one is a cycle
        self._failed: set[int] = set()  # scalars whose value could not be read (reported once)
        self.built = 0

    def fail(self, node: Any, path: Path, message: str) -> None:
        line, col = _mark(node)
        self.errors.append(SpecError(self.file, line, col, format_path(path), message))

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.built += 1
        if self.built > MAX_VALUES:
            raise _Stop(node.start_mark, f"aliases expand the document to more than {MAX_VALUES:,} values, "
                                         "the limit of a spec file (aliases repeating aliases?)")
        if len(path) > MAX_DEPTH:  # deeper than the file's own nesting: aliases inside aliases
            raise _Stop(node.start_mark, f"aliases nest mappings and lists more than {MAX_DEPTH} deep, "
                                         "the limit of a spec file")
        self.positions.values[path] = _mark(node)
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return self._scalar(node, path)
        if id(node) in self._open:
            self.fail(node, path, "an alias refers to the mapping or list that contains it")
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            return self._mapping(node, path)
        finally:
            self._open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        # merged (`<<`) mappings first, in reverse so the first listed wins; keys written here override them
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                for source in reversed(self._merge_sources(value_node, path)):
                    out.update(source)
        self.positions.values[path] = _mark(node)  # building the merged mappings located them at `path`
        written_seen: dict[str, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(key_node, path, "mapping keys must be plain scalars")
                continue
            key = key_node.value if key_node.tag == _VALUE else self._construct(key_node, path)
            if not isinstance(key, str | int | float | bool) or key is None:
                if key is not _FAILED:
                    self.fail(key_node, path, "mapping keys must be plain scalars")
                continue
            key = key if isinstance(key, str) else str(key)
            if key in written_seen:
                first_line = written_seen[key][0]
                self.fail(key_node, (*path, key), f"duplicate key {key!r} (first defined on line {first_line})")
                continue
            written_seen[key] = _mark(key_node)
            self.positions.keys[(*path, key)] = _mark(key_node)
            out[key] = self.build(value_node, (*path, key))
        return out

    def _merge_sources(self, value_node: yaml.Node, path: Path) -> list[dict[str, Any]]:
        """The mappings a `<<` key merges, built at `path` so their keys are located where they were written."""
        listed = isinstance(value_node, yaml.SequenceNode)
        sources = []
        for item in value_node.value if listed else [value_node]:
            if not isinstance(item, yaml.MappingNode):
                what = "a mapping" if listed else "a mapping or list of mappings"
                line, col = _mark(item)
                self.errors.append(SpecError(self.file, line, col, format_path(path),
                                             "YAML syntax error: while constructing a mapping expected "
                                             f"{what} for merging, but found {item.id}"))  # type: ignore[union-attr]
                continue
            built = self.build(item, path)
            if isinstance(built, dict):
                sources.append(built)
        return sources

    def _construct(self, node: yaml.ScalarNode, path: Path) -> Any:
        """The Python value of a scalar, or _FAILED after recording why it has none."""
        decimal = node.tag == _INT and not node.value.lstrip("+-").startswith(("0b", "0x", "0o"))
        digits = sum(c.isdigit() for c in node.value) if decimal and len(node.value) > MAX_INT_DIGITS else 0
        if digits > MAX_INT_DIGITS:  # Python refuses to read it: say so before it does
            self.fail(node, path, f"an integer of {digits:,} digits is longer than the {MAX_INT_DIGITS:,} "
                                  "digits allowed: quote it to keep it as text")
            return _FAILED
        if id(node) in self._failed:  # an alias of a value already reported
            return _FAILED
        try:
            value = self.loader.construct_object(node, deep=True)
        except Exception as exc:
            self.loader.recursive_objects.pop(node, None)  # left by the failure: the next alias would trip on it
            self._failed.add(id(node))
            return self._unreadable(node, path, exc)
        if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:  # 0x..., 0b...: no digits limit
            self.fail(node, path, f"an integer longer than the {MAX_INT_DIGITS:,} digits allowed: "
                                  "quote it to keep it as text")
            return _FAILED
        return value

    def _unreadable(self, node: yaml.ScalarNode, path: Path, exc: Exception) -> Any:
        """Record why the scalar has no value; return _FAILED."""
        if isinstance(exc, yaml.MarkedYAMLError):  # an unknown tag, bad base64: the constructor said where
            mark = exc.problem_mark or exc.context_mark or node.start_mark
            problem = " ".join(p for p in (exc.context, exc.problem) if p)
            self.errors.append(SpecError(self.file, mark.line + 1, mark.column + 1, format_path(path),
                                         f"YAML syntax error: {problem}"))
        else:  # a tag on a value it cannot read: `!!float hello`, `!!timestamp x`
            text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
            self.fail(node, path, f"{text!r} cannot be read as {_tag(node.tag)}")
        return _FAILED

    def _scalar(self, node: yaml.Node, path: Path) -> Any:
        if node.tag == _VALUE:
            return node.value
        value = self._construct(node, path)  # type: ignore[arg-type]
        if value is _FAILED:
            return None
        # dates and binary are not spec values: keep the text the user wrote
        if not isinstance(value, str | int | float | bool | type(None)):
            value = node.value
        return value


_FAILED: Any = object()  # a scalar whose value could not be built (the error is recorded)


def load_yaml(text: str, file: str) -> LoadedYaml:
    """Parse one YAML document safely, keeping positions; raise SpecInvalid on any YAML problem or limit."""
    bad = control_character(text)
    if bad is not None:
        line, col, what, escape = bad
        raise SpecInvalid([SpecError(file, line, col, "", f"{what} is not allowed in a spec file: write it as an "
                                                          f"escape in a double-quoted string (\"{escape}\")")])
    try:
        return _load(text, file, _Loader)
    except _Syntax as exc:
        if _Loader is yaml.SafeLoader or len(text) > _REPHRASE_BYTES:
            raise exc.invalid from None
        # libyaml's messages are terse ("found undefined alias"): say it the way the Python parser does
        try:
            return _load(text, file, yaml.SafeLoader)
        except _Syntax as again:
            raise again.invalid from None


class _Syntax(Exception):
    """A YAML syntax error, which the Python parser may word better than libyaml."""

    def __init__(self, invalid: SpecInvalid) -> None:
        self.invalid = invalid


def _syntax(exc: yaml.YAMLError, file: str) -> _Syntax:
    """A YAML error of the parser as a SpecInvalid at its mark (ReaderError has a position, not a mark)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        return _Syntax(SpecInvalid([SpecError(file, line, col, "", f"YAML syntax error: {problem}")]))
    return _Syntax(SpecInvalid([SpecError(file, 1, 1, "", f"YAML error: {exc}")]))


def _load(text: str, file: str, loader_class: Any) -> LoadedYaml:
    try:
        loader = loader_class(text)  # the Python reader checks the text as it is made
    except yaml.YAMLError as exc:
        raise _syntax(exc, file) from None
    try:
        try:
            node = _compose(loader)
        except yaml.YAMLError as exc:
            raise _syntax(exc, file) from None
        if node is None:
            raise SpecInvalid([SpecError(file, 1, 1, "", "the file is empty")])
        builder = _Builder(loader, file)
        data = builder.build(node, ())
    except _Stop as stop:
        line, col = (stop.mark.line + 1, stop.mark.column + 1) if stop.mark else (1, 1)
        raise SpecInvalid([SpecError(file, line, col, "", stop.message)]) from None
    except RecursionError:  # a last resort: the limits above keep every recursion far from Python's
        raise SpecInvalid([SpecError(file, 1, 1, "", "the document nests too deeply to load")]) from None
    finally:
        loader.dispose()
    if builder.errors:
        raise SpecInvalid(builder.errors)
    return LoadedYaml(file, data, builder.positions)
