"""Do calib's contrast intervals hold at 2, 3 and 4 seeds? (issue 32)

Each cell simulates --runs contrasts through ``calib.book.statistics.paired_contrast``, the function
every chapter's headline uses. A simulated frame: two arms, S seeds each (paired by seed label), F
facts with one item in each of two tasks. An item's score is its level + a persistent per-(fact,
arm) preference (the fact term) + the job's own shift (the seed term) + the effect (arm a). The
two terms are sized so that the estimate's true variance is 1, the seeds' part of it ``share``.

The table: under a null effect the false-positive rate (target <= 6%), and at a non-null effect
(2 standard errors: the CI's coverage of the true effect, target 95% +- 2 points).

    OMP_NUM_THREADS=1 python bench/bench_statistics.py                 # 1,000 runs per cell
    OMP_NUM_THREADS=1 python bench/bench_statistics.py --runs 200 --seeds 2
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from calib.book import statistics as V  # noqa: E402
from calib.book.designs import SCALE  # noqa: E402

SEEDS = (2, 3, 4)
SHARES = (0.2, 0.35, 0.5, 0.65, 0.8)
EFFECT = 2.0            # the non-null effect, in true standard errors
FPR_MAX = 0.06
COVERAGE, COVERAGE_TOL = 0.95, 0.02


def frame(share: float, seeds: int, effect: float = 0.0, facts: int = 200, rng=0) -> pd.DataFrame:
    """One job per (arm, seed): the contrast a - b has true effect ``effect`` and true variance 1,
    ``share`` of it from the seeds (see the module docstring)."""
    g = np.random.default_rng(rng)
    seed_sd = np.sqrt(share * seeds / 2)            # per job: var(a - b per seed) / S = share
    fact_sd = np.sqrt((1 - share) * facts / 2)      # per (fact, arm): var(mean over facts of a - b) = 1 - share
    level = g.normal(0, 1, facts)
    names = np.array([f"f{i}" for i in range(facts)], dtype=object)
    lines = []
    for arm, shift in (("a", effect), ("b", 0.0)):
        pref = g.normal(0, fact_sd, facts)
        for s in range(seeds):
            x = (level + pref + shift + g.normal(0, seed_sd)) / SCALE
            lines.append({"source": arm, "seed": s,
                          "records": {t: {"acc": np.zeros(facts, np.int8), "logscore": x, "fact": names}
                                      for t in ("task0", "task1")}})
    return pd.DataFrame(lines)


def cell(share: float, seeds: int, effect: float, runs: int, resamples: int, start: int = 0) -> float:
    """The share of ``runs`` contrasts whose 95% CI misses the true effect (a false positive when it is 0)."""
    miss = 0
    for r in range(runs):
        f = V.paired_contrast(frame(share, seeds, effect, rng=start + r), "source", "a", "b", metric="logscore",
                              n_resamples=resamples, rng=r)
        miss += not (f.ci[0] <= effect <= f.ci[1])
    return miss / runs


def _row(args) -> dict:
    s, sh, runs, resamples = args
    fpr = cell(sh, s, 0.0, runs, resamples, start=10_000 * s)
    cov = 1 - cell(sh, s, EFFECT, runs, resamples, start=10_000 * s + 5_000)
    return {"seeds": s, "seed_share": sh, "false_positive": fpr, "coverage": cov,
            "ok": fpr <= FPR_MAX and abs(cov - COVERAGE) <= COVERAGE_TOL}


def table(runs: int, resamples: int, seeds=SEEDS, shares=SHARES, jobs: int = 1) -> pd.DataFrame:
    todo = [(s, sh, runs, resamples) for s in seeds for sh in shares]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(jobs) as pool:
            return pd.DataFrame(list(pool.map(_row, todo)))
    return pd.DataFrame([_row(t) for t in todo])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000, help="simulations per cell (default 1000)")
    p.add_argument("--resamples", type=int, default=199, help="fact-bootstrap resamples per contrast (default 199)")
    p.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS), help="seed counts (default 2 3 4)")
    p.add_argument("--shares", type=float, nargs="*", default=list(SHARES), help="seed shares (default 0.2 .. 0.8)")
    p.add_argument("--jobs", type=int, default=1, help="cells run in parallel processes (default 1)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "statistics"), help="results stem (.json, .md)")
    a = p.parse_args(argv)
    t0 = time.time()
    t = table(a.runs, a.resamples, a.seeds, a.shares, a.jobs)
    took = time.time() - t0
    md = [f"# bench_statistics: {a.runs} runs per cell, {a.resamples} fact resamples, "
          f"effect {EFFECT:g} SE for coverage; {took:.0f} s on {platform.node()}", "",
          "| seeds | seed share | false positives (<= 6%) | coverage (95 +- 2) | ok |", "|---|---|---|---|---|"]
    md += [f"| {r.seeds} | {r.seed_share:.0%} | {r.false_positive:.1%} | {r.coverage:.1%} | {'yes' if r.ok else 'NO'} |"
           for r in t.itertuples()]
    print("\n".join(md))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".md").write_text("\n".join(md) + "\n")
    Path(a.out + ".json").write_text(json.dumps({"runs": a.runs, "resamples": a.resamples, "seconds": took,
                                                 "rows": t.to_dict("records")}, indent=1))
    return 0 if t.ok.all() else 1


if __name__ == "__main__":
    sys.exit(main())
