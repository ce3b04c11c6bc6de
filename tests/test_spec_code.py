"""The code interpreter in specs: `code_interpreter` in assistant.tools takes the spec's files and attachments,
`backend.code_timeout` and `backend.code_memory`, and the `code`, `files_created` and `image` checks as loaded."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runner.spec import BackendConfig, SpecError, SpecInvalid, load_spec

CODE = "assistant:\n  model: scripted\n  tools: [code_interpreter]\n"


def write(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(path: Path) -> list[SpecError]:
    with pytest.raises(SpecInvalid) as info:
        load_spec(path)
    return info.value.errors


def test_the_code_interpreter_takes_files_and_attachments_and_says_where_it_is(tmp_path: Path) -> None:
    (tmp_path / "sales.csv").write_text("region,amount\nnorth,1\n", encoding="utf-8")
    spec = load_spec(write(tmp_path, "files: [sales.csv]\n" + CODE +
                           "conversation:\n  - user: hi\n    attachments: [sales.csv]\n"))
    assert spec.runs_code and [f.name for f in spec.files] == ["sales.csv"]
    assert spec.turns[0].attachments[0].name == "sales.csv"
    assert spec.code_where == f"{tmp_path}/spec.yaml:4:11"
    plain = load_spec(write(tmp_path, "assistant: {model: echo, tools: [file_search]}\nconversation: [{user: hi}]\n"))
    assert not plain.runs_code and plain.code_where == ""
    assert not load_spec(write(tmp_path, "assistant_id: asst_1\nconversation: [{user: hi}]\n")).runs_code


def test_at_most_twenty_files_go_to_the_code_interpreter(tmp_path: Path) -> None:
    for i in range(21):
        (tmp_path / f"f{i:02}.csv").write_text("x\n", encoding="utf-8")
    (err,) = errors_of(write(tmp_path, "files: ['*.csv']\n" + CODE + "conversation: [{user: hi}]\n"))
    assert (err.path, err.message) == ("files", "these name 21 files, more than the 20 the code_interpreter tool "
                                       "takes (the API's limit for tool_resources.code_interpreter.file_ids)")
    searched = load_spec(write(tmp_path, "files: ['*.csv']\nassistant: {model: echo, tools: [file_search]}\n"
                                         "conversation: [{user: hi}]\n"))
    assert len(searched.files) == 21  # file_search alone takes up to 500


def test_the_code_limits_of_the_backend(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, CODE + "backend: {code_timeout: 2.5, code_memory: 256}\n"
                                            "conversation: [{user: hi}]\n"))
    assert (spec.backend.code_timeout, spec.backend.code_memory) == (2.5, 256)
    assert spec.backend.key() != BackendConfig().key()  # other limits: another embedded backend
    assert load_spec(write(tmp_path, CODE + "conversation: [{user: hi}]\n")).backend == BackendConfig()


@pytest.mark.parametrize(("backend", "path", "message"), [
    ("{code_timeout: 0}", "backend.code_timeout", "0 is less than or equal to the minimum of 0"),
    ("{code_memory: 32}", "backend.code_memory", "32 is less than the minimum of 64"),
    ("{code_memory: 100.5}", "backend.code_memory", "expected an integer, got a number 100.5"),
    ("{code_timeout: 10, base_url: 'http://127.0.0.1:8000/v1'}", "backend.code_timeout",
     "code_timeout configures the embedded backend's code interpreter; it cannot go with base_url (the server sets "
     "its own: `runner serve --code-timeout`)"),
])
def test_code_limits_that_cannot_apply_are_errors(tmp_path: Path, backend: str, path: str, message: str) -> None:
    (err,) = errors_of(write(tmp_path, CODE + f"backend: {backend}\nconversation: [{{user: hi}}]\n"))
    assert (err.path, err.message) == (path, message)


def test_code_limits_without_the_code_interpreter_are_errors(tmp_path: Path) -> None:
    errors = errors_of(write(tmp_path, "assistant: {model: echo}\nbackend: {code_timeout: 5, code_memory: 128}\n"
                                       "conversation: [{user: hi}]\n"))
    assert [(e.path, e.message) for e in errors] == [
        (f"backend.{key}", f"{key} limits the code_interpreter tool, which assistant.tools does not have: add "
                           "`- code_interpreter` to assistant.tools") for key in ("code_timeout", "code_memory")]


def test_code_checks_as_loaded(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, CODE + textwrap.dedent("""\
        conversation:
          - user: print(6 * 7)
            run: {tool_choice: code_interpreter}
            expect:
              - code: true
              - code: {contains: print, output_contains: 42, error: false}
              - files_created: "*.csv"
              - files_created: 2024
              - image: true
              - not: {code: {error: true}}
        expect:
          - code: {output_contains: "42"}
        """)))
    assert spec.turns[0].run.tool_choice == {"type": "code_interpreter"}
    assert [(c.type, c.arg) for c in spec.turns[0].expect[:5]] == [
        ("code", True), ("code", {"contains": "print", "output_contains": "42", "error": False}),
        ("files_created", "*.csv"), ("files_created", "2024"), ("image", True)]
    assert spec.expect[0].arg == {"output_contains": "42"}


def test_code_checks_need_the_code_interpreter_unless_the_assistant_exists(tmp_path: Path) -> None:
    errors = errors_of(write(tmp_path, textwrap.dedent("""\
        assistant: {model: echo, tools: [file_search]}
        conversation:
          - user: hi
            expect:
              - code: true
              - all: [{files_created: out.csv}]
        expect:
          - image: true
        """)))
    message = ("the assistant has no code_interpreter tool, so its runs run no code: add `- code_interpreter` to "
               "assistant.tools")
    assert [(e.path, e.message) for e in errors] == [
        ("conversation[0].expect[0].code", message), ("conversation[0].expect[1].all[0].files_created", message),
        ("expect[0].image", message)]
    existing = load_spec(write(tmp_path, "assistant_id: asst_1\nconversation:\n  - user: hi\n"
                                         "    expect: [{code: {contains: 7}}, {image: true}]\n"))
    assert [(c.type, c.arg) for c in existing.turns[0].expect] == [("code", {"contains": "7"}), ("image", True)]


@pytest.mark.parametrize(("check", "path", "message"), [
    ("{code: {}}", "conversation[0].expect[0].code", "must not be empty"),
    ("{code: {contain: x}}", "conversation[0].expect[0].code.contain",
     "unknown field 'contain' (did you mean 'contains'?)"),
    ("{code: {error: 'no'}}", "conversation[0].expect[0].code.error", "expected true or false"),
    ("{image: false}", "conversation[0].expect[0].image", "must be true"),
    ("{files_created: ''}", "conversation[0].expect[0].files_created", "should be non-empty"),
])
def test_code_check_mistakes(tmp_path: Path, check: str, path: str, message: str) -> None:
    (err,) = errors_of(write(tmp_path, CODE + f"conversation:\n  - user: hi\n    expect: [{check}]\n"))
    assert err.path == path and message in err.message, err.message


def test_tool_called_on_code_interpreter_points_at_the_code_check(tmp_path: Path) -> None:
    (err,) = errors_of(write(tmp_path, CODE + "conversation:\n  - user: hi\n"
                                              "    expect: [{tool_called: code_interpreter}]\n"))
    assert err.message == ("tool_called judges function calls; code_interpreter is a built-in tool, whose code runs "
                           "the `code` check judges (e.g. `code: true`)")
