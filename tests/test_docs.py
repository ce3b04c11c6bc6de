"""The documentation says what the code does: install lines, the generated spec reference, the pytest command."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import runner

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DISTRIBUTION = "assistants-runner"

# what follows `pip install` (after any flags): the distribution, or an editable install of a clone
_INSTALLS = re.compile(r"pip install (?:--?(?!e\b)[\w-]+ )*(?P<what>\S+(?: \S+)?)")
_GOOD_TARGET = re.compile(r"""^(?:-e ['"]?\.(?:\[[\w,]+\])?['"]?(?=$|[\s;])|['"]?assistants-runner\b)""")


def _pyproject() -> dict:  # type: ignore[type-arg]
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def test_the_distribution_is_assistants_runner() -> None:
    project = _pyproject()["project"]
    assert project["name"] == DISTRIBUTION  # "runner" on PyPI is someone else's
    assert project["scripts"] == {"runner": "runner.cli:main"}  # the command keeps its name
    assert project["version"] == runner.__version__


def test_every_documented_pip_install_names_the_distribution() -> None:
    seen = 0
    for doc in DOCS:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for match in _INSTALLS.finditer(line):
                seen += 1
                assert _GOOD_TARGET.match(match["what"]), (
                    f"{doc.relative_to(ROOT)}:{number}: `pip install` of something other than {DISTRIBUTION} "
                    f"or `-e .`: {line.strip()}")
    assert seen >= 4
