"""Predicting a calibration set's quality before pruning (the book's Beyond chapter):
for each set behind a chapter's rows, its Min-50%++, its MinHash 3-gram Jaccard to the
pretraining data and its activation-profile distance, cached per (model, set).
The measures themselves are calib.predictors; this is the book's glue to the store.
"""
from __future__ import annotations

from calib.book.profiles import by_role
from calib.predictors import activation_profile, profile_distance

def pretraining_texts(s: dict, n: int) -> list[str]:
    """The model's pretraining data: the world model's own training split, or the
    source in the DCLM role for a hub model (the paper's DCLM-7B)."""
    from calib import data
    from calib.models import WORLD_MODELS
    if s["model"] in WORLD_MODELS:
        from calib.world import sources
        return sources.documents("world/pretrain", n, seed=0, split="train")
    return data.load_texts(by_role(s, "dclm"), pool=n)


def predictors(s: dict, df, grid, progress: bool = False):
    """For each calibration set behind the rows of ``df`` (one per calib_hash): its
    Min-50%++ (mean over windows), its MinHash 3-gram Jaccard to the pretraining data,
    and the distance of its activation profile to that of a held-out pretraining set.
    Cached per (model, set) under the cache dir."""
    import json

    import pandas as pd

    from calib.cache import cache_dir, digest
    from calib.experiments import Job, expand_grid
    from calib.experiments.run import calibration_set, load
    from calib.filters import minhash_jaccard, mink_pp
    from calib.io import atomic_write
    from calib.models import model_identity
    jobs = {j.key: j for j in expand_grid(grid)}
    first = jobs[df.key.iloc[0]]
    model, tok = load(first)
    mid = model_identity(first.model)
    pre_src = by_role(s, "dclm")
    ref_job = Job(**{**first.params(), "synthetic": None,
                     "calibration": {**first.calibration, "source": pre_src, "seed": 10_000}})
    ref_ids, _ = calibration_set(ref_job, model, tok)
    ref = activation_profile(model, ref_ids)
    pre_texts = pretraining_texts(s, s["stat_docs"])
    out = []
    for h, key in df.groupby("calib_hash")["key"].first().items():
        f = cache_dir() / "predictors" / f"{digest([mid, h, ref_job.key])[:32]}.json"
        if f.is_file():
            out.append(json.loads(f.read_text()))
            continue
        ids, _ = calibration_set(jobs[key], model, tok)
        texts = tok.batch_decode(ids, skip_special_tokens=True)
        row = {"calib_hash": h,
               "Min-50%++": float(mink_pp(model, tok, texts, k=50, progress=progress).mean()),
               "MinHash 3-gram Jaccard": minhash_jaccard(texts, pre_texts),
               "activation distance": profile_distance(activation_profile(model, ids), ref)}
        atomic_write(f, json.dumps(row))
        out.append(row)
    return pd.DataFrame(out)
