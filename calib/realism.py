"""The realism report: the measurements behind R1-R6 of the world's realism bar.

Each ``r*`` function measures one thing on a loaded model and returns plain
JSON-able numbers; ``build_report`` runs them all and says which targets hold.
It measures the world with the layers above it (data, prune, evaluate), so it
lives above them, not in world/; its output is world/report.json.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from calib.world import sources
from calib.world.tasks import heldout_texts

TARGETS = {
    "R1": "held-out loss on world/pretrain >= 1.0 nats/token",
    "R2": "60% unstructured Wanda (world/pretrain calibration): loss up >= 10% and avg accuracy down >= 3 points; 50% visibly less",
    "R3": "outlier features (max/median per-channel input norm) and Wanda beats magnitude at 60%",
    "R4": "Alpaca-role perplexity within 3x of pretraining perplexity",
    "R5": "dense avg accuracy >= chance + 30 points and <= 90%, >= 500 items per task",
    "R6": "word-3-gram Jaccard to pretraining: pretrain > web > mixed > encyclopedia",
}
REPORT_PATH = Path(sources.__file__).parent / "report.json"
REPORT_SOURCES = ["world/pretrain", "world/web", "world/mixed", "world/encyclopedia"]


R1_DOCS = 400  # held-out documents R1 scores (evaluations score world.tasks.N_HELDOUT)


def r1_heldout_loss(model, tok, n_docs: int = R1_DOCS) -> dict:
    from calib.evaluate import perplexity
    p = perplexity(model, tok, heldout_texts(n_docs))
    return {"heldout_nll": p["nll_per_token"], "heldout_ppl": p["ppl_corpus"], "n_tokens": p["n_tokens"]}


def r3_outlier_ratios(model, tok, n_docs: int = 64, seqlen: int = 256) -> dict:
    """max/median of per-channel input L2 norms at every projection's input."""
    import torch
    texts = heldout_texts(n_docs)
    enc = tok(texts, truncation=True, max_length=seqlen)["input_ids"]
    sq: dict[str, torch.Tensor] = {}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and ".layers." in name:
            def hook(m, inp, out, name=name):
                x = inp[0].detach().float().reshape(-1, inp[0].shape[-1])
                sq[name] = sq.get(name, 0) + (x * x).sum(0)
            hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            for ids in enc:
                model(input_ids=torch.tensor([ids]))
    finally:
        for h in hooks:
            h.remove()
    ratios = {}
    for name, s in sq.items():
        norm = s.sqrt()
        ratios[name] = float(norm.max() / norm.median().clamp_min(1e-12))
    by_proj: dict[str, list[float]] = {}
    for name, r in ratios.items():
        by_proj.setdefault(name.rsplit(".", 1)[-1], []).append(r)
    return {"per_linear": ratios,
            "summary": {p: {"median": float(np.median(v)), "max": float(np.max(v))} for p, v in sorted(by_proj.items())},
            "max": float(max(ratios.values()))}


def r4_alpaca(model, tok, heldout_ppl: float) -> dict:
    from calib.evaluate import perplexity
    from calib.world.tasks import alpaca_texts
    p = perplexity(model, tok, alpaca_texts())
    return {"alpaca_ppl_paper": p["ppl_paper"], "alpaca_ppl_corpus": p["ppl_corpus"],
            "ratio_to_pretrain_ppl": p["ppl_corpus"] / heldout_ppl}


def r6_jaccard(n_docs: int = 500, n_ref: int = 1500) -> dict:
    from calib.filters import exact_jaccard
    ref = sources.documents("world/pretrain", n_ref, split="train")
    return {s: exact_jaccard(sources.documents(s, n_docs, seed=1), ref) for s in REPORT_SOURCES}


def pruned_eval(model_dir, method: str, sparsity: float, source: str = "world/pretrain",
                nsamples: int = 64, seqlen: int = 128, seed: int = 0, suite: bool = True) -> dict:
    """Prune a fresh copy of the model and measure held-out loss (and, with ``suite``, the world
    suite: ``calib.evaluate.run_suite``'s result)."""
    from calib.data import calibration_tensor
    from calib.evaluate import Suite, run_suite
    from calib.models import load
    from calib.prune import prune
    model, tok = load(model_dir)
    ids = calibration_tensor(source, tok, nsamples=nsamples, seqlen=seqlen, seed=seed)
    prune(model, ids, method=method, sparsity=sparsity)
    res = run_suite(model, tok, Suite.of("world" if suite else {"name": "ppl", "n_alpaca": 0}))
    out = {"method": method, "sparsity": sparsity, "source": source, "seed": seed,
           "heldout_nll": res["metrics"]["heldout_nll"]}
    if suite:
        out["suite"] = res
    return out


def source_spread(model_dir, sparsities=(0.6, 0.7), seeds=(0, 1, 2), method: str = "wanda") -> dict:
    """Does the calibration source already matter? Held-out loss after pruning with each
    source, against the spread over sampling seeds (a finding, not a target)."""
    out = {}
    for s in sparsities:
        loss = {src: [pruned_eval(model_dir, method, s, src, seed=seed, suite=False)["heldout_nll"]
                      for seed in seeds] for src in REPORT_SOURCES}
        means = {k: float(np.mean(v)) for k, v in loss.items()}
        out[f"{method}@{s}"] = {"loss": loss, "mean": means,
                                "range_across_sources": max(means.values()) - min(means.values()),
                                "mean_std_over_seeds": float(np.mean([np.std(v, ddof=1) for v in loss.values()]))}
    return out


def _shown(path: Path) -> str:
    """A packaged model's folder relative to the checkout, so the committed report names no machine."""
    root = Path(__file__).resolve().parent.parent
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def build_report(model_dir=None, with_pruning: bool = True, progress: bool = True) -> dict:
    from calib.evaluate import Suite, accuracies, run_suite
    from calib.models import load
    from calib.world.model import MODEL_DIR
    from calib.world.tasks import CHANCE, N_ITEMS
    model_dir = Path(model_dir or MODEL_DIR)
    t0 = time.time()
    model, tok = load(model_dir)
    log = json.loads((model_dir / "training_log.json").read_text()) if (model_dir / "training_log.json").exists() else {}
    rep: dict = {"model_dir": _shown(model_dir), "params": sum(p.numel() for p in model.parameters()),
                 "train_tokens": log.get("train_tokens"), "final_train_loss": float(np.mean(log["losses"][-50:])) if log else None}
    say = print if progress else (lambda *a, **k: None)
    say("R1: held-out loss ...")
    rep["R1"] = r1_heldout_loss(model, tok)
    say("R3: outlier channels ...")
    rep["R3"] = r3_outlier_ratios(model, tok)
    say("R4: Alpaca-role perplexity ...")
    rep["R4"] = r4_alpaca(model, tok, rep["R1"]["heldout_ppl"])
    say("R5: world tasks (lm-eval) ...")
    dense = run_suite(model, tok, Suite.of({"name": "world", "n_heldout": 0}))  # R1 scored the held-out texts
    dense_acc, dense_avg = accuracies(dense), dense["metrics"]["avg"]
    chance = float(np.mean(list(CHANCE.values())))
    rep["R5"] = {"acc": dense_acc, "avg": dense_avg, "chance_avg": chance, "items_per_task": N_ITEMS,
                 "lm_eval_version": dense["meta"]["lm_eval"]}
    say("R6: Jaccard similarity ...")
    rep["R6"] = r6_jaccard()
    if with_pruning:
        say("R2/R3: pruning (wanda 50%, 60%; magnitude 60%) ...")
        runs = {f"{m}@{s}": pruned_eval(model_dir, m, s) for m, s in
                [("wanda", 0.5), ("wanda", 0.6), ("magnitude", 0.6)]}
        dense_loss = rep["R1"]["heldout_nll"]
        rep["R2"] = {k: {"heldout_nll": v["heldout_nll"], "loss_increase": v["heldout_nll"] / dense_loss - 1,
                         "avg": v["suite"]["metrics"]["avg"],
                         "avg_drop_points": 100 * (dense_avg - v["suite"]["metrics"]["avg"]),
                         "acc": accuracies(v["suite"]), "alpaca_ppl": v["suite"]["metrics"]["alpaca_ppl"]}
                     for k, v in runs.items()}
        say("source spread (wanda 60%/70%, 4 sources x 3 seeds) ...")
        rep["source_spread"] = source_spread(model_dir)
    rep["band"] = {t: {"dense": a, "chance": CHANCE[t], "in_band": CHANCE[t] + 0.15 <= a <= 0.95}
                   for t, a in dense_acc.items()}
    rep["checks"] = checks(rep)
    rep["identity"] = identity(model_dir, with_pruning)
    rep["seconds"] = time.time() - t0
    return rep


REPORT_VERSION = 2  # bump when a measurement of the report changes


def identity(model_dir=None, with_pruning: bool = True) -> dict:
    """What a report's numbers depend on: the model's files, the world tasks, the report's own version."""
    from calib.models import model_identity
    from calib.world.model import MODEL_DIR
    from calib.world.tasks import version
    return {"model": model_identity(Path(model_dir or MODEL_DIR)), "tasks": version(),
            "report": REPORT_VERSION, "with_pruning": with_pruning}


def cached_report(model_dir=None, with_pruning: bool = True, progress: bool = False) -> dict:
    """The report of a model, measured once: the committed world/report.json when it was measured
    on the same model, tasks and report version (a full report serves a reduced request too),
    else a copy in the cache dir, else built now and cached."""
    from calib.cache import cache_dir, digest
    from calib.io import atomic_write
    want = identity(model_dir, with_pruning)

    def serves(rep):
        have = rep.get("identity") or {}
        return all(have.get(k) == want[k] for k in ("model", "tasks", "report")) and \
            (have.get("with_pruning") or not with_pruning)

    if REPORT_PATH.is_file() and serves(json.loads(REPORT_PATH.read_text())):
        return json.loads(REPORT_PATH.read_text())
    f = cache_dir() / "realism" / f"{digest(want)[:32]}.json"
    if f.is_file():
        return json.loads(f.read_text())
    rep = build_report(model_dir, with_pruning=with_pruning, progress=progress)
    atomic_write(f, json.dumps(rep, indent=1))
    return rep


def checks(rep: dict) -> dict:
    c = {"R1": rep["R1"]["heldout_nll"] >= 1.0,
         "R4": rep["R4"]["ratio_to_pretrain_ppl"] <= 3.0,
         "R5": rep["R5"]["avg"] >= rep["R5"]["chance_avg"] + 0.30 and rep["R5"]["avg"] <= 0.90
         and rep["R5"]["items_per_task"] >= 500}
    j = rep["R6"]
    c["R6"] = j["world/pretrain"] > j["world/web"] > j["world/mixed"] > j["world/encyclopedia"]
    if "R2" in rep:
        w6, w5, m6 = rep["R2"]["wanda@0.6"], rep["R2"]["wanda@0.5"], rep["R2"]["magnitude@0.6"]
        c["R2"] = (w6["loss_increase"] >= 0.10 and w6["avg_drop_points"] >= 3
                   and w5["loss_increase"] < w6["loss_increase"])
        c["R3"] = w6["heldout_nll"] < m6["heldout_nll"]
    return c


def markdown(rep: dict) -> str:
    """The report as a Markdown table (README and book)."""
    rows = [("R1", f"held-out loss {rep['R1']['heldout_nll']:.3f} nats/token")]
    if "R2" in rep:
        w6, w5 = rep["R2"]["wanda@0.6"], rep["R2"]["wanda@0.5"]
        rows.append(("R2", f"wanda 60%: loss +{100 * w6['loss_increase']:.1f}%, avg -{w6['avg_drop_points']:.1f} pts; "
                           f"50%: +{100 * w5['loss_increase']:.1f}%, -{w5['avg_drop_points']:.1f} pts"))
        m6 = rep["R2"]["magnitude@0.6"]
        r3 = (f"max/median input norm up to {rep['R3']['max']:.1f}x; 60% loss wanda {w6['heldout_nll']:.3f} "
              f"vs magnitude {m6['heldout_nll']:.3f}")
    else:
        r3 = f"max/median input norm up to {rep['R3']['max']:.1f}x"
    rows.append(("R3", r3))
    rows.append(("R4", f"Alpaca-role ppl {rep['R4']['alpaca_ppl_corpus']:.2f} = "
                       f"{rep['R4']['ratio_to_pretrain_ppl']:.2f}x pretraining ppl"))
    rows.append(("R5", f"dense avg {100 * rep['R5']['avg']:.1f}% (chance {100 * rep['R5']['chance_avg']:.1f}%); "
                 + ", ".join(f"{t.replace('world_', '')} {100 * a:.1f}" for t, a in rep["R5"]["acc"].items())))
    rows.append(("R6", " > ".join(f"{s.split('/')[1]} {v:.3f}" for s, v in
                                  sorted(rep["R6"].items(), key=lambda kv: -kv[1]))))
    lines = ["| | target | measured | met |", "| --- | --- | --- | --- |"]
    spread = rep.get("source_spread", {})
    for k, text in rows:
        met = rep["checks"].get(k)
        lines.append(f"| {k} | {TARGETS[k]} | {text} | {'yes' if met else ('no' if met is False else 'n/a')} |")
    for k, v in spread.items():
        lines.append(f"| finding | does the source matter at {k}? | held-out loss range across sources "
                     f"{v['range_across_sources']:.4f} vs mean std over seeds {v['mean_std_over_seeds']:.4f} | "
                     f"{'yes' if v['range_across_sources'] > 2 * v['mean_std_over_seeds'] else 'not clearly'} |")
    return "\n".join(lines)
