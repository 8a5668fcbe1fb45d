"""Tests against a null by resampling, each returning a ``Finding``: the range across sources
against noise (``range_test``), a correlation bootstrapped by cell (``correlation``), and a
difference of two samples' means (``mean_difference``). Their p and CI are read off one bootstrap
distribution (``_boot_p``, ``_boot_ci``), so a CI excludes zero exactly when p < ALPHA; a range's
CI only describes it, and its outcome is the test's.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from calib.book.designs import Design, cells, need
from calib.book.finding import ALPHA, LEVEL, UNITS, Finding, outcome_of
from calib.book.inference import N_RESAMPLES, stream
from calib.errors import CalibError


def _boot_ci(dist: np.ndarray, level: float) -> tuple[float, float]:
    """Order statistics of the bootstrap distribution that exclude zero exactly when ``_boot_p`` < 1 - level."""
    d = np.sort(dist[np.isfinite(dist)])
    j = math.ceil((1 - level) / 2 * len(d)) - 1
    j = min(max(j, 0), len(d) - 1)
    return float(d[j]), float(d[len(d) - 1 - j])


def _boot_p(dist: np.ndarray) -> float:
    """Two-sided bootstrap p: twice the share of the distribution on the far side of zero."""
    d = dist[np.isfinite(dist)]
    return float(min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0))))


def _boot_finding(effect: float, dist: np.ndarray, direction: int, **kw) -> Finding:
    p = _boot_p(dist)
    return Finding(outcome=outcome_of(p, effect, direction), effect=float(effect), ci=_boot_ci(dist, LEVEL), p=p,
                   direction=direction, ci_at=lambda level: _boot_ci(dist, level), **kw)


def range_test(df, group: str = "source", *, by=(), seed_column: str = "seed", metric: str = "acc",
               claim: str = "", label: str = "", n_resamples: int = N_RESAMPLES, rng=None) -> Finding:
    """Is the range (max - min) of the ``group`` means larger than noise alone makes it?

    A range is never negative, so a CI excluding zero says nothing; it is tested against two
    nulls, and reproduced only when it beats both at ALPHA / 2 (p, doubled, < ALPHA: the level of a
    two-sided contrast's side), else inconclusive:
    - seed noise: the group labels are exchangeable within each seed (scipy.stats.permutation_test,
      permutation_type="samples"). This null is conditional on the evaluation items: sources that
      merely win different items, by chance, of a small item set would pass it.
    - seed and fact noise: a bootstrap of seeds and facts with each group's means recentred on
      their common mean (a bootstrap test with the null imposed), so item sampling counts too.
    With ``by`` the statistic is the mean over strata of the range. The CI is the bootstrap CI of
    the range: descriptive (a range is biased upwards by noise); the outcome is the test's."""
    need(df, [group])
    rng = stream(label, metric, rng)
    values = list(pd.unique(df[group]))
    if len(values) < 2:
        raise CalibError(f"a range needs 2+ values of {group!r}; the frame has {values}")
    cs, strata, items = cells(df, group, values, by, seed_column, metric)
    sets = {}
    for stratum in strata:
        seeds = {cs[stratum, v][0] for v in values}
        if len(seeds) > 1:
            raise CalibError(f"the values of {group!r} at {dict(zip(by, stratum)) or 'all'} have different "
                             f"seeds {sorted(map(str, seeds))}: the within-seed null needs the same seeds")
        sets[stratum] = seeds.pop()
    if all(len(s) < 2 for s in sets.values()):
        raise CalibError("a range test needs 2+ seeds")
    k, w = len(values), items.weights
    samples = [np.concatenate([cs[s, v][1] @ w for s in strata]) for v in values]
    bounds = np.cumsum([0] + [len(sets[s]) for s in strata])

    def mean_range(*xs, axis=-1):
        x = np.stack(xs, axis=-2)                                   # (..., groups, obs)
        per = np.stack([x[..., lo:hi].mean(-1) for lo, hi in zip(bounds[:-1], bounds[1:])], -1)
        return np.ptp(per, axis=-2).mean(-1)

    perm = stats.permutation_test(samples, mean_range, permutation_type="samples", vectorized=True,
                                  n_resamples=n_resamples, alternative="greater",
                                  rng=np.random.default_rng(rng))
    gid = {s: i for i, s in enumerate(dict.fromkeys(sets.values()))}
    blocks = [cs[s, v][1] for s in strata for v in values]
    design = Design(blocks=blocks, group_of=[gid[sets[s]] for s in strata for _ in values],
                    group_sizes=[len(s) for s in gid], items=items)
    m = np.array([blk.mean(0) @ w for blk in blocks]).reshape(-1, k)
    shift = (m - m.mean(1, keepdims=True)).ravel()

    def ranges(means):                                              # (B, blocks) -> (2, B)
        b = len(means)
        return np.stack([np.ptp(means.reshape(b, -1, k), axis=2).mean(1),
                         np.ptp((means - shift).reshape(b, -1, k), axis=2).mean(1)])

    est, dist = design.bootstrap(ranges, n_resamples, rng)
    effect, null = float(est[0]), dist[1]
    # like permutation_test's p: the share of null replicates at or above the observation, counting it
    detail = {"p_seeds": float(perm.pvalue), "p_items": float((1 + np.sum(null >= effect - 1e-12)) / (1 + len(null))),
              "null95_seeds": float(np.percentile(perm.null_distribution, 100 * (1 - ALPHA / 2))),
              "null95_items": float(np.percentile(null, 100 * (1 - ALPHA / 2)))}
    # doubled: the test sits at ALPHA / 2 in the upper tail, as a two-sided contrast does (issue 32)
    p = min(1.0, 2 * max(detail["p_seeds"], detail["p_items"]))
    return Finding(outcome="reproduced" if p < ALPHA else "inconclusive", effect=effect,
                   ci=_boot_ci(dist[0], LEVEL), n_seeds=max(len(s) for s in sets.values()),
                   n_items=items.n_items, n_facts=items.n_facts, claim=claim, label=label, measure="range",
                   p=p, metric=metric, unit=UNITS.get(metric, ""), descriptive_ci=True,
                   null95=max(detail["null95_seeds"], detail["null95_items"]), detail=detail)


# ------------------------------------------------------------------ correlations and samples
def _spearman(x, y, axis=-1):
    """Spearman's rho along ``axis`` (vectorised): Pearson's r of the ranks."""
    rx, ry = stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis)
    return stats.pearsonr(rx, ry, axis=axis).statistic


def correlation(x, y, cells_of=None, *, direction: int = 1, claim: str = "", label: str = "", metric: str = "rho",
                n_resamples: int = N_RESAMPLES, rng=None) -> Finding:
    """Spearman's rho of x and y with a 95% CI and p from a bootstrap that redraws whole cells
    (``cells_of``: each point's cell, e.g. its source and data kind: points of one cell share
    more than their seeds; None: every point is its own cell)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise CalibError(f"x and y must be 1-D and of one length; got shapes {x.shape} and {y.shape}")
    if len(x) < 5 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise CalibError(f"a correlation needs 5+ finite (x, y) pairs; got {len(x)}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise CalibError("x or y is constant: Spearman's rho is undefined")
    labels = np.arange(len(x)) if cells_of is None else np.asarray(list(map(str, cells_of)))
    groups = [np.flatnonzero(labels == c) for c in dict.fromkeys(labels.tolist())]
    if len(groups) < 4:
        raise CalibError(f"a correlation bootstrapped by cell needs 4+ cells; got {len(groups)}")
    rho = float(stats.spearmanr(x, y).statistic)
    g = np.random.default_rng(stream(label, metric, rng))
    draws = g.integers(len(groups), size=(n_resamples, len(groups)))
    sizes = np.array([len(c) for c in groups])
    dist = np.full(n_resamples, np.nan)
    for total in np.unique(sizes[draws].sum(axis=1)):   # draws of one total length: one vectorised call
        rows = np.flatnonzero(sizes[draws].sum(axis=1) == total)
        idx = np.stack([np.concatenate([groups[c] for c in draws[r]]) for r in rows])
        xs, ys = x[idx], y[idx]
        ok = (np.ptp(xs, axis=1) > 0) & (np.ptp(ys, axis=1) > 0)   # a draw of one constant cell has no rho
        if ok.any():
            dist[rows[ok]] = _spearman(xs[ok], ys[ok])
    return _boot_finding(rho, dist, direction, claim=claim, label=label, measure="rho", unit="", metric=metric,
                         n_points=len(x), detail={"cells": len(groups), "undefined_draws": int(np.isnan(dist).sum())})


def mean_difference(x, y, *, direction: int = 1, claim: str = "", label: str = "", unit: str = "",
                    metric: str = "score", n_resamples: int = N_RESAMPLES, rng=None) -> Finding:
    """mean(x) - mean(y) of two independent samples (e.g. per-window scores of two corpora),
    with a 95% CI and p from a bootstrap that resamples each sample on its own (scipy.stats.bootstrap)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) < 2 or len(y) < 2:
        raise CalibError(f"a mean difference needs 2+ finite values per sample; got {len(x)} and {len(y)}")
    boot = stats.bootstrap((x, y), lambda a, b, axis=-1: a.mean(axis=axis) - b.mean(axis=axis), paired=False,
                           vectorized=True, n_resamples=n_resamples, method="percentile",
                           rng=np.random.default_rng(stream(label + claim, metric, rng)))
    return _boot_finding(float(x.mean() - y.mean()), boot.bootstrap_distribution, direction, claim=claim,
                         label=label, unit=unit, metric=metric, n_points=len(x) + len(y),
                         detail={"n_x": len(x), "n_y": len(y)})
