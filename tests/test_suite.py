"""calib.evaluate's Suite and run_suite: one owner for "evaluate a suite", and the per-item records
(acc, acc_norm, the gold choice's normalised log-score, the item's fact) every evaluation keeps."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from calib.errors import CalibError
from calib.evaluate import Suite, decode_records, encode_records, run_suite, suite_requests

ROOT = Path(__file__).resolve().parents[1]


def test_suite_defaults_and_canonical_form_keep_job_keys():
    """A job's suite is the Suite's canonical mapping: the same fields, values and order of tasks
    as before Suite existed, so job keys do not change."""
    from calib.experiments import Job
    from calib.world.tasks import N_ALPACA, N_HELDOUT, TASKS
    world = Suite.of("world")
    assert world.as_dict() == {"name": "world", "limit": None, "n_alpaca": N_ALPACA, "n_heldout": N_HELDOUT,
                               "tasks": TASKS, "shots": {}}
    assert Suite.of({"name": "world", "tasks": list(reversed(TASKS))}) == world  # canonical order
    paper = Suite.of({"name": "paper", "shots": {"mmlu": 0}})
    assert paper.as_dict()["shots"]["mmlu"] == 0 and paper.as_dict()["shots"]["boolq"] == 0
    assert Job(suite="world").suite == world.as_dict() and Job(suite="world").evaluation == world
    assert hash(world) == hash(Suite.of(None))  # hashable: preflight dedups by suite
    with pytest.raises(CalibError, match=r"suite\.tasks: unknown task 'boolq'; valid choices: world_boolq"):
        Suite.of({"name": "world", "tasks": ["boolq"]})
    with pytest.raises(CalibError, match=r"--limit: expected an integer >= 1; got 0"):
        Suite.of({"limit": 0}, flags={"limit": "--limit"})
    with pytest.raises(CalibError, match=r"suite\.shots: only the paper suite takes shot counts"):
        Suite.of({"name": "world", "shots": {"world_mmlu": 1}})


def test_one_function_evaluates_a_suite_for_every_caller():
    """lm_eval_tasks and perplexity are called by run_suite alone among calib's modules (jobs, the
    CLI, the realism report), and requests are built by suite_requests alone."""
    calls = {}
    for f in (ROOT / "calib").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                if name in ("lm_eval_tasks", "build_all_requests", "run_suite"):
                    calls.setdefault(name, set()).add(f.relative_to(ROOT).as_posix())
    assert calls["lm_eval_tasks"] == {"calib/evaluate.py"}
    assert calls["build_all_requests"] == {"calib/evaluate.py"}
    assert {"calib/experiments/run.py", "calib/cli/evaluate.py", "calib/realism.py"} <= calls["run_suite"]


def test_records_hold_what_lm_eval_scored(cache_env):
    """Per item: acc is the argmax of the choices' log-likelihoods at the label, the log-score is the
    log-softmax of those log-likelihoods at the label (recomputed here from HFLM's own scores of the
    same requests), and the fact is the item's knowledge-base fact, in doc order."""
    from lm_eval.models.huggingface import HFLM

    from calib.models import load
    from calib.world.tasks import make_items
    model, tok = load("world")
    suite = Suite.of({"name": "world", "tasks": ["world_arc_easy", "world_winogrande"], "limit": 12, "n_alpaca": 4,
                      "n_heldout": 3})
    res = run_suite(model, tok, suite)
    assert set(res["metrics"]) >= {"alpaca_ppl", "heldout_nll", "world_arc_easy/acc", "avg"}
    assert res["meta"]["alpaca_texts"] == 4 and res["meta"]["heldout_texts"] == 3
    hf = HFLM(pretrained=model, tokenizer=tok, batch_size=8)
    for task in suite.tasks:
        rec = res["records"][task]
        items = make_items(task, 12)
        assert rec["fact"] == [x["fact"] for x in items] and rec["doc_id"] == list(range(12))
        reqs = [i for _, g in suite_requests(Suite.of({**suite.as_dict(), "tasks": [task]})) for i in g]
        lls = np.array([ll for ll, _ in hf.loglikelihood(reqs, disable_tqdm=True)])
        per_doc: dict = {}
        for inst, ll in zip(reqs, lls):
            per_doc.setdefault(inst.doc_id, []).append((inst.idx, ll))
        for d, pairs in per_doc.items():
            ll = np.array([v for _, v in sorted(pairs)])
            gold = items[d]["label"]
            assert rec["acc"][d] == int(np.argmax(ll) == gold)
            assert rec["logscore"][d] == pytest.approx(ll[gold] - np.logaddexp.reduce(ll), abs=1e-4)
        assert np.mean(rec["acc"]) == pytest.approx(res["metrics"][f"{task}/acc"])


def test_records_round_trip_compactly_and_old_rows_are_seen():
    rec = {"t": {"doc_id": [0, 1, 2], "acc": [1, 0, 1], "acc_norm": [0, 0, 1], "logscore": [-0.1, -2.5, -0.7],
                 "fact": ["city:Ab|region:Ab", "tool:Cd", "city:Ab"]}}  # a two-hop item names both hops
    enc = encode_records(rec)
    assert enc["t"]["acc"] == "101" and json.loads(enc["t"]["fact"]) == rec["t"]["fact"]
    dec = decode_records(enc)["t"]
    assert dec["acc"].tolist() == [1, 0, 1] and dec["acc_norm"].tolist() == [0, 0, 1]
    assert np.allclose(dec["logscore"], [-0.1, -2.5, -0.7], atol=1e-6) and dec["fact"].tolist() == rec["t"]["fact"]
    before = decode_records({"t": {"acc": "10", "fact": "city:Ab|tool:Cd"}})["t"]  # facts joined by '|' before
    assert before["fact"].tolist() == ["city:Ab", "tool:Cd"]
    old = decode_records({"t": "0110"})["t"]  # a row from before records: acc only, nothing guessed
    assert set(old) == {"acc"} and old["acc"].tolist() == [0, 1, 1, 0]


def test_every_world_item_rests_on_a_fact_of_the_knowledge_base():
    from calib.world.tasks import TASKS, fact_pool, make_items
    facts = {t: [f for x in make_items(t) for f in x["fact"].split("|")] for t in TASKS}  # two-hop: both
    every = {f for fs in facts.values() for f in fs}
    assert every <= fact_pool() and len(every) < sum(map(len, facts.values()))
    shared = {f for f in every if sum(f in set(fs) for fs in facts.values()) > 1}
    assert shared  # facts asked about by several tasks: why verdicts resample facts jointly
