"""Reliability of sweeps: `calib run` SIGKILLed midway and restarted ends with exactly
the expected rows, no duplicates, and the metrics of an uninterrupted run; once with
the local executor and once through a local Ray (num_cpus=2)."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from factory import tiny_world_model

SUITE = {"name": "world", "limit": 4, "n_alpaca": 16, "tasks": ["world_boolq", "world_piqa"]}


@pytest.fixture(scope="module")
def models(tiny_tokenizer, tmp_path_factory):
    """A tiny random LLaMA, and a copy with a NaN weight (its job must fail)."""
    import torch
    model = tiny_world_model(600, 256)
    good, bad = tmp_path_factory.mktemp("good"), tmp_path_factory.mktemp("nan")
    model.save_pretrained(good)
    tiny_tokenizer.save_pretrained(good)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[0, 0] = float("nan")
    model.save_pretrained(bad)
    tiny_tokenizer.save_pretrained(bad)
    return good, bad


@pytest.fixture(scope="module")
def grid(models, tmp_path_factory):
    good, bad = models
    g = {"model": str(good), "method": ["wanda", "sparsegpt"], "sparsity": 0.5,
         "calibration": {"source": "world/pretrain", "nsamples": 4, "seqlen": 32, "pool": 40, "seed": {"range": 2}},
         "suite": SUITE,
         "grids": [{}, {"model": str(bad), "method": "wanda", "suite": "ppl", "calibration": {"seed": 0}}]}
    path = tmp_path_factory.mktemp("grid") / "world_small.yaml"
    path.write_text(yaml.safe_dump(g))
    return path


@pytest.fixture(scope="module")
def reference(grid, tmp_path_factory):
    """The same grid, uninterrupted, in-process, with its own cache."""
    from calib.experiments import expand_grid
    from calib.experiments import Store
    from calib.experiments import run_sweep
    tmp = tmp_path_factory.mktemp("reference")
    old = os.environ.get("CALIB_CACHE")
    os.environ["CALIB_CACHE"] = str(tmp / "cache")
    try:
        jobs = expand_grid(grid)
        with Store(tmp / "ref.db") as s:
            counts = run_sweep(jobs, s, progress=False)
            rows = {r["key"]: r for r in s.rows(status="all")}
    finally:
        os.environ.pop("CALIB_CACHE") if old is None else os.environ.__setitem__("CALIB_CACHE", old)
    assert (counts["total"], counts["skipped"], counts["done"], counts["failed"]) == (5, 0, 4, 1)
    return jobs, rows


def _done(db) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as c:
            return c.execute("SELECT COUNT(*) FROM runs WHERE status='done'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _kill_and_resume(grid, tmp_path, executor):
    db = tmp_path / "runs.db"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CALIB_CACHE": str(tmp_path / "cache"),
           "RAY_AUTH_MODE": "disabled"}
    cmd = [sys.executable, "-m", "calib.cli", "run", str(grid), "--store", str(db), "--executor", executor,
           "--no-progress"] + (["--ray-num-cpus", "2"] if executor == "ray" else [])
    # own session: the kill takes the whole process group (a local Ray's daemons included)
    p = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                         stderr=open(tmp_path / "first.log", "w"))
    deadline = time.time() + 180
    while _done(db) < 1 and p.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    at_kill = _done(db)
    assert 1 <= at_kill < 4, (at_kill, (tmp_path / "first.log").read_text()[-3000:])
    second = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = second.communicate(timeout=240)
    assert second.returncode == 1, err[-3000:]  # 1: the NaN job failed, the rest finished
    assert f"{at_kill} already done" in err
    return db, {p.pid, second.pid}


def _check(db, reference):
    from calib.experiments import Store
    jobs, ref = reference
    with Store(db) as s:
        assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        keys = [k for (k,) in s.conn.execute("SELECT key FROM runs")]
        rows = {r["key"]: r for r in s.rows(status="all")}
    assert sorted(keys) == sorted(j.key for j in jobs)  # exactly the expected rows, each once
    for key, r in rows.items():
        assert r["status"] == ref[key]["status"]
        if r["status"] == "done":  # deterministic jobs: identical data, masks and metrics
            assert (r["calib_hash"], r["mask_hash"]) == (ref[key]["calib_hash"], ref[key]["mask_hash"])
            assert r["metrics"] == ref[key]["metrics"] and r["dense"] == ref[key]["dense"]
            assert r["params"] == ref[key]["params"] and r["timings"]["total"] > 0
        else:
            assert "non-finite" in r["error"] and r["attempts"] == 1  # deterministic: not retried


def test_sigkill_and_resume_local(grid, reference, tmp_path):
    db, drivers = _kill_and_resume(grid, tmp_path, "local")
    _check(db, reference)


def test_sigkill_and_resume_ray(grid, reference, tmp_path):
    pytest.importorskip("ray")
    db, drivers = _kill_and_resume(grid, tmp_path, "ray")
    _check(db, reference)
    from calib.experiments import Store
    with Store(db) as s:  # the jobs ran in Ray workers, not in either driver
        assert not {r["info"]["pid"] for r in s.rows(status="done")} & drivers
