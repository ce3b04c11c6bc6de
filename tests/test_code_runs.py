"""Specs that run code on the embedded backend, end to end through `runner run`: the example on a CSV, `echo`
running each user message as code in one session, an error and a limit as outputs, the spec's limits reaching the
sandbox, and a matplotlib figure saved beside the transcript. These need bubblewrap (CI installs it) and skip
without it."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES

from runner.cli import cli
from runner.engine.backend import sandbox_problem

pytestmark = pytest.mark.skipif(sandbox_problem() is not None, reason="the code interpreter's sandbox cannot start "
                                                                      "here (bubblewrap)")


@pytest.fixture
def runner_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for name in ("CI", "RUNNER_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "RUNNER_CHAT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def transcript_of(folder: Path, stem: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
    return data


def test_the_code_example_passes_and_saves_the_file_its_code_wrote(runner_in: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    shutil.copytree(EXAMPLES, tmp_path / "specs" / "examples")
    result = runner_in.invoke(cli, ["run", "specs/examples/code.yaml", "--out", "out", "--stable"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "specs" / "examples"
    data = transcript_of(folder, "code")
    first, second, third = data["turns"]
    assert first["code_runs"][0]["logs"] == "total: 4158.80"
    (summary,) = [o for o in first["outputs"] if o["name"] == "summary.csv"]
    assert summary["path"] == "code.files/summary.csv" and summary["file_id"].startswith("file-")
    assert (folder / summary["path"]).read_text(encoding="utf-8").splitlines()[:2] == ["region,share", "north,0.289"]
    assert second["code_runs"][0]["logs"] == "average: 831.76"  # turn 1's variables, in the same session
    assert "ZeroDivisionError" in third["code_runs"][0]["logs"]
    markdown = (folder / "code.md").read_text(encoding="utf-8")
    assert "**Code run 1**\n\n```python\nimport csv\n" in markdown and "Logs:\n\n```\ntotal: 4158.80\n```" in markdown


ECHO = """\
assistant:
  model: echo
  tools: [code_interpreter]
backend: {code_timeout: 2}
conversation:
  - user: "x = 6 * 7\\nprint(x)"
    run: {tool_choice: code_interpreter}
    expect:
      - code: {output_contains: "42", error: false}
  - user: print(x + 1)
    run: {tool_choice: code_interpreter}
    expect:
      - code: {output_contains: "43"}
  - user: "while True: pass"
    run: {tool_choice: code_interpreter}
    expect:
      - code: {error: true, output_contains: "Execution stopped: the code reached the time limit (2 s per call)"}
  - user: open('/mnt/data/gone.txt').read()
    run: {tool_choice: code_interpreter}
    expect:
      - code: {error: true, output_contains: FileNotFoundError}
      - not: {files_created: "*"}
"""


def test_echo_runs_each_message_as_code_in_one_session_with_the_specs_limits(runner_in: CliRunner,
                                                                             tmp_path: Path) -> None:
    (tmp_path / "echo.yaml").write_text(ECHO, encoding="utf-8")
    result = runner_in.invoke(cli, ["run", "echo.yaml", "--out", "out", "--timeout", "30"])
    assert result.exit_code == 0, result.output
    turns = transcript_of(tmp_path / "out", "echo")["turns"]
    assert [t["code_runs"][0]["input"] for t in turns] == ["x = 6 * 7\nprint(x)", "print(x + 1)", "while True: pass",
                                                           "open('/mnt/data/gone.txt').read()"]


FIGURE = """\
assistant:
  model: echo
  tools: [code_interpreter]
conversation:
  - user: "import matplotlib.pyplot as plt\\nplt.plot([1, 3, 2])\\nplt.show()"
    run: {tool_choice: code_interpreter}
    expect:
      - image: true
      - files_created: "*.png"
"""


def test_a_figure_is_an_image_saved_and_shown_in_the_markdown(runner_in: CliRunner, tmp_path: Path) -> None:
    if importlib.util.find_spec("matplotlib") is None:  # found, not imported: numpy's threads would take signals
        pytest.skip("matplotlib is not installed (the `code` extra)")
    (tmp_path / "figure.yaml").write_text(FIGURE, encoding="utf-8")
    result = runner_in.invoke(cli, ["run", "figure.yaml", "--out", "out", "--timeout", "60"])
    assert result.exit_code == 0, result.output
    turn = transcript_of(tmp_path / "out", "figure")["turns"][0]
    (png,) = [o for o in turn["outputs"] if o["kind"] == "image"]
    assert (tmp_path / "out" / png["path"]).read_bytes().startswith(b"\x89PNG")
    markdown = (tmp_path / "out" / "figure.md").read_text(encoding="utf-8")
    assert f"![{png['name']}](figure.files/{png['name']})" in markdown
