"""The chapters' verdicts: each of the paper's findings as a signed contrast on the chapter's
tidy frame (``frames.run``), tested with ``statistics``. One function per chapter; each returns
a ``Verdict`` whose parts come in pairs, the paper's accuracy and the gold choice's log-score
(``statistics.METRICS``), headline first, and ``paper_effects`` gives the paper's own number for
each part, so a chapter prints what it found next to what the paper found and what its design
could detect. The headline's effect per task rides along (``Verdict.per_task``: the forest plot).

A part's outcome is "reproduced" or "contradicted" only when its CI excludes zero, Bonferroni-
adjusted over every part of the chapter on both metrics (``finding``); otherwise "inconclusive".
The two metrics are reported apart, never merged; which one is a chapter's primary, and which
headlines share jobs, is ``claims.CLAIMS``, written before the data. Nothing here plots or formats beyond one line of text.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from calib.book import claims, published
from calib.book import statistics as st
from calib.book.grids import AT, SPARSITY  # the cells the grids run at the headline sparsity
from calib.book.profiles import METHOD_NAMES, by_role, label, role

SHORT_PREFIXES = claims.SHORT_PREFIXES  # the paper's best prefix lengths (Sec. 6.2)
TARGET = 0.5  # the accuracy half-width (points) a headline should reach to resolve the paper's smaller effects
METRICS = tuple(st.METRICS)  # accuracy (the paper's), then the log-score


# ------------------------------------------------------------------ the paper's numbers
def _paper_avg(table: str, column: str | None = None, **where) -> float:
    t = published.table(table)
    for k, v in where.items():
        t = t[t[k] == v]
    return round(float(t[column or ("avg" if "avg" in t else "mean")].mean()), 2)


def _paper_gap(table: str, a: dict, b: dict) -> float:
    return _paper_avg(table, **a) - _paper_avg(table, **b)


def paper_effects() -> dict[str, float | str]:
    """The paper's effect for each verdict part, by label (DCLM-7B, from its tables and text)."""
    t2 = lambda m, s, syn=False: {"method": m, "source": s, "synthetic": syn}  # noqa: E731
    syn_gain = np.mean([_paper_gap("table2", t2("wanda", s, True), t2("wanda", s))
                        for s in ("c4", "wikipedia", "slimpajama", "dclm")])
    return {
        "fig1": _paper_gap("table2", t2("wanda", "dclm"), t2("wanda", "wikipedia")),
        "fig1_data_vs_method": _paper_gap("table2", t2("wanda", "dclm"), t2("owl", "wikipedia")),
        "fig2_range60": 2.3, "fig2_range_nm": "1.5-1.8", "fig2_trend": "< 0.1 below 50%, 2.3 at 60%",
        "fig3": "the gap between sources does not close with more data",
        "table1": float(np.mean([_paper_gap("table1", {"method": m, "source": "dclm"},
                                            {"method": m, "source": "wikipedia"}) for m in ("wanda", "dsnot", "owl")])),
        "table2": float(syn_gain),
        **{f"table2_{m}": float(np.mean([_paper_gap("table2", t2(m, s, True), t2(m, s))
                                         for s in ("c4", "wikipedia", "slimpajama", "dclm")]))
           for m in ("dsnot", "owl")},
        "table2_pretrain": _paper_gap("table2", t2("wanda", "dclm", True), t2("wanda", "dclm")),
        "table3": "not printed in the text", "table3_vs_pretrain": "matches or exceeds; about +0.8 at 4:8 and 2:4",
        "fig4": "every prefix beats the original data; 1-4 tokens best",
        "fig4_short_vs_long": "declines slowly with longer prefixes",
        "table4": "the synthetic data beats the original at every rate",
        "table4_filter": "best at 10-20%",
        "fig5": "self-generated data scores highest",
        "table2_alpaca": round(float(np.mean(
            [_paper_avg("table2", column="alpaca_ppl", **t2("wanda", src, True)) -
             _paper_avg("table2", column="alpaca_ppl", **t2("wanda", src)) for src in ("c4", "wikipedia", "slimpajama",
                                                                                   "dclm")])), 2),
    }


# ------------------------------------------------------------------ helpers
def _shared_seeds(df, arm: str, a, b, by) -> pd.DataFrame:
    """The jobs of ``a`` and ``b`` restricted to the seeds both arms share in each stratum (cells may
    have more seeds than their comparison partner); other jobs as they are."""
    keep = []
    for _, g in df.groupby(list(by), dropna=False) if by else [(None, df)]:
        common = set(g[g[arm] == a].seed) & set(g[g[arm] == b].seed)
        keep.append(g[~g[arm].isin([a, b]) | g.seed.isin(common)] if common else g)
    return pd.concat(keep)


def fact_pool(df) -> int | None:
    """How many facts the frame's tasks could rest on: the world's knowledge base for world tasks,
    else None (a real task's documents are its units, and more can be had)."""
    recs = next((r for r in df["records"] if r), None) if "records" in df else None
    if recs and all(str(t).startswith("world_") for t in recs):
        from calib.world.tasks import fact_pool as pool
        return len(pool())
    return None


def contrast(df, arm: str, a, b, metrics=METRICS, **kw) -> list[st.Finding]:
    """``statistics.paired_contrast`` on each metric, restricted to the seeds both arms share in each
    stratum; the accuracy part also carries what it would take: ``detail["needed"]``, the cheapest
    seeds x items whose predicted half-width is at most TARGET, capped by the facts the world's
    knowledge base holds (``statistics.needed``)."""
    d = _shared_seeds(df, arm, a, b, kw.get("by", ()))
    out = []
    for m in metrics:
        f = st.paired_contrast(d, arm, a, b, metric=m, **kw)
        if m == "acc":
            spread = f.detail["spread"]
            seeds = f.n_seeds if isinstance(f.n_seeds, int) else max(f.n_seeds)
            items = max(st.item_matrix(d[d[arm] == a].head(1), m)[1].sizes.values())
            need = st.needed(spread, seeds, items, TARGET, fact_pool(d))
            f = _with_detail(f, needed=need)
        out.append(f)
    return out


def _with_detail(f: st.Finding, **more) -> st.Finding:
    from dataclasses import replace
    return replace(f, detail={**f.detail, **more})


def _verdict(parts, claim: str, head: tuple | None = None) -> st.Verdict:
    """The chapter's verdict; ``head``: (df, arm, a, b, kwargs) of the headline, for its per-task effects."""
    per = None
    if head is not None:
        d, arm, a, b, kw = head
        per = st.per_task(_shared_seeds(d, arm, a, b, kw.get("by", ())), arm, a, b, metrics=METRICS,
                          **{k: v for k, v in kw.items() if k != "claim"})
        per.attrs["claim"] = kw.get("claim", "")   # what the forest plot shows, which may not be parts[0]
    return st.combine([p for part in parts for p in (part if isinstance(part, list) else [part])], claim=claim,
                      per_task=per)


def _wanda(df, setting=None, synthetic=None):
    d = df[df.method == "wanda"]
    if setting is not None:
        d = d[d.setting == setting]
    if synthetic is not None:
        d = d[d.synthetic == synthetic]
    return d


def _with(df, **cols):
    return df.assign(**cols)


def _name(s: dict, role: str) -> str:
    """'encyclopedia (Wikipedia)': the source that plays the paper's corpus ``role``."""
    return label(by_role(s, role, fallback=0))


# ------------------------------------------------------------------ chapters
def _headline(df, arm, a, b, **kw):
    """A headline's parts (one per metric) and what its per-task effects need."""
    return contrast(df, arm, a, b, **kw), (df, arm, a, b, kw)


def fig1(df, s: dict) -> st.Verdict:
    """Fig. 1: better calibration data can gain more than a better method. Headline: at 60%,
    Wanda with the pretraining-role data minus Wanda with the Wikipedia-role data; second,
    Wanda with the pretraining-role data minus OWL with the Wikipedia-role data."""
    pre, wiki = by_role(s, "dclm"), by_role(s, "wikipedia")
    d = df[(df.setting == AT) & ~df.synthetic]
    head, h = _headline(_wanda(d), "source", pre, wiki, label="fig1",
                        claim=f"Wanda at 60%: {_name(s, 'dclm')} minus {_name(s, 'wikipedia')} data")
    parts = [head]
    if "owl" in set(d.method):
        cell = d.method + "|" + d.source
        parts.append(contrast(_with(d, cell=cell), "cell", f"wanda|{pre}", f"owl|{wiki}",
                              label="fig1_data_vs_method",
                              claim=f"Wanda with {_name(s, 'dclm')} data minus OWL with {_name(s, 'wikipedia')} data, 60%"))
    return _verdict(parts, "better calibration data can gain more than a better pruning method", h)


def fig2(df, s: dict) -> st.Verdict:
    """Fig. 2: the calibration source matters more at higher sparsity and for N:M patterns.
    Headline: the range across sources at 60% against seed and item noise; then the
    pretraining-role minus Wikipedia-role gap from the lowest sparsity to 60%; then the range at 2:4.
    The forest plot shows the pretraining-role minus Wikipedia-role gap at 60% per task."""
    w = _wanda(df, synthetic=False)
    pre, wiki = by_role(s, "dclm"), by_role(s, "wikipedia")
    parts = [[st.range_test(w[w.setting == AT], "source", label="fig2_range60", metric=m,
                            claim="the range across sources at 60% exceeds what noise alone produces")
              for m in METRICS]]
    un = w[w.pattern == "unstructured"]
    if un.sparsity.nunique() > 1:
        parts.append([st.range_trend(un, pre, wiki, x="sparsity", high=SPARSITY, label="fig2_trend", metric=m,
                                     claim=f"the {_name(s, 'dclm')} minus {_name(s, 'wikipedia')} gap grows from "
                                           f"{un.sparsity.min():.0%} to 60% sparsity") for m in METRICS])
    nm = w[w.pattern == "2:4"]
    if len(nm):
        parts.append([st.range_test(nm, "source", label="fig2_range_nm", metric=m,
                                    claim="the range across sources at 2:4 exceeds what noise alone produces")
                      for m in METRICS])
    return _verdict(parts, "the source matters more at high sparsity and for N:M patterns",
                    (w[w.setting == AT], "source", pre, wiki,
                     {"label": "fig2_gap60", "claim": f"Wanda at {AT}: {_name(s, 'dclm')} minus {_name(s, 'wikipedia')} "
                                                      f"(Fig. 1's contrast; a range has no per-task form)"}))


def fig3(df, s: dict) -> st.Verdict:
    """Fig. 3: more calibration data does not close the gap between sources. Headline: the
    pretraining-role minus Wikipedia-role gap at the largest amount (2:4)."""
    w = _wanda(df, synthetic=False)
    top = w[w.nsamples == w.nsamples.max()]
    head, h = _headline(top, "source", by_role(s, "dclm"), by_role(s, "wikipedia"), label="fig3",
                        claim=f"at {int(top.nsamples.max())} samples, {_name(s, 'dclm')} data still beats "
                              f"{_name(s, 'wikipedia')} data")
    return _verdict([head], "more data does not close the gap between sources", h)


def amount_effect(df, s: dict) -> st.Verdict:
    """Fig. 3: the gap at the largest minus at the smallest amount; the paper says amounts move a
    source's average by only 0.1-0.2 points. On accuracy an equivalence test (TOST) with the
    margin declared in ``claims``; on the log-score the plain contrast."""
    w = _wanda(df, synthetic=False)
    margin = claims.CLAIMS["fig3_amount"].margin    # "does not close": equivalence on accuracy
    parts = [st.range_trend(w, by_role(s, "dclm"), by_role(s, "wikipedia"), x="nsamples", metric=m,
                            label="fig3_amount", claim="change of the gap from the smallest to the largest amount")
             for m in METRICS]
    return _verdict([[st.margin_test(f, margin, "equivalence") if f.metric == st.PAPER_METRIC else f for f in parts]],
                    "the gap does not change with the amount of data")


def table1(df, s: dict) -> st.Verdict:
    """Table 1: data from the pretraining distribution calibrates best. Headline: pretraining-role
    minus Wikipedia-role data at 2:4, averaged over the methods (the paper: 1.3-1.8 points)."""
    d = df[(df.setting == "2:4") & ~df.synthetic & df.method.isin(["wanda", "dsnot", "owl"])]
    head, h = _headline(d, "source", by_role(s, "dclm"), by_role(s, "wikipedia"), by=["method"], label="table1",
                        claim=f"2:4, mean over {', '.join(METHOD_NAMES[m] for m in sorted(set(d.method)))}: "
                              f"{_name(s, 'dclm')} minus {_name(s, 'wikipedia')}")
    return _verdict([head], "calibration data like the pretraining data calibrates best", h)


def table2(df, s: dict) -> st.Verdict:
    """Tables 2, 5-7: self-generated data beats the original data. Headline: self-generated
    minus original, Wanda at 60%, averaged over the sources; then DSnoT, OWL, the pretraining-role
    source alone (the paper: +0.3-0.7 even there); and, as a labelled diagnostic outside the
    family and without an outcome, the paper's language-modelling column, Alpaca(-role) perplexity
    (lower is better)."""
    d = df[df.setting == AT]
    wd = _wanda(d)
    head, h = _headline(wd, "synthetic", True, False, by=["source"], label="table2",
                        claim="Wanda at 60%: self-generated minus original data, mean over sources")
    parts = [head]
    for m in ("dsnot", "owl"):
        if m in set(d.method):
            parts.append(contrast(d[d.method == m], "synthetic", True, False, by=["source"], label=f"table2_{m}",
                                  claim=f"{METHOD_NAMES[m]} at 60%: self-generated minus original data, mean over sources"))
    pre = by_role(s, "dclm")
    parts.append(contrast(wd[wd.source == pre], "synthetic", True, False, label="table2_pretrain",
                          claim=f"Wanda: self-generated from {_name(s, 'dclm')} data minus that data"))
    if wd.alpaca_ppl.notna().all():
        parts.append(st.job_contrast(_shared_seeds(wd, "synthetic", True, False, ["source"]), "synthetic", True, False,
                                     "alpaca_ppl", by=["source"], direction=-1, label="table2_alpaca",
                                     unit="perplexity", diagnostic=True,
                                     claim="Wanda at 60%: Alpaca-role perplexity, self-generated minus original "
                                           "(lower is better; the texts held fixed)"))
    return _verdict(parts, "self-generated calibration data beats the original data", h)


def table2_cells(df, s: dict, metrics=METRICS) -> pd.DataFrame:
    """Table 2 cell by cell, for its figure: self-generated minus original data at 60% for each
    method and source alone (``statistics.paired_contrast`` on the seeds both arms share), with its
    95% CI, and the paper's Δ for that method and source (accuracy; NaN where it has none).
    Descriptive: the verdict's tests are ``table2``'s; these CIs are not adjusted."""
    d = df[(df.setting == AT)]
    paper = published.table("table2")
    paper = paper[paper.synthetic].set_index(["method", "source"])["delta"]
    rows = []
    for m in [m for m in METHOD_NAMES if m in set(d.method)]:
        for x in [x for x in s["sources"] if x in set(d.source)]:
            cell = d[(d.method == m) & (d.source == x)]
            if set(cell.synthetic) != {True, False}:
                continue
            for metric in metrics:
                f = st.paired_contrast(_shared_seeds(cell, "synthetic", True, False, ()), "synthetic", True, False,
                                       metric=metric, label=f"table2_cell_{m}_{x}")
                rows.append({"method": m, "source": x, "metric": metric, "effect": f.effect, "ci_low": f.ci[0],
                             "ci_high": f.ci[1], "n": f.n_text(),
                             "paper": paper.get((m, role(x)), np.nan) if metric == st.PAPER_METRIC else np.nan})
    return pd.DataFrame(rows)


def table3(df, s: dict) -> st.Verdict:
    """Table 3: self-generated data also helps at other settings. Headline: self-generated
    (from the C4-role source) minus that source, Wanda, averaged over 50%, 65%, 4:8 and 2:4;
    then self-generated minus the pretraining-role data (the paper: matches or exceeds), on
    accuracy a non-inferiority test with the margin declared in ``claims``."""
    c4, pre = by_role(s, "c4", fallback=0), by_role(s, "dclm")
    d = _wanda(df)
    d = _with(d, data=np.where(d.synthetic, "syn", d.source))
    head, h = _headline(d, "data", "syn", c4, by=["setting"], label="table3",
                        claim=f"self-generated minus {_name(s, 'c4')} data, mean over settings")
    parts = [head]
    if pre in set(d.data):
        vs = contrast(d, "data", "syn", pre, by=["setting"], label="table3_vs_pretrain",
                      claim=f"self-generated minus {_name(s, 'dclm')} data, mean over settings")
        margin = claims.CLAIMS["table3_settings"].margin   # "matches or exceeds": non-inferiority on accuracy
        parts.append([st.margin_test(f, margin, "non-inferiority") if f.metric == st.PAPER_METRIC else f for f in vs])
    return _verdict(parts, "self-generated data helps at other sparsities and patterns too", h)


def _stack(df, groups: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([_with(g, arm=arm) for arm, g in groups.items()], ignore_index=True)


def _short_vs(df, other: pd.DataFrame, other_arm: str) -> pd.DataFrame:
    """Jobs with a short prefix (1, 2, 4 tokens) as arm "short" against ``other``, once per short
    prefix (stratum ``p``), so the contrast averages over the short prefixes and the sources."""
    out = []
    for p in SHORT_PREFIXES:
        sp = df[df.synthetic & (df.prefix_len == p)]
        if len(sp):
            out.append(_stack(df, {"short": sp, other_arm: other}).assign(p=p))
    return pd.concat(out, ignore_index=True)


def fig4(df, s: dict) -> st.Verdict:
    """Fig. 4: short prefixes (1-4 tokens) work best. Headline: self-generated with a 1-4 token
    prefix minus the original data (mean over prefixes and sources); then 1-4 tokens minus the
    longest prefix."""
    w = _wanda(df, AT)
    head, h = _headline(_short_vs(w, w[~w.synthetic], "original"), "arm", "short", "original",
                        by=["source", "p"], label="fig4",
                        claim="self-generated with a 1-4 token prefix minus the original data")
    parts = [head]
    longest = w[w.synthetic].prefix_len.max()
    if longest not in SHORT_PREFIXES:
        parts.append(contrast(_short_vs(w, w[w.synthetic & (w.prefix_len == longest)], "long"), "arm",
                              "short", "long", by=["source", "p"], label="fig4_short_vs_long",
                              claim=f"a 1-4 token prefix minus the {int(longest)}-token prefix"))
    return _verdict(parts, "self-generation from a 1-4 token prefix works best", h)


def table4(df, s: dict) -> st.Verdict:
    """Table 4: filtering the highest-perplexity texts helps a little. Headline: self-generated
    (the paper's 20% filter) minus the original data; then filtered at 10-20% minus unfiltered."""
    w = _wanda(df, AT)
    syn20 = w[w.synthetic & (w.filter_rate == claims.TABLE4_RATE)]
    head, h = _headline(_stack(w, {"syn": syn20, "original": w[~w.synthetic]}), "arm", "syn", "original",
                        by=["source"], label="table4", claim="self-generated (20% filtered) minus the original data")
    parts = [head]
    rates = set(w[w.synthetic].filter_rate)
    if 0 in rates and rates & {10, 20}:
        filt = [_stack(w, {"filtered": w[w.synthetic & (w.filter_rate == r)],
                           "unfiltered": w[w.synthetic & (w.filter_rate == 0)]}).assign(rate=r)
                for r in sorted(rates & {10, 20})]
        parts.append(contrast(pd.concat(filt, ignore_index=True), "arm", "filtered", "unfiltered",
                              by=["source", "rate"], label="table4_filter",
                              claim="filtered at 10-20% minus unfiltered self-generated data"))
    return _verdict(parts, "perplexity filtering at 10-20% gives the best self-generated data", h)


def fig5(scores: pd.DataFrame, synthetic_label: str) -> st.Verdict:
    """Fig. 5: self-generated text scores higher Min-50%++ than every other source. ``scores``:
    one line per window with columns ``data`` and ``score``; one part per other source (the
    first is the headline, the others in its Bonferroni family)."""
    syn = scores.loc[scores.data == synthetic_label, "score"].to_numpy()
    parts = [st.mean_difference(syn, scores.loc[scores.data == other, "score"].to_numpy(), metric="Min-50%++",
                                label="fig5", claim=f"Min-50%++ of self-generated minus {other} windows")
             for other in scores.data.unique() if other != synthetic_label]
    return _verdict(parts, "self-generated text looks most like the training data (Min-50%++)")


def pruned_generator(df, s: dict) -> st.Verdict:
    """Beyond: does the pruned model's own generation calibrate better than the dense model's?"""
    d = df[df.synthetic]
    head, h = _headline(d, "generator", "pruned", "dense", label="pruned_generator",
                        claim="self-generated by the pruned model minus by the dense model")
    return _verdict([head], "the pruned model is the better generator", h)


def second_model(df, s: dict) -> st.Verdict:
    """Beyond: does Fig. 4 hold on the Qwen-style model? The same two contrasts as ``fig4``."""
    return fig4(df, s)


def predictors(d: pd.DataFrame, names: list[str], sign: dict) -> st.Verdict:
    """Beyond: does a score of a calibration set, measured before pruning, rank the sets as their
    pruned accuracy (and log-score) does? Spearman's rho, bootstrapped by cell (source x data kind:
    the sets of one cell share more than their seeds); one part per score and metric."""
    cell = d.source.astype(str) + "|" + d.synthetic.astype(str)
    parts = [st.correlation(d[p], d[col], cell, direction=sign[p], label=p, metric=m,
                            claim=f"{p} predicts pruned {st.METRICS[m]} ({'higher' if sign[p] > 0 else 'lower'} "
                                  f"is better)")
             for m, col in (("acc", "avg"), ("logscore", "logscore")) for p in names]
    return _verdict(parts, "a calibration set's quality can be predicted before pruning")


def dsnot_note(df) -> str:
    """One line to print wherever DSnoT appears: its held-out loss beside Wanda's at the same
    settings, sources and seeds, so that no DSnoT verdict is read without it."""
    d = df[~df.synthetic & df.method.isin(["wanda", "dsnot"]) & df.heldout_nll.notna()]
    if d.empty or set(d.method) != {"wanda", "dsnot"}:
        return ""
    key = ["setting", "source", "seed"]
    both = d.pivot_table(index=key, columns="method", values="heldout_nll").dropna()
    if both.empty:
        return ""
    settings = ", ".join(sorted(set(both.index.get_level_values("setting"))))
    return (f"DSnoT at these settings ({settings}; {len(both)} paired runs), with calib's default walk "
            f"(walk=guarded: a row stops at its first swap candidate of the wrong sign, where the original "
            f"code walks on): held-out loss {both['dsnot'].mean():.3f} nats/token against "
            f"{both['wanda'].mean():.3f} for Wanda on the same calibration sets (see docs/pruning.md, "
            f"DSnoT on narrow layers).")


# ------------------------------------------------------------------ rendering
OUTCOME_WORDS = {"finding": {"reproduced": "Reproduced", "contradicted": "Contradicted",
                             "inconclusive": "Inconclusive", "partly": "Partly reproduced", "mixed": "Mixed"},
                 "question": {"reproduced": "Yes", "contradicted": "No (the other way)",
                              "inconclusive": "Unclear", "partly": "In part", "mixed": "Mixed"}}


def _metric_title(metric: str) -> str:
    name = st.NAMES.get(metric, metric)
    name = name[:1].upper() + name[1:]
    return f"{name} (the paper's measure)" if metric == st.PAPER_METRIC else name


def summary(v: st.Verdict, paper: dict | None = None, kind: str = "finding") -> pd.DataFrame:
    """One row per part and metric: what was measured, the effect with its CI, the CI's half-width
    and the smallest effect the design finds with 80% power, n, the paper's effect (accuracy rows),
    the part's outcome with its p, and what ±0.5 points of accuracy would take."""
    paper = paper_effects() if paper is None else paper
    words = OUTCOME_WORDS[kind]
    rows = []
    for p in v.parts:
        ci = p.ci or (np.nan, np.nan)
        need, hw = p.detail.get("needed"), p.half_width
        takes = need.text() if need is not None and hw is not None and hw > TARGET else ""
        lvl = "" if abs(p.level - st.LEVEL) < 1e-12 else f"{100 * p.level:.1f}%: "
        on_paper = p.metric in (st.PAPER_METRIC, "alpaca_ppl", "Min-50%++", "rho")
        rows.append({"comparison": p.claim, "metric": p.metric_name,
                     "effect": p.effect, "CI": f"{lvl}[{ci[0]:+.2f}, {ci[1]:+.2f}]", "CI half-width": hw,
                     "MDE (80% power)": p.mde, "n": p.n_text(),
                     "paper": paper.get(p.label, "") if on_paper else "",
                     "outcome": ("Diagnostic, not decided: " if p.diagnostic else "") + words[p.outcome]
                                + (f" ({p.p_text()})" if p.p is not None else ""),
                     f"for ±{TARGET} points it would take": takes})
    return pd.DataFrame(rows)


def headline(v: st.Verdict, kind: str = "finding", chapter: str | None = None,
             where: str = "In the world") -> str:
    """The chapter's verdict (markdown): the outcome on each metric, never merged, then each part's
    line. Off the chapter's primary metric (``claims.CLAIMS``) an outcome names its metric:
    "Reproduced on the log-score"."""
    words = OUTCOME_WORDS[kind]
    out = []
    for m, o in v.outcomes.items():
        w = words[o]
        said = claims.outcome_text(chapter, m, w)
        out.append(f"{_metric_title(m)}: {said}.")
    lines = [f"**{' '.join(out)}** {where}: {v.claim}."]
    shared = claims.CLAIMS[chapter].shares_with if chapter in claims.CLAIMS else ()
    if shared:
        lines[0] += f" Shares its jobs with {', '.join(shared)}: one piece of evidence with it, not two."
    for p in v.parts:
        tag = " (diagnostic, not decided)" if p.diagnostic else ""
        lines.append(f"- {p.claim} ({p.metric_name}){tag}: {p.text()}")
    return "\n".join(lines)


def without_task(df, task: str = claims.SENSITIVITY_TASK) -> pd.DataFrame:
    """The frame with ``task``'s items dropped from every job (and ``avg`` recomputed over the rest):
    the sensitivity variant each headline is shown under (``claims``)."""
    def drop(rec):
        return {t: r for t, r in rec.items() if t != task} if isinstance(rec, dict) else rec
    out = df.assign(records=[drop(r) for r in df["records"]])
    if "avg" in out:
        out["avg"] = [100 * float(np.mean([np.mean(r["acc"]) for r in rec.values()])) if isinstance(rec, dict) and rec
                      else np.nan for rec in out["records"]]
    return out


def findings_table(results: dict) -> str:
    """The findings table (markdown) for the README and the intro: ``results`` maps a chapter
    (``claims.CLAIMS``) to (its verdict, its verdict without the MMLU-format task, or None). Per
    headline: the primary metric, the headline's outcome on it and on the secondary, each within the
    chapter's adjusted family, the sensitivity's primary outcome, and the headlines it shares jobs with."""
    def cell(chapter, v, m):   # the headline part's own outcome (the chapter's other parts are in the chapter)
        if v is None or m is None or v.headline_outcome(m) is None:
            return "—"
        h = v.headline(m)
        return f"{claims.outcome_text(chapter, m, h.outcome)}: {h.numbers()}"
    lines = ["| chapter | headline | primary metric | primary (adjusted) | secondary (adjusted) | "
             f"without {claims.SENSITIVITY_TASK} (primary) | shares jobs with |", "|---|---|---|---|---|---|---|"]
    for chapter, (v, sens) in results.items():
        c = claims.claim(chapter)
        second = next(iter(c.secondary), None)
        lines.append(f"| {chapter} | {c.contrast} | {st.NAMES.get(c.primary, c.primary)} | {cell(chapter, v, c.primary)} | "
                     f"{cell(chapter, v, second)} | {(sens and sens.headline_outcome(c.primary)) or '—'} | "
                     f"{', '.join(c.shares_with) or '—'} |")
    groups = claims.independent(list(results))
    lines.append(f"\n{len(results)} headlines, {len(groups)} independent pieces of evidence (headlines that share "
                 "jobs count once); nothing is adjusted across chapters.")
    return "\n".join(lines)


def real_model(df, s: dict):
    """The real chapter's headline: on a real pretrained model the calibration source matters, and
    more at 2:4 and at higher sparsity (calib.book.real.sources; its other two verdicts are there)."""
    from calib.book import real
    return real.sources(df, s)
