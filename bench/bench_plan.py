"""Seconds per forward token of each stage of a job, as `--plan` counts tokens
(calib.experiments.plan): the per-token costs its hours are computed from.

One job's stages are timed on their own, each divided by the plan's token count for it:
prune (the block-by-block pass over the calibration set), generate (self-generation of a
synthetic set and its perplexity scores), evaluate (one evaluation of the pruned model on the
suite, after a first one that builds lm-eval's task objects; a sweep worker builds them once).
What does not grow with tokens is ``per_job``: loading the model, the part of pruning that
does not grow with the calibration set (the mask search; from pruning at two sizes, the
per-token cost being the slope), and an evaluation of one item per task and one text (lm-eval's
set-up, each call; the evaluate cost is the full evaluation's time beyond it, per token beyond it). The token costs include each stage's own
overheads (tokenisation, mask search, lm-eval bookkeeping), so tokens x cost predicts a stage's
wall time, not only its matrix products.

The defaults are a toy-profile job on the world model; on a GPU node, pass the model and
device to measure the costs to give `--plan --token-cost`:

    OMP_NUM_THREADS=1 python bench/bench_plan.py                 # world model, CPU, 1 thread
    python bench/bench_plan.py --model /models/DCLM-7B --device cuda --dtype bfloat16 \\
        --nsamples 128 --seqlen 2048 --n-docs 64 --max-new-tokens 2048
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="world")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--method", default="wanda")
    p.add_argument("--nsamples", type=int, default=64)
    p.add_argument("--seqlen", type=int, default=256)
    p.add_argument("--n-docs", type=int, default=64, help="self-generated documents")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--limit", type=int, default=None, help="items per world task (default: all 500)")
    p.add_argument("--n-alpaca", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-check", action="store_true",
                   help="skip the check: a small sweep (five methods, one synthetic job) timed against the plan")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "plan")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    import torch
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_plan_"))
    os.environ["CALIB_CACHE"] = str(tmp / "cache")  # cold: nothing reused from earlier runs

    from calib.experiments import Job
    from calib.experiments import plan as P
    from calib.experiments import run as R
    suite = {"name": "world", "limit": args.limit, "n_alpaca": args.n_alpaca, "n_heldout": 100}
    base = dict(model=args.model, method=args.method, sparsity=0.5, dtype=args.dtype, suite=suite,
                calibration={"source": "world/pretrain", "nsamples": args.nsamples, "seqlen": args.seqlen},
                execution={"device": args.device})
    job = Job(**base)
    syn = Job(**base, synthetic={"n_docs": args.n_docs, "max_new_tokens": args.max_new_tokens,
                                 "batch_size": min(args.n_docs, 64)})
    model, tok = R.load(job)
    ids, _ = R.calibration_set(job, model, tok)
    dev = R.device(job)

    timer = R.Timer()
    with timer("generate"):  # includes moving the model to the device and back
        R.synthetic_source(syn, model, tok, R.Timer())
    small = Job(**{**base, "calibration": {**base["calibration"], "nsamples": max(1, args.nsamples // 4)}})
    m_small, _ = R.load(small)
    ids_small, _ = R.calibration_set(small, m_small, tok)
    with timer("prune_small"):
        R.prune(small, m_small, ids_small)
    del m_small
    with timer("prune"):
        R.prune(job, model, ids)
    model.to(dev)
    with timer("evaluate_first"):
        R.evaluate(job, model, tok)
    with timer("evaluate"):
        R.evaluate(job, model, tok)
    tiny = Job(**{**base, "suite": {**suite, "limit": 1, "n_alpaca": 1, "n_heldout": 0}})
    with timer("evaluate_one_item"):
        R.evaluate(tiny, model, tok)
    with timer("load"):
        R.load(job)
    tokens = {"prune": P.prune_tokens(job), "prune_small": P.prune_tokens(small),
              "generate": P.generation_tokens(syn),
              "evaluate": P.evaluation_tokens(job)[0], "evaluate_one_item": P.evaluation_tokens(tiny)[0]}
    prune_slope = (timer["prune"] - timer["prune_small"]) / (tokens["prune"] - tokens["prune_small"])
    prune_fixed = max(0.0, timer["prune"] - prune_slope * tokens["prune"])
    per_job = timer["load"] + prune_fixed + timer["evaluate_one_item"]
    cost = {"prune": prune_slope, "generate": timer["generate"] / tokens["generate"],
            "evaluate": (timer["evaluate"] - timer["evaluate_one_item"])
            / (tokens["evaluate"] - tokens["evaluate_one_item"]), "per_job": per_job}
    res = {
        "command": ("python bench/bench_plan.py " + shlex.join(sys.argv[1:])).strip(),
        "model": args.model, "device": dev, "dtype": args.dtype, "threads": args.threads,
        "job": {"method": args.method, "nsamples": args.nsamples, "seqlen": args.seqlen, "suite": suite,
                "synthetic": {"n_docs": args.n_docs, "max_new_tokens": args.max_new_tokens}},
        "seconds": dict(timer), "tokens": tokens, "cost": cost, "prune_fixed_s": prune_fixed,
        "first_evaluation_extra_s": timer["evaluate_first"] - timer["evaluate"],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores shared, torch threads {args.threads}, "
                   f"load avg {os.getloadavg()[0]:.1f} (at the end)",
    }
    if not args.no_check:  # the costs against a sweep they were not measured on: predicted vs measured wall
        from calib.experiments import Store, expand_grid, run_sweep
        jobs = expand_grid({**base, "calibration": {**base["calibration"], "seed": 1},
                            "grids": [{"method": ["magnitude", "wanda", "sparsegpt", "dsnot", "owl"]},
                                      {"synthetic": {"n_docs": args.n_docs, "max_new_tokens": args.max_new_tokens,
                                                     "prefix_len": 4}}]})
        p = P.plan(jobs)
        t = time.perf_counter()
        counts = run_sweep(jobs, Store(tmp / "check.db"), progress=False)
        res["check"] = {"jobs": len(jobs), "done": counts["done"], "measured_s": time.perf_counter() - t,
                        "predicted_s": p.hours(cost) * 3600, "tokens": p.tokens}
    res["machine"] = (f"{platform.machine()}, {os.cpu_count()} cores shared, torch threads {args.threads}, "
                      f"load avg {os.getloadavg()[0]:.1f} (at the end)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    md = ["# Seconds per forward token, per stage (the costs of `--plan`)\n", f"Command: `{res['command']}`\n",
          f"Model {args.model} ({args.dtype}) on {dev}; {args.method}, {args.nsamples} x {args.seqlen} calibration; "
          f"{args.n_docs} self-generated documents of {args.max_new_tokens} new tokens; world suite (limit "
          f"{args.limit}, {args.n_alpaca} Alpaca texts); {res['machine']}.\n",
          "| stage | seconds | forward tokens (plan) | seconds per token |", "|---|---|---|---|",
          f"| prune ({small.calibration['nsamples']} and {args.nsamples} samples: the slope) | "
          f"{timer['prune_small']:.2f}, {timer['prune']:.2f} | {tokens['prune_small']:,}, {tokens['prune']:,} | "
          f"{cost['prune']:.3g} |",
          f"| generate | {timer['generate']:.2f} | {tokens['generate']:,} | {cost['generate']:.3g} |",
          f"| evaluate (beyond one item per task) | {timer['evaluate'] - timer['evaluate_one_item']:.2f} | "
          f"{tokens['evaluate'] - tokens['evaluate_one_item']:,} | {cost['evaluate']:.3g} |",
          f"| per job: model load {timer['load']:.2f} s + fixed part of pruning {prune_fixed:.2f} s + one item "
          f"per task {timer['evaluate_one_item']:.2f} s | {per_job:.2f} | | (per_job) |",
          f"\n`--token-cost` for this machine: `{','.join(f'{k}={v:.2g}' for k, v in cost.items())}`",
          *([f"\nCheck: a sweep of {res['check']['jobs']} other jobs (magnitude, wanda, sparsegpt, dsnot, owl and "
             f"one self-generated set, seed 1, one process, cold cache) took {res['check']['measured_s']:.1f} s; "
             f"the plan at these costs predicted {res['check']['predicted_s']:.1f} s "
             f"(measured / predicted = {res['check']['measured_s'] / res['check']['predicted_s']:.2f}; the "
             f"process's first lm-eval set-up and document pools are not in the costs)."] if "check" in res else []),
          f"\nThe first evaluation in a process took {res['first_evaluation_extra_s']:.1f} s more (building "
          f"lm-eval's tasks; once per sweep worker). The machine is shared: re-measure on a quiet one.\n"]
    args.out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
