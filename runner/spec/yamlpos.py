"""Safe YAML loading that remembers where every node came from.

PyYAML's constructors drop positions, so we compose the node graph with the safe loader and
build plain Python values ourselves, recording each value's (line, column) by its path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from runner.spec.errors import SpecError, SpecInvalid, format_path

Path = tuple[str | int, ...]

# libyaml's parser, where installed, composes ~20x faster with the same marks; the safe constructor either way
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# aliases let a small file expand to billions of values ("billion laughs"); no spec comes near this
MAX_VALUES = 100_000


class _TooBig(Exception):
    pass


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


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(self, loader: Any, file: str) -> None:
        self.loader = loader
        self.file = file
        self.positions = Positions()
        self.errors: list[SpecError] = []
        self._open: set[int] = set()  # mappings and lists being built: an alias back to one is a cycle
        self.built = 0

    def fail(self, node: yaml.Node, path: Path, message: str) -> None:
        line, col = _mark(node)
        self.errors.append(SpecError(self.file, line, col, format_path(path), message))

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.built += 1
        if self.built > MAX_VALUES:
            raise _TooBig
        self.positions.values[path] = _mark(node)
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return self._scalar(node)
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
        # keys written in this mapping override merged (`<<`) ones; only two written keys clash
        written = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        self.loader.flatten_mapping(node)  # resolves `<<` merge keys the safe way
        out: dict[str, Any] = {}
        written_seen: set[str] = set()
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                self.fail(key_node, path, "mapping keys must be plain scalars")
                continue
            key = key if isinstance(key, str) else str(key)
            if id(key_node) in written:
                if key in written_seen:
                    first_line = self.positions.keys[(*path, key)][0]
                    self.fail(key_node, (*path, key), f"duplicate key {key!r} (first defined on line {first_line})")
                    continue
                written_seen.add(key)
            self.positions.keys[(*path, key)] = _mark(key_node)
            out[key] = self.build(value_node, (*path, key))
        return out

    def _scalar(self, node: yaml.Node) -> Any:
        value = self.loader.construct_object(node, deep=True)
        # dates and binary are not spec values: keep the text the user wrote
        if not isinstance(value, str | int | float | bool | type(None)):
            value = node.value
        return value


def load_yaml(text: str, file: str) -> LoadedYaml:
    """Parse one YAML document safely, keeping positions; raise SpecInvalid on any YAML problem."""
    try:
        return _load(text, file, _Loader)
    except SpecInvalid:
        if _Loader is yaml.SafeLoader:
            raise
        # libyaml's messages are terse ("found undefined alias"): say it the way the Python parser does
        return _load(text, file, yaml.SafeLoader)


def _load(text: str, file: str, loader_class: Any) -> LoadedYaml:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecInvalid([SpecError(file, 1, 1, "", "the file is empty")])
        builder = _Builder(loader, file)
        try:
            data = builder.build(node, ())
        except _TooBig:
            raise SpecInvalid([SpecError(file, 1, 1, "", f"the document expands to more than {MAX_VALUES} values "
                                                         "(aliases repeating aliases?)")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise SpecInvalid([SpecError(file, line, col, "", f"YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise SpecInvalid([SpecError(file, 1, 1, "", f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    if builder.errors:
        raise SpecInvalid(builder.errors)
    return LoadedYaml(file, data, builder.positions)
