"""Hostile and broken spec files: each fails `runner validate` with exit 2 and `file:line:col: message` lines,
quickly, never with a traceback or a hang (issue 11, "The spec loader and `runner validate`").

The small cases are files in tests/data/hostile_specs/, each saying on its first line what it must report
(`# expect: LINE:COL: text`); the large ones are made here rather than committed.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.spec import SpecInvalid, load_cases
from runner.spec.limits import MAX_CASES, MAX_FILE_BYTES, MAX_NODES
from runner.spec.load import BUG

CORPUS = Path(__file__).parent / "data" / "hostile_specs"
EXPECT = re.compile(r"# expect: (?:(\d+):(\d+): )?(.*)")
SECONDS = 6.0  # each case, with room for the 2 s template budget on a loaded machine


def validate(path: Path | str) -> tuple[list[str], float]:
    """`runner validate path`'s error lines (asserting exit 2 and no traceback) and how long it took."""
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["validate", str(path)])
    took = time.perf_counter() - start
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert lines and lines[-1].endswith("nothing was run"), lines
    for line in lines[:-1]:
        assert re.match(rf"{re.escape(str(path))}:\d+:\d+: \S", line), line
        assert BUG not in line, line
    return lines[:-1], took


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.yaml")))
def test_corpus_case_fails_with_its_message(name: str) -> None:
    path = CORPUS / name
    expect = EXPECT.match(path.read_bytes().split(b"\n", 1)[0].decode())
    assert expect, f"{name} starts with no `# expect:` line"
    lines, took = validate(path)
    line, col, text = expect.groups()
    where = f"{path}:{line}:{col}: " if line else f"{path}:"
    parts = text.split(" ... ")  # each part in order, anything between
    assert any(ln.startswith(where) and re.search(".*".join(map(re.escape, parts)), ln) for ln in lines), (
        where, text, lines)
    assert took < SECONDS, f"{name} took {took:.1f} s"


def test_a_template_that_loops_for_ever_stops_at_its_time_limit() -> None:
    lines, took = validate(CORPUS / "template_nested_loops.yaml")
    assert "the limit of 2 s per template" in lines[0]
    assert 1.9 < took < SECONDS


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "big.yaml", "assistant: {model: echo}\nconversation: [{user: hi}]\n"
                                       "vars: {x: '" + "a" * MAX_FILE_BYTES + "'}\n")
    lines, took = validate(path)
    assert lines == [f"{path}:1:1: the file is larger than {MAX_FILE_BYTES:,} bytes, the limit of a spec file "
                     f"({path.stat().st_size:,} bytes)"]
    assert took < 1


def test_200000_keys_are_refused_at_the_node_limit_quickly(tmp_path: Path) -> None:
    keys = "".join(f"k{i}: {i}\n" for i in range(200_000))  # 2.2 MB: too big a file as well
    lines, _ = validate(write(tmp_path, "keys.yaml", "vars:\n" + keys.replace("\n", "\n  ")))
    assert "the limit of a spec file" in lines[0]
    flow = "vars: {" + ", ".join(f"k{i}: 1" for i in range(60_000)) + "}\n"  # under the size limit
    lines, took = validate(write(tmp_path, "flow.yaml", flow))
    assert lines[0].endswith(f"the document has more than {MAX_NODES:,} keys and values, the limit of a spec file")
    assert took < SECONDS


def test_a_50000_turn_spec_is_refused_with_the_node_limit_not_an_alias_message(tmp_path: Path) -> None:
    turns = "".join(f"  - user: hi {i}\n" for i in range(50_000))
    lines, took = validate(write(tmp_path, "turns.yaml", "assistant: {model: echo}\nconversation:\n" + turns))
    assert lines[0].endswith(f"more than {MAX_NODES:,} keys and values, the limit of a spec file")
    assert "aliases" not in lines[0] and took < SECONDS


def test_2000_nested_ifs_are_refused(tmp_path: Path) -> None:
    template = "{% if 1 %}" * 2000 + "x" + "{% endif %}" * 2000
    lines, took = validate(write(tmp_path, "ifs.yaml", f"assistant: {{model: echo}}\nconversation: [{{user: '{template}'}}]\n"))
    assert "42,000 characters of code in its tags" in lines[0] and "limit of 20,000 per template" in lines[0]
    below = "{% if 1 %}" * 900 + "x" + "{% endif %}" * 900  # under the tag limit: Jinja's parser recursion
    lines, _ = validate(write(tmp_path, "ifs2.yaml", f"assistant: {{model: echo}}\nconversation: [{{user: '{below}'}}]\n"))
    assert "template error:" in lines[0]


def test_a_matrix_at_the_case_limit_loads_and_one_over_is_refused(tmp_path: Path) -> None:
    values = ", ".join(str(i) for i in range(100))
    spec = "assistant: {model: echo}\nmatrix: {a: [%s], b: [%s]%s}\nconversation: [{user: '{{ a }} {{ b }}'}]\n"
    assert len(load_cases(write(tmp_path, "ok.yaml", spec % (values, values, "")))) == MAX_CASES
    lines, took = validate(write(tmp_path, "over.yaml", spec % (values, values, ", include: [{a: x}]")))
    assert lines[0].endswith(f"the matrix crosses into {MAX_CASES + 1:,} cases, more than the limit of "
                             f"{MAX_CASES:,} cases per spec file")
    assert took < 1


def test_a_case_whose_file_names_would_be_too_long_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "long.yaml", "assistant: {model: echo}\nmatrix: {a: [x], b: ['" + "y" * 150 + "'], "
                                        "c: ['" + "z" * 150 + "']}\nconversation: [{user: hi}]\n")
    lines, _ = validate(path)
    assert lines == [f"{path}:2:9: matrix: the case 'a=x,b={'y' * 34}'... names its transcript and cassette "
                     "files with 315 bytes, more than the 225 a file system allows"]


def test_thousands_of_exclude_and_include_entries_cost_about_as_much_as_the_cases(tmp_path: Path) -> None:
    a, b = ", ".join(str(i) for i in range(99)), ", ".join(str(i) for i in range(100))  # 9,900 cases
    exclude = ", ".join(f"{{a: {i}, b: {j}}}" for i in range(99) for j in range(0, 100, 2))  # 4,950 entries
    include = ", ".join(f"{{a: {i}, b: 1}}" for i in range(99))  # already there: no new case
    spec = (f"assistant: {{model: echo}}\nmatrix: {{a: [{a}], b: [{b}], exclude: [{exclude}, {{c: 1}}], "
            f"include: [{include}, {{a: x}}]}}\nconversation: [{{user: hi}}]\n")
    start = time.perf_counter()
    specs = load_cases(write(tmp_path, "m.yaml", spec))
    assert len(specs) == 4_950 + 1 and specs[-1].case == "a=x"
    assert time.perf_counter() - start < SECONDS


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    lines, took = validate(fifo)
    assert lines == [f"{fifo}:1:1: not a regular file (a named pipe)"] and took < 1
    rules = tmp_path / "bot.rules.yaml"
    os.mkfifo(rules)
    spec = write(tmp_path, "s.yaml", "assistant: {model: scripted}\nbackend: {rules: bot.rules.yaml}\n"
                                     "conversation: [{user: hi}]\n")
    lines, _ = validate(spec)
    assert lines == [f"{spec}:2:18: backend.rules: rules file {rules}: not a regular file (a named pipe)"]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="Linux /proc")
def test_proc_self_environ_is_refused_for_its_nul_characters() -> None:
    lines, _ = validate("/proc/self/environ")
    assert "U+0000 (NUL) is not allowed in a spec file" in lines[0]


@pytest.mark.skipif(sys.platform == "win32", reason="device files")
def test_a_device_is_not_read() -> None:
    with pytest.raises(SpecInvalid, match=r"not a regular file \(a character device\)"):
        load_cases("/dev/zero")


def test_an_exception_that_escapes_loading_is_still_a_spec_error(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import runner.spec.load as load

    def broken(doc):  # type: ignore[no-untyped-def]
        raise KeyError("boom")

    monkeypatch.setattr(load, "schema_errors", broken)
    path = write(tmp_path, "s.yaml", "assistant: {model: echo}\nconversation: [{user: hi}]\n")
    with pytest.raises(SpecInvalid) as info:
        load_cases(path)
    assert str(info.value) == f"{path}:1:1: {BUG}: KeyError: 'boom'"


def test_the_templates_of_a_file_share_one_time_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runner.spec.load as load

    monkeypatch.setattr(load, "FILE_TEMPLATE_SECONDS", 0.5)
    slow = "{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}"
    path = write(tmp_path, "m.yaml", f"assistant: {{model: echo}}\nmatrix: {{n: [1, 2, 3, 4, 5, 6, 7, 8]}}\n"
                                     f"conversation: [{{user: '{slow}'}}, {{user: '{slow} again'}}]\n")
    start = time.perf_counter()
    with pytest.raises(SpecInvalid) as info:
        load_cases(path)
    assert time.perf_counter() - start < 3  # the first template to run out stops the file: no other renders
    assert [str(e) for e in info.value.errors] == [
        f"{path}:3:23: conversation[0].user: template error: rendering would pass the limit of 0.5 s for all the "
        "templates of a spec file"]
