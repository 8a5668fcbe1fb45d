"""From grids to tidy frames: run a grid's missing jobs into the profile's store, and read
its rows back as one line per job; the summaries and styled tables the chapters print.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from calib.book.grids import setting_name
from calib.book.profiles import role

if TYPE_CHECKING:
    import pandas as pd

@contextlib.contextmanager
def sweep(jobs, s: dict, progress: bool):
    """Run the jobs' missing rows into the profile's store; yields (store, summary)."""
    from calib.experiments import Store
    from calib.experiments import run_sweep
    Path(s["store"]).parent.mkdir(parents=True, exist_ok=True)
    kw, saved = {}, os.environ.get("OMP_NUM_THREADS")
    if s["executor"] == "ray":
        # one thread per worker, as many workers as cores: small models scale badly over
        # threads. Ray hands OMP_NUM_THREADS to its workers; this process keeps its own.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        kw["ray_num_cpus"] = os.cpu_count()
    try:
        with Store(s["store"]) as store:
            summary = run_sweep(jobs, store, executor=s["executor"], progress=progress, **kw)
            yield store, summary
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved


def run(grid: dict, s: dict, progress: bool = False):
    """Run the grid's missing jobs into the profile's store; its rows as a tidy frame."""
    from calib.experiments import expand_grid
    jobs = expand_grid(grid)
    with sweep(jobs, s, progress) as (store, summary):
        if summary["failed"]:
            failed = [r for r in store.rows(status="failed") if r["key"] in {j.key for j in jobs}]
            raise RuntimeError(f"{summary['failed']} of {summary['total']} jobs failed; first error:\n"
                               f"{failed[0]['error'] if failed else '?'}")
        return tidy(store, jobs)


def tidy(store, jobs) -> "pd.DataFrame":
    """One line per job of ``jobs`` with its parameters and metrics under short names:
    method, source, role, setting ('60%' or '2:4'), seed, nsamples, synthetic, prefix_len,
    filter_rate, generator, gen_seed, avg, logscore, alpaca_ppl, heldout_nll, <task> accuracies,
    dense_avg, calib_hash, and ``records``: per task, the per-item fields of ``calib.evaluate``
    (acc, acc_norm, logscore, fact; the verdicts' input). ``avg`` and the task accuracies are in
    points; ``logscore``, the mean gold-choice log-score over tasks, in nats x 100."""
    import pandas as pd

    from calib.experiments import results_frame
    raw = results_frame(store, over=None, records=True)
    if raw.empty:
        return pd.DataFrame()
    raw = raw[raw.key.isin({j.key for j in jobs})].reset_index(drop=True)
    col = lambda c: raw[c] if c in raw else pd.Series([None] * len(raw), dtype=object)  # noqa: E731
    syn = col("synthetic.generator").notna()
    out = pd.DataFrame({
        "method": raw["method"], "source": raw["calibration.source"], "role": raw["calibration.source"].map(role),
        "sparsity": raw["sparsity"], "pattern": raw["pattern"],
        "setting": [setting_name(p, s) for p, s in zip(raw.pattern, raw.sparsity)],
        "seed": raw["calibration.seed"], "nsamples": raw["calibration.nsamples"], "synthetic": syn,
        "prefix_len": col("synthetic.prefix_len").where(syn), "filter_rate": col("synthetic.filter_rate").where(syn),
        "generator": col("synthetic.generator").where(syn), "gen_seed": col("synthetic.gen_seed").where(syn),
        "model": raw["model"], "avg": 100 * col("avg").astype(float),
        "logscore": [_mean_logscore(r) for r in raw["records"]],
        "alpaca_ppl": col("alpaca_ppl"), "heldout_nll": col("heldout_nll"),
        "dense_avg": 100 * col("dense_avg").astype(float), "dense_alpaca_ppl": col("dense_alpaca_ppl"),
        "calib_hash": raw["calib_hash"], "key": raw["key"]})
    for c in raw.columns:
        if c.endswith("/acc") and not c.startswith("dense_"):
            out[task_name(c[:-4])] = 100 * raw[c].astype(float)
    out["records"] = [r or None for r in raw["records"]]
    return out


def _mean_logscore(records: dict) -> float | None:
    """The mean over tasks of a job's mean gold-choice log-score, x 100 (None without log-scores)."""
    import numpy as np
    if not records or any("logscore" not in r for r in records.values()):
        return None
    return float(100 * np.mean([np.mean(r["logscore"]) for r in records.values()]))


def task_name(task: str) -> str:
    """world_boolq -> boolq: world tasks share the paper's column names."""
    return task[len("world_"):] if task.startswith("world_") else task


def seeds(df) -> str:
    """How many calibration seeds the cells of ``df`` rest on, for a caption: "4 seeds" where every
    cell has 4, "2–4 seeds per cell" where they differ (a headline's arms carry more)."""
    from calib.book.designs import PARAMETERS
    n = df.groupby([c for c in PARAMETERS if c in df], dropna=False, sort=False).seed.nunique()
    lo, hi = int(n.min()), int(n.max())
    return f"{lo} seed{'s' * (lo != 1)}" if lo == hi else f"{lo}–{hi} seeds per cell"


def mean_std(df, by: list[str], metric: str = "avg"):
    """Mean, std and n of ``metric`` per group (std over seeds)."""
    g = df.groupby(by, dropna=False, sort=False)[metric]
    return g.agg(["mean", "std", "count"]).rename(columns={"count": "n"}).reset_index()


# A number cell: one line, digits in columns. Set inline by the Styler so that a table keeps it
# wherever it is shown (a notebook, the book); _static/calib.css sizes the book's tables.
NUMBER_CELL = "white-space: nowrap; font-variant-numeric: tabular-nums; text-align: right"
SPREAD = "font-size: 0.72em; opacity: 0.72; padding-left: 0.08em"


def number(v, sd=None, digits: int = 2, sign: bool = False) -> str:
    """One number cell's text: the mean and, when given, its spread as a small subscript, as the
    paper prints 62.52 with 0.21 below the line (HTML; empty for a missing mean)."""
    import pandas as pd
    if v is None or pd.isna(v):
        return ""
    txt = f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"
    return txt + (f'<sub class="calib-sd">{sd:.{digits}f}</sub>' if sd is not None and pd.notna(sd) else "")


def styled(mean, std=None, best: str = "max", axis: int = 0, digits: int = 2, lower=(), exclude=(), signed=(),
           caption: str | None = None, spread: str | None = None):
    """A pandas Styler in the paper's style: each cell the mean with its std as a small subscript,
    on one line, and the best value of each column (axis=0) or row (axis=1) in bold. Columns in
    ``lower`` are better when lower (perplexity), ``exclude`` are never bold, ``signed`` print a
    sign (Δ). ``caption``, with ``spread`` saying what the subscripts are ("std over 3 seeds"),
    becomes the table's caption ("...; subscripts: std over 3 seeds")."""
    import numpy as np
    import pandas as pd
    shown = pd.DataFrame("", index=mean.index, columns=mean.columns, dtype=object)
    for j, c in enumerate(mean.columns):
        for i in range(len(mean)):
            sd = std[c].iloc[i] if std is not None and c in std else None
            shown.iloc[i, j] = number(mean.iloc[i, j], sd, digits, c in signed)
    num = mean.apply(pd.to_numeric, errors="coerce").astype(float)
    bold = np.zeros(mean.shape, dtype=bool)
    if axis == 0:
        for j, c in enumerate(mean.columns):
            if c in exclude or num[c].isna().all():
                continue
            pick = num[c].min() if (c in lower) != (best == "min") else num[c].max()
            bold[:, j] = num[c].to_numpy() == pick
    else:
        pick = num.max(axis=1) if best == "max" else num.min(axis=1)
        bold = num.to_numpy() == pick.to_numpy()[:, None]
    css = pd.DataFrame(np.where(bold, "font-weight: bold", ""), index=mean.index, columns=mean.columns, dtype=object)
    out = (shown.style.apply(lambda _: css, axis=None).set_table_attributes('class="calib-table"')
           .set_table_styles([{"selector": "td", "props": NUMBER_CELL}, {"selector": "sub", "props": SPREAD}]))
    if caption is not None:
        has_spread = std is not None and spread
        out = out.set_caption(caption + (f"; subscripts: {spread}" if has_spread else ""))
    return out


VERDICT_CSS = ("table.calib-verdict td.num{white-space:nowrap;text-align:right;font-variant-numeric:tabular-nums}"
               "table.calib-verdict th.part{text-align:left;font-weight:600;padding-top:0.6em}"
               "table.calib-verdict .note{font-weight:normal}"
               "table.calib-verdict .level,table.calib-verdict .note{font-size:0.85em;opacity:0.75}")
VERDICT_COLUMNS = {"metric": "metric", "effect": "effect", "CI": "95% CI", "CI half-width": "± (CI half-width)",
                   "MDE (80% power)": "MDE", "paper": "paper", "outcome": "outcome"}


def verdict_table(t: "pd.DataFrame", caption: str = "") -> str:
    """A verdict's summary (``verdicts.summary``) as an HTML table that fits the page: one row per
    metric under a row naming the comparison, with its n, the paper's words (where it states no
    number) and what the target half-width would take; numbers on one line, text free to wrap."""
    import html

    import pandas as pd
    take = next((c for c in t.columns if c.startswith("for ±")), None)
    esc = lambda v: "" if v is None or (not isinstance(v, str) and pd.isna(v)) else html.escape(str(v))  # noqa: E731

    def num(v, fmt):
        return "" if v is None or (isinstance(v, float) and pd.isna(v)) else fmt.format(v)

    def ci(text):  # "98.3%: [-28.06, +10.20]" -> the level small, the interval as it is
        level, _, interval = str(text).rpartition(": ")
        return (f'<span class="level">{esc(level)}</span> ' if level else "") + esc(interval)

    def outcome(text):  # "Inconclusive (p = 0.471 (Bonferroni, ...))" -> the word bold, the p small
        word, _, rest = str(text).partition(" (")
        return f"<b>{esc(word)}</b>" + (f' <span class="note">({esc(rest)}</span>' if rest else "")

    head = "".join(f"<th>{html.escape(v)}</th>" for v in VERDICT_COLUMNS.values())
    rows = []
    for claim, g in t.groupby("comparison", sort=False):
        notes = [f"n = {esc(n)}" for n in dict.fromkeys(g["n"]) if n] if g["n"].nunique() == 1 else []
        words = [v for v in g["paper"] if isinstance(v, str) and v]
        notes += [f"paper: {esc(v)}" for v in dict.fromkeys(words)]
        if take:
            notes += [f"{esc(take[:1].upper() + take[1:])}: {esc(v)}" for v in dict.fromkeys(g[take]) if v]
        note = "".join(f'<br><span class="note">{n}</span>' for n in notes)
        rows.append(f'<tr><th class="part" colspan="{len(VERDICT_COLUMNS)}" scope="rowgroup">{esc(claim)}{note}</th></tr>')
        for _, r in g.iterrows():
            metric = esc(r["metric"])  # verdicts.summary names it (statistics.NAMES)
            if g["n"].nunique() > 1:
                metric += f'<br><span class="note">n = {esc(r["n"])}</span>'
            paper = r["paper"] if isinstance(r["paper"], (int, float)) and not pd.isna(r["paper"]) else None
            cells = [f"<td>{metric}</td>", f'<td class="num">{num(r["effect"], "{:+.2f}")}</td>',
                     f'<td class="num">{ci(r["CI"])}</td>', f'<td class="num">{num(r["CI half-width"], "{:.2f}")}</td>',
                     f'<td class="num">{num(r["MDE (80% power)"], "{:.2f}")}</td>',
                     f'<td class="num">{num(paper, "{:+.2f}")}</td>', f"<td>{outcome(r['outcome'])}</td>"]
            rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (f"<style>{VERDICT_CSS}</style><table class=\"calib-table calib-verdict\">{cap}<thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def spread(df, by: list[str], metric: str = "avg"):
    """Per group of ``by``: the range (max - min) of per-source means, and the mean
    seed std - the paper's 'performance range', and the noise it must beat."""
    import pandas as pd
    per = mean_std(df, by + ["source"], metric)
    out = per.groupby(by, sort=False).agg(range=("mean", lambda x: x.max() - x.min()),
                                          best=("mean", "idxmax"), seed_std=("std", "mean"))
    out["best"] = per.loc[out["best"], "source"].values
    return out.reset_index() if len(by) else pd.DataFrame(out)


def heldout_table(df, sources) -> tuple:
    """The diagnostic held-out loss on the pretraining mixture (nats/token) per method and source:
    (mean, std) over seeds, rows the methods in the book's order, columns ``sources``, both labelled."""
    from calib.book.profiles import METHOD_NAMES, label
    h = df[df.heldout_nll.notna()]
    t = mean_std(h, ["method", "source"], "heldout_nll")
    rows = [m for m in METHOD_NAMES if m in set(h.method)]
    mean = t.pivot(index="method", columns="source", values="mean").reindex(rows)
    std = t.pivot(index="method", columns="source", values="std").reindex(rows)
    mean = mean[[x for x in sources if x in mean]]
    std = std[mean.columns]
    mean.index = std.index = [METHOD_NAMES[m] for m in mean.index]
    mean.columns = std.columns = [label(x) for x in mean.columns]
    return mean, std


def synthetic_table(df, sources, columns) -> tuple:
    """Table 2's block for one method: rows each source's original data, then its self-generated
    data ('w/ Syn'); ``columns`` (Alpaca perplexity, tasks, avg) and Δ, the self-generated minus
    the original average. (mean, std) over seeds, indexed by (source label, data)."""
    import numpy as np
    import pandas as pd

    from calib.book.profiles import label
    g = df.groupby(["source", "synthetic"])[list(columns)]
    mean, std = g.mean(), g.std()
    rows, srows = [], []
    for src in sources:
        for syn in (False, True):
            if (src, syn) in mean.index:
                r = mean.loc[(src, syn)].copy()
                r["delta"] = r["avg"] - mean.loc[(src, False), "avg"] if syn else np.nan
                rows.append(r.rename((label(src), "w/ Syn" if syn else "original")))
                srows.append(std.loc[(src, syn)].rename(rows[-1].name))
    idx = pd.MultiIndex.from_tuples([r.name for r in rows], names=["source", "data"])
    return pd.DataFrame(rows, index=idx), pd.DataFrame(srows, index=idx)


def by_architecture(frames: dict) -> "pd.DataFrame":
    """The same grid run on several models as one frame: column ``arch`` names each model's rows
    (``frames``: arch -> frame), ``prefix_len`` an integer (-1: the original data)."""
    import pandas as pd
    both = pd.concat([f.assign(arch=arch) for arch, f in frames.items()])
    return both.assign(prefix_len=both.prefix_len.fillna(-1).astype(int))
