"""Resampling designs: what varies between two runs of the book, and how to redraw it.

A job's score is a mean over evaluation items of a per-item metric (0/1 accuracy, or the gold
choice's normalised log-probability), tasks weighted equally, and it depends on two random draws:
* the calibration seed (which windows calibrate it; for self-generated data, which texts were
  generated from which prefixes too): jobs that share a seed share that draw;
* the evaluation items, which rest on knowledge-base facts: items about one fact succeed or fail
  together, across tasks, so the unit of independence is the fact (``records[...]["fact"]``; a
  real task's document; for held-out perplexity, the document itself), not the item.
``Items`` holds the item layout and the fact clusters; ``item_matrix`` reads the frame; ``cells``
groups a frame's jobs by arm and stratum; ``Design`` draws the mean of each block of jobs under
resampled seeds and facts. Pure numpy/pandas; the tests built on these are in ``inference``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from calib.errors import CalibError, check_choice

# the tidy frame's parameter columns, named when jobs cannot be paired
PARAMETERS = ("method", "source", "role", "setting", "sparsity", "pattern", "synthetic", "prefix_len",
              "filter_rate", "generator", "nsamples", "model")
SCALE = 100.0  # per-item metrics are shown x 100: accuracy in points, log-scores in nats x 100
_CELLS_PER_BATCH = 4_000_000   # resamples x items per vectorised call: bounds memory (~32 MB per array)


@dataclass(frozen=True)
class Items:
    """The evaluation items every job of a frame was scored on: their count per task (in the
    frame's order) and each item's fact, as a cluster code shared across tasks."""
    sizes: dict
    codes: np.ndarray        # (items,) int: the fact of each item
    n_facts: int

    @property
    def n_items(self) -> int:
        return int(sum(self.sizes.values()))

    @property
    def weights(self) -> np.ndarray:
        """Per item: 1 / (tasks x items of its task), so a mean is the mean over tasks of task means."""
        return np.concatenate([np.full(n, 1 / (len(self.sizes) * n)) for n in self.sizes.values()])

    def task_slices(self) -> list[slice]:
        ends = np.cumsum(list(self.sizes.values()))
        return [slice(int(e - n), int(e)) for e, n in zip(ends, self.sizes.values())]

    def only(self, task: str) -> tuple[Items, slice]:
        """The items of one task (facts recoded within it), and where they sit."""
        sl = dict(zip(self.sizes, self.task_slices()))[task]
        uniq, codes = np.unique(self.codes[sl], return_inverse=True)
        return Items({task: self.sizes[task]}, codes, len(uniq)), sl


def need(df, columns) -> None:
    if not isinstance(df, pd.DataFrame):
        raise CalibError(f"expected a pandas DataFrame (the tidy frame), got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise CalibError(f"the frame has no column {', '.join(map(repr, missing))}; "
                         f"its columns: {', '.join(map(str, df.columns))}")


def describe(row) -> str:
    keys = [k for k in ("method", "source", "setting", "synthetic", "seed") if k in row.index]
    return ", ".join(f"{k}={row[k]!r}" for k in keys) or f"row {row.name!r}"


def item_matrix(df, metric: str = "acc") -> tuple[np.ndarray, Items]:
    """The jobs' per-item ``metric`` x 100 as one (jobs x items) array, tasks side by side, and
    their ``Items``. Raises CalibError unless every job has the same tasks, items and facts, and
    the metric for every item (a row evaluated before calib kept it is named, never mixed in)."""
    need(df, ["records"])
    if len(df) == 0:
        raise CalibError("the frame has no jobs")
    first = df.iloc[0]
    if not isinstance(first["records"], dict) or not first["records"]:
        raise CalibError(f"records of job ({describe(first)}) must be a non-empty dict task -> per-item fields")
    # items counted on the metric itself: a held-out document's NLL has no accuracy beside it
    sizes = {t: int(np.size(r.get(metric, []))) for t, r in first["records"].items()}
    facts = None
    rows = []
    for _, r in df.iterrows():
        rec = r["records"]
        if not isinstance(rec, dict) or set(rec) != set(sizes):
            got = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
            raise CalibError(f"job ({describe(r)}) has records for {got}; the first job has {sorted(sizes)}")
        cols, fs = [], []
        for t, n in sizes.items():
            for field in (metric, "fact"):
                if field not in rec[t]:
                    raise CalibError(f"job ({describe(r)}) has no per-item {field!r} for task {t!r}: it was "
                                     f"evaluated before calib kept them; run it again (a new store, or --force)")
            v = np.asarray(rec[t][metric], dtype=float)
            if v.ndim != 1 or v.size != n:
                raise CalibError(f"job ({describe(r)}) has {v.size} items for task {t!r} (shape {v.shape}); "
                                 f"the first job has {n}: every job must be scored on the same items")
            if not np.isfinite(v).all():
                raise CalibError(f"job ({describe(r)}) has non-finite item scores for task {t!r}")
            cols.append(v)
            fs.append(np.asarray(rec[t]["fact"], dtype=object))
        f = np.concatenate(fs)
        if facts is None:
            facts = f
        elif not np.array_equal(f, facts):
            if np.array_equal(_first_hops(f), _first_hops(facts)):   # a row recorded with fewer hops
                facts = np.array(["|".join(dict.fromkeys(str(a).split("|") + str(b).split("|")))
                                  for a, b in zip(facts, f)], dtype=object)
                rows.append(np.concatenate(cols))
                continue
            raise CalibError(f"job ({describe(r)}) rests on other facts than the first job: every job must "
                             f"be scored on the same items")
        rows.append(np.concatenate(cols))
    x = np.vstack(rows) * SCALE
    codes, n_clusters = fact_clusters(facts)
    items = Items(sizes, codes, n_clusters)
    if metric == "acc" and "avg" in df.columns:   # the effect must equal the difference of the avg the tables show
        avg = x @ items.weights
        given = df["avg"].to_numpy(dtype=float)
        bad = np.flatnonzero(np.isfinite(given) & (np.abs(avg - given) > 1e-6))
        if bad.size:
            raise CalibError(f"job ({describe(df.iloc[bad[0]])}) has avg {given[bad[0]]:.6f} but its items "
                             f"average {avg[bad[0]]:.6f} (mean over tasks of item accuracy x 100)")
    return x, items


def _first_hops(facts: np.ndarray) -> np.ndarray:
    return np.array([str(f).split("|")[0] for f in facts], dtype=object)


def fact_clusters(facts) -> tuple[np.ndarray, int]:
    """Items -> clusters of connected facts, and their number. An item's ``fact`` may name several
    facts joined by "|" (a two-hop item rests on both hops); items sharing any fact fall in one
    cluster (a union-find over facts), so the bootstrap resamples every fact an item rests on with
    it. A single fact per item (rows evaluated before) gives one cluster per fact, as before."""
    parent: dict[str, str] = {}

    def root(a: str) -> str:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a
    hops = [str(f).split("|") for f in facts]
    for fs in hops:
        for other in fs[1:]:
            ra, rb = root(fs[0]), root(other)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(fs[0]) for fs in hops], dtype=object)
    uniq, codes = np.unique(roots, return_inverse=True)
    return codes.astype(np.int64), len(uniq)


def key(v):
    """NaN -> None, so that missing values (magnitude's seed, an original set's prefix_len) compare equal."""
    return None if pd.isna(v) else v


def job_matrix(df, column: str) -> tuple[np.ndarray, Items]:
    """A per-job measure (one column) as a (jobs x 1) matrix: one 'item', its own fact."""
    need(df, [column])
    x = df[column].to_numpy(dtype=float)[:, None]
    if not np.isfinite(x).all():
        raise CalibError(f"some jobs have no {column!r}")
    return x, Items({column: 1}, np.zeros(1, dtype=np.int64), 1)


def cells(df, arm: str, values, by, seed_column: str, metric: str = "acc",
          column: str | None = None) -> tuple[dict, list, Items]:
    """{(stratum, value): (seeds, matrix seeds x items)} for the jobs of ``values``, the strata in
    order of appearance, and the items (per-item ``metric``, or the per-job ``column``)."""
    by = list(by)
    need(df, [arm, seed_column, *by])
    present = list(pd.unique(df[arm]))
    for v in values:
        check_choice(f"{arm} value", v, present)
    sub = df[df[arm].isin(values)]
    x, items = item_matrix(sub, metric) if column is None else job_matrix(sub, column)
    keys = [tuple(map(key, r)) for r in sub[by].itertuples(index=False)] if by else [()] * len(sub)
    strata = list(dict.fromkeys(keys))
    arms = sub[arm].to_numpy()
    out = {}
    for stratum in strata:
        for v in values:
            rows = [i for i, k in enumerate(keys) if k == stratum and arms[i] == v]
            where = f"{arm}={v!r}" + (f" at {dict(zip(by, stratum))}" if by else "")
            if not rows:
                raise CalibError(f"no job for {where}: every stratum of {by} needs a job for each of {values}")
            seeds = [key(s) for s in sub[seed_column].iloc[rows]]   # plain values: pandas would keep NaN
            twice = [s for s in seeds if seeds.count(s) > 1]
            if twice:
                same = sub.iloc[[r for r, s in zip(rows, seeds) if s == twice[0]]]
                varying = [c for c in PARAMETERS if c in same and same[c].nunique(dropna=False) > 1]
                raise CalibError(f"several jobs for {where} and {seed_column}={twice[0]!r}; they differ in "
                                 f"{varying or 'no parameter column'}: filter the frame or pair on them with by=")
            order = sorted(range(len(rows)), key=lambda i: str(seeds[i]))
            out[stratum, v] = (tuple(seeds[i] for i in order), x[[rows[i] for i in order]])
    return out, strata, items


def counts(idx: np.ndarray, n: int) -> np.ndarray:
    """Resampled indices (B, draws) -> weights (B, n): how often each unit was drawn / draws."""
    b = idx.shape[0]
    flat = (idx + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n) / idx.shape[1]


@dataclass
class Design:
    """Blocks of job rows (seeds x items) whose means a bootstrap redraws. Blocks in one seed group
    share their seed draws (the same seeds, redrawn together); facts are redrawn jointly for every
    block and task, and a task's mean is then the fact-weighted mean of its items."""
    blocks: list[np.ndarray]
    group_of: list[int]
    group_sizes: list[int]
    items: Items

    def __post_init__(self):
        xall = np.vstack(self.blocks)
        self._per_task = [np.ascontiguousarray(xall[:, sl].T) for sl in self.items.task_slices()]
        self._codes = [self.items.codes[sl] for sl in self.items.task_slices()]
        self._starts = np.cumsum([0] + [blk.shape[0] for blk in self.blocks[:-1]])

    def means(self, seed_w: list[np.ndarray], fact_w: np.ndarray) -> np.ndarray:
        """(B, blocks) weighted means; seed_w per group (B|1, S_g), fact_w (B|1, facts)."""
        z = 0.0
        for codes, xt in zip(self._codes, self._per_task):
            w = fact_w[:, codes]
            den = w.sum(axis=1, keepdims=True)
            # a draw without any of a task's facts (only possible for a task resting on a handful)
            # keeps that task's plain mean
            z = z + np.where(den > 0, (w @ xt) / np.where(den > 0, den, 1), xt.mean(axis=0))
        z = z / len(self._codes)                                               # (B, rows)
        b = max(z.shape[0], *(w.shape[0] for w in seed_w))
        rows = np.concatenate([np.broadcast_to(seed_w[g], (b, blk.shape[0]))
                               for g, blk in zip(self.group_of, self.blocks)], axis=1)
        return np.add.reduceat(z * rows, self._starts, axis=1)

    def bootstrap(self, reduce, n_resamples: int, rng, seeds: bool = True):
        """Point estimate and bootstrap distribution of ``reduce(means)`` (shape (..., B)) by
        scipy.stats.bootstrap over independent samples: the seed indices of each group with 2+
        seeds (when ``seeds``), and the facts."""
        from scipy import stats
        seeded = [g for g, n in enumerate(self.group_sizes) if seeds and n > 1]
        if self.items.n_facts < 2:
            raise CalibError(f"resampling facts needs 2+ facts; the items rest on {self.items.n_facts}")
        data = [np.arange(self.group_sizes[g]) for g in seeded] + [np.arange(self.items.n_facts)]
        uniform_s = [np.full((1, n), 1 / n) for n in self.group_sizes]
        uniform_f = np.full((1, self.items.n_facts), 1 / self.items.n_facts)
        estimate = reduce(self.means(uniform_s, uniform_f))[..., 0]

        def statistic(*idx, axis=-1):
            flat = np.ndim(idx[0]) == 1   # scipy may also ask for the statistic of the data itself
            idx = [np.atleast_2d(i) for i in idx]
            seed_w = list(uniform_s)
            for g, i in zip(seeded, idx):
                seed_w[g] = counts(i, self.group_sizes[g])
            out = reduce(self.means(seed_w, counts(idx[-1], self.items.n_facts)))
            return out[..., 0] if flat else out

        batch = max(1, min(n_resamples, _CELLS_PER_BATCH // self.items.n_items))
        res = stats.bootstrap(data, statistic, n_resamples=n_resamples, batch=batch, vectorized=True,
                              paired=False, method="percentile", rng=np.random.default_rng(rng))
        return estimate, res.bootstrap_distribution
