"""The statistics behind each chapter's verdict.

This module owns the `Finding` result type and the tests that produce one: paired
contrasts with a two-level (calibration seed x evaluation item) bootstrap CI, the
permutation test of a range across sources, a Spearman correlation, and the power
analysis that predicts a contrast's CI half-width for given numbers of seeds and items.

Every function takes the tidy frame: one line per job, parameter columns (method,
source, seed, ...), ``avg`` (points) and ``items``, a dict task -> 0/1 array of
per-item correctness, in the same item order for every job. ``avg`` weights tasks
equally, so every statistic here does too. Pure functions; no plotting, no notebook code.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from calib.errors import CalibError, check_choice

OUTCOMES = ("reproduced", "contradicted", "inconclusive", "partly")
LEVEL = 0.95          # every CI here is a 95% interval
ALPHA = 0.05          # the permutation tests' threshold
N_RESAMPLES = 9999    # bootstrap resamples and permutations
RNG = 0               # default seed: verdicts are deterministic
RESAMPLE = ("seeds", "items")
# the tidy frame's parameter columns, named when jobs cannot be paired
PARAMETERS = ("method", "source", "role", "setting", "sparsity", "pattern", "synthetic", "prefix_len",
              "filter_rate", "generator", "nsamples", "model")
_CELLS_PER_BATCH = 4_000_000   # resamples x items per vectorised call: bounds memory (~32 MB per array)


# ------------------------------------------------------------------ the result
@dataclass(frozen=True)
class Finding:
    """One verdict: an outcome with its effect, 95% CI and n.

    ``n_seeds`` is an int when the arms share their seeds (paired), else (n_a, n_b).
    ``p``/``null95`` are set by tests against a null (`range_test`), ``parts`` by `combine`;
    ``detail`` holds a test's further numbers (they go into `as_dict`)."""
    outcome: str
    effect: float | None = None
    ci: tuple[float, float] | None = None
    n_seeds: int | tuple[int, int] | None = None
    n_items: int | None = None
    claim: str = ""
    direction: int = 1
    label: str = ""
    measure: str = ""           # printed before the effect: "range", "rho", ...
    unit: str = "points"
    p: float | None = None
    null95: float | None = None
    n_points: int | None = None  # correlations: how many (x, y) pairs
    parts: tuple[Finding, ...] = ()
    detail: dict = field(default_factory=dict)

    def __post_init__(self):
        check_choice("outcome", self.outcome, OUTCOMES)

    @property
    def half_width(self) -> float | None:
        return None if self.ci is None else (self.ci[1] - self.ci[0]) / 2

    def numbers(self) -> str:
        """'+1.42 points [+0.95, +1.90]'."""
        if self.effect is None:
            return ""
        unit = f" {self.unit}" if self.unit else ""
        head = f"{self.measure} " if self.measure else ""
        sign = "" if self.measure == "range" else "+"   # a range is never negative
        return f"{head}{self.effect:{sign}.2f}{unit} [{self.ci[0]:{sign}.2f}, {self.ci[1]:{sign}.2f}]"

    def n_text(self) -> str:
        if self.n_points is not None:
            return f"{self.n_points} points"
        seeds = self.n_seeds if isinstance(self.n_seeds, int) else "{} vs {}".format(*self.n_seeds)
        return f"{seeds} seeds x {self.n_items:,} items"

    def text(self) -> str:
        """One line: 'reproduced: +1.42 points [+0.95, +1.90], n = 10 seeds x 3,500 items'."""
        if self.parts:
            inner = "; ".join(f"{p.label or i + 1}: {p.outcome} {p.numbers()}".rstrip()
                              for i, p in enumerate(self.parts))
            return f"{self.outcome}: {inner}"
        out = f"{self.outcome}: {self.numbers()}, n = {self.n_text()}"
        if self.p is not None:
            out += f", p = {self.p:.3f}"
        if self.null95 is not None:
            out += f" (noise-only null: 95th percentile {self.null95:.2f})"
        if self.outcome == "inconclusive":
            if self.null95 is not None:
                out += "; a range below that could not be told from noise"
            else:
                unit = f" {self.unit}" if self.unit else ""
                out += (f"; effects smaller than about ±{self.half_width:.2f}{unit} "
                        "could not be told from zero")
        return out

    def as_dict(self) -> dict:
        """A flat row for a table."""
        n = self.n_seeds if not isinstance(self.n_seeds, tuple) else "{} vs {}".format(*self.n_seeds)
        ci = self.ci or (None, None)
        return {"label": self.label, "claim": self.claim, "outcome": self.outcome, "effect": self.effect,
                "ci_low": ci[0], "ci_high": ci[1], "half_width": self.half_width, "n_seeds": n,
                "n_items": self.n_items, "n_points": self.n_points, "p": self.p, "null95": self.null95,
                **self.detail, "text": self.text()}


def outcome_of(ci: tuple[float, float], direction: int = 1) -> str:
    """reproduced / contradicted when the CI excludes zero on the paper's side / the other side."""
    check_choice("direction", direction, (1, -1))
    lo, hi = ci
    if lo > 0 or hi < 0:
        return "reproduced" if (lo > 0) == (direction > 0) else "contradicted"
    return "inconclusive"


def combine(parts, claim: str = "", label: str = "") -> Finding:
    """A multi-part finding: 'partly' when its parts' outcomes differ, else their common outcome."""
    parts = tuple(parts)
    if not parts:
        raise CalibError("combine needs at least one part")
    kinds = {p.outcome for p in parts}
    return Finding(outcome=kinds.pop() if len(kinds) == 1 else "partly", claim=claim, label=label,
                   parts=parts)


# ------------------------------------------------------------------ the frame
def _need(df, columns) -> None:
    if not isinstance(df, pd.DataFrame):
        raise CalibError(f"expected a pandas DataFrame (the tidy frame), got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise CalibError(f"the frame has no column {', '.join(map(repr, missing))}; "
                         f"its columns: {', '.join(map(str, df.columns))}")


def _describe(row) -> str:
    keys = [k for k in ("method", "source", "setting", "synthetic", "seed") if k in row.index]
    return ", ".join(f"{k}={row[k]!r}" for k in keys) or f"row {row.name!r}"


def item_matrix(df) -> tuple[np.ndarray, dict[str, int]]:
    """The jobs' per-item correctness as one (jobs x items) float array, tasks side by side,
    and the item count per task. Raises CalibError unless every job has the same tasks and counts."""
    _need(df, ["items"])
    if len(df) == 0:
        raise CalibError("the frame has no jobs")
    first = df.iloc[0]
    if not isinstance(first["items"], dict) or not first["items"]:
        raise CalibError(f"items of job ({_describe(first)}) must be a non-empty dict task -> 0/1 array")
    sizes = {t: int(np.size(v)) for t, v in first["items"].items()}
    rows = []
    for _, r in df.iterrows():
        its = r["items"]
        if not isinstance(its, dict) or set(its) != set(sizes):
            got = sorted(its) if isinstance(its, dict) else type(its).__name__
            raise CalibError(f"job ({_describe(r)}) has items for {got}; the first job has {sorted(sizes)}")
        for t, n in sizes.items():
            v = np.asarray(its[t], dtype=float)
            if v.ndim != 1 or v.size != n:
                raise CalibError(f"job ({_describe(r)}) has {v.size} items for task {t!r} (shape {v.shape}); "
                                 f"the first job has {n}: every job must be scored on the same items")
            if not np.isfinite(v).all():
                raise CalibError(f"job ({_describe(r)}) has non-finite item scores for task {t!r}")
        rows.append(np.concatenate([np.asarray(its[t], dtype=float) for t in sizes]))
    x = np.vstack(rows)
    if "avg" in df.columns:   # the effect must equal the difference of the avg the tables show
        avg = x @ _task_weights(sizes) * 100
        given = df["avg"].to_numpy(dtype=float)
        bad = np.flatnonzero(np.isfinite(given) & (np.abs(avg - given) > 1e-6))
        if bad.size:
            r = df.iloc[bad[0]]
            raise CalibError(f"job ({_describe(r)}) has avg {given[bad[0]]:.6f} but its items average "
                             f"{avg[bad[0]]:.6f} (mean over tasks of item accuracy x 100)")
    return x, sizes


def _task_weights(sizes: dict[str, int]) -> np.ndarray:
    """Per item: 1 / (tasks x items in its task), so a job's mean is the mean over tasks of task accuracy."""
    return np.concatenate([np.full(n, 1 / (len(sizes) * n)) for n in sizes.values()])


def _key(v):
    """NaN -> None, so that missing values (magnitude's seed, an original set's prefix_len) compare equal."""
    return None if pd.isna(v) else v


def _cells(df, arm: str, values, by, seed_column: str) -> tuple[dict, list, dict[str, int]]:
    """{(stratum, value): (seeds, points matrix seeds x items)} for the jobs of ``values``,
    the strata in order of appearance, and the task sizes."""
    by = list(by)
    _need(df, [arm, seed_column, "items", *by])
    present = list(pd.unique(df[arm]))
    for v in values:
        check_choice(f"{arm} value", v, present)
    sub = df[df[arm].isin(values)]
    x, sizes = item_matrix(sub)
    x *= 100   # points
    keys = [tuple(map(_key, r)) for r in sub[by].itertuples(index=False)] if by else [()] * len(sub)
    strata = list(dict.fromkeys(keys))
    arms = sub[arm].to_numpy()
    cells = {}
    for stratum in strata:
        for v in values:
            rows = [i for i, k in enumerate(keys) if k == stratum and arms[i] == v]
            where = f"{arm}={v!r}" + (f" at {dict(zip(by, stratum))}" if by else "")
            if not rows:
                raise CalibError(f"no job for {where}: every stratum of {by} needs a job for each of {values}")
            seeds = [_key(s) for s in sub[seed_column].iloc[rows]]   # plain values: pandas would keep NaN
            twice = [s for s in seeds if seeds.count(s) > 1]
            if twice:
                same = sub.iloc[[r for r, s in zip(rows, seeds) if s == twice[0]]]
                varying = [c for c in PARAMETERS if c in same and same[c].nunique(dropna=False) > 1]
                raise CalibError(f"several jobs for {where} and {seed_column}={twice[0]!r}; they differ in "
                                 f"{varying or 'no parameter column'}: filter the frame or pair on them with by=")
            order = sorted(range(len(rows)), key=lambda i: str(seeds[i]))
            cells[stratum, v] = (tuple(seeds[i] for i in order), x[[rows[i] for i in order]])
    return cells, strata, sizes


# ------------------------------------------------------------------ the two-level bootstrap
@dataclass
class _Design:
    """Blocks of rows (seeds x items, in points) whose per-block means the bootstrap resamples.
    Blocks in the same seed group share their seed draws (same seeds, resampled together)."""
    blocks: list[np.ndarray]
    group_of: list[int]
    group_sizes: list[int]
    sizes: dict[str, int]

    def __post_init__(self):
        xall = np.vstack(self.blocks)
        ends = np.cumsum(list(self.sizes.values()))
        self._per_task = [np.ascontiguousarray(xall[:, e - n:e].T) for e, n in zip(ends, self.sizes.values())]
        self._starts = np.cumsum([0] + [blk.shape[0] for blk in self.blocks[:-1]])

    def means(self, seed_w: list[np.ndarray], item_w: list[np.ndarray]) -> np.ndarray:
        """(B, blocks) weighted means; seed_w per group (B|1, S_g), item_w per task (B|1, N_t)."""
        z = sum(w @ xt for w, xt in zip(item_w, self._per_task)) / len(self.sizes)   # (B, rows)
        b = max(z.shape[0], *(w.shape[0] for w in seed_w))
        rows = np.concatenate([np.broadcast_to(seed_w[g], (b, blk.shape[0]))
                               for g, blk in zip(self.group_of, self.blocks)], axis=1)
        return np.add.reduceat(z * rows, self._starts, axis=1)

    def bootstrap(self, reduce, resample, n_resamples: int, rng, method: str = "percentile"):
        """Point estimate, 95% CI and bootstrap distribution of ``reduce(means)`` (shape (..., B))
        by scipy.stats.bootstrap over several independent samples: the seed indices of each group
        with 2+ seeds, and the item indices of each task (items stratified by task, shared by all blocks)."""
        resample = tuple(resample)
        for r in resample:
            check_choice("resample level", r, RESAMPLE)
        seeded = [g for g, n in enumerate(self.group_sizes) if "seeds" in resample and n > 1]
        data = [np.arange(self.group_sizes[g]) for g in seeded]
        if "items" in resample:
            if min(self.sizes.values()) < 2:
                raise CalibError(f"resampling items needs 2+ items per task; got {self.sizes}")
            data += [np.arange(n) for n in self.sizes.values()]
        if not data:
            raise CalibError(f"nothing to resample: resample={resample} and every arm has a single seed")
        uniform_s = [np.full((1, n), 1 / n) for n in self.group_sizes]
        uniform_i = [np.full((1, n), 1 / n) for n in self.sizes.values()]
        estimate = reduce(self.means(uniform_s, uniform_i))[..., 0]

        def statistic(*idx, axis=-1):
            flat = np.ndim(idx[0]) == 1   # scipy may also ask for the statistic of the data itself
            idx = [np.atleast_2d(i) for i in idx]
            seed_w, item_w = list(uniform_s), list(uniform_i)
            for g, i in zip(seeded, idx):
                seed_w[g] = _counts(i, self.group_sizes[g])
            if "items" in resample:
                item_w = [_counts(i, n) for i, n in zip(idx[len(seeded):], self.sizes.values())]
            out = reduce(self.means(seed_w, item_w))
            return out[..., 0] if flat else out

        batch = max(1, min(n_resamples, _CELLS_PER_BATCH // sum(self.sizes.values())))
        res = stats.bootstrap(data, statistic, n_resamples=n_resamples, batch=batch, vectorized=True,
                              paired=False, confidence_level=LEVEL, method=method,
                              rng=np.random.default_rng(rng))
        ci = res.confidence_interval
        return estimate, ci.low, ci.high, res.bootstrap_distribution


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """Resampled indices (B, draws) -> weights (B, n): how often each unit was drawn / draws."""
    b = idx.shape[0]
    flat = (idx + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n) / idx.shape[1]


def _contrast_design(df, arm, a, b, by, weights, seed_column):
    """Group the cells by seed set and pre-combine each group into one signed [seed, item]
    difference matrix. Returns the design, whether it is paired, and (n_a, n_b) seeds."""
    if a == b:
        raise CalibError(f"a and b are the same {arm} value {a!r}")
    cells, strata, sizes = _cells(df, arm, [a, b], by, seed_column)
    keys = [s[0] if len(s) == 1 else s for s in strata]
    if weights is None:
        w = {s: 1 / len(strata) for s in strata}
    else:
        for k in weights:
            check_choice(f"stratum of {list(by)}", k, keys)
        w = {s: float(weights.get(k, 0.0)) for s, k in zip(strata, keys)}
    groups: dict[tuple, np.ndarray] = {}
    arms_in: dict[tuple, set] = {}
    for (stratum, v), (seeds, x) in cells.items():
        if w[stratum] == 0:
            continue
        sign = 1.0 if v == a else -1.0
        groups[seeds] = groups.get(seeds, 0.0) + sign * w[stratum] * x
        arms_in.setdefault(seeds, set()).add(v)
    if not groups:
        raise CalibError("every stratum has weight 0")
    paired = all(len(s) == 2 for s in arms_in.values())
    n_seeds = [len({s for seeds, arms in arms_in.items() if v in arms for s in seeds}) for v in (a, b)]
    design = _Design(blocks=list(groups.values()), group_of=list(range(len(groups))),
                     group_sizes=[len(s) for s in groups], sizes=sizes)
    return design, paired, (n_seeds[0] if paired else tuple(n_seeds))


def paired_contrast(df, arm: str, a, b, *, by=(), weights: dict | None = None, seed_column: str = "seed",
                    claim: str = "", direction: int = 1, label: str = "", resample=RESAMPLE,
                    n_resamples: int = N_RESAMPLES, rng=RNG) -> Finding:
    """Mean accuracy of ``arm == a`` minus ``arm == b`` in points, with a two-level bootstrap 95% CI.

    Jobs are paired by ``seed_column`` within each stratum of ``by`` (e.g. ["method"]); the
    effect is the mean over strata of a - b, or the ``weights``-weighted sum (stratum value ->
    weight; strata left out get 0), e.g. "self-generated minus original, averaged over sources".

    The CI resamples calibration seeds and evaluation items (items per task, with the same
    indices in both arms). Resampling seeds alone treats the item set as fixed: an arm that
    happens to win a few of, say, 20 items per task in every seed then gets a tight CI that
    excludes zero, although another draw of items could reverse it. Crossed designs have no
    exactly unbiased resampling scheme; this one (Owen 2007, "the pigeonhole bootstrap") counts
    the seed x item interaction's variance three times instead of once (`Components.half_width`
    has the expected variance), so it errs on the wide side.

    Arms with the same seeds are resampled seed by seed together (paired); otherwise each arm's
    seeds are resampled independently, and a single-seed arm (magnitude pruning) stays fixed.
    """
    design, paired, n_seeds = _contrast_design(df, arm, a, b, by, weights, seed_column)
    effect, lo, hi, _ = design.bootstrap(lambda m: m.sum(axis=1), resample, n_resamples, rng)
    ci = (float(lo), float(hi))
    return Finding(outcome=outcome_of(ci, direction), effect=float(effect), ci=ci, n_seeds=n_seeds,
                   n_items=sum(design.sizes.values()), claim=claim, direction=direction, label=label)


# ------------------------------------------------------------------ ranges across sources
def range_test(df, group: str = "source", *, by=(), seed_column: str = "seed", claim: str = "",
               label: str = "", n_resamples: int = N_RESAMPLES, rng=RNG) -> Finding:
    """Is the range (max - min) of the ``group`` means larger than noise alone makes it?

    A range is never negative, so a CI excluding zero says nothing; it is tested against two
    nulls, and reproduced only when it beats both (p < 0.05), else inconclusive:
    - seed noise: the group labels are exchangeable within each seed (scipy.stats.permutation_test,
      permutation_type="samples"). This null is conditional on the evaluation items: sources that
      merely win different items, by chance, of a small item set would pass it.
    - seed and item noise: the two-level bootstrap with each group's means recentred on their
      common mean (a bootstrap test with the null imposed), so item sampling counts too.
    With ``by`` the statistic is the mean over strata of the range. The CI is the two-level
    bootstrap CI of the range (descriptive: a range is biased upwards by noise)."""
    _need(df, [group])
    values = list(pd.unique(df[group]))
    if len(values) < 2:
        raise CalibError(f"a range needs 2+ values of {group!r}; the frame has {values}")
    cells, strata, sizes = _cells(df, group, values, by, seed_column)
    sets = {}
    for stratum in strata:
        seeds = {cells[stratum, v][0] for v in values}
        if len(seeds) > 1:
            raise CalibError(f"the values of {group!r} at {dict(zip(by, stratum)) or 'all'} have different "
                             f"seeds {sorted(map(str, seeds))}: the within-seed null needs the same seeds")
        sets[stratum] = seeds.pop()
    if all(len(s) < 2 for s in sets.values()):
        raise CalibError("a range test needs 2+ seeds")
    k, w = len(values), _task_weights(sizes)
    # seed null: job means per group value; observations = (stratum, seed), stratum by stratum
    samples = [np.concatenate([cells[s, v][1] @ w for s in strata]) for v in values]
    bounds = np.cumsum([0] + [len(sets[s]) for s in strata])

    def mean_range(*xs, axis=-1):
        x = np.stack(xs, axis=-2)                                   # (..., groups, obs)
        per = np.stack([x[..., lo:hi].mean(-1) for lo, hi in zip(bounds[:-1], bounds[1:])], -1)
        return np.ptp(per, axis=-2).mean(-1)

    perm = stats.permutation_test(samples, mean_range, permutation_type="samples", vectorized=True,
                                  n_resamples=n_resamples, alternative="greater",
                                  rng=np.random.default_rng(rng))
    # two-level: one block per (stratum, value); the null shifts each block's bootstrap means by
    # its observed deviation from its stratum's mean, which recentres the data on the null
    gid = {s: i for i, s in enumerate(dict.fromkeys(sets.values()))}
    blocks = [cells[s, v][1] for s in strata for v in values]
    design = _Design(blocks=blocks, group_of=[gid[sets[s]] for s in strata for _ in values],
                     group_sizes=[len(s) for s in gid], sizes=sizes)
    m = np.array([blk.mean(0) @ w for blk in blocks]).reshape(-1, k)
    shift = (m - m.mean(1, keepdims=True)).ravel()

    def ranges(means):                                              # (B, blocks) -> (2, B)
        b = len(means)
        return np.stack([np.ptp(means.reshape(b, -1, k), axis=2).mean(1),
                         np.ptp((means - shift).reshape(b, -1, k), axis=2).mean(1)])

    est, lo, hi, dist = design.bootstrap(ranges, RESAMPLE, n_resamples, rng)
    effect, null = float(est[0]), dist[1]
    # like permutation_test's p: the share of null replicates at or above the observation, counting it
    detail = {"p_seeds": float(perm.pvalue), "p_items": float((1 + np.sum(null >= effect - 1e-12)) / (1 + len(null))),
              "null95_seeds": float(np.percentile(perm.null_distribution, 95)),
              "null95_items": float(np.percentile(null, 95))}
    p = max(detail["p_seeds"], detail["p_items"])
    return Finding(outcome="reproduced" if p < ALPHA else "inconclusive", effect=effect,
                   ci=(float(lo[0]), float(hi[0])), n_seeds=max(len(s) for s in sets.values()),
                   n_items=sum(sizes.values()), claim=claim, label=label, measure="range", p=p,
                   null95=max(detail["null95_seeds"], detail["null95_items"]), detail=detail)


def range_trend(df, a, b, *, x: str = "sparsity", low=None, high=None, group: str = "source",
                seed_column: str = "seed", claim: str = "", label: str = "", **kw) -> Finding:
    """Does the gap between ``group`` values a and b grow from ``x == low`` to ``x == high``
    (default: the smallest and largest x)? A difference-in-differences, (a - b at high) minus
    (a - b at low), with the two-level bootstrap CI of `paired_contrast`.

    Why not the difference of the ranges themselves: a range's upward bias grows with the noise,
    and the noise grows with sparsity, so ranges "grow" even where the sources' true spread does
    not. A fixed pair named in advance (the paper's best and worst source) has no such bias."""
    _need(df, [x])
    levels = sorted(pd.unique(df[x]))
    low = levels[0] if low is None else low
    high = levels[-1] if high is None else high
    check_choice(x, low, levels)
    check_choice(x, high, levels)
    if low == high:
        raise CalibError(f"range_trend needs two different levels of {x!r}; got {low!r} twice")
    return paired_contrast(df[df[x].isin([low, high])], group, a, b, by=[x], weights={high: 1.0, low: -1.0},
                           seed_column=seed_column, claim=claim, label=label, **kw)


# ------------------------------------------------------------------ correlations
def _spearman(x, y, axis=-1):
    """Spearman's rho along ``axis`` (vectorised): Pearson's r of the ranks."""
    rx, ry = stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis)
    return stats.pearsonr(rx, ry, axis=axis).statistic


def correlation(x, y, *, direction: int = 1, claim: str = "", label: str = "",
                n_resamples: int = N_RESAMPLES, rng=RNG) -> Finding:
    """Spearman's rho of x and y with a paired bootstrap 95% CI (outcome by the CI) and a
    permutation p (scipy.stats.permutation_test, permutation_type="pairings")."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise CalibError(f"x and y must be 1-D and of one length; got shapes {x.shape} and {y.shape}")
    if len(x) < 5 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise CalibError(f"a correlation needs 5+ finite (x, y) pairs; got {len(x)}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise CalibError("x or y is constant: Spearman's rho is undefined")
    rho = float(stats.spearmanr(x, y).statistic)
    boot = stats.bootstrap((x, y), _spearman, paired=True, vectorized=True, n_resamples=n_resamples,
                           confidence_level=LEVEL, method="percentile", rng=np.random.default_rng(rng))
    perm = stats.permutation_test((x, y), _spearman, permutation_type="pairings", vectorized=True,
                                  n_resamples=n_resamples, rng=np.random.default_rng(rng))
    ci = (float(boot.confidence_interval.low), float(boot.confidence_interval.high))
    return Finding(outcome=outcome_of(ci, direction), effect=rho, ci=ci, claim=claim, direction=direction,
                   label=label, measure="rho", unit="", p=float(perm.pvalue), n_points=len(x))


def mean_difference(x, y, *, direction: int = 1, claim: str = "", label: str = "", unit: str = "",
                    n_resamples: int = N_RESAMPLES, rng=RNG) -> Finding:
    """mean(x) - mean(y) of two independent samples (e.g. per-window scores of two corpora),
    with a bootstrap 95% CI that resamples each sample on its own (scipy.stats.bootstrap)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) < 2 or len(y) < 2:
        raise CalibError(f"a mean difference needs 2+ finite values per sample; got {len(x)} and {len(y)}")
    boot = stats.bootstrap((x, y), lambda a, b, axis=-1: a.mean(axis=axis) - b.mean(axis=axis), paired=False,
                           vectorized=True, n_resamples=n_resamples, confidence_level=LEVEL, method="percentile",
                           rng=np.random.default_rng(rng))
    ci = (float(boot.confidence_interval.low), float(boot.confidence_interval.high))
    return Finding(outcome=outcome_of(ci, direction), effect=float(x.mean() - y.mean()), ci=ci, claim=claim,
                   direction=direction, label=label, unit=unit, n_points=len(x) + len(y),
                   detail={"n_x": len(x), "n_y": len(y)})


# ------------------------------------------------------------------ power analysis
@dataclass(frozen=True)
class Components:
    """Variance components (points²) of a paired [seed, item] difference, per task for items:
    seed: between calibration seeds (task-weighted); item: between items (persistent);
    residual: seed x item interaction (an item flips in some seeds only)."""
    seed: float
    item: dict[str, float]
    residual: dict[str, float]
    n_seeds: int
    n_items: dict[str, int]

    def half_width(self, seeds: int, items: int | dict | None = None, sampling: bool = False) -> float:
        """Expected 95% half-width of `paired_contrast`'s two-level bootstrap CI with ``seeds``
        seeds and ``items`` items per task (an int for every task; default: the pilot's).
        ``sampling=True``: the half-width the true sampling variance would give instead (the
        bootstrap counts the interaction three times, so it is wider)."""
        if seeds < 2:
            raise CalibError(f"a CI over seeds needs 2+ seeds; got {seeds}")
        items = self.n_items if items is None else items
        n = {t: items if isinstance(items, int) else items[t] for t in self.n_items}
        w2, s = 1 / len(n) ** 2, seeds
        if sampling:
            var = self.seed / s + sum(w2 * (self.item[t] + self.residual[t] / s) / n[t] for t in n)
        else:   # the expected variance of the bootstrap's seed, item and interaction terms
            var = (s - 1) / s * (self.seed + sum(w2 * self.residual[t] / n[t] for t in n)) / s
            for t in n:
                var += w2 * (n[t] - 1) / n[t] * (self.item[t] + self.residual[t] / s) / n[t]
                var += w2 * (s - 1) * (n[t] - 1) / (s * n[t]) * self.residual[t] / (s * n[t])
        return float(stats.norm.ppf(0.5 + LEVEL / 2) * np.sqrt(var))

    def seeds_needed(self, target: float = 0.5, items: int | dict | None = None, most: int = 1000) -> int | None:
        """The fewest seeds whose predicted half-width is <= target, or None within ``most``."""
        return next((s for s in range(2, most + 1) if self.half_width(s, items) <= target), None)


def variance_components(df, arm: str, a, b, *, by=(), weights: dict | None = None,
                        seed_column: str = "seed") -> Components:
    """Method-of-moments variance components of the paired contrast a - b from a pilot frame
    (a two-way seed x item decomposition per task). Needs paired arms with 2+ seeds and items."""
    design, paired, _ = _contrast_design(df, arm, a, b, by, weights, seed_column)
    if not paired or len(design.blocks) != 1 or design.group_sizes[0] < 2:
        raise CalibError("a power analysis needs a paired pilot: both arms with the same 2+ seeds")
    d, start = design.blocks[0], 0
    s, tw = d.shape[0], 1 / len(design.sizes)
    row, item, resid = np.zeros(s), {}, {}
    for t, n in design.sizes.items():
        dt = d[:, start:start + n]
        start += n
        if n < 2:
            raise CalibError(f"a power analysis needs 2+ items per task; task {t!r} has {n}")
        r, c, m = dt.mean(1), dt.mean(0), dt.mean()
        e = dt - r[:, None] - c[None, :] + m
        resid[t] = float((e ** 2).mean() * s * n / ((s - 1) * (n - 1)))
        item[t] = max(0.0, float(((c - m) ** 2).mean() * n / (n - 1) - resid[t] / s))
        row += tw * r
    seed = float(((row - row.mean()) ** 2).mean() * s / (s - 1)
                 - sum(tw ** 2 * resid[t] / n for t, n in design.sizes.items()))
    return Components(seed=max(0.0, seed), item=item, residual=resid, n_seeds=s, n_items=dict(design.sizes))
