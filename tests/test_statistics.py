"""calib.book.statistics on constructed frames: jobs simulated with a known effect, known seed noise
(a part shared by both arms of a seed, so pairing matters) and item noise (0/1 items, some of
which flip from job to job)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calib.book import statistics as V
from calib.errors import CalibError

FAST = 999   # resamples: enough for a 95% interval in a test


def simulate(arms: dict, *, seeds=6, n=100, tasks=3, seed_sd=0.5, shared_sd=1.0, flip=0.1, rng=0,
             arm="source", seed_labels: dict | None = None, **columns) -> pd.DataFrame:
    """One job per (arm value, seed). An item is right when its draw falls under the item's
    difficulty plus the job's shift (effect + shared seed noise + own seed noise, in points);
    a fraction ``flip`` of the draws is fresh in every job, the rest is the item's own."""
    g = np.random.default_rng(rng)
    names = [f"task{t}" for t in range(tasks)]
    level = {t: g.uniform(0.25, 0.75, n) for t in names}
    draw = {t: g.uniform(size=n) for t in names}
    shared = g.normal(0, shared_sd, seeds)
    lines = []
    for v, effect in arms.items():
        labels = (seed_labels or {}).get(v, range(seeds))
        for s, label in enumerate(labels):
            shift = (effect + shared[s] + g.normal(0, seed_sd)) / 100
            items = {}
            for t in names:
                u = np.where(g.uniform(size=n) < flip, g.uniform(size=n), draw[t])
                items[t] = (u < level[t] + shift).astype(np.int8)
            lines.append({arm: v, "seed": label, **columns, "items": items,
                          "avg": 100 * np.mean([x.mean() for x in items.values()])})
    return pd.DataFrame(lines)


def contrast(df, **kw):
    return V.paired_contrast(df, "source", "a", "b", n_resamples=FAST, **kw)


# ------------------------------------------------------------------ Finding
def test_finding_text_and_row():
    f = V.Finding("reproduced", effect=1.42, ci=(0.95, 1.90), n_seeds=10, n_items=3500, label="wanda")
    assert f.text() == "reproduced: +1.42 points [+0.95, +1.90], n = 10 seeds x 3,500 items"
    assert f.half_width == pytest.approx(0.475)
    row = f.as_dict()
    assert (row["outcome"], row["ci_low"], row["ci_high"], row["n_seeds"]) == ("reproduced", 0.95, 1.90, 10)
    g = V.Finding("inconclusive", effect=0.12, ci=(-0.40, 0.64), n_seeds=(1, 8), n_items=2100)
    assert g.text() == ("inconclusive: +0.12 points [-0.40, +0.64], n = 1 vs 8 seeds x 2,100 items; "
                        "effects smaller than about ±0.52 points could not be told from zero")
    assert g.as_dict()["n_seeds"] == "1 vs 8"
    with pytest.raises(CalibError, match="unknown outcome 'yes'"):
        V.Finding("yes")


def test_outcome_rules_and_combine():
    assert V.outcome_of((0.1, 2.0)) == "reproduced"
    assert V.outcome_of((0.1, 2.0), direction=-1) == "contradicted"
    assert V.outcome_of((-2.0, -0.1)) == "contradicted"
    assert V.outcome_of((-2.0, -0.1), direction=-1) == "reproduced"
    assert V.outcome_of((-0.1, 2.0)) == "inconclusive"
    yes = V.Finding("reproduced", effect=1.0, ci=(0.5, 1.5), n_seeds=5, n_items=300, label="wanda")
    maybe = V.Finding("inconclusive", effect=0.2, ci=(-0.3, 0.7), n_seeds=5, n_items=300, label="owl")
    both = V.combine([yes, maybe], claim="all methods")
    assert both.outcome == "partly" and both.parts == (yes, maybe)
    assert both.text() == ("partly: wanda: reproduced +1.00 points [+0.50, +1.50]; "
                           "owl: inconclusive +0.20 points [-0.30, +0.70]")
    assert V.combine([yes, yes]).outcome == "reproduced"
    with pytest.raises(CalibError):
        V.combine([])


# ------------------------------------------------------------------ paired contrasts
def test_reproduced_and_contradicted():
    df = simulate({"a": 3.0, "b": 0.0}, seeds=8, n=200)
    f = contrast(df, claim="a beats b")
    assert f.outcome == "reproduced" and f.ci[0] > 0 and f.n_seeds == 8 and f.n_items == 600
    # the effect is exactly the difference of the arms' mean avg, as the tables show it
    means = df.groupby("source")["avg"].mean()
    assert f.effect == pytest.approx(means["a"] - means["b"], abs=1e-9)
    assert abs(f.effect - 3.0) < 2 * f.half_width
    assert contrast(df, direction=-1).outcome == "contradicted"
    assert V.paired_contrast(df, "source", "b", "a", n_resamples=FAST).outcome == "contradicted"


def test_inconclusive_when_the_arms_are_the_same_jobs_reshuffled():
    df = simulate({"a": 0.0}, seeds=6, n=80, seed_sd=2.0)
    b = df.copy()
    b["source"], b["seed"] = "b", np.roll(b["seed"].to_numpy(), 1)   # every job again, under another seed
    f = contrast(pd.concat([df, b], ignore_index=True))
    assert f.effect == pytest.approx(0, abs=1e-9) and f.outcome == "inconclusive"
    assert f.ci[0] < 0 < f.ci[1]
    assert f"about ±{f.half_width:.2f} points" in f.text()


def test_seed_only_ci_excludes_zero_by_chance_the_two_level_ci_does_not():
    # 20 items per task: a wins 2 items and loses 1 in every seed, with a little seed noise
    rng = np.random.default_rng(3)
    lines = []
    for s in range(5):
        items_a, items_b = {}, {}
        for t in range(3):
            base = (rng.uniform(size=20) < 0.5).astype(np.int8)
            base[:3] = [0, 0, 1]
            a = base.copy()
            a[:3] = [1, 1, 0]
            flip = rng.integers(3, 20)
            a[flip] = 1 - a[flip]
            items_a[f"task{t}"], items_b[f"task{t}"] = a, base
        lines += [{"source": "a", "seed": s, "items": items_a}, {"source": "b", "seed": s, "items": items_b}]
    df = pd.DataFrame(lines)
    seeds_only = contrast(df, resample=["seeds"])
    two_level = contrast(df)
    assert seeds_only.effect == two_level.effect
    assert seeds_only.outcome == "reproduced"       # "certain", from 2 items against 1
    assert two_level.outcome == "inconclusive"
    assert two_level.half_width > 3 * seeds_only.half_width


def test_pairing_by_seed_narrows_the_ci_when_seed_noise_is_shared():
    kw = dict(seeds=8, n=150, shared_sd=3.0, seed_sd=0.3, rng=5)
    paired = contrast(simulate({"a": 1.0, "b": 0.0}, **kw))
    unpaired_df = simulate({"a": 1.0, "b": 0.0}, seed_labels={"b": range(100, 108)}, **kw)
    unpaired = contrast(unpaired_df)
    assert paired.n_seeds == 8 and unpaired.n_seeds == (8, 8)
    assert unpaired.effect == pytest.approx(paired.effect)   # same jobs, other seed labels
    assert unpaired.half_width > 1.5 * paired.half_width


def test_single_seed_arm_stays_fixed():
    wanda = simulate({"wanda": 0.0}, seeds=8, n=100, arm="method")
    magnitude = simulate({"magnitude": -4.0}, seeds=1, n=100, arm="method", rng=1)
    magnitude["seed"] = np.nan                       # magnitude pruning uses no calibration data
    df = pd.concat([wanda, magnitude], ignore_index=True)
    f = V.paired_contrast(df, "method", "wanda", "magnitude", n_resamples=FAST)
    assert f.n_seeds == (8, 1)
    twice = pd.concat([df, magnitude.assign(setting="2:4")], ignore_index=True)
    with pytest.raises(CalibError, match="several jobs for method='magnitude'.*differ in \\['setting'\\]"):
        V.paired_contrast(twice, "method", "wanda", "magnitude")
    assert f.effect == pytest.approx(wanda["avg"].mean() - magnitude["avg"].iloc[0])
    assert f.ci[0] < f.effect < f.ci[1]


def test_averaged_over_strata_and_weighted():
    parts = []
    for i, (method, gap) in enumerate([("wanda", 2.0), ("dsnot", 0.0), ("owl", 4.0)]):
        parts.append(simulate({"a": gap, "b": 0.0}, seeds=6, n=100, rng=10 + i, method=method))
    df = pd.concat(parts, ignore_index=True)
    f = contrast(df, by=["method"])
    gaps = df.groupby(["method", "source"])["avg"].mean().unstack()
    assert f.effect == pytest.approx((gaps["a"] - gaps["b"]).mean())
    g = contrast(df, by=["method"], weights={"owl": 1.0, "dsnot": -1.0})   # a difference-in-differences
    assert g.effect == pytest.approx((gaps["a"] - gaps["b"])["owl"] - (gaps["a"] - gaps["b"])["dsnot"])
    with pytest.raises(CalibError, match="unknown stratum"):
        contrast(df, by=["method"], weights={"sparsegpt": 1.0})
    with pytest.raises(CalibError, match="several jobs"):
        contrast(df)                                   # three jobs per seed: not told how to pair them


def test_self_generated_minus_original_averaged_over_sources():
    parts = []
    for i, (source, gain) in enumerate([("c4", 1.0), ("wiki", 3.0)]):
        df = simulate({True: gain, False: 0.0}, seeds=6, n=100, rng=30 + i, arm="synthetic", source=source)
        df["prefix_len"] = np.where(df.synthetic, 1.0, np.nan)   # NaN for the original sets
        df["filter_rate"] = np.nan
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    # NaN strata keys pair up (no stratum per row)
    f = V.paired_contrast(df, "synthetic", True, False, by=["source", "filter_rate"], n_resamples=FAST)
    gains = df.groupby(["source", "synthetic"])["avg"].mean().unstack()
    assert f.effect == pytest.approx((gains[True] - gains[False]).mean()) and f.n_seeds == 6
    with pytest.raises(CalibError, match="they differ in \\['source'"):
        V.paired_contrast(df, "synthetic", True, False)


def test_deterministic_and_seeded():
    df = simulate({"a": 1.0, "b": 0.0})
    assert contrast(df) == contrast(df)
    assert contrast(df, rng=1).ci != contrast(df).ci


def test_zero_effect_cis_exclude_zero_rarely():
    effects, excluded, hws, predicted = [], 0, [], []
    for r in range(60):
        df = simulate({"a": 0.0, "b": 0.0}, seeds=5, n=60, rng=100 + r)
        f = V.paired_contrast(df, "source", "a", "b", n_resamples=499, rng=r)
        effects.append(f.effect)
        excluded += f.outcome != "inconclusive"
        hws.append(f.half_width)
        predicted.append(V.variance_components(df, "source", "a", "b").half_width(5, sampling=True))
    assert excluded <= 6                               # nominal 5%; the CI errs on the wide side
    spread = 1.96 * np.std(effects)                    # the half-width the true sampling variance gives
    assert spread < np.mean(hws) < 2 * spread
    assert 0.75 * spread < np.mean(predicted) < 1.3 * spread


# ------------------------------------------------------------------ power analysis
def test_power_prediction_matches_the_bootstrap():
    kw = dict(seed_sd=1.5, flip=0.15)
    pilot = simulate({"a": 1.0, "b": 0.0}, seeds=8, n=150, rng=21, **kw)
    comp = V.variance_components(pilot, "source", "a", "b")
    assert comp.n_seeds == 8 and comp.n_items == {"task0": 150, "task1": 150, "task2": 150}
    assert comp.seed > 0 and all(v > 0 for v in comp.residual.values())
    assert comp.half_width(8) == pytest.approx(contrast(pilot).half_width, rel=0.1)
    bigger = simulate({"a": 1.0, "b": 0.0}, seeds=16, n=400, rng=22, **kw)
    assert comp.half_width(16, 400) == pytest.approx(contrast(bigger).half_width, rel=0.2)
    assert comp.half_width(16, 400, sampling=True) < comp.half_width(16, 400)
    s = comp.seeds_needed(target=1.0, items=400)
    assert comp.half_width(s, 400) <= 1.0 < comp.half_width(s - 1, 400)
    assert comp.seeds_needed(target=0.01, items=20, most=50) is None
    with pytest.raises(CalibError, match="paired pilot"):
        V.variance_components(simulate({"a": 0, "b": 0}, seed_labels={"b": [7, 8, 9, 10, 11, 12]}),
                              "source", "a", "b")


# ------------------------------------------------------------------ ranges
SOURCES = ["c4", "wiki", "slim", "dclm"]


def test_range_null_no_effect_is_mostly_inconclusive_strong_effect_reproduced():
    calls = [V.range_test(simulate(dict.fromkeys(SOURCES, 0.0), seeds=5, n=60, rng=200 + r),
                          n_resamples=499, rng=r) for r in range(20)]
    assert sum(f.outcome == "reproduced" for f in calls) <= 3
    assert all(f.effect > 0 and f.ci[0] > 0 for f in calls)   # why a CI proves nothing for a range
    strong = simulate(dict(zip(SOURCES, [0.0, 0.0, 4.0, 8.0])), seeds=6, n=200, rng=7)
    f = V.range_test(strong, n_resamples=FAST, claim="the source matters")
    assert f.outcome == "reproduced" and f.p < 0.05 and f.effect > f.null95
    assert f.detail["p_seeds"] < 0.05 and f.detail["p_items"] < 0.05
    assert f.text().startswith(f"reproduced: range {f.effect:.2f} points [")
    assert "noise-only null: 95th percentile" in f.text()
    means = strong.groupby("source")["avg"].mean()
    assert f.effect == pytest.approx(means.max() - means.min())


def test_range_seed_null_is_fooled_by_items_the_two_level_null_is_not():
    # every source has its own persistent winners and losers among 20 items per task, mean zero
    g = np.random.default_rng(4)
    base = {t: (g.uniform(size=20) < 0.5).astype(np.int8) for t in range(3)}
    lines = []
    for src in SOURCES:
        own = {t: np.where(g.uniform(size=20) < 0.4, 1 - base[t], base[t]) for t in base}
        for s in range(6):
            items = {}
            for t in base:
                x = own[t].copy()
                i = g.integers(20)
                x[i] = 1 - x[i]                      # a little seed noise
                items[f"task{t}"] = x
            lines.append({"source": src, "seed": s, "items": items})
    f = V.range_test(pd.DataFrame(lines), n_resamples=FAST)
    assert f.detail["p_seeds"] < 0.05 and f.detail["p_items"] >= 0.05
    assert f.outcome == "inconclusive" and "could not be told from noise" in f.text()


def test_range_by_strata_averages_the_ranges():
    df = pd.concat([simulate(dict(zip(SOURCES, [0, 1, 2, 3.0])), rng=1, method="wanda"),
                    simulate(dict(zip(SOURCES, [0, 0, 0, 0.0])), rng=2, method="owl")], ignore_index=True)
    f = V.range_test(df, by=["method"], n_resamples=199)
    per = df.groupby(["method", "source"])["avg"].mean().groupby("method").agg(lambda x: x.max() - x.min())
    assert f.effect == pytest.approx(per.mean())
    with pytest.raises(CalibError, match="different seeds"):
        V.range_test(simulate(dict.fromkeys(SOURCES, 0.0), seed_labels={"dclm": [9, 1, 2, 3, 4, 5]}))


def test_range_trend_growing_gap_and_the_noise_bias_it_avoids():
    def frame(gap_low, gap_high, noise_high, rng):
        low = simulate({"dclm": gap_low, "wiki": 0.0, "c4": 0.0}, seeds=6, n=100, rng=rng, sparsity=0.3)
        high = simulate({"dclm": gap_high, "wiki": 0.0, "c4": 0.0}, seeds=6, n=100, rng=rng + 1,
                        seed_sd=noise_high, sparsity=0.6)
        return pd.concat([low, high], ignore_index=True)

    grows = V.range_trend(frame(0.0, 6.0, 0.5, 1), "dclm", "wiki", n_resamples=FAST)
    assert grows.outcome == "reproduced" and grows.effect > 0
    # the same gap at both sparsities, more seed noise at the higher one: the ranges still "grow"
    raw, did = [], []
    for r in range(12):
        df = frame(1.0, 1.0, 4.0, 300 + 2 * r)
        ranges = [V.range_test(df[df.sparsity == x], n_resamples=99).effect for x in (0.3, 0.6)]
        raw.append(ranges[1] - ranges[0])
        did.append(V.range_trend(df, "dclm", "wiki", n_resamples=499, rng=r).outcome)
    assert sum(d > 0 for d in raw) >= 9
    assert did.count("reproduced") <= 1
    with pytest.raises(CalibError, match="two different levels"):
        V.range_trend(frame(0, 1, 1, 0), "dclm", "wiki", low=0.6, high=0.6)


# ------------------------------------------------------------------ correlations
def test_correlation_outcomes():
    g = np.random.default_rng(0)
    x = np.arange(16.0)
    y = x + g.normal(0, 2, 16)
    f = V.correlation(x, y, n_resamples=FAST, label="distance")
    assert f.outcome == "reproduced" and f.effect > 0.8 and f.p < 0.05 and f.n_points == 16
    assert f.text().startswith("reproduced: rho +0.") and "n = 16 points" in f.text()
    assert V.correlation(x, y, direction=-1, n_resamples=FAST).outcome == "contradicted"
    x = np.arange(-6.0, 7.0)
    flat = V.correlation(x, x ** 2, n_resamples=FAST)   # rho is exactly 0: up, then down
    assert flat.effect == pytest.approx(0, abs=1e-12) and flat.outcome == "inconclusive"
    with pytest.raises(CalibError, match="5\\+ finite"):
        V.correlation([1, 2, 3], [1, 2, 3])
    with pytest.raises(CalibError, match="constant"):
        V.correlation([1, 2, 3, 4, 5], [1, 1, 1, 1, 1])


# ------------------------------------------------------------------ bad input
def test_clear_errors_for_bad_frames():
    df = simulate({"a": 0.0, "b": 0.0}, seeds=3, n=20)
    with pytest.raises(CalibError, match="unknown source value 'dclm'; valid choices: a, b"):
        V.paired_contrast(df, "source", "a", "dclm")
    with pytest.raises(CalibError, match="no column 'items'"):
        V.paired_contrast(df.drop(columns="items"), "source", "a", "b")
    with pytest.raises(CalibError, match="no column 'method'"):
        V.paired_contrast(df, "method", "a", "b")
    with pytest.raises(CalibError, match="same source value"):
        V.paired_contrast(df, "source", "a", "a")
    short = df.copy()
    short.at[4, "items"] = {**short.at[4, "items"], "task1": short.at[4, "items"]["task1"][:15]}
    with pytest.raises(CalibError, match="has 15 items for task 'task1'.*the first job has 20"):
        V.paired_contrast(short, "source", "a", "b")
    missing = df.copy()
    missing.at[2, "items"] = {k: v for k, v in missing.at[2, "items"].items() if k != "task2"}
    with pytest.raises(CalibError, match="has items for \\['task0', 'task1'\\]"):
        V.paired_contrast(missing, "source", "a", "b")
    wrong_avg = df.copy()
    wrong_avg.loc[1, "avg"] += 0.5
    with pytest.raises(CalibError, match="its items average"):
        V.paired_contrast(wrong_avg, "source", "a", "b")
    with pytest.raises(CalibError, match="no job for source='b'"):
        V.paired_contrast(pd.concat([df, df.assign(method="owl")[df.source == "a"]]).fillna({"method": "wanda"}),
                          "source", "a", "b", by=["method"])
    one = simulate({"a": 0.0, "b": 0.0}, seeds=1, n=20)
    with pytest.raises(CalibError, match="nothing to resample"):
        V.paired_contrast(one, "source", "a", "b", resample=["seeds"])
    with pytest.raises(CalibError, match="unknown resample level 'jobs'"):
        V.paired_contrast(df, "source", "a", "b", resample=["jobs"])
    with pytest.raises(CalibError, match="DataFrame"):
        V.paired_contrast({"items": []}, "source", "a", "b")
