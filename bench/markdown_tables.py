"""What the benchmark scripts share: their figures as an aligned Markdown table, and their section of
BENCHMARKS.md replaced (or added at the end) with the other sections kept."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def render(rows: list[list[str]]) -> list[str]:
    """A markdown table with aligned columns (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return lines


def write_section(section: str, body: str, path: Path = BENCHMARKS) -> None:
    """Replace the section headed `section` (e.g. `## Retrieval`) of BENCHMARKS.md with `body`, which starts with
    that heading, or add it at the end."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(f"\n{section}\n")
    before, after = text, ""
    if start >= 0:
        before, rest = text[:start], text[start + 1:]
        following = rest.find("\n## ", len(section))
        after = rest[following + 1:] if following >= 0 else ""
    path.write_text(before.rstrip("\n") + "\n\n" + body + ("\n" + after if after else ""), encoding="utf-8")
