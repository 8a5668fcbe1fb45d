"""Time of one verdict (calib.book.statistics) at the book's largest design.

A simulated frame: 7 tasks x 500 items on facts of 3 items each, per item 0/1 accuracy and a
log-score, 20 calibration seeds per arm, every job scored on the same items. Times the paired
contrast (seed term + fact bootstrap; the target: well under 2 s) on each metric, its per-task
effects (the forest plot), a range test over four sources, and what a target would take (power);
each the median of --repeats runs.

    OMP_NUM_THREADS=1 python bench/bench_verdicts.py
    OMP_NUM_THREADS=1 python bench/bench_verdicts.py --seeds 10 --items 300 --resamples 2000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from calib.book import statistics as V  # noqa: E402

TARGET_S = 2.0


def frame(arms, seeds, items, tasks, rng=0) -> pd.DataFrame:
    """One job per (arm, seed); an item's latent is its level + the arm's shift, 10% redrawn per job;
    acc is latent > 0, the log-score log sigmoid(latent); facts of 3 consecutive items."""
    g = np.random.default_rng(rng)
    level = g.normal(0, 1, (tasks, items))
    facts = np.array([f"f{i // 3}" for i in range(tasks * items)], dtype=object).reshape(tasks, items)
    lines = []
    for k, arm in enumerate(arms):
        for s in range(seeds):
            z = np.where(g.uniform(size=level.shape) < 0.1, g.normal(size=level.shape),
                         level + (k + g.normal(0, 0.5)) / 25)
            lines.append({"source": arm, "seed": s, "records": {
                f"task{t}": {"acc": (z[t] > 0).astype(np.int8), "logscore": -np.logaddexp(0, -z[t]), "fact": facts[t]}
                for t in range(tasks)}})
    return pd.DataFrame(lines)


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--items", type=int, default=500, help="items per task")
    p.add_argument("--tasks", type=int, default=7)
    p.add_argument("--resamples", type=int, default=V.N_RESAMPLES)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "verdicts")
    args = p.parse_args(argv)
    two = frame(["a", "b"], args.seeds, args.items, args.tasks)
    four = frame(["c4", "wiki", "slim", "dclm"], args.seeds, args.items, args.tasks)
    n = args.resamples
    res = {
        "command": ("OMP_NUM_THREADS=1 python bench/bench_verdicts.py "
                    + " ".join(sys.argv[1:] if argv is None else argv)).strip(),
        "design": f"{args.seeds} seeds x {args.tasks} tasks x {args.items} items, {n} resamples",
        "paired_contrast_s": timed(lambda: V.paired_contrast(two, "source", "a", "b", n_resamples=n), args.repeats),
        "paired_contrast_logscore_s": timed(lambda: V.paired_contrast(two, "source", "a", "b", metric="logscore",
                                                                      n_resamples=n), args.repeats),
        "per_task_s": timed(lambda: V.per_task(two, "source", "a", "b", n_resamples=n), args.repeats),
        "range_test_4_sources_s": timed(lambda: V.range_test(four, n_resamples=n), args.repeats),
        "needed_s": timed(lambda: V.needed(V.paired_contrast(two, "source", "a", "b", n_resamples=n)
                                           .detail["spread"], args.seeds, args.items, 0.5, 2000), args.repeats),
        "target": f"paired_contrast_s < {TARGET_S}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores shared, OMP_NUM_THREADS="
                   f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, load avg {os.getloadavg()[0]:.1f}",
    }
    res["pass"] = res["paired_contrast_s"] < TARGET_S
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    md = ["# Time of one verdict\n", f"Command: `{res['command']}`\n",
          f"Simulated frame: {res['design']}; {res['machine']}. Median of {args.repeats} runs.\n",
          "| verdict | seconds |", "|---|---|",
          f"| paired contrast, accuracy: seed term + fact bootstrap (target < {TARGET_S:g} s) | "
          f"{res['paired_contrast_s']:.2f} |",
          f"| paired contrast, log-score | {res['paired_contrast_logscore_s']:.2f} |",
          f"| per-task effects, both metrics (the forest plot: 14 contrasts) | {res['per_task_s']:.2f} |",
          f"| range test, 4 sources (permutation + seeds x facts bootstrap) | {res['range_test_4_sources_s']:.2f} |",
          f"| what ±0.5 would take (contrast + power search, 2,000 facts) | {res['needed_s']:.2f} |", ""]
    args.out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
