"""calib.book.claims: the book's claims declared before the data, and what reads them."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calib.book import claims as C
from calib.book import verdicts as V
from calib.book.runner import CHAPTERS
from calib.errors import CalibError


def test_every_chapter_with_a_verdict_declares_its_claim():
    assert set(C.CLAIMS) == set(CHAPTERS) - {"world"}
    for c in C.CLAIMS.values():
        assert c.direction in (1, -1) and c.primary not in c.secondary
        assert c.kind in ("superiority", "equivalence", "non-inferiority")
        assert (c.margin is not None) == (c.kind != "superiority")
        assert all(o in C.CLAIMS and c.chapter in C.CLAIMS[o].shares_with for o in c.shares_with)  # both ways
    assert C.CLAIMS["table2_synthetic"].diagnostics == ("alpaca_ppl",)
    with pytest.raises(CalibError, match="unknown chapter 'fig9'"):
        C.claim("fig9")


def test_shared_evidence_is_counted_once():
    """Table 4 lies inside Fig. 4's jobs and Fig. 2 shares Fig. 1's: 10 headlines, 8 pieces of evidence."""
    groups = C.independent()
    assert len(groups) == len(C.CLAIMS) - 2
    assert ["fig4_prefix", "table4_filter"] in [sorted(g) for g in groups]
    assert ["fig1_methods", "fig2_sparsity"] in [sorted(g) for g in groups]


def test_off_the_primary_metric_an_outcome_names_its_metric():
    assert C.outcome_text("fig4_prefix", "acc", "reproduced") == "reproduced"
    assert C.outcome_text("fig4_prefix", "logscore", "reproduced") == "reproduced on the log-score"
    assert C.outcome_text("fig5_mink", "acc", "reproduced") == "reproduced on the accuracy"


def test_without_task_drops_the_mmlu_format_items_and_recomputes_avg():
    rec = {"world_boolq": {"acc": np.array([1, 0, 1, 1]), "fact": np.array(["a", "b", "c", "d"], dtype=object)},
           "world_mmlu": {"acc": np.array([0, 0]), "fact": np.array(["a", "e"], dtype=object)}}
    df = pd.DataFrame([{"source": "x", "seed": 0, "records": rec, "avg": 37.5}])
    out = V.without_task(df)
    assert list(out.records[0]) == ["world_boolq"] and out.avg[0] == pytest.approx(75.0)
    assert list(df.records[0]) == ["world_boolq", "world_mmlu"] and df.avg[0] == 37.5  # its input is left alone


def test_findings_table_says_the_metric_and_counts_shared_evidence_once():
    from calib.book import statistics as st
    def verdict(acc, log):
        parts = [st.Finding(acc, effect=1.0, ci=(0.2, 1.8), p=0.01 if acc != "inconclusive" else 0.4, metric="acc"),
                 st.Finding(log, effect=9.0, ci=(3.0, 15.0), p=0.001, metric="logscore", unit="nats×100")]
        return st.Verdict(claim="c", parts=tuple(parts), outcomes={"acc": acc, "logscore": log})
    md = V.findings_table({"fig4_prefix": (verdict("inconclusive", "reproduced"), verdict("inconclusive", "inconclusive")),
                           "table4_filter": (verdict("reproduced", "reproduced"), None)})
    row = next(line for line in md.splitlines() if line.startswith("| fig4_prefix"))
    assert "| accuracy | inconclusive: +1.00 points [+0.20, +1.80] | reproduced on the log-score: +9.00" in row
    assert row.endswith("| inconclusive | table4_filter |")
    assert "2 headlines, 1 independent pieces of evidence" in md
    nll = st.Finding("reproduced", effect=-6.7, ci=(-13.1, -0.3), p=0.04, metric="nll_per_token", unit="nats×100")
    md = V.findings_table({"real_model": (st.Verdict("c", (nll,), {"nll_per_token": "reproduced"}), None)})
    row = next(line for line in md.splitlines() if line.startswith("| real_model"))  # its primary is not accuracy
    assert "| reproduced: -6.70 nats×100 [-13.10, -0.30] | — | — | — |" in row


def test_findings_forest_draws_every_headline_on_its_primary_metric():
    import matplotlib
    matplotlib.use("Agg")
    from calib.book import figures
    from calib.book import statistics as st
    acc = st.Finding("reproduced", effect=1.0, ci=(0.2, 1.8), p=0.01, metric="acc")
    mink = st.Finding("inconclusive", effect=0.1, ci=(-0.2, 0.4), p=0.5, metric="Min-50%++", unit="")
    fig = figures.findings_forest({
        "fig1_methods": st.Verdict("c", (acc,), {"acc": "reproduced"}),
        "fig5_mink": (st.Verdict("c", (mink,), {"Min-50%++": "inconclusive"}), None)})
    labels = [ax.get_yticklabels()[0].get_text() for ax in fig.axes]
    assert labels == ["fig1_methods: reproduced", "fig5_mink: inconclusive"]
    assert fig.axes[1].get_xlabel().startswith("Min-50%++")


def test_a_headline_that_shares_jobs_says_so():
    from calib.book import statistics as st
    v = st.Verdict("c", (st.Finding("reproduced", effect=1.0, ci=(0.2, 1.8), p=0.01, metric="logscore", n_seeds=4),),
                   {"logscore": "reproduced"})
    text = V.headline(v, chapter="table4_filter")
    assert "Reproduced on the log-score." in text and "Shares its jobs with fig4_prefix" in text
    assert "Shares" not in V.headline(v, chapter="table1_similarity")
