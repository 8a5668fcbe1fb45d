"""The chapter on a real pretrained model (SmolLM2-135M, ``smollm2``): its grid, its tidy
columns and its three headline verdicts, on held-out perplexity of real text.

The metric, declared here before anything runs: per held-out document, its mean negative
log-likelihood per token (nats; ``METRIC``, from the ``real`` suite's per-document records ``nll``,
summed, and ``tokens``; the document is the item and its own resampled unit, as a fact is in the
world), averaged over
the documents of each domain and then over the domains with equal weight. Every contrast is on
this log-perplexity, x 100 (``designs.SCALE``), lower better (``DIRECTION``); tables also show
exp(mean NLL), the perplexity. A contrast pairs jobs by calibration seed and redraws seeds and
documents (``statistics.paired_contrast``): the world's verdict code, with documents for facts.

The headlines, each one ``Verdict``:
* ``methods``: Wanda, and SparseGPT, minus magnitude pruning at ``method_sparsity``, averaged
  over the calibration sources (the Wanda and SparseGPT papers' claim);
* ``sources``: the range across sources at the highest sparsity exceeds noise; the ``pair`` gap
  (code minus dictionary) at 2:4, and its growth from ``trend_sparsity`` to the highest sparsity
  (Fig. 1, Fig. 2 and Table 1 on a real model);
* ``synthetic``: self-generated minus original data, Wanda at ``synthetic_sparsity``, averaged
  over ``synthetic_sources``, without the perplexity filter and with it at ``filter_rate`` (Tables 2 and 4).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from calib.book import statistics as st

METRIC = "nll_per_token"  # per held-out document: its summed NLL over its scored tokens (the real suite's records)
DIRECTION = -1      # lower NLL is better: a reproduced "A beats B" has A minus B below zero
UNIT = "nats×100 per token"


# ------------------------------------------------------------------ settings
def settings(s: dict, model=None) -> dict:
    """The chapter's settings: the profile's (``calib.book.setup``), whose ``real`` block is the
    chapter's own (``profiles.PROFILES[...]["real"]``), with the notebook's ``model`` as the real
    model (None keeps the profile's). Sources and seeds: ``-p settings`` with a ``real`` mapping."""
    return {**s, "real": {**s["real"], "model": model}} if model is not None else s


# ------------------------------------------------------------------ the grid
def _cal(r: dict, sources, seeds: int) -> dict:
    return {"source": list(sources), "nsamples": r["nsamples"], "seqlen": r["seqlen"], "seed": {"range": seeds}}


def _setting(x) -> dict:
    return {"pattern": x, "sparsity": None} if isinstance(x, str) else {"sparsity": x}


def real_grid(s: dict) -> dict:
    """Every job of the chapter, from the profile's ``real`` settings: Wanda with every source at
    each of ``sparsities``, and with the ``pair`` at each of ``patterns`` and at ``trend_sparsity``
    (the source headline); the other ``methods`` (SparseGPT) with the pair, and magnitude (one job,
    no data), at ``method_sparsity``, one of ``sparsities`` (the methods headline); Wanda with each
    of ``synthetic_sources`` self-generated at ``synthetic_sparsity``, unfiltered and filtered (the
    synthetic headline). Cells are spent where CPU time allows: a SmolLM2 job is 1-3 minutes here."""
    r = s["real"]
    pair = _cal(r, r["pair"], r["seeds"])
    syn = [{**r["synthetic"], "filter_rate": k} for k in r["filter_rates"]]
    subs = [{"method": "wanda", **_setting(x)} for x in r["sparsities"]]
    subs += [{"method": "wanda", **_setting(x), "calibration": pair} for x in r["patterns"]]
    if r["trend_sparsity"] is not None:
        subs.append({"method": "wanda", "sparsity": r["trend_sparsity"], "calibration": pair})
    subs += [{"method": m, "sparsity": r["method_sparsity"], "calibration": pair}
             for m in r["methods"] if m != "wanda"]
    subs.append({"method": "magnitude", "sparsity": r["method_sparsity"],
                 "calibration": {"source": r["sources"][0], "seed": 0}})
    subs.append({"method": "wanda", "sparsity": r["synthetic_sparsity"], "synthetic": syn,
                 "calibration": _cal(r, r["synthetic_sources"], r["seeds"])})
    return {"model": r["model"], "dtype": s["dtype"], "suite": r["suite"],
            "calibration": _cal(r, r["sources"], r["seeds"]), "grids": subs}


# ------------------------------------------------------------------ the frame
def with_nll(df: pd.DataFrame) -> pd.DataFrame:
    """The tidy frame with ``METRIC`` added to each document's records (summed NLL / tokens) and,
    per job, each domain's mean document NLL per token (``nll:<domain>``), their mean over
    domains (``nll``: the declared metric, nats per token) and its exp (``ppl``)."""
    if not len(df):
        return df.assign(nll=[], ppl=[])
    recs = [{d: {**r, METRIC: np.asarray(r["nll"], float) / np.asarray(r["tokens"], float)} for d, r in rec.items()}
            for rec in df["records"]]
    domains = list(recs[0])
    out = df.assign(records=recs)
    for d in domains:
        out[f"nll:{d}"] = [float(np.mean(r[d][METRIC])) for r in recs]
    out["nll"] = out[[f"nll:{d}" for d in domains]].mean(axis=1)
    out["ppl"] = np.exp(out["nll"])
    return out


def domains(df: pd.DataFrame) -> list[str]:
    """The held-out domains of the frame's records, in the suite's order."""
    return list(next(r for r in df["records"] if r))


def doc_counts(df: pd.DataFrame) -> list[int]:
    """Held-out documents per domain (``domains``' order): the resampled units."""
    rec = next(r for r in df["records"] if r)
    return [int(np.size(rec[d][METRIC])) for d in rec]


def _magnitude_everywhere(df: pd.DataFrame, sources) -> pd.DataFrame:
    """Magnitude pruning reads no data: its one job stands in every source's stratum, its seed
    made None so it pairs with no calibration seed (it adds no seed variance)."""
    mag = df[df.method == "magnitude"]
    rest = df[df.method != "magnitude"]
    copies = [mag.assign(source=x, seed=None) for x in sources]
    return pd.concat([rest, *copies], ignore_index=True)


def setting(x) -> str:
    """'50%' or '2:4': the frame's ``setting`` of a sparsity or a pattern."""
    return x if isinstance(x, str) else f"{round(x * 100):d}%"


def table(df: pd.DataFrame, s: dict, column: str = "ppl") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean and std over seeds of ``column`` (perplexity; ``nll:<domain>`` per domain) per
    method, setting and data (a source, or a source self-generated): rows the data, columns
    method/setting (the paper's Tables 1-2 on the real model, turned so that the toy grid's eight
    kinds of data fit the page as rows)."""
    r = s["real"]
    d = df.assign(data=[src if not sy else f"{src} self-gen. {k:g}%"
                        for src, sy, k in zip(df.source, df.synthetic, df.filter_rate.fillna(0))],
                  row=[f"{m} {x}" for m, x in zip(df.method, df.setting)])
    d.loc[d.method == "magnitude", "data"] = "no data"
    g = d.groupby(["row", "data"], sort=False)[column].agg(["mean", "std"]).reset_index()
    rows = [f"{m} {setting(x)}" for m, x in
            [("magnitude", r["method_sparsity"]), ("sparsegpt", r["method_sparsity"])]
            + [("wanda", x) for x in [*sorted({*r["sparsities"], r["trend_sparsity"]} - {None}), *r["patterns"]]]]
    rows = [x for x in rows if x in set(g.row)]
    cols = list(dict.fromkeys(["no data", *r["sources"], *g.data]))
    cols = [c for c in cols if c in set(g.data)]
    mean = g.pivot(index="data", columns="row", values="mean").reindex(index=cols, columns=rows)
    std = g.pivot(index="data", columns="row", values="std").reindex(index=cols, columns=rows)
    mean.index.name = std.index.name = mean.columns.name = std.columns.name = None
    return mean, std


def figure(df: pd.DataFrame, s: dict):
    """Left: held-out perplexity (exp of the declared metric, the mean NLL over domains) by method
    at ``method_sparsity``, one dot per source. Right: Wanda's perplexity
    per source at each sparsity and pattern, log scale; bars: std over seeds."""
    import matplotlib.pyplot as plt
    r = s["real"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    colours = dict(zip(r["sources"], plt.get_cmap("tab10").colors))
    x = setting(r["method_sparsity"])
    meth = [m for m in ("magnitude", "sparsegpt", "wanda") if m in set(df.method)]
    for i, m in enumerate(meth):
        d = df[(df.method == m) & (df.setting == x) & ~df.synthetic]
        for j, src in enumerate(r["sources"] if m != "magnitude" else [None]):
            v = d.ppl if src is None else d[d.source == src].ppl
            a.errorbar(i + 0.15 * (j - 1) * (src is not None), v.mean(), yerr=v.std() if len(v) > 1 else 0,
                       fmt="o", color=colours.get(src, "black"), capsize=3,
                       label=src if i == len(meth) - 1 else None)
    a.set_xticks(range(len(meth)), meth)
    a.set(ylabel="held-out perplexity (mean over domains)", title=f"Methods at {x}", yscale="log")
    a.legend(fontsize=7)
    order = [setting(v) for v in sorted({*r["sparsities"], r["trend_sparsity"]} - {None})] + list(r["patterns"])
    w = df[(df.method == "wanda") & ~df.synthetic]
    for src in r["sources"]:
        g = w[w.source == src].groupby("setting").ppl.agg(["mean", "std"]).reindex(order)
        b.errorbar(range(len(order)), g["mean"], yerr=g["std"].fillna(0), marker="o", ms=3, capsize=3,
                   color=colours[src], label=src)
    b.set_xticks(range(len(order)), order)
    b.set(ylabel="held-out perplexity", xlabel="Wanda: sparsity or pattern", yscale="log",
          title="Calibration source by setting")
    b.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ the verdicts
def _contrast(df, arm, a, b, **kw) -> st.Finding:
    from dataclasses import replace
    f = st.paired_contrast(df, arm, a, b, metric=METRIC, direction=DIRECTION, **kw)
    return replace(f, unit=UNIT)


def _per_domain(df, arm, a, b, **kw) -> pd.DataFrame:
    return st.per_task(df, arm, a, b, metrics=(METRIC,), direction=DIRECTION, **kw)


def methods(df: pd.DataFrame, s: dict) -> st.Verdict:
    """Wanda (headline) and SparseGPT minus magnitude pruning at ``method_sparsity``, mean over
    the calibration sources; lower NLL is better, so the claim holds when the effect is below 0."""
    r = s["real"]
    x = r["method_sparsity"]
    d = df[(df.setting == setting(x)) & ~df.synthetic]
    parts = []
    for m in [m for m in ("wanda", "sparsegpt") if m in set(d.method)]:
        srcs = list(dict.fromkeys(d[d.method == m].source))   # SparseGPT runs with the pair only
        dm = _magnitude_everywhere(d[d.method.isin([m, "magnitude"])], srcs)
        parts.append(_contrast(dm, "method", m, "magnitude", by=["source"], label=f"real_{m}",
                               claim=f"{'Wanda' if m == 'wanda' else 'SparseGPT'} minus magnitude at {x:.0%}, "
                                     f"mean over {len(srcs)} calibration sources"))
    wanda_sources = list(dict.fromkeys(d[d.method == "wanda"].source))
    dw = _magnitude_everywhere(d[d.method.isin(["wanda", "magnitude"])], wanda_sources)
    per = _per_domain(dw, "method", "wanda", "magnitude", by=["source"], label="real_wanda")
    return st.combine(parts, claim="Wanda and SparseGPT prune a real model better than magnitude pruning",
                      per_task=per)


def sources(df: pd.DataFrame, s: dict) -> st.Verdict:
    """The calibration source matters, and more at higher sparsity and at 2:4. Headline: the
    ``pair`` gap in Wanda's NLL at the highest sparsity (declared below); then the same gap at 2:4 (declared: the first source, code, calibrates better than the second,
    the dictionary, as pretraining-like data beats Wikipedia in the paper), and the growth of that
    gap (a difference-in-differences) from ``trend_sparsity`` to the highest sparsity."""
    r = s["real"]
    w = df[(df.method == "wanda") & ~df.synthetic]
    top, low = max(r["sparsities"]), r["trend_sparsity"]
    at = lambda x: w[w.setting == setting(x)]  # noqa: E731
    a, b = r["pair"]
    # the headline is the declared pair at the top sparsity: a two-sided range test over 2 seeds of
    # 3 sources has too few distinct permutations to reach p < 0.05 (its smallest p is 0.13)
    parts = [_contrast(at(top), "source", a, b, label="real_pair_top", claim=f"{a} minus {b} data at {top:.0%}")]
    for p in r["patterns"]:   # the pair alone: a range of two sources is |a - b|, and a directed test is stronger
        parts.append(_contrast(at(p), "source", a, b, label=f"real_pair_{p}", claim=f"{a} minus {b} data at {p}"))
    un = w[(w.pattern == "unstructured") & w.source.isin([a, b])]
    if low is not None:
        from dataclasses import replace
        f = st.range_trend(un, a, b, x="sparsity", low=low, high=top, metric=METRIC, direction=DIRECTION,
                           label="real_trend", claim=f"{a} gains on {b} from {low:.0%} to {top:.0%} sparsity")
        parts.append(replace(f, unit=UNIT))
    per = _per_domain(at(top), "source", a, b, label="real_pair")
    return st.combine(parts, claim="the calibration source matters, more at high sparsity and at 2:4", per_task=per)


def synthetic(df: pd.DataFrame, s: dict) -> st.Verdict:
    """Self-generated minus original data, Wanda at ``synthetic_sparsity``, mean over sources:
    headline unfiltered (Table 2); then with the perplexity filter (Table 4), and filtered minus
    unfiltered."""
    r = s["real"]
    x = r["synthetic_sparsity"]
    w = df[(df.method == "wanda") & (df.setting == setting(x))]
    w = w[w.source.isin(set(w[w.synthetic].source))]   # the sources self-generated from
    data = np.where(~w.synthetic, "original", [f"self-generated, filter {k:g}%" for k in w.filter_rate.fillna(0)])
    w = w.assign(data=data)
    rates = sorted(r["filter_rates"])
    arm = lambda k: f"self-generated, filter {k:g}%"  # noqa: E731
    parts = [_contrast(w, "data", arm(k), "original", by=["source"], label=f"real_syn{k:g}",
                       claim=f"self-generated ({'no filter' if k == 0 else f'{k:g}% filtered'}) minus original data, "
                             f"Wanda at {x:.0%}, mean over sources") for k in rates]
    if len(rates) > 1:
        parts.append(_contrast(w, "data", arm(rates[-1]), arm(rates[0]), by=["source"], label="real_filter",
                               claim=f"{rates[-1]:g}% filtered minus "
                                     f"{'unfiltered' if rates[0] == 0 else arm(rates[0])} self-generated data"))
    per = _per_domain(w, "data", arm(rates[0]), "original", by=["source"], label=f"real_syn{rates[0]:g}")
    return st.combine(parts, claim="self-generated calibration data beats the real sources", per_task=per)


def cells(df: pd.DataFrame, s: dict) -> pd.DataFrame:
    """Table 2 on the real model, source by source: self-generated (each filter rate) minus
    original data, with its 95% CI (``paired_contrast``; descriptive, not Holm-adjusted)."""
    r = s["real"]
    x = r["synthetic_sparsity"]
    w = df[(df.method == "wanda") & (df.setting == setting(x))]
    rows = []
    for src in [x for x in r["sources"] if x in set(w[w.synthetic].source)]:
        for k in sorted(r["filter_rates"]):
            cell = w[(w.source == src) & (~w.synthetic | (w.filter_rate == k))]
            f = _contrast(cell, "synthetic", True, False, label=f"real_cell_{src}_{k:g}")
            rows.append({"source": src, "filter": f"{k:g}%", "effect": f.effect, "ci_low": f.ci[0],
                         "ci_high": f.ci[1], "outcome": f.outcome})
    return pd.DataFrame(rows)


def conclusion(verdicts) -> str:
    """The chapter's verdicts in one markdown table: every part, its effect with the 95% CI (the
    Bonferroni-adjusted one within its verdict's family) and its outcome. A CI is one unbreakable
    cell (a no-break space after its comma), as the book's tables keep number cells on one line."""
    lines = ["| verdict | part | effect | 95% CI | outcome |", "|---|---|---:|---:|---|"]
    for v in verdicts:
        for i, p in enumerate(v.parts):
            ci = "" if p.ci is None else f"[{p.ci[0]:+.2f},\u00a0{p.ci[1]:+.2f}]"
            lines.append(f"| {v.claim if i == 0 else ''} | {p.claim} | {p.effect:+.2f} {p.unit} | {ci} | "
                         f"**{p.outcome}** ({p.p_text()}) |")
    return "\n".join(lines) + "\n\nA negative effect is a lower held-out NLL (better) for the first arm."


__all__ = ["METRIC", "DIRECTION", "UNIT", "settings", "real_grid", "with_nll", "domains", "setting", "table",
           "figure", "doc_counts", "methods", "sources", "synthetic", "cells", "conclusion"]
