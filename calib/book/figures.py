"""One look for every figure: colours per calibration source across the book, the
notebooks' plotting setup, the mean-with-band curves several chapters draw, a method x source
table as dots (``by_method``), the headline per task (``forest``) and Table 2 cell by cell
(``synthetic_gain``).
"""
from __future__ import annotations

from calib.book.frames import mean_std
from calib.book.profiles import label, role

SYNTHETIC_COLOUR, MAGNITUDE_COLOUR, OTHER_COLOUR = "#e6ab02", "#666666", "#a6761d"


def source_colour(name: str) -> str:
    """A source's colour (its record's: the paper corpus it plays), a paper corpus's, or the
    self-generated data's and magnitude pruning's own."""
    from calib.data import source_record
    from calib.sources import ROLE_COLOURS
    key = name.lower()
    if key.startswith("syn") or key.endswith("+syn"):
        return SYNTHETIC_COLOUR
    if key == "magnitude":
        return MAGNITUDE_COLOUR
    rec = source_record(name)
    return rec.colour if rec is not None else ROLE_COLOURS.get(key, OTHER_COLOUR)


def setup() -> None:
    """Figure style, and quiet libraries: notebooks render as book pages."""
    import logging

    import matplotlib
    import matplotlib.pyplot as plt
    import transformers
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    for name in ("lm-eval", "lm_eval", "calib.filters"):  # calib.filters: "texts cut to the context" notes
        logging.getLogger(name).setLevel(logging.ERROR)
    matplotlib.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3,
                                "axes.spines.top": False, "axes.spines.right": False})
    plt.rcParams["savefig.bbox"] = "tight"


def curves(ax, df, x: str, metric: str = "avg", hue: str = "source", order=None, xticks=None,
           label_fn=None, **kw):
    """Mean over seeds against ``x``, one line per ``hue`` value, with a ± std band."""
    import numpy as np
    label_fn = label_fn or (label if hue == "source" else str)
    for h in order or list(dict.fromkeys(df[hue])):
        d = mean_std(df[df[hue] == h], [x], metric)
        xs = np.arange(len(d)) if xticks is not None else d[x].to_numpy(float)
        colour = source_colour(role(h)) if hue == "source" else None
        ax.plot(xs, d["mean"], marker="o", ms=3, color=colour, label=label_fn(h), **kw)
        sd = d["std"].fillna(0).to_numpy()
        if len(d) > 1:
            ax.fill_between(xs, d["mean"] - sd, d["mean"] + sd, color=colour, alpha=0.15, lw=0)
        else:  # a band needs two points
            ax.errorbar(xs, d["mean"], yerr=sd, color=colour, capsize=3, lw=1)
    if xticks is not None:
        ax.set_xticks(range(len(xticks)), xticks)


def by_method(ax, mean, std=None, colours=None):
    """A method x source table as a picture: one group per method (rows of ``mean``), a dot per
    source (columns) with its ± ``std`` bar; ``colours``: one per column (default: by source name)."""
    import numpy as np
    k = len(mean.columns)
    width = 0.8 / max(k, 1)
    colours = colours or [source_colour(str(c)) for c in mean.columns]
    for i, (c, colour) in enumerate(zip(mean.columns, colours)):
        sd = std[c].to_numpy(float) if std is not None and c in std else None
        ax.errorbar(np.arange(len(mean)) + (i - (k - 1) / 2) * width, mean[c].to_numpy(float), yerr=sd, fmt="o",
                    color=colour, label=str(c), capsize=2, ms=5)
    ax.set_xticks(range(len(mean)), [str(m) for m in mean.index])


def forest(per_task, title: str = ""):
    """A chapter headline's effect on each task, one panel per metric (accuracy, log-score),
    each with its 95% CI: where an effect lives. ``per_task``: ``statistics.per_task``'s frame."""
    import matplotlib.pyplot as plt
    import numpy as np

    from calib.book.finding import METRICS, UNITS
    from calib.book.frames import task_name
    metrics = list(dict.fromkeys(per_task.metric))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.42 * per_task.task.nunique() + 1.2),
                             sharey=True, squeeze=False)
    for ax, m in zip(axes[0], metrics):
        d = per_task[per_task.metric == m].reset_index(drop=True)
        y = np.arange(len(d))[::-1]
        sure = (d.ci_low > 0) | (d.ci_high < 0)
        ax.errorbar(d.effect, y, xerr=[d.effect - d.ci_low, d.ci_high - d.effect], fmt="none", ecolor="#777777",
                    capsize=2, lw=1)
        ax.scatter(d.effect, y, c=np.where(sure, "#1b9e77", "#999999"), zorder=3, s=22)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, [task_name(t) for t in d.task])
        ax.set(xlabel=f"{METRICS.get(m, m)} ({UNITS.get(m, '')})", title=METRICS.get(m, m))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def synthetic_gain(cells, verdict=None, labels: dict | None = None):
    """Table 2's claim at a glance: self-generated minus original data for each source, one row of
    panels per method and one column per metric, each effect with its 95% CI; a diamond for the
    verdict's mean over sources (its CI, widened by the chapter's Bonferroni family) and, for accuracy, a
    black ring for the paper's Δ on DCLM-7B. Each panel has its own x scale, so that one method's
    wide CIs (2 seeds: a t with one degree of freedom) do not flatten another's. ``cells``:
    ``verdicts.table2_cells``; ``verdict``: ``verdicts.table2``; ``labels``: method -> the verdict
    part's label (default: table2, table2_<m>)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from calib.book.finding import METRICS, UNITS
    from calib.book.profiles import METHOD_NAMES
    methods = list(dict.fromkeys(cells.method))
    metrics = list(dict.fromkeys(cells.metric))
    sources = list(dict.fromkeys(cells.source))
    labels = labels or {m: "table2" if m == "wanda" else f"table2_{m}" for m in methods}
    parts = {(p.label, p.metric): p for p in (verdict.parts if verdict is not None else ())}
    y = {x: len(sources) - k for k, x in enumerate(sources)}  # sources top down, the mean below them
    fig, axes = plt.subplots(len(methods), len(metrics), figsize=(2.7 * len(metrics) + 1.6,
                                                                  0.3 * (len(sources) + 1) * len(methods) + 1.3),
                             sharey=True, squeeze=False)  # each panel its own x scale: a 2-seed CI is wide
    for i, m in enumerate(methods):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            for _, r in cells[(cells.method == m) & (cells.metric == metric)].iterrows():
                ax.errorbar(r.effect, y[r.source], xerr=[[r.effect - r.ci_low], [r.ci_high - r.effect]], fmt="o",
                            color=source_colour(role(r.source)), ms=4, capsize=2, lw=1.1)
                if np.isfinite(r.paper):
                    ax.plot(r.paper, y[r.source], "o", mfc="none", mec="black", ms=7, mew=1)
            part = parts.get((labels.get(m), metric))
            if part is not None and part.ci is not None:
                ax.errorbar(part.effect, 0, xerr=[[part.effect - part.ci[0]], [part.ci[1] - part.effect]], fmt="D",
                            color="black", ms=4.5, capsize=3, lw=1.4)
            ax.axvline(0, color="black", lw=0.8)
            ax.axhline(0.5, color="#bbbbbb", lw=0.6)
            ax.tick_params(labelsize=8)
            if i == 0:
                ax.set_title(METRICS.get(metric, metric), fontsize=9)
            if i == len(methods) - 1:
                ax.set_xlabel(f"{METRICS.get(metric, metric)} ({UNITS.get(metric, '')})", fontsize=8)
        axes[i][0].set_yticks([0] + [y[x] for x in sources], ["mean (verdict)"] + [label(x) for x in sources])
        axes[i][0].set_ylabel(METHOD_NAMES.get(m, m), fontsize=9, fontweight="bold")
    fig.suptitle("Self-generated minus original data, 60% (95% CIs; rings: the paper's Δ on DCLM-7B)", fontsize=9)
    fig.tight_layout()
    return fig


OUTCOME_COLOURS = {"reproduced": "#1b9e77", "contradicted": "#d95f02", "inconclusive": "#999999",
                   "partly": "#7570b3", "mixed": "#e7298a"}


def findings_forest(results: dict):
    """The book's findings in one picture: per headline (``results``: chapter -> verdict, as
    ``verdicts.findings_table`` takes, or (verdict, sensitivity)), its effect on its declared
    primary metric (``claims``) with the CI shown in the verdict, coloured by the chapter's
    outcome, and an arrow for the paper's direction. Metrics differ in unit: each row says its own."""
    import matplotlib.pyplot as plt

    from calib.book import claims
    from calib.book.finding import NAMES
    rows = []
    for chapter, v in results.items():
        v = v[0] if isinstance(v, tuple) else v
        c = claims.claim(chapter)
        if c.primary not in v.outcomes:
            continue
        h = v.headline(c.primary)
        rows.append((chapter, c, h, h.outcome))   # the headline's own outcome, as the findings table gives it
    fig, axes = plt.subplots(len(rows), 1, figsize=(7.5, 0.55 * len(rows) + 0.8), squeeze=False)
    for ax, (chapter, c, h, outcome) in zip(axes[:, 0], rows):
        ax.errorbar([h.effect], [0], xerr=[[h.effect - h.ci[0]], [h.ci[1] - h.effect]], fmt="o",
                    color=OUTCOME_COLOURS[outcome], capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        span = max(abs(h.ci[0]), abs(h.ci[1]), 1e-9) * 1.3
        ax.set_xlim(-span, span)
        ax.annotate("paper: →" if c.direction > 0 else "paper: ←", xy=(1.01, 0.5), xycoords="axes fraction",
                    ha="left", va="center", fontsize=7)   # outside the axes: never over a CI's cap
        ax.set_yticks([0], [f"{chapter}: {outcome}"])
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel(NAMES.get(c.primary, c.primary) + (f" ({h.unit})" if h.unit else ""), fontsize=7, labelpad=1)
    fig.suptitle("Every headline on its declared metric (CI as adjusted in its chapter)", fontsize=9)
    fig.tight_layout()
    return fig
