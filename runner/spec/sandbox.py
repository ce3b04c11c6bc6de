"""Bounded Jinja2 templates: a sandbox that refuses huge outputs, repeats, ranges and growth, under a time budget.

Jinja's own sandbox stops templates reaching Python's internals, not using up memory or time: `'a' * 10**9`,
`x|center(10**9)` or a list grown inside its own loop would run until the machine gives out. Here every
operation that can grow a value checks the size it would make before making it, the output is counted as it
is produced, and a budget (a deadline, and a flag another thread may set) is checked at every loop
iteration, call, filter and operator. Python-level work between two checks is bounded by the size limits.
"""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
import math
import re
import string
import threading
import time
from _string import formatter_field_name_split  # type: ignore[import-not-found]
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jinja2 import BaseLoader, StrictUndefined, TemplateError, TemplateNotFound, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Namespace
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from jinja2.utils import generate_lorem_ipsum

from runner.spec.limits import (
    MAX_INT_DIGITS,
    MAX_TEMPLATE_CODE,
    MAX_TEMPLATE_ITEMS,
    MAX_TEMPLATE_OUTPUT,
    TEMPLATE_SECONDS,
)

_MAX_INT_BITS = math.ceil(MAX_INT_DIGITS * math.log2(10))  # the most bits an integer of that many digits has
_CODE = re.compile(r"\{\{.*?(?:\}\}|\Z)|\{%.*?(?:%\}|\Z)", re.DOTALL)  # tags, and one left open to the end
_PERCENT = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")
_NUMBER = re.compile(r"\d+")


class TemplateLimit(SecurityError):
    """A template would pass one of the limits (size, items, digits, tags or time)."""


class TemplateTimeout(TemplateLimit):
    """A template ran out of time (or was cancelled)."""


class TemplateFailed(TemplateError):
    """A template failed with a Python error (division by zero, recursion, a bad operand...)."""


def _too_much(what: str, limit: int, unit: str) -> TemplateLimit:
    return TemplateLimit(f"{what} would pass the limit of {limit:,} {unit} per template")


def _chars(what: str) -> TemplateLimit:
    return _too_much(what, MAX_TEMPLATE_OUTPUT, "characters")


def _items(what: str) -> TemplateLimit:
    return _too_much(what, MAX_TEMPLATE_ITEMS, "items")


def _digits(what: str) -> TemplateLimit:
    return _too_much(what, MAX_INT_DIGITS, "integer digits")


# --- the time budget -------------------------------------------------------------------------------------


@dataclass
class _Budget:
    deadline: float
    limit: str  # the limit that set the deadline, for the message: "2 s per template"
    cancelled: threading.Event | None


_state = threading.local()  # each thread renders under its own budget (run time renders in worker threads)


def tick() -> None:
    """Raise TemplateLimit once the current render's time is up or it was cancelled; cheap otherwise."""
    budget: _Budget | None = getattr(_state, "budget", None)
    if budget is None:
        return
    if time.perf_counter() > budget.deadline:
        raise TemplateTimeout(f"rendering would pass the limit of {budget.limit}")
    if budget.cancelled is not None and budget.cancelled.is_set():
        raise TemplateTimeout("rendering was cancelled: the turn ran out of time (--timeout)")


@contextmanager
def time_budget(seconds: float, cancelled: threading.Event | None = None, limit: str | None = None
                ) -> Iterator[None]:
    """Templates rendered in this thread inside the block stop after `seconds` or once `cancelled` is set;
    `limit` names the limit in the message (default: `seconds` per template)."""
    previous = getattr(_state, "budget", None)
    deadline = time.perf_counter() + seconds
    limit = limit or f"{seconds:g} s per template"
    if previous is not None and previous.deadline < deadline:  # a nested budget never extends the outer one
        deadline, limit = previous.deadline, previous.limit
    _state.budget = _Budget(deadline, limit, cancelled or (previous.cancelled if previous else None))
    try:
        yield
    finally:
        _state.budget = previous


# --- sizes ----------------------------------------------------------------------------------------------


def text_size(value: Any, budget: int = MAX_TEMPLATE_OUTPUT) -> int:
    """About how many characters `str(value)` has (never fewer), counted only until it passes `budget`:
    a list holding the same long string 100,000 times is small in memory and huge as text."""
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, _CONTAINERS):
        return _scalar_size(value)
    total = 0
    stack: list[Any] = [value]
    inside: set[int] = set()  # the containers around the item: one met again is a cycle, shown as [...]
    while stack:
        item = stack.pop()
        if item is _LEAVE:
            inside.discard(id(stack.pop()))
        elif isinstance(item, str):
            total += len(item)
        elif isinstance(item, _CONTAINERS):
            if id(item) in inside:
                total += 5
                continue
            # a Namespace answers attribute lookups from its values: its own dict is object's to give
            children: Any = object.__getattribute__(item, "__dict__") if isinstance(item, Namespace) else item
            total += 2 + 2 * len(children)
            if total > budget:
                return total
            inside.add(id(item))
            stack += (item, _LEAVE)
            stack.extend(children.keys() if isinstance(children, dict) else children)
            if isinstance(children, dict):
                stack.extend(children.values())
        else:
            total += _scalar_size(item)
        if total > budget:
            return total
    return total


_CONTAINERS = (list, tuple, set, frozenset, dict, Namespace)
_LEAVE = object()  # marks, in text_size's stack, the end of a container's items


def _scalar_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return 1 + value.bit_length() * 3 // 10
    return 4  # a float, None, True, an object Jinja made (its text is short)


def _check_text(value: Any, what: str) -> None:
    if text_size(value) > MAX_TEMPLATE_OUTPUT:
        raise _chars(what)


def _check_result(value: Any, what: str) -> Any:
    """`value` if it is within the limits (length of strings, items of containers, digits of integers)."""
    if isinstance(value, str):
        if len(value) > MAX_TEMPLATE_OUTPUT:
            raise _chars(what)
    elif isinstance(value, list | tuple | dict | set | frozenset | range):
        if len(value) > MAX_TEMPLATE_ITEMS:
            raise _items(what)
    elif isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        raise _digits(what)
    return value


def _sized(value: Any, what: str) -> Any:
    """`value` as a container whose items can be counted: an iterator is read, up to the item limit."""
    if isinstance(value, str | list | tuple | dict | set | frozenset | range):
        return value
    items = list(itertools.islice(iter(value), MAX_TEMPLATE_ITEMS + 1))
    if len(items) > MAX_TEMPLATE_ITEMS:
        raise _items(what)
    return items


def _width(value: Any) -> int:
    return value if isinstance(value, int) else len(value) if isinstance(value, str) else 0


def _too_wide(digits: str) -> bool:
    """A width or precision written in a format that alone would pass the output limit."""
    return len(digits) > 7 or int(digits) > MAX_TEMPLATE_OUTPUT


def _check_percent(fmt: str, args: Any, what: str) -> None:
    """`fmt % args` must stay within the output limit: its widths and precisions, and what it inserts."""
    directives = 0
    for match in _PERCENT.finditer(fmt):
        directives += 1
        if any(part and part != "*" and _too_wide(part) for part in match.groups()):
            raise _chars(what)
    given = args if isinstance(args, tuple) else (args,)
    if any(isinstance(a, int) and a > MAX_TEMPLATE_OUTPUT for a in given):  # a `*` width or precision
        raise _chars(what)
    inserted = text_size(args) * (directives if isinstance(args, Mapping) else 1)
    if len(fmt) + inserted > MAX_TEMPLATE_OUTPUT:
        raise _chars(what)


# --- filters, functions and methods that grow their input -------------------------------------------------


def _rule_center(a: dict[str, Any]) -> int:
    return len(str(a["value"])) + max(_width(a["width"]), 0)


def _rule_indent(a: dict[str, Any]) -> int:
    text = str(a["s"])
    return len(text) + (text.count("\n") + 1) * max(_width(a["width"]), 0)


def _rule_wordwrap(a: dict[str, Any]) -> int:
    text = str(a["s"])
    wrap = a["wrapstring"] if isinstance(a["wrapstring"], str) else "\n"
    return len(text) + (len(text) // max(_width(a["width"]), 1) + 1) * len(wrap)


def _rule_replace(a: dict[str, Any]) -> int:
    text, old, new = str(a["s"]), str(a["old"]), str(a["new"])
    if len(new) <= len(old):
        return len(text)
    return len(text) + (text.count(old) if old else len(text) + 1) * (len(new) - len(old))


def _rule_join(a: dict[str, Any]) -> int:
    return text_size(a["value"]) + len(a["value"]) * len(str(a["d"]))


def _rule_tojson(a: dict[str, Any]) -> int:
    size = text_size(a["value"])
    return size * (1 + max(_width(a["indent"]), 0)) if a["indent"] is not None else size


def _rule_urlize(a: dict[str, Any]) -> int:
    text = str(a["value"])
    extra = sum(len(str(a[k] or "")) for k in ("target", "rel")) + 64
    return len(text) + (len(text) // 4 + 1) * extra if extra > 64 else len(text) * 3


def _rule_lipsum(a: dict[str, Any]) -> int:
    return max(a["n"], 0) * max(a["max"], a["min"], 0) * 12


def _rule_pad(a: dict[str, Any]) -> int:  # str.center/ljust/rjust/zfill
    return _width(a["width"])


def _items_rule(filter_name: str, param: str) -> Callable[[dict[str, Any]], int]:
    def rule(a: dict[str, Any]) -> int:
        count = a[param]
        if isinstance(count, int) and count > MAX_TEMPLATE_ITEMS:
            raise _items(f"{filter_name}({param}={count:,})")
        return 0
    return rule


def _rule_round(a: dict[str, Any]) -> int:
    if isinstance(a["precision"], int) and abs(a["precision"]) > MAX_INT_DIGITS:
        raise _digits(f"round to {a['precision']:,} digits")
    return 0


def _rule_sum(a: dict[str, Any]) -> int:
    if isinstance(a["start"], str | list | tuple):  # summing sequences concatenates them
        total = len(a["start"]) + sum(len(x) for x in a["iterable"] if isinstance(x, str | list | tuple))
        if total > MAX_TEMPLATE_ITEMS:
            raise _items("sum")
    return 0


# filter -> (the size of text it would make from its bound arguments, the argument to read into a list first)
_FILTER_RULES: dict[str, tuple[Callable[[dict[str, Any]], int], str | None]] = {
    "center": (_rule_center, None), "indent": (_rule_indent, None), "wordwrap": (_rule_wordwrap, None),
    "replace": (_rule_replace, None), "join": (_rule_join, "value"), "tojson": (_rule_tojson, None),
    "urlize": (_rule_urlize, None), "batch": (_items_rule("batch", "linecount"), None),
    "slice": (_items_rule("slice", "slices"), None), "round": (_rule_round, None), "sum": (_rule_sum, "iterable"),
}
# filters that turn their whole value into text: it must be small enough as text first
_TEXT_FILTERS = frozenset({
    "string", "escape", "e", "forceescape", "safe", "pprint", "striptags", "title", "upper", "lower",
    "capitalize", "trim", "truncate", "wordcount", "urlencode", "xmlattr", "format",
})


def _binder(func: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any] | None]:
    """A quick binding of a filter's arguments (after the context Jinja passes first to some) to its
    parameter names, defaults filled in; None for a call the filter will refuse itself (TypeError)."""
    params = list(inspect.signature(func).parameters.values())
    if params and params[0].name in ("context", "eval_ctx", "environment"):  # not all of them declare it
        params = params[1:]
    names = [p.name for p in params]
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        if len(args) > len(names) or not kwargs.keys() <= set(names[len(args):]):
            return None
        arguments = {**defaults, **dict(zip(names, args, strict=False)), **kwargs}
        return arguments if len(arguments) == len(names) else None

    return bind


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    rule, listed = _FILTER_RULES.get(name, (None, None))
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
    bind = _binder(func) if rule is not None else None
    what = f"the {name} filter"

    @functools.wraps(func)  # keeps jinja_pass_arg: Jinja passes the context to the filters that want it
    def bounded(*args: Any, **kwargs: Any) -> Any:
        tick()
        if name in _TEXT_FILTERS and len(args) > skip:
            _check_text(args[skip], what)
        if name == "format" and len(args) > skip:
            _check_percent(str(args[skip]), kwargs or tuple(args[skip + 1:]), what)
        arguments = bind(args[skip:], kwargs) if bind is not None else None
        if rule is not None and arguments is not None:
            if listed is not None:  # an iterator would be used up by the check: read it into a list
                arguments[listed] = _sized(arguments[listed], what)
            for key, value in arguments.items():  # the rules read them as text: each must be small enough
                if key != listed:
                    _check_text(value, what)
            if rule(arguments) > MAX_TEMPLATE_OUTPUT:
                raise _chars(what)
            return _check_result(func(*args[:skip], **arguments), what)
        return _check_result(func(*args, **kwargs), what)

    return bounded


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    try:
        count = len(numbers)
    except OverflowError:  # more than sys.maxsize
        count = MAX_TEMPLATE_ITEMS + 1
    if count > MAX_TEMPLATE_ITEMS:
        shown = ", ".join(map(str, args)) if all(abs(a) < 10**18 for a in args) else "..."
        raise _items(f"range({shown})")
    return numbers


def _bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    if _rule_lipsum({"n": n, "min": min, "max": max}) > MAX_TEMPLATE_OUTPUT:
        raise _chars(f"lipsum({n})")
    return generate_lorem_ipsum(n, html, min, max)


# str methods that grow the string: the size they would make from their arguments
_STR_METHODS: dict[str, Callable[[str, tuple[Any, ...], dict[str, Any]], int]] = {
    "center": lambda s, a, k: _rule_pad({"width": (a or (k.get("width", 0),))[0]}),
    "ljust": lambda s, a, k: _rule_pad({"width": (a or (k.get("width", 0),))[0]}),
    "rjust": lambda s, a, k: _rule_pad({"width": (a or (k.get("width", 0),))[0]}),
    "zfill": lambda s, a, k: _rule_pad({"width": (a or (k.get("width", 0),))[0]}),
    "expandtabs": lambda s, a, k: len(s) * max(_width((a or (k.get("tabsize", 8),))[0]), 1),
    "replace": lambda s, a, k: _rule_replace({"s": s, "old": a[0], "new": a[1]}) if len(a) >= 2 else len(s),
    "join": lambda s, a, k: _rule_join({"value": a[0], "d": s}) if a else 0,
    "translate": lambda s, a, k: len(s) * max([len(v) for v in a[0].values() if isinstance(v, str)] + [1])
    if a and isinstance(a[0], Mapping) else len(s),
}
_GROWING = frozenset({"append", "extend", "insert", "update", "setdefault", "add"})


class _Formatter(string.Formatter):
    """str.format in the sandbox (as Jinja's SandboxedFormatter), with widths and the total bounded."""

    def __init__(self, env: BoundedEnvironment) -> None:
        self._env = env
        self._made = 0

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        first, rest = formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attr, i in rest:
            obj = self._env.getattr(obj, i) if is_attr else self._env.getitem(obj, i)
        return obj, first

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        _check_text(value, "str.format")  # `!r` and `!s` turn the value into text before format_field
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        tick()
        if any(_too_wide(n) for n in _NUMBER.findall(format_spec)):
            raise _chars("str.format")
        _check_text(value, "str.format")
        made = super().format_field(value, format_spec)
        self._made += len(made)
        if self._made > MAX_TEMPLATE_OUTPUT:
            raise _chars("str.format")
        return made


def _check_binop(operator: str, left: Any, right: Any, what: str) -> None:
    """Refuse `left operator right` when its result would pass a limit, before computing it."""
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str) and isinstance(times, int) and len(seq) * times > MAX_TEMPLATE_OUTPUT:
                raise _chars(what)
            if isinstance(seq, list | tuple) and isinstance(times, int) and len(seq) * times > MAX_TEMPLATE_ITEMS:
                raise _items(what)
        if ints and left.bit_length() + right.bit_length() - 1 > _MAX_INT_BITS:  # the fewest bits it can have
            raise _digits(what)
    elif operator == "**":
        if ints and abs(left) > 1 and right > 0 and (left.bit_length() - 1) * right > _MAX_INT_BITS:
            raise _digits(what)
    elif operator == "+":
        if isinstance(left, str) and isinstance(right, str) and len(left) + len(right) > MAX_TEMPLATE_OUTPUT:
            raise _chars(what)
        sequences = isinstance(left, list | tuple) and isinstance(right, list | tuple)
        if sequences and len(left) + len(right) > MAX_TEMPLATE_ITEMS:
            raise _items(what)
    elif operator == "%" and isinstance(left, str):
        _check_percent(left, right, what)


# --- the environment --------------------------------------------------------------------------------------


class _NoTemplates(BaseLoader):
    def get_source(self, environment: Any, template: str) -> Any:
        raise TemplateNotFound(template, "a spec's templates cannot include, import or extend other templates")


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, with a budget check at each loop iteration and `~` bounded."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        node = copy.copy(node)  # the parsed template stays as it was
        node.iter = nodes.Call(nodes.EnvironmentAttribute("loop_items"), [node.iter], [], None, None,
                               lineno=node.iter.lineno)
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.join_bounded((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedEnvironment(SandboxedEnvironment):
    """Jinja's sandbox that also bounds what a template makes (see the module's docstring)."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(loader=_NoTemplates(), finalize=self._finalize, **options)
        self.globals["range"] = _bounded_range
        self.globals["lipsum"] = _bounded_lipsum
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}

    @staticmethod
    def _finalize(value: Any) -> Any:
        if not isinstance(value, str):
            _check_text(value, "the output")
        return value

    def concat(self, parts: Iterable[str]) -> str:  # type: ignore[override]
        """Join what a template (or a block, macro or `set` of it) wrote, counting as it goes."""
        made: list[str] = []
        total = 0
        for part in parts:
            total += len(part)
            if total > MAX_TEMPLATE_OUTPUT:
                raise _chars("the output")
            made.append(part)
        return "".join(made)

    def join_bounded(self, parts: tuple[Any, ...]) -> str:
        """The `~` operator: its operands as text, joined when they fit."""
        total = 0
        for part in parts:
            total += text_size(part)
            if total > MAX_TEMPLATE_OUTPUT:
                raise _chars("'~'")
        return "".join(map(str, parts))

    def loop_items(self, iterable: Any) -> Iterator[Any]:
        """A `for` loop's items, checking the budget before each one."""
        for item in iterable:
            tick()
            yield item

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        tick()
        what = f"{operator!r}"
        _check_binop(operator, left, right, what)
        return _check_result(super().call_binop(context, operator, left, right), what)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        """A call from a template: checked for the budget, and for what it would grow."""
        tick()
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        what = f"{name}()" if name else "a call"
        if isinstance(owner, str) and name in _STR_METHODS:
            if name == "join" and args:
                args = (_sized(args[0], what), *args[1:])
            elif any(text_size(a) > MAX_TEMPLATE_OUTPUT for a in (*args, *kwargs.values())):
                raise _chars(what)
            if _STR_METHODS[name](owner, args, kwargs) > MAX_TEMPLATE_OUTPUT:
                raise _chars(what)
        if isinstance(owner, list | dict | set) and name in _GROWING:
            if name == "extend" and args:
                args = (_sized(args[0], what), *args[1:])
            if len(owner) + (len(args[0]) if name in ("extend", "update") and args and hasattr(args[0], "__len__")
                             else 1) > MAX_TEMPLATE_ITEMS:
                raise _items(what)
        return _check_result(super().call(__context, __obj, *args, **kwargs), what)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """str.format and str.format_map, through the bounded formatter."""
        if not callable(value) or getattr(value, "__name__", None) not in ("format", "format_map"):
            return None
        owner = getattr(value, "__self__", None)
        if not isinstance(owner, str):
            return None
        mapping = value.__name__ == "format_map"

        def bounded_format(*args: Any, **kwargs: Any) -> str:
            if not mapping:
                return _Formatter(self).vformat(owner, args, kwargs)
            if kwargs or len(args) != 1:
                raise TypeError("format_map() takes exactly one argument")
            return _Formatter(self).vformat(owner, (), args[0])

        return functools.update_wrapper(bounded_format, value)


@functools.cache
def environment() -> BoundedEnvironment:
    """The one Jinja2 environment of specs: bounded, sandboxed, and an undefined name is an error."""
    return BoundedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


def _check_code(source: str) -> None:
    """Compiling takes time by the code in the tags, not the text around them: refuse too much code."""
    if len(source) <= MAX_TEMPLATE_CODE or ("{{" not in source and "{%" not in source):
        return
    code = sum(len(tag) for tag in _CODE.findall(source))
    if code > MAX_TEMPLATE_CODE:
        raise TemplateLimit(f"the template has {code:,} characters of code in its tags ({{{{ }}}}, {{% %}}), "
                            f"more than the limit of {MAX_TEMPLATE_CODE:,} per template")


@functools.lru_cache(maxsize=1024)
def _compiled(source: str) -> Any:
    return environment().from_string(source)


def failure(exc: BaseException, compiling: bool = False) -> TemplateError:
    """`exc`, raised by a template (or by compiling it), as a TemplateError saying what went wrong."""
    if isinstance(exc, TemplateError):
        return exc
    if isinstance(exc, RecursionError) and compiling:
        return TemplateFailed("the template nests its tags too deeply to compile")
    if isinstance(exc, RecursionError):
        return TemplateFailed("the template recurses too deeply (a macro that calls itself?)")
    if isinstance(exc, MemoryError):
        return TemplateFailed("the template ran out of memory")
    if isinstance(exc, ZeroDivisionError):
        return TemplateFailed("division by zero")
    return TemplateFailed(f"{type(exc).__name__}: {exc}")


def parse(source: str) -> nodes.Template:
    """The template's syntax tree (for the names it uses); raise TemplateError when it cannot be one."""
    try:
        _check_code(source)
        return environment().parse(source)
    except Exception as exc:  # Jinja's parser recurses: 2,000 nested `{% if %}` raise RecursionError
        raise failure(exc, compiling=True) from None


def compile_template(source: str) -> Any:
    """The compiled template (cached: a matrix renders the same text once per case)."""
    try:
        _check_code(source)
        return _compiled(source)
    except Exception as exc:
        raise failure(exc, compiling=True) from None


def render(source: str, variables: Mapping[str, Any], *, seconds: float = TEMPLATE_SECONDS,
           cancelled: threading.Event | None = None, limit: str | None = None) -> str:
    """Render `source` with `variables` within the limits, in at most `seconds` (less once `cancelled` is
    set; `limit` names the time limit in the message); raise TemplateError (TemplateLimit for a limit,
    TemplateTimeout for the time) when it fails."""
    with time_budget(seconds, cancelled, limit):
        template = compile_template(source)
        try:
            return str(template.render(variables))
        except Exception as exc:
            raise failure(exc) from None


def evaluate(expression: str, variables: Mapping[str, Any], *, seconds: float = TEMPLATE_SECONDS) -> Any:
    """The value of a Jinja expression (`reply|length > 3`) within the limits; raise TemplateError."""
    with time_budget(seconds):
        try:
            _check_code(expression)
            return environment().compile_expression(expression, undefined_to_none=False)(**variables)
        except Exception as exc:
            raise failure(exc) from None
