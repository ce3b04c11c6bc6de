"""Where a spec's outputs go: one relative path per spec file, the same for transcripts and cassettes."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f-\x9f]')  # characters a file name cannot hold on some system
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# a file name's bytes on most file systems, less the longest suffix an output adds (`.NAME.json.PID.N.tmp`)
MAX_NAME_BYTES = 255 - 30


def output_stem(spec_file: str, case: str = "") -> Path:
    """A spec's path without its `.yaml`/`.yml`, relative to the working folder when inside it, else its
    absolute path without the root (stable from run to run, as cassettes need)."""
    return _output_stem(spec_file, case, os.getcwd())


@functools.lru_cache(maxsize=4096)  # asked for each conversation's transcript and cassette: resolve() is slow
def _output_stem(spec_file: str, case: str, cwd: str) -> Path:
    spec = Path(cwd, spec_file).resolve()
    try:
        relative = spec.relative_to(Path(cwd).resolve())
    except ValueError:
        relative = spec.relative_to(spec.anchor)
    stem = relative.with_suffix("") if relative.suffix in (".yaml", ".yml") else relative
    if case:  # a matrix case: greet[lang=fr], with path separators kept out of the name
        stem = stem.with_name(f"{stem.name}[{_UNSAFE.sub('_', case)}]")
    return stem


def case_problem(spec_file: str, case: str) -> str | None:
    """Why the matrix case `case` of `spec_file` cannot name its output files, or None when it can: a
    control character (a NUL would fail when the transcript is written), or a name too long."""
    found = _CONTROL.search(case)
    if found is not None:
        return (f"holds U+{ord(found.group()):04X}, a control character, and a case's values name its "
                "transcript and cassette files")
    name = Path(spec_file).name
    stem = name.rsplit(".", 1)[0] if name.endswith((".yaml", ".yml")) else name
    size = len(f"{stem}[{_UNSAFE.sub('_', case)}]".encode())
    if size > MAX_NAME_BYTES:
        return (f"the case {case[:40]!r}... names its transcript and cassette files with {size:,} bytes, more "
                f"than the {MAX_NAME_BYTES} a file system allows")
    return None


def resolved(path: Path) -> Path:
    """`path` absolute, its `..` and symbolic links resolved (only made absolute where it cannot be resolved: a
    loop of links, a NUL in the name)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return Path(os.path.abspath(path))


def inside(path: Path, root: Path) -> bool:
    """Whether `path`, its `..` and symbolic links resolved, is the folder `root` or in it (`root` resolved
    already); False where it cannot be resolved."""
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError, ValueError):
        return False
