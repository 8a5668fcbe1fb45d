"""Sweeps: run the unfinished jobs of a grid, locally in sequence or fanned out on Ray,
and read the store back as a DataFrame.

The driver alone writes the store, one row per job, as each job returns; a job
that raises is retried ``retries`` times, then written as failed with its
traceback, and the sweep goes on. Re-running skips finished rows and retries
failed ones.
"""
from __future__ import annotations

import gc
import json
import os
import traceback

from calib.errors import CalibError, check_choice
from calib.experiments.job import Job
from calib.experiments.run import failed_row, run_job
from calib.experiments.store import Store

EXECUTORS = ("local", "ray")
# driver environment a Ray worker needs to see the same caches and settings
RAY_ENV = ("CALIB_CACHE", "CALIB_SOURCES", "OMP_NUM_THREADS", "HF_HOME", "HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE",
           "TOKENIZERS_PARALLELISM")


def run_sweep(jobs: list[Job], store: Store | str, executor: str = "local", retries: int = 1,
              progress: bool = True, ray_address: str | None = None, ray_num_cpus: int | None = None) -> dict:
    """Run every job without a finished row in ``store``. Returns counts."""
    from tqdm.auto import tqdm
    check_choice("executor", executor, EXECUTORS)
    own = not isinstance(store, Store)
    store = Store(store) if own else store
    try:
        unique = list({j.key: j for j in jobs}.values())
        finished = store.done_keys()
        todo = [j for j in unique if j.key not in finished]
        counts = {"total": len(unique), "skipped": len(unique) - len(todo), "done": 0, "failed": 0}
        bar = tqdm(total=len(todo), desc=f"sweep ({executor})", unit="job", disable=not progress or not todo)

        def write(row):
            store.put(row)
            counts[row["status"]] += 1
            bar.set_postfix(done=counts["done"], failed=counts["failed"], refresh=False)
            bar.update(1)

        if todo:
            preflight(todo)
            (_local if executor == "local" else _ray)(todo, write, retries, ray_address, ray_num_cpus)
        bar.close()
        return counts
    finally:
        if own:
            store.close()


def preflight(jobs) -> None:
    """Check each model's architecture, read one document of each hub source the jobs use (their
    calibration sources, and Alpaca for the paper suite) and look up the tasks of each local task
    folder, so that an unprunable model, a missing network, local copy or task fails in one line
    before any job starts, not as one failed row per job."""
    from calib import data, evaluate
    from calib.models import model_config
    from calib.prune.sequential import check_architecture
    for model in sorted({j.model for j in jobs}):
        try:
            check_architecture(model_config(model))
        except CalibError as e:
            raise CalibError(f"model {model}: {e}") from None
    names = {j.calibration["source"] for j in jobs} | {"alpaca" for j in jobs if j.suite["name"] == "paper"}
    for name in sorted(names & set(data.HUB_SOURCES)):
        data.load_texts(name, pool=1)
    folders = {}
    for j in jobs:
        if j.suite.get("include_path"):
            folders.setdefault(j.suite["include_path"], set()).update(j.suite["tasks"])
    for folder, tasks in sorted(folders.items()):
        evaluate._check_tasks(sorted(tasks), folder)


def _local(todo, write, retries, *_):
    for job in todo:
        for attempt in range(1, retries + 2):
            try:
                row = {**run_job(job), "attempts": attempt}
                break
            except Exception:  # OOM, NaN, bad data ...: record it, go on (KeyboardInterrupt stops)
                row = failed_row(job, traceback.format_exc(), attempt)
                _free()
        write(row)


def _free():
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


def _ray_job(job: Job) -> dict:
    return run_job(job)


def _ray(todo, write, retries, address, num_cpus):
    import ray
    if not ray.is_initialized():
        env = {k: os.environ[k] for k in RAY_ENV if k in os.environ}
        kw = {} if address or os.environ.get("RAY_ADDRESS") else {"num_cpus": num_cpus}
        ray.init(address=address, runtime_env={"env_vars": env}, include_dashboard=False,
                 log_to_driver=False, **kw)
    gpus = ray.cluster_resources().get("GPU", 0)
    # retries are the driver's (max_retries=0), so an exception, a crashed worker and an
    # OOM kill are all handled alike and the traceback reaches the store
    task = ray.remote(_ray_job).options(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=0)
    pending = {task.remote(job): (job, 1) for job in todo}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        job, attempt = pending.pop(ready[0])
        try:
            row = {**ray.get(ready[0]), "attempts": attempt}
        except Exception as e:
            if attempt <= retries:
                pending[task.remote(job)] = (job, attempt + 1)
                continue
            row = failed_row(job, f"{type(e).__name__}: {e}", attempt)
        write(row)


# ----------------------------------------------------------------- results
def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flat(v, name + "."))
        else:
            out[name] = json.dumps(v) if isinstance(v, (list, dict)) else v
    return out


def results_frame(store: Store | str, over=("calibration.seed",), status: str = "done",
                  metrics: list[str] | None = None, group_by: list[str] | None = None):
    """The store as a DataFrame. With ``over`` (default: the calibration seed), rows
    are grouped by every other parameter (or by ``group_by``) and each metric becomes
    ``<metric>_mean`` and ``<metric>_std`` with ``n`` rows; ``over=None`` gives one line
    per row with parameters, hashes, metrics, ``dense_*`` metrics and timings."""
    import pandas as pd
    own = not isinstance(store, Store)
    store = Store(store) if own else store
    try:
        rows = store.rows(status=None if status == "all" else status)
    finally:
        if own:
            store.close()
    lines, params, mets = [], set(), []
    for r in rows:
        p = _flat(r["params"])
        m = {k: v for k, v in (r["metrics"] or {}).items() if metrics is None or k in metrics}
        params.update(p)
        mets += [k for k in m if k not in mets]
        lines.append({"key": r["key"], "status": r["status"], **p, **m,
                      **{f"dense_{k}": v for k, v in (r["dense"] or {}).items() if metrics is None or k in metrics},
                      "calib_hash": r["calib_hash"], "mask_hash": r["mask_hash"],
                      **{f"time_{k}": v for k, v in (r["timings"] or {}).items()},
                      "error": ((r["error"] or "").strip().splitlines() or [None])[-1]})
    df = pd.DataFrame(lines)
    if over is None or df.empty:
        return df
    over = [over] if isinstance(over, str) else list(over)
    keys = list(group_by) if group_by else [c for c in sorted(params) if c not in over]
    bad = [c for c in keys + over if c not in df.columns]
    if bad:
        raise CalibError(f"unknown parameter {bad[0]!r}; valid: {', '.join(sorted(params))}")
    g = df.groupby(keys, dropna=False, sort=True)
    agg = g[mets].agg(["mean", "std"])
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    agg.insert(0, "n", g.size())
    return agg.reset_index()


def pretty(df, digits: int = 4):
    """Drop constant parameter columns and show metrics as 'mean ± std'."""
    import pandas as pd
    out = pd.DataFrame()
    for c in df.columns:
        if c.endswith("_mean"):
            m, s = df[c], df[c[:-5] + "_std"]
            out[c[:-5]] = [f"{a:.{digits}g} ± {b:.2g}" if pd.notna(b) else f"{a:.{digits}g}" for a, b in zip(m, s)]
        elif not c.endswith("_std") and (c == "n" or df[c].astype(str).nunique() > 1 or len(df) == 1):
            out[c] = df[c]
    return out
