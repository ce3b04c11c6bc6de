"""The request checks of every route, in one table taken from the official Assistants OpenAPI description.

`SCHEMAS` names each request body schema of the reference (`CreateAssistantRequest`, ...) and gives, for
each parameter path (`tools[].function.name`: `[]` is any item of an array), what the reference allows:
JSON types, null or not, required, enum, minimum/maximum, string lengths, patterns and item counts. Its
parameter names are the request's whole vocabulary: any other key is a 400. `check` applies a schema to a
parsed body and raises a 400 naming the first offending parameter, worded as the hosted API words it;
the SDK's pydantic types (objects.py) still validate what is built from the body.

The Conversations and Responses schemas are compared with their own reference at the top level only: their items
and tools are unions of dozens of shapes, and are checked where they are made into stored items (items.py) and
by the responder, naming the parameter inside them.

tests/test_request_checks.py compares the table with the reference both ways, so it cannot drift; where
it departs from the reference on purpose, `DEPARTURES` says why (checks the hosted API made that the
reference states only in words, like function names; token budgets without the minimum of 256).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.datastructures import QueryParams

from runner.server.errors import APIError, invalid, shown

STRING, NUMBER, INTEGER, BOOLEAN, ARRAY, OBJECT = "string", "number", "integer", "boolean", "array", "object"

# the reference says it in words: "a-z, A-Z, 0-9, or contain underscores and dashes, with a maximum length of 64"
NAME_PATTERN = "^[a-zA-Z0-9_-]{1,64}$"

_A = {STRING: "a string", NUMBER: "a decimal", INTEGER: "an integer", BOOLEAN: "a boolean", ARRAY: "an array",
      OBJECT: "an object", "null": "null"}


@dataclass(frozen=True)
class Rule:
    """What one request parameter may be (unset fields: no constraint)."""

    types: tuple[str, ...]
    required: bool = False
    nullable: bool = True
    enum: tuple[str, ...] | None = None  # for a string value
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    min_items: int | None = None
    max_items: int | None = None  # items of an array, or properties of a map
    keys: tuple[str, ...] | None = None  # an object with only these keys
    schema: str | None = None  # an object checked as another request schema of the table
    required_if: tuple[str, str] | None = None  # required when the sibling key (first) has the value (second)
    map_key_length: int | None = None  # a map (metadata): the longest key
    map_values: Rule | None = None  # a map: what each value may be
    reported_as: str | None = None  # the parameter its errors name, when the API names the whole (tool_choice)
    compiled: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.pattern is not None:
            object.__setattr__(self, "compiled", re.compile(self.pattern))


def _s(**kw: Any) -> Rule:
    return Rule((STRING,), **kw)


def _n(**kw: Any) -> Rule:
    return Rule((NUMBER,), **kw)


def _i(**kw: Any) -> Rule:
    return Rule((INTEGER,), **kw)


def _b(**kw: Any) -> Rule:
    return Rule((BOOLEAN,), **kw)


def _a(**kw: Any) -> Rule:
    return Rule((ARRAY,), **kw)


def _o(**kw: Any) -> Rule:
    return Rule((OBJECT,), **kw)


METADATA = _o(max_items=16, map_key_length=64, map_values=_s(nullable=False, max_length=512))
_REASONING = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


def _tools(max_items: int, *, nullable: bool) -> dict[str, Rule]:
    return {
        "tools": _a(nullable=nullable, max_items=max_items),
        "tools[]": _o(nullable=False),
        "tools[].type": _s(required=True, nullable=False, enum=("code_interpreter", "file_search", "function")),
        "tools[].function": _o(nullable=False, required_if=("type", "function")),
        "tools[].function.name": _s(required=True, nullable=False, pattern=NAME_PATTERN),
        "tools[].function.description": _s(nullable=False),
        "tools[].function.parameters": _o(nullable=False),
        "tools[].function.strict": _b(),
        "tools[].file_search": _o(nullable=False),
        "tools[].file_search.max_num_results": _i(nullable=False, minimum=1, maximum=50),
        "tools[].file_search.ranking_options": _o(nullable=False),
        "tools[].file_search.ranking_options.ranker": _s(nullable=False, enum=("auto", "default_2024_08_21")),
        "tools[].file_search.ranking_options.score_threshold": _n(required=True, nullable=False, minimum=0,
                                                                   maximum=1),
    }


def _tool_resources(*, vector_stores: bool, nullable: bool = True) -> dict[str, Rule]:
    rules = {
        "tool_resources": _o(nullable=nullable),
        "tool_resources.code_interpreter": _o(nullable=False),
        "tool_resources.code_interpreter.file_ids": _a(nullable=False, max_items=20),
        "tool_resources.code_interpreter.file_ids[]": _s(nullable=False),
        "tool_resources.file_search": _o(nullable=False),
        "tool_resources.file_search.vector_store_ids": _a(nullable=False, max_items=1),
        "tool_resources.file_search.vector_store_ids[]": _s(nullable=False),
    }
    if vector_stores:
        store = "tool_resources.file_search.vector_stores"
        rules |= {
            store: _a(nullable=False, max_items=1),
            f"{store}[]": _o(nullable=False),
            f"{store}[].file_ids": _a(nullable=False, max_items=100_000_000),
            f"{store}[].file_ids[]": _s(nullable=False),
            f"{store}[].chunking_strategy": _o(nullable=False),
            f"{store}[].chunking_strategy.type": _s(required=True, nullable=False, enum=("auto", "static")),
            f"{store}[].chunking_strategy.static": _o(nullable=False, required_if=("type", "static"),
                                                      keys=("max_chunk_size_tokens", "chunk_overlap_tokens")),
            f"{store}[].chunking_strategy.static.max_chunk_size_tokens": _i(required=True, nullable=False,
                                                                            minimum=100, maximum=4096),
            f"{store}[].chunking_strategy.static.chunk_overlap_tokens": _i(required=True, nullable=False),
            f"{store}[].metadata": METADATA,
        }
    return rules


_RESPONSE_FORMAT = {
    "response_format": Rule((STRING, OBJECT), enum=("auto",)),
    "response_format.type": _s(required=True, nullable=False, enum=("text", "json_object", "json_schema")),
    "response_format.json_schema": _o(nullable=False, required_if=("type", "json_schema")),
    "response_format.json_schema.name": _s(required=True, nullable=False, pattern=NAME_PATTERN),
    "response_format.json_schema.description": _s(nullable=False),
    "response_format.json_schema.schema": _o(nullable=False),
    "response_format.json_schema.strict": _b(),
}

_SAMPLING = {
    "temperature": _n(minimum=0, maximum=2),
    "top_p": _n(minimum=0, maximum=1),
}

# the embedded backend takes budgets below the hosted API's 256 tokens: its offline models count small
_RUN_OPTIONS = {
    "stream": _b(),
    "max_prompt_tokens": _i(minimum=1),
    "max_completion_tokens": _i(minimum=1),
    "truncation_strategy": _o(),
    "truncation_strategy.type": _s(required=True, nullable=False, enum=("auto", "last_messages")),
    "truncation_strategy.last_messages": _i(minimum=1, required_if=("type", "last_messages")),
    "tool_choice": Rule((STRING, OBJECT), enum=("none", "auto", "required")),
    "tool_choice.type": _s(required=True, nullable=False, enum=("function", "code_interpreter", "file_search"),
                           reported_as="tool_choice"),
    "tool_choice.function": _o(nullable=False, required_if=("type", "function"), reported_as="tool_choice"),
    "tool_choice.function.name": _s(required=True, nullable=False),
    "parallel_tool_calls": _b(nullable=False),
    **_RESPONSE_FORMAT,
}


_EXPIRES_AFTER = {
    "expires_after": _o(nullable=False, keys=("anchor", "seconds")),
    "expires_after.anchor": _s(required=True, nullable=False, enum=("created_at",)),
    "expires_after.seconds": _i(required=True, nullable=False, minimum=3600, maximum=2592000),
}


def _chunking(prefix: str) -> dict[str, Rule]:
    return {
        prefix: _o(nullable=False),
        f"{prefix}.type": _s(required=True, nullable=False, enum=("auto", "static")),
        f"{prefix}.static": _o(nullable=False, required_if=("type", "static"),
                               keys=("max_chunk_size_tokens", "chunk_overlap_tokens")),
        f"{prefix}.static.max_chunk_size_tokens": _i(required=True, nullable=False, minimum=100, maximum=4096),
        f"{prefix}.static.chunk_overlap_tokens": _i(required=True, nullable=False),
    }


# a vector store file's attributes: 16 keys of at most 64 characters; strings of at most 512, numbers, booleans
ATTRIBUTES = _o(max_items=16, map_key_length=64,
                map_values=Rule((STRING, NUMBER, BOOLEAN), nullable=False, max_length=512))
_VS_EXPIRES_AFTER = {
    "expires_after": _o(keys=("anchor", "days")),
    "expires_after.anchor": _s(required=True, nullable=False, enum=("last_active_at",)),
    "expires_after.days": _i(required=True, nullable=False, minimum=1, maximum=365),
}
_COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")


def _filter(prefix: str, *, compound: bool) -> dict[str, Rule]:
    """A search filter's shape; its structure (which keys go with which type) is checked by the search's
    own filter checks (runner.server.tools.file_search.filters)."""
    rules = {
        f"{prefix}.type": _s(required=compound, nullable=False,
                             enum=(*_COMPARISONS, "and", "or") if compound else _COMPARISONS),
        f"{prefix}.key": _s(nullable=False),
        f"{prefix}.value": Rule((STRING, NUMBER, BOOLEAN, ARRAY), nullable=False),
        f"{prefix}.value[]": Rule((STRING, NUMBER), nullable=False),
    }
    if compound:
        rules |= {f"{prefix}.filters": _a(nullable=False), f"{prefix}.filters[]": _o(nullable=False),
                  **_filter(f"{prefix}.filters[]", compound=False)}
    return rules


# what `include` may ask for (the API's values); only the built-in calls' results and outputs add anything here
INCLUDABLE = tuple(sorted({
    "code_interpreter_call.outputs", "computer_call_output.output.image_url", "file_search_call.results",
    "message.input_image.image_url", "message.output_text.logprobs", "reasoning.encrypted_content",
    "web_search_call.action.sources", "web_search_call.results",
}))
ANY_JSON = (STRING, NUMBER, BOOLEAN, ARRAY, OBJECT)
# the create parameters the SDK sends and this backend does not act on: accepted when null, refused otherwise
# (by the responder, naming them), so a request never silently loses what it asked for
RESPONSE_UNSUPPORTED = ("access_programs", "background_options", "context_management", "image", "max_tool_calls",
                        "moderation", "prompt", "prompt_cache_options", "stream_options", "top_logprobs")
# accepted and without effect on what this backend answers (hints, identifiers, caching)
RESPONSE_IGNORED = ("prompt_cache_key", "prompt_cache_retention", "reasoning", "safety_identifier", "service_tier",
                    "user", "truncation")
_RESPONSE: dict[str, Rule] = {
    "model": _s(min_length=1),
    "input": Rule((STRING, ARRAY)),
    "input[]": _o(nullable=False),
    "instructions": _s(),
    "previous_response_id": _s(),
    "conversation": Rule((STRING, OBJECT)),
    "conversation.id": _s(required=True, nullable=False),
    "tools": _a(),
    "tools[]": _o(nullable=False),
    "tools[].type": _s(required=True, nullable=False),
    "tools[].name": _s(nullable=False, pattern=NAME_PATTERN),
    "tools[].description": _s(),
    "tools[].parameters": _o(),
    "tools[].strict": _b(),
    "tools[].vector_store_ids": _a(nullable=False),
    "tools[].vector_store_ids[]": _s(nullable=False),
    "tools[].max_num_results": _i(nullable=False, minimum=1, maximum=50),
    "tools[].ranking_options": _o(nullable=False),
    "tools[].ranking_options.ranker": _s(nullable=False, enum=("auto", "default-2024-11-15")),
    "tools[].ranking_options.score_threshold": _n(nullable=False, minimum=0, maximum=1),
    "tools[].ranking_options.hybrid_search": _o(),
    "tools[].filters": _o(),
    **_filter("tools[].filters", compound=True),
    "tools[].container": Rule((STRING, OBJECT), nullable=False),
    "tools[].container.type": _s(required=True, nullable=False, enum=("auto",)),
    "tools[].container.file_ids": _a(nullable=False, max_items=50),
    "tools[].container.file_ids[]": _s(nullable=False),
    "tools[].container.memory_limit": _s(enum=("1g", "4g", "16g", "64g")),  # accepted: the backend's limit holds
    "tools[].container.network_policy": _o(),  # accepted: the sandbox has no network whatever it asks
    "tool_choice": Rule((STRING, OBJECT), enum=("none", "auto", "required")),
    "tool_choice.type": _s(required=True, nullable=False, reported_as="tool_choice"),
    "tool_choice.name": _s(nullable=False),
    **_SAMPLING,
    "max_output_tokens": _i(minimum=1),
    "text": _o(),
    "text.format": _o(nullable=False),
    "text.format.type": _s(required=True, nullable=False, enum=("text", "json_object", "json_schema")),
    "text.format.name": _s(nullable=False, pattern=NAME_PATTERN, required_if=("type", "json_schema")),
    "text.format.description": _s(nullable=False),
    "text.format.schema": _o(nullable=False, required_if=("type", "json_schema")),
    "text.format.strict": _b(),
    "text.verbosity": _s(enum=("low", "medium", "high")),
    "parallel_tool_calls": _b(),
    "metadata": METADATA,
    "store": _b(),
    "stream": _b(),
    "background": _b(),
    "include": _a(),
    "include[]": _s(nullable=False, enum=INCLUDABLE),
    **{name: Rule(ANY_JSON) for name in RESPONSE_UNSUPPORTED + RESPONSE_IGNORED},
}


def _assistant(*, create: bool) -> dict[str, Rule]:
    return {
        "model": _s(required=create, nullable=False, min_length=1),
        "name": _s(max_length=256),
        "description": _s(max_length=512),
        "instructions": _s(max_length=256_000),
        "reasoning_effort": _s(enum=_REASONING),
        **_tools(128, nullable=False),
        **_tool_resources(vector_stores=create),
        "metadata": METADATA,
        **_SAMPLING,
        **_RESPONSE_FORMAT,
    }


SCHEMAS: dict[str, dict[str, Rule]] = {
    "CreateAssistantRequest": _assistant(create=True),
    "ModifyAssistantRequest": _assistant(create=False),
    "CreateMessageRequest": {
        "role": _s(required=True, nullable=False, enum=("user", "assistant")),
        "content": Rule((STRING, ARRAY), required=True, nullable=False, min_items=1),
        "content[]": _o(nullable=False),
        "content[].type": _s(required=True, nullable=False, enum=("image_file", "image_url", "text")),
        "content[].text": _s(nullable=False, required_if=("type", "text")),
        "attachments": _a(),
        "attachments[]": _o(nullable=False),
        "attachments[].file_id": _s(nullable=False),
        "attachments[].tools": _a(nullable=False),
        "attachments[].tools[]": _o(nullable=False),
        "attachments[].tools[].type": _s(required=True, nullable=False, enum=("code_interpreter", "file_search")),
        "metadata": METADATA,
    },
    "ModifyMessageRequest": {"metadata": METADATA},
    "CreateThreadRequest": {
        "messages": _a(nullable=False),
        "messages[]": _o(nullable=False, schema="CreateMessageRequest"),
        **_tool_resources(vector_stores=True),
        "metadata": METADATA,
    },
    "ModifyThreadRequest": {**_tool_resources(vector_stores=False), "metadata": METADATA},
    "CreateRunRequest": {
        "assistant_id": _s(required=True, nullable=False),
        "model": _s(min_length=1),
        "reasoning_effort": _s(enum=_REASONING),
        "instructions": _s(),
        "additional_instructions": _s(),
        "additional_messages": _a(),
        "additional_messages[]": _o(nullable=False, schema="CreateMessageRequest"),
        **_tools(20, nullable=True),
        "metadata": METADATA,
        **_SAMPLING,
        **_RUN_OPTIONS,
    },
    "CreateThreadAndRunRequest": {
        "assistant_id": _s(required=True, nullable=False),
        "thread": _o(nullable=False, schema="CreateThreadRequest"),
        "model": _s(min_length=1),
        "instructions": _s(),
        **_tools(20, nullable=True),
        **_tool_resources(vector_stores=False),
        "metadata": METADATA,
        **_SAMPLING,
        **_RUN_OPTIONS,
    },
    "ModifyRunRequest": {"metadata": METADATA},
    "SubmitToolOutputsRunRequest": {
        "tool_outputs": _a(required=True, nullable=False),
        "tool_outputs[]": _o(nullable=False, keys=("tool_call_id", "output")),
        "tool_outputs[].tool_call_id": _s(nullable=False),
        "tool_outputs[].output": _s(nullable=False),
        "stream": _b(),
    },
    # Files and Uploads (openai-files-vector-stores.openapi.yaml); a multipart body's file is read apart
    "CreateFileRequest": {
        "file": _s(nullable=False),
        "purpose": _s(required=True, nullable=False,
                      enum=("assistants", "batch", "fine-tune", "vision", "user_data", "evals")),
        **_EXPIRES_AFTER,
    },
    "AddUploadPartRequest": {"data": _s(nullable=False)},
    "CreateUploadRequest": {
        "filename": _s(required=True, nullable=False),
        "purpose": _s(required=True, nullable=False, enum=("assistants", "batch", "fine-tune", "vision")),
        "bytes": _i(required=True, nullable=False),
        "mime_type": _s(required=True, nullable=False),
        **_EXPIRES_AFTER,
    },
    "CompleteUploadRequest": {
        "part_ids": _a(required=True, nullable=False),
        "part_ids[]": _s(nullable=False),
        "md5": _s(nullable=False),
    },
    # Vector stores
    "CreateVectorStoreRequest": {
        "file_ids": _a(nullable=False, max_items=500),
        "file_ids[]": _s(nullable=False),
        "name": _s(nullable=False),
        "description": _s(nullable=False),
        **_VS_EXPIRES_AFTER,
        **_chunking("chunking_strategy"),
        "metadata": METADATA,
    },
    "UpdateVectorStoreRequest": {"name": _s(), **_VS_EXPIRES_AFTER, "metadata": METADATA},
    "CreateVectorStoreFileRequest": {
        "file_id": _s(required=True, nullable=False),
        **_chunking("chunking_strategy"),
        "attributes": ATTRIBUTES,
    },
    "CreateVectorStoreFileBatchRequest": {
        "file_ids": _a(nullable=False, min_items=1, max_items=2000),
        "file_ids[]": _s(nullable=False),
        "files": _a(nullable=False, min_items=1, max_items=2000),
        "files[]": _o(nullable=False, schema="CreateVectorStoreFileRequest"),
        **_chunking("chunking_strategy"),
        "attributes": ATTRIBUTES,
    },
    "UpdateVectorStoreFileAttributesRequest": {"attributes": Rule((OBJECT,), required=True, max_items=16,
                                                                  map_key_length=64,
                                                                  map_values=ATTRIBUTES.map_values)},
    "VectorStoreSearchRequest": {
        "query": Rule((STRING, ARRAY), required=True, nullable=False),
        "query[]": _s(nullable=False),
        "rewrite_query": _b(nullable=False),
        "max_num_results": _i(nullable=False, minimum=1, maximum=50),
        "filters": _o(nullable=False),
        **_filter("filters", compound=True),
        "ranking_options": _o(nullable=False, keys=("ranker", "score_threshold")),
        "ranking_options.ranker": _s(nullable=False, enum=("none", "auto", "default-2024-11-15")),
        "ranking_options.score_threshold": _n(nullable=False, minimum=0, maximum=1),
    },
    # Conversations and Responses (openai-responses-conversations.openapi.yaml); an item's own shape is checked
    # where it is made into a stored item (runner.server.items), naming the parameter inside it
    "CreateConversationBody": {"items": _a(max_items=20), "items[]": _o(nullable=False), "metadata": METADATA},
    "UpdateConversationBody": {"metadata": replace(METADATA, required=True, nullable=False)},
    "CreateConversationItemsRequest": {"items": _a(required=True, nullable=False, max_items=20),
                                       "items[]": _o(nullable=False)},
    "CreateResponse": _RESPONSE,
    "": {},  # a route that takes no parameters (cancel): an empty body or {}
}

# where the table departs from the reference on purpose, parameter path -> why (in every schema that has
# it); the conformance test accepts a difference from the reference only where it is listed here
DEPARTURES: dict[str, str] = {
    "model": "an empty model is refused, as the hosted API did",
    "tools[].function.name": "a-z, A-Z, 0-9, _ and -, 1 to 64 of them (the reference says it in words)",
    "response_format.json_schema.name": "a-z, A-Z, 0-9, _ and -, 1 to 64 of them (the reference says it in words)",
    "metadata": "16 keys of at most 64 characters, values of at most 512 (the reference says it in words)",
    "tool_resources.file_search.vector_stores[].metadata": "as metadata",
    "max_prompt_tokens": "no minimum of 256 tokens: the offline models count small",
    "max_completion_tokens": "no minimum of 256 tokens: the offline models count small",
    "truncation_strategy.last_messages": "required when the type is last_messages",
    "tool_choice.function": "required when the type is function (the reference says it in words)",
    "tool_outputs[]": "a tool output has no other keys",
    "file": "a multipart body's file part is read apart from its text fields, and its absence said there",
    "data": "a multipart body's file part is read apart from its text fields, and its absence said there",
    "expires_after": "an expiration policy has no other keys than its anchor and its length",
    "attributes": "16 keys of at most 64 characters; strings of at most 512 (the reference says it in words)",
    "query[]": "the reference puts minItems on a query string; an empty query is refused by the search",
    "filters.filters[].type": "a filter's structure (which keys go with which type) is checked by the search",
    "filters.filters[].key": "a filter's structure (which keys go with which type) is checked by the search",
    "filters.filters[].value": "a filter's structure (which keys go with which type) is checked by the search",
}


def top_level_keys(schema: str) -> frozenset[str]:
    """The parameters a request schema accepts at its top level."""
    return frozenset(_steps(path)[0] for path in SCHEMAS[schema])


def _steps(path: str) -> list[str]:
    steps: list[str] = []
    for part in path.split("."):
        name = part.replace("[]", "")
        steps.append(name)
        steps.extend("[]" for _ in range(part.count("[]")))
    return steps


_COMPILED: dict[str, list[tuple[list[str], Rule]]] = {
    schema: [(_steps(path), rule) for path, rule in rules.items()] for schema, rules in SCHEMAS.items()
}


def _join(where: str, step: str | int) -> str:
    if isinstance(step, int):
        return f"{where}[{step}]"
    return f"{where}.{step}" if where else step


def _select(body: dict[str, Any], steps: list[str], prefix: str
            ) -> list[tuple[str, bool, Any, dict[str, Any]]]:
    """Every place `steps` reaches in `body`: (param, present, value, the object holding it)."""
    places: list[tuple[str, Any]] = [(prefix, body)]
    for step in steps[:-1]:
        following: list[tuple[str, Any]] = []
        for where, value in places:
            if step == "[]":
                if isinstance(value, list):
                    following.extend((_join(where, i), item) for i, item in enumerate(value))
            elif isinstance(value, dict) and value.get(step) is not None:
                following.append((_join(where, step), value[step]))
        places = following
    last = steps[-1]
    found: list[tuple[str, bool, Any, dict[str, Any]]] = []
    for where, value in places:
        if last == "[]":
            if isinstance(value, list):
                found.extend((_join(where, i), True, item, {}) for i, item in enumerate(value))
        elif isinstance(value, dict):
            found.append((_join(where, last), last in value, value.get(last), value))
    return found


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    if isinstance(value, str):
        return STRING
    return ARRAY if isinstance(value, list) else OBJECT


def _expected(types: tuple[str, ...]) -> str:
    return " or ".join(_A[t] for t in types)


def _type_error(param: str, rule: Rule, value: Any) -> APIError:
    got = _json_type(value)
    got = "a decimal" if got == NUMBER else _A[got]
    return invalid(f"Invalid type for '{param}': expected {_expected(rule.types)}, but got {got} instead.", param)


def _number(value: float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _apply(rule: Rule, param: str, value: Any) -> None:
    """400 unless `value` (present, not null) is what `rule` allows."""
    kind = _json_type(value)
    if kind not in rule.types and not (kind == INTEGER and NUMBER in rule.types):
        raise _type_error(param, rule, value)
    if isinstance(value, str):
        if rule.enum is not None and value not in rule.enum:
            supported = ", ".join(f"'{v}'" for v in rule.enum[:-1]) + (" and " if len(rule.enum) > 1 else "")
            raise invalid(f"Invalid value: '{shown(value)}'. Supported values are: {supported}'{rule.enum[-1]}'.",
                          param)
        if rule.min_length is not None and len(value) < rule.min_length:
            got = "an empty string" if not value else f"a string with length {len(value)}"
            raise invalid(f"Invalid '{param}': {'empty string' if not value else 'string too short'}. Expected a "
                          f"string with minimum length {rule.min_length}, but got {got} instead.", param)
        if rule.max_length is not None and len(value) > rule.max_length:
            raise invalid(f"Invalid '{param}': string too long. Expected a string with maximum length "
                          f"{rule.max_length}, but got a string with length {len(value)} instead.", param)
        if rule.compiled is not None and not rule.compiled.fullmatch(value):
            raise invalid(f"Invalid '{param}': string does not match pattern. Expected a string that matches the "
                          f"pattern '{rule.pattern}'.", param)
    elif kind in (INTEGER, NUMBER):
        what = "integer" if INTEGER in rule.types and NUMBER not in rule.types else "decimal"
        if rule.minimum is not None and value < rule.minimum:
            raise invalid(f"Invalid '{param}': {what} below minimum value. Expected a value >= "
                          f"{_number(rule.minimum)}, but got {_number(value)} instead.", param)
        if rule.maximum is not None and value > rule.maximum:
            raise invalid(f"Invalid '{param}': {what} above maximum value. Expected a value <= "
                          f"{_number(rule.maximum)}, but got {_number(value)} instead.", param)
        if isinstance(value, float) and not math.isfinite(value):  # the body parser refuses these already
            raise invalid(f"Invalid '{param}': the number is not finite.", param)
    elif isinstance(value, list):
        if rule.min_items is not None and len(value) < rule.min_items:
            raise invalid(f"Invalid '{param}': {'empty array' if not value else 'array too short'}. Expected an "
                          f"array with minimum length {rule.min_items}, but got an array with length {len(value)} "
                          "instead.", param)
        if rule.max_items is not None and len(value) > rule.max_items:
            raise invalid(f"Invalid '{param}': array too long. Expected an array with maximum length "
                          f"{rule.max_items}, but got an array with length {len(value)} instead.", param)
    elif isinstance(value, dict):
        if rule.map_values is not None:
            _apply_map(rule, param, value)
        if rule.keys is not None:
            for key in value:
                if key not in rule.keys:
                    unknown = _join(param, shown(key))
                    raise invalid(f"Unrecognized request argument supplied: {unknown}", unknown)
        if rule.schema is not None:
            check(rule.schema, value, prefix=param)


def _apply_map(rule: Rule, param: str, value: dict[str, Any]) -> None:
    """A map like metadata: its errors name the map itself, as the API's do."""
    assert rule.map_values is not None
    if rule.max_items is not None and len(value) > rule.max_items:
        raise invalid(f"Invalid '{param}': too many properties. Expected an object with at most {rule.max_items} "
                      f"properties, but got an object with {len(value)} properties instead.", param)
    for key, item in value.items():
        if rule.map_key_length is not None and len(key) > rule.map_key_length:
            raise invalid(f"Invalid '{param}': the key '{shown(key, 80)}' is {len(key)} characters long; keys are "
                          f"at most {rule.map_key_length}.", param)
        try:
            if item is None and not rule.map_values.nullable:
                raise _type_error(param, rule.map_values, item)
            _apply(rule.map_values, param, item)
        except APIError as exc:
            raise invalid(f"{exc.message[:-1]} (the value of '{shown(key, 80)}').", param) from None


def check(schema: str, body: Mapping[str, Any], *, prefix: str = "") -> None:
    """400 naming the first parameter of `body` that request `schema` does not allow (`prefix`: where in the
    request the body was given, like `thread` or `messages[0]`)."""
    known = top_level_keys(schema)
    for key in body:
        if key not in known:
            unknown = _join(prefix, shown(key))
            raise invalid(f"Unrecognized request argument supplied: {unknown}", unknown)
    for steps, rule in _COMPILED[schema]:
        for param, present, value, holder in _select(dict(body), steps, prefix):
            try:
                _check_one(rule, param, present, value, holder)
            except APIError as exc:
                if rule.reported_as is not None:
                    exc.param = _join(prefix, rule.reported_as)
                raise


def _check_one(rule: Rule, param: str, present: bool, value: Any, holder: dict[str, Any]) -> None:
    if value is None:
        needed = rule.required or (
            rule.required_if is not None and holder.get(rule.required_if[0]) == rule.required_if[1])
        if not present and needed:
            raise invalid(f"Missing required parameter: '{param}'.", param)
        if present and (not rule.nullable or needed):
            raise _type_error(param, rule, value)
        return
    _apply(rule, param, value)


# -- list endpoints' query parameters --------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]+")  # ASCII only: int() would also take " 5", "+5" and "٣"


def list_params(query: QueryParams, default_order: str = "desc") -> dict[str, Any]:
    """`limit` (an integer 1..100, default 20), `order` (asc or desc) and the `after`/`before` cursors."""
    raw = query.get("limit")
    limit = 20
    if raw is not None:
        negative = raw.startswith("-") and bool(_DIGITS.fullmatch(raw[1:]))
        if not negative and not _DIGITS.fullmatch(raw):
            raise invalid(f"Invalid type for 'limit': expected an integer, but got '{shown(raw, 20)}' instead.",
                          "limit")
        # past the bounds either way: no int() of a thousand digits
        limit = -1 if negative else int(raw) if len(raw) <= 6 else 10**6
        if not 1 <= limit <= 100:
            side, bound = ("below minimum", ">= 1") if limit < 1 else ("above maximum", "<= 100")
            raise invalid(f"Invalid 'limit': integer {side} value. Expected a value {bound}, but got "
                          f"{shown(raw, 20)} instead.", "limit")
    order = query.get("order", default_order)
    if order not in ("asc", "desc"):
        raise invalid(f"Invalid value: '{shown(order, 20)}'. Supported values are: 'asc' and 'desc'.", "order")
    cursors = {}
    for name in ("after", "before"):
        value = query.get(name)
        if value is not None and not value:
            raise invalid(f"Invalid '{name}': empty string. Expected an object ID.", name)
        cursors[name] = value
    return {"limit": limit, "order": order, **cursors}
