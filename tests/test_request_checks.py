"""The request checks table (runner/server/checks.py) agrees with the official OpenAPI description, and the
backend refuses what the hosted API refused, naming the parameter.

The comparison with the reference file skips where the shared folder is not beside the repository, like
test_reference_conformance.py; the table's vocabulary is also compared with the SDK's parameter types,
which always runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from openai.types.beta import (
    assistant_create_params,
    assistant_update_params,
    thread_create_and_run_params,
    thread_create_params,
    thread_update_params,
)
from openai.types.beta.threads import (
    message_create_params,
    message_update_params,
    run_create_params,
    run_submit_tool_outputs_params,
    run_update_params,
)
from server_helpers import WEATHER_TOOL, Env, error_json, serve

from runner.server import checks
from runner.server.checks import SCHEMAS, Rule

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "openai-assistants-v2.openapi.yaml"
FILES_REFERENCE = REFERENCE.with_name("openai-files-vector-stores.openapi.yaml")
RESPONSES_REFERENCE = REFERENCE.with_name("openai-responses-conversations.openapi.yaml")
# the Conversations and Responses request schemas: compared with their own reference at the top level (below), their
# items' shapes being checked where they are made into stored items
RESPONSES_SCHEMAS = {"CreateConversationBody", "UpdateConversationBody", "CreateConversationItemsRequest",
                     "CreateResponse"}
needs_reference = pytest.mark.skipif(not REFERENCE.exists(), reason="the shared reference OpenAPI file is not beside the repo")

_CONSTRAINTS = {"minimum": "minimum", "maximum": "maximum", "minLength": "min_length", "maxLength": "max_length",
                "pattern": "pattern", "minItems": "min_items", "maxItems": "max_items"}


def _keys(params: Any, *drop: str) -> set[str]:
    return set(params.__required_keys__ | params.__optional_keys__) - set(drop)


# what the SDK sends in a body for each request schema (thread_id and include travel in the path and query)
SDK_PARAMS = {
    "CreateAssistantRequest": _keys(assistant_create_params.AssistantCreateParams),
    "ModifyAssistantRequest": _keys(assistant_update_params.AssistantUpdateParams),
    "CreateThreadRequest": _keys(thread_create_params.ThreadCreateParams),
    "ModifyThreadRequest": _keys(thread_update_params.ThreadUpdateParams),
    "CreateMessageRequest": _keys(message_create_params.MessageCreateParams, "thread_id"),
    "ModifyMessageRequest": _keys(message_update_params.MessageUpdateParams, "thread_id"),
    "CreateRunRequest": _keys(run_create_params.RunCreateParamsBase, "thread_id", "include") | {"stream"},
    "ModifyRunRequest": _keys(run_update_params.RunUpdateParams, "thread_id"),
    "CreateThreadAndRunRequest": _keys(thread_create_and_run_params.ThreadCreateAndRunParamsBase) | {"stream"},
    "SubmitToolOutputsRunRequest": _keys(run_submit_tool_outputs_params.RunSubmitToolOutputsParamsBase,
                                         "thread_id") | {"stream"},
    "CreateFileRequest": _keys(openai.types.file_create_params.FileCreateParams),
    "CreateUploadRequest": _keys(openai.types.upload_create_params.UploadCreateParams),
    "CompleteUploadRequest": _keys(openai.types.upload_complete_params.UploadCompleteParams),
    "AddUploadPartRequest": _keys(openai.types.uploads.part_create_params.PartCreateParams),
    "CreateVectorStoreRequest": _keys(openai.types.vector_store_create_params.VectorStoreCreateParams),
    "UpdateVectorStoreRequest": _keys(openai.types.vector_store_update_params.VectorStoreUpdateParams),
    "CreateVectorStoreFileRequest": _keys(openai.types.vector_stores.file_create_params.FileCreateParams),
    "CreateVectorStoreFileBatchRequest": _keys(openai.types.vector_stores.file_batch_create_params
                                               .FileBatchCreateParams),
    "UpdateVectorStoreFileAttributesRequest": _keys(openai.types.vector_stores.file_update_params.FileUpdateParams,
                                                    "vector_store_id"),
    "VectorStoreSearchRequest": _keys(openai.types.vector_store_search_params.VectorStoreSearchParams),
    "CreateConversationBody": _keys(openai.types.conversations.conversation_create_params.ConversationCreateParams),
    "UpdateConversationBody": _keys(openai.types.conversations.conversation_update_params.ConversationUpdateParams),
    "CreateConversationItemsRequest": _keys(openai.types.conversations.item_create_params.ItemCreateParams,
                                            "include"),
    "CreateResponse": _keys(openai.types.responses.response_create_params.ResponseCreateParamsBase) | {"stream"},
}


def test_the_table_accepts_exactly_the_parameters_the_sdk_sends() -> None:
    assert set(SCHEMAS) - {""} == set(SDK_PARAMS)
    for schema, params in SDK_PARAMS.items():
        assert checks.top_level_keys(schema) == params, schema
    assert checks.top_level_keys("") == frozenset()


# -- the reference, flattened: every parameter path of a request schema with what its variants allow ---------

@dataclass
class Place:
    """What the reference allows at one parameter path, over every variant (anyOf/oneOf) that reaches it."""

    types: set[str] = field(default_factory=set)
    nullable: bool = False
    required_in: int = 0  # of the variants of the object holding it, how many require it
    holders: int = 0  # how many variants of the holding object there are
    constraints: dict[str, Any] = field(default_factory=dict)
    enum: set[str] = field(default_factory=set)
    ref: str | None = None  # the named schema it is, when it is one
    closed: set[str] | None = None  # additionalProperties: false: its properties


class Reference:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}
        for reference in (REFERENCE, FILES_REFERENCE):  # the Assistants API, and the Files and Vector stores APIs
            self.schemas |= yaml.safe_load(reference.read_text(encoding="utf-8"))["components"]["schemas"]

    def variants(self, node: dict[str, Any]) -> list[dict[str, Any]]:
        """`node` as plain alternatives: $ref, allOf merged in, one alternative per anyOf/oneOf member."""
        base = {k: v for k, v in node.items() if k not in ("$ref", "allOf", "anyOf", "oneOf")}
        out = [base]
        if "$ref" in node:
            out = [_merge(b, v) for b in out for v in self.variants(self.schemas[node["$ref"].split("/")[-1]])]
        for member in node.get("allOf", []):
            out = [_merge(b, v) for b in out for v in self.variants(member)]
        for key in ("anyOf", "oneOf"):
            if key in node:
                out = [_merge(b, v) for b in out for member in node[key] for v in self.variants(member)]
        return out

    def places(self, schema: str) -> dict[str, Place]:
        found: dict[str, Place] = {}
        self._walk({"$ref": f"#/components/schemas/{schema}"}, "", found, top=True)
        return found

    def _walk(self, node: dict[str, Any], path: str, found: dict[str, Place], *, top: bool = False) -> None:
        variants = self.variants(node)
        if not top:
            place = found[path]
            if "$ref" in node:
                place.ref = node["$ref"].split("/")[-1]
        objects = [v for v in variants if "properties" in v or v.get("type") == "object"]
        for v in variants:
            if not top:
                kind = v.get("type")
                if kind == "null" or v.get("nullable"):
                    place.nullable = True
                if kind not in (None, "null"):
                    place.types.add(kind)
                place.constraints |= {_CONSTRAINTS[k]: v[k] for k in _CONSTRAINTS if k in v}
                place.enum |= {e for e in v.get("enum", []) if e is not None}
                if v.get("additionalProperties") is False:
                    place.closed = set(v.get("properties", {}))
        for v in objects:
            for key, child in v.get("properties", {}).items():
                child_path = f"{path}.{key}" if path else key
                found.setdefault(child_path, Place())
                self._walk(child, child_path, found)
        for key in {k for v in objects for k in v.get("properties", {})}:
            child_path = f"{path}.{key}" if path else key
            found[child_path].holders = len(objects)
            found[child_path].required_in = sum(key in v.get("required", []) for v in objects)
        for v in variants:
            if "items" in v:
                found.setdefault(path + "[]", Place(holders=1))
                self._walk(v["items"], path + "[]", found)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {**a, **b}
    if "properties" in a and "properties" in b:
        out["properties"] = {**a["properties"], **b["properties"]}
    out["required"] = [*a.get("required", []), *b.get("required", [])]
    out["nullable"] = a.get("nullable", False) or b.get("nullable", False)
    return out


def _rule_constraints(rule: Rule) -> dict[str, Any]:
    values = {name: getattr(rule, name) for name in _CONSTRAINTS.values()}
    return {name: value for name, value in values.items() if value is not None}


def _differences(rule: Rule, place: Place) -> list[str]:
    """How the table's rule differs from the reference's place (empty: they agree)."""
    out = []
    if set(rule.types) != place.types:
        out.append(f"types {sorted(rule.types)} != {sorted(place.types)}")
    if rule.nullable != place.nullable:
        out.append(f"nullable {rule.nullable} != {place.nullable}")
    required = place.holders > 0 and place.required_in == place.holders
    if rule.required != required:
        out.append(f"required {rule.required} != {required}")
    if rule.required_if is not None and not 0 < place.required_in < place.holders:
        out.append("required_if, but the reference requires it in no variant or in every one")
    if _rule_constraints(rule) != place.constraints:
        out.append(f"constraints {_rule_constraints(rule)} != {place.constraints}")
    if rule.enum is not None and set(rule.enum) != place.enum:
        out.append(f"enum {sorted(rule.enum)} != {sorted(place.enum)}")
    if rule.keys is not None and set(rule.keys) != place.closed:
        out.append(f"keys {sorted(rule.keys)} != {place.closed}")
    if rule.schema != (place.ref if rule.schema else None):
        out.append(f"schema {rule.schema} != {place.ref}")
    if rule.map_values is not None or rule.map_key_length is not None:
        out.append("a map's limits (the reference states them in words)")
    return out


@needs_reference
def test_every_rule_of_the_table_is_what_the_reference_says_or_a_listed_departure() -> None:
    reference = Reference()
    wrong, departing = [], set()
    for schema, rules in SCHEMAS.items():
        if not schema or schema in RESPONSES_SCHEMAS:
            continue
        places = reference.places(schema)
        assert checks.top_level_keys(schema) == {p for p in places if "." not in p and "[" not in p}, schema
        for path, rule in rules.items():
            assert path in places, f"{schema}: {path} is not a parameter of the reference"
            differences = _differences(rule, places[path])
            if differences:
                departing.add(path)
                if path not in checks.DEPARTURES:
                    wrong.append(f"{schema}.{path}: {'; '.join(differences)}")
    assert not wrong, "\n".join(wrong)
    assert not set(checks.DEPARTURES) - departing, "listed as departures, but they agree with the reference"


@needs_reference
def test_every_bound_and_non_string_scalar_of_the_reference_is_in_the_table() -> None:
    reference = Reference()
    missing = []
    for schema, rules in SCHEMAS.items():
        if not schema or schema in RESPONSES_SCHEMAS:
            continue
        nested = [path for path, rule in rules.items() if rule.schema]  # checked as their own schema
        for path, place in reference.places(schema).items():
            if any(path.startswith(n + ".") or path.startswith(n + "[") for n in nested):
                continue
            if (place.constraints or place.types & {"integer", "number", "boolean"}) and path not in rules:
                missing.append(f"{schema}.{path}: {place}")
    assert not missing, "\n".join(missing)


@needs_reference
def test_every_post_route_the_backend_serves_has_its_schema_in_the_table() -> None:
    from runner.server.routes import all_routes

    served = {path for path, method, _ in all_routes() if method == "POST"}
    for reference in (REFERENCE, FILES_REFERENCE):
        for path, ops in yaml.safe_load(reference.read_text(encoding="utf-8"))["paths"].items():
            post = ops.get("post")
            if post is None or path not in served:
                continue
            body = post.get("requestBody")
            content = next(iter(body["content"].values())) if body else None  # JSON or multipart
            schema = content["schema"]["$ref"].split("/")[-1] if content else ""
            assert schema in SCHEMAS, f"POST {path}: {schema}"
    assert {"/assistants", "/threads/runs", "/files", "/uploads/{upload_id}/parts", "/vector_stores",
            "/vector_stores/{vector_store_id}/search"} <= served


@pytest.mark.skipif(not RESPONSES_REFERENCE.exists(), reason="the shared reference OpenAPI file is not beside the repo")
def test_the_conversations_and_responses_schemas_take_the_reference_parameters_with_its_types() -> None:
    document = yaml.safe_load(RESPONSES_REFERENCE.read_text(encoding="utf-8"))
    reference = Reference()
    reference.schemas = document["components"]["schemas"]
    inline = document["paths"]["/conversations/{conversation_id}/items"]["post"]["requestBody"]["content"]
    bodies = {name: {"$ref": f"#/components/schemas/{name}"} for name in RESPONSES_SCHEMAS}
    bodies["CreateConversationItemsRequest"] = next(iter(inline.values()))["schema"]
    sdk_only = {"access_programs", "background_options", "image"}  # newer than the reference: the SDK sends them
    for schema, node in bodies.items():
        if schema not in SCHEMAS:
            continue
        top = {key: child for v in reference.variants(node) for key, child in v.get("properties", {}).items()}
        assert checks.top_level_keys(schema) - sdk_only == set(top), schema
        for path, rule in SCHEMAS[schema].items():
            if "." in path or "[" in path or path in sdk_only:
                continue
            types = {v.get("type") for v in reference.variants(top[path])} - {None, "null"}
            if types and rule.types != checks.ANY_JSON:  # an open rule (any JSON) takes whatever the reference says
                assert set(rule.types) <= types | ({"number"} if "integer" in types else set()), (schema, path)


# -- what the hosted API refused, refused here too --------------------------------------------------------

def _bad_requests(a: str, t: str) -> list[tuple[str, dict[str, Any], str]]:
    function = {"type": "function", "function": {"name": "../x"}}
    return [
        ("/assistants", {"model": "echo", "temperature": 99}, "temperature"),
        ("/assistants", {"model": "echo", "temperature": 3}, "temperature"),
        ("/assistants", {"model": "echo", "temperature": -0.1}, "temperature"),
        ("/assistants", {"model": "echo", "top_p": -1}, "top_p"),
        ("/assistants", {"model": "echo", "top_p": 1.01}, "top_p"),
        ("/assistants", {"model": ""}, "model"),
        ("/assistants", {"model": "echo", "name": "x" * 100_000}, "name"),
        ("/assistants", {"model": "echo", "name": "x" * 257}, "name"),
        ("/assistants", {"model": "echo", "description": "x" * 513}, "description"),
        ("/assistants", {"model": "echo", "instructions": "x" * 256_001}, "instructions"),
        ("/assistants", {"model": "echo", "tools": [function]}, "tools[0].function.name"),
        ("/assistants", {"model": "echo", "tools": [{"type": "function", "function": {"name": "x" * 65}}]},
         "tools[0].function.name"),
        ("/assistants", {"model": "echo", "tools": [{"type": "function", "function": {"name": ""}}]},
         "tools[0].function.name"),
        ("/assistants", {"model": "echo", "tools": [{"type": "function"}]}, "tools[0].function"),
        ("/assistants", {"model": "echo", "tools": [{"type": "function", "function": "f"}]}, "tools[0].function"),
        ("/assistants", {"model": "echo", "tools": [{"type": "code_interpreter"}] * 129}, "tools"),
        ("/assistants", {"model": "echo", "tools": [{"type": "file_search", "file_search": {"max_num_results": 51}}]},
         "tools[0].file_search.max_num_results"),
        ("/assistants", {"model": "echo", "tools": [{"type": "function", "function": {"name": "f", "strict": "yes"}}]},
         "tools[0].function.strict"),
        ("/assistants", {"model": "echo", "temperature": "0.5"}, "temperature"),
        ("/assistants", {"model": "echo", "metadata": {"k": "v" * 513}}, "metadata"),
        ("/assistants", {"model": "echo", "response_format": {"type": "json_schema", "json_schema": {"name": "a b"}}},
         "response_format.json_schema.name"),
        ("/assistants", {"model": "echo", "reasoning_effort": "extreme"}, "reasoning_effort"),
        ("/assistants", {"model": "echo", "tool_resources": {"code_interpreter": {"file_ids": ["f"] * 21}}},
         "tool_resources.code_interpreter.file_ids"),
        (f"/assistants/{a}", {"temperature": 2.5}, "temperature"),
        (f"/assistants/{a}", {"model": ""}, "model"),
        (f"/assistants/{a}", {"name": "x" * 257}, "name"),
        (f"/assistants/{a}", {"tools": [function]}, "tools[0].function.name"),
        ("/threads", {"messages": [{"role": "user", "content": []}]}, "messages[0].content"),
        ("/threads", {"messages": None}, "messages"),
        ("/threads", {"tool_resources": {"file_search": {"vector_stores": [{"chunking_strategy": {
            "type": "static", "static": {"max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0}}}]}}},
         "tool_resources.file_search.vector_stores[0].chunking_strategy.static.max_chunk_size_tokens"),
        (f"/threads/{t}/messages", {"role": "user", "content": [{"type": "text"}]}, "content[0].text"),
        (f"/threads/{t}/runs", {"assistant_id": a, "temperature": 3}, "temperature"),
        (f"/threads/{t}/runs", {"assistant_id": a, "top_p": -1}, "top_p"),
        (f"/threads/{t}/runs", {"assistant_id": a, "model": ""}, "model"),
        (f"/threads/{t}/runs", {"assistant_id": a, "tools": [function]}, "tools[0].function.name"),
        (f"/threads/{t}/runs", {"assistant_id": a, "tools": [{"type": "code_interpreter"}] * 21}, "tools"),
        (f"/threads/{t}/runs", {"assistant_id": a, "max_prompt_tokens": 2.5}, "max_prompt_tokens"),
        (f"/threads/{t}/runs", {"assistant_id": a, "max_prompt_tokens": "300"}, "max_prompt_tokens"),
        (f"/threads/{t}/runs", {"assistant_id": a, "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        (f"/threads/{t}/runs", {"assistant_id": a, "stream": "false"}, "stream"),
        (f"/threads/{t}/runs", {"assistant_id": 5}, "assistant_id"),
        (f"/threads/{t}/runs", {"assistant_id": a, "truncation_strategy": {"type": "last_messages",
                                                                            "last_messages": True}},
         "truncation_strategy.last_messages"),
        ("/threads/runs", {"assistant_id": a, "temperature": 99}, "temperature"),
        ("/threads/runs", {"assistant_id": a, "thread": None}, "thread"),
        ("/threads/runs", {"assistant_id": a, "thread": {"messages": [{"role": "user", "content": "x",
                                                                       "metadata": {"k" * 65: "v"}}]}},
         "thread.messages[0].metadata"),
    ]


def test_out_of_range_and_malformed_parameters_are_400s_naming_them() -> None:
    async def body(env: Env) -> None:
        a = (await env.assistant()).id
        t = (await env.thread("hi")).id
        for path, request, param in _bad_requests(a, t):
            with pytest.raises(openai.BadRequestError) as info:
                await env.client.post(path, body=request, cast_to=object)
            err = error_json(info.value)
            assert err["param"] == param, (path, str(request)[:200], err)
            assert len(err["message"]) < 400, err["message"]  # a huge value is not echoed back
        # nothing was created or started by the refused requests
        assert len((await env.client.beta.assistants.list()).data) == 1
        assert (await env.client.beta.threads.runs.list(t)).data == []

    serve(body)


def test_values_at_the_bounds_are_accepted() -> None:
    async def body(env: Env) -> None:
        c = env.client
        a = await env.assistant(temperature=2, top_p=0, name="x" * 256, description="d" * 512,
                                tools=[{**WEATHER_TOOL, "function": {**WEATHER_TOOL["function"], "name": "A-z_0" * 12}}],
                                metadata={"k" * 64: "v" * 512, **{str(i): "" for i in range(15)}})
        assert a.temperature == 2 and a.top_p == 0 and len(a.name or "") == 256
        t = await env.thread("hi")
        run = await c.beta.threads.runs.create_and_poll(thread_id=t.id, assistant_id=a.id, temperature=0, top_p=1,
                                                        max_prompt_tokens=1, max_completion_tokens=1)
        assert run.temperature == 0 and run.top_p == 1
        page = await c.beta.threads.messages.list(t.id, limit=100)
        assert page.data

    serve(body)


@pytest.mark.parametrize("limit", [" 5", "5 ", "+5", "-1", "٣", "５", "5.0", "1e2", "", "0", "101", "9" * 5000])
def test_list_limit_is_an_ascii_integer_from_1_to_100(limit: str) -> None:
    async def body(env: Env) -> None:
        t = await env.thread("hi")
        for path in ("/assistants", f"/threads/{t.id}/messages", f"/threads/{t.id}/runs"):
            with pytest.raises(openai.BadRequestError) as info:
                await env.client.get(path, cast_to=object, options={"params": {"limit": limit}})
            err = error_json(info.value)
            assert err["param"] == "limit" and len(err["message"]) < 200
            if limit in ("-1", "0"):  # an integer below the minimum says so, not that it is no integer
                assert "below minimum" in err["message"], err["message"]

    serve(body)


@pytest.mark.parametrize(("query", "param"), [({"order": "ASC"}, "order"), ({"order": ""}, "order"),
                                              ({"after": ""}, "after"), ({"before": ""}, "before")])
def test_list_order_and_cursors_are_strict(query: dict[str, str], param: str) -> None:
    async def body(env: Env) -> None:
        with pytest.raises(openai.BadRequestError) as info:
            await env.client.get("/assistants", cast_to=object, options={"params": query})
        assert error_json(info.value)["param"] == param

    serve(body)
