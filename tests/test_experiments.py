"""Experiments layer, in-process: jobs and keys, grid expansion and its errors, the
store's transactions and concurrency, caches, failures and retries."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calib.errors import CalibError
from factory import save, tiny_world_model

SMALL = {"calibration": {"source": "world/pretrain", "nsamples": 4, "seqlen": 32, "pool": 40},  # a non-world model: c4 unless set
         "suite": {"name": "ppl", "n_alpaca": 8}}


@pytest.fixture(scope="module")
def model_dir(tiny_tokenizer, tmp_path_factory):
    """A tiny random LLaMA of our own (other tests prune the shared one in place)."""
    path = tmp_path_factory.mktemp("tiny_model")
    save(tiny_world_model(600, 256), tiny_tokenizer, path)
    return path


def job(model_dir, **kw):
    from calib.experiments import Job
    return Job(model=str(model_dir), **{**SMALL, **kw})


# ------------------------------------------------------------------ jobs, keys
def test_key_is_canonical(model_dir, cache_env):
    a = job(model_dir)
    b = job(model_dir, method="wanda", sparsity=0.5, pattern="unstructured", options={"use_variant": False},
            calibration={**SMALL["calibration"], "source": "world/pretrain", "mode": "document", "seed": 0})
    assert a.key == b.key and a.params() == b.params()
    assert job(model_dir, execution={"prune_batch_size": 2, "eval_batch_size": 3}).key == a.key  # not in the key
    assert job(model_dir, calibration={**SMALL["calibration"], "seed": 1}).key != a.key
    assert job(model_dir, pattern="2:4").sparsity == 0.5
    # per-method options pick the job's method
    o = job(model_dir, method="owl", options={"owl": {"owl_lambda": 0.1}, "wanda": {"use_variant": True}})
    assert o.options["owl_lambda"] == 0.1 and o.options["base"] == "wanda"
    assert job(model_dir, calibration={**SMALL["calibration"], "seqlen": None}).calibration["seqlen"] == 256


def test_key_follows_model_content(model_dir, cache_env, tmp_path):
    from calib.models import model_identity
    same = tmp_path / "same"
    shutil.copytree(model_dir, same)
    assert job(same).key == job(model_dir).key  # identity is content, not path
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    w = other / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    w.write_bytes(bytes(data))
    assert model_identity(other) != model_identity(model_dir)
    assert job(other).key != job(model_dir).key
    assert (cache_env / "model_ids").is_dir()  # hashed once per path + mtime


def test_expand_grid(model_dir, cache_env, tmp_path):
    from calib.experiments import expand_grid
    grid = {"model": str(model_dir), "method": ["magnitude", "wanda"], "sparsity": [0.3, 0.5],
            "calibration": {**SMALL["calibration"], "seed": {"range": 3}},
            "suite": {"name": "world", "limit": 2, "tasks": ["world_boolq", "world_piqa"]}}
    assert len(expand_grid(grid)) == 2 * 2 * 3
    # sub-grids merge over the top level; duplicates collapse; list fields are not axes
    grid["grids"] = [{}, {"pattern": "2:4", "sparsity": None, "calibration": {"seed": 0}},
                     {"method": "wanda", "sparsity": 0.5}]
    jobs = expand_grid(grid)
    assert len(jobs) == 12 + 2
    assert all(j.suite["tasks"] == ["world_boolq", "world_piqa"] for j in jobs)
    assert len({j.key for j in jobs}) == len(jobs)
    # a section may itself be an axis: with and without synthetic data
    g2 = {"model": str(model_dir), **SMALL, "synthetic": [None, {"prefix_len": [1, 2]}]}
    assert [j.synthetic and j.synthetic["prefix_len"] for j in expand_grid(g2)] == [None, 1, 2]
    f = tmp_path / "g.yaml"
    f.write_text(f"model: {model_dir}\nmethod: [magnitude, wanda]\nsuite: ppl\n"
                 "calibration: {nsamples: 4, seqlen: 32, pool: 40}\n")
    assert [j.method for j in expand_grid(f)] == ["magnitude", "wanda"]


BAD = [  # (grid fields, words the message must contain)
    ({"method": "wandaa"}, ["method", "wandaa", "magnitude, wanda, sparsegpt, dsnot, owl"]),
    ({"metod": "wanda"}, ["metod", "unknown field", "model, method, sparsity"]),
    ({"sparsity": 1.5}, ["sparsity", "[0, 1)"]),
    ({"pattern": "2:4", "sparsity": 0.6}, ["sparsity", "2:4", "0.5"]),
    ({"pattern": "5:4"}, ["pattern", "5:4"]),
    ({"options": {"owl_lambda": 0.1}}, ["options", "owl_lambda", "use_variant"]),
    ({"dtype": "int8"}, ["dtype", "int8", "float32, bfloat16, float16"]),
    ({"calibration": {"source": "world/nope"}}, ["calibration.source", "world/nope", "world/pretrain", "c4"]),
    ({"calibration": {"sede": 1}}, ["calibration.sede", "unknown field", "source, mode, nsamples, seqlen, seed"]),
    ({"calibration": {"nsamples": 0}}, ["calibration.nsamples", ">= 1", "0"]),
    ({"calibration": {"seqlen": 100000}}, ["calibration.seqlen", "[1, 256]"]),
    ({"calibration": {"mode": "stream"}}, ["calibration.mode", "document, concat"]),
    ({"calibration": {"seed": []}}, ["calibration.seed", "empty list"]),
    ({"calibration": {"seed": {"range": "x"}}}, ["calibration.seed", "range"]),
    ({"synthetic": {"generator": "big"}}, ["synthetic.generator", "dense, pruned"]),
    ({"synthetic": {"filter_rate": 100}}, ["synthetic.filter_rate", "[0, 100)"]),
    ({"synthetic": {"sampling": {"top_q": 1}}}, ["synthetic.sampling.top_q", "top_k, top_p"]),
    ({"suite": {"name": "wrld"}}, ["suite.name", "wrld", "world, paper, ppl"]),
    ({"suite": {"name": "world", "tasks": ["boolq"]}}, ["suite.tasks", "boolq", "world_boolq"]),
    ({"suite": {"name": "paper", "shots": {"mmlu": -1}}}, ["suite.shots.mmlu", ">= 0"]),
    ({"execution": {"offload": "yes"}}, ["execution.offload", "true or false"]),
    ({"model": "/no/such/model"}, ["model", "/no/such/model", "'world'", "save_pretrained"]),
    ({"grids": [{}, {"method": "x"}]}, ["grids[1]", "method", "'x'", "magnitude"]),
    ({"grids": [{"store": "x"}]}, ["grids[0]", "store", "unknown field"]),
]


@pytest.mark.parametrize("fields,words", BAD, ids=[json.dumps(b[0])[:40] for b in BAD])
def test_bad_grid_names_field_and_choices(model_dir, cache_env, fields, words):
    from calib.experiments import expand_grid
    grid = {"model": str(model_dir), **json.loads(json.dumps(SMALL))}
    for k, v in fields.items():
        grid[k] = {**grid[k], **v} if isinstance(v, dict) and isinstance(grid.get(k), dict) else v
    with pytest.raises(CalibError) as e:
        expand_grid(grid)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_bad_grid_file_on_the_cli(model_dir, cache_env, tmp_path, capsys):
    from calib.cli import main
    f = tmp_path / "bad.yaml"
    f.write_text(f"model: {model_dir}\nmethod: [wanda, sparsegtp]\n")
    assert main(["run", str(f), "--store", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "method" in err and "sparsegtp" in err and "sparsegpt" in err
    f.write_text("method: [wanda\n")
    assert main(["run", str(f), "--store", str(tmp_path / "r.db")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["run", str(f), "--executor", "slurm"]) == 2
    assert "local, ray" in capsys.readouterr().err


# ----------------------------------------------------------------------- store
def _row(key, status="done", **kw):
    return {"key": key, "status": status, "params": {"k": key}, "metrics": {"avg": 0.5}, **kw}


def test_store_upsert_semantics(tmp_path):
    from calib.experiments import Store
    with Store(tmp_path / "r.db") as s:
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.put(_row("a", "failed", error="Traceback: boom", attempts=2, metrics=None))
        assert s.get("a")["status"] == "failed" and s.get("a")["attempts"] == 2
        assert s.put(_row("a", metrics={"avg": 0.7}))  # a re-run replaces a failed row
        assert s.get("a")["status"] == "done" and s.get("a")["attempts"] == 3
        assert not s.put(_row("a", metrics={"avg": 0.1}))  # a finished row is never replaced
        assert not s.put(_row("a", "failed", error="late"))
        r = s.get("a")
        assert r["metrics"] == {"avg": 0.7} and r["error"] is None
        s.put(_row("b", metrics={"avg": float("nan"), "ppl": float("inf")}))
        assert s.count() == {"done": 2} and s.done_keys() == {"a", "b"}
        assert s.get("b")["metrics"]["ppl"] == float("inf")


WRITER = """
import sys, time
from calib.experiments import Store
s = Store(sys.argv[1], timeout=60)
wid = int(sys.argv[2])
for i in range(40):
    s.put({"key": f"k{i}", "status": "done", "params": {"i": i}, "metrics": {"by": wid, "x": "y" * 2000}})
"""


def test_store_concurrent_writers(tmp_path):
    db = tmp_path / "r.db"
    from calib.experiments import Store
    Store(db).close()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(w)], env=env) for w in range(4)]
    assert [p.wait(60) for p in procs] == [0] * 4
    with Store(db) as s:
        rows = s.rows()
        assert len(rows) == 40 and {r["key"] for r in rows} == {f"k{i}" for i in range(40)}
        assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


KILLED_WRITER = """
import sys
from calib.experiments import Store
s = Store(sys.argv[1])
i = 0
while True:
    s.put({"key": f"k{i}", "status": "done", "params": {"i": i}, "metrics": {"x": "y" * 100000, "i": i}})
    i += 1
"""


def test_store_sigkill_mid_write_leaves_whole_rows(tmp_path):
    db = tmp_path / "r.db"
    p = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(db)])
    deadline = time.time() + 30
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            if sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0] >= 5:
                break
        except sqlite3.OperationalError:
            pass
    p.send_signal(signal.SIGKILL)
    p.wait()
    from calib.experiments import Store
    with Store(db) as s:
        rows = s.rows()
        assert len(rows) >= 5
        assert all(r["metrics"]["x"] == "y" * 100000 and r["params"]["i"] == r["metrics"]["i"] for r in rows)
        assert sorted(r["params"]["i"] for r in rows) == list(range(len(rows)))  # no gap, no torn row
        assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --------------------------------------------------------- running jobs, caches
def test_run_job_row_and_caches(model_dir, cache_env):
    from calib.experiments import run_job
    j = job(model_dir, method="wanda", sparsity=0.5,
            suite={"name": "world", "limit": 3, "n_alpaca": 8, "tasks": ["world_boolq"]})
    row = run_job(j)
    assert row["key"] == j.key and row["status"] == "done" and row["params"] == j.params()
    assert len(row["calib_hash"]) == 64 and len(row["mask_hash"]) == 64
    m = row["metrics"]
    assert {"alpaca_ppl", "world_boolq/acc", "avg", "sparsity_actual"} <= set(m)
    assert m["sparsity_actual"] == pytest.approx(0.5, abs=0.01)
    assert {"alpaca_ppl", "avg"} <= set(row["dense"]) and row["dense"]["alpaca_ppl"] != m["alpaca_ppl"]
    v = row["versions"]
    assert {"torch", "transformers", "calib", "lm_eval"} <= set(v) and v["task_versions"] == {"world_boolq": 2.0}
    assert {"load", "calibration", "dense_evaluate", "prune", "evaluate", "total"} <= set(row["timings"])
    assert len(list((cache_env / "calibration").glob("*.pt"))) == 1
    assert len(list((cache_env / "dense_eval").glob("*.json"))) == 1
    again = run_job(j)  # from the caches: the same row
    assert again["metrics"] == m and again["calib_hash"] == row["calib_hash"] and again["mask_hash"] == row["mask_hash"]
    assert again["timings"]["dense_evaluate"] < row["timings"]["dense_evaluate"]


def test_synthetic_job_caches_generation(model_dir, cache_env, monkeypatch):
    import numpy as np

    from calib import filters, synth
    from calib.experiments import run_job
    calls = []
    real = synth.generate
    monkeypatch.setattr(synth, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    syn = {"n_docs": 12, "max_new_tokens": 24, "batch_size": 4, "filter_rate": 20}
    r20 = run_job(job(model_dir, synthetic=syn))
    r0 = run_job(job(model_dir, synthetic={**syn, "filter_rate": 0}))
    assert len(calls) == 1  # the generated set is shared by every filter rate
    d = cache_env / "synthetic" / r20["info"]["calibration"]["synthetic_dir"]
    meta = json.loads((d / "complete.json").read_text())
    ppl = np.array([np.nan if p is None else p for p in meta["ppl"]])
    fin = ppl[np.isfinite(ppl)]
    assert r20["info"]["calibration"]["kept"] == int(filters.ppl_keep(fin, 20).sum()) < len(fin)
    assert r0["info"]["calibration"]["kept"] == len(fin)
    assert sorted(p.name for p in d.glob("filtered-*.jsonl")) == ["filtered-0.jsonl", "filtered-20.jsonl"]
    assert r0["calib_hash"] != r20["calib_hash"]
    rp = run_job(job(model_dir, synthetic={**syn, "generator": "pruned"}))
    assert len(calls) == 2 and rp["info"]["calibration"]["synthetic_dir"] != d.name
    texts = lambda dd: [r["text"] for r in synth.read_rows(cache_env / "synthetic" / dd / "generated.jsonl")]  # noqa
    assert texts(rp["info"]["calibration"]["synthetic_dir"]) != texts(d.name)


def test_local_sweep_records_failures_and_retries(model_dir, cache_env, tmp_path, monkeypatch):
    import torch

    from calib.experiments import expand_grid
    from calib.experiments import run as experiments
    from calib.experiments import Store
    from calib.experiments import run_sweep
    jobs = expand_grid({"model": str(model_dir), **SMALL, "method": ["magnitude", "wanda"],
                        "calibration": {**SMALL["calibration"], "seed": {"range": 2}}})
    real = experiments.prune
    state = {"n": 0}

    def flaky(job, model, ids):  # the 1st call OOMs once (retried); every wanda seed-1 call NaNs (not retried)
        state["n"] += 1
        if state["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        res = real(job, model, ids)
        if job.method == "wanda" and job.calibration["seed"] == 1:
            next(model.parameters()).data[0, 0] = float("nan")
        return res

    monkeypatch.setattr(experiments, "prune", flaky)
    store = Store(tmp_path / "r.db")
    counts = run_sweep(jobs, store, retries=1, progress=False)
    assert {k: counts[k] for k in ("total", "skipped", "done", "failed", "elsewhere", "lost")} == \
        {"total": 4, "skipped": 0, "done": 3, "failed": 1, "elsewhere": 0, "lost": 0}
    rows = {r["key"]: r for r in store.rows(status="all")}
    assert rows[jobs[0].key]["attempts"] == 2 and rows[jobs[0].key]["status"] == "done"
    bad = rows[jobs[3].key]
    assert bad["status"] == "failed" and bad["attempts"] == 1  # deterministic (a CalibError): not retried
    assert "CalibError" in bad["error"] and "non-finite weights" in bad["error"] and "Traceback" in bad["error"]
    assert counts["failures"] == [{"key": jobs[3].key, "job": "wanda unstructured 0.5 world/pretrain n=4 seed=1",
                                   "reason": "the pruned model has non-finite weights in model.embed_tokens.weight"}]
    assert store.claims() == {}  # every claim released
    monkeypatch.setattr(experiments, "prune", real)
    # a re-run skips finished rows and retries the failed one
    counts = run_sweep(jobs, store, progress=False)
    assert (counts["total"], counts["skipped"], counts["done"], counts["failed"]) == (4, 3, 1, 0)
    assert store.get(jobs[3].key)["status"] == "done" and store.get(jobs[3].key)["attempts"] == 2
    assert run_sweep(jobs, store, progress=False)["skipped"] == 4


def test_results_frame_mean_std(model_dir, cache_env, tmp_path, capsys):
    from calib.cli import main
    from calib.experiments import Store
    from calib.experiments import results_frame
    db = tmp_path / "r.db"
    with Store(db) as s:
        for seed, ppl in [(0, 10.0), (1, 14.0), (2, 12.0)]:
            j = job(model_dir, calibration={**SMALL["calibration"], "seed": seed})
            s.put({"key": j.key, "status": "done", "params": j.params(), "metrics": {"alpaca_ppl": ppl},
                   "dense": {"alpaca_ppl": 9.0}, "timings": {"total": 1.0}})
        j = job(model_dir, method="magnitude")
        s.put({"key": j.key, "status": "failed", "params": j.params(), "error": "Traceback\nRuntimeError: x"})
        raw = results_frame(s, over=None, status="all")
        assert len(raw) == 4 and set(raw["status"]) == {"done", "failed"}
        assert "dense_alpaca_ppl" in raw and "calibration.seed" in raw and "time_total" in raw
        assert raw[raw.status == "failed"]["error"].iloc[0] == "RuntimeError: x"
        agg = results_frame(s)
    assert len(agg) == 1 and agg["n"].iloc[0] == 3
    assert agg["alpaca_ppl_mean"].iloc[0] == pytest.approx(12.0) and agg["alpaca_ppl_std"].iloc[0] == pytest.approx(2.0)
    out = tmp_path / "r.csv"
    assert main(["results", "--store", str(db), "--csv", str(out)]) == 0
    assert "alpaca_ppl_mean" in out.read_text()
    assert main(["results", "--store", str(db), "--over", "nope"]) == 2
    capsys.readouterr()
    assert main(["results", "--store", str(db)]) == 0
    assert "12 ± 2" in capsys.readouterr().out


def test_example_grids_expand(model_dir, cache_env, tmp_path):
    """The shipped grid is valid (its model folder swapped for a tiny stand-in)."""
    import yaml

    from calib.experiments import expand_grid
    root = Path(__file__).resolve().parents[1] / "examples" / "grids"
    world = yaml.safe_load((root / "world.yaml").read_text())
    world["model"] = str(model_dir)
    world["calibration"]["seqlen"] = 32
    jobs = expand_grid(world)
    assert len(jobs) == 4 * 2 * 3 + 3 and sum(j.synthetic is not None for j in jobs) == 3
