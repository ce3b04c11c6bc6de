"""Which failed upstream calls are worth another try: the SDK's rule, less the refusals it would repeat.

The SDK retries every 5xx. Servers of the llama.cpp family answer some invalid requests with a 500 (an
exception while building the prompt) or a 501 (a feature they lack); the same request fails the same way
again, so retrying it only delays the run's failure. Rate limits (429), other 5xx, connection errors and
timeouts are still retried, with the SDK's backoff and `retry-after`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx2
from openai import AsyncOpenAI

# error types servers give a request they refuse (OpenAI, llama.cpp, vLLM, FastAPI-based servers)
REFUSAL_TYPES = frozenset({"invalid_request_error", "invalid_request", "bad_request", "bad_request_error",
                           "validation_error", "not_supported_error", "not_implemented_error"})
# what a 500's message says when the request itself is at fault (a validation or prompt-template failure, or
# llama.cpp's embeddings: "input (701 tokens) is too large to process. increase the physical batch size")
REFUSAL_WORDS = re.compile(
    r"invalid|validation|not supported|unsupported|malformed|must be|is required|missing|cannot determine|too large|"
    r"template|NoneType|can only concatenate|has no attribute|is undefined",
    re.IGNORECASE,
)


def refuses_the_request(response: httpx2.Response) -> bool:
    """Whether a 5xx answer says the request itself is wrong, so that sending it again fails again:
    a 501, or a 500 whose error names an invalid request by its type or its message."""
    if response.status_code == 501:
        return True
    if response.status_code != 500:
        return False
    try:
        text = response.text
    except httpx2.ResponseNotRead:  # a streamed answer whose body is not read: judge by its status alone
        return False
    kinds, message = _error_parts(text)
    return bool(kinds & REFUSAL_TYPES) or bool(REFUSAL_WORDS.search(message))


def _error_parts(text: str) -> tuple[set[str], str]:
    """The error's type and code (lower case) and its message, from an error body in any common shape."""
    try:
        body: Any = json.loads(text)
    except ValueError:
        return set(), text
    error = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
    if not isinstance(error, dict):
        return set(), str(error)
    kinds = {str(error[key]).lower() for key in ("type", "code") if isinstance(error.get(key), str)}
    return kinds, str(error.get("message") or "")


class UpstreamClient(AsyncOpenAI):
    """The SDK's async client, retrying only what a retry can fix (see refuses_the_request)."""

    def _should_retry(self, response: httpx2.Response) -> bool:
        if not super()._should_retry(response):
            return False
        # an explicit `x-should-retry: true` from the server wins, as it does in the SDK
        return response.headers.get("x-should-retry") == "true" or not refuses_the_request(response)
