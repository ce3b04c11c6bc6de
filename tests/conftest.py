"""Shared test helpers: specs written to tmp files, and the embedded backend with extra test models."""

from __future__ import annotations

import asyncio
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.sdk import install_lazy_imports

install_lazy_imports()  # the suite loads the SDK as `runner` does, so the lazy packages are what it tests
warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*Assistants API.*")
warnings.filterwarnings("ignore", category=DeprecationWarning, message="deprecated")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "specs" / "examples"

pytest_plugins = ["pytester"]

# the spec pinned by the issue that introduced the format, shared by the spec tests
GREETING = """\
name: greeting
assistant:
  model: echo
  name: Greeter
  instructions: You are a friendly assistant.
vars:
  who: world
conversation:
  - user: "你好呀, {{ who }}"
    expect:
      - contains: 你好呀
      - regex: "^你好"
      - not_contains: error
  - user: Say it again
    expect:
      - icontains: "say it"
"""


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write YAML text (dedented) to a file under tmp_path and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


def run_async(coro):  # type: ignore[no-untyped-def]
    """Run a coroutine to completion (the suite has no async plugin on purpose)."""
    return asyncio.run(coro)


@pytest.fixture
def sdk_resources_loaded() -> None:
    """The SDK's resource modules a conversation uses, imported: pytester's in-process runs drop the modules
    first imported inside them, and a request type left holding a dropped module's globals no longer resolves
    its hints (`NameError: Required`) in the tests that run after."""
    import importlib

    for name in ("openai.resources.beta.assistants", "openai.resources.beta.threads.threads",
                 "openai.resources.beta.threads.runs.runs", "openai.resources.beta.threads.messages",
                 "openai.resources.files", "openai.resources.vector_stores.vector_stores", "openai.types.beta.threads"):
        importlib.import_module(name)


@pytest.fixture
def pytester(sdk_resources_loaded: None, pytester: pytest.Pytester) -> pytest.Pytester:
    """pytester, taking its snapshot of the loaded modules once the SDK's are among them."""
    return pytester


@pytest.fixture
def examples_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The examples as a clone has them, in the working folder: specs/examples and the cassettes its live example
    replays from (cassettes are found by the spec's path from the working folder)."""
    import shutil

    shutil.copytree(EXAMPLES, tmp_path / "specs" / "examples")
    shutil.copytree(ROOT / "cassettes" / "specs" / "examples", tmp_path / "cassettes" / "specs" / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path
