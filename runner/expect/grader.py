"""The grader behind `llm_rubric`: a model scores a reply against a rubric, through the backend's providers.

Its model calls go through the same providers (and so the same cassettes) as the conversation's.
"""

from __future__ import annotations

import json
from typing import Any

GRADER_INSTRUCTIONS = (
    "You grade an assistant's reply against a rubric. Judge only what the rubric asks. Answer with a JSON "
    'object {"score": <number from 0 to 1>, "reason": "<one sentence>"}, where 1 means the reply fully '
    "meets the rubric and 0 that it does not at all."
)
_FORMAT = {"type": "json_schema", "json_schema": {"name": "grade", "strict": True, "schema": {
    "type": "object", "additionalProperties": False, "required": ["score", "reason"],
    "properties": {"score": {"type": "number"}, "reason": {"type": "string"}}}}}


def live_settings(environ: Any) -> Any:
    """The live providers a grader may use (a runner.server.providers.LiveSettings), every request of theirs sent
    through the cassette router, so it is recorded in or replayed from the conversation's cassette; none at all
    when a key cannot be sent (preflight reports it)."""
    from runner.record.cassettes import routed_http_client
    from runner.server.providers import LiveSettings
    from runner.server.providers.upstream import BadKey

    try:
        return LiveSettings.from_env(environ, assume_openai=True).with_http_client(routed_http_client)
    except BadKey:
        return LiveSettings()


class GradingError(Exception):
    """The grader could not give a score."""


class Grader:
    """Scores replies with a model answered by `providers` (a runner.server.providers.ProviderSet)."""

    def __init__(self, providers: Any, default_model: str | None) -> None:
        self.providers = providers
        self.default_model = default_model

    async def grade(self, rubric: str, user: str, reply: str, model: str | None) -> tuple[float, str]:
        """(score from 0 to 1, the grader's reason)."""
        from runner.server.providers import ModelError, ModelRequest

        name = model or self.default_model
        if not name:
            raise GradingError("llm_rubric needs a grader model: give `model:` or set RUNNER_GRADER_MODEL")
        prompt = f"Rubric:\n{rubric}\n\nThe user said:\n{user}\n\nThe assistant replied:\n{reply}"
        try:
            provider, upstream_model = self.providers.resolve(name)
            answer = await provider.respond(ModelRequest(
                model=upstream_model, instructions=GRADER_INSTRUCTIONS, response_format=_FORMAT, temperature=0,
                items=[{"type": "message", "role": "user", "content": prompt}]))
        except ModelError as exc:
            raise GradingError(f"the grader {name} failed: {exc.message}") from None
        except Exception as exc:  # e.g. the provider is not configured (an APIError naming the model)
            raise GradingError(f"the grader {name} failed: {getattr(exc, 'message', exc)}") from None
        try:
            data = json.loads(answer.text or "")
            score = float(data["score"])
        except (ValueError, KeyError, TypeError):
            raise GradingError(f"the grader {name} did not answer with the JSON score asked for: "
                               f"{(answer.text or '')[:200]!r}") from None
        return max(0.0, min(1.0, score)), str(data.get("reason", ""))
