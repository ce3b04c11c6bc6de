"""The documentation says what the code does: install lines, the generated spec reference, the pytest command."""

from __future__ import annotations

import re
import shlex
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import jsonschema
import pytest

import runner
from runner.expect.checks import CHECKS, COMPOSITE
from runner.spec import reference
from runner.spec.reference import render_reference
from runner.spec.schema import spec_schema

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


def _schema_nodes(node: Any, pointer: str = "#") -> Iterator[tuple[str, Any]]:
    """Every subschema with its JSON pointer."""
    if isinstance(node, dict):
        yield pointer, node
        for key, value in node.items():
            if key not in ("examples", "default", "const", "enum", "required"):
                yield from _schema_nodes(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _schema_nodes(value, f"{pointer}/{i}")


def test_the_spec_reference_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    assert render_reference(spec_schema()) == committed, (
        "docs/spec.md is stale: run python -m runner.spec.reference --write")


def test_the_reference_can_be_printed_and_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert reference.main([]) == 0
    printed = capsys.readouterr().out
    assert printed == render_reference(spec_schema())
    assert reference.main(["--write", str(tmp_path / "docs" / "spec.md")]) == 0
    assert (tmp_path / "docs" / "spec.md").read_text(encoding="utf-8") == printed


def test_every_check_is_in_the_schema_the_reference_and_the_readme() -> None:
    known = set(CHECKS) | set(COMPOSITE)
    in_schema = set(spec_schema()["$defs"]["check"]["properties"])
    assert known == in_schema, f"checks the registry and the schema disagree on: {sorted(known ^ in_schema)}"
    committed = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in sorted(known):
        assert f"\n### `{name}`\n" in committed, f"docs/spec.md has no section on the check {name!r}"
        assert f"`{name}`" in readme, f"README.md's overview of the checks leaves out {name!r}"
    assert "](docs/spec.md" in readme


def test_every_top_level_field_and_check_has_an_anchor_in_the_reference() -> None:
    committed = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    anchors = {reference.slug(line.lstrip("#")) for line in committed.splitlines() if line.startswith("#")}
    links = set(re.findall(r"\]\(#([^)]+)\)", committed))
    assert links <= anchors, f"links to no heading: {sorted(links - anchors)}"
    for name in spec_schema()["properties"]:
        assert f"| `{name}` |" in committed, f"the top-level field {name!r} is not in docs/spec.md"


def test_every_field_of_the_schema_is_described() -> None:
    schema = spec_schema()
    undescribed = []
    for pointer, node in _schema_nodes(schema):
        for name, sub in node.get("properties", {}).items():
            target = schema["$defs"][sub["$ref"].rsplit("/", 1)[-1]] if "$ref" in sub else sub
            if not (sub.get("description") or target.get("description")):
                undescribed.append(f"{pointer}/properties/{name}")
    assert not undescribed, f"fields without a description (the reference has nothing to say): {undescribed}"


def test_every_example_in_the_schema_is_valid() -> None:
    schema = spec_schema()
    root = jsonschema.Draft202012Validator(schema)
    seen = 0
    for pointer, node in _schema_nodes(schema):
        for example in node.get("examples", []):
            seen += 1
            errors = [e.message for e in root.evolve(schema=node).iter_errors(example)]
            assert not errors, f"the example at {pointer} is invalid: {errors}"
    assert seen >= 30
    checks = spec_schema()["$defs"]["check"]["properties"]
    assert all(check.get("examples") for check in checks.values()), "every check needs an example"


def _documented_command(doc: Path, starts: str) -> list[str]:
    """The arguments of the one shell line in `doc` that starts with `starts`."""
    lines = [line for line in doc.read_text(encoding="utf-8").splitlines() if line.startswith(starts)]
    assert len(lines) == 1, f"{doc.relative_to(ROOT)} should show one `{starts}...` command, found {lines}"
    return shlex.split(lines[0], comments=True)


def test_the_documented_pytest_command_runs_this_repositorys_specs(pytester: pytest.Pytester,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/ci.md's command for this repository collects its specs and passes, offline and without a key."""
    command = _documented_command(ROOT / "docs" / "ci.md", "pytest specs/ -o ")
    for folder in ("specs", "cassettes"):
        shutil.copytree(ROOT / folder, pytester.path / folder)
    if not _sandbox():  # the code example needs bubblewrap (CI installs it); without it, it is refused
        (pytester.path / "specs" / "examples" / "code.yaml").unlink()
    for name in ("CI", "OPENAI_API_KEY", "OPENAI_BASE_URL", "RUNNER_BASE_URL", "RUNNER_CHAT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)

    async def no_network(self, request):  # type: ignore[no-untyped-def]
        raise AssertionError(f"network access during replay: {request.url}")

    monkeypatch.setattr(httpx2.AsyncHTTPTransport, "handle_async_request", no_network)
    result = pytester.runpytest(*command[1:], "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert result.ret == 0, result.stdout.str()
    assert outcomes.get("passed", 0) == len(list(_conversations())) > 0  # every conversation, each once


def _conversations() -> Iterator[str]:
    from runner.spec import find_specs, load_cases

    for file in find_specs([str(ROOT / "specs")]):
        for spec in load_cases(file, {}):
            if _sandbox() or not spec.runs_code:
                yield spec.label


def _sandbox() -> bool:
    from runner.engine.backend import sandbox_problem

    return sandbox_problem() is None


def test_docs_name_the_plugins_default_file_patterns(pytester: pytest.Pytester) -> None:
    patterns = pytester.parseconfig().getini("runner_spec_glob")
    ci = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    assert patterns and all(f"`{pattern}`" in ci for pattern in patterns), patterns
