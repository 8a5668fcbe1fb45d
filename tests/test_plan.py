"""--plan's counts (calib.experiments.plan): forward tokens per stage from the code's own passes,
deduplication, what a store and the cache already hold, and the command lines."""
from __future__ import annotations

import pytest

from calib.errors import CalibError
from calib.experiments import Job, expand_grid
from calib.experiments import plan as P


def _job(**kw):
    base = dict(method="wanda", sparsity=0.5, calibration={"source": "world/web", "nsamples": 8, "seqlen": 64},
                suite={"name": "world", "limit": 2, "n_alpaca": 4, "n_heldout": 3})
    return Job(**{**base, **kw})


def test_prune_and_generation_tokens_follow_the_passes(cache_env):
    from calib.models import model_config
    layers = model_config("world")["num_hidden_layers"]
    ctx = model_config("world")["max_position_embeddings"]
    n = 8 * 64
    assert P.prune_tokens(_job()) == round((2 - 1 / layers) * n)  # stats pass, then outputs but the last block's
    assert P.prune_tokens(_job(method="owl")) == round((3 - 1 / layers) * n)  # + OWL's dense ratio pass
    assert P.prune_tokens(_job(method="magnitude")) == 0
    syn = _job(synthetic={"n_docs": 5, "prefix_len": 2, "max_new_tokens": 100})
    assert P.generation_tokens(syn) == 2 * 5 * (1 + 2 + 100)  # sampled, then scored
    long = _job(synthetic={"n_docs": 5, "max_new_tokens": 5000})
    assert P.generation_tokens(long) == 2 * 5 * ctx  # cut to the model's positions
    pruned = _job(synthetic={"n_docs": 5, "prefix_len": 2, "max_new_tokens": 100, "generator": "pruned"})
    assert P.generation_tokens(pruned) == 2 * 5 * 103 + P.prune_tokens(pruned)


def test_evaluation_tokens_are_counted_from_the_requests(cache_env):
    from calib.models import load_tokenizer
    from calib.world.tasks import alpaca_texts, heldout_texts
    tok = load_tokenizer("world")
    j = _job()
    tokens, counted = P.evaluation_tokens(j)
    texts = sum(len(x) for x in tok(alpaca_texts(4) + heldout_texts(3))["input_ids"])
    assert counted and tokens > texts
    more, _ = P.evaluation_tokens(_job(suite={"name": "world", "limit": 4, "n_alpaca": 4, "n_heldout": 3}))
    assert more - texts == pytest.approx(2 * (tokens - texts), rel=0.35), "about linear in the items"
    assert P.evaluation_tokens(_job(suite={"name": "ppl", "n_alpaca": 4, "n_heldout": 3}))[0] == texts


def test_plan_deduplicates_and_reads_the_store_and_cache(cache_env, tmp_path):
    from calib.experiments import Store
    jobs = expand_grid({"method": "wanda", "sparsity": [0.5, 0.6], "suite": {"name": "ppl", "n_alpaca": 4},
                        "calibration": {"source": "world/web", "nsamples": 4, "seqlen": 32, "seed": {"range": 2}},
                        "synthetic": [None, {"n_docs": 4, "max_new_tokens": 8, "filter_rate": [0, 20]}]})
    p = P.plan(jobs + jobs[:3])
    assert p.jobs == 12 and p.calibration_sets == 6  # seeds x synthetic variants: the sparsity changes none
    # one generated corpus per calibration seed (its filter rates share it), whatever the sparsity
    assert p.generations == 2 and p.dense_evaluations == 1 and p.evaluations == 13
    ev = P.evaluation_tokens(jobs[0])[0]
    assert p.tokens == {"prune": sum(P.prune_tokens(j) for j in jobs), "generate": 2 * P.generation_tokens(jobs[-1]),
                        "evaluate": 13 * ev}
    with Store(tmp_path / "s.db") as store:
        store.put({"key": jobs[0].key, "status": "done", "params": {}})
        store.put({"key": jobs[1].key, "status": "failed", "params": {}})
        status = store.status()
    q = P.plan(jobs, status)
    assert (q.done, q.failed) == (1, 1)
    assert q.todo_tokens["evaluate"] == 12 * ev and q.todo_tokens["prune"] == p.tokens["prune"] - P.prune_tokens(
        jobs[0])
    cost = {"prune": 1.0, "generate": 2.0, "evaluate": 3.0, "per_job": 3600.0}
    assert q.hours(cost) == pytest.approx((p.tokens["prune"] + 2 * p.tokens["generate"] + 3 * p.tokens["evaluate"])
                                          / 3600 + 12)
    assert P.store_status(tmp_path / "none.db") == {} and not (tmp_path / "none.db").exists()


def test_token_cost_parsing():
    assert P.parse_cost("2e-5") == {"prune": 2e-5, "generate": 2e-5, "evaluate": 2e-5, "per_job": 0.0}
    assert P.parse_cost("evaluate=1e-6,per_job=30") == {"prune": 0.0, "generate": 0.0, "evaluate": 1e-6,
                                                        "per_job": 30.0}
    with pytest.raises(CalibError, match="unknown stage 'eval'.*prune, generate, evaluate, per_job"):
        P.parse_cost("eval=1")
    with pytest.raises(CalibError, match="expected seconds per token"):
        P.parse_cost("fast")
    with pytest.raises(CalibError, match=">= 0 and not all zero"):
        P.parse_cost("-1")


def test_n_parameters_of_a_llama_config():
    cfg = {"hidden_size": 8, "num_hidden_layers": 2, "intermediate_size": 16, "vocab_size": 10,
           "num_attention_heads": 2, "num_key_value_heads": 1, "tie_word_embeddings": False}
    # per layer: q, o 8x8; k, v 8x4; mlp 3 x 8x16; embeddings and head 10x8 each
    assert P.n_parameters(cfg) == 2 * (2 * 64 + 2 * 32 + 3 * 128) + 2 * 80
    assert P.n_parameters({"model_type": "openlm"}) is None


def test_calib_run_plan(tmp_path, capsys, cache_env):
    from calib.cli import main
    assert main(["run", "examples/grids/world.yaml", "--plan", "--store", str(tmp_path / "r.db")]) == 0
    out = capsys.readouterr().out
    n = len(expand_grid("examples/grids/world.yaml"))
    row = out.splitlines()[2].split()
    assert row[0] == "world.yaml" and int(row[1]) == n and row[2] == "0"
    assert "hours on one worker at the world model on one CPU thread" in out
    assert not (tmp_path / "r.db").exists()
    grid = tmp_path / "real.yaml"
    grid.write_text("model: /models/DCLM-7B\nmethod: wanda\n")
    assert main(["run", str(grid), "--plan"]) == 2
    err = capsys.readouterr().err
    assert "no model at /models/DCLM-7B" in err and "--plan needs only the model's config.json" in err


def test_planned_fast_tokens_are_what_fastlm_feeds(cache_env, monkeypatch):
    """The plan counts the fast scorer's tokens with the prefix plan FastLM runs, and HFLM's as every
    unique model input: on the world suite, the fast count equals what FastLM reports feeding in a
    real evaluation, and is smaller than HFLM's (more so the more items share a few-shot block)."""
    from calib import evaluate
    from calib.models import load
    suite = {"name": "world", "limit": 6, "n_alpaca": 3, "n_heldout": 2}
    job = _job(suite=suite)
    texts = P.evaluation_tokens(_job(suite={**suite, "name": "ppl", "limit": None}))[0]
    fast = P.evaluation_tokens(job, "fast")[0] - texts
    hflm = P.evaluation_tokens(job, "hflm")[0] - texts
    made = []
    real_lm = evaluate._lm
    monkeypatch.setattr(evaluate, "_lm", lambda *a: made.append(real_lm(*a)) or made[-1])
    model, tok = load("world")
    evaluate.run_suite(model, tok, job.evaluation)
    assert made[0].stats["tokens_fed"] == fast
    assert hflm > 1.5 * fast and made[0].stats["unique_input_tokens"] == hflm
