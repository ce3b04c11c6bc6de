"""Knowledge retrieval in specs: `files:` and `attachments:` (paths and globs inside the spec's folder, with
their limits), the built-in tools in `assistant.tools`, and the `file_search` and `cites` checks as loaded."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.spec import BuiltinTool, FunctionTool, KnowledgeFile, SpecError, SpecInvalid, load_cases, load_spec

HEAD = """\
assistant:
  model: scripted
  tools: [file_search]
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A spec folder with knowledge files: two at the top of knowledge/, one deeper, and hidden ones."""
    files = {
        "knowledge/warranty.md": "Every kettle has a two-year warranty.",
        "knowledge/faq.txt": "Returns are accepted within 30 days.",
        "knowledge/orders/order-1042.txt": "Order 1042 shipped on 3 March.",
        "knowledge/.env": "SECRET=1",
        "knowledge/.drafts/draft.md": "not ready",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def write(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def with_files(folder: Path, files: str, conversation: str = "  - user: hi\n", head: str = HEAD) -> Path:
    return write(folder, f"files: {files}\n{head}conversation:\n{conversation}")


def errors_of(path: Path) -> list[SpecError]:
    with pytest.raises(SpecInvalid) as info:
        load_spec(path)
    return info.value.errors


def only_error(path: Path) -> SpecError:
    errors = errors_of(path)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def paths(files: tuple[KnowledgeFile, ...]) -> list[str]:
    return [f.path for f in files]


# --- files: what they match ------------------------------------------------------------------------------


def test_paths_and_globs_give_the_files_sorted_without_duplicates(folder: Path) -> None:
    spec = load_spec(with_files(folder, "[knowledge/warranty.md, 'knowledge/*', ./knowledge/faq.txt]"))
    assert paths(spec.files) == ["knowledge/faq.txt", "knowledge/warranty.md"]  # no folder, no hidden file
    assert spec.files[1].location == str(folder / "knowledge" / "warranty.md") and spec.files[1].name == "warranty.md"


def test_a_double_star_descends_but_skips_hidden_folders_unless_spelt(folder: Path) -> None:
    spec = load_spec(with_files(folder, "['knowledge/**']"))
    assert paths(spec.files) == ["knowledge/faq.txt", "knowledge/orders/order-1042.txt", "knowledge/warranty.md"]
    spec = load_spec(with_files(folder, "['**/*.md', 'knowledge/.drafts/*', knowledge/.env]"))
    assert paths(spec.files) == ["knowledge/.drafts/draft.md", "knowledge/.env", "knowledge/warranty.md"]
    spec = load_spec(with_files(folder, "['knowledge/**/**/**/**/**/**/**/**/**/**/**/**/*.txt']"))
    assert paths(spec.files) == ["knowledge/faq.txt", "knowledge/orders/order-1042.txt"]  # an automaton, no blowup


def test_globs_are_case_sensitive_and_match_regular_files_only(folder: Path) -> None:
    os.mkfifo(folder / "knowledge" / "pipe.md")
    spec = load_spec(with_files(folder, "['knowledge/*.md']"))
    assert paths(spec.files) == ["knowledge/warranty.md"]  # the named pipe is never opened
    err = only_error(with_files(folder, "['knowledge/*.MD']"))
    assert err.message.startswith("no file matches 'knowledge/*.MD' in ")


def test_templates_in_paths_render_per_matrix_case(folder: Path) -> None:
    path = write(folder, """\
        files: ["knowledge/{{ doc }}"]
        matrix: {doc: [faq.txt, warranty.md]}
        assistant: {model: scripted, tools: [file_search]}
        conversation: [{user: hi}]
        """)
    assert [paths(s.files) for s in load_cases(path)] == [["knowledge/faq.txt"], ["knowledge/warranty.md"]]


# --- files: what is refused, with its line ------------------------------------------------------------------


def test_a_glob_that_matches_nothing_is_an_error_at_its_line(folder: Path) -> None:
    path = with_files(folder, "\n  - knowledge/*.md\n  - 'knowledge/*.pdf'")
    err = only_error(path)
    assert (err.line, err.column, err.path) == (3, 5, "files[1]")
    assert err.message == (f"no file matches 'knowledge/*.pdf' in {folder} (a glob, relative to the spec's folder; "
                           "names starting with `.` need a pattern that starts with `.`)")
    assert str(err).startswith(f"{path}:3:5: files[1]: no file matches")


def test_a_missing_file_a_folder_and_a_special_file_are_errors(folder: Path) -> None:
    os.mkfifo(folder / "pipe.txt")
    errors = errors_of(with_files(folder, "[knowledge/nope.md, knowledge, pipe.txt]"))
    assert [e.path for e in errors] == ["files[0]", "files[1]", "files[2]"]
    assert errors[0].message == f"no file {folder}/knowledge/nope.md (paths are relative to the spec's folder)"
    assert errors[1].message == f"{folder}/knowledge is a folder: name its files, e.g. knowledge/*"
    assert errors[2].message == f"{folder}/pipe.txt is not a regular file"


@pytest.mark.parametrize(("pattern", "says"), [
    ("/etc/passwd", "'/etc/passwd' is an absolute path: a spec's files are relative to its folder"),
    ("C:/secrets.txt", "'C:/secrets.txt' is an absolute path"),
    ("~/.ssh/id_rsa", "'~/.ssh/id_rsa' starts with `~`, which is not expanded"),
    ("../outside.txt", "'../outside.txt' leaves the spec's folder (`..`)"),
    ("knowledge/../../outside/*", "'knowledge/../../outside/*' leaves the spec's folder (`..`)"),
    ("./", "'./' names the spec's folder itself"),
])
def test_a_path_may_not_leave_the_specs_folder(folder: Path, pattern: str, says: str) -> None:
    (folder.parent / "outside.txt").write_text("secret", encoding="utf-8")
    err = only_error(with_files(folder, f"[{pattern!r}]"))
    assert err.path == "files[0]" and err.message.startswith(says), err.message


def test_a_symlink_leading_out_of_the_folder_is_refused_and_a_symlinked_folder_is_not_walked(tmp_path: Path) -> None:
    spec_folder, outside = tmp_path / "specs", tmp_path / "private"
    outside.mkdir()
    (outside / "key.txt").write_text("secret", encoding="utf-8")
    (spec_folder / "docs").mkdir(parents=True)
    (spec_folder / "docs" / "ok.md").write_text("fine", encoding="utf-8")
    (spec_folder / "docs" / "key.txt").symlink_to(outside / "key.txt")
    (spec_folder / "docs" / "private").symlink_to(outside, target_is_directory=True)
    err = only_error(with_files(spec_folder, "['docs/*']"))
    assert err.message == (f"{spec_folder}/docs/key.txt is a symlink to a file outside the spec's folder, and a "
                           "spec uploads only files inside its folder")
    assert only_error(with_files(spec_folder, "[docs/private/key.txt]")).message.endswith("outside the spec's folder, "
                                                                                          "and a spec uploads only "
                                                                                          "files inside its folder")
    (spec_folder / "docs" / "key.txt").unlink()
    assert paths(load_spec(with_files(spec_folder, "['docs/**']")).files) == ["docs/ok.md"]
    (spec_folder / "docs" / "inner.md").symlink_to(spec_folder / "docs" / "ok.md")  # inside: fine
    assert paths(load_spec(with_files(spec_folder, "['docs/*.md']")).files) == ["docs/inner.md", "docs/ok.md"]


def test_too_many_files_too_big_a_file_and_too_wide_a_glob(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("runner.spec.load.MAX_KNOWLEDGE_FILES", 2)
    err = only_error(with_files(folder, "['knowledge/**']"))
    assert err.path == "files" and err.message.startswith("these name 3 files, more than the 2 one list may hold")
    monkeypatch.setattr("runner.spec.knowledge.MAX_KNOWLEDGE_FILE_BYTES", 30)
    err = only_error(with_files(folder, "[knowledge/warranty.md]"))
    assert err.message == (f"{folder}/knowledge/warranty.md holds 37 bytes, more than the 30 a file uploaded to a "
                           "backend may hold")
    monkeypatch.setattr("runner.spec.knowledge.MAX_GLOB_ENTRIES", 3)
    err = only_error(with_files(folder, "['**/order-*.txt']"))
    assert err.message.startswith("the glob looks through more than 3 entries of ")


def test_a_glob_is_walked_once_for_every_case_of_a_matrix(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runner.spec.knowledge as knowledge

    walks: list[str] = []
    real = knowledge.FileMatcher._match
    monkeypatch.setattr(knowledge.FileMatcher, "_match", lambda self, p: walks.append(p) or real(self, p))
    path = write(folder, """\
        files: ["knowledge/*"]
        matrix: {n: [1, 2, 3]}
        assistant: {model: scripted, tools: [file_search]}
        conversation: [{user: "{{ n }}"}]
        """)
    assert len(load_cases(path)) == 3 and walks == ["knowledge/*"]


# --- attachments ----------------------------------------------------------------------------------------


def test_attachments_are_resolved_per_turn(folder: Path) -> None:
    path = write(folder, HEAD + """\
        conversation:
          - user: hi
          - user: where is my order?
            attachments: [knowledge/orders/order-1042.txt, 'knowledge/*.md']
        """.replace("        ", ""))
    spec = load_spec(path)
    assert spec.turns[0].attachments == ()
    assert paths(spec.turns[1].attachments) == ["knowledge/orders/order-1042.txt", "knowledge/warranty.md"]


def test_an_attachment_that_does_not_exist_is_an_error_at_its_line(folder: Path) -> None:
    err = only_error(write(folder, HEAD + "conversation:\n  - user: hi\n    attachments: [receipt.pdf]\n"))
    assert (err.line, err.column, err.path) == (6, 19, "conversation[0].attachments[0]")
    assert err.message == f"no file {folder}/receipt.pdf (paths are relative to the spec's folder)"


def test_files_and_attachments_need_a_built_in_tool_that_uses_files(folder: Path) -> None:
    errors = errors_of(with_files(folder, "[knowledge/faq.txt]", "  - user: hi\n    attachments: [knowledge/faq.txt]\n",
                                  head="assistant: {model: scripted, tools: [{name: get_weather}]}\n"))
    fix = "add `- file_search` (to search them) or `- code_interpreter` (to read them in code) to assistant.tools"
    assert [(e.path, e.message) for e in errors] == [
        ("files", "the assistant uses these files with its file_search or code_interpreter tool, and assistant.tools "
                  f"has neither: {fix}"),
        ("conversation[0].attachments", "attachments go to the assistant's file_search or code_interpreter tool, and "
                                        f"assistant.tools has neither: {fix}")]
    # the code interpreter reads them, without file_search
    code = load_spec(with_files(folder, "[knowledge/faq.txt]", "  - user: hi\n    attachments: [knowledge/faq.txt]\n",
                                head="assistant: {model: scripted, tools: [code_interpreter]}\n"))
    assert paths(code.files) == ["knowledge/faq.txt"] and paths(code.turns[0].attachments) == ["knowledge/faq.txt"]
    # an existing assistant's tools are its backend's business
    existing = load_spec(with_files(folder, "[knowledge/faq.txt]", head="assistant_id: asst_1\n"))
    assert paths(existing.files) == ["knowledge/faq.txt"]


# --- built-in tools -------------------------------------------------------------------------------------


def test_built_in_tools_by_name_or_with_options_in_the_apis_form(folder: Path) -> None:
    path = write(folder, """\
        assistant:
          model: scripted
          tools:
            - {file_search: {max_num_results: 3, ranking_options: {score_threshold: 0.2}}}
            - code_interpreter
            - name: get_weather
        conversation: [{user: hi}]
        """)
    assistant = load_spec(path).assistant
    assert assistant is not None
    assert assistant.tools == (BuiltinTool("file_search", {"max_num_results": 3,
                                                           "ranking_options": {"score_threshold": 0.2}}),
                               BuiltinTool("code_interpreter"), FunctionTool("get_weather"))
    assert assistant.to_create_params()["tools"] == [
        {"type": "file_search", "file_search": {"max_num_results": 3, "ranking_options": {"score_threshold": 0.2}}},
        {"type": "code_interpreter"}, {"type": "function", "function": {"name": "get_weather"}}]
    assert assistant.function_names == {"get_weather"} and assistant.has("file_search")
    assert not assistant.has("web_search")


def test_a_built_in_tool_declared_twice_is_an_error(folder: Path) -> None:
    err = only_error(write(folder, "assistant: {model: echo, tools: [file_search, {file_search: {}}]}\n"
                                   "conversation: [{user: hi}]\n"))
    assert (err.path, err.message) == ("assistant.tools[1]", "tool 'file_search' is declared twice")
    assert BuiltinTool("file_search").to_api() == {"type": "file_search"}


@pytest.mark.parametrize(("tool", "path", "message"), [
    ("{file_search: {max_num_result: 3}}", "assistant.tools[0].file_search.max_num_result",
     "unknown field 'max_num_result' (did you mean 'max_num_results'?)"),
    ("{file_search: {max_num_results: 51}}", "assistant.tools[0].file_search.max_num_results",
     "51 is greater than the maximum of 50"),
    ("{file_search: {ranking_options: {ranker: auto}}}", "assistant.tools[0].file_search.ranking_options",
     "missing required field 'score_threshold'"),
    ("{name: get_weather, parameter: {}}", "assistant.tools[0].parameter",
     "unknown field 'parameter' (did you mean 'parameters'?)"),
    ("file_serch", "assistant.tools[0]", "must be one of: file_search, code_interpreter (got \"file_serch\"; did you "
                                         "mean 'file_search'?)"),
    ("42", "assistant.tools[0]", "expected a function tool or one of file_search, code_interpreter or the "
                                 "file_search tool with options, got an integer 42"),
])
def test_tool_mistakes_are_reported_in_the_form_meant(folder: Path, tool: str, path: str, message: str) -> None:
    err = only_error(write(folder, f"assistant:\n  model: echo\n  tools:\n    - {tool}\nconversation: [{{user: hi}}]\n"))
    assert (err.path, err.message) == (path, message)


# --- the file_search and cites checks as loaded ---------------------------------------------------------


def test_checks_name_files_the_searches_can_find(folder: Path) -> None:
    path = write(folder, """\
        files: [knowledge/warranty.md]
        assistant: {model: scripted, tools: [file_search]}
        conversation:
          - user: one
            expect:
              - file_search: {file: warranty.md, contains: 2}
              - cites: warrenty.md
              - file_search: {file: order-1042.txt}
          - user: two
            attachments: [knowledge/orders/order-1042.txt]
            expect:
              - file_search: {file: order-1042.txt}
              - not: {cites: faq.txt}
        expect:
          - cites: order-1042.txt
        """)
    errors = errors_of(path)
    assert [(e.line, e.path, e.message) for e in errors] == [
        (7, "conversation[0].expect[1].cites", "no file named 'warrenty.md' among the spec's files and the "
                                               "attachments up to this turn (did you mean 'warranty.md'?)"),
        (8, "conversation[0].expect[2].file_search.file",
         "no file named 'order-1042.txt' among the spec's files and the attachments up to this turn (a file is named "
         "by its base name; files: warranty.md)"),
        (13, "conversation[1].expect[1].not.cites", "no file named 'faq.txt' among the spec's files and the "
                                                    "attachments up to this turn (a file is named by its base name; "
                                                    "files: order-1042.txt, warranty.md)")]


def test_checks_on_searches_need_the_file_search_tool_unless_the_assistant_exists(folder: Path) -> None:
    err = only_error(write(folder, "assistant: {model: echo}\nconversation:\n  - user: hi\n"
                                   "    expect: [{file_search: true}]\n"))
    assert (err.path, err.message) == ("conversation[0].expect[0].file_search", "the assistant has no file_search "
                                       "tool, so its runs search nothing: add `- file_search` to assistant.tools")
    spec = load_spec(write(folder, "assistant_id: asst_1\nconversation:\n  - user: hi\n    expect:\n"
                                   "      - file_search: {file: anything.pdf, contains: 42}\n      - cites: x.md\n"))
    assert [(c.type, c.arg) for c in spec.turns[0].expect] == [
        ("file_search", {"file": "anything.pdf", "contains": "42"}), ("cites", "x.md")]


def test_tool_called_on_file_search_points_at_the_file_search_check(folder: Path) -> None:
    err = only_error(write(folder, HEAD + "conversation:\n  - user: hi\n    expect: [{tool_called: file_search}]\n"))
    assert err.message.startswith("tool_called judges function calls; file_search is a built-in tool, whose "
                                  "searches the `file_search` check judges")


def test_runner_validate_reports_a_missing_knowledge_file(folder: Path) -> None:
    path = with_files(folder, "['docs/*.md']")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:1:9: files[0]: no file matches 'docs/*.md' in {folder}" in result.output
