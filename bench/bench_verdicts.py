"""Time of one verdict (calib.book.statistics) at the book's largest design.

A simulated frame: 0/1 items, 7 tasks x 500 items, 20 calibration seeds per arm, every job
scored on the same items. Times the two-level paired contrast (the target: well under 2 s),
the same contrast resampling seeds only (for the ratio), a range test over four sources and
the power analysis' variance components; each the median of --repeats runs.

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
    """One job per (arm, seed); items right with the item's level + the arm's shift, 10% redrawn per job."""
    g = np.random.default_rng(rng)
    level = g.uniform(0.25, 0.75, (tasks, items))
    draw = g.uniform(size=(tasks, items))
    lines = []
    for k, arm in enumerate(arms):
        for s in range(seeds):
            u = np.where(g.uniform(size=draw.shape) < 0.1, g.uniform(size=draw.shape), draw)
            x = (u < level + (k + g.normal(0, 0.5)) / 100).astype(np.int8)
            lines.append({"source": arm, "seed": s, "items": {f"task{t}": x[t] for t in range(tasks)}})
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
        "seeds_only_contrast_s": timed(lambda: V.paired_contrast(two, "source", "a", "b", n_resamples=n,
                                                                 resample=["seeds"]), args.repeats),
        "range_test_4_sources_s": timed(lambda: V.range_test(four, n_resamples=n), args.repeats),
        "variance_components_s": timed(lambda: V.variance_components(two, "source", "a", "b"), args.repeats),
        "target": f"paired_contrast_s < {TARGET_S}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores shared, OMP_NUM_THREADS="
                   f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, load avg {os.getloadavg()[0]:.1f}",
    }
    res["two_level_over_seeds_only"] = res["paired_contrast_s"] / res["seeds_only_contrast_s"]
    res["pass"] = res["paired_contrast_s"] < TARGET_S
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    md = ["# Time of one verdict\n", f"Command: `{res['command']}`\n",
          f"Simulated frame: {res['design']}; {res['machine']}. Median of {args.repeats} runs.\n",
          "| verdict | seconds |", "|---|---|",
          f"| paired contrast, two-level bootstrap (target < {TARGET_S:g} s) | {res['paired_contrast_s']:.2f} |",
          f"| paired contrast, seeds only | {res['seeds_only_contrast_s']:.3f} |",
          f"| range test, 4 sources (permutation + two-level bootstrap) | {res['range_test_4_sources_s']:.2f} |",
          f"| variance components (power analysis) | {res['variance_components_s']:.3f} |",
          f"\nTwo-level / seeds-only: {res['two_level_over_seeds_only']:.0f}x (same run).\n"]
    args.out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
