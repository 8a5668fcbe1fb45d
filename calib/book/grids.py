"""What each chapter runs: one grid builder per figure and table of the paper, from a
profile's settings (``profiles.settings``). A grid is a dict that
``calib.experiments.expand_grid`` turns into jobs; ``GRIDS`` lists each chapter's.
"""
from __future__ import annotations

from calib.book.profiles import OPTIONS, by_role, role

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
