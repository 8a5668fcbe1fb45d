"""Do the world tasks measure? Per task on the committed world model: dense accuracy,
chance, accuracy after Wanda at 60% (the realism report's calibration: world/pretrain,
64 x 128 tokens, seed 0) and the drop, through lm-eval as the report runs them (issue 10).

Then a probe of BoolQ-format questions: does the model's yes-minus-no log-likelihood
separate true from false claims at all? The AUC (0.5 = no signal) on the suite's BoolQ
items and on region questions in the only yes/no wording pretraining has (the web FAQ:
"Question: is X in the R region?\\nAnswer: yes"), bare, under the FAQ's header, and after
a passage that states the region.

    OMP_NUM_THREADS=1 python bench/world_tasks_band.py [--model DIR] [--no-probe]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def band(model_dir) -> dict:
    import torch
    from calib.data import calibration_tensor
    from calib.evaluate import Suite, accuracies, run_suite
    from calib.prune import prune
    from calib.models import load
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model, tok = load(model_dir)
    suite = Suite.of({"name": "world", "n_alpaca": 8, "n_heldout": 0})
    dense = accuracies(run_suite(model, tok, suite))
    prune(model, calibration_tensor("world/pretrain", tok, nsamples=64, seqlen=128, seed=0),
          method="wanda", sparsity=0.6)
    return {"dense": dense, "wanda@0.6": accuracies(run_suite(model, tok, suite)), "model": model, "tok": tok}


def yes_minus_no(model, tok, queries: list[str]) -> np.ndarray:
    """log P(" yes") - log P(" no") after each query, tokenized as lm-eval's HFLM does."""
    from calib.evaluate import token_nll
    pairs = [(q, c) for q in queries for c in (" yes", " no")]
    n_ctx = [len(ids) for ids in tok([q for q, _ in pairs])["input_ids"]]
    nll = token_nll(model, tok, [q + c for q, c in pairs], batch_size=64)
    ll = np.array([-float(v[m - 1:].sum()) for v, m in zip(nll, n_ctx)])
    return ll[0::2] - ll[1::2]


def auc(margin: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """AUC of the margin for truth, with a 95% bootstrap interval (scipy)."""
    from scipy.stats import bootstrap, mannwhitneyu

    def stat(m, y):
        y = y.astype(bool)
        return mannwhitneyu(m[y], m[~y]).statistic / (y.sum() * (~y).sum())
    ci = bootstrap((margin, truth.astype(float)), stat, paired=True, vectorized=False, n_resamples=999,
                   random_state=0).confidence_interval
    return float(stat(margin, truth)), float(ci.low), float(ci.high)


def region_probes() -> dict[str, tuple[list[str], np.ndarray]]:
    """Every city asked about its own region and about one other region, three ways."""
    from calib.world.sources import kb
    k = kb()
    rng = np.random.default_rng(0)
    regions = [r["name"] for r in k.regions]
    asked, truth = [], []
    for c in k.cities:
        wrong = sorted(set(regions) - {c["region"]})[int(rng.integers(len(regions) - 1))]
        asked += [(c, c["region"]), (c, wrong)]
        truth += [1, 0]
    q = "Question: is {n} in the {r} region?\nAnswer:"
    forms = {"FAQ wording, bare": "", "FAQ wording, under 'FAQ about X'": "FAQ about {n}\n",
             "FAQ wording, after a passage stating the region": "{n} is a city in the {true} region.\n"}
    return {name: ([(pre + q).format(n=c["name"], r=r, true=c["region"]) for c, r in asked], np.array(truth))
            for name, pre in forms.items()}


def main(argv=None) -> int:
    from calib.world.model import MODEL_DIR
    from calib.world.tasks import CHANCE, TASKS, make_items
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=MODEL_DIR)
    ap.add_argument("--no-probe", action="store_true", help="skip the BoolQ yes/no probe")
    args = ap.parse_args(argv)
    t0 = time.time()
    res = band(args.model)
    d, p = res["dense"], res["wanda@0.6"]
    print("| task | chance | dense | Wanda 60% | drop (points) | in band (chance + 15 .. 95) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for t in TASKS:
        ok = CHANCE[t] + 0.15 <= d[t] <= 0.95
        print(f"| {t} | {100 * CHANCE[t]:.0f} | {100 * d[t]:.1f} | {100 * p[t]:.1f} | "
              f"{100 * (d[t] - p[t]):.1f} | {'yes' if ok else 'no'} |")
    avg_d, avg_p, chance = (float(np.mean(list(x.values()))) for x in (d, p, CHANCE))
    print(f"| average | {100 * chance:.1f} | {100 * avg_d:.1f} | {100 * avg_p:.1f} | {100 * (avg_d - avg_p):.1f} | "
          f"R5 (>= chance + 30, <= 90): {'yes' if chance + 0.30 <= avg_d <= 0.90 else 'no'} |")
    if not args.no_probe:
        from calib.models import load
        dense, tok = load(args.model)
        boolq = make_items("world_boolq")
        probes = {"suite BoolQ items": ([it["query"] for it in boolq], np.array([it["label"] for it in boolq])),
                  **region_probes()}
        print("\n| yes/no probe | items | AUC dense [95% CI] | AUC Wanda 60% [95% CI] |\n| --- | --- | --- | --- |")
        for name, (queries, truth) in probes.items():
            cells = []
            for model in (dense, res["model"]):
                a, lo, hi = auc(yes_minus_no(model, tok, queries), truth)
                cells.append(f"{a:.3f} [{lo:.3f}, {hi:.3f}]")
            print(f"| {name} | {len(queries)} | {cells[0]} | {cells[1]} |")
    print(f"\n{time.time() - t0:.0f} s; load average {os.getloadavg()[0]:.1f} (re-measure on a quiet machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
