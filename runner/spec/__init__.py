"""Spec files: loading with line numbers, Jinja2 rendering, jsonschema validation, typed spec objects."""

from runner.spec.errors import SpecError, SpecInvalid
from runner.spec.load import find_specs, load_cases, load_spec
from runner.spec.model import (
    AssistantConfig,
    BackendConfig,
    BuiltinTool,
    Check,
    FunctionTool,
    KnowledgeFile,
    RunOptions,
    Spec,
    ToolOutput,
    Turn,
)

__all__ = [
    "AssistantConfig", "BackendConfig", "BuiltinTool", "Check", "FunctionTool", "KnowledgeFile", "RunOptions", "Spec",
    "SpecError", "SpecInvalid", "ToolOutput", "Turn", "find_specs", "load_cases", "load_spec",
]
