"""One look for every figure: colours per calibration source across the book, the
notebooks' plotting setup, and the mean-with-band curves several chapters draw.
"""
from __future__ import annotations

from calib.book.frames import mean_std
from calib.book.profiles import label, role

# The paper's corpora and their world counterparts share a colour.
SOURCE_COLOURS = {
    "dclm": "#1b9e77", "world/pretrain": "#1b9e77",
    "c4": "#d95f02", "world/web": "#d95f02",
    "slimpajama": "#7570b3", "world/mixed": "#7570b3",
    "wikipedia": "#e7298a", "world/encyclopedia": "#e7298a",
    "alpaca": "#66a61e", "world/instructions": "#66a61e",
    "synthetic": "#e6ab02", "magnitude": "#666666",
}


def source_colour(name: str) -> str:
    key = name.lower()
    if key.startswith("syn") or key.endswith("+syn"):
        return SOURCE_COLOURS["synthetic"]
    return SOURCE_COLOURS.get(key, "#a6761d")


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
