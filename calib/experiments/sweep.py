"""Sweeps: run the unfinished jobs of a grid, locally in sequence or fanned out on Ray,
and read the store back as a DataFrame.

The driver alone writes the store, one row per job, as each job returns. Before
running a job the driver claims it in the store (a lease its heartbeat renews), so
two sweeps on one store split the work, and a killed sweep's claims are taken over.
A job that raises is retried ``retries`` times -- unless the error is a CalibError,
which fails the same way every time (a bad value, a pattern the width cannot
take) -- then written as failed with its traceback, and the sweep goes on.
Re-running skips finished rows and retries failed ones.
"""
from __future__ import annotations

import gc
import json
import os
import threading
import traceback

from calib.errors import CalibError, check_choice
from calib.experiments.job import Job
from calib.experiments.run import failed_row, run_job
from calib.experiments.store import Store
from calib.io import owner_id

EXECUTORS = ("local", "ray")
LEASE_S = 120.0  # a claim outlives a dead owner on another host by at most this; renewed every LEASE_S / 4
# driver environment a Ray worker needs to see the same caches and settings
RAY_ENV = ("CALIB_CACHE", "CALIB_SOURCES", "OMP_NUM_THREADS", "HF_HOME", "HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE",
           "TOKENIZERS_PARALLELISM")


def failure_reason(error: str | None) -> str:
    """The one-line reason of a failed row: the CalibError's message, or the last line
    of the traceback."""
    lines = [x for x in (error or "").strip().splitlines() if x.strip()]
    last = lines[-1].strip() if lines else "unknown error"
    return last.removeprefix("calib.errors.CalibError: ").removeprefix("CalibError: ")


def describe(job: Job) -> str:
    c = job.calibration
    return (f"{job.method} {job.pattern} {job.sparsity:g} {c['source']} n={c['nsamples']} seed={c['seed']}"
            f"{' synthetic' if job.synthetic else ''}")


def _deterministic(e: BaseException) -> bool:
    """A CalibError, also when Ray wraps it (RayTaskError keeps it as ``cause``)."""
    return isinstance(e, CalibError) or isinstance(getattr(e, "cause", None), CalibError)


class _Heartbeat:
    """Renews this sweep's leases from a thread with its own connection."""

    def __init__(self, path, owner: str, lease: float):
        self.path, self.owner, self.lease = path, owner, lease
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="calib-lease", daemon=True)

    def _run(self):
        store = Store(self.path)
        try:
            while not self.stop.wait(self.lease / 4):
                try:
                    store.renew(self.owner, self.lease)
                except Exception:  # a busy database: the next beat tries again
                    pass
        finally:
            store.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def run_sweep(jobs: list[Job], store: Store | str, executor: str = "local", retries: int = 1,
              progress: bool = True, ray_address: str | None = None, ray_num_cpus: int | None = None,
              lease: float = LEASE_S) -> dict:
    """Run every job without a finished row in ``store`` that no other live sweep has
    claimed. Returns counts of the rows this sweep wrote: ``done``, ``failed``; and
    ``total``, ``skipped`` (finished before), ``elsewhere`` (finished or still running
    in another sweep), ``lost`` (computed, but another sweep wrote the row first),
    ``failures`` (key, job, one-line reason of each failed row written)."""
    from tqdm.auto import tqdm
    check_choice("executor", executor, EXECUTORS)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise CalibError(f"retries must be an integer >= 0, got {retries!r}")
    if ray_num_cpus is not None and (isinstance(ray_num_cpus, bool) or not isinstance(ray_num_cpus, int)
                                     or ray_num_cpus < 1):
        raise CalibError(f"ray_num_cpus must be an integer >= 1, got {ray_num_cpus!r}")
    if not lease > 0:
        raise CalibError(f"lease must be > 0 seconds, got {lease!r}")
    own = not isinstance(store, Store)
    store = Store(store) if own else store
    try:
        unique = list({j.key: j for j in jobs}.values())
        finished = store.done_keys()
        todo = [j for j in unique if j.key not in finished]
        counts = {"total": len(unique), "skipped": len(unique) - len(todo), "done": 0, "failed": 0,
                  "elsewhere": 0, "lost": 0, "failures": []}
        bar = tqdm(total=len(todo), desc=f"sweep ({executor})", unit="job", disable=not progress or not todo)
        owner = owner_id()

        def write(job, row):
            if store.put(row):
                counts[row["status"]] += 1
                if row["status"] == "failed":
                    counts["failures"].append({"key": job.key, "job": describe(job),
                                               "reason": failure_reason(row.get("error"))})
            else:
                counts["lost"] += 1
            store.release(job.key, owner)
            bar.set_postfix(done=counts["done"], failed=counts["failed"], refresh=False)
            bar.update(1)

        def claim(job) -> str:
            state = store.claim(job.key, owner, lease)
            if state == "done":  # another sweep finished it meanwhile
                counts["elsewhere"] += 1
                bar.update(1)
            return state

        run = _local if executor == "local" else _ray
        pending, busy = todo, []
        if todo:
            preflight(todo)
        try:
            with _Heartbeat(store.path, owner, lease):
                while pending:
                    busy, ran = run(pending, claim, write, retries, ray_address, ray_num_cpus)
                    # ``busy``: held by other live sweeps. After a round that ran something,
                    # look at them again: their owner may have died meanwhile.
                    pending = busy if ran else []
        finally:  # an interrupted sweep frees its claims at once, not when the lease runs out
            store.release_all(owner)
        counts["elsewhere"] += len(busy)
        bar.update(len(busy))
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
    from calib import data
    from calib.models import model_config
    from calib.prune.sequential import check_architecture
    for model in sorted({j.model for j in jobs}):
        try:
            check_architecture(model_config(model))
        except CalibError as e:
            raise CalibError(f"model {model}: {e}") from None
    for name in sorted({j.calibration["source"] for j in jobs} & set(data.HUB_SOURCES)):
        data.load_texts(name, pool=1)
    for suite in {j.evaluation for j in jobs}:
        suite.preflight()


def _attempts(job: Job, retries: int) -> dict:
    for attempt in range(1, retries + 2):
        try:
            return {**run_job(job), "attempts": attempt}
        except Exception as e:  # OOM, NaN, bad data ...: record it, go on (KeyboardInterrupt stops)
            row = failed_row(job, traceback.format_exc(), attempt)
            _free()
            if _deterministic(e):  # it would fail the same way again
                break
    return row


def _local(pending, claim, write, retries, *_):
    """Claim one job at a time, so that concurrent sweeps interleave."""
    busy, ran = [], False
    for job in pending:
        state = claim(job)
        if state == "busy":
            busy.append(job)
        elif state == "ours":
            ran = True
            write(job, _attempts(job, retries))
    return busy, ran


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


def _ray(pending, claim, write, retries, address, num_cpus):
    import ray
    mine, busy = [], []
    for job in pending:  # every claimable job at once: Ray schedules them
        state = claim(job)
        (mine if state == "ours" else busy if state == "busy" else []).append(job)
    if not mine:
        return busy, False
    if not ray.is_initialized():
        env = {k: os.environ[k] for k in RAY_ENV if k in os.environ}
        kw = {} if address or os.environ.get("RAY_ADDRESS") else {"num_cpus": num_cpus}
        ray.init(address=address, runtime_env={"env_vars": env}, include_dashboard=False,
                 log_to_driver=False, **kw)
    gpus = ray.cluster_resources().get("GPU", 0)
    # retries are the driver's (max_retries=0), so an exception, a crashed worker and an
    # OOM kill are all handled alike and the traceback reaches the store
    task = ray.remote(_ray_job).options(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=0)
    waiting = {task.remote(job): (job, 1) for job in mine}
    while waiting:
        ready, _ = ray.wait(list(waiting), num_returns=1)
        job, attempt = waiting.pop(ready[0])
        try:
            row = {**ray.get(ready[0]), "attempts": attempt}
        except Exception as e:
            if attempt <= retries and not _deterministic(e):
                waiting[task.remote(job)] = (job, attempt + 1)
                continue
            row = failed_row(job, f"{type(e).__name__}: {e}", attempt)
        write(job, row)
    return busy, True


def release(executor: str) -> None:
    """Stop the executor's workers (Ray's), so that what runs next has their memory."""
    if executor == "ray":
        import ray
        ray.shutdown()


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
                  metrics: list[str] | None = None, group_by: list[str] | None = None, records: bool = False):
    """The store as a DataFrame. With ``over`` (default: the calibration seed), rows
    are grouped by every other parameter (or by ``group_by``) and each metric becomes
    ``<metric>_mean`` and ``<metric>_std`` with ``n`` rows; ``over=None`` gives one line
    per row with parameters, hashes, metrics, ``dense_*`` metrics and timings, and with
    ``records`` each row's per-item records (``calib.evaluate.decode_records``)."""
    import pandas as pd

    from calib.evaluate import decode_records
    check_choice("status", status, ("done", "failed", "all"))
    if records and over is not None:
        raise CalibError("per-item records come with one line per row: pass over=None")
    own = not isinstance(store, Store)
    store = Store(store, create=False) if own else store
    try:
        rows = store.rows(status=None if status == "all" else status)
    finally:
        if own:
            store.close()
    if metrics is not None:
        known = sorted({k for r in rows for k in (r["metrics"] or {})})
        unknown = [m for m in metrics if m not in known]
        if unknown or not metrics:
            valid = ", ".join(known) or f"none (no {'' if status == 'all' else status + ' '}row has metrics)"
            raise CalibError(f"unknown metric {(unknown or [''])[0]!r}; valid: {valid}")
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
                      "error": failure_reason(r["error"]) if r["error"] else None,
                      **({"records": decode_records((r["info"] or {}).get("items"))} if records else {})})
    df = pd.DataFrame(lines)
    if over is None or df.empty:
        return df
    over = [over] if isinstance(over, str) else list(over)
    keys = list(group_by) if group_by else [c for c in sorted(params) if c not in over]
    bad = [c for c in keys + over if c not in df.columns]
    if bad:
        raise CalibError(f"unknown parameter {bad[0]!r}; valid: {', '.join(sorted(params))}")
    g = df.groupby(keys, dropna=False, sort=True)
    if not mets:  # failed rows only: nothing to average, just the counts
        return g.size().rename("n").reset_index()
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
