"""Issues 16 and 22: why DSnoT at its published settings raises the world model's
loss, and its two walks (walk="guarded", calib's default, and walk="original",
the original code's loop; calib/prune/dsnot.py).

On the world model (calib.world.model.load()), Wanda's mask at --sparsity, the
calibration set of the issue (--nsamples x --seqlen tokens of world/pretrain,
--seed) and held-out loss on --heldout-docs world/pretrain documents
(calib/world/tasks.py heldout_texts), this script measures

1. held-out loss (nats/token) of Wanda and of DSnoT at several settings, each
   with a 95% paired bootstrap interval of its difference to Wanda over the
   documents, for both walks;
2. the curve of held-out loss over max_cycle_time, both walks;
3. per linear layer, in the runs at 1, 10 and 50 cycles: how many rows the guard
   (the wrong-sign stop of walk guarded) ends, at which cycle, against the row's
   number of kept weights of each sign; and how many rows walk original freezes
   where the original code would fail (an index past its list, a broken pattern);
4. per linear layer and per cycle, on the inputs that layer actually reads in the
   sequential run: the true relative reconstruction error ||WX - W'X||^2/||WX||^2
   of Wanda's mask (cycle 0) and after every cycle, split into its mean part (what
   DSnoT's surrogate err sees) and its covariance part, DSnoT's mean |err|, the
   rows still swapping, and the error when regrowth ignores the variance
   (pow_of_var_regrowing 0) on the same inputs.

Writes <out>.json (everything, per cycle) and <out>.md (the tables). Default run,
about 20 minutes on one thread of a busy 2-core machine:
    OMP_NUM_THREADS=1 nice python bench/dsnot_diagnosis.py
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

WALKS = ("guarded", "original")
TABLE = [  # the issue's table: (label, method, options), each DSnoT row with both walks
    ("Wanda", "wanda", {}),
    ("DSnoT max_cycle_time 1", "dsnot", {"max_cycle_time": 1}),
    ("DSnoT max_cycle_time 10", "dsnot", {"max_cycle_time": 10}),
    ("DSnoT max_cycle_time 50 (default, the paper's)", "dsnot", {}),
    ("DSnoT 50, skip_layer no_skip", "dsnot", {"skip_layer": "no_skip"}),
    ("DSnoT without_dsnot", "dsnot", {"without_dsnot": True}),
]
CENSUS = [  # per-layer stops: (label, options) of unstructured DSnoT runs
    ("max_cycle_time 1", {"max_cycle_time": 1}),
    ("max_cycle_time 10", {"max_cycle_time": 10}),
    ("max_cycle_time 50", {}),
    ("max_cycle_time 50, no_skip", {"skip_layer": "no_skip"}),
]
ABLATIONS = [  # at the paper's 50 cycles, walk guarded
    ("pow_of_var_regrowing 0", {"pow_of_var_regrowing": 0.0}),
    ("same_sign True", {"same_sign": True}),
]
TRACES = [  # per-layer traces: (label, options)
    ("paper settings, walk original", {"walk": "original"}),
    ("paper settings, walk guarded", {}),
    ("skip_layer no_skip, walk guarded", {"skip_layer": "no_skip"}),
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
        self.runs, self.recorded = {}, {}

    def doc_nll(self):
        """(summed nll, token count) per held-out document."""
        from calib.evaluate import token_nll
        nll = token_nll(self.model, self.tok, self.texts)
        return np.array([n.sum() for n in nll]), np.array([len(n) for n in nll])

    def run(self, method, options, pattern="unstructured", record=False):
        """Prune a fresh copy of the dense weights; held-out loss (cached per setting)."""
        from calib.prune import prune, resolve_options
        from calib.prune.reconstruction import InputRecorder
        key = json.dumps([method, resolve_options(method, options), pattern], sort_keys=True)
        if key in (self.recorded if record else self.runs):
            return self.recorded[key] if record else self.runs[key]
        self.model.load_state_dict(self.dense)
        sparsity = self.args.sparsity if pattern == "unstructured" else None
        recorder = InputRecorder(self.model)
        t0 = time.perf_counter()
        with recorder if record else nullcontext():
            res = prune(self.model, self.ids, method=method, sparsity=sparsity, pattern=pattern,
                        keep_masks=record, **options)
        prune_s = time.perf_counter() - t0
        sums, counts = self.doc_nll()
        out = {"method": method, "options": options, "pattern": pattern,
               "loss": float(sums.sum() / counts.sum()), "mask_hash": res.mask_hash,
               "prune_s": round(prune_s, 2), "_sums": sums, "_counts": counts}
        self.runs[key] = out
        if record:  # kept: the census and the traces replay the same runs
            self.recorded[key] = out, res, recorder
            return self.recorded[key]
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

def _cycle_options(options):
    from calib.prune.methods import OPTIONS
    opts = {**OPTIONS["dsnot"], **options}
    cyc = {k: opts[k] for k in ("max_cycle_time", "update_threshold", "pow_of_var_regrowing", "walk")}
    cyc["same_sign"] = bool(opts["same_sign"])  # None: off in unstructured mode, as in the engine
    return opts, cyc


def census(bench, options):
    """Per swapped linear of one recorded DSnoT run (replayed on the inputs it read):
    rows, the rows each of calib's own stopping rules ended and at which cycle
    (dsnot.dsnot_unstructured's on_cycle), and each row's kept weights per sign of
    dsnot_metric in Wanda's initial mask."""
    import torch

    from calib.prune import dsnot as D
    from calib.prune.reconstruction import dsnot_inputs
    run, res, rec = bench.run("dsnot", options, record=True)
    opts, cyc = _cycle_options(options)
    layers = {}
    for name, st in rec.stats.items():
        short = name.split("layers.", 1)[1]
        if short.split(".")[1] == opts["skip_layer"]:
            continue
        metric, initial, wanda, var = dsnot_inputs(bench.dense[name + ".weight"], st)
        at = {}

        def note(cycle, mask, err, active, stops):
            for reason, rows in stops.items():
                at.setdefault(reason, torch.zeros(metric.shape[0], dtype=torch.long))[rows[:, 0]] = cycle
        mask = D.dsnot_unstructured(metric, initial, wanda, var, bench.args.sparsity, on_cycle=note, **cyc)
        if not torch.equal(mask, res.masks[name]):
            raise RuntimeError(f"replayed DSnoT mask of {name} differs from the engine's")
        kept = ~D.dsnot_unstructured(metric, initial, wanda, var, bench.args.sparsity, max_cycle_time=0)
        neg, pos = (kept & (metric < 0)).sum(1), (kept & (metric > 0)).sum(1)
        layers[short] = {"rows": metric.shape[0], "kept": int(kept[0].sum()),
                         "kept_neg": neg.tolist(), "kept_pos": pos.tolist(),
                         "stopped": {k: v.tolist() for k, v in at.items()}}
    return run, layers


def census_row(layer, reason):
    """One row of the stops table: rows a rule ended, their median cycle, and the
    kept weights per sign (median over all rows; minimum of the two signs, median
    over the rows ended and over all rows)."""
    at = np.array(layer["stopped"].get(reason, [0] * layer["rows"]))
    neg, pos = np.array(layer["kept_neg"]), np.array(layer["kept_pos"])
    fewer = np.minimum(neg, pos)
    hit = at > 0
    return {"rows": layer["rows"], "kept": layer["kept"], "ended": int(hit.sum()),
            "median_cycle": float(np.median(at[hit])) if hit.any() else None,
            "kept_neg": float(np.median(neg)), "kept_pos": float(np.median(pos)),
            "fewer_sign_ended": float(np.median(fewer[hit])) if hit.any() else None,
            "fewer_sign_all": float(np.median(fewer))}


def trace_layers(bench, options):
    """Per linear of one recorded DSnoT run: Wanda's error and DSnoT's cycles."""
    import torch

    from calib.prune.reconstruction import dsnot_trace, relative_error
    run, res, rec = bench.run("dsnot", options, record=True)
    opts, cyc = _cycle_options(options)
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
        tr = dsnot_trace(W, st, s, T, **cyc)
        no_var = dsnot_trace(W, st, s, T, **{**cyc, "pow_of_var_regrowing": 0.0})
        if not torch.equal(tr["mask"], res.masks[name]):
            raise RuntimeError(f"replayed DSnoT mask of {name} differs from the engine's")
        layers[short] = {"skipped": False, **{k: _g(v) for k, v in tr.items() if k not in ("mask", "stopped")},
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
        "# DSnoT on the world model (issues 16 and 22)", "",
        f"Command: `{rep['command']}`  ",
        (f"World model, {a['sparsity']:.0%} unstructured unless noted, {a['nsamples']} x {a['seqlen']} calibration "
        f"tokens of world/pretrain (seed {a['seed']}, sha256 {rep['calibration_hash'][:12]}), held-out loss on "
        f"{a['heldout_docs']} world/pretrain documents ({rep['heldout_tokens']} tokens). "
        f"Dense model: {rep['dense_loss']:.3f} nats/token. Differences to Wanda: 95% paired bootstrap "
        "interval over documents. Two DSnoT walks: `walk=guarded` (calib's default: a row stops at its first "
        "swap candidate of the wrong sign) and `walk=original` (the original code's loop; rows frozen only "
        "where it would fail, see docs/pruning.md)."), "",
        "## The issue's table", "",
        "| run | walk=original | vs Wanda | walk=guarded | vs Wanda |", "|---|---|---|---|---|",
    ]
    for row in rep["table"]:
        lines.append(f"| {row['label']} | {row['original']['loss']:.3f} | {ci(row['original']['vs_wanda'])} "
                     f"| {row['guarded']['loss']:.3f} | {ci(row['guarded']['vs_wanda'])} |")
    lines += ["", "## Held-out loss over max_cycle_time", "",
              "| max_cycle_time | walk=original | vs Wanda | walk=guarded | vs Wanda | guarded, no_skip | vs Wanda |",
              "|---|---|---|---|---|---|---|"]
    for row in rep["curve"]:
        lines.append(f"| {row['max_cycle_time']} | {row['original']['loss']:.3f} | {ci(row['original']['vs_wanda'])} "
                     f"| {row['guarded']['loss']:.3f} | {ci(row['guarded']['vs_wanda'])} "
                     f"| {row['no_skip']['loss']:.3f} | {ci(row['no_skip']['vs_wanda'])} |")
    lines += census_markdown(rep["census"])
    lines += ["", "## Ablations at 50 cycles (walk=guarded)", "", "| run | loss | vs Wanda |", "|---|---|---|"]
    for row in rep["ablations"]:
        lines.append(f"| {row['label']} | {row['loss']:.3f} | {ci(row['vs_wanda'])} |")
    if rep["patterns"]:
        lines += ["", "## N:M patterns", "",
                  "| pattern | Wanda | walk | DSnoT 50 | vs Wanda | DSnoT 1 | vs Wanda |", "|---|---|---|---|---|---|---|"]
        for row in rep["patterns"]:
            for walk in WALKS:
                d, d1 = row[walk]["dsnot"], row[walk]["dsnot_1"]
                lines.append(f"| {row['pattern']} | {row['wanda']:.3f} | {walk} | {d['loss']:.3f} "
                             f"| {ci(d['vs_wanda'])} | {d1['loss']:.3f} | {ci(d1['vs_wanda'])} |")
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


def census_markdown(census):
    """The per-layer table of the guard (walk guarded) and of walk original's frozen rows."""
    labels = [c["label"] for c in census]
    by = {c["label"]: c for c in census}
    names = list(by[labels[-1]]["guarded"])  # the no_skip run has every layer
    lines = ["", "## The guard per layer", "",
             ("Rows of each linear that the guard (walk=guarded's stop at a candidate of the wrong sign) ended, "
              "as `rows (median cycle)`, in the runs at each setting; `kept -/+`: median over rows of the kept "
              "weights with negative / positive dsnot_metric in Wanda's mask; `fewer`: median over rows of the "
              "smaller of the two, over all rows / over the rows the guard ended at 50 cycles. "
              "`original frozen`: rows walk=original froze where the original code would fail "
              "(index past its list + broken sparsity), at 1 / 10 / 50 cycles."), "",
             "| layer | rows | kept | kept -/+ | fewer (all / ended at 50) | " + " | ".join(labels)
             + " | original frozen |",
             "|---|---|---|---|---|" + "---|" * len(labels) + "---|"]
    for name in names:
        at50 = by["max_cycle_time 50"]["guarded"].get(name) or by[labels[-1]]["guarded"][name]
        base = r50 = census_row(at50, "wrong_sign")
        cells = []
        for lb in labels:
            layer = by[lb]["guarded"].get(name)
            if layer is None:
                cells.append("skipped")
                continue
            r = census_row(layer, "wrong_sign")
            cells.append(f"{r['ended']}" + (f" ({r['median_cycle']:.0f})" if r["ended"] else ""))
        frozen = []
        for lb in ("max_cycle_time 1", "max_cycle_time 10", "max_cycle_time 50"):
            layer = by[lb]["original"].get(name)
            frozen.append("-" if layer is None else
                          str(census_row(layer, "off_list")["ended"] + census_row(layer, "pattern")["ended"]))
        lines.append(f"| {name} | {base['rows']} | {base['kept']} | {base['kept_neg']:.0f} / {base['kept_pos']:.0f} "
                     f"| {base['fewer_sign_all']:.0f} / "
                     f"{'' if r50['fewer_sign_ended'] is None else format(r50['fewer_sign_ended'], '.0f')} "
                     f"| " + " | ".join(cells) + f" | {' / '.join(frozen)} |")
    totals = []
    for lb in labels:
        layers = by[lb]["guarded"].values()
        ended = sum(census_row(x, "wrong_sign")["ended"] for x in layers)
        totals.append(f"{ended} of {sum(x['rows'] for x in layers)}")
    frozen = [sum(census_row(x, k)["ended"] for x in by[lb]["original"].values() for k in ("off_list", "pattern"))
              for lb in ("max_cycle_time 1", "max_cycle_time 10", "max_cycle_time 50")]
    lines.append("| all swapped layers | | | | | " + " | ".join(totals) + f" | {' / '.join(map(str, frozen))} |")
    return lines


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
        if method != "dsnot":
            run = bench.run(method, options)
            return {walk: run for walk in WALKS}
        return {walk: bench.run(method, {**options, "walk": walk}) for walk in WALKS}

    def with_vs(run):
        return {**public(run), "vs_wanda": versus(run, wanda)}

    # The census runs first: recorded runs fill the loss cache the tables read.
    census_runs = []
    for label, options in CENSUS:
        entry = {"label": label, "options": options}
        for walk in WALKS:
            if walk == "original" and "skip_layer" in options:
                continue
            entry[walk] = census(bench, {**options, "walk": walk})[1]
        census_runs.append(entry)
    table = []
    for label, method, options in TABLE:
        b = both(options, method)
        table.append({"label": label, **{k: with_vs(v) for k, v in b.items()}})
    curve = []
    for c in [int(x) for x in args.cycles.split(",")]:
        b = both({"max_cycle_time": c})
        ns = bench.run("dsnot", {"max_cycle_time": c, "skip_layer": "no_skip", "walk": "guarded"})
        curve.append({"max_cycle_time": c, **{k: with_vs(v) for k, v in b.items()}, "no_skip": with_vs(ns)})
    ablations = [{"label": label, **with_vs(bench.run("dsnot", {**o, "walk": "guarded"}))} for label, o in ABLATIONS]
    patterns = []
    for pat in [p for p in args.patterns.split(",") if p]:
        w = bench.run("wanda", {}, pattern=pat)
        row = {"pattern": pat, "wanda": w["loss"]}
        for walk in WALKS:
            d = bench.run("dsnot", {"walk": walk}, pattern=pat)
            d1 = bench.run("dsnot", {"max_cycle_time": 1, "walk": walk}, pattern=pat)
            row[walk] = {"dsnot": {**public(d), "vs_wanda": versus(d, w)},
                         "dsnot_1": {**public(d1), "vs_wanda": versus(d1, w)}}
        patterns.append(row)
    traces = []
    for label, options in TRACES:
        run, layers = trace_layers(bench, {"walk": "guarded", **options})
        traces.append({"label": label, "options": options, "loss": run["loss"],
                       "summary": {k: summarise(v) for k, v in layers.items()}, "layers": layers})

    rep = {
        "command": "OMP_NUM_THREADS=1 nice python bench/dsnot_diagnosis.py "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "calibration_hash": bench.calib_hash, "heldout_tokens": int(counts.sum()),
        "dense_loss": float(sums.sum() / counts.sum()),
        "table": table, "curve": curve, "census": census_runs, "ablations": ablations, "patterns": patterns,
        "traces": traces, "threads": args.threads, "load": load, "wall_s": time.perf_counter() - t_start,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rep) + "\n")
    args.out.with_suffix(".md").write_text(markdown(rep))
    print(markdown(rep))


if __name__ == "__main__":
    main()
