"""Where a spec's outputs go: one relative path per spec file, the same for transcripts and cassettes."""

from __future__ import annotations

from pathlib import Path


def output_stem(spec_file: str) -> Path:
    """A spec's path without its `.yaml`/`.yml`, relative to the working folder when inside it, else its
    absolute path without the root (stable from run to run, as cassettes need)."""
    spec = Path(spec_file).resolve()
    try:
        relative = spec.relative_to(Path.cwd().resolve())
    except ValueError:
        relative = spec.relative_to(spec.anchor)
    return relative.with_suffix("") if relative.suffix in (".yaml", ".yml") else relative
