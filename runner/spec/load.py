"""Load spec files: YAML with positions -> schema validation -> semantic checks -> Jinja2 -> typed Spec.

Every problem in a file is collected and raised together (SpecInvalid), and nothing runs on a bad spec.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jinja2 import TemplateError, UndefinedError, meta

from runner.spec import sandbox
from runner.spec.errors import SpecError, SpecInvalid
from runner.spec.knowledge import FileMatcher, PatternProblem
from runner.spec.limits import (
    FILE_TEMPLATE_SECONDS,
    MAX_CASES,
    MAX_CODE_FILES,
    MAX_KNOWLEDGE_FILES,
    TEMPLATE_SECONDS,
)
from runner.spec.model import (
    AssistantConfig,
    BackendConfig,
    BuiltinTool,
    Check,
    FunctionTool,
    KnowledgeFile,
    Spec,
    ToolOutput,
    Turn,
)
from runner.spec.paths import case_problem
from runner.spec.runopts import build_run_options
from runner.spec.schema import schema_errors, spec_schema
from runner.spec.source import read_text
from runner.spec.yamlpos import LoadedYaml, load_yaml
from runner.spec.yamlpos import Path as YPath

RULES_SUFFIXES = (".rules.yaml", ".rules.yml")
BUG = "the runner failed to load this file (a bug: please report it with the file)"
_TEMPLATE_MARKERS = ("{{", "{%", "{#")
# names a tool-output template may use besides the spec's vars
TOOL_TEMPLATE_NAMES = frozenset({"args", "call"})
# checks on what the code interpreter did, which need its tool
CODE_CHECKS = frozenset({"code", "files_created", "image"})
# names a `jinja` check may use besides the spec's vars
CHECK_TEMPLATE_NAMES = frozenset({"reply", "turn", "vars", "tool_calls", "usage", "status"})


def jinja_env() -> sandbox.BoundedEnvironment:
    """The one Jinja2 environment of specs: sandboxed, bounded, and an undefined name is an error."""
    return sandbox.environment()


def find_specs(paths: Iterable[str | Path]) -> list[Path]:
    """Spec files named by `paths`: files as given, folders searched for *.yaml / *.yml (not *.rules.yaml)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if os.path.isdir(path):  # not Path.is_dir: a name too long for the file system raises there
            for candidate in sorted(path.rglob("*")):
                parts = candidate.relative_to(path).parts
                if (
                    candidate.is_file()
                    and candidate.suffix in (".yaml", ".yml")
                    and not candidate.name.endswith(RULES_SUFFIXES)
                    and not any(p.startswith(".") for p in parts)
                ):
                    found.append(candidate)
        else:
            found.append(path)
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class _Scope:
    """What the runs a check or a run option speaks of can use, as far as the spec knows (None: it cannot, for
    an existing assistant): the assistant's function names, its built-in tools, and the names of the files its
    searches may find."""

    functions: set[str] | None = None
    builtins: set[str] | None = None
    files: set[str] | None = None


class _Abort(SpecInvalid):
    """A template ran out of time: the file's other templates (and cases) are not rendered."""


class _TemplateTime:
    """The time the templates of one file have taken to render, against FILE_TEMPLATE_SECONDS."""

    def __init__(self) -> None:
        self.spent = 0.0

    def budget(self) -> tuple[float, str]:
        """Seconds the next template may take, and the limit that sets them."""
        left = FILE_TEMPLATE_SECONDS - self.spent
        if left < TEMPLATE_SECONDS:
            return max(left, 0.0), f"{FILE_TEMPLATE_SECONDS:g} s for all the templates of a spec file"
        return TEMPLATE_SECONDS, f"{TEMPLATE_SECONDS:g} s per template"


class _Renderer:
    """Renders the template strings of a document with its vars, collecting errors by position."""

    def __init__(self, doc: LoadedYaml, variables: dict[str, Any], errors: list[SpecError],
                 clock: _TemplateTime | None = None) -> None:
        self.doc = doc
        self.vars = variables
        self.errors = errors
        self.clock = clock or _TemplateTime()

    def fail(self, path: YPath, message: str) -> None:
        self.errors.append(self.doc.error(path, message))

    def render(self, value: Any, path: YPath) -> Any:
        """Render every template string inside `value` with the vars."""
        if isinstance(value, str):
            if not any(m in value for m in _TEMPLATE_MARKERS):
                return value
            seconds, limit = self.clock.budget()
            start = time.perf_counter()
            try:
                return sandbox.render(value, self.vars, seconds=seconds, limit=limit)
            except sandbox.TemplateTimeout as exc:
                raise _Abort([*self.errors, self.doc.error(path, f"template error: {exc}")]) from None
            except TemplateError as exc:
                known = f" (vars: {', '.join(sorted(self.vars)) or 'none'})" if isinstance(exc, UndefinedError) else ""
                self.fail(path, f"template error: {exc.message or exc}{known}")
                return value
            finally:
                self.clock.spent += time.perf_counter() - start
        if isinstance(value, dict):
            return {k: self.render(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(v, (*path, i)) for i, v in enumerate(value)]
        return value


class _Builder:
    """Turns one schema-valid document into a Spec, collecting every semantic and template error."""

    def __init__(self, doc: LoadedYaml, path: Path, overrides: Mapping[str, str],
                 case: Mapping[str, Any] | None = None, clock: _TemplateTime | None = None,
                 matcher: FileMatcher | None = None) -> None:
        self.doc = doc
        self.path = path
        self.matcher = matcher or FileMatcher(path.parent, str(Path(doc.file).parent))
        self.errors: list[SpecError] = []
        self.case = dict(case or {})
        # the spec's vars, then the matrix case's values, then --var: the most specific wins
        self.vars: dict[str, Any] = {**doc.data.get("vars", {}), **self.case, **overrides}
        self.renderer = _Renderer(doc, self.vars, self.errors, clock)

    def where(self, path: YPath) -> str:
        line, col = self.doc.positions.of_value(path)
        return f"{self.doc.file}:{line}:{col}"

    def fail(self, path: YPath, message: str, *, at_key: bool = False) -> None:
        self.errors.append(self.doc.error(path, message, at_key=at_key))

    def render(self, value: Any, path: YPath) -> Any:
        return self.renderer.render(value, path)

    def check_schema(self, schema: Any, path: YPath, what: str) -> None:
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            self.fail((*path, *exc.path), f"{what} is not a valid JSON Schema: {exc.message}")

    def check_regex(self, pattern: str, path: YPath) -> None:
        self.errors.extend(_regex_errors(self.doc, pattern, path))

    def build(self) -> Spec:
        data = self.doc.data
        assistant = self.build_assistant(data["assistant"]) if "assistant" in data else None
        backend = self.build_backend(data.get("backend", {}))
        files = self.build_files(data["files"], ("files",)) if "files" in data else ()
        attachments = [self.build_files(raw["attachments"], ("conversation", i, "attachments"))
                       if "attachments" in raw else () for i, raw in enumerate(data["conversation"])]
        if assistant is not None:
            self.need_file_tool(assistant, files, attachments)
            self.need_code_tool(assistant, data.get("backend", {}))
        searched = {f.name for f in files}
        turns = []
        for i, raw in enumerate(data["conversation"]):
            searched |= {f.name for f in attachments[i]}  # the thread's store keeps a turn's attachments
            turns.append(self.build_turn(i, raw, self.scope(assistant, searched), attachments[i]))
        spec = Spec(
            file=self.doc.file,
            name=data.get("name") or self.path.stem,
            description=data.get("description"),
            tags=tuple(data.get("tags", ())),
            assistant=assistant,
            assistant_id=data.get("assistant_id"),
            backend=backend,
            vars=self.vars,
            turns=tuple(turns),
            expect=self.build_checks(data.get("expect", []), ("expect",), self.scope(assistant, searched)),
            files=files,
            case=case_id(self.case),
            model_where=self.where(("assistant", "model")) if assistant else self.where(("assistant_id",)),
            code_where=self.code_where(data.get("assistant", {})),
            backend_where=self.where(("backend",)) if "backend" in data else "",
            # on Spec, not BackendConfig: the pipeline is how the runner talks, so it must not split backends
            pipeline=data.get("backend", {}).get("pipeline", "assistants"),
        )
        if self.errors:
            raise SpecInvalid(self.errors)
        return spec

    @staticmethod
    def scope(assistant: AssistantConfig | None, searched: set[str]) -> _Scope:
        if assistant is None:
            return _Scope()
        builtins = {t.type for t in assistant.tools if isinstance(t, BuiltinTool)}
        return _Scope(assistant.function_names, builtins, set(searched))

    def build_files(self, raw: list[str], path: YPath) -> tuple[KnowledgeFile, ...]:
        """The files a `files:` or `attachments:` list names, sorted and without duplicates."""
        found: dict[str, KnowledgeFile] = {}
        for i, pattern in enumerate(self.render(raw, path)):
            try:
                matched = self.matcher.match(pattern)
            except PatternProblem as exc:
                self.fail((*path, i), str(exc))
                continue
            for relative in matched:
                found.setdefault(relative, KnowledgeFile(relative, os.path.abspath(self.path.parent / relative)))
        if len(found) > MAX_KNOWLEDGE_FILES:
            self.fail(path, f"these name {len(found):,} files, more than the {MAX_KNOWLEDGE_FILES} one list may "
                            "hold (the API's limit for a vector store made with its files)")
        return tuple(found[k] for k in sorted(found))

    def need_file_tool(self, assistant: AssistantConfig, files: tuple[KnowledgeFile, ...],
                       attachments: list[tuple[KnowledgeFile, ...]]) -> None:
        """Files go to the built-in tools that use them (file_search searches them, code_interpreter reads them):
        without either they would be uploaded for nothing; code_interpreter takes at most MAX_CODE_FILES."""
        if assistant.has("code_interpreter") and len(files) > MAX_CODE_FILES:
            self.fail(("files",), f"these name {len(files)} files, more than the {MAX_CODE_FILES} the code_interpreter "
                                  "tool takes (the API's limit for tool_resources.code_interpreter.file_ids)")
        if assistant.has("file_search") or assistant.has("code_interpreter"):
            return
        fix = ("add `- file_search` (to search them) or `- code_interpreter` (to read them in code) to "
               "assistant.tools")
        if files:
            self.fail(("files",), "the assistant uses these files with its file_search or code_interpreter tool, "
                                  f"and assistant.tools has neither: {fix}")
        for i, attached in enumerate(attachments):
            if attached:
                self.fail(("conversation", i, "attachments"), "attachments go to the assistant's file_search or "
                                                              "code_interpreter tool, and assistant.tools has "
                                                              f"neither: {fix}")

    def need_code_tool(self, assistant: AssistantConfig, backend: dict[str, Any]) -> None:
        """The code interpreter's limits set nothing for an assistant that runs no code: a mistake to say so."""
        if assistant.has("code_interpreter"):
            return
        for key in ("code_timeout", "code_memory"):
            if key in backend:
                self.fail(("backend", key), f"{key} limits the code_interpreter tool, which assistant.tools does "
                                            "not have: add `- code_interpreter` to assistant.tools")

    def code_where(self, assistant: Any) -> str:
        """`file:line:col` of the code_interpreter entry of assistant.tools, '' when there is none."""
        tools = assistant.get("tools") if isinstance(assistant, dict) else None
        for i, tool in enumerate(tools if isinstance(tools, list) else []):
            if tool == "code_interpreter":
                return self.where(("assistant", "tools", i))
        return ""

    def build_assistant(self, raw: dict[str, Any]) -> AssistantConfig:
        rendered = self.render(raw, ("assistant",))
        tools: list[FunctionTool | BuiltinTool] = []
        for i, tool in enumerate(rendered.get("tools", [])):
            if isinstance(tool, str):
                tools.append(BuiltinTool(tool))
            elif "file_search" in tool:
                tools.append(BuiltinTool("file_search", tool["file_search"] or None))
            else:
                if "parameters" in tool:
                    self.check_schema(tool["parameters"], ("assistant", "tools", i, "parameters"), "parameters")
                tools.append(FunctionTool(**tool))
        names = [t.name if isinstance(t, FunctionTool) else t.type for t in tools]
        for i, (name, tool) in enumerate(zip(names, tools, strict=True)):
            if name in names[:i]:
                where: YPath = ("assistant", "tools", i, "name") if isinstance(tool, FunctionTool) else (
                    "assistant", "tools", i)
                self.fail(where, f"tool {name!r} is declared twice")
        fmt = rendered.get("response_format")
        if isinstance(fmt, dict) and "schema" in fmt.get("json_schema", {}):
            self.check_schema(fmt["json_schema"]["schema"], ("assistant", "response_format", "json_schema", "schema"),
                              "schema")
        return AssistantConfig(**{**rendered, "tools": tuple(tools)})

    def build_backend(self, raw: dict[str, Any]) -> BackendConfig:
        rules = raw.get("rules")
        if isinstance(rules, str):
            rules = self.load_rules_file(rules, ("backend", "rules"))
        elif rules is not None:
            self.errors.extend(_rule_regex_errors(self.doc, rules, ("backend", "rules")))
        if rules is not None and raw.get("base_url"):
            self.fail(("backend", "rules"), "rules configure the embedded backend; they cannot go with base_url")
        if raw.get("provider") and raw.get("base_url"):
            self.fail(("backend", "provider"), "provider configures the embedded backend; it cannot go with base_url")
        for key in ("code_timeout", "code_memory"):
            if key in raw and raw.get("base_url"):
                self.fail(("backend", key), f"{key} configures the embedded backend's code interpreter; it cannot go "
                                            "with base_url (the server sets its own: `runner serve "
                                            f"--{key.replace('_', '-')}`)")
        return BackendConfig(
            base_url=raw.get("base_url"),
            api_key_env=raw.get("api_key_env"),
            provider=raw.get("provider"),
            rules=tuple(rules) if rules is not None else None,
            stream=raw.get("stream", True),
            code_timeout=raw.get("code_timeout"),
            code_memory=raw.get("code_memory"),
        )

    def load_rules_file(self, name: str, path: YPath) -> list[dict[str, Any]]:
        rules_path = (self.path.parent / name)
        display = str(Path(self.doc.file).parent / name)
        try:
            text = read_text(rules_path, display)
        except SpecInvalid as exc:  # said at the spec's `rules:`, which names the file
            problem = exc.errors[0].message
            self.fail(path, f"rules file {display} not found" if problem == "file not found"
                      else f"rules file {display}: {problem}")
            return []
        try:
            return _rules(text, display)
        except SpecInvalid as exc:
            self.errors.extend(exc.errors)
            return []

    def build_turn(self, index: int, raw: dict[str, Any], scope: _Scope,
                   attachments: tuple[KnowledgeFile, ...]) -> Turn:
        base: YPath = ("conversation", index)
        tool_names = scope.functions
        outputs: dict[str, ToolOutput] = {}
        for name, handler in raw.get("tool_outputs", {}).items():
            hpath = (*base, "tool_outputs", name)
            if tool_names is not None and name not in tool_names:
                self.fail(hpath, _unknown_tool(name, tool_names), at_key=True)
            outputs[name] = self.build_tool_output(handler, hpath)
        checks = self.build_checks(raw.get("expect", []), (*base, "expect"), scope)
        raw_run, rpath = raw.get("run", {}), (*base, "run")
        run, problems = build_run_options(self.render(raw_run, rpath), tool_names,
                                          self.where((*rpath, "model")) if "model" in raw_run else "",
                                          builtins=scope.builtins)
        for where, message in problems:
            self.fail((*rpath, *where), message)
        user = raw["user"]
        return Turn(
            index=index,
            user=self.render(user if isinstance(user, str) else str(user), (*base, "user")),
            instructions=self.render(raw.get("instructions"), (*base, "instructions")),
            additional_instructions=self.render(raw.get("additional_instructions"), (*base, "additional_instructions")),
            run=run,
            tool_outputs=outputs,
            expect=checks,
            attachments=attachments,
        )

    def build_checks(self, raw_checks: list[dict[str, Any]], path: YPath, scope: _Scope) -> tuple[Check, ...]:
        return tuple(self.build_check(raw, (*path, i), scope) for i, raw in enumerate(raw_checks))

    def build_check(self, raw_check: dict[str, Any], path: YPath, scope: _Scope) -> Check:
        ((kind, arg),) = raw_check.items()
        cpath = (*path, kind)
        tool_names = scope.functions
        if kind == "not":
            return Check(kind, self.build_check(arg, cpath, scope), self.where(cpath))
        if kind in ("all", "any"):
            return Check(kind, self.build_checks(arg, cpath, scope), self.where(cpath))
        if kind == "jinja":  # rendered at check time, over the reply
            self.check_expression(arg, cpath)
            return Check(kind, arg, self.where(cpath))
        arg = self.render(arg, cpath)
        if kind == "regex":
            self.check_regex(arg, cpath)
        elif kind == "json" and isinstance(arg, dict) and "schema" in arg:
            self.check_schema(arg["schema"], (*cpath, "schema"), "schema")
        elif kind == "tool_called" and tool_names is not None:
            name = arg if isinstance(arg, str) else arg["name"]
            if name == "file_search" and name not in tool_names:
                self.fail(cpath, "tool_called judges function calls; file_search is a built-in tool, whose searches "
                                 "the `file_search` check judges (e.g. `file_search: true`)")
            elif name == "code_interpreter" and name not in tool_names:
                self.fail(cpath, "tool_called judges function calls; code_interpreter is a built-in tool, whose "
                                 "code runs the `code` check judges (e.g. `code: true`)")
            elif name not in tool_names:
                self.fail(cpath, _unknown_tool(name, tool_names))
        elif kind in ("file_search", "cites"):
            arg = self.check_search(kind, arg, cpath, scope)
        elif kind in CODE_CHECKS:
            arg = self.check_code(arg, cpath, scope)
        if isinstance(arg, int | float) and not isinstance(arg, bool) and kind != "max_latency_ms":
            arg = str(arg)
        return Check(kind, arg, self.where(cpath))

    def check_search(self, kind: str, arg: Any, path: YPath, scope: _Scope) -> Any:
        """A `file_search` or `cites` check needs the file_search tool, and names a file its searches may find;
        its `contains` is text (a number as written)."""
        if isinstance(arg, dict) and "contains" in arg and not isinstance(arg["contains"], str):
            arg = {**arg, "contains": str(arg["contains"])}
        if scope.builtins is not None and "file_search" not in scope.builtins:
            self.fail(path, "the assistant has no file_search tool, so its runs search nothing: add "
                            "`- file_search` to assistant.tools")
            return arg
        name = arg.get("file") if isinstance(arg, dict) else arg if isinstance(arg, str) else None
        if name is not None and scope.files is not None and name not in scope.files:
            self.fail((*path, "file") if isinstance(arg, dict) else path, _unknown_file(name, scope.files))
        return arg

    def check_code(self, arg: Any, path: YPath, scope: _Scope) -> Any:
        """A `code`, `files_created` or `image` check needs the code_interpreter tool; its texts are text (a number
        as written)."""
        if isinstance(arg, dict):
            arg = {k: str(v) if k != "error" and not isinstance(v, str) else v for k, v in arg.items()}
        if scope.builtins is not None and "code_interpreter" not in scope.builtins:
            self.fail(path, "the assistant has no code_interpreter tool, so its runs run no code: add "
                            "`- code_interpreter` to assistant.tools")
        return arg

    def check_expression(self, source: str, path: YPath) -> None:
        """A `jinja` check must parse and use only the names it will have."""
        try:
            parsed = sandbox.parse(source)
        except TemplateError as exc:
            self.fail(path, f"template error: {exc}")
            return
        unknown = meta.find_undeclared_variables(parsed) - set(self.vars) - CHECK_TEMPLATE_NAMES
        if unknown:
            self.fail(path, f"the expression uses undefined name(s) {', '.join(sorted(unknown))} "
                            f"(it can use {', '.join(sorted(CHECK_TEMPLATE_NAMES))} and the spec's vars)")

    def build_tool_output(self, handler: Any, path: YPath) -> ToolOutput:
        if isinstance(handler, dict) and "python" in handler:
            return ToolOutput(python=handler["python"])
        if isinstance(handler, dict) and "template" in handler:
            source = handler["template"]
            try:
                parsed = sandbox.parse(source)
            except TemplateError as exc:
                self.fail((*path, "template"), f"template error: {exc}")
                return ToolOutput(template=source)
            unknown = meta.find_undeclared_variables(parsed) - set(self.vars) - TOOL_TEMPLATE_NAMES
            if unknown:
                self.fail((*path, "template"),
                          f"template uses undefined name(s) {', '.join(sorted(unknown))}: "
                          "use `args.<argument>` for the call's arguments or declare it in vars")
            return ToolOutput(template=source)
        if isinstance(handler, dict):
            value = self.render(handler["output"], (*path, "output"))
        else:
            value = self.render(handler, path)
        return ToolOutput(output=value if isinstance(value, str) else _json_text(value))


def _regex_errors(doc: LoadedYaml, pattern: str, path: YPath) -> list[SpecError]:
    try:
        re.compile(pattern)
    except re.error as exc:
        return [doc.error(path, f"invalid regular expression: {exc}")]
    return []


_GROUP_REF = re.compile(r"\\(?:g<(\w+)>|(\d+))")


def _rule_regex_errors(doc: LoadedYaml, rules: list[dict[str, Any]], path: YPath) -> list[SpecError]:
    """Each rule's trigger must compile, and its answer may only use groups the trigger has."""
    errors: list[SpecError] = []
    for i, rule in enumerate(rules):
        key = "user" if "user" in rule else "tool_output"
        problems = _regex_errors(doc, rule[key], (*path, i, key))
        errors.extend(problems)
        if not problems:
            pattern = re.compile(rule[key])
            answers = {k: rule[k] for k in ("reply", "error", "call", "calls") if k in rule}
            errors.extend(_group_ref_errors(doc, pattern, answers, (*path, i)))
    return errors


def _group_ref_errors(doc: LoadedYaml, pattern: re.Pattern[str], value: Any, path: YPath) -> list[SpecError]:
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in _group_ref_errors(doc, pattern, v, (*path, k))]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _group_ref_errors(doc, pattern, v, (*path, i))]
    if not isinstance(value, str):
        return []
    for match in _GROUP_REF.finditer(value):
        ref = match.group(1) or match.group(2)
        known = int(ref) <= pattern.groups if ref.isdigit() else ref in pattern.groupindex
        if not known:
            names = ", ".join(pattern.groupindex) or "none"
            return [doc.error(path, f"{match.group(0)} refers to a group the trigger does not have "
                                    f"(it has {pattern.groups} group(s); named: {names})")]
    return []


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _unknown_file(name: str, names: set[str]) -> str:
    if not names:
        return (f"no file named {name!r} can be found: the spec has no `files` and no attachments up to this "
                "turn (a file is named by its base name, e.g. warranty.md)")
    hint = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.6)
    more = (f"did you mean {hint[0]!r}?" if hint
            else f"a file is named by its base name; files: {', '.join(sorted(names))}")
    return f"no file named {name!r} among the spec's files and the attachments up to this turn ({more})"


def _unknown_tool(name: str, tool_names: set[str]) -> str:
    hint = difflib.get_close_matches(name, sorted(tool_names), n=1, cutoff=0.6)
    if hint:
        return f"no tool named {name!r} in assistant.tools (did you mean {hint[0]!r}?)"
    return f"no tool named {name!r} in assistant.tools (tools: {', '.join(sorted(tool_names)) or 'none declared'})"


@cache
def _rules_validator() -> jsonschema.Draft202012Validator:
    from referencing import Registry, Resource

    schema = spec_schema()
    registry = Registry().with_resource(schema["$id"], Resource.from_contents(schema))
    rules = {"type": "array", "items": {"$ref": schema["$id"] + "#/$defs/rule"}}
    return jsonschema.Draft202012Validator(rules, registry=registry)


def rules_file_errors(doc: LoadedYaml) -> list[SpecError]:
    """Schema errors of a scripted-model rules file (a YAML list of rules)."""
    from runner.spec.schema import explain

    return [e for err in _rules_validator().iter_errors(doc.data) for e in explain(err, doc)]


def load_rules(path: str | Path, display: str | None = None) -> list[dict[str, Any]]:
    """Load and validate a `scripted` model rules file (named `display` in errors); raise SpecInvalid."""
    path = Path(path)
    display = display or str(path)
    return _rules(read_text(path, display), display)


def _rules(text: str, display: str) -> list[dict[str, Any]]:
    doc = load_yaml(text, display)
    errors = rules_file_errors(doc)
    if not errors:
        errors = _rule_regex_errors(doc, doc.data, ())
    if errors:
        raise SpecInvalid(errors)
    return list(doc.data)


def load_spec(path: str | Path, overrides: Mapping[str, str] | None = None) -> Spec:
    """Load, validate and render one spec file (its first case, when it has a matrix); raise SpecInvalid
    listing every problem found."""
    return load_cases(path, overrides)[0]


def load_cases(path: str | Path, overrides: Mapping[str, str] | None = None) -> list[Spec]:
    """Every conversation of a spec file: one, or one per case of its `matrix`; raise SpecInvalid listing
    every problem found (a problem shared by several cases is listed once)."""
    path = Path(path)
    display = str(path)
    try:
        return _load_cases(path, display, overrides or {})
    except RecursionError:  # a last resort: the limits keep every recursion far from Python's
        raise SpecInvalid([SpecError(display, 1, 1, "", "the spec nests too deeply to check")]) from None
    except (SpecInvalid, KeyboardInterrupt):
        raise
    except Exception as exc:  # a bug of the runner: still a spec error (exit 2), saying so
        raise SpecInvalid([SpecError(display, 1, 1, "", f"{BUG}: {type(exc).__name__}: {exc}")]) from None


def _load_cases(path: Path, display: str, overrides: Mapping[str, str]) -> list[Spec]:
    doc = load_yaml(read_text(path, display), display)
    if not isinstance(doc.data, dict):
        raise SpecInvalid([doc.error((), "a spec is a mapping with at least `assistant` and `conversation`")])
    errors = schema_errors(doc)
    if errors:
        raise SpecInvalid(errors + _template_errors(doc, overrides))
    cases: list[dict[str, Any]] = [{}]
    if "matrix" in doc.data:
        cases = _matrix(doc, doc.data["matrix"])
    clock = _TemplateTime()  # shared by every case: the file's templates have one budget together
    matcher = FileMatcher(path.parent, str(Path(display).parent))  # and its folder, walked once per glob
    specs: list[Spec] = []
    problems: list[SpecError] = []
    for case in cases:
        try:
            specs.append(_Builder(doc, path, overrides, case, clock, matcher).build())
        except _Abort as exc:
            raise SpecInvalid(problems + [e for e in exc.errors if e not in problems]) from None
        except SpecInvalid as exc:
            problems.extend(e for e in exc.errors if e not in problems)
    if problems:
        raise SpecInvalid(problems)
    return specs


def _matrix(doc: LoadedYaml, matrix: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The matrix's cases, refusing one that crosses into more than MAX_CASES before building any, and
    values that cannot be part of the file names of a case's outputs."""
    size = matrix_size(matrix)
    if size > MAX_CASES:
        raise SpecInvalid([doc.error(("matrix",), f"the matrix crosses into {size:,} cases, more than the limit "
                                                  f"of {MAX_CASES:,} cases per spec file")])
    values: list[tuple[YPath, str, Any]] = [
        ((name, i), name, v) for name, axis in matrix.items() if name not in ("include", "exclude")
        for i, v in enumerate(axis)]
    values += [(("include", j, name), name, v) for j, extra in enumerate(matrix.get("include", []))
               for name, v in extra.items()]
    problems = []
    for where, name, value in values:
        problem = case_problem(doc.file, case_id({name: value}))
        if problem:
            problems.append(doc.error(("matrix", *where), f"the value {problem}"))
    if problems:
        raise SpecInvalid(problems)
    cases = matrix_cases(matrix)
    if not cases:
        raise SpecInvalid([doc.error(("matrix",), "the matrix has no cases left (exclude removes them all)")])
    for case in cases:
        problem = case_problem(doc.file, case_id(case))
        if problem:
            raise SpecInvalid([doc.error(("matrix",), problem)])
    return cases


def matrix_size(matrix: Mapping[str, Any]) -> int:
    """How many cases a matrix has at most: its axes crossed, plus `include` (before `exclude`)."""
    axes = [len(v) for k, v in matrix.items() if k not in ("include", "exclude")]
    return (math.prod(axes) if axes else 0) + len(matrix.get("include", []))


def matrix_cases(matrix: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cases of a matrix: its axes crossed in the order written, less `exclude`, plus `include`.

    Matches are found through hashable keys of the values (then confirmed with ==), so that thousands of
    `exclude` or `include` entries cost about as much as the cases, not cases times entries.
    """
    if matrix_size(matrix) > MAX_CASES:
        raise ValueError(f"the matrix has more than {MAX_CASES:,} cases")
    axes = {k: list(v) for k, v in matrix.items() if k not in ("include", "exclude")}
    names = list(axes)
    excluded = _excluded(axes, matrix.get("exclude", []))
    indices = itertools.product(*(range(len(axes[n])) for n in names)) if names else iter(())
    cases = [dict(zip(names, (axes[n][i] for n, i in zip(names, index, strict=True)), strict=True))
             for index in indices if index not in excluded]
    seen: dict[Any, list[dict[str, Any]]] = {}
    for case in cases:
        seen.setdefault(_value_key(case), []).append(case)
    for extra in matrix.get("include", []):
        same = seen.setdefault(_value_key(extra), [])
        if dict(extra) not in same:
            same.append(dict(extra))
            cases.append(dict(extra))
    return cases


def _excluded(axes: dict[str, list[Any]], exclude: list[Mapping[str, Any]]) -> set[tuple[int, ...]]:
    """The index tuples (one index per axis) of the cases some `exclude` entry matches.

    An entry matches the cases whose value for each of its names equals its own (a name that is no axis
    reads None): per axis, a set of indices, and the entry's cases are the product of those sets.
    """
    names = list(axes)
    where: dict[str, dict[Any, list[int]]] = {n: {} for n in names}
    for name, values in axes.items():
        for i, value in enumerate(values):
            where[name].setdefault(_value_key(value), []).append(i)
    boxes: set[tuple[tuple[int, ...], ...]] = set()
    for entry in exclude:
        if any(name not in axes and value is not None for name, value in entry.items()):
            continue  # a name that is no axis is None in every case
        box = tuple(tuple(i for i in where[n].get(_value_key(entry[n]), []) if axes[n][i] == entry[n])
                    if n in entry else tuple(range(len(axes[n]))) for n in names)
        boxes.add(box)
    out: set[tuple[int, ...]] = set()
    for box in boxes:  # entries naming the same axes match disjoint cases: this is about as long as the cases
        out.update(itertools.product(*box))
    return out


def _value_key(value: Any) -> Any:
    """A hashable key equal for values that are == (1, 1.0 and True share one; == tells them apart)."""
    if isinstance(value, Mapping):
        return ("map", frozenset((str(k), _value_key(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("list", tuple(_value_key(v) for v in value))
    if isinstance(value, bool | int | float):
        try:
            return ("number", float(value))
        except OverflowError:
            return ("number", value)
    return ("text", value) if isinstance(value, str) else ("other", repr(value))


def case_id(case: Mapping[str, Any]) -> str:
    """A readable id for a matrix case: `lang=fr,tone=formal` ('' for a spec without a matrix)."""
    return ",".join(f"{k}={v}" for k, v in case.items())


def _template_errors(doc: LoadedYaml, overrides: Mapping[str, str]) -> list[SpecError]:
    """Template errors of a spec that failed its schema, so the user sees those too in one go."""
    variables = doc.data.get("vars")
    renderer = _Renderer(doc, {**(variables if isinstance(variables, dict) else {}), **overrides}, [])
    try:
        for key in ("assistant", "files", "conversation", "expect"):
            if key in doc.data:
                renderer.render(_without_run_time_templates(doc.data[key]), (key,))
    except _Abort as exc:
        return exc.errors
    return renderer.errors


def _without_run_time_templates(value: Any) -> Any:
    """A copy of `value` without the templates that render at run time (tool outputs, `jinja` checks)."""
    if isinstance(value, dict):
        return {k: _without_run_time_templates(v) for k, v in value.items() if k not in ("tool_outputs", "jinja")}
    if isinstance(value, list):
        return [_without_run_time_templates(v) for v in value]
    return value
