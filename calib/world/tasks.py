"""World evaluation suites: the Alpaca-role perplexity set and six lm-eval tasks."""
from __future__ import annotations

from functools import lru_cache

N_ALPACA = 1000


@lru_cache(maxsize=1)
def _alpaca() -> tuple[str, ...]:
    from calib.world import sources
    return tuple(sources.documents("world/instructions", N_ALPACA, seed=0, split="eval"))


def alpaca_texts(n: int = N_ALPACA) -> list[str]:
    """Held-out instruction-response pairs in the Alpaca role (never in pretraining)."""
    return list(_alpaca()[:n])
