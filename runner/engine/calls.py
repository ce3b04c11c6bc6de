"""How the engine makes its calls to a backend: one idempotency key per acting request, and polling what the
backend works on (a run, a vector store) as often as it says."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

POLL_FIRST_S, POLL_MAX_S = 0.05, 2.0  # polling without the backend's hint: start quick, back off


def idempotent() -> dict[str, Any]:
    """An Idempotency-Key for one acting request: the SDK's retries of it resend the same key, and a backend
    that honours it (this project's does) acts once, so a retry never adds a user message twice."""
    return {"extra_headers": {"Idempotency-Key": uuid.uuid4().hex}}


async def poll(current: Any, retrieve: Callable[[], Awaitable[Any]], done: Callable[[Any], bool]) -> Any:
    """`current` once `done` says so, retrieved again until then (`retrieve` gives the raw response of a
    `with_raw_response` call): as often as the backend's openai-poll-after-ms says, or, without it, from
    50 ms up, doubling to 2 s (the SDK's own poll would sleep a fixed second)."""
    delay = POLL_FIRST_S
    while not done(current):
        response = await retrieve()
        current = response.parse()
        if done(current):
            break
        hinted = response.headers.get("openai-poll-after-ms")
        if hinted is not None and hinted.isdigit():
            await asyncio.sleep(int(hinted) / 1000)
        else:
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX_S)
    return current
