"""Contrasts, the tests behind most verdicts, each returning a ``Finding``: a paired contrast of
two arms (``paired_contrast``, on a per-item metric; ``job_contrast``, on a per-job one such as
Alpaca perplexity), its effect per task (``per_task``) and the growth of a gap (``range_trend``).
Ranges, correlations and sample means are ``comparisons``.

A contrast's variance has two sources, estimated apart and added: the calibration seeds (per seed
group, the variance of the per-seed contrasts, with S - 1 degrees of freedom) and the facts the
evaluation items rest on (a bootstrap over facts, jointly across tasks, the seeds held fixed).
Its CI and p come from one t distribution, so the CI excludes zero exactly when p < ALPHA. Its
degrees of freedom are Welch-Satterthwaite's, but with each seed term entered at a 70% upper
confidence bound for its variance (``SEED_DF_QUANTILE``), not at its estimate: with 2 or 3 seeds
the estimate has 1 or 2 degrees of freedom and often comes out small by chance, and plain
Satterthwaite then jumps to the facts' many degrees of freedom just when the seed term is most
under-estimated (a 13% false-positive rate at 2 seeds when seeds carry 80% of the variance,
issue 32). The standard error itself keeps the estimate. bench/bench_statistics.py measures the
rule on calib's own contrasts: 2-4 seeds, seed shares 20-80%. The sum counts the seed x item
interaction twice instead of once: it errs on the wide side.
Every part draws its own random stream.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
from scipy import stats

from calib.book.designs import Design, Items, cells, item_matrix, need
from calib.book.finding import ALPHA, LEVEL, POWER, UNITS, Finding, outcome_of
from calib.errors import CalibError, check_choice

N_RESAMPLES = 9999    # bootstrap resamples and permutations
RNG = 0               # the root seed: verdicts are deterministic
# a seed term enters the df at var * k / chi2.ppf(q, k), k = seeds - 1: the value its estimate
# undercuts with probability q. q = 0.28 keeps 2-4 seeds at 3-6% false positives and 94-97% coverage
# (bench/results/statistics-2seeds-q0.28.md; q = 0.3 let 2 seeds at an 80% seed share reach 6.1%)
SEED_DF_QUANTILE = 0.28


def stream(label: str, metric: str, rng=None):
    """An independent, reproducible random stream per part (its label and metric), unless given."""
    return rng if rng is not None else [RNG, zlib.crc32(f"{label}|{metric}".encode())]


# ------------------------------------------------------------------ the variance of a contrast
class Spread:
    """The variance of a contrast's estimate by source: each seed group's (the variance of its
    per-seed contrasts / seeds, S - 1 degrees of freedom) and the facts' (bootstrap)."""

    def __init__(self, seed_var, seed_n, fact_var: float, n_facts: int):
        self.seed_var, self.seed_n = list(seed_var), list(seed_n)
        self.fact_var, self.n_facts = float(fact_var), int(n_facts)

    @property
    def var(self) -> float:
        return sum(self.seed_var) + self.fact_var

    @property
    def se(self) -> float:
        return math.sqrt(self.var)

    @property
    def df(self) -> float:
        """Welch-Satterthwaite degrees of freedom of the summed variance, each seed term taken at
        its upper bound ``var * k / chi2.ppf(SEED_DF_QUANTILE, k)`` (see the module docstring)."""
        seeds = [v * (n - 1) / stats.chi2.ppf(SEED_DF_QUANTILE, n - 1) for v, n in zip(self.seed_var, self.seed_n)]
        den = sum(v * v / (n - 1) for v, n in zip(seeds, self.seed_n))
        den += self.fact_var ** 2 / max(self.n_facts - 1, 1)
        return math.inf if den == 0 else (sum(seeds) + self.fact_var) ** 2 / den

    def scaled(self, seeds: int | None = None, facts: int | None = None) -> Spread:
        """The spread with ``seeds`` seeds in every group and items on ``facts`` facts instead."""
        sv = [v * n / seeds for v, n in zip(self.seed_var, self.seed_n)] if seeds else self.seed_var
        sn = [seeds] * len(self.seed_n) if seeds else self.seed_n
        fv = self.fact_var * self.n_facts / facts if facts else self.fact_var
        return Spread(sv, sn, fv, facts or self.n_facts)

    def half_width(self, level: float = LEVEL) -> float:
        return float(stats.t.ppf(1 - (1 - level) / 2, self.df) * self.se)

    def mde(self, alpha: float = ALPHA) -> float:
        """The smallest true effect a two-sided test at ``alpha`` finds with probability POWER (at
        least: with the seed term's df taken low it errs on the large side)."""
        return float((stats.t.ppf(1 - alpha / 2, self.df) + stats.t.ppf(POWER, self.df)) * self.se)

    def as_dict(self) -> dict:
        return {"se": self.se, "df": self.df, "seed_var": sum(self.seed_var), "fact_var": self.fact_var}


def _t_finding(effect: float, spread: Spread, direction: int, **kw) -> Finding:
    se, df = spread.se, spread.df
    if se == 0:
        p = 1.0 if effect == 0 else 0.0
    else:
        p = float(2 * stats.t.sf(abs(effect) / se, df))
    ci_at = lambda level: (effect - spread.half_width(level), effect + spread.half_width(level))  # noqa: E731
    return Finding(outcome=outcome_of(p, effect, direction), effect=float(effect), ci=ci_at(LEVEL), p=p,
                   mde=spread.mde(), direction=direction, ci_at=ci_at,
                   detail={**kw.pop("detail", {}), **spread.as_dict(), "spread": spread}, **kw)


def margin_test(f: Finding, margin: float, kind: str) -> Finding:
    """A t-based contrast ``f`` tested as the paper's claim reads (issue 32): "non-inferiority" (the
    effect, on the paper's side, is above -margin: one one-sided t test) or "equivalence" (it lies
    within ±margin: two one-sided tests, TOST; p the larger). Reproduced when p < ALPHA, which is
    exactly when the 1 - 2 ALPHA CI (shown, 90%) clears the margin; contradicted when that CI lies
    wholly on the wrong side of it; else inconclusive. The margin is in the metric's unit."""
    check_choice("kind", kind, ("non-inferiority", "equivalence"))
    spread = f.detail["spread"]
    se, df, d = spread.se, spread.df, f.direction * f.effect
    lo = float(stats.t.sf((d + margin) / se, df))                 # H0: d <= -margin
    if kind == "non-inferiority":
        p, wrong = lo, float(stats.t.cdf((d + margin) / se, df))   # wrong: d >= -margin rejected
    else:
        hi = float(stats.t.cdf((d - margin) / se, df))             # H0: d >= margin
        p = max(lo, hi)
        wrong = min(float(stats.t.cdf((d + margin) / se, df)), float(stats.t.sf((d - margin) / se, df)))
    outcome = "reproduced" if p < ALPHA else "contradicted" if wrong < ALPHA else "inconclusive"
    ci_at = (lambda level: f.ci_at(2 * level - 1)) if f.ci_at is not None else None  # noqa: E731
    return Finding(outcome=outcome, effect=f.effect, ci=ci_at(LEVEL) if ci_at else f.ci, level=1 - 2 * ALPHA, p=p,
                   mde=None, metric=f.metric, n_seeds=f.n_seeds, n_items=f.n_items, n_facts=f.n_facts,
                   claim=f"{f.claim} ({kind}, margin ±{margin:g} {f.unit})", direction=f.direction, label=f.label,
                   unit=f.unit, ci_at=ci_at, detail={**f.detail, "margin": margin, "kind": kind})


# ------------------------------------------------------------------ contrasts
def _groups(df, arm, a, b, by, weights, seed_column, metric, column=None):
    """The cells grouped by seed set, each pre-combined into one signed [seed, item] difference
    matrix (strata weighted); whether the arms are paired; (n_a, n_b) seeds; the items."""
    if a == b:
        raise CalibError(f"a and b are the same {arm} value {a!r}")
    cs, strata, items = cells(df, arm, [a, b], by, seed_column, metric, column)
    keys = [s[0] if len(s) == 1 else s for s in strata]
    if weights is None:
        w = {s: 1 / len(strata) for s in strata}
    else:
        for k in weights:
            check_choice(f"stratum of {list(by)}", k, keys)
        w = {s: float(weights.get(k, 0.0)) for s, k in zip(strata, keys)}
    groups: dict[tuple, np.ndarray] = {}
    arms_in: dict[tuple, set] = {}
    for (stratum, v), (seeds, x) in cs.items():
        if w[stratum] == 0:
            continue
        groups[seeds] = groups.get(seeds, 0.0) + (1.0 if v == a else -1.0) * w[stratum] * x
        arms_in.setdefault(seeds, set()).add(v)
    if not groups:
        raise CalibError("every stratum has weight 0")
    paired = all(len(s) == 2 for s in arms_in.values())
    n_seeds = [len({s for seeds, arms in arms_in.items() if v in arms for s in seeds}) for v in (a, b)]
    return list(groups.values()), paired, (n_seeds[0] if paired else tuple(n_seeds)), items


def _spread(groups: list[np.ndarray], items: Items, weights: np.ndarray, n_resamples: int, rng) -> Spread:
    seed_var, seed_n = [], []
    for d in groups:
        if d.shape[0] > 1:
            per_seed = d @ weights
            seed_var.append(float(np.var(per_seed, ddof=1) / d.shape[0]))
            seed_n.append(d.shape[0])
    mean = sum(d.mean(axis=0) for d in groups)          # the seed-averaged difference of every item
    design = Design(blocks=[mean[None, :]], group_of=[0], group_sizes=[1], items=items)
    _, dist = design.bootstrap(lambda m: m[:, 0], n_resamples, rng, seeds=False)
    return Spread(seed_var, seed_n, float(np.var(dist, ddof=1)), items.n_facts)


def paired_contrast(df, arm: str, a, b, *, by=(), weights: dict | None = None, seed_column: str = "seed",
                    metric: str = "acc", claim: str = "", direction: int = 1, label: str = "",
                    n_resamples: int = N_RESAMPLES, rng=None, task: str | None = None) -> Finding:
    """Mean ``metric`` (x 100) of ``arm == a`` minus ``arm == b``, with a 95% CI and p over
    calibration seeds and evaluation facts (see the module docstring).

    Jobs are paired by ``seed_column`` within each stratum of ``by`` (e.g. ["method"]); the effect
    is the mean over strata of a - b, or the ``weights``-weighted sum (stratum value -> weight;
    strata left out get 0), e.g. "self-generated minus original, averaged over sources". Arms with
    the same seeds share their seed term (paired); otherwise each arm's seeds add their own, and a
    single-seed arm (magnitude pruning) adds none. ``task``: the items of that task alone."""
    groups, paired, n_seeds, items = _groups(df, arm, a, b, by, weights, seed_column, metric)
    if task is not None:
        check_choice("task", task, items.sizes)
        items, sl = items.only(task)
        groups = [d[:, sl] for d in groups]
    w = items.weights
    effect = float(sum(d.mean(axis=0) for d in groups) @ w)
    spread = _spread(groups, items, w, n_resamples, stream(label + (task or ""), metric, rng))
    single = [] if paired else [v for v, n in zip((a, b), n_seeds) if n == 1]
    note = {"note": f"{arm} {single[0]!r} has one seed: its seed noise is not in the CI"} if single else {}
    return _t_finding(effect, spread, direction, n_seeds=n_seeds, n_items=items.n_items, n_facts=items.n_facts,
                      claim=claim, label=label, metric=metric, unit=UNITS.get(metric, ""),
                      detail={"paired": paired, **note})


def per_task(df, arm: str, a, b, metrics=("acc", "logscore"), **kw) -> pd.DataFrame:
    """The contrast on each task's items alone, for each metric: one line per (task, metric) with
    its effect and 95% CI (the forest plot of a chapter's headline)."""
    first = df[df[arm].isin([a, b])].head(1)
    tasks = list(item_matrix(first, metrics[0])[1].sizes)
    out = []
    for m in metrics:
        for t in tasks:
            f = paired_contrast(df, arm, a, b, metric=m, task=t, **kw)
            out.append({"task": t, "metric": m, "effect": f.effect, "ci_low": f.ci[0], "ci_high": f.ci[1],
                        "p": f.p, "n_items": f.n_items, "n_facts": f.n_facts})
    return pd.DataFrame(out)


def job_contrast(df, arm: str, a, b, column: str, *, by=(), weights: dict | None = None, seed_column: str = "seed",
                 claim: str = "", direction: int = 1, label: str = "", unit: str = "",
                 diagnostic: bool = False) -> Finding:
    """A per-job measure ``column`` (e.g. Alpaca perplexity, on one fixed set of texts) of
    ``arm == a`` minus ``arm == b``, paired by seed within strata as ``paired_contrast``; its
    variance is the seeds' alone (the texts are held fixed), with S - 1 degrees of freedom."""
    groups, paired, n_seeds, _ = _groups(df, arm, a, b, by, weights, seed_column, column, column=column)
    if all(g.shape[0] < 2 for g in groups):
        raise CalibError(f"a contrast of {column!r} needs 2+ seeds per arm")
    effect = float(sum(g.mean() for g in groups))
    seed_var = [float(np.var(g[:, 0], ddof=1) / g.shape[0]) for g in groups if g.shape[0] > 1]
    spread = Spread(seed_var, [g.shape[0] for g in groups if g.shape[0] > 1], 0.0, 2)
    return _t_finding(effect, spread, direction, n_seeds=n_seeds, claim=claim, label=label, metric=column,
                      unit=unit, diagnostic=diagnostic, detail={"paired": paired})


def range_trend(df, a, b, *, x: str = "sparsity", low=None, high=None, group: str = "source",
                seed_column: str = "seed", claim: str = "", label: str = "", **kw) -> Finding:
    """Does the gap between ``group`` values a and b grow from ``x == low`` to ``x == high``
    (default: the smallest and largest x)? A difference-in-differences, (a - b at high) minus
    (a - b at low), tested as ``paired_contrast``.

    Why not the difference of the ranges themselves: a range's upward bias grows with the noise,
    and the noise grows with sparsity, so ranges "grow" even where the sources' true spread does
    not. A fixed pair named in advance (the paper's best and worst source) has no such bias."""
    need(df, [x])
    levels = sorted(pd.unique(df[x]))
    low = levels[0] if low is None else low
    high = levels[-1] if high is None else high
    check_choice(x, low, levels)
    check_choice(x, high, levels)
    if low == high:
        raise CalibError(f"range_trend needs two different levels of {x!r}; got {low!r} twice")
    return paired_contrast(df[df[x].isin([low, high])], group, a, b, by=[x], weights={high: 1.0, low: -1.0},
                           seed_column=seed_column, claim=claim, label=label, **kw)


__all__ = ["N_RESAMPLES", "RNG", "SEED_DF_QUANTILE", "Spread", "job_contrast", "margin_test", "paired_contrast", "per_task", "range_trend", "stream"]
