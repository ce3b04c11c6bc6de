"""Live providers for real: skipped unless their key is set (never in CI). `pytest -m live` runs them."""

from __future__ import annotations

import os

import pytest
from conftest import run_async

from runner.engine.backend import BackendTarget, embedded_client
from runner.engine.conversation import AssistantPool, EngineOptions, run_conversation
from runner.expect import judge
from runner.server.app import Backend, BackendSettings
from runner.server.providers import LiveSettings
from runner.spec import load_spec

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"), reason="OPENAI_API_KEY is not set"),
]


def test_a_real_model_answers_through_the_responses_api(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = load_spec(write_spec("""
    assistant:
      model: "{{ model }}"
      instructions: Reply with the single word PONG and nothing else.
    vars: {model: gpt-4o-mini}
    conversation:
      - user: ping
        expect: [{icontains: pong}]
    """), {"model": os.environ.get("RUNNER_LIVE_MODEL", "gpt-4o-mini")})

    async def go():  # type: ignore[no-untyped-def]
        client = embedded_client(Backend(BackendSettings(live=LiveSettings.from_env(os.environ))))
        transcript = await run_conversation(spec, client, BackendTarget(spec.backend), AssistantPool(client),
                                            EngineOptions(timeout=120))
        await client.close()
        return await judge(spec, transcript)

    transcript = run_async(go())
    assert transcript.verdict == "passed", transcript.failures()
    assert transcript.turns[0].usage and transcript.turns[0].usage["total_tokens"] > 0


def test_the_responses_pipeline_runs_against_openai_itself(write_spec) -> None:  # type: ignore[no-untyped-def]
    """The remote target of a migration: OpenAI's own Responses and Conversations APIs, no backend of ours."""
    from openai import AsyncOpenAI

    from runner.engine.responses import run_responses_conversation
    from runner.spec import BackendConfig

    spec = load_spec(write_spec("""
    assistant:
      model: "{{ model }}"
      instructions: Reply with the single word PONG and nothing else.
    vars: {model: gpt-4o-mini}
    conversation:
      - user: ping
        expect: [{icontains: pong}]
      - user: and again
        expect: [{icontains: pong}]
    """), {"model": os.environ.get("RUNNER_LIVE_MODEL", "gpt-4o-mini")})

    async def go():  # type: ignore[no-untyped-def]
        client = AsyncOpenAI()
        target = BackendTarget(BackendConfig(base_url=str(client.base_url), api_key_env="OPENAI_API_KEY"))
        transcript = await run_responses_conversation(spec, client, target, AssistantPool(client),
                                                      EngineOptions(timeout=120))
        await client.close()
        return await judge(spec, transcript)

    transcript = run_async(go())
    assert transcript.verdict == "passed", transcript.failures()
    assert transcript.pipeline == "responses" and (transcript.thread_id or "").startswith("conv_")
