"""One result per key for a batch's concurrent conversations: the first to ask makes it, the others await it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Once(Generic[T]):
    """Results by key, each made once: an assistant per config, a vector store per file set, an upload per file.

    A failure is not kept: the conversation that asked sees it, and the next one to ask tries again (the
    conversations that were waiting see the same failure).
    """

    def __init__(self) -> None:
        self._made: dict[Hashable, asyncio.Future[T]] = {}

    async def get(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        """The result for `key`, calling `make()` when no conversation has made it (or is making it) yet."""
        future = self._made.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._made[key] = future
            try:
                future.set_result(await make())
            except BaseException as exc:
                del self._made[key]  # let the next conversation try again, and see the same error
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters re-raise it themselves
                raise
        return await asyncio.shield(future)
