"""Running a job: calibration data (sampled, or self-generated and filtered), pruning,
evaluation; one row back. Nothing is written to the store here (``sweep.py`` does that).

Expensive intermediates live under the cache dir (env CALIB_CACHE, default
~/.cache/calib), named by content hashes: calibration sets, self-generated sets
with their perplexities, filtered sets, and the dense model's evaluation.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import socket
import time
from pathlib import Path

import calib
from calib import data, evaluate as ev_mod, filters, synth
from calib.cache import cache_dir, digest
from calib.errors import CalibError
from calib.experiments.job import Job
from calib.hub import revision_of
from calib.io import atomic_write, file_lock
from calib.models import model_identity, model_path
from calib.prune.methods import outlier_reports
from calib.synth import texts_digest


class Timer(dict):
    """Seconds per named stage, summed: ``with timer("prune"): ...``."""

    @contextlib.contextmanager
    def __call__(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self[stage] = self.get(stage, 0.0) + time.perf_counter() - t


def load(job: Job):
    """(model, tokenizer) of the job, in its dtype."""
    from calib import models
    return models.load(job.model, dtype=job.dtype)


def device(job: Job) -> str:
    from calib import models
    return models.device(job.execution["device"])


def prune(job: Job, model, ids):
    """Prune ``model`` in place as the job says."""
    from calib.prune.engine import prune as prune_model
    return prune_model(model, ids, setting=job.setting, batch_size=job.execution["prune_batch_size"],
                       device=device(job), offload=job.execution["offload"])


class _PoolTokenizer:
    """A tokenizer that remembers its last few whole-pool encodings. data.sample
    tokenizes the same document pool for every seed; the ids do not change, so a
    sweep over seeds tokenizes each pool once per process."""
    _memo: dict = {}

    def __init__(self, tok, ident: str):
        self._tok, self._ident = tok, ident

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, text, **kw):
        key = (self._ident, texts_digest([text] if isinstance(text, str) else text),
               json.dumps(kw, sort_keys=True, default=str))
        if key not in self._memo:
            while len(self._memo) >= 4:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = self._tok(text, **kw)
        return self._memo[key]


def calibration_set(job: Job, model, tok, timer: Timer | None = None):
    """(ids [nsamples, seqlen], info) for the job, cached by content hash."""
    import torch
    from calib import data
    timer = timer if timer is not None else Timer()
    c, s = job.calibration, job.synthetic
    mid = model_identity(model_path(job.model))
    f = calibration_file(job)
    if f.is_file():
        blob = torch.load(f, weights_only=True)
        return blob["ids"], json.loads(blob["info"])
    if s is None:
        cs = data.sample(c["source"], _PoolTokenizer(tok, mid), c["nsamples"], c["seqlen"], seed=c["seed"],
                         mode=c["mode"], pool=c["pool"])
        info = {}
    else:
        path, info = synthetic_source(job, model, tok, timer)
        with timer("calibration_sample"):
            cs = data.sample(str(path), tok, c["nsamples"], c["seqlen"], seed=c["seed"], mode="concat")
    info.update(pool=cs.meta["pool"], documents_used=len(cs.meta["documents_used"]), hash=cs.hash)
    buf = io.BytesIO()
    torch.save({"ids": cs.input_ids, "info": json.dumps(info)}, buf)
    atomic_write(f, buf.getvalue())
    return cs.input_ids, info


def calibration_key(job: Job) -> str:
    """The name of the job's cached calibration set (model, calibration and synthetic settings)."""
    mid, s = model_identity(model_path(job.model)), job.synthetic
    return digest({"model": mid, "calibration": job.calibration, "synthetic": s,
                   "generation": s and _generation_spec(job, mid), "source_version": job.source_version,
                   "sampling": data.VERSION})[:32]


def generation_key(job: Job) -> str | None:
    """The name of the job's cached self-generated set (None without synthetic data)."""
    return digest(_generation_spec(job, model_identity(model_path(job.model))))[:32] if job.synthetic else None


def dense_key(job: Job) -> str:
    """The name of the cached dense evaluation of the job's model, dtype and suite."""
    return digest({"model": model_identity(model_path(job.model)), "dtype": job.dtype, "suite": job.suite,
                   "suite_version": job.suite_version, "scoring": ev_mod.VERSION})[:32]


# ------------------------------------------------------------------ the cache's layout
# The one place that says where each intermediate lives (the planner asks what is there).
def calibration_file(job: Job) -> Path:
    return cache_dir() / "calibration" / f"{calibration_key(job)}.pt"


def generation_dir(job: Job) -> Path | None:
    """The folder of the job's self-generated set and its filtered versions (None without synthetic data)."""
    g = generation_key(job)
    return cache_dir() / "synthetic" / g if g else None


def generation_done(job: Job) -> Path | None:
    """The file whose presence says the job's generated set is complete (with its perplexities)."""
    d = generation_dir(job)
    return d / "complete.json" if d else None


def dense_file(job: Job) -> Path:
    return cache_dir() / "dense_eval" / f"{dense_key(job)}.json"


def _generation_spec(job: Job, mid: str) -> dict:
    s, c = job.synthetic, job.calibration
    spec = {"model": mid, "dtype": job.dtype, "source": c["source"], "source_version": job.source_version,
            "generation": synth.VERSION, "filter": filters.VERSION,
            **{k: v for k, v in s.items() if k != "filter_rate"}}
    if s["generator"] == "pruned":  # the generator is pruned like the job, on the original source
        spec["pruned_by"] = {"method": job.method, "sparsity": job.sparsity, "pattern": job.pattern,
                             "options": job.options, "calibration": c}
    return spec


def synthetic_source(job: Job, model, tok, timer: Timer):
    """Self-generate from the source's documents, score perplexities, filter: the path of
    the filtered jsonl (a calib.synth file) and its stats. Generated sets are cached per
    (model, source, generation options), filtered sets per filter rate as well."""
    import numpy as np
    from calib import data, filters, synth
    s, c = job.synthetic, job.calibration
    spec = _generation_spec(job, model_identity(model_path(job.model)))
    d, done = generation_dir(job), generation_done(job)
    gen = d / "generated.jsonl"
    with file_lock(d / ".lock"):  # one writer per generated set, even across processes
        if not done.is_file():
            with timer("synth_generate"):
                gmodel = model
                if s["generator"] == "pruned":
                    gmodel, _ = load(job)
                    plain = Job(**{**job.params(), "synthetic": None, "execution": job.execution})
                    ids, _ = calibration_set(plain, gmodel, tok, timer)
                    prune(job, gmodel, ids)
                gmodel.to(device(job))
                texts = data.load_texts(c["source"], pool=s["n_docs"])
                kw = dict(prefix_len=s["prefix_len"], max_new_tokens=s["max_new_tokens"], batch_size=s["batch_size"],
                          seed=s["gen_seed"], sampling=s["sampling"], skip_short=True, source=c["source"],
                          progress=False)
                try:
                    rows = synth.generate(gmodel, tok, texts, gen, **kw)
                except synth.SettingsMismatch:  # a partial file from another path to the same model
                    gen.unlink()
                    rows = synth.generate(gmodel, tok, texts, gen, **kw)
                ppl = filters.perplexities(gmodel, tok, [r["text"] for r in rows], progress=False)
                if job.execution["offload"]:
                    model.to("cpu")
                atomic_write(done, json.dumps({"spec": spec, "n_rows": len(rows),
                                                "ppl": [None if not math.isfinite(p) else p for p in ppl]}))
    meta = json.loads(done.read_text())
    k = s["filter_rate"]
    out = d / f"filtered-{k:g}.jsonl"
    ppl = np.array([np.nan if p is None else p for p in meta["ppl"]])
    # texts of < 2 tokens have no perplexity and are dropped either way
    keep = filters.ppl_keep(ppl, k) if k > 0 else np.isfinite(ppl)
    if not out.is_file():
        rows = synth.read_rows(gen)
        atomic_write(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r, kp in zip(rows, keep) if kp))
    return out, {"synthetic_dir": d.name, "generated": meta["n_rows"], "kept": int(keep.sum())}


# ------------------------------------------------------------------ evaluation
def evaluate(job: Job, model, tok) -> tuple[dict, dict, dict]:
    """(flat metrics, evaluation metadata, per-item records) of the job's suite on ``model``
    (``calib.evaluate.run_suite``); the records in the compact form a row keeps (``encode_records``)."""
    from calib import evaluate as ev
    res = ev.run_suite(model, tok, job.evaluation, batch_size=job.execution["eval_batch_size"],
                       scorer=job.execution["scorer"])
    meta = {k: res["meta"][k] for k in ("lm_eval", "task_versions", "n_shot") if k in res["meta"]}
    return res["metrics"], meta, ev.encode_records(res["records"])


def dense_evaluation(job: Job, model, tok) -> tuple[dict, dict, dict]:
    """The unpruned model's metrics on the job's suite, cached per (model, dtype, suite)."""
    f = dense_file(job)
    if f.is_file():
        blob = json.loads(f.read_text())
        return blob["metrics"], blob["meta"], blob.get("items", {})
    metrics, meta, items = evaluate(job, model, tok)
    atomic_write(f, json.dumps({"metrics": metrics, "meta": meta, "items": items}))
    return metrics, meta, items


# ------------------------------------------------------------------- running
def run_job(job: Job) -> dict:
    """Build or reuse the calibration set, prune, evaluate; return the row (not written).
    Raises on failure; non-finite weights or metrics are a CalibError (they come back
    on every attempt)."""
    import torch
    t0 = time.perf_counter()
    timer = Timer()
    with timer("load"):
        model, tok = load(job)
    with timer("calibration"):
        ids, cinfo = calibration_set(job, model, tok, timer)
    dev = device(job)
    with timer("dense_evaluate"):
        model.to(dev)
        dense, _, _ = dense_evaluation(job, model, tok)
        if job.execution["offload"]:
            model.to("cpu")
    with timer("prune"):
        res = prune(job, model, ids)
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:  # deterministic, like every CalibError: a sweep does not retry it
        raise CalibError(f"the pruned model has non-finite weights in {', '.join(bad[:5])}")
    with timer("evaluate"):
        model.to(dev)
        metrics, meta, items = evaluate(job, model, tok)
    nan = sorted(k for k, v in metrics.items() if isinstance(v, float) and math.isnan(v))
    if nan:
        raise CalibError(f"NaN metrics: {', '.join(nan)}")
    metrics["sparsity_actual"] = res.report["overall"]["sparsity"]
    timer["total"] = time.perf_counter() - t0
    plans = {k: v for k, v in outlier_reports(res.report).items() if v is not None}
    info = {"calibration": cinfo, "prune": {"overall": res.report["overall"], **plans},
            "execution": job.execution, "device": dev, "pid": os.getpid(), "suite_version": job.suite_version,
            "stages": job.stages, "revision": revision_of(model_path(job.model)), "items": items}
    return {"key": job.key, "status": "done", "params": job.params(), "calib_hash": cinfo["hash"],
            "mask_hash": res.mask_hash, "metrics": metrics, "dense": dense,
            "versions": {**calib.versions(), **meta}, "timings": dict(timer), "info": info,
            "host": socket.gethostname()}


def failed_row(job: Job, error: str, attempts: int) -> dict:
    return {"key": job.key, "status": "failed", "params": job.params(), "error": error,
            "attempts": attempts, "versions": calib.versions(),
            "info": {"execution": job.execution, "stages": job.stages, "revision": revision_of(model_path(job.model))},
            "host": socket.gethostname()}
