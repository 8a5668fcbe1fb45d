"""The book's findings, recomputed from the store when the book is built: every declared headline
(``claims.CLAIMS``), through its chapter's own verdict function on its chapter's own data, and
its sensitivity variant without the MMLU-format task. The intro draws them as one forest plot and
one table (``figures.findings_forest``, ``verdicts.findings_table``); the runner copies that
table into the README. ``data`` reads the same grids the chapters run and ``headline`` calls the
chapter record's verdict function, the one its notebook calls; the chapters' sensitivity lines
come from ``headline`` too."""
from __future__ import annotations

import pandas as pd

from calib.book import claims, verdicts
from calib.book.chapters import chapter as _chapter


def fig5_windows(scores: pd.DataFrame, s: dict) -> pd.DataFrame:
    """Fig. 5's verdict input: the self-generated windows and those of the three sources that play
    the paper's non-pretraining corpora, as ``data`` and ``score`` (``predict.mink_scores``' frame)."""
    from calib.book.predict import SELF_GENERATED
    from calib.book.profiles import label, role
    keep = [label(x) for x in s["sources"] if role(x) != "dclm"] + [SELF_GENERATED]
    return scores[scores.data.isin(keep)].rename(columns={"Min-50%++": "score"})


def data(chapter: str, s: dict):
    """What ``chapter``'s headline verdict reads: its jobs from the store (running what is missing),
    or, for Fig. 5, the Min-50%++ windows."""
    from calib.book import real
    from calib.book.frames import run
    from calib.book.grids import pruned_generator_grid
    from calib.book.predict import mink_scores
    if chapter == "fig5_mink":
        return fig5_windows(mink_scores(s)[0], s)
    if chapter == "real_model":
        return real.with_nll(run(real.real_grid(s), s))
    grid = pruned_generator_grid if chapter == "beyond" else _chapter(chapter).grids[0]
    return run(grid(s), s)


def sensitive(chapter: str) -> bool:
    """Whether the chapter's headline has a sensitivity variant (it is scored on the world's tasks)."""
    return claims.claim(chapter).sensitivity.startswith("without")


def headline(chapter: str, s: dict, df=None, sensitivity: bool = False):
    """The chapter's verdict (its headline and its family), on ``df`` (default: ``data``); with
    ``sensitivity``, the same verdict without ``claims.SENSITIVITY_TASK`` (None where it has none)."""
    from calib.book.predict import SELF_GENERATED
    df = data(chapter, s) if df is None else df
    if sensitivity:
        if not sensitive(chapter):
            return None
        df = verdicts.without_task(df)
    if chapter == "fig5_mink":
        return verdicts.fig5(df, SELF_GENERATED)
    return _chapter(chapter).verdict_function(df, s)


def collect(s: dict, chapters=None, progress: bool = True) -> dict:
    """chapter -> (its verdict, its sensitivity verdict or None), for every declared headline."""
    from tqdm.auto import tqdm
    out = {}
    names = [c for c in (chapters or claims.CLAIMS) if c in claims.CLAIMS]
    for name in tqdm(names, desc="findings", disable=not progress):
        d = data(name, s)
        out[name] = (headline(name, s, d), headline(name, s, d, sensitivity=True))
    return out


def table(results: dict) -> str:
    """The findings table (``verdicts.findings_table``), then what the sensitivity variant changes:
    the headlines whose outcome on a declared metric (primary or secondary) differs without the
    MMLU-format task."""
    from calib.book.finding import NAMES
    changed, tested = [], 0
    for name, (v, sens) in results.items():
        if sens is None:
            continue
        tested += 1
        c = claims.claim(name)
        changed += [f"{name} on the {NAMES.get(m, m)} ({v.headline_outcome(m)} -> {sens.headline_outcome(m)})"
                    for m in (c.primary, *c.secondary) if sens.headline_outcome(m) != v.headline_outcome(m)]
    note = (f"Without {claims.SENSITIVITY_TASK} ({tested} headlines have the variant), "
            + (f"{len(changed)} outcomes change: " + ", ".join(changed) + "." if changed
               else "no headline changes its outcome on its primary or secondary metric."))
    return verdicts.findings_table(results) + "\n\n" + note


def sensitivity_text(chapter: str, v, sens) -> str:
    """One line for a chapter: its headline without the MMLU-format task, on each metric, beside
    the verdict as declared (``claims``: shown, never a replacement)."""
    c = claims.claim(chapter)
    if sens is None:
        return f"*Sensitivity ({c.sensitivity}).*"
    parts = []
    for m in sens.outcomes:   # the headline part's outcome on each metric, within the chapter's family
        h, was = sens.headline(m), v.headline_outcome(m)
        change = "" if was == h.outcome else f" (with it: {claims.outcome_text(chapter, m, was)})"
        parts.append(f"{claims.outcome_text(chapter, m, h.outcome)}: {h.numbers()}{change}")
    return (f"**Sensitivity, {c.sensitivity}** (the MMLU-format items use the web domain's quiz template "
            f"word for word; declared in `calib/book/claims.py`): " + "; ".join(parts) + ".")


__all__ = ["collect", "data", "fig5_windows", "headline", "sensitive", "sensitivity_text", "table"]
