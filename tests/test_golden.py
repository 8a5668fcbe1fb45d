"""Each stage that produces results has an output version in every job key (calib.data.VERSION,
calib.synth.VERSION, calib.filters.VERSION, calib.prune.methods.VERSIONS, calib.evaluate.VERSION).
This test keeps a digest of each stage's output on the world model, at small sizes, next to the
version it was computed under (tests/golden.json), and fails when an output changes while its
version does not: old rows would otherwise be reused for results the new code computes differently.

After a deliberate change: bump the stage's version, then rewrite the file with
``CALIB_GOLDEN=update pytest tests/test_golden.py``.

A pruner's mask is also kept as a sample of ``SAMPLE_BITS`` fixed positions. SparseGPT's masks
differ by a few tenths of a percent between CPUs (the same code gave another digest on two x86
machines: its Cholesky and matmul rounding cascade through the weight updates), so a pruner whose
digest moved still passes while its sample agrees within ``MASK_TOLERANCE``: measured on the world
model, float64 against float32 moves 0.08% of SparseGPT's mask bits and a 1e-7 weight jitter
0.3%, while a real change (Wanda's score with ||x||^2) moves 7.4%. Digests seen on other CPUs under
the same version are kept in the stage's ``also`` list and match exactly.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).with_name("golden.json")
SAMPLE_BITS = 8192      # mask positions kept per pruner (fixed by a seeded draw over the decoder's linears)
MASK_TOLERANCE = 0.01   # share of sampled mask bits that may differ under the same version (other CPUs)


def _mask_sample(model) -> str:
    """The pruned model's mask at SAMPLE_BITS fixed positions, packed and base64-encoded."""
    import base64

    import numpy as np
    import torch
    bits = torch.cat([p.detach().flatten() == 0 for n, p in sorted(model.named_parameters())
                      if "layers." in n and p.dim() == 2]).numpy()
    at = np.sort(np.random.default_rng(0).choice(bits.size, SAMPLE_BITS, replace=False))
    return base64.b64encode(np.packbits(bits[at]).tobytes()).decode()


def _differ(a: str, b: str) -> float:
    import base64

    import numpy as np
    x, y = (np.unpackbits(np.frombuffer(base64.b64decode(v), dtype=np.uint8)) for v in (a, b))
    return float((x != y).mean())


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
        out[f"pruner/{m}"] = (VERSIONS[m], r.mask_hash, _mask_sample(model))
    return out


def problems(got: dict, stored: dict) -> list[str]:
    """What is wrong between this code's outputs and the recorded ones ([] when all agree)."""
    fix = "CALIB_GOLDEN=update pytest tests/test_golden.py"
    if sorted(stored) != sorted(got):
        return [f"stages added or removed: {fix}"]
    out = []
    for stage, now in got.items():
        was = stored[stage]
        if now["version"] == was["version"] and now["digest"] not in [was["digest"], *was.get("also", [])]:
            if "sample" in now and "sample" in was and _differ(now["sample"], was["sample"]) <= MASK_TOLERANCE:
                continue  # the same masks up to another CPU's rounding (module docstring)
            out.append(f"{stage}: its output changed but its version ({now['version']}) did not; bump it, then {fix}")
        elif now["version"] != was["version"]:
            out.append(f"{stage}: version {was['version']} -> {now['version']}; record its new output with {fix}")
    return out


def _got(outputs):
    return {k: {"version": v[0], "digest": v[1], **({"sample": v[2]} if len(v) > 2 else {})}
            for k, v in outputs.items()}


def test_a_changed_output_has_a_new_version(outputs):
    got = _got(outputs)
    if os.environ.get("CALIB_GOLDEN") == "update":   # same version, another CPU's digest: kept in "also"
        old = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        for stage, now in got.items():
            was = old.get(stage, {})
            if was.get("version") == now["version"]:
                also = [d for d in [*was.get("also", []), was["digest"]] if d != now["digest"]]
                now.update({"also": sorted(set(also))} if also else {})
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
    got["pruner/wanda"] = {**got["pruner/wanda"], "digest": r.mask_hash, "sample": _mask_sample(model)}
    stored = json.loads(GOLDEN.read_text())
    assert _differ(got["pruner/wanda"]["sample"], stored["pruner/wanda"]["sample"]) > 5 * MASK_TOLERANCE
    found = problems(got, stored)
    assert len(found) == 1 and found[0].startswith("pruner/wanda: its output changed but its version (1) did not")


def test_a_mask_within_another_cpus_rounding_passes_and_one_beyond_fails(outputs):
    """A digest that moved with its sample within MASK_TOLERANCE is the same output; beyond it, not."""
    import base64

    import numpy as np
    got = _got(outputs)
    bits = np.unpackbits(np.frombuffer(base64.b64decode(got["pruner/sparsegpt"]["sample"]), dtype=np.uint8))
    for share, ok in ((0.005, True), (0.03, False)):
        flip = bits.copy()
        flip[: int(share * bits.size)] ^= 1
        moved = {**got, "pruner/sparsegpt": {"version": got["pruner/sparsegpt"]["version"], "digest": "other",
                                             "sample": base64.b64encode(np.packbits(flip).tobytes()).decode()}}
        assert (problems(moved, got) == []) == ok, share
