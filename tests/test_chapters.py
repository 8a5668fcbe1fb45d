"""The book's chapters: grids per profile, the shared table/figure helpers, and the
notebooks' contract with calib.book (parameters cell, one chapter per notebook)."""
import json
import shutil

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from calib import book as C
from calib.book import runner as book
from calib.predictors import activation_profile, profile_distance
from calib.errors import CalibError
from calib.experiments import expand_grid


def test_settings_overrides_and_errors():
    s = C.settings("smoke", seeds=3, sources=None)
    assert s["seeds"] == 3 and s["sources"] == C.WORLD_SOURCES and s["store"].endswith("runs/book-smoke.db")
    with pytest.raises(CalibError, match="profile.*smoke, toy, paper"):
        C.settings("tiny")
    with pytest.raises(CalibError, match="unknown setting 'sede'"):
        C.settings("smoke", sede=1)


def _keys(grid):
    return {j.key: j for j in expand_grid(grid)}


def _seeds(jobs, **where) -> dict:
    """source -> number of seeds among the jobs matching ``where`` (job attributes)."""
    out = {}
    for j in jobs:
        if all(getattr(j, k) == v for k, v in where.items()):
            out.setdefault(j.calibration["source"], set()).add(j.calibration["seed"])
    return {k: len(v) for k, v in out.items()}


def test_smoke_and_toy_grids_cover_the_paper():
    for profile in ("smoke", "toy"):
        s = C.settings(profile)
        H, S = s["headline_seeds"], s["seeds"]
        pre, wiki = C.by_role(s, "dclm"), C.by_role(s, "wikipedia")
        fig1 = _keys(C.fig1_grid(s))
        assert _seeds(fig1.values(), method="wanda") == {x: H for x in s["sources"]}
        assert {j.method for j in fig1.values()} == {"magnitude", "sparsegpt", *s["methods"]}
        fig2 = _keys(C.fig2_grid(s))
        low = min(s["sparsities"])
        assert _seeds(fig2.values(), method="wanda", sparsity=low)[pre] == H, "the trend's pair is headline"
        assert set(_seeds(fig2.values(), method="wanda", pattern="2:4").values()) == {H}, "the 2:4 range test"
        assert sum(j.method == "magnitude" for j in fig2.values()) == len(s["sparsities"]) + len(s["patterns"])
        t1 = _keys(C.table1_grid(s))
        assert {k for k, j in t1.items() if j.method == "wanda"} <= set(fig2), "Table 1's Wanda rows are Fig. 2's"
        assert _seeds(t1.values(), method="owl")[wiki] == H and {j.method for j in t1.values()} == set(s["methods"])
        t2 = list(_keys(C.table2_grid(s)).values())
        assert sum(j.synthetic is not None for j in t2) == len(t2) // 2 and {j.sparsity for j in t2} == {0.6}
        assert {k for k, j in _keys(C.table2_grid(s)).items() if j.method == "wanda" and not j.synthetic} <= set(fig1)
        f4 = list(_keys(C.fig4_grid(s)).values())
        assert {j.synthetic["prefix_len"] for j in f4 if j.synthetic} == set(s["prefix_lens"])
        assert {C.role(j.calibration["source"]) for j in f4} == {"c4", "wikipedia"}
        t4 = list(_keys(C.table4_grid(s)).values())
        assert {j.synthetic["filter_rate"] for j in t4 if j.synthetic} == set(s["filter_rates"])
        f3 = list(_keys(C.fig3_grid(s)).values())
        assert {j.calibration["nsamples"] for j in f3} == set(s["amounts"]) and {j.pattern for j in f3} == {"2:4"}
        assert all(_seeds(f3)[x] == H for x in (pre, wiki))
        t3 = list(_keys(C.table3_grid(s)).values())
        assert {j.pattern if j.pattern != "unstructured" else j.sparsity for j in t3} == set(s["table3_settings"])
        pg = list(_keys(C.pruned_generator_grid(s)).values())
        assert {j.synthetic["generator"] for j in pg if j.synthetic} == {"dense", "pruned"}
        assert len(pg) == 3 * H and {j.calibration["nsamples"] for j in pg} == {s["nsamples"]}
        # every headline arm gets headline seeds (issue 32): Fig. 4's 1-4 token prefixes and the
        # original data, Table 4's 20% filter, Table 3's three arms, Beyond's generators
        syn = lambda jobs, k, v: [j for j in jobs if j.synthetic and j.synthetic[k] == v]  # noqa: E731
        assert set(_seeds(f4, synthetic=None).values()) == {H}
        assert all(set(_seeds(syn(f4, "prefix_len", p)).values()) == {H} for p in (1, 2, 4) if p in s["prefix_lens"])
        assert set(_seeds(syn(t4, "filter_rate", 20)).values()) == {H}
        assert set(_seeds(t3).values()) == {H}
        sm = list(_keys(C.second_model_grid(s)).values())
        short = len([p for p in s["prefix_lens"] if p in (1, 2, 4)])
        assert len(sm) == (1 + short) * H + (len(s["prefix_lens"]) - short) * S and {j.calibration["seqlen"] for j in sm} == {
            s["seqlen"]} and {C.role(j.calibration["source"]) for j in sm} == {"c4"}


def test_paper_profile_uses_the_papers_settings(tmp_path):
    from calib.world.model import MODEL_DIR
    model = tmp_path / "dclm"
    shutil.copytree(MODEL_DIR, model)
    cfg = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**cfg, "max_position_embeddings": 2048}))
    s = C.settings("paper", model=str(model))
    jobs = list(_keys(C.fig2_grid(s)).values())
    assert {j.calibration["source"] for j in jobs} == set(C.PAPER_SOURCES)
    assert {j.calibration["seqlen"] for j in jobs} == {2048} and {j.calibration["seed"] for j in jobs
                                                                 if j.method != "magnitude"} == set(range(20))
    assert {j.suite["shots"]["mmlu"] for j in jobs} == {5} and {j.dtype for j in jobs} == {"bfloat16"}
    syn = [j for j in _keys(C.table2_grid(s)).values() if j.synthetic]
    assert {j.synthetic["n_docs"] for j in syn} == {5000} and {j.synthetic["filter_rate"] for j in syn} == {20}


def test_styled_bolds_the_best_and_prints_std():
    mean = pd.DataFrame({"acc": [60.0, 62.5, 61.0], "ppl": [9.9, 9.5, 9.7], "delta": [np.nan, 1.0, -0.5]},
                        index=["a", "b", "c"])
    std = mean * 0 + 0.25
    html = C.styled(mean, std, lower=["ppl"], exclude=["delta"], signed=["delta"]).to_html()
    css = C.styled(mean, std, lower=["ppl"], exclude=["delta"], signed=["delta"])
    ctx = {(i, j): v for (i, j), v in css._compute().ctx.items() if v}
    assert set(ctx) == {(1, 0), (1, 1)}  # b has the best accuracy and the lowest perplexity
    # the paper's style: the mean with the std as a small subscript, on one line
    assert '62.50<sub class="calib-sd">0.25</sub>' in html and "+1.00<sub" in html and "-0.50<sub" in html
    assert "white-space: nowrap" in html and "±" not in html
    rows = C.styled(mean[["acc"]].T, axis=1)._compute().ctx
    assert [k for k, v in rows.items() if v] == [(0, 1)]
    # the caption says what the subscripts are; without a std there are none, and no note
    cap = C.styled(mean, std, caption="World, 60%", spread="std over 4 seeds").to_html()
    assert "<caption>World, 60%; subscripts: std over 4 seeds</caption>" in cap
    plain = C.styled(mean, caption="Paper", spread="std over 4 seeds").to_html()
    assert "<caption>Paper</caption>" in plain and "<sub" not in plain and ">62.50<" in plain
    assert C.number(np.nan, 0.5) == "" and C.number(1.5, np.nan) == "1.50" and C.number(0.5, 0.25, 1, True) == \
        '+0.5<sub class="calib-sd">0.2</sub>'


def test_spread():
    df = pd.DataFrame({"setting": ["60%"] * 4 + ["30%"] * 4, "source": ["a", "a", "b", "b"] * 2,
                       "avg": [50, 52, 40, 42, 60, 60.5, 60.2, 60.3]})
    r = C.spread(df, ["setting"]).set_index("setting")
    assert r.loc["60%", "range"] == pytest.approx(10) and r.loc["60%", "best"] == "a"
    assert r.loc["30%", "range"] == pytest.approx(0.0) and r.loc["60%", "seed_std"] == pytest.approx(np.sqrt(2))


def test_activation_distance_is_zero_for_the_same_statistics(tiny_llama):
    import torch
    model = tiny_llama
    ids = torch.randint(3, model.config.vocab_size, (4, 16), generator=torch.Generator().manual_seed(0))
    a = activation_profile(model, ids)
    assert len(a) == 7 * model.config.num_hidden_layers and all(v.ndim == 1 for v in a.values())
    assert profile_distance(a, a) == pytest.approx(0.0)
    b = activation_profile(model, torch.randint(3, 10, (4, 16), generator=torch.Generator().manual_seed(1)))
    assert profile_distance(a, b) > 0.01


def test_notebooks_match_the_book_and_toc():
    from calib.book.chapters import toc_parts
    toc = yaml.safe_load((book.ROOT / "_toc.yml").read_text())
    parts = [(p["caption"], [c["file"] for c in p["chapters"] if not (book.ROOT / f"{c['file']}.md").is_file()])
             for p in toc["parts"]]
    assert [p for p in parts if p[1]] == toc_parts(), "_toc.yml lists each chapter record under its part"
    for name in book.CHAPTERS:
        nb = nbformat.read(book.notebook(name), as_version=4)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1 and "profile = " in params[0].source, name
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name}: commit it unexecuted"
        if name in C.GRIDS:
            assert "C.report(" in "".join(c.source for c in nb.cells), f"{name} states no verdict"


def test_published_claims_are_readable():
    assert C.claim("sec6_3_best_filter_rate")["text"] == "10–20"
    assert set(C.stated("fig2")["value"]) >= {"0.5", "2.3"}
    with pytest.raises(CalibError, match="no published claim"):
        C.claim("nope")


def test_qwen_world_model_loads_with_the_world_tokenizer():
    from calib.models import load
    from calib.world.model import MODEL_DIR, QWEN_DIR, QWEN_RECIPE
    model, tok = load(QWEN_DIR)
    _, ref = load(MODEL_DIR)
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.model.layers[0].self_attn.q_proj.bias is not None
    text = "In 1893 the tanner Ada Braikik sold 193 lamps for $4.50."
    assert tok(text).input_ids == ref(text).input_ids and tok.pad_token_id is None and len(tok) == 4096
    log = json.loads((QWEN_DIR / "training_log.json").read_text())
    assert log["recipe"] == json.loads(json.dumps(QWEN_RECIPE)) and len(log["losses"]) == QWEN_RECIPE["steps"]


def test_by_role_names_the_missing_role():
    s = C.settings("smoke", sources=["world/web", "world/mixed"])
    assert C.by_role(s, "c4") == "world/web" and C.by_role(s, "dclm", fallback=1) == "world/mixed"
    with pytest.raises(CalibError, match="no source plays DCLM among world/web, world/mixed"):
        C.by_role(s, "dclm")
