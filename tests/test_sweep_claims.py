"""Concurrent sweeps split the work: a sweep claims each job in the store before it
runs it, under a lease its heartbeat renews; a second sweep skips claimed jobs, a
killed sweep's claims are taken over, and each summary counts only the rows its
own sweep wrote. Two real `calib run` processes on one store, then a SIGKILL."""
from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from factory import save, tiny_world_model

SUMMARY = re.compile(r"(\d+) jobs: (\d+) already done, (\d+) done, (\d+) failed")


# --------------------------------------------------------------- the protocol, in-process
def test_claim_protocol(tmp_path):
    from calib.experiments import Store
    from calib.io import owner_id
    me = owner_id()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process of this host that has exited
    dead = f"{socket.gethostname()}:{gone.pid}:1"
    remote = "elsewhere.example:1:1"  # another host: never known dead here, only its lease counts
    with Store(tmp_path / "s.db") as s:
        assert s.claim("a", me, 60) == "ours" and s.claim("a", me, 60) == "ours"  # idempotent
        assert s.claim("b", remote, 60) == "ours"
        assert s.claim("b", me, 60) == "busy"  # a live lease of another owner
        s.conn.execute("UPDATE claims SET expires = 0 WHERE key = 'b'")  # its lease ran out
        assert s.claim("b", me, 60) == "ours" and s.claims()["b"][0] == me
        assert s.claim("c", dead, 600) == "ours"
        assert s.claim("c", me, 60) == "ours"  # its owner is dead on this host: taken over at once
        before = s.claims()["a"][1]
        time.sleep(0.01)
        assert s.renew(me, 60) == 3 and s.claims()["a"][1] > before
        s.put({"key": "d", "status": "done", "params": {}})
        assert s.claim("d", me, 60) == "done"
        s.release("a", me)
        assert "a" not in s.claims()
        s.release_all(me)
        assert s.claims() == {}


def test_owner_identity():
    from calib.io import owner_dead, owner_id, process_start
    me = owner_id()
    host, pid, start = me.split(":")
    assert host == socket.gethostname() and int(pid) == os.getpid() and start == process_start(os.getpid())
    assert not owner_dead(me)
    assert owner_dead(f"{host}:{pid}:{int(start) + 1}")  # this pid, but a different (earlier) process
    assert not owner_dead(f"other-host:{pid}:1")


# -------------------------------------------------------------- two `calib run` processes
@pytest.fixture(scope="module")
def setup(tiny_tokenizer, tmp_path_factory):
    """A tiny model, and two grids of 6 quick jobs each (about half a second apiece: the
    Alpaca-role perplexity on 300 texts) that share one calibration set."""
    root = tmp_path_factory.mktemp("claims")
    model = save(tiny_world_model(600, 256), tiny_tokenizer, root / "model")
    grids = []
    for i, sparsities in enumerate(([0.2, 0.3, 0.4], [0.5, 0.6, 0.7])):
        g = {"model": model, "method": ["wanda", "magnitude"], "sparsity": sparsities,
             "suite": {"name": "ppl", "n_alpaca": 300},
             "calibration": {"source": "world/pretrain", "nsamples": 8, "seqlen": 64, "pool": 40}}
        grids.append(root / f"grid{i}.yaml")
        grids[-1].write_text(yaml.safe_dump(g))
    return root, grids


def _start(grid, db, env, log):
    cmd = [sys.executable, "-m", "calib.cli", "run", str(grid), "--store", str(db), "--no-progress"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))


def _claims(db) -> dict:
    try:
        with sqlite3.connect(db, timeout=5) as c:
            return {k: int(o.split(":")[1]) for k, o in c.execute("SELECT key, owner FROM claims")}
    except sqlite3.OperationalError:  # not created yet
        return {}


def _summary(log):
    text = log.read_text()
    m = SUMMARY.search(text)
    assert m, text[-3000:]
    assert "computed but already written" not in text, text[-3000:]  # nothing computed twice
    return [int(x) for x in m.groups()]


def _rows(db) -> dict:
    from calib.experiments import Store
    with Store(db, create=False) as s:
        keys = [k for (k,) in s.conn.execute("SELECT key FROM runs")]
        assert len(keys) == len(set(keys))
        return {r["key"]: r["info"]["pid"] for r in s.rows(status="done")}


def test_two_sweeps_split_the_work_and_take_over_a_killed_one(setup, tmp_path):
    from calib.experiments import expand_grid
    root, grids = setup
    db = tmp_path / "runs.db"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CALIB_CACHE": str(root / "cache")}

    # 1. two sweeps at once, both to the end: every job computed once, by one of them
    a, b = (_start(grids[0], db, env, tmp_path / f"{n}1.log") for n in "ab")
    assert a.wait(timeout=240) == 0 and b.wait(timeout=240) == 0
    keys = {j.key for j in expand_grid(grids[0])}
    rows = _rows(db)
    assert set(rows) == keys
    (ta, _, da, fa), (tb, _, db_, fb) = _summary(tmp_path / "a1.log"), _summary(tmp_path / "b1.log")
    assert ta == tb == 6 and fa == fb == 0
    assert da + db_ == 6 and da >= 1 and db_ >= 1  # split, not duplicated
    assert sorted(rows.values()).count(a.pid) == da and sorted(rows.values()).count(b.pid) == db_
    assert _claims(db) == {}  # released

    # 2. two sweeps on the next grid; A is SIGKILLed while it holds a claim, B takes it over
    a, b = (_start(grids[1], db, env, tmp_path / f"{n}2.log") for n in "ab")
    held = None
    deadline = time.time() + 180
    while held is None and time.time() < deadline and a.poll() is None:
        owners = _claims(db)
        if {a.pid, b.pid} <= set(owners.values()):
            os.kill(a.pid, signal.SIGSTOP)  # frozen: what it holds cannot change under us
            held = [k for k, p in _claims(db).items() if p == a.pid]
            if held:
                os.kill(a.pid, signal.SIGKILL)
            else:  # between two jobs: let it go on and look again
                os.kill(a.pid, signal.SIGCONT)
                held = None
        time.sleep(0.05)
    assert held, ((tmp_path / "a2.log").read_text()[-2000:], (tmp_path / "b2.log").read_text()[-2000:])
    a.wait()
    assert b.wait(timeout=240) == 0, (tmp_path / "b2.log").read_text()[-3000:]
    keys2 = {j.key for j in expand_grid(grids[1])}
    rows = _rows(db)
    assert set(rows) == keys | keys2  # every job of both grids, each once
    by_a = [k for k in keys2 if rows[k] == a.pid]
    total, skipped, done, failed = _summary(tmp_path / "b2.log")
    assert total == 6 and failed == 0 and done == 6 - len(by_a)  # B counts only its own rows
    assert rows[held[0]] == b.pid  # the killed sweep's claim, taken over
    assert _claims(db) == {}
