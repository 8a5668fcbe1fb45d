"""The real-model chapter (calib.book.real): its grid per profile, and its verdicts computed on
a small synthetic frame whose true effects are known."""
import numpy as np
import pandas as pd
import pytest

from calib import book as C
from calib.book import real as R
from calib.experiments import expand_grid

DOMAINS = ("real/code", "real/reference", "real/docs")


def _world(profile):
    """The chapter's settings with the world model, three world sources and the world's ppl
    suite: the grid's shape does not depend on the model."""
    s = R.settings(C.settings(profile), model="world")
    sources = C.WORLD_SOURCES[:len(s["real"]["sources"])]
    s["real"] = {**s["real"], "sources": sources, "pair": sources[:2]}
    s["real"]["suite"] = {"name": "ppl", "n_heldout": s["real"]["suite"]["n_heldout"]}
    return s


@pytest.mark.parametrize("profile", ["smoke", "toy"])
def test_grid_sizes(profile):
    s = _world(profile)
    r = s["real"]
    jobs = list({j.key: j for j in expand_grid(R.real_grid(s))}.values())
    n_src, n_seed = len(r["sources"]), r["seeds"]
    wanda = [j for j in jobs if j.method == "wanda" and j.synthetic is None]
    trend = r["trend_sparsity"] is not None
    assert len(wanda) == n_seed * (n_src * len(r["sparsities"]) + 2 * len(r["patterns"]) + 2 * trend)
    low = [j for j in wanda if j.sparsity == r["trend_sparsity"] and j.pattern == "unstructured"]
    assert {j.calibration["source"] for j in low} <= set(r["pair"])
    sgpt = [j for j in jobs if j.method == "sparsegpt"]
    assert len(sgpt) == 2 * n_seed * ("sparsegpt" in r["methods"])
    assert {j.calibration["source"] for j in sgpt} <= set(r["pair"])
    assert r["method_sparsity"] in r["sparsities"], "the methods headline reuses Wanda's jobs"
    assert sum(j.method == "magnitude" for j in jobs) == 1
    syn = [j for j in jobs if j.synthetic is not None]
    assert len(syn) == len(r["synthetic_sources"]) * n_seed * len(r["filter_rates"])
    assert {j.synthetic["filter_rate"] for j in syn} == set(r["filter_rates"]) == {"smoke": {0}, "toy": {0, 20}}[
        profile]
    assert {j.sparsity for j in syn} == {r["synthetic_sparsity"]} and r["synthetic_sparsity"] in r["sparsities"]
    assert {(j.calibration["nsamples"], j.calibration["seqlen"]) for j in jobs} == {(r["nsamples"], r["seqlen"])}
    assert {j.suite["n_heldout"] for j in jobs} == {r["suite"]["n_heldout"]}
    # sized from a measured job (profiles.py): about a CPU-minute each, 2 cores
    assert len(jobs) == {"smoke": 7, "toy": 27}[profile] and n_src == {"smoke": 2, "toy": 3}[profile]


def test_profiles_name_the_real_model():
    s = R.settings(C.settings("toy"))
    assert s["real"]["model"] == "smollm2" and len(s["real"]["sources"]) >= 3
    assert s["real"]["suite"]["name"] == "real" and s["real"]["pair"] == s["real"]["sources"][:2]
    assert "real_model" in C.GRIDS and R.METRIC == "nll_per_token" and R.DIRECTION == -1


def _frame(s, effects: dict, seeds=4, docs=40, noise=0.02, rng=0) -> pd.DataFrame:
    """A tidy frame of the chapter's jobs with the real suite's per-document records (summed NLL and
    tokens): a document's NLL per token is its own difficulty, plus the job's true effect
    (``effects``: (method, setting, data) -> nats), plus
    seed noise and document x job noise."""
    g = np.random.default_rng(rng)
    r = s["real"]
    base = {d: g.gamma(4.0, 0.8, docs) for d in DOMAINS}
    facts = {d: np.array([f"{d}/{i}" for i in range(docs)], dtype=object) for d in DOMAINS}
    tokens = {d: np.minimum(256, g.integers(40, 600, docs)) for d in DOMAINS}  # short documents are cut short
    rows = []

    def job(method, x, src, seed, synthetic=False, k=np.nan):
        data = src if not synthetic else f"syn{k:g}"
        seed_noise = 0.0 if method == "magnitude" else g.normal(0, noise)  # magnitude reads no data
        shift = effects.get((method, x, data), effects.get((method, x), 0.0)) + seed_noise
        per_token = {d: base[d] + shift + g.normal(0, noise, docs) for d in DOMAINS}
        recs = {d: {"nll": per_token[d] * tokens[d], "tokens": tokens[d], "fact": facts[d]} for d in DOMAINS}
        pattern = x if isinstance(x, str) else "unstructured"
        rows.append({"method": method, "source": src, "seed": seed, "setting": R.setting(x),
                     "sparsity": None if isinstance(x, str) else x, "pattern": pattern, "synthetic": synthetic,
                     "filter_rate": k, "records": recs})

    for src in r["sources"]:
        for seed in range(seeds):
            for x in r["sparsities"]:
                job("wanda", x, src, seed)
            for x in r["patterns"] * (src in r["pair"]):
                job("wanda", x, src, seed)
            if src in r["pair"] and r["trend_sparsity"] is not None:
                job("wanda", r["trend_sparsity"], src, seed)
            if src in r["pair"] and "sparsegpt" in r["methods"]:
                job("sparsegpt", r["method_sparsity"], src, seed)
            for k in r["filter_rates"] * (src in r["synthetic_sources"]):
                job("wanda", r["synthetic_sparsity"], src, seed, True, k)
    job("magnitude", r["method_sparsity"], r["sources"][0], 0)
    return R.with_nll(pd.DataFrame(rows))


def test_verdicts_on_a_synthetic_frame():
    s = R.settings(C.settings("toy"))  # three sources, SparseGPT, two sparsities and 2:4: every part
    r = s["real"]
    a, b = r["pair"]
    eff = {("magnitude", 0.6): 1.0,                       # magnitude is 1 nat worse: both methods beat it
           ("wanda", 0.6, b): 0.3, ("wanda", "2:4", b): 0.3,  # the second source is worse at 60% and 2:4 only
           ("wanda", 0.6, "syn0"): -0.2, ("wanda", 0.6, "syn20"): -0.2}  # self-generated helps, filter or not
    df = _frame(s, eff)
    assert set(df.columns) >= {"nll", "ppl", *(f"nll:{d}" for d in DOMAINS)} and R.domains(df) == list(DOMAINS)
    assert np.allclose(df.ppl, np.exp(df.nll))

    m = R.methods(df, s)
    wanda, sgpt = m.parts
    assert wanda.metric == "nll_per_token" and wanda.unit == R.UNIT and wanda.outcome == "reproduced"
    # Wanda: 1 nat better, less 0.3 for the second of three sources at 60%
    assert wanda.effect == pytest.approx(-90.0, abs=5) and sgpt.effect == pytest.approx(-100.0, abs=5)
    assert wanda.ci[1] < 0 and sgpt.outcome == "reproduced"
    assert wanda.n_facts == 3 * 40 and set(m.per_task.task) == set(DOMAINS)

    v = R.sources(df, s)
    top, nm, trend = v.parts
    assert top.outcome == "reproduced" and top.effect == pytest.approx(-30, abs=5)
    assert nm.outcome == "reproduced" and nm.effect == pytest.approx(-30, abs=5)
    # a gains on b from 50% to 60%: (a - b at 60%) - (a - b at 50%) = -0.3 nats, lower is better
    assert trend.effect == pytest.approx(-30, abs=5) and trend.outcome == "reproduced"

    y = R.synthetic(df, s)
    syn0, syn20, filt = y.parts
    # -0.2 nats, and the second source's original data is 0.3 worse at 60%: -0.35 over the pair
    assert syn0.outcome == syn20.outcome == "reproduced" and syn0.effect == pytest.approx(-35, abs=5)
    # no true effect of the filter: near zero (its CI covers 0 in 95% of such frames; not asserted)
    assert abs(filt.effect) < 5 and filt.outcome != "reproduced"

    cells = R.cells(df, s)
    assert len(cells) == len(r["synthetic_sources"]) * 2 and (cells.effect < 0).all()

    text = R.conclusion([m, v, y])
    assert text.count("**reproduced**") == 7 and len(text.splitlines()) == 2 + 8 + 2
    assert R.doc_counts(df) == [40, 40, 40]

    mean, std = R.table(df, s)
    assert list(mean.columns) == ["magnitude 60%", "sparsegpt 60%", "wanda 50%", "wanda 60%", "wanda 2:4"]
    assert mean.index[0] == "no data" and mean.loc["no data", "magnitude 60%"] > mean.loc[a, "wanda 60%"]
    assert len(mean.index) == 1 + len(r["sources"]) + 2 * len(r["synthetic_sources"])  # the data are the rows


def test_a_null_frame_is_inconclusive():
    s = R.settings(C.settings("toy"))  # three sources, SparseGPT, two sparsities and 2:4: every part
    df = _frame(s, {}, seeds=4, docs=20, rng=1)
    m = R.methods(df, s)
    assert [p.outcome for p in m.parts] == ["inconclusive", "inconclusive"]
    assert all(p.ci[0] < 0 < p.ci[1] for p in m.parts)
