"""Spec errors: every problem found in a spec file, each pointing at its line and field."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpecError:
    """One problem in a spec file, located by line/column (1-based) and the path inside the spec."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecInvalid(Exception):
    """Raised when a spec cannot be used; carries every error found, not just the first."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.file, e.line, e.column))
        super().__init__("\n".join(str(e) for e in self.errors))


def format_path(path: tuple[str | int, ...]) -> str:
    """Render a path inside the spec the way users write it: `conversation[1].expect[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
