"""Issue 16: why DSnoT at its published settings raises the world model's loss.

On the world model (calib.world.model.load()), Wanda's mask at --sparsity, the
calibration set of the issue (--nsamples x --seqlen tokens of world/pretrain,
--seed) and held-out loss on --heldout-docs world/pretrain documents
(calib/world/tasks.py heldout_texts), this script measures

1. held-out loss (nats/token) of Wanda and of DSnoT at several settings, each
   with a 95% paired bootstrap interval of its difference to Wanda over the
   documents, both for calib and for the reference code's behaviour (calib
   without its stop at candidates of the wrong sign: reference_walk);
2. the curve of held-out loss over max_cycle_time;
3. per linear layer and per cycle, on the inputs that layer actually reads in the
   sequential run: the true relative reconstruction error ||WX - W'X||^2/||WX||^2
   of Wanda's mask (cycle 0) and after every cycle, split into its mean part (what
   DSnoT's surrogate err sees) and its covariance part, DSnoT's mean |err|, the
   rows still swapping, and the error when regrowth ignores the variance
   (pow_of_var_regrowing 0) on the same inputs.

Writes <out>.json (everything, per cycle) and <out>.md (the tables). Default run,
about 17 minutes on one thread of a busy 2-core machine (load average 2.5 to 8):
    python bench/dsnot_diagnosis.py
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TABLE = [  # the issue's table: (label, method, options)
    ("Wanda", "wanda", {}),
    ("DSnoT max_cycle_time 1", "dsnot", {"max_cycle_time": 1}),
    ("DSnoT max_cycle_time 10", "dsnot", {"max_cycle_time": 10}),
    ("DSnoT max_cycle_time 50 (default, the paper's)", "dsnot", {}),
    ("DSnoT 50, skip_layer no_skip", "dsnot", {"skip_layer": "no_skip"}),
    ("DSnoT without_dsnot", "dsnot", {"without_dsnot": True}),
]
ABLATIONS = [  # at the paper's 50 cycles, calib only
    ("pow_of_var_regrowing 0", {"pow_of_var_regrowing": 0.0}),
    ("same_sign True", {"same_sign": True}),
]
TRACES = [  # per-layer traces: (label, options, reference walk)
    ("paper settings, reference code", {}, True),
    ("paper settings, calib", {}, False),
    ("skip_layer no_skip, calib", {"skip_layer": "no_skip"}, False),
]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sparsity", type=float, default=0.6)
    p.add_argument("--nsamples", type=int, default=64)
    p.add_argument("--seqlen", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heldout-docs", type=int, default=120)
    p.add_argument("--cycles", default="0,1,2,5,10,20,30,50", help="max_cycle_time values of the loss curve")
    p.add_argument("--patterns", default="2:4,4:8", help="N:M patterns to compare Wanda and DSnoT on ('' for none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dsnot")
    return p.parse_args(argv)


class Bench:
    """The world model, its dense weights, the calibration ids and the held-out texts."""

    def __init__(self, args):
        from calib import data
        from calib.models import load
        from calib.world.tasks import heldout_texts
        self.args = args
        self.model, self.tok = load("world")
        self.dense = {k: v.clone() for k, v in self.model.state_dict().items()}
        cs = data.sample("world/pretrain", self.tok, args.nsamples, args.seqlen, seed=args.seed)
        self.ids, self.calib_hash = cs.input_ids, cs.hash
        self.texts = heldout_texts(args.heldout_docs)
        self.runs = {}

    def doc_nll(self):
        """(summed nll, token count) per held-out document."""
        from calib.evaluate import token_nll
        nll = token_nll(self.model, self.tok, self.texts)
        return np.array([n.sum() for n in nll]), np.array([len(n) for n in nll])

    def run(self, method, options, pattern="unstructured", walk=False, record=False):
        """Prune a fresh copy of the dense weights; held-out loss (cached per setting)."""
        from calib.prune import prune
        from calib.prune.reconstruction import InputRecorder, reference_walk
        key = json.dumps([method, options, pattern, walk], sort_keys=True)
        if key in self.runs and not record:
            return self.runs[key]
        self.model.load_state_dict(self.dense)
        sparsity = self.args.sparsity if pattern == "unstructured" else None
        recorder = InputRecorder(self.model)
        t0 = time.perf_counter()
        with reference_walk() if walk else nullcontext(), recorder if record else nullcontext():
            res = prune(self.model, self.ids, method=method, sparsity=sparsity, pattern=pattern,
                        keep_masks=record, **options)
        prune_s = time.perf_counter() - t0
        sums, counts = self.doc_nll()
        out = {"method": method, "options": options, "pattern": pattern, "reference_walk": walk,
               "loss": float(sums.sum() / counts.sum()), "mask_hash": res.mask_hash,
               "prune_s": round(prune_s, 2), "_sums": sums, "_counts": counts}
        self.runs[key] = out
        if record:
            return out, res, recorder
        return out


def versus(run, base, seed=0):
    """Loss difference to `base` (nats/token over all held-out tokens) with a 95%
    paired bootstrap interval over documents."""
    from scipy import stats
    d, n = run["_sums"] - base["_sums"], run["_counts"]
    diff = float(d.sum() / n.sum())
    if not d.any():
        return {"diff": 0.0, "ci95": [0.0, 0.0]}
    ci = stats.bootstrap((d, n), lambda a, b: a.sum() / b.sum(), paired=True, vectorized=False,
                         n_resamples=2000, confidence_level=0.95, random_state=seed).confidence_interval
    return {"diff": diff, "ci95": [float(ci.low), float(ci.high)]}


def public(run):
    return {k: v for k, v in run.items() if not k.startswith("_")}


# ---------------------------------------------------------------- per-layer traces

def trace_layers(bench, options, walk):
    """Per linear of one recorded DSnoT run: Wanda's error and DSnoT's cycles."""
    import torch

    from calib.prune.methods import OPTIONS
    from calib.prune.reconstruction import dsnot_trace, reference_walk, relative_error
    run, res, rec = bench.run("dsnot", options, walk=walk, record=True)
    opts = {**OPTIONS["dsnot"], **options}
    cyc = {k: opts[k] for k in ("max_cycle_time", "update_threshold", "pow_of_var_regrowing")}
    cyc["same_sign"] = bool(opts["same_sign"])  # None: off in unstructured mode, as in the engine
    s, T = bench.args.sparsity, bench.args.seqlen
    layers = {}
    for name, st in rec.stats.items():
        W = bench.dense[name + ".weight"]
        short = name.split("layers.", 1)[1]
        skipped = short.split(".")[1] == opts["skip_layer"]
        if skipped:
            err, mean_part = relative_error(W, res.masks[name], st, T)
            layers[short] = {"skipped": True, "error": [err], "mean_part": [mean_part]}
            continue
        with reference_walk() if walk else nullcontext():
            tr = dsnot_trace(W, st, s, T, **cyc)
            no_var = dsnot_trace(W, st, s, T, **{**cyc, "pow_of_var_regrowing": 0.0})
        if not torch.equal(tr["mask"], res.masks[name]):
            raise RuntimeError(f"replayed DSnoT mask of {name} differs from the engine's")
        layers[short] = {"skipped": False, **{k: _g(v) for k, v in tr.items() if k != "mask"},
                         "error_pow0": _g(no_var["error"])}
    return run, layers


def _g(values):
    """Per-cycle values to 4 significant digits (keeps the JSON small)."""
    return [float(f"{v:.4g}") for v in values]


def summarise(layer):
    """One row of the per-layer table."""
    e, mp = layer["error"], layer["mean_part"]
    if layer["skipped"]:
        return {"wanda": e[0], "mean_share": mp[0] / e[0]}
    above = next((c for c, v in enumerate(e) if v > e[0]), None)
    best = int(np.argmin(e))
    cov = [a - b for a, b in zip(e, mp)]
    return {"wanda": e[0], "mean_share": mp[0] / e[0], "best_cycle": best, "best": e[best],
            "first_above": above, "at_10": e[min(10, len(e) - 1)], "final": e[-1],
            "final_mean_part": mp[-1], "d_mean": mp[-1] - mp[0], "d_cov": cov[-1] - cov[0],
            "final_pow0": layer["error_pow0"][-1], "abs_err": [layer["abs_err"][0], layer["abs_err"][-1]],
            "active_final": layer["active"][-1]}


# ---------------------------------------------------------------- report

def fmt(x, nd=3):
    return "" if x is None else f"{x:.{nd}f}"


def ci(v):
    return f"{v['diff']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]"


def markdown(rep):
    a = rep["args"]
    lines = [
        "# DSnoT on the world model (issue 16)", "",
        f"Command: `{rep['command']}`  ",
        (f"World model, {a['sparsity']:.0%} unstructured unless noted, {a['nsamples']} x {a['seqlen']} calibration "
        f"tokens of world/pretrain (seed {a['seed']}, sha256 {rep['calibration_hash'][:12]}), held-out loss on "
        f"{a['heldout_docs']} world/pretrain documents ({rep['heldout_tokens']} tokens). "
        f"Dense model: {rep['dense_loss']:.3f} nats/token. Differences to Wanda: 95% paired bootstrap "
        "interval over documents. 'reference code' = calib without its stop at candidates of the wrong sign "
        "(the reference code's behaviour; calib before the fix)."), "",
        "## The issue's table", "",
        "| run | reference code | vs Wanda | calib | vs Wanda |", "|---|---|---|---|---|",
    ]
    for row in rep["table"]:
        lines.append(f"| {row['label']} | {row['reference']['loss']:.3f} | {ci(row['reference']['vs_wanda'])} "
                     f"| {row['calib']['loss']:.3f} | {ci(row['calib']['vs_wanda'])} |")
    lines += ["", "## Held-out loss over max_cycle_time", "",
              "| max_cycle_time | reference code | calib | calib vs Wanda | calib, no_skip | no_skip vs Wanda |",
              "|---|---|---|---|---|---|"]
    for row in rep["curve"]:
        lines.append(f"| {row['max_cycle_time']} | {row['reference']['loss']:.3f} | {row['calib']['loss']:.3f} "
                     f"| {ci(row['calib']['vs_wanda'])} | {row['no_skip']['loss']:.3f} "
                     f"| {ci(row['no_skip']['vs_wanda'])} |")
    lines += ["", "## Ablations at 50 cycles (calib)", "", "| run | loss | vs Wanda |", "|---|---|---|"]
    for row in rep["ablations"]:
        lines.append(f"| {row['label']} | {row['loss']:.3f} | {ci(row['vs_wanda'])} |")
    if rep["patterns"]:
        lines += ["", "## N:M patterns (calib)", "", "| pattern | Wanda | DSnoT 50 | vs Wanda | DSnoT 1 | vs Wanda |",
                  "|---|---|---|---|---|---|"]
        for row in rep["patterns"]:
            lines.append(f"| {row['pattern']} | {row['wanda']:.3f} | {row['dsnot']['loss']:.3f} "
                         f"| {ci(row['dsnot']['vs_wanda'])} | {row['dsnot_1']['loss']:.3f} "
                         f"| {ci(row['dsnot_1']['vs_wanda'])} |")
    for tr in rep["traces"]:
        lines += ["", f"## Per layer: {tr['label']} (held-out loss {tr['loss']:.3f})", "",
                  ("Relative error ||WX - W'X||^2/||WX||^2 on the inputs each layer reads in this run. "
                  "mean share: the part of Wanda's error that DSnoT's err measures. "
                  "first above: first cycle whose error exceeds Wanda's. "
                  "d mean / d cov: change of the mean and covariance parts from Wanda to the last cycle. "
                  "pow 0: last cycle with regrowth by the sum term alone. |err|: DSnoT's mean |err| over rows, "
                  "Wanda -> last cycle; rows: still swapping at the last cycle."), "",
                  ("| layer | Wanda | mean share | best (cycle) | first above | cycle 10 | last | d mean | d cov "
                   "| pow 0 | abs err | rows |"),
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, s in tr["summary"].items():
            if "best" not in s:
                lines.append(f"| {name} | {s['wanda']:.4f} | {s['mean_share']:.2f} | kept Wanda's mask "
                             "| | | | | | | | |")
                continue
            lines.append(
                f"| {name} | {s['wanda']:.4f} | {s['mean_share']:.2f} | {s['best']:.4f} ({s['best_cycle']}) "
                f"| {'' if s['first_above'] is None else s['first_above']} | {s['at_10']:.4f} | {s['final']:.4f} "
                f"| {s['d_mean']:+.4f} | {s['d_cov']:+.4f} | {s['final_pow0']:.4f} "
                f"| {s['abs_err'][0]:.1f} -> {s['abs_err'][1]:.1f} | {s['active_final']} |")
    lines += ["", f"Wall time {rep['wall_s']:.0f} s on {rep['threads']} thread(s); load at start: {rep['load']}.", ""]
    return "\n".join(lines)


def main(argv=None):
    args = parse(argv)
    import os

    import torch
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    bench = Bench(args)
    sums, counts = bench.doc_nll()
    wanda = bench.run("wanda", {})

    def both(options, method="dsnot"):
        return {side: bench.run(method, options, walk=(side == "reference"))
                for side in ("reference", "calib")}

    def with_vs(run):
        return {**public(run), "vs_wanda": versus(run, wanda)}

    table = []
    for label, method, options in TABLE:
        b = both(options, method)
        table.append({"label": label, **{k: with_vs(v) for k, v in b.items()}})
    curve = []
    for c in [int(x) for x in args.cycles.split(",")]:
        b = both({"max_cycle_time": c})
        ns = bench.run("dsnot", {"max_cycle_time": c, "skip_layer": "no_skip"})
        curve.append({"max_cycle_time": c, **{k: with_vs(v) for k, v in b.items()}, "no_skip": with_vs(ns)})
    ablations = [{"label": label, **with_vs(bench.run("dsnot", o))} for label, o in ABLATIONS]
    patterns = []
    for pat in [p for p in args.patterns.split(",") if p]:
        w = bench.run("wanda", {}, pattern=pat)
        d = bench.run("dsnot", {}, pattern=pat)
        d1 = bench.run("dsnot", {"max_cycle_time": 1}, pattern=pat)
        patterns.append({"pattern": pat, "wanda": w["loss"], "dsnot": {**public(d), "vs_wanda": versus(d, w)},
                         "dsnot_1": {**public(d1), "vs_wanda": versus(d1, w)}})
    traces = []
    for label, options, walk in TRACES:
        run, layers = trace_layers(bench, options, walk)
        traces.append({"label": label, "options": options, "reference_walk": walk, "loss": run["loss"],
                       "summary": {k: summarise(v) for k, v in layers.items()}, "layers": layers})

    rep = {
        "command": "python bench/dsnot_diagnosis.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "calibration_hash": bench.calib_hash, "heldout_tokens": int(counts.sum()),
        "dense_loss": float(sums.sum() / counts.sum()),
        "table": table, "curve": curve, "ablations": ablations, "patterns": patterns, "traces": traces,
        "threads": args.threads, "load": load, "wall_s": time.perf_counter() - t_start,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rep) + "\n")
    args.out.with_suffix(".md").write_text(markdown(rep))
    print(markdown(rep))


if __name__ == "__main__":
    main()
