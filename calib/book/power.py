"""Power: what a contrast's design could resolve, and what a design that resolves a target
half-width would take, from the contrast's own variance (``inference.Spread``).

With S seeds and items on F facts, a contrast's variance is about seed / S + facts / F (the
spread's two terms, rescaled). More items help only while they rest on new facts: the world's
knowledge base holds ``fact_pool`` facts its tasks can ask about, so for the world suite F cannot
pass that, and where even that many facts and 20x the seeds fall short of the target, the answer
says so instead of extrapolating to items the knowledge base cannot supply. The task makers draw
facts with replacement, so N items cover about P (1 - (1 - 1/P)^N) distinct facts of a pool of
P: the items needed grow faster than the facts, without bound as F nears P (``draws``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from calib.book.inference import Spread

MAX_SEED_FACTOR = 20   # seeds beyond 20x the design's are not proposed
MAX_FACT_FACTOR = 64   # nor items on more than 64x its facts (where facts are unbounded)


@dataclass(frozen=True)
class Need:
    """The cheapest design (seeds x items) whose predicted half-width reaches ``target``, or why none does."""
    target: float
    seeds: int | None = None
    items_per_task: int | None = None
    facts: int | None = None
    best: float | None = None          # the half-width of the largest design allowed, when none reaches it
    capped_by_facts: bool = False

    def text(self) -> str:
        if self.seeds is not None:
            return f"about {self.seeds} seeds x {self.items_per_task:,} items per task"
        if self.capped_by_facts:
            return (f"out of reach: the knowledge base has {self.facts:,} facts to ask about; with all of them and "
                    f"{MAX_SEED_FACTOR}x the seeds the half-width would be ±{self.best:.2f}")
        return f"over {MAX_SEED_FACTOR}x the seeds and {MAX_FACT_FACTOR}x the items (±{self.best:.2f} there)"


def draws(facts: float, pool: int | None) -> float:
    """The items (draws with replacement) expected to cover ``facts`` distinct facts of ``pool``;
    ``facts`` itself when the pool is unbounded."""
    if pool is None:
        return float(facts)
    if facts >= pool:
        return math.inf
    return math.log1p(-facts / pool) / math.log1p(-1 / pool)


def needed(spread: Spread, seeds: int, items_per_task: int, target: float, fact_pool: int | None = None) -> Need:
    """The design (seeds, items per task) of least seeds x items whose predicted 95% half-width is at
    most ``target``; items grow with the facts they rest on (drawn with replacement from
    ``fact_pool`` facts, below which F stays; None: in proportion, no cap)."""
    f0 = spread.n_facts
    top = fact_pool - 1 if fact_pool is not None else MAX_FACT_FACTOR * f0
    fact_steps = sorted({min(top, max(f0, round(f0 * k / 4))) for k in range(4, 4 * MAX_FACT_FACTOR + 1)})
    best, options = None, []
    for s in range(max(seeds, 2), MAX_SEED_FACTOR * max(seeds, 1) + 1):
        for f in fact_steps:
            hw = spread.scaled(seeds=s, facts=f).half_width()
            if best is None or hw < best:
                best = hw
            if hw <= target:
                options.append((s, f))
                break
    if not options:
        return Need(target, best=best, facts=fact_pool, capped_by_facts=fact_pool is not None)
    s, f = min(options, key=lambda o: (o[0] * o[1], o[0]))
    grow = draws(f, fact_pool) / draws(f0, fact_pool) if f0 < (fact_pool or math.inf) else 1.0
    return Need(target, seeds=s, items_per_task=round(items_per_task * grow), facts=f)
