"""The book's experiments: what each chapter runs, per profile, and the few helpers
its notebook needs to turn store rows into the paper's tables and figures.

A chapter's notebook calls ``settings(profile, **overrides)`` with its papermill
parameters, builds its grid with one of the ``*_grid`` functions, and calls
``run(grid, s)``: only jobs without a finished row in the store are executed, and
the rows of the grid come back as a tidy DataFrame (one line per job).

    s = settings("toy")
    df = run(fig2_grid(s), s)
    mean_std(df, ["method", "setting", "source"])
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from calib.errors import CalibError, check_choice

ROOT = Path(__file__).resolve().parent.parent

# The paper's four calibration sources, in its order, and their roles in the world.
PAPER_SOURCES = ["c4", "wikipedia", "slimpajama", "dclm"]
WORLD_SOURCES = ["world/web", "world/encyclopedia", "world/mixed", "world/pretrain"]
ROLE = dict(zip(WORLD_SOURCES, PAPER_SOURCES)) | {s: s for s in PAPER_SOURCES}
NAMES = {"c4": "C4", "wikipedia": "Wikipedia", "slimpajama": "SlimPajama", "dclm": "DCLM"}
METHOD_NAMES = {"magnitude": "Magnitude", "sparsegpt": "SparseGPT", "wanda": "Wanda", "dsnot": "DSnoT",
                "owl": "OWL"}
# The original methods' settings the paper follows (DSnoT and OWL start from Wanda).
OPTIONS = {"owl": {"base": "wanda", "owl_m": 5.0, "owl_lambda": 0.08}, "dsnot": {"initial_method": "wanda"}}

# Defaults per profile; every key can be overridden by a notebook parameter.
PROFILES = {
    # CI: every table and figure from real runs on a reduced grid, the whole book in minutes
    "smoke": dict(
        model="world", dtype="float32", sources=WORLD_SOURCES, seeds=2, nsamples=16, seqlen=128,
        suite={"name": "world", "limit": 8, "n_alpaca": 32},
        methods=["wanda", "dsnot", "owl"], sparsities=[0.4, 0.6], patterns=["2:4"],
        amounts=[8, 16, 32], synthetic={"n_docs": 32, "max_new_tokens": 96, "batch_size": 32},
        prefix_lens=[0, 1, 8], filter_rates=[0, 20, 40], stat_docs=32, second_model="world-qwen",
        executor="ray", store="runs/book-smoke.db"),
    # make book: the world model, the full grid, 5 seeds; 76 min on 2 cores, measured (64 samples of
    # 256 tokens: the world model has 3M parameters, and pruning cost grows with tokens)
    "toy": dict(
        model="world", dtype="float32", sources=WORLD_SOURCES, seeds=5, nsamples=64, seqlen=256,
        suite={"name": "world", "limit": 20, "n_alpaca": 128},
        methods=["wanda", "dsnot", "owl"], sparsities=[0.3, 0.4, 0.5, 0.6], patterns=["4:8", "2:4"],
        amounts=[8, 16, 32, 64, 128, 256],
        synthetic={"n_docs": 128, "max_new_tokens": 256, "batch_size": 64},
        prefix_lens=[0, 1, 2, 4, 16, 64], filter_rates=[0, 10, 20, 30, 40, 50], stat_docs=256,
        second_model="world-qwen", executor="ray", store="runs/book-toy.db"),
    # GPU machines with hub access, on Ray: the paper's own settings (not run here)
    "paper": dict(
        model="/models/DCLM-7B", dtype="bfloat16", sources=PAPER_SOURCES, seeds=20, nsamples=128, seqlen=2048,
        suite={"name": "paper", "shots": {"mmlu": 5}, "n_alpaca": 1000},
        methods=["wanda", "dsnot", "owl"], sparsities=[0.3, 0.4, 0.5, 0.6], patterns=["4:8", "2:4"],
        amounts=[64, 128, 256, 512, 1024, 2048],
        synthetic={"n_docs": 5000, "max_new_tokens": 2048, "batch_size": 32},
        prefix_lens=[0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], filter_rates=[0, 10, 20, 30, 40, 50],
        stat_docs=1000, second_model="/models/Qwen2.5-7B", executor="ray", store="runs/book-paper.db"),
}
PROFILE_NAMES = tuple(PROFILES)


def settings(profile: str, **overrides) -> dict:
    """The profile's settings with the notebook's parameters laid over them
    (``None`` keeps the profile's value)."""
    check_choice("profile", profile, PROFILE_NAMES)
    s = {**PROFILES[profile], "profile": profile}
    for k, v in overrides.items():
        if k not in s:
            raise CalibError(f"unknown setting {k!r}; valid: {', '.join(sorted(s))}")
        if v is not None:
            s[k] = v
    s["store"] = str(ROOT / s["store"]) if not os.path.isabs(s["store"]) else s["store"]
    return s


def role(source: str) -> str:
    """The paper corpus a source plays: world/web -> c4."""
    return ROLE.get(source, source)


def by_role(s: dict, r: str, fallback: int | None = None) -> str:
    """The source of ``s`` that plays paper corpus ``r`` (e.g. "dclm": the pretraining
    data). Without such a source: ``s["sources"][fallback]``, or a CalibError."""
    found = [x for x in s["sources"] if role(x) == r]
    if found:
        return found[0]
    if fallback is None:
        raise CalibError(f"no source plays {NAMES.get(r, r)} among {', '.join(s['sources'])}")
    return s["sources"][fallback]


def label(source: str) -> str:
    """'web (C4)' for a world source, 'C4' for a paper source."""
    r = ROLE.get(source)
    if r is None:
        return source
    return NAMES[r] if r == source else f"{source.split('/', 1)[1]} ({NAMES[r]})"


# ----------------------------------------------------------------------- grids
def _base(s: dict, **over) -> dict:
    g = {"model": s["model"], "dtype": s["dtype"], "options": OPTIONS, "suite": s["suite"],
         "calibration": {"source": list(s["sources"]), "nsamples": s["nsamples"], "seqlen": s["seqlen"],
                         "seed": {"range": s["seeds"]}}}
    g.update(over)
    return g


def _magnitude(s: dict, settings_: list[dict]) -> list[dict]:
    """Magnitude pruning needs no data: one job per setting (first source, seed 0)."""
    return [{"method": "magnitude", **st, "calibration": {"source": s["sources"][0], "seed": 0}}
            for st in settings_]


def _settings_axis(sparsities, patterns) -> list[dict]:
    return [{"sparsity": x} for x in sparsities] + [{"pattern": p, "sparsity": None} for p in patterns]


def fig1_grid(s: dict) -> dict:
    """Fig. 1: every method with every source, at 60% unstructured."""
    return _base(s, sparsity=0.6, grids=[{"method": ["sparsegpt"] + list(s["methods"])},
                                         *_magnitude(s, [{"sparsity": 0.6}])])


def fig2_grid(s: dict) -> dict:
    """Fig. 2 and App. Figs. 6-8: sparsity ratios and types, per method and source."""
    axis = _settings_axis(s["sparsities"], s["patterns"])
    return _base(s, grids=[{"method": list(s["methods"]), **a} for a in axis] + _magnitude(s, axis))


def fig3_grid(s: dict) -> dict:
    """Fig. 3: data amount under 2:4, Wanda and DSnoT."""
    methods = [m for m in ("wanda", "dsnot") if m in s["methods"]] or list(s["methods"])[:1]
    return _base({**s, "nsamples": list(s["amounts"])}, method=methods, pattern="2:4", sparsity=None)


def table1_grid(s: dict) -> dict:
    """Table 1: three methods, four sources, 2:4."""
    return _base(s, method=list(s["methods"]), pattern="2:4", sparsity=None)


def _syn(s: dict, **over) -> dict:
    return {**s["synthetic"], **over}


def table2_grid(s: dict) -> dict:
    """Tables 2, 5-7: each source, and the same source self-generated, at 60%."""
    return _base(s, method=list(s["methods"]), sparsity=0.6, synthetic=[None, _syn(s)])


def table3_grid(s: dict) -> dict:
    """Table 3: Wanda at 50%, 65%, 4:8, 2:4 with each source, and self-generated data
    from the C4-role source."""
    axis = _settings_axis([0.5, 0.65], s["patterns"])
    c4 = by_role(s, "c4", fallback=0)
    return _base(s, method="wanda", grids=axis + [{**a, "calibration": {"source": c4}, "synthetic": _syn(s)}
                                                  for a in axis])


def _two_sources(s: dict) -> list[str]:
    """Sec. 6.2-6.3 self-generate from the C4 and Wikipedia roles."""
    return [src for src in s["sources"] if role(src) in ("c4", "wikipedia")] or list(s["sources"])[:2]


def _self_generated(s: dict, **synthetic) -> dict:
    """Wanda at 60% with the original data and with self-generated data (a list in
    ``synthetic`` is an axis)."""
    return _base(s, method="wanda", sparsity=0.6, synthetic=[None, _syn(s, **synthetic)])


def fig4_grid(s: dict) -> dict:
    """Fig. 4: prefix length of self-generation (0 = BOS only), Wanda at 60%."""
    return _self_generated({**s, "sources": _two_sources(s)}, prefix_len=list(s["prefix_lens"]))


def table4_grid(s: dict) -> dict:
    """Table 4: perplexity-filter rate, Wanda at 60%."""
    return _self_generated({**s, "sources": _two_sources(s)}, filter_rate=list(s["filter_rates"]))


def pruned_generator_grid(s: dict) -> dict:
    """Beyond: self-generation by the dense model versus by the pruned model itself,
    from the Wikipedia-role source (the paper's largest gain), Wanda at 60%."""
    return _self_generated({**s, "sources": [by_role(s, "wikipedia", fallback=0)]},
                           generator=["dense", "pruned"])


def second_model_grid(s: dict) -> dict:
    """Beyond: the prefix-length sweep of Fig. 4 on a second architecture."""
    return _self_generated({**s, "model": s["second_model"], "sources": [by_role(s, "c4", fallback=0)]},
                           prefix_len=list(s["prefix_lens"]))


# notebook -> the grids it runs with its default parameters (calib.book runs them all first)
GRIDS = {
    "fig1_methods": [fig1_grid], "fig2_sparsity": [fig2_grid], "fig3_amount": [fig3_grid],
    "table1_similarity": [table1_grid], "table2_synthetic": [table2_grid], "table3_settings": [table3_grid],
    "fig4_prefix": [fig4_grid], "table4_filter": [table4_grid], "fig5_mink": [table2_grid],
    "beyond": [table2_grid, pruned_generator_grid, second_model_grid],
}


def prefetch(profile: str, chapters: list[str] | None = None, progress: bool = True) -> dict:
    """Run every job the chapters need in one sweep (one Ray session for the whole
    book, so both cores stay busy), before the notebooks read them back."""
    from calib.experiments import expand_grid
    s = settings(profile)
    jobs = {}
    for name in chapters or list(GRIDS):
        for make in GRIDS.get(name, []):
            for j in expand_grid(make(s)):
                jobs.setdefault(j.key, j)
    with _sweep(list(jobs.values()), s, progress) as (_, summary):
        pass
    if s["executor"] == "ray":
        import ray
        ray.shutdown()  # the notebooks' kernels need the memory
    return summary


@contextlib.contextmanager
def _sweep(jobs, s: dict, progress: bool):
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


# ------------------------------------------------------------------------- run
def run(grid: dict, s: dict, progress: bool = False):
    """Run the grid's missing jobs into the profile's store; its rows as a tidy frame."""
    from calib.experiments import expand_grid
    jobs = expand_grid(grid)
    with _sweep(jobs, s, progress) as (store, summary):
        if summary["failed"]:
            failed = [r for r in store.rows(status="failed") if r["key"] in {j.key for j in jobs}]
            raise RuntimeError(f"{summary['failed']} of {summary['total']} jobs failed; first error:\n"
                               f"{failed[0]['error'] if failed else '?'}")
        return tidy(store, jobs)


def tidy(store, jobs) -> "pd.DataFrame":
    """One line per job of ``jobs`` with its parameters and metrics under short names:
    method, source, role, setting ('60%' or '2:4'), seed, nsamples, synthetic, prefix_len,
    filter_rate, generator, avg, alpaca_ppl, <task> accuracies, dense_avg, calib_hash."""
    import pandas as pd
    keys = {j.key: j for j in jobs}
    lines = []
    for r in store.rows(status="done"):
        j = keys.get(r["key"])
        if j is None:
            continue
        syn = j.synthetic or {}
        m = r["metrics"]
        line = {"method": j.method, "source": j.calibration["source"], "role": role(j.calibration["source"]),
                "sparsity": j.sparsity, "pattern": j.pattern,
                "setting": j.pattern if j.pattern != "unstructured" else f"{round(j.sparsity * 100):d}%",
                "seed": j.calibration["seed"], "nsamples": j.calibration["nsamples"],
                "synthetic": bool(syn), "prefix_len": syn.get("prefix_len"), "filter_rate": syn.get("filter_rate"),
                "generator": syn.get("generator"), "model": j.model,
                "avg": 100 * m["avg"] if "avg" in m else None, "alpaca_ppl": m.get("alpaca_ppl"),
                "dense_avg": 100 * r["dense"]["avg"] if "avg" in (r["dense"] or {}) else None,
                "dense_alpaca_ppl": (r["dense"] or {}).get("alpaca_ppl"),
                "calib_hash": r["calib_hash"], "key": r["key"]}
        for k, v in m.items():
            if k.endswith("/acc"):
                line[task_name(k[:-4])] = 100 * v
        lines.append(line)
    return pd.DataFrame(lines)


def task_name(task: str) -> str:
    """world_boolq -> boolq: world tasks share the paper's column names."""
    return task[len("world_"):] if task.startswith("world_") else task


# -------------------------------------------------------------------- summaries
def mean_std(df, by: list[str], metric: str = "avg"):
    """Mean, std and n of ``metric`` per group (std over seeds)."""
    g = df.groupby(by, dropna=False, sort=False)[metric]
    return g.agg(["mean", "std", "count"]).rename(columns={"count": "n"}).reset_index()


def styled(mean, std=None, best: str = "max", axis: int = 0, digits: int = 2, lower=(), exclude=(), signed=()):
    """A pandas Styler: 'mean ± std' cells and the best value of each column (axis=0)
    or row (axis=1) in bold, as in the paper's tables. Columns in ``lower`` are better
    when lower (perplexity), ``exclude`` are never bold, ``signed`` print a sign (Δ)."""
    import numpy as np
    import pandas as pd
    shown = pd.DataFrame("", index=mean.index, columns=mean.columns, dtype=object)
    for j, c in enumerate(mean.columns):
        for i in range(len(mean)):
            v = mean.iloc[i, j]
            sd = std[c].iloc[i] if std is not None and c in std else None
            if pd.notna(v):
                txt = f"{v:+.{digits}f}" if c in signed else f"{v:.{digits}f}"
                shown.iloc[i, j] = txt + (f" ± {sd:.{digits}f}" if sd is not None and pd.notna(sd) else "")
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
    return shown.style.apply(lambda _: css, axis=None)


def spread(df, by: list[str], metric: str = "avg"):
    """Per group of ``by``: the range (max - min) of per-source means, and the mean
    seed std - the paper's 'performance range', and the noise it must beat."""
    import pandas as pd
    per = mean_std(df, by + ["source"], metric)
    out = per.groupby(by, sort=False).agg(range=("mean", lambda x: x.max() - x.min()),
                                          best=("mean", "idxmax"), seed_std=("std", "mean"))
    out["best"] = per.loc[out["best"], "source"].values
    return out.reset_index() if len(by) else pd.DataFrame(out)


VERDICTS = {"finding": {True: "Reproduced in the world.", False: "Not reproduced in the world.",
                        None: "Partly reproduced in the world."},
            "question": {True: "Yes, in the world.", False: "No, in the world.", None: "Unclear in the world."}}


def verdict(holds: bool | None, text: str, kind: str = "finding") -> "IPython.display.Markdown":
    """The chapter's one-sentence answer, rendered in bold: whether a paper's finding
    holds (``kind="finding"``), or the answer to an open question (``"question"``)."""
    from IPython.display import Markdown
    check_choice("verdict kind", kind, VERDICTS)
    return Markdown(f"**{VERDICTS[kind][holds]}** {text}")


# ---------------------------------------------------------------------- figures
def curves(ax, df, x: str, metric: str = "avg", hue: str = "source", order=None, xticks=None,
           label_fn=None, **kw):
    """Mean over seeds against ``x``, one line per ``hue`` value, with a ± std band."""
    import numpy as np
    from calib.plotting import source_colour
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


# ------------------------------------------------------------- published values
def _value(r: dict) -> str:
    if "value" in r:
        return f"{r['value']:g}"
    if "upper" in r:
        return f"< {r['upper']:g}"
    return f"{r['low']:g}–{r['high']:g}"


def stated(fig: str):
    """What the paper's text states about one of its figures (plots print no numbers)."""
    import pandas as pd
    from calib import published
    rows = published.load()["figures"][fig]["stated"]
    return pd.DataFrame([{"the paper states": r["what"], "value": _value(r), "unit": r.get("unit", "")}
                         for r in rows])


def claim(cid: str) -> dict:
    from calib import published
    found = [c for c in published.load()["claims"] if c["id"] == cid]
    if not found:
        raise CalibError(f"no published claim {cid!r}")
    return {**found[0], "text": _value(found[0])}


# ------------------------------------------------------------------ data stats
def pretraining_texts(s: dict, n: int) -> list[str]:
    """The model's pretraining data: the world model's own training split, or the
    source in the DCLM role for a hub model (the paper's DCLM-7B)."""
    from calib import data
    from calib.models import MODEL_ALIASES
    if s["model"] in MODEL_ALIASES:
        from calib.world import sources
        return sources.documents("world/pretrain", n, seed=0, split="train")
    return data.load_texts(by_role(s, "dclm"), pool=n)


# ------------------------------------------------------- predicting quality (beyond)
def activation_profile(model, ids, batch_size: int = 16) -> dict:
    """Per linear of the decoder blocks: the RMS of each input channel over all
    calibration tokens, i.e. the statistic Wanda scales weights by."""
    import torch
    from calib.prune.stats import InputStats
    stats, hooks = {}, []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and ".layers." in f".{name}.":
            stats[name] = InputStats(mod.in_features, mod.weight.device, sq=True)
            hooks.append(mod.register_forward_pre_hook(lambda _, inp, st=stats[name]: st.add(inp[0].detach())))
    try:
        with torch.inference_mode():
            for i in range(0, len(ids), batch_size):
                model(input_ids=ids[i:i + batch_size].to(model.device))
    finally:
        for h in hooks:
            h.remove()
    return {k: st.sq.sqrt().cpu() for k, st in stats.items()}


def profile_distance(a: dict, b: dict) -> float:
    """Mean over linears of the RMS difference of log channel norms: 0 when the two
    sets would give Wanda the same per-channel weighting, up to a global scale."""
    import torch
    out = []
    for k in a:
        d = torch.log(a[k].clamp_min(1e-8)) - torch.log(b[k].clamp_min(1e-8))
        out.append(float((d - d.mean()).square().mean().sqrt()))
    return sum(out) / len(out)


def predictors(s: dict, df, grid, progress: bool = False):
    """For each calibration set behind the rows of ``df`` (one per calib_hash): its
    Min-50%++ (mean over windows), its MinHash 3-gram Jaccard to the pretraining data,
    and the distance of its activation profile to that of a held-out pretraining set.
    Cached per (model, set) under the cache dir."""
    import json

    import pandas as pd

    from calib.cache import cache_dir, digest
    from calib.experiments import Job, expand_grid
    from calib.experiments.run import calibration_set, load
    from calib.filters import minhash_jaccard, mink_pp
    from calib.io import atomic_write
    from calib.models import model_identity
    jobs = {j.key: j for j in expand_grid(grid)}
    first = jobs[df.key.iloc[0]]
    model, tok = load(first)
    mid = model_identity(first.model)
    pre_src = by_role(s, "dclm")
    ref_job = Job(**{**first.params(), "synthetic": None,
                     "calibration": {**first.calibration, "source": pre_src, "seed": 10_000}})
    ref_ids, _ = calibration_set(ref_job, model, tok)
    ref = activation_profile(model, ref_ids)
    pre_texts = pretraining_texts(s, s["stat_docs"])
    out = []
    for h, key in df.groupby("calib_hash")["key"].first().items():
        f = cache_dir() / "predictors" / f"{digest([mid, h, ref_job.key])[:32]}.json"
        if f.is_file():
            out.append(json.loads(f.read_text()))
            continue
        ids, _ = calibration_set(jobs[key], model, tok)
        texts = tok.batch_decode(ids, skip_special_tokens=True)
        row = {"calib_hash": h,
               "Min-50%++": float(mink_pp(model, tok, texts, k=50, progress=progress).mean()),
               "MinHash 3-gram Jaccard": minhash_jaccard(texts, pre_texts),
               "activation distance": profile_distance(activation_profile(model, ids), ref)}
        atomic_write(f, json.dumps(row))
        out.append(row)
    return pd.DataFrame(out)


def spearman(x, y, permutations: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Spearman's rho and a two-sided permutation p-value."""
    import numpy as np
    import pandas as pd
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    rho = float(np.corrcoef(rx, ry)[0, 1])
    rng = np.random.default_rng(seed)
    null = np.array([np.corrcoef(rx, rng.permutation(ry))[0, 1] for _ in range(permutations)])
    return rho, float((np.abs(null) >= abs(rho) - 1e-12).mean())
