"""The bounded Jinja2 sandbox (runner.spec.sandbox): templates render as Jinja renders them, within limits."""

from __future__ import annotations

import threading
import time

import pytest
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from runner.spec import sandbox
from runner.spec.limits import MAX_TEMPLATE_ITEMS, MAX_TEMPLATE_OUTPUT

PLAIN = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
NAMES = {"who": "Ada", "n": 3, "items": [{"name": "b", "price": 2}, {"name": "a", "price": 1}],
         "args": {"city": "Paris", "days": [1, 2, 3]}, "text": "one two three four five six", "tree": [
             {"name": "x", "children": [{"name": "y", "children": []}]}]}


@pytest.mark.parametrize("source", [
    "Hello {{ who }}!",
    "{% for i in range(n) %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% endfor %}",
    "{% for i in [] %}x{% else %}empty{% endfor %}",
    "{% for x in items if x.price > 1 %}{{ x.name }}{% endfor %}",
    "{% for a, b in {'k': 1}.items() %}{{ a }}={{ b }}{% endfor %}",
    "{% for t in tree recursive %}{{ t.name }}[{{ loop(t.children) }}]{% endfor %}",
    "{% macro row(x, sep='|') %}{{ x.name }}{{ sep }}{% endmacro %}{% macro box() %}[{{ caller() }}]{% endmacro %}"
    "{{ row(items[0]) }}{{ row(items[1], ';') }}{% call box() %}called{% endcall %}",
    "{% set block %}{{ who|upper }} {{ n * 2 }}{% endset %}{{ block }}{% filter lower %}LOUD{% endfilter %}",
    "{{ items|map(attribute='name')|join(', ') }} {{ items|sort(attribute='price')|first }}",
    "{{ items|selectattr('price', 'gt', 1)|list|length }} {{ items|sum(attribute='price') }}",
    "{{ args|tojson }} {{ args|tojson(indent=2) }} {{ args.days|batch(2)|list }} {{ args.days|slice(2)|list }}",
    "{{ 'x'|center(9) }}|{{ text|wordwrap(10) }}|{{ text|indent(2, first=True) }}|{{ text|truncate(12) }}",
    "{{ text|replace('o', '0') }} {{ text.replace('e', 'E', 1) }} {{ text|title }} {{ text|wordcount }}",
    "{{ '%s has %05d' % (who, n) }} {{ '%(a)s' % {'a': 1} }} {{ '%-6s|'|format(who) }} {{ '%.2f'|format(1/3) }}",
    "{{ '{} {:>6} {x}'.format(who, n, x=1) }} {{ '{a}'.format_map({'a': 2}) }} {{ '{!r}'.format(who) }}",
    "{{ who.ljust(6) }}|{{ who.zfill(6) }}|{{ '-'.join(['a', 'b']) }}|{{ who * 3 }}|{{ [0] * 3 }}|{{ 2 ** 10 }}",
    "{{ who ~ '!' ~ n }} {{ [1] + [2] }} {{ who + who }} {{ 7 // 2 }} {{ 7 % 3 }} {{ 2.5 * 4 }}",
    "{% set ns = namespace(total=0) %}{% for x in items %}{% set ns.total = ns.total + x.price %}{% endfor %}"
    "{{ ns.total }} {{ ns }}",
    "{% set l = [] %}{% for i in range(3) %}{{ l.append(i) or '' }}{% endfor %}{{ l }} {{ {'a': [1, (2, 3)]} }}",
    "{{ 12345678|filesizeformat }} {{ 3.14159|round(2) }} {{ '42'|int + 1 }} {{ [3, 1, 2]|max }} {{ none }}",
    "{{ lipsum(1, html=False, min=3, max=5)|length > 0 }} {{ range(3)|list }} {{ {'b': 1, 'a': 2}|dictsort }}",
    "{{ text|urlize }} {{ 'a b'|urlencode }} {{ {'k': 'v'}|xmlattr }} {{ '<b>'|striptags }}{{ text|pprint }}",
    "line\n{# a comment #}\n{%- if n > 2 %}  big{% endif %}\n",
])
def test_templates_render_as_jinja_renders_them(source: str) -> None:
    assert sandbox.render(source, NAMES) == PLAIN.from_string(source).render(NAMES)


def test_a_jinja_expression_has_its_value() -> None:
    assert sandbox.evaluate("items|length > 1 and who == 'Ada'", NAMES) is True
    assert sandbox.evaluate("args.days|sum", NAMES) == 6


@pytest.mark.parametrize(("source", "message"), [
    ("{{ 'a' * 10**7 }}", f"'*' would pass the limit of {MAX_TEMPLATE_OUTPUT:,} characters per template"),
    ("{{ 10**7 * 'a' }}", "'*' would pass the limit"),
    ("{{ [0] * 10**6 }}", f"'*' would pass the limit of {MAX_TEMPLATE_ITEMS:,} items per template"),
    ("{{ (['a' * 10**6] * 10**5)|join }}", "the join filter would pass the limit"),
    ("{{ '-'.join(['a' * 10**6] * 10) }}", "join() would pass the limit"),
    ("{{ 'x'|center(10**7) }}", "the center filter would pass the limit"),
    ("{{ 'x'.rjust(10**7) }}", "rjust() would pass the limit"),
    ("{{ ('\t' * 100).expandtabs(10**5) }}", "expandtabs() would pass the limit"),
    ("{{ ('a\n' * 10**4)|indent(10**3) }}", "the indent filter would pass the limit"),
    ("{{ ('a' * 10**5)|replace('', 'bbbbbbbbbb') }}", "the replace filter would pass the limit"),
    ("{{ '%10000000s' % 'a' }}", "'%' would pass the limit"),
    ("{{ '%s' % (['a' * 10**6] * 2,) }}", "'%' would pass the limit"),
    ("{{ '{:10000000}'.format('a') }}", "str.format would pass the limit"),
    ("{{ ('{}' * 3).format('a' * 500000, 'a' * 500000, 'a' * 500000) }}", "str.format would pass the limit"),
    ("{{ [[1, 2]]|tojson(indent=10**7) }}", "the tojson filter would pass the limit"),
    ("{{ lipsum(10**5) }}", "lipsum(100000) would pass the limit"),
    ("{{ range(10**6)|list }}", "range(1000000) would pass the limit of 100,000 items"),
    ("{{ range(10**30) }}", "range(...) would pass the limit"),
    ("{% for b in [1]|slice(10**6) %}{% endfor %}", "slice(slices=1,000,000) would pass the limit"),
    ("{{ 10 ** 5000 }}", "'**' would pass the limit of 4,300 integer digits per template"),
    ("{% set ns = namespace(x=10) %}{% for i in range(20) %}{% set ns.x = ns.x * ns.x %}{% endfor %}",
     "'*' would pass the limit of 4,300 integer digits"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "'~' would pass the limit"),
    ("{% set ns = namespace(l=[1]) %}{% for i in range(30) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
     "'+' would pass the limit of 100,000 items"),
    ("{% set l = [1] %}{% for x in l %}{{ l.extend(l) or '' }}{% endfor %}", "extend() would pass the limit"),
    ("{% set d = {} %}{% for i in range(10**5) %}{{ d.update({i: i}) or '' }}{% endfor %}{{ d.update({-1: 1}) }}",
     "update() would pass the limit"),
    ("{% set s = 'a' * 10**6 %}{% set l = [] %}{% for i in range(10) %}{{ l.append(s) or '' }}{% endfor %}{{ l }}",
     "the output would pass the limit"),
    ("{% macro m() %}{% for i in range(10**4) %}{{ 'a' * 1000 }}{% endfor %}{% endmacro %}{{ m() }}",
     "the output would pass the limit"),
    ("{% set a = ['x' * 100] %}" + "{% set a = [a, a] %}" * 20 + "{{ a|string }}", "the string filter would pass"),
    ("{{ 5|round(-10**9) }}", "round to -1,000,000,000 digits would pass the limit of 4,300 integer digits"),
    ("{% set a = ['x' * 100] %}" + "{% set a = [a, a] %}" * 20 + "{{ a|center(3) }}", "the center filter would pass"),
    ("{% set a = ['x' * 100] %}" + "{% set a = [a, a] %}" * 20 + "{{ 'x'|replace('x', a) }}",
     "the replace filter would pass"),
    ("{% set a = ['x' * 100] %}" + "{% set a = [a, a] %}" * 20 + "{{ 'x'.replace('x', a) }}", "replace() would pass"),
    ("{% set l = [[0] * 10**5] * 10 %}{{ l|sum(start=[]) }}", "sum would pass the limit of 100,000 items"),
    ("{{ x }}" * 3000, "the template has 21,000 characters of code in its tags ({{ }}, {% %}), more than the "
                       "limit of 20,000 per template"),
    ("text " * 10**5 + "{{ [" + "1, " * 7000 + "] }}", "characters of code in its tags"),
    ("{{ x" + "|upper" * 4000, "24,004 characters of code"),  # a tag left open counts to the end
])
def test_what_would_pass_a_limit_is_refused_before_it_is_made(source: str, message: str) -> None:
    with pytest.raises(sandbox.TemplateLimit) as info:
        sandbox.render(source, {})
    assert message in str(info.value)


@pytest.mark.parametrize(("source", "message"), [
    ("{{ 1 / 0 }}", "division by zero"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "the template recurses too deeply"),
    ("{% include 'x' %}", "a spec's templates cannot include, import or extend other templates"),
    ("{% from 'x' import y %}", "cannot include, import or extend"),
    ("{{ 1 + 'a' }}", "TypeError: unsupported operand type(s) for +: 'int' and 'str'"),
    ("{% set l = [] %}{{ l.append(l) or '' }}{{ l|tojson }}", "Circular reference detected"),
    ("{% if 1 %}" * 900 + "{% endif %}" * 900, "the template nests its tags too deeply to compile"),
])
def test_python_errors_of_a_template_are_template_errors(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        sandbox.render(source, {})
    assert message in str(info.value) or message in repr(info.value)


def test_a_list_grown_in_its_own_loop_stops_at_the_item_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "MAX_TEMPLATE_ITEMS", 1000)  # the real limit takes ~1 s of appends
    with pytest.raises(sandbox.TemplateLimit, match="append\\(\\) would pass the limit of 1,000 items per template"):
        sandbox.render("{% set l = [1] %}{% for x in l %}{{ l.append(x) or '' }}{% endfor %}", {})


def test_a_circular_list_prints_as_python_prints_it() -> None:
    assert sandbox.render("{% set l = [1] %}{{ l.append(l) or '' }}{{ l }}", {}) == "[1, [...]]"


def test_rendering_stops_at_its_time_budget() -> None:
    forever = "{% for a in range(10**5) %}{% for b in range(10**5) %}{% endfor %}{% endfor %}"
    start = time.perf_counter()
    with pytest.raises(sandbox.TemplateTimeout, match=r"rendering would pass the limit of 0.3 s per template"):
        sandbox.render(forever, {}, seconds=0.3)
    assert time.perf_counter() - start < 1.5
    with pytest.raises(sandbox.TemplateTimeout, match="the limit of 9 s in all"):
        sandbox.render(forever, {}, seconds=0.1, limit="9 s in all")


def test_a_loop_over_a_long_list_without_calls_is_stopped_too() -> None:
    loops = "{% for a in x %}{% for b in x %}{% for c in x %}{% endfor %}{% endfor %}{% endfor %}"
    with pytest.raises(sandbox.TemplateTimeout):
        sandbox.render(loops, {"x": list(range(1000))}, seconds=0.3)


def test_a_cancelled_render_stops_at_its_next_step() -> None:
    cancelled = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            sandbox.render("{% for a in range(10**5) %}{% for b in range(10**5) %}{% endfor %}{% endfor %}", {},
                           seconds=60, cancelled=cancelled)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(0.2)
    cancelled.set()
    thread.join(2)
    assert not thread.is_alive()
    assert "rendering was cancelled" in str(errors[0])


def test_budgets_are_per_thread_and_nest_without_extending() -> None:
    sandbox.tick()  # no budget: nothing to check
    with sandbox.time_budget(0.05), sandbox.time_budget(60):
        time.sleep(0.06)
        with pytest.raises(sandbox.TemplateTimeout, match="0.05 s per template"):
            sandbox.tick()
        other: list[BaseException] = []
        thread = threading.Thread(target=lambda: sandbox.tick() or other.append(ValueError()))
        thread.start()
        thread.join()
        assert other  # the other thread has no budget
    sandbox.tick()


def test_text_size_counts_repeats_and_never_less_than_the_text() -> None:
    value = {"k": ["abc", 12345, None, (1.5, {"n": True})], "s": {1}}
    assert sandbox.text_size(value) >= 0
    assert sandbox.text_size(["x" * 1000] * 1000, budget=10**9) >= 10**6
    assert sandbox.text_size(["x" * 1000] * 10**5) < 2 * MAX_TEMPLATE_OUTPUT  # stops counting past the budget
