"""The knowledge files a spec names (`files:`, a turn's `attachments:`): paths and globs matched inside the
spec's own folder, within bounds.

A spec uploads only files inside its folder: absolute paths, `~` and `..` are refused, and so is a symlink
that leads out of it, so that what a spec can send to a backend is what its folder holds (a spec from a pull
request cannot upload `~/.ssh`). Globs are Python's: `*`, `?` and `[...]` within one name, `**` for any
number of folders; a name starting with `.` is matched only by a pattern that spells the dot (`*` never takes
`.env`), symlinked folders are not walked, and matching is case-sensitive on every system.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
from pathlib import Path, PureWindowsPath

from runner.spec.limits import MAX_GLOB_ENTRIES, MAX_KNOWLEDGE_FILE_BYTES

_MAGIC = re.compile(r"[*?[]")


class PatternProblem(ValueError):
    """Why a path or glob of a spec cannot name its files (the message says it to the user)."""


def has_magic(part: str) -> bool:
    """True when a path part is a glob (`*`, `?` or `[`) rather than a name."""
    return _MAGIC.search(part) is not None


class FileMatcher:
    """Matches a spec's paths and globs in its folder; each pattern is matched once per load (a matrix's cases
    share the folder)."""

    def __init__(self, folder: Path, shown: str) -> None:
        self.folder = folder
        self.root = os.path.realpath(folder)
        here = shown in ("", ".")
        self.shown = "the spec's folder" if here else shown  # the folder as errors name it: specs/examples
        self._prefix = "" if here else shown.rstrip("/") + "/"
        self._matched: dict[str, list[str] | PatternProblem] = {}

    def match(self, pattern: str) -> list[str]:
        """The regular files `pattern` names, as paths relative to the folder with `/`, sorted; raise
        PatternProblem when it is refused or matches nothing."""
        found = self._matched.get(pattern)
        if found is None:
            try:
                found = self._match(pattern)
            except PatternProblem as exc:
                found = exc
            self._matched[pattern] = found
        if isinstance(found, PatternProblem):
            raise found
        return found

    def _match(self, pattern: str) -> list[str]:
        parts = _parts(pattern)
        if not any(has_magic(p) for p in parts):
            relative = "/".join(parts)
            self._check_file(self.folder.joinpath(*parts), relative, named=True)
            return [relative]
        literal = 0
        while not has_magic(parts[literal]):
            literal += 1
        start = self.folder.joinpath(*parts[:literal])
        found = sorted(self._walk(start, parts[:literal], parts))
        if not found:
            raise PatternProblem(f"no file matches {pattern!r} in {self.shown} (a glob, relative to the spec's "
                                 "folder; names starting with `.` need a pattern that starts with `.`)")
        return found

    def _walk(self, start: Path, prefix: list[str], pattern: list[str]) -> list[str]:
        """Every regular file under `start` whose path matches `pattern`, looking through at most
        MAX_GLOB_ENTRIES entries."""
        if not os.path.isdir(start) or not self._inside(start):
            return []
        found: list[str] = []
        seen = 0
        stack = [(str(start), prefix)]
        while stack:
            folder, parts = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError as exc:
                raise PatternProblem(f"cannot read the folder {self._shown('/'.join(parts))}: "
                                     f"{exc.strerror}") from None
            seen += len(entries)
            if seen > MAX_GLOB_ENTRIES:
                raise PatternProblem(f"the glob looks through more than {MAX_GLOB_ENTRIES:,} entries of "
                                     f"{self.shown}, the limit of one glob: name a narrower folder")
            for entry in entries:
                path = [*parts, entry.name]
                if entry.is_dir(follow_symlinks=False):
                    if _could_match(pattern, path):
                        stack.append((entry.path, path))
                elif entry.is_file() and _matches(pattern, path):  # a symlink to a file counts, checked below
                    relative = "/".join(path)
                    self._check_file(Path(entry.path), relative, named=False)
                    found.append(relative)
        return found

    def _check_file(self, path: Path, relative: str, *, named: bool) -> None:
        """Refuse what a spec may not upload: a missing or special file, one outside the folder, one too big."""
        try:
            info = path.stat()
        except FileNotFoundError:
            raise PatternProblem(f"no file {self._shown(relative)} (paths are relative to the spec's folder)"
                                 ) from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise PatternProblem(f"{self._shown(relative)[:80]}...: the file name is too long for the file "
                                     "system") from None
            raise PatternProblem(f"cannot read {self._shown(relative)}: {exc.strerror}") from None
        if named and not path.is_file():
            kind = "a folder: name its files, e.g. " + relative + "/*" if path.is_dir() else "not a regular file"
            raise PatternProblem(f"{self._shown(relative)} is {kind}")
        if not self._inside(path):
            raise PatternProblem(f"{self._shown(relative)} is a symlink to a file outside the spec's folder, "
                                 "and a spec uploads only files inside its folder")
        if info.st_size > MAX_KNOWLEDGE_FILE_BYTES:
            raise PatternProblem(f"{self._shown(relative)} holds {info.st_size:,} bytes, more than the "
                                 f"{MAX_KNOWLEDGE_FILE_BYTES:,} a file uploaded to a backend may hold")

    def _inside(self, path: Path) -> bool:
        real = os.path.realpath(path)
        return real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)

    def _shown(self, relative: str) -> str:
        return self._prefix + relative


def _parts(pattern: str) -> list[str]:
    """The names of a pattern, once it is known to stay inside the spec's folder."""
    if "\x00" in pattern:
        raise PatternProblem("the path holds a NUL character")
    if pattern.startswith(("/", "\\")) or PureWindowsPath(pattern).drive:
        raise PatternProblem(f"{pattern!r} is an absolute path: a spec's files are relative to its folder, "
                             "and a spec uploads only files inside it")
    if pattern.startswith("~"):
        raise PatternProblem(f"{pattern!r} starts with `~`, which is not expanded: a spec's files are relative "
                             "to its folder")
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PatternProblem(f"{pattern!r} leaves the spec's folder (`..`): a spec uploads only files inside "
                             "its folder")
    if not parts:
        raise PatternProblem(f"{pattern!r} names the spec's folder itself: name its files, e.g. `*.md`")
    return parts


def _name_matches(part: str, name: str) -> bool:
    if name.startswith(".") and not part.startswith("."):
        return False  # hidden names need the dot spelt, as in a shell
    return fnmatch.fnmatchcase(name, part)


def _advance(pattern: list[str], states: set[int]) -> set[int]:
    """`states` with the positions a `**` may skip to without taking a name (it matches zero folders too)."""
    out = set(states)
    todo = list(states)
    while todo:
        i = todo.pop()
        if i < len(pattern) and pattern[i] == "**" and i + 1 not in out:
            out.add(i + 1)
            todo.append(i + 1)
    return out


def _states(pattern: list[str], names: list[str]) -> set[int]:
    """The positions in `pattern` reachable once `names` are matched: an automaton, so a pattern of many `**`
    costs its length times the path's, never a backtracking search."""
    states = _advance(pattern, {0})
    for name in names:
        step: set[int] = set()
        for i in states:
            if i >= len(pattern):
                continue
            part = pattern[i]
            if part == "**":
                if not name.startswith("."):
                    step.add(i)
            elif _name_matches(part, name):
                step.add(i + 1)
        if not step:
            return set()
        states = _advance(pattern, step)
    return states


def _matches(pattern: list[str], names: list[str]) -> bool:
    return len(pattern) in _states(pattern, names)


def _could_match(pattern: list[str], names: list[str]) -> bool:
    """True when some path below the folder `names` could still match (the walk prunes the others)."""
    return any(i < len(pattern) for i in _states(pattern, names))
