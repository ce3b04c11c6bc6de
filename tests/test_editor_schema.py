"""Editor support: `runner schema` finds the installed schema, and every example spec names the clone's copy."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from click.testing import CliRunner

import runner
from runner.cli import cli
from runner.spec import find_specs
from runner.spec.schema import spec_schema

ROOT = Path(__file__).resolve().parent.parent
MODELINE = "# yaml-language-server: $schema="


def test_runner_schema_prints_the_path_of_the_installed_schema() -> None:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip())
    assert path.is_absolute() and path.is_file()
    assert path.is_relative_to(Path(runner.__file__).absolute().parent)  # the package's copy, not a clone's
    assert json.loads(path.read_text(encoding="utf-8")) == spec_schema()
    with (ROOT / "pyproject.toml").open("rb") as f:  # ...and the package ships it
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["runner"]
    assert path.relative_to(Path(runner.__file__).absolute().parent).as_posix() in package_data


def test_runner_schema_print_prints_the_schema() -> None:
    result = CliRunner().invoke(cli, ["schema", "--print"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == spec_schema()


def test_runner_schema_does_not_load_the_sdk() -> None:
    code = ("import sys; from runner.cli import main; sys.argv = ['runner', 'schema']\n"
            "try: main()\nexcept SystemExit: pass\n"
            "assert 'openai' not in sys.modules, 'runner schema imported the SDK'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("spec.schema.json")


def test_every_example_spec_names_the_schema_on_its_first_line() -> None:
    files = find_specs([str(ROOT / "specs")])
    assert len(files) >= 5
    for file in files:
        first = Path(file).read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith(MODELINE), f"{file} does not start with `{MODELINE}<relative path>`"
        target = (Path(file).parent / first.removeprefix(MODELINE).strip()).resolve()
        assert target == (ROOT / "schemas" / "spec.schema.json").resolve(), f"{file}: {first} points at {target}"
