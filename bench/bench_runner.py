"""Per-job overhead of the experiment runner and the results store.

Runs a small sweep of world jobs (Wanda, one job per calibration seed, the full
world suite) with the local executor and a cold cache, and splits its wall time
into prune + evaluation (dense evaluation included: it is an evaluation, cached
after the first job) and everything else: model load, calibration-set build,
key and skip checks, the store write, bookkeeping. That remainder, per job, is
the overhead. The target is < 2% of a world job's time for each job after a
worker's first: the first job also pays a once-per-process start-up (imports, the
first model load, the source's document pool), reported apart.

Uses the world model when it is built, else a random model of the world recipe's
shape (same architecture, vocabulary and context; prune and evaluation cost depend
on shape, not weights).

    OMP_NUM_THREADS=1 python bench/bench_runner.py            # 3 jobs, 128 x 512, full world suite
    OMP_NUM_THREADS=1 python bench/bench_runner.py --jobs 2 --limit 100   # quicker
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
START_UP = "imports, the first model load, the source's document pool"
TOY_JOBS_PER_WORKER = 115  # the toy book's 229 jobs over its 2 sweep workers


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None,
                   help="model folder (default: the world model, else a random one of its shape)")
    p.add_argument("--jobs", type=int, default=3, help="jobs (calibration seeds)")
    p.add_argument("--method", default="wanda")
    p.add_argument("--nsamples", type=int, default=128)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--limit", type=int, default=None, help="items per task (default: all 500)")
    p.add_argument("--n-alpaca", type=int, default=1000)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "runner")
    return p.parse_args(argv)


def world_shaped_model(folder: Path) -> str:
    import torch

    from calib.world import model as wm
    from calib.world import sources
    tok = wm.train_tokenizer(sources.documents("world/pretrain", 2000, split="train"), wm.RECIPE["vocab_size"])
    torch.manual_seed(0)
    from transformers import LlamaForCausalLM
    model = LlamaForCausalLM(wm.make_config(wm.RECIPE, tok))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def main(argv=None):
    args = parse(argv)
    import torch
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench_runner_"))
    os.environ["CALIB_CACHE"] = str(tmp / "cache")  # cold: nothing reused from earlier runs

    from calib.experiments import expand_grid
    from calib.experiments import Store
    from calib.experiments import run_sweep
    from calib.world.model import MODEL_DIR
    if args.model:
        model, kind = args.model, "given"
    elif (MODEL_DIR / "config.json").is_file():
        model, kind = "world", "world model"
    else:
        model, kind = world_shaped_model(tmp / "model"), "random, world-recipe shape"

    t = time.perf_counter()
    jobs = expand_grid({"model": model, "method": args.method, "sparsity": 0.5,
                        "calibration": {"source": "world/pretrain", "nsamples": args.nsamples,
                                        "seqlen": args.seqlen, "seed": {"range": args.jobs}},
                        "suite": {"name": "world", "limit": args.limit, "n_alpaca": args.n_alpaca}})
    t_expand = time.perf_counter() - t  # includes hashing the model's files once

    store = Store(tmp / "runs.db")
    puts = []
    real_put = store.put
    store.put = lambda row: (lambda t0: (real_put(row), puts.append(time.perf_counter() - t0))[0])(time.perf_counter())
    t = time.perf_counter()
    counts = run_sweep(jobs, store, progress=False)
    wall = time.perf_counter() - t
    rows = store.rows()
    assert counts["done"] == len(jobs), counts

    stage = lambda k: sum(r["timings"].get(k, 0.0) for r in rows)  # noqa: E731
    work = stage("prune") + stage("evaluate") + stage("dense_evaluate")
    overhead = wall - work
    res = {
        "command": ("OMP_NUM_THREADS=1 python bench/bench_runner.py " + shlex.join(sys.argv[1:])).strip(),
        "model": kind, "jobs": len(jobs), "method": args.method, "nsamples": args.nsamples,
        "seqlen": args.seqlen, "suite": {"name": "world", "limit": args.limit, "n_alpaca": args.n_alpaca},
        "sweep_wall_s": wall, "per_job_s": wall / len(jobs),
        "prune_s": stage("prune"), "evaluate_s": stage("evaluate"), "dense_evaluate_s": stage("dense_evaluate"),
        "overhead_s_per_job": overhead / len(jobs), "overhead_fraction": overhead / wall,
        "overhead_breakdown_s_per_job": {
            "model_load": stage("load") / len(jobs), "calibration_build": stage("calibration") / len(jobs),
            "store_put": sum(puts) / len(jobs),
            "rest (checks, bookkeeping)": (overhead - stage("load") - stage("calibration") - sum(puts)) / len(jobs)},
        # inside each job (load, calibration, checks): the first job also builds the source's pool
        "in_job_overhead_s_each": [r["timings"]["total"] - r["timings"]["prune"] - r["timings"]["evaluate"]
                                   - r["timings"].get("dense_evaluate", 0.0) for r in rows],
        "expand_grid_s (once per sweep)": t_expand,
        "target": "steady_overhead_fraction < 0.02",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores shared, torch threads 1, load avg "
                   f"{os.getloadavg()[0]:.1f}",
    }
    # A sweep worker pays its first job's extra once per process; each later job pays only its
    # own part, which is the per-job overhead a long sweep sees.
    if len(rows) > 1:
        later = len(rows) - 1
        outside = (wall - sum(r["timings"]["total"] for r in rows)) / len(jobs)  # claims, store, scheduling
        in_job = sum(res["in_job_overhead_s_each"][1:]) / later
        job = sum(r["timings"]["total"] for r in rows[1:]) / later + outside
        once = res["in_job_overhead_s_each"][0] - in_job
        res["steady_overhead_s_per_job"] = in_job + outside
        res["steady_overhead_fraction"] = (in_job + outside) / job
        res["once_per_process_s"] = once
        res["once_per_process_fraction_over_toy_worker"] = once / TOY_JOBS_PER_WORKER / job
    res["pass"] = res.get("steady_overhead_fraction", res["overhead_fraction"]) < 0.02
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    b = res["overhead_breakdown_s_per_job"]
    md = ["# Runner and store overhead per job\n", f"Command: `{res['command']}`\n",
          f"Model: {kind}; {len(jobs)} jobs, {args.method}, {args.nsamples} x {args.seqlen} calibration, "
          f"world suite (limit {args.limit}, {args.n_alpaca} Alpaca texts); {res['machine']}.\n",
          "| per job | seconds |", "|---|---|",
          f"| whole job (sweep wall / jobs) | {res['per_job_s']:.2f} |",
          f"| prune | {res['prune_s'] / len(jobs):.2f} |",
          f"| evaluate (+ dense evaluation, first job only) | "
          f"{(res['evaluate_s'] + res['dense_evaluate_s']) / len(jobs):.2f} |",
          f"| overhead (everything else), averaged over the {len(jobs)} jobs | {res['overhead_s_per_job']:.3f} "
          f"({100 * res['overhead_fraction']:.2f}%) |",
          *[f"| &nbsp; of which {k} | {v:.3f} |" for k, v in b.items()],
          f"\nOverhead inside each job, in order: "
          f"{', '.join(f'{x:.3f}' for x in res['in_job_overhead_s_each'])} s (the first job also builds "
          f"the source's document pool, once per process).\n",
          f"Grid expansion (model hash included, once per sweep): {t_expand:.2f} s.\n"]
    if "steady_overhead_fraction" in res:
        md += [f"**Overhead per job after a worker's first: {res['steady_overhead_s_per_job']:.3f} s, "
               f"{100 * res['steady_overhead_fraction']:.2f}% of a job** (target < 2%: "
               f"{'met' if res['pass'] else 'missed'}). The first job also pays "
               f"{res['once_per_process_s']:.2f} s once per process ({START_UP}): "
               f"{100 * res['once_per_process_fraction_over_toy_worker']:.2f}% of a job spread over the "
               f"~{TOY_JOBS_PER_WORKER} jobs each of the toy book's 2 workers runs.\n"]
    args.out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
