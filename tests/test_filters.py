"""Perplexity filter, Min-K%++ and n-gram similarity."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from calib import filters
from calib.errors import CalibError
from calib.world.sources import documents
from factory import save, tiny_world_model, world_tokenizer

torch.set_num_threads(1)


# ----------------------------------------------------------------------- perplexity filter
def test_ppl_filter_hand_example():
    ppl = np.arange(1.0, 11.0)                 # 80th percentile, linear: 8 + 0.2 * (9 - 8) = 8.2
    assert filters.ppl_keep(ppl, 20).tolist() == [True] * 8 + [False] * 2
    shuffled = np.array([9.0, 2.0, 10.0, 1.0, 8.0])   # 90th percentile: 9.6 -> only 10 goes
    assert filters.ppl_keep(shuffled, 10).tolist() == [True, True, False, True, True]
    # ties at the threshold are dropped: the rule is strictly below
    assert not filters.ppl_keep(np.full(5, 3.0), 20).any()


@pytest.mark.parametrize("k", [1, 10, 20, 37.5, 50, 99])
def test_ppl_filter_matches_numpy_percentile(k):
    rng = np.random.default_rng(int(k * 10))
    ppl = np.concatenate([rng.lognormal(2, 1, 500), np.repeat(rng.lognormal(2, 1, 5), 20)])  # with ties
    keep = filters.ppl_keep(ppl, k)
    thr = np.percentile(ppl, 100 - k)
    assert np.array_equal(np.flatnonzero(keep), np.flatnonzero(ppl < thr))
    assert abs(keep.mean() - (1 - k / 100)) < 0.05 + 20 / len(ppl)


@pytest.mark.parametrize("k", [0, 100, -5, 120, float("nan"), "20", True])
def test_k_outside_0_100_is_refused(k):
    with pytest.raises(CalibError, match="k must be a percentage strictly between 0 and 100"):
        filters.ppl_keep([1.0, 2.0], k)


def test_perplexity_matches_the_models_own_loss():
    model, tok = tiny_world_model(400, 256), world_tokenizer(400)
    texts = [d[:300] for d in documents("world/web", 7)] + ["ok"]
    ppl = filters.perplexities(model, tok, texts, batch_size=3, progress=False)
    with torch.no_grad():
        ref = [math.exp(model(input_ids=ids, labels=ids).loss.item())
               for ids in (tok(t, return_tensors="pt").input_ids for t in texts)]
    np.testing.assert_allclose(ppl, ref, rtol=1e-4)


# ---------------------------------------------------------------------------------- Min-K%++
def test_mink_pp_hand_example():
    # p = (1/2, 1/4, 1/4): mu = -1.5 ln2, sigma = 0.5 ln2, so token 0 scores +1 and token 1 scores -1
    a = torch.tensor([0.5, 0.25, 0.25]).log()
    b = torch.tensor([0.25, 0.5, 0.25]).log()
    logits = torch.stack([a, a + 3.0, b, b])         # a shift changes nothing; the last row is unused
    ids = torch.tensor([2, 0, 1, 1])                 # predicted: 0 under a, 1 under a, 1 under b
    scores = filters.mink_pp_tokens(ids, logits)
    torch.testing.assert_close(scores, torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
    assert filters.mink_pp_score(scores, 50) == pytest.approx(-1.0)      # lowest 1 of 3
    assert filters.mink_pp_score(scores, 100) == pytest.approx(1 / 3)    # all tokens
    assert filters.mink_pp_score([3.0, -2.0, 0.5, 1.0], 50) == pytest.approx(-0.75)


def test_mink_pp_on_a_model_runs_batched_in_order():
    model, tok = tiny_world_model(400, 256), world_tokenizer(400)
    texts = [d[:200] for d in documents("world/encyclopedia", 5)]
    s = filters.mink_pp(model, tok, texts, k=50, batch_size=2, progress=False)
    one = [filters.mink_pp(model, tok, [t], k=50, progress=False)[0] for t in texts]
    np.testing.assert_allclose(s, one, rtol=1e-5)
    with pytest.raises(CalibError):
        filters.mink_pp(model, tok, texts, k=0)


# -------------------------------------------------------------------------------- similarity
def test_exact_jaccard_hand_example():
    assert filters.exact_jaccard(["a b c d"], ["b c d e"]) == pytest.approx(1 / 3)
    assert filters.exact_jaccard(["A b C"], ["a B c"]) == 1.0


@pytest.mark.parametrize("pair", [("world/web", "world/pretrain"), ("world/encyclopedia", "world/mixed"),
                                  ("world/web", "world/web")])
def test_minhash_estimate_is_within_its_error_of_exact(pair):
    a = documents(pair[0], 60, seed=0)
    b = documents(pair[1], 60, seed=0 if pair[0] != pair[1] else 1)
    exact = filters.exact_jaccard(a, b)
    num_perm = 256
    est = filters.minhash_jaccard(a, b, num_perm=num_perm)
    se = math.sqrt(exact * (1 - exact) / num_perm)
    assert 0.01 < exact < 0.99
    assert abs(est - exact) <= 4 * se + 1 / num_perm


def test_minhash_extremes_and_lsh():
    a = documents("world/web", 20)
    assert filters.minhash_jaccard(a, a) == 1.0
    assert filters.minhash_jaccard(["alpha beta gamma delta"], ["one two three four"]) == 0.0
    assert filters.lsh_overlap(a[:5], a[3:10] + ["x y z w"], threshold=0.8) == pytest.approx(2 / 5)
    with pytest.raises(CalibError, match="threshold"):
        filters.lsh_overlap(a, a, threshold=1.5)


def test_cli_generate_filter_similarity(tmp_path, capsys):
    from calib.cli import main
    import json
    model = save(tiny_world_model(400, 256), world_tokenizer(400), tmp_path / "m")
    syn, kept = tmp_path / "s.jsonl", tmp_path / "f.jsonl"
    assert main(["generate", "world/encyclopedia", "--model", model, "--out", str(syn), "--ndocs", "10",
                 "--max-new-tokens", "16", "--batch-size", "5"]) == 0
    assert len(syn.read_text().splitlines()) == 10
    assert main(["filter", str(syn), "--model", model, "--out", str(kept), "--k", "20"]) == 0
    rows = [json.loads(x) for x in kept.read_text().splitlines()]
    assert len(rows) == 8 and all("ppl" in r for r in rows)
    assert main(["filter", str(syn), "--model", model, "--out", str(kept), "--k", "100"]) == 2
    assert "strictly between 0 and 100" in capsys.readouterr().err
    assert main(["similarity", "world/web", str(syn), "--ndocs", "10", "--exact", "--model", model,
                 "--mink", "50"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"minhash_jaccard", "exact_jaccard", "mink_pp_a", "mink_pp_b"} <= set(out)


def test_ppl_keep_drops_non_finite_without_poisoning_the_threshold():
    from calib.filters import ppl_keep
    ppl = np.array([5.0, np.nan, 1.0, 3.0, np.inf, 2.0, 4.0])
    keep = ppl_keep(ppl, 20)
    finite = ppl[np.isfinite(ppl)]
    expected = np.isfinite(ppl) & (ppl < np.percentile(finite, 80))
    assert keep.tolist() == expected.tolist() and keep.sum() == 4
