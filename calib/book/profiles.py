"""The book's profiles (smoke for CI, toy for `make book`, paper and paper-olmo2 for GPU
clusters) and the roles the world's sources, and OLMo-2's own mix, play for the paper's corpora.

The runner resolves ``settings(profile, over)`` once per run and hands the same values to each
notebook as papermill parameters (``PARAMETERS``), which ``notebook_settings`` checks; every
other book module reads the returned dict. Nothing here runs.
"""
from __future__ import annotations

from pathlib import Path

from calib.errors import CalibError, check_choice
from calib.models import defaults  # what a model calibrates on, is evaluated on and loads as
from calib.prune.methods import DISPLAY_NAMES
from calib.sources import PAPER_CORPORA

ROOT = Path(__file__).resolve().parent.parent.parent

# The paper's four calibration sources, in its order, and their roles in the world.
PAPER_SOURCES = ["c4", "wikipedia", "slimpajama", "dclm"]
WORLD_SOURCES = ["world/web", "world/encyclopedia", "world/mixed", "world/pretrain"]
# OLMo-2-1124's pretraining mix (allenai/olmo-mix-1124): its DCLM-Baseline and Wikipedia parts
OLMO2_SOURCES = ["c4", "olmo-mix-wiki", "slimpajama", "olmo-mix-dclm"]
NAMES = PAPER_CORPORA  # a paper corpus's name in tables; a source's role and label are its record's
METHOD_NAMES = DISPLAY_NAMES  # the methods' records (calib.prune.methods), in the paper's order

# Defaults per profile; every key can be overridden by a notebook parameter.
# seeds: calibration seeds of every cell; headline_seeds: of the two arms of each chapter's
# headline contrast (calib.book.grids). figure_methods: methods drawn in App. Figs. 7-8.
PROFILES = {
    # CI: every table and figure from real runs on a reduced grid, the whole book in minutes
    "smoke": dict(
        model="world", dtype=defaults("world")["dtype"], sources=WORLD_SOURCES, seeds=2, headline_seeds=2, nsamples=16, seqlen=128,
        suite={"name": "world", "limit": 8, "n_alpaca": 32, "n_heldout": 32},
        methods=["wanda", "dsnot", "owl"], figure_methods=[], sparsities=[0.4, 0.6], patterns=["2:4"],
        amounts=[8, 16], table3_settings=[0.5, "2:4"],
        synthetic={"n_docs": 32, "max_new_tokens": 96, "batch_size": 32},
        prefix_lens=[0, 1, 8], filter_rates=[0, 20], stat_docs=32, second_model="world-qwen",
        executor="ray", store="runs/book-smoke.db"),
    # make book: the world model, all 500 items per task, seeds sized by a pilot's variance components
    # (calib.book.statistics): the evaluation items, not the seeds, limit the CIs, so headline arms get
    # 4 seeds (8 would narrow them by under 5%) and the rest 2, to fit the hour on 2 cores
    "toy": dict(
        model="world", dtype=defaults("world")["dtype"], sources=WORLD_SOURCES, seeds=2, headline_seeds=4, nsamples=64, seqlen=256,
        suite={"name": "world", "limit": None, "n_alpaca": 128, "n_heldout": 100},
        methods=["wanda", "dsnot", "owl"], figure_methods=[], sparsities=[0.3, 0.5, 0.6], patterns=["4:8", "2:4"],
        amounts=[16, 64, 256], table3_settings=[0.5, 0.65, "4:8", "2:4"],
        synthetic={"n_docs": 128, "max_new_tokens": 256, "batch_size": 64},
        prefix_lens=[0, 1, 2, 4, 16, 64], filter_rates=[0, 10, 20, 40], stat_docs=256,
        second_model="world-qwen", executor="ray", store="runs/book-toy.db"),
    # GPU machines with hub access, on Ray: the paper's own settings (not run here)
    "paper": dict(
        model="/models/DCLM-7B", dtype="bfloat16", sources=PAPER_SOURCES, seeds=20, headline_seeds=20,
        nsamples=128, seqlen=2048, suite={"name": "paper", "shots": {"mmlu": 5}},
        methods=["wanda", "dsnot", "owl"], figure_methods=["dsnot", "owl"], sparsities=[0.3, 0.4, 0.5, 0.6],
        patterns=["4:8", "2:4"], amounts=[64, 128, 256, 512, 1024, 2048], table3_settings=[0.5, 0.65, "4:8", "2:4"],
        synthetic={"n_docs": 5000, "max_new_tokens": 2048, "batch_size": 32},
        prefix_lens=[0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], filter_rates=[0, 10, 20, 30, 40, 50],
        stat_docs=1000, second_model="/models/Qwen2.5-7B", executor="ray", store="runs/book-paper.db"),
}
# The paper's settings on OLMo-2-1124-7B (loads natively in transformers), with the DCLM and
# Wikipedia roles played by the DCLM-Baseline and Wikipedia parts of its own pretraining mix
PROFILES["paper-olmo2"] = dict(PROFILES["paper"], model="/models/OLMo-2-1124-7B", sources=OLMO2_SOURCES,
                               store="runs/book-paper-olmo2.db")
# The real-model chapter (calib.book.real): SmolLM2-135M on real text, few short calibration windows,
# held-out documents of each real domain. Measured on 7 Dec (2 Ray workers, load average 2.6-3.9):
# a job 70-120 s (prune 8 x 128 tokens 27-40 s, score 3 x 8 documents of 256 tokens 62-67 s), a
# self-generated set about 1 min; 7 jobs in 402 s. So smoke scores 4 documents per domain: the pair
# of sources, Wanda and magnitude at 60%, self-generated from one source (7 jobs); toy, 8 documents:
# three sources at 60%, the pair at 50% (the trend) and 2:4, with SparseGPT and self-generated,
# unfiltered and 20% filtered (27 jobs; an estimated 20-25 min at that load)
REAL_SOURCES = ["real/code", "real/reference", "real/docs"]
_REAL = dict(model="smollm2", sources=REAL_SOURCES, pair=REAL_SOURCES[:2], methods=["wanda", "sparsegpt"],
             suite={"name": "real", "n_heldout": 8}, nsamples=16, seqlen=128, seeds=2, sparsities=[0.6],
             trend_sparsity=0.5, patterns=["2:4"], method_sparsity=0.6, synthetic_sparsity=0.6,
             synthetic_sources=REAL_SOURCES[:2], filter_rates=[0, 20],
             synthetic={"n_docs": 32, "max_new_tokens": 96, "batch_size": 16})
PROFILES["smoke"]["real"] = dict(_REAL, sources=REAL_SOURCES[:2], methods=["wanda"], nsamples=8,
                                 suite={"name": "real", "n_heldout": 4},
                                 trend_sparsity=None, patterns=[], filter_rates=[0], synthetic_sources=REAL_SOURCES[:1],
                                 synthetic={"n_docs": 16, "max_new_tokens": 96, "batch_size": 16})
PROFILES["toy"]["real"] = _REAL
PROFILES["paper"]["real"] = PROFILES["paper-olmo2"]["real"] = _REAL
PROFILE_NAMES = tuple(PROFILES)


DEFAULT_PROFILE = "toy"  # `make book`, the runner's and every notebook's default
# every notebook's papermill parameters, the same in each (None: the profile's value); other
# settings go in ``settings``, a mapping laid over the profile's like the runner's --settings
PARAMETERS = ("profile", "model", "dtype", "store", "settings")


def settings(profile: str | None = None, over: dict | None = None, **params) -> dict:
    """The profile's settings (None: DEFAULT_PROFILE), then ``over`` (a mapping of settings: the
    runner's --settings/--set, calib.book.overrides), then ``params`` (single settings; None
    keeps the value). A relative store is relative to the working directory."""
    from calib.experiments.grid import merge
    from calib.models import DTYPES
    profile = profile or DEFAULT_PROFILE
    check_choice("profile", profile, PROFILE_NAMES)
    s = {**PROFILES[profile], "profile": profile}
    if not isinstance(over or {}, dict):
        raise CalibError(f"settings: expected a mapping of settings, got {type(over).__name__}")
    unknown = sorted(set(over or {}) - set(s))
    if unknown:
        raise CalibError(f"unknown setting {unknown[0]!r} (from --settings/--set); valid: {', '.join(sorted(s))}")
    s = merge(s, over or {})
    for k, v in params.items():
        if k not in s:
            raise CalibError(f"unknown setting {k!r}; valid: {', '.join(sorted(s))}")
        if v is not None:
            s[k] = v
    check_choice("dtype", s["dtype"], DTYPES)
    s["store"] = str(Path(s["store"]).expanduser().absolute())
    return s


def notebook_settings(params: dict) -> dict:
    """A notebook's settings from its papermill parameters: each checked against PARAMETERS,
    then ``settings`` as the profile's overrides and model, dtype and store on top."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise CalibError(f"unknown notebook parameter {unknown[0]!r}; valid: {', '.join(PARAMETERS)} "
                         f"(any other setting: -y 'settings: {{KEY: VALUE}}')")
    p = {k: params.get(k) for k in PARAMETERS}
    return settings(p["profile"], p["settings"], model=p["model"], dtype=p["dtype"], store=p["store"])


def role(source: str) -> str:
    """The paper corpus a source plays (its record's role): world/web -> c4; any other name is its own."""
    from calib.data import source_record
    rec = source_record(source)
    return rec.role if rec is not None else source


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
    """'web (C4)' for a world source, 'C4' for a paper source, 'OLMo-mix dclm (DCLM)' for OLMo-2's mix."""
    from calib.data import source_record
    rec = source_record(source)
    return rec.label if rec is not None else source
