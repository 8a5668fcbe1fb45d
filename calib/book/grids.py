"""What each chapter runs: one grid builder per figure and table of the paper, from a
profile's settings (``profiles.settings``). A grid is a dict that
``calib.experiments.expand_grid`` turns into jobs; each chapter's record
(``calib.book.chapters``) lists the grids it runs.

Seeds are spent where verdicts need them: the two arms of a chapter's headline contrast get
``headline_seeds`` calibration seeds, every other cell ``seeds`` (a prefix of the same seeds,
so every comparison stays paired). Cells that no verdict or figure needs are not run.
"""
from __future__ import annotations

from calib.book.claims import SHORT_PREFIXES, TABLE4_RATE
from calib.book.profiles import by_role, role
from calib.book.real import real_grid

SPARSITY = 0.6  # the paper's headline unstructured sparsity: the cells its verdicts compare


def setting_name(pattern: str, sparsity: float | None) -> str:
    """A cell's setting as the frames and verdicts name it: '60%' (unstructured) or '2:4'."""
    return f"{round(sparsity * 100):d}%" if pattern == "unstructured" else pattern


AT = setting_name("unstructured", SPARSITY)  # "60%"


def pair(s: dict) -> list[str]:
    """The headline pair: the pretraining-role source and the Wikipedia-role source (the paper's
    best and worst calibration data, Sec. 3.4)."""
    return [by_role(s, "dclm"), by_role(s, "wikipedia")]


def _cal(s: dict, sources, seeds: int, **over) -> dict:
    return {"source": list(sources), "nsamples": s["nsamples"], "seqlen": s["seqlen"], "seed": {"range": seeds},
            **over}


def _cells(s: dict, headline_sources=(), **over) -> list[dict]:
    """Sub-grids over the profile's sources: ``headline_sources`` with headline_seeds, the rest with seeds."""
    rest = [x for x in s["sources"] if x not in headline_sources]
    out = []
    if headline_sources:
        out.append({**over, "calibration": _cal(s, headline_sources, s["headline_seeds"])})
    if rest:
        out.append({**over, "calibration": _cal(s, rest, s["seeds"])})
    return out


def _grid(s: dict, subs: list[dict], model: str | None = None) -> dict:
    # method options: the method table's defaults, the original methods' settings the paper follows
    # (DSnoT and OWL start from Wanda; calib.prune.methods.OPTIONS)
    return {"model": model or s["model"], "dtype": s["dtype"], "suite": s["suite"],
            "calibration": _cal(s, s["sources"], s["seeds"]), "grids": subs}


def _magnitude(s: dict, settings_: list[dict]) -> list[dict]:
    """Magnitude pruning needs no data: one job per setting (first source, seed 0)."""
    return [{"method": "magnitude", **st, "calibration": {"source": s["sources"][0], "seed": 0}}
            for st in settings_]


def _setting(x) -> dict:
    return {"pattern": x, "sparsity": None} if isinstance(x, str) else {"sparsity": x}


def _syn(s: dict, **over) -> dict:
    return {**s["synthetic"], **over}


def fig1_grid(s: dict) -> dict:
    """Fig. 1: Wanda with every source at 60% (headline seeds: the range test of Fig. 2 and
    Table 2's baseline use all four), the other methods with every source, magnitude."""
    others = ["sparsegpt"] + [m for m in s["methods"] if m != "wanda"]
    return _grid(s, [*_cells(s, s["sources"], method="wanda", sparsity=SPARSITY),
                     {"method": others, "sparsity": SPARSITY}, *_magnitude(s, [{"sparsity": SPARSITY}])])


def fig2_grid(s: dict) -> dict:
    """Fig. 2 (and App. Fig. 6): Wanda at each sparsity ratio and type. The headline pair gets
    headline seeds at the lowest ratio (the trend), all sources at 60% and 2:4 (the range tests)."""
    subs = []
    for x in [*s["sparsities"], *s["patterns"]]:
        full = x in (SPARSITY, "2:4")
        lowest = x == min(s["sparsities"])
        subs += _cells(s, s["sources"] if full else pair(s) if lowest else [], method="wanda", **_setting(x))
    for m in s["figure_methods"]:  # App. Figs. 7-8, where a profile runs them
        subs += [{"method": m, **_setting(x)} for x in [*s["sparsities"], *s["patterns"]]]
    return _grid(s, subs + _magnitude(s, [_setting(x) for x in [*s["sparsities"], *s["patterns"]]]))


def fig3_grid(s: dict) -> dict:
    """Fig. 3: data amount under 2:4, Wanda; the headline pair at every amount with headline seeds."""
    subs = []
    for n in s["amounts"]:
        subs += [{**c, "calibration": {**c["calibration"], "nsamples": n}}
                 for c in _cells(s, pair(s), method="wanda", pattern="2:4", sparsity=None)]
    return _grid(s, subs)


def table1_grid(s: dict) -> dict:
    """Table 1: Wanda, DSnoT and OWL with every source at 2:4; the headline pair with headline seeds."""
    return _grid(s, _cells(s, pair(s), method=list(s["methods"]), pattern="2:4", sparsity=None))


def table2_grid(s: dict) -> dict:
    """Tables 2, 5-7: each source, and the same source self-generated, at 60%; Wanda's with
    headline seeds (the headline averages over sources)."""
    others = [m for m in s["methods"] if m != "wanda"]
    subs = _cells(s, s["sources"], method="wanda", sparsity=SPARSITY, synthetic=[None, _syn(s)])
    if others:
        subs.append({"method": others, "sparsity": SPARSITY, "synthetic": [None, _syn(s)]})
    return _grid(s, subs)


def table3_grid(s: dict) -> dict:
    """Table 3: Wanda at 50%, 65%, 4:8, 2:4 with the C4-role and the pretraining-role source,
    and self-generated data from the C4-role source."""
    c4, pre = by_role(s, "c4", fallback=0), by_role(s, "dclm")
    subs = []
    for x in s["table3_settings"]:
        subs.append({"method": "wanda", **_setting(x), "calibration": _cal(s, sorted({c4, pre}), s["headline_seeds"])})
        subs.append({"method": "wanda", **_setting(x), "calibration": _cal(s, [c4], s["headline_seeds"]),
                     "synthetic": _syn(s)})
    return _grid(s, subs)


def _two_sources(s: dict) -> list[str]:
    """Sec. 6.2-6.3 self-generate from the C4 and Wikipedia roles."""
    return [src for src in s["sources"] if role(src) in ("c4", "wikipedia")] or list(s["sources"])[:2]


def _self_generated(s: dict, sources, model: str | None = None, headline=(), **synthetic) -> dict:
    """Wanda at 60% with the original data and with self-generated data (a list in ``synthetic``
    is an axis). The original arm and the axis values in ``headline`` get headline seeds."""
    (axis, values), = synthetic.items() if synthetic else ((None, None),)
    top = [v for v in values if v in headline] if axis else []
    rest = [v for v in values if v not in top] if axis else None
    subs = [{"method": "wanda", "sparsity": SPARSITY, "calibration": _cal(s, sources, s["headline_seeds"]),
             "synthetic": [None] + ([_syn(s, **{axis: top})] if top else [])}]
    if rest is None or rest:
        subs.append({"method": "wanda", "sparsity": SPARSITY, "calibration": _cal(s, sources, s["seeds"]),
                     "synthetic": _syn(s, **({axis: rest} if axis else {}))})
    return _grid(s, subs, model=model)


def fig4_grid(s: dict) -> dict:
    """Fig. 4: prefix length of self-generation (0 = BOS only), Wanda at 60%."""
    return _self_generated(s, _two_sources(s), headline=SHORT_PREFIXES, prefix_len=list(s["prefix_lens"]))


def table4_grid(s: dict) -> dict:
    """Table 4: perplexity-filter rate, Wanda at 60%."""
    return _self_generated(s, _two_sources(s), headline=(TABLE4_RATE,), filter_rate=list(s["filter_rates"]))


def pruned_generator_grid(s: dict) -> dict:
    """Beyond: self-generation by the dense model versus by the pruned model itself,
    from the Wikipedia-role source (the paper's largest gain), Wanda at 60%."""
    return _self_generated(s, [by_role(s, "wikipedia", fallback=0)], headline=("dense", "pruned"),
                           generator=["dense", "pruned"])


def second_model_grid(s: dict) -> dict:
    """Beyond: the prefix-length sweep of Fig. 4 on a second architecture."""
    return _self_generated(s, [by_role(s, "c4", fallback=0)], model=s["second_model"], headline=SHORT_PREFIXES,
                           prefix_len=list(s["prefix_lens"]))
