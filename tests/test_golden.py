"""Each stage that produces results has an output version in every job key (calib.data.VERSION,
calib.synth.VERSION, calib.filters.VERSION, calib.prune.methods.VERSIONS, calib.evaluate.VERSION).
This test keeps a digest of each stage's output on the world model, at small sizes, next to the
version it was computed under (tests/golden.json), and fails when an output changes while its
version does not: old rows would otherwise be reused for results the new code computes differently.

After a deliberate change: bump the stage's version, then rewrite the file with
``CALIB_GOLDEN=update pytest tests/test_golden.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).with_name("golden.json")


def _floats(values, digits: int = 5) -> str:
    """A digest of numbers to ``digits`` significant digits: what a stage computes, not the last ulp."""
    return hashlib.sha256(json.dumps([float(f"{v:.{digits}g}") for v in values]).encode()).hexdigest()


pytestmark = pytest.mark.slow  # 30 s of CPU: five pruners, a generation and the world suite


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    import torch

    from calib import data, evaluate, filters, synth
    from calib.models import load
    from calib.prune import prune
    from calib.prune.methods import METHODS, VERSIONS
    torch.manual_seed(0)
    model, tok = load("world", progress=False)
    out = {}
    ids = data.sample("world/pretrain", tok, 4, 64, seed=0).input_ids
    out["sampling"] = (data.VERSION, data.calibration_hash(ids))
    texts = data.load_texts("world/web", 2)
    rows = synth.generate(model, tok, texts, tmp_path_factory.mktemp("g") / "gen.jsonl", prefix_len=2,
                          max_new_tokens=12, batch_size=2, seed=0, progress=False)
    gen = [r["text"] for r in rows]
    out["generation"] = (synth.VERSION, synth.texts_digest(gen))
    out["filter"] = (filters.VERSION, _floats(filters.perplexities(model, tok, texts + gen, progress=False)))
    res = evaluate.run_suite(model, tok, {"name": "world", "limit": 4, "n_alpaca": 4, "n_heldout": 4})
    out["scoring"] = (evaluate.VERSION, _floats([res["metrics"][k] for k in sorted(res["metrics"])]))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for m in METHODS:
        model.load_state_dict(state)
        r = prune(model, ids, method=m, sparsity=0.5, progress=False)
        out[f"pruner/{m}"] = (VERSIONS[m], r.mask_hash)
    return out


def problems(got: dict, stored: dict) -> list[str]:
    """What is wrong between this code's outputs and the recorded ones ([] when all agree)."""
    fix = "CALIB_GOLDEN=update pytest tests/test_golden.py"
    if sorted(stored) != sorted(got):
        return [f"stages added or removed: {fix}"]
    out = []
    for stage, now in got.items():
        was = stored[stage]
        if now["version"] == was["version"] and now["digest"] != was["digest"]:
            out.append(f"{stage}: its output changed but its version ({now['version']}) did not; bump it, then {fix}")
        elif now["version"] != was["version"]:
            out.append(f"{stage}: version {was['version']} -> {now['version']}; record its new output with {fix}")
    return out


def _got(outputs):
    return {k: {"version": v, "digest": d} for k, (v, d) in outputs.items()}


def test_a_changed_output_has_a_new_version(outputs):
    got = _got(outputs)
    if os.environ.get("CALIB_GOLDEN") == "update":
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    assert problems(got, json.loads(GOLDEN.read_text())) == []


def test_a_pruner_changed_without_a_bump_fails(outputs, monkeypatch):
    """The guard bites: wanda scoring |W| * ||x||^2 instead of |W| * ||x|| changes its masks, and
    under the same version that is a failure naming the stage."""
    import torch

    from calib.models import load
    from calib.prune import masks, prune
    real = masks.wanda_score
    monkeypatch.setattr(masks, "wanda_score", lambda w, sq: real(w, sq) * sq.reshape(1, -1).sqrt())
    model, tok = load("world", progress=False)
    from calib import data
    ids = data.sample("world/pretrain", tok, 4, 64, seed=0).input_ids
    r = prune(model, ids, method="wanda", sparsity=0.5, progress=False)
    got = _got(outputs)
    got["pruner/wanda"] = {**got["pruner/wanda"], "digest": r.mask_hash}
    found = problems(got, json.loads(GOLDEN.read_text()))
    assert len(found) == 1 and found[0].startswith("pruner/wanda: its output changed but its version (1) did not")
