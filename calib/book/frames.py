"""From grids to tidy frames: run a grid's missing jobs into the profile's store, and read
its rows back as one line per job; the summaries and styled tables the chapters print.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from calib.book.profiles import role

if TYPE_CHECKING:
    import pandas as pd

@contextlib.contextmanager
def sweep(jobs, s: dict, progress: bool):
    """Run the jobs' missing rows into the profile's store; yields (store, summary)."""
    from calib.experiments import Store
    from calib.experiments import run_sweep
    Path(s["store"]).parent.mkdir(parents=True, exist_ok=True)
    kw, saved = {}, os.environ.get("OMP_NUM_THREADS")
    if s["executor"] == "ray":
        # one thread per worker, as many workers as cores: small models scale badly over
        # threads. Ray hands OMP_NUM_THREADS to its workers; this process keeps its own.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        kw["ray_num_cpus"] = os.cpu_count()
    try:
        with Store(s["store"]) as store:
            summary = run_sweep(jobs, store, executor=s["executor"], progress=progress, **kw)
            yield store, summary
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved


def run(grid: dict, s: dict, progress: bool = False):
    """Run the grid's missing jobs into the profile's store; its rows as a tidy frame."""
    from calib.experiments import expand_grid
    jobs = expand_grid(grid)
    with sweep(jobs, s, progress) as (store, summary):
        if summary["failed"]:
            failed = [r for r in store.rows(status="failed") if r["key"] in {j.key for j in jobs}]
            raise RuntimeError(f"{summary['failed']} of {summary['total']} jobs failed; first error:\n"
                               f"{failed[0]['error'] if failed else '?'}")
        return tidy(store, jobs)


def tidy(store, jobs) -> "pd.DataFrame":
    """One line per job of ``jobs`` with its parameters and metrics under short names:
    method, source, role, setting ('60%' or '2:4'), seed, nsamples, synthetic, prefix_len,
    filter_rate, generator, avg, alpaca_ppl, heldout_nll, <task> accuracies, dense_avg,
    calib_hash, and ``items``: task -> 0/1 array of per-item correctness (the verdicts' input)."""
    import pandas as pd

    from calib.evaluate import decode_records
    keys = {j.key: j for j in jobs}
    lines = []
    for r in store.rows(status="done"):
        j = keys.get(r["key"])
        if j is None:
            continue
        syn = j.synthetic or {}
        m = r["metrics"]
        line = {"method": j.method, "source": j.calibration["source"], "role": role(j.calibration["source"]),
                "sparsity": j.sparsity, "pattern": j.pattern,
                "setting": j.pattern if j.pattern != "unstructured" else f"{round(j.sparsity * 100):d}%",
                "seed": j.calibration["seed"], "nsamples": j.calibration["nsamples"],
                "synthetic": bool(syn), "prefix_len": syn.get("prefix_len"), "filter_rate": syn.get("filter_rate"),
                "generator": syn.get("generator"), "model": j.model,
                "avg": 100 * m["avg"] if "avg" in m else None, "alpaca_ppl": m.get("alpaca_ppl"),
                "heldout_nll": m.get("heldout_nll"),
                "dense_avg": 100 * r["dense"]["avg"] if "avg" in (r["dense"] or {}) else None,
                "dense_alpaca_ppl": (r["dense"] or {}).get("alpaca_ppl"),
                "calib_hash": r["calib_hash"], "key": r["key"]}
        for k, v in m.items():
            if k.endswith("/acc"):
                line[task_name(k[:-4])] = 100 * v
        records = decode_records((r["info"] or {}).get("items"))
        line["items"] = {t: rec["acc"] for t, rec in records.items()} or None
        lines.append(line)
    return pd.DataFrame(lines)


def task_name(task: str) -> str:
    """world_boolq -> boolq: world tasks share the paper's column names."""
    return task[len("world_"):] if task.startswith("world_") else task


def mean_std(df, by: list[str], metric: str = "avg"):
    """Mean, std and n of ``metric`` per group (std over seeds)."""
    g = df.groupby(by, dropna=False, sort=False)[metric]
    return g.agg(["mean", "std", "count"]).rename(columns={"count": "n"}).reset_index()


def styled(mean, std=None, best: str = "max", axis: int = 0, digits: int = 2, lower=(), exclude=(), signed=()):
    """A pandas Styler: 'mean ± std' cells and the best value of each column (axis=0)
    or row (axis=1) in bold, as in the paper's tables. Columns in ``lower`` are better
    when lower (perplexity), ``exclude`` are never bold, ``signed`` print a sign (Δ)."""
    import numpy as np
    import pandas as pd
    shown = pd.DataFrame("", index=mean.index, columns=mean.columns, dtype=object)
    for j, c in enumerate(mean.columns):
        for i in range(len(mean)):
            v = mean.iloc[i, j]
            sd = std[c].iloc[i] if std is not None and c in std else None
            if pd.notna(v):
                txt = f"{v:+.{digits}f}" if c in signed else f"{v:.{digits}f}"
                shown.iloc[i, j] = txt + (f" ± {sd:.{digits}f}" if sd is not None and pd.notna(sd) else "")
    num = mean.apply(pd.to_numeric, errors="coerce").astype(float)
    bold = np.zeros(mean.shape, dtype=bool)
    if axis == 0:
        for j, c in enumerate(mean.columns):
            if c in exclude or num[c].isna().all():
                continue
            pick = num[c].min() if (c in lower) != (best == "min") else num[c].max()
            bold[:, j] = num[c].to_numpy() == pick
    else:
        pick = num.max(axis=1) if best == "max" else num.min(axis=1)
        bold = num.to_numpy() == pick.to_numpy()[:, None]
    css = pd.DataFrame(np.where(bold, "font-weight: bold", ""), index=mean.index, columns=mean.columns, dtype=object)
    return shown.style.apply(lambda _: css, axis=None)


def spread(df, by: list[str], metric: str = "avg"):
    """Per group of ``by``: the range (max - min) of per-source means, and the mean
    seed std - the paper's 'performance range', and the noise it must beat."""
    import pandas as pd
    per = mean_std(df, by + ["source"], metric)
    out = per.groupby(by, sort=False).agg(range=("mean", lambda x: x.max() - x.min()),
                                          best=("mean", "idxmax"), seed_std=("std", "mean"))
    out["best"] = per.loc[out["best"], "source"].values
    return out.reset_index() if len(by) else pd.DataFrame(out)
