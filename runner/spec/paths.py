"""Where a spec's outputs go: one relative path per spec file, the same for transcripts and cassettes."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

_UNSAFE = re.compile(r'[\\/:*?"<>|]')  # characters a file name cannot hold on some system


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
