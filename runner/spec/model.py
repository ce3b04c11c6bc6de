"""Typed spec objects: what the engine receives once a spec file is loaded, rendered and validated."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class FunctionTool:
    """A function the assistant may call."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    def to_api(self) -> dict[str, Any]:
        """The tool in the Assistants API's `{type: function, function: {...}}` form."""
        function: dict[str, Any] = {"name": self.name}
        for key in ("description", "parameters", "strict"):
            value = getattr(self, key)
            if value is not None:
                function[key] = value
        return {"type": "function", "function": function}


BUILTIN_TOOLS = ("file_search", "code_interpreter")  # the tools the backend runs itself


@dataclass(frozen=True)
class BuiltinTool:
    """A tool the backend runs itself: `file_search` (with its options, if any) or `code_interpreter`."""

    type: str
    options: dict[str, Any] | None = None  # file_search's max_num_results and ranking_options

    def to_api(self) -> dict[str, Any]:
        """The tool in the Assistants API's `{type: file_search, file_search: {...}}` form."""
        return {"type": self.type, self.type: self.options} if self.options else {"type": self.type}


@dataclass(frozen=True)
class KnowledgeFile:
    """A file of the spec's folder that the engine uploads for the assistant's built-in tools (`files:`: its
    vector store, its code interpreter's files), or attached to a turn's message (`attachments:`)."""

    path: str  # relative to the spec's folder, with `/`, as transcripts show it: knowledge/warranty.md
    location: str  # where it is on disk, absolute

    @property
    def name(self) -> str:
        """The file's name as uploaded, and as search results and citations name it: its last part."""
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class AssistantConfig:
    """The assistant to create: the rendered `assistant:` section of a spec."""

    model: str
    name: str | None = None
    description: str | None = None
    instructions: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    response_format: Any = None
    metadata: dict[str, str] | None = None
    tools: tuple[FunctionTool | BuiltinTool, ...] = ()

    def to_create_params(self) -> dict[str, Any]:
        """Keyword arguments for `assistants.create`, omitting what the spec left unset."""
        params: dict[str, Any] = {"model": self.model}
        for key in ("name", "description", "instructions", "temperature", "top_p", "response_format", "metadata"):
            value = getattr(self, key)
            if value is not None:
                params[key] = value
        if self.tools:
            params["tools"] = [tool.to_api() for tool in self.tools]
        return params

    def key(self) -> str:
        """Canonical text of the config: equal keys may share one assistant in a batch."""
        return json.dumps(self.to_create_params(), sort_keys=True, ensure_ascii=False)

    @property
    def function_names(self) -> set[str]:
        """The names of the assistant's function tools."""
        return {tool.name for tool in self.tools if isinstance(tool, FunctionTool)}

    def has(self, builtin: str) -> bool:
        """True when the assistant has the built-in tool `builtin` (`file_search`, `code_interpreter`)."""
        return any(isinstance(tool, BuiltinTool) and tool.type == builtin for tool in self.tools)


@dataclass(frozen=True)
class BackendConfig:
    """Where conversations run: the embedded backend (default) or a remote endpoint."""

    base_url: str | None = None
    api_key_env: str | None = None
    provider: str | None = None
    rules: tuple[dict[str, Any], ...] | None = None
    stream: bool = True
    code_timeout: float | None = None  # the code interpreter's wall time per call, seconds (None: its default)
    code_memory: int | None = None  # the code interpreter's memory, MB (None: its default)

    @property
    def embedded(self) -> bool:
        """True when the conversation runs on the in-process backend."""
        return self.base_url is None

    def key(self) -> str:
        """Canonical text of the config: equal keys share one backend in a batch."""
        return json.dumps(
            [self.base_url, self.api_key_env, self.provider, self.rules, self.code_timeout, self.code_memory],
            sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class ToolOutput:
    """How the runner answers one function: a fixed output, or a Jinja2 template over the call's arguments."""

    output: str | None = None
    template: str | None = None
    python: str | None = None  # `module:function`, called with the call's arguments


@dataclass(frozen=True)
class Check:
    """One expectation: its type, its argument, and where it was written (`file:line:col`).

    `not` holds one Check as its argument, `all` and `any` a tuple of them.
    """

    type: str
    arg: Any
    where: str = ""


@dataclass(frozen=True)
class RunOptions:
    """A turn's `run:` options, in the API's form: each overrides the assistant's setting for that run only."""

    tool_choice: str | dict[str, Any] | None = None  # "auto" | "none" | "required" | {"type": ..., ...}
    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    response_format: Any = None
    parallel_tool_calls: bool | None = None
    truncation_strategy: dict[str, Any] | None = None
    model_where: str = ""  # `file:line:col` of `run.model`, for preflight messages

    def to_params(self) -> dict[str, Any]:
        """Keyword arguments for `runs.create` / `threads.create_and_run`, omitting what the turn left unset."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model_where"}
        return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class Turn:
    """One user turn with its run options, tool handlers and checks."""

    index: int
    user: str
    instructions: str | None = None
    additional_instructions: str | None = None
    run: RunOptions = field(default_factory=RunOptions)
    tool_outputs: dict[str, ToolOutput] = field(default_factory=dict)
    expect: tuple[Check, ...] = ()
    attachments: tuple[KnowledgeFile, ...] = ()  # uploaded and attached to this turn's message, for the built-in tools

    @property
    def expected_status(self) -> str:
        """The run status this turn expects (`completed` unless a `status` check says otherwise)."""
        for check in self.expect:
            if check.type == "status":
                return str(check.arg)
        return "completed"


@dataclass(frozen=True)
class Spec:
    """A loaded, rendered and validated conversation spec."""

    file: str
    name: str
    turns: tuple[Turn, ...]
    assistant: AssistantConfig | None = None
    assistant_id: str | None = None
    backend: BackendConfig = field(default_factory=BackendConfig)
    description: str | None = None
    tags: tuple[str, ...] = ()
    vars: dict[str, Any] = field(default_factory=dict)
    expect: tuple[Check, ...] = ()  # checks on the whole conversation
    files: tuple[KnowledgeFile, ...] = ()  # for the built-in tools: searched in a vector store, read by code
    model_where: str = ""
    code_where: str = ""  # where assistant.tools names code_interpreter, for preflight messages
    backend_where: str = ""  # where `backend` is written, for problems with it on another backend
    case: str = ""  # the matrix case (`lang=fr,tone=formal`), '' without a matrix
    repeats: str | None = None  # with --repeat: the case this run repeats, whose cassette it may replay
    # the API it goes through: assistants (threads, runs) or responses; as loaded also `both`, which
    # runner.spec.pipelines.piped turns into one spec per pipeline before anything runs
    pipeline: str = "assistants"

    @property
    def key(self) -> str:
        """Which conversation this is in a batch: the spec file, with its case (Transcript.key likewise)."""
        return f"{self.file}[{self.case}]" if self.case else self.file

    @property
    def runs_code(self) -> bool:
        """True when the spec's assistant has the code_interpreter tool (its runs may execute code)."""
        return self.assistant is not None and self.assistant.has("code_interpreter")

    @property
    def label(self) -> str:
        """The conversation's name, with its matrix case when it has one: `greeting[lang=fr]`."""
        return f"{self.name}[{self.case}]" if self.case else self.name
