"""Property-based tests of the spec loader (hypothesis): whatever a file holds, loading it gives a valid spec
or SpecInvalid errors with a file, a line and a message, never a traceback, within a bounded time.

The inputs are random bytes, random YAML-ish text, random documents shaped like specs, mutations of the
example specs and random templates. Examples are few and derandomized, so CI time stays bounded and a
failure is the same on every machine (the whole module takes about 20 s).
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import EXAMPLES
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from runner.cli import cli
from runner.spec import Spec, SpecInvalid, load_cases, sandbox
from runner.spec.limits import TEMPLATE_SECONDS
from runner.spec.load import BUG, matrix_cases
from runner.spec.paths import output_stem

SECONDS = 3.0  # one example without templates: each takes milliseconds, this only catches a hang
MEMORY = 64 * 1024 * 1024  # what one template example may allocate at its peak: refusals come before the growth
TEMPLATE_EXAMPLE_SECONDS = TEMPLATE_SECONDS + 3.0  # one example may render a template to its time limit
DEADLINE, TEMPLATE_DEADLINE = timedelta(seconds=SECONDS), timedelta(seconds=TEMPLATE_EXAMPLE_SECONDS)
SETTINGS = {"derandomize": True, "database": None, "suppress_health_check": [HealthCheck.too_slow]}
EXAMPLE_TEXTS = {p.name: p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.glob("*.yaml"))}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the examples' rules file, knowledge files and data, which mutated examples name."""
    path = tmp_path_factory.mktemp("properties")
    (path / "weather.rules.yaml").write_text(EXAMPLE_TEXTS["weather.rules.yaml"], encoding="utf-8")
    shutil.copytree(EXAMPLES / "knowledge", path / "knowledge")
    shutil.copytree(EXAMPLES / "data", path / "data")
    return path


_numbers = itertools.count()


def note_outcome(message: str) -> None:
    """Count outcomes by kind (pytest --hypothesis-show-statistics shows how the inputs fared)."""
    if currently_in_test_context():
        event(re.sub(r"[0-9]+|'[^']*'", "", message)[:40])


def loads_or_says_where(folder: Path, data: bytes | str, seconds: float = SECONDS,
                        name: str = "spec.yaml") -> list[Spec] | list[str]:
    """Write `data` as a spec, load it; assert it is valid specs or located errors, in time."""
    path = folder / f"{next(_numbers)}-{name}"
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    start = time.perf_counter()
    try:
        specs = load_cases(path)
    except SpecInvalid as exc:
        assert exc.errors, "SpecInvalid without errors"
        for error in exc.errors:
            assert error.file == str(path) or error.file.startswith(str(folder)), error
            assert error.line >= 1 and error.column >= 1, error
            assert error.message.strip() and "Traceback" not in error.message, error
            assert BUG not in error.message, error  # the last resort caught an exception that escaped
            assert str(error).startswith(f"{error.file}:{error.line}:{error.column}: ")
        outcome: list[Spec] | list[str] = [str(e) for e in exc.errors]
        note_outcome(exc.errors[0].message)
    else:
        assert specs and all(isinstance(s, Spec) for s in specs)
        for spec in specs:  # what a valid spec names its outputs with can be written
            assert not any(c in str(output_stem(spec.file, spec.case)) for c in "\x00\n\r")
        outcome = specs
        note_outcome("valid")
    finally:
        path.unlink()
    took = time.perf_counter() - start
    assert took < seconds, f"loading took {took:.1f} s"
    return outcome


# --- random bytes and text ---------------------------------------------------------------------------------

YAML_TOKENS = [
    " ", "  ", "\n", "\r\n", "\t", "-", "- ", ":", ": ", "?", "? ", ",", "[", "]", "{", "}", "#", "|", ">", "'",
    '"', "\\", "&a ", "*a", "&b ", "*b", "<<: ", "=", "~", "!!int ", "!!float ", "!!str ", "!!bool ",
    "!!timestamp ", "!!binary ", "!!map ", "!!seq ", "!!set ", "!!omap ", "!!null ", "!!merge ", "!local ",
    "!!python/object:os.system ", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "---\n", "...\n", "null", "true", "0x1F",
    "0b101", "0o17", "1_000", "1:30:00", ".inf", ".nan", "-1e9", "1e400", "2024-01-31", "9" * 5000, "0x" + "f" * 5000,
    "\x00", "\x01", "\x1b", "\x7f", "\x85", "\x9f", "\ufeff", "\u2028", "\ufffe", "é", "你好", "\U0001f600",
    "assistant", "conversation", "user", "model", "echo", "scripted", "matrix", "vars", "expect", "tool_outputs",
    "template", "include", "exclude", "backend", "rules", "contains", "regex", "jinja", "{{ ", " }}", "{% ", " %}",
    "[" * 100, "]" * 100, "{a: " * 80, "}" * 80,
]
printable = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=4)  # the tokens hold the controls
yamlish = st.lists(st.sampled_from(YAML_TOKENS) | printable, max_size=80).map("".join)


@settings(max_examples=200, deadline=DEADLINE, **SETTINGS)
@given(data=st.binary(max_size=400))
def test_random_bytes(folder: Path, data: bytes) -> None:
    loads_or_says_where(folder, data)


@settings(max_examples=200, deadline=TEMPLATE_DEADLINE, **SETTINGS)
@given(text=st.sampled_from(sorted(EXAMPLE_TEXTS)), flips=st.lists(st.tuples(st.integers(0), st.binary(max_size=3)),
                                                                      min_size=1, max_size=4))
def test_example_specs_with_random_bytes_in_them(folder: Path, text: str, flips: list[tuple[int, bytes]]) -> None:
    data = EXAMPLE_TEXTS[text].encode()
    for at, junk in flips:
        at %= len(data) + 1
        data = data[:at] + junk + data[at + len(junk):]
    loads_or_says_where(folder, data, TEMPLATE_EXAMPLE_SECONDS, name=text)


@settings(max_examples=400, deadline=DEADLINE, **SETTINGS)
@given(text=yamlish)
def test_random_yaml_like_text(folder: Path, text: str) -> None:
    loads_or_says_where(folder, text)


# --- random documents shaped like specs --------------------------------------------------------------------

texts = st.text(max_size=12) | st.sampled_from(["{{ x }}", "{{ who }}", "echo", "{% if x %}y{% endif %}", "hi"])
scalars = st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | texts
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8) | st.sampled_from(["user", "model", "name"]), inner,
                                        max_size=4), max_leaves=25)
mostly_texts = st.one_of(texts, texts, texts, scalars)  # fields that are text in a valid spec, and not always
turns = st.lists(st.fixed_dictionaries({"user": mostly_texts}, optional={
    "expect": st.lists(st.dictionaries(st.sampled_from(["contains", "regex", "equals", "jinja", "not", "status",
                                                        "tool_called", "json"]), values, min_size=1, max_size=1),
                       max_size=3),
    "tool_outputs": st.dictionaries(st.text(max_size=6), values, max_size=2),
    "instructions": mostly_texts,
}), min_size=1, max_size=4)
specs = st.fixed_dictionaries({"conversation": turns, "assistant": st.fixed_dictionaries(
    {"model": st.sampled_from(["echo", "scripted"]) | scalars},
    optional={"instructions": mostly_texts, "tools": values, "name": mostly_texts})}, optional={
    "vars": st.dictionaries(st.sampled_from(["x", "who", "lang"]), values, max_size=3),
    "matrix": st.dictionaries(st.sampled_from(["x", "lang", "include", "exclude"]), values, max_size=3),
    "name": mostly_texts, "tags": st.lists(texts, max_size=3) | values, "backend": values, "expect": values,
})


@settings(max_examples=300, deadline=DEADLINE, **SETTINGS)
@given(spec=specs, flow=st.booleans())
def test_random_documents_shaped_like_specs(folder: Path, spec: dict[str, Any], flow: bool) -> None:
    loads_or_says_where(folder, yaml.safe_dump(spec, default_flow_style=flow, allow_unicode=True))


# --- mutations of the example specs ------------------------------------------------------------------------

MUTATIONS = ["delete", "duplicate", "insert", "line", "swap", "indent"]


@st.composite
def mutated_examples(draw: Callable[..., Any]) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(EXAMPLE_TEXTS)))
    text = EXAMPLE_TEXTS[name]
    for _ in range(draw(st.integers(1, 4))):
        mutation = draw(st.sampled_from(MUTATIONS))
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        if mutation == "delete":
            text = text[:i] + text[j:]
        elif mutation == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif mutation == "insert":
            text = text[:i] + draw(st.sampled_from(YAML_TOKENS) | st.text(max_size=6)) + text[i:]
        else:
            lines = text.split("\n")
            k, m = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if mutation == "line":
                lines[k] = draw(yamlish)
            elif mutation == "swap":
                lines[k], lines[m] = lines[m], lines[k]
            else:
                lines[k] = " " * draw(st.integers(0, 6)) + lines[k].lstrip()
            text = "\n".join(lines)
    return name, text


@settings(max_examples=400, deadline=TEMPLATE_DEADLINE, **SETTINGS)
@given(example=mutated_examples())
def test_mutations_of_the_example_specs(folder: Path, example: tuple[str, str]) -> None:
    name, text = example
    loads_or_says_where(folder, text, TEMPLATE_EXAMPLE_SECONDS, name=name)


def test_the_examples_themselves_are_valid(folder: Path) -> None:
    for name, text in EXAMPLE_TEXTS.items():
        if not name.endswith(".rules.yaml"):
            assert isinstance(loads_or_says_where(folder, text, name=name)[0], Spec), name


@contextmanager
def bounded_memory(limit: int = MEMORY) -> Iterator[None]:
    """Assert the block allocates at most `limit` bytes at its peak (a limit checked after the growth would
    pass the time checks and still use up the machine)."""
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit, f"the example allocated {peak / 2**20:.0f} MiB"


# --- random templates --------------------------------------------------------------------------------------

NUMBERS = ["0", "1", "3", "-1", "10**3", "10**6", "10**9", "10**100", "x|length"]
FRAGMENTS = [
    "{{ x }}", "{{ x|upper }}", "{{ x ~ x }}", "{{ x * N }}", "{{ [x] * N }}", "{{ N ** N }}", "{{ N * N }}",
    "{% for i in range(N) %}", "{% for c in x %}", "{% endfor %}", "{% if N %}", "{% else %}", "{% endif %}",
    "{{ x|center(N) }}", "{{ x|indent(N) }}", "{{ x|wordwrap(N) }}", "{{ x|truncate(N) }}", "{{ x|replace('a', x) }}",
    "{{ '%*d' % (N, 1) }}", "{{ '%s' % x }}", "{{ '{:>{}}'.format(x, N) }}", "{{ x|format(N) }}",
    "{{ lipsum(N) }}", "{{ range(N)|list|length }}", "{{ range(N)|join(x) }}", "{{ [x, N]|tojson(indent=N) }}",
    "{% set l = [1] %}", "{{ l.append(N) }}", "{{ l.extend(l) }}", "{{ l|tojson }}", "{{ l|sum }}",
    "{% set ns = namespace(s=x) %}", "{% set ns.s = ns.s ~ ns.s %}", "{{ ns.s|length }}",
    "{% macro m(n) %}", "{{ m(n) }}", "{% endmacro %}", "{{ m(N) }}", "{{ caller() }}",
    "{{ 1 / N }}", "{{ N // 0 }}", "{{ x.__class__ }}", "{{ x.nope }}", "{{ undefined_name }}", "{% include 'x' %}",
    "{{ N|round(N) }}", "{{ [1, 2]|batch(N)|list }}", "{{ [1, 2]|slice(N)|list }}", "{# c #}", "{%- raw %}",
    "{% endraw %}", "{{", "}}", "{%", "%}", "text ", "\n",
]


@st.composite
def templates(draw: Callable[..., Any]) -> str:
    parts = draw(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=8))
    return "".join(p.replace("N", draw(st.sampled_from(NUMBERS))) for p in parts)


@settings(max_examples=300, deadline=TEMPLATE_DEADLINE, **SETTINGS)
@given(template=templates(), where=st.sampled_from(["user", "instructions", "check", "tool"]))
def test_random_templates_at_load(folder: Path, template: str, where: str) -> None:
    quoted = json.dumps(template)
    turn = {"user": f"  - user: {quoted}\n", "instructions": f"  - user: hi\n    instructions: {quoted}\n",
            "check": f"  - user: hi\n    expect: [{{contains: {quoted}}}, {{jinja: {quoted}}}]\n",
            "tool": f"  - user: hi\n    tool_outputs: {{f: {{template: {quoted}}}}}\n"}[where]
    text = f"vars: {{x: abc}}\nassistant: {{model: echo}}\nconversation:\n{turn}"
    with bounded_memory():
        loads_or_says_where(folder, text, TEMPLATE_EXAMPLE_SECONDS)


@settings(max_examples=300, deadline=TEMPLATE_DEADLINE, **SETTINGS)
@given(template=templates())
def test_random_templates_at_run_time(template: str) -> None:
    start = time.perf_counter()
    try:
        with bounded_memory():
            out = sandbox.render(template, {"x": "abc", "args": {"city": "Paris"}}, seconds=1.0)
    except sandbox.TemplateError as exc:
        assert str(exc).strip()
    else:
        assert len(out) <= sandbox.MAX_TEMPLATE_OUTPUT
    assert time.perf_counter() - start < 1.0 + 2.0


# --- matrices ------------------------------------------------------------------------------------------------

matrix_values = st.sampled_from([0, 1, 1.0, True, False, None, "a", "b", "1", [1], {"k": 1}, {"k": 1.0}])


@settings(max_examples=300, deadline=DEADLINE, **SETTINGS)
@given(axes=st.dictionaries(st.sampled_from("abc"), st.lists(matrix_values, min_size=1, max_size=4), max_size=3),
       exclude=st.lists(st.dictionaries(st.sampled_from("abcd"), matrix_values, min_size=1, max_size=3), max_size=4),
       include=st.lists(st.dictionaries(st.sampled_from("abcd"), matrix_values, min_size=1, max_size=3), max_size=3))
def test_matrix_cases_are_those_of_the_plain_definition(axes: dict[str, list[Any]], exclude: list[dict[str, Any]],
                                                         include: list[dict[str, Any]]) -> None:
    cases = [dict(zip(axes, v, strict=True)) for v in itertools.product(*axes.values())] if axes else []
    cases = [c for c in cases if not any(all(c.get(k) == v for k, v in e.items()) for e in exclude)]
    for extra in include:
        if extra not in cases:
            cases.append(dict(extra))
    assert matrix_cases({**axes, "exclude": exclude, "include": include}) == cases


# --- the command line ----------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=DEADLINE, **SETTINGS)
@given(example=mutated_examples())
def test_runner_validate_exits_0_or_2_with_located_lines(folder: Path, example: tuple[str, str]) -> None:
    path = folder / f"{next(_numbers)}-{example[0]}"
    path.write_text(example[1], encoding="utf-8", errors="surrogatepass")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code in (0, 2), (result.output, result.exception)
    if result.exit_code == 2:
        *lines, summary = result.stderr.splitlines()
        assert lines and summary.endswith("nothing was run")
        assert all(line.startswith(f"{path}:") or line.startswith(f"{folder}") for line in lines), lines
