"""The book's records: a chapter's record drives its grids, the runner's list and the table of
contents; the settings reach a notebook as values, through the same papermill parameters in every
notebook; notebooks only call, format and plot."""
from __future__ import annotations

import ast
import re

import nbformat
import pytest

from calib import book as C
from calib.book import chapters, runner
from calib.book.profiles import DEFAULT_PROFILE, PARAMETERS
from calib.errors import CalibError
from calib.experiments import expand_grid


def _code(name: str) -> list[str]:
    nb = nbformat.read(runner.notebook(name), as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_chapter_records_drive_the_grids_the_runner_and_the_verdicts():
    assert runner.CHAPTERS == list(chapters.CHAPTERS) and set(C.GRIDS) <= set(chapters.CHAPTERS)
    effects = C.verdicts.paper_effects()
    for c in chapters.CHAPTERS.values():
        assert (c.verdict is None) == (not c.grids), c.name
        if c.verdict:
            assert callable(c.verdict_function), c.name
            assert f"C.verdicts.{c.verdict}(" in "".join(_code(c.name)), f"{c.name} states its headline"
        assert c.paper is None or c.paper in effects, c.name
    with pytest.raises(CalibError, match="chapter 'fig9'.*fig1_methods"):
        chapters.chapter("fig9")


def test_every_grid_a_chapter_runs_is_prefetched():
    """What a notebook runs (C.<grid>(s) in its code) is among its record's grids: `--chapter beyond`
    alone prefetches every job it reads (it draws Fig. 4's sweep too)."""
    for name in runner.CHAPTERS:
        used = set(re.findall(r"C\.(\w+_grid)\(", "".join(_code(name))))
        assert used <= {g.__name__ for g in chapters.chapter(name).grids}, name
    s = C.settings("smoke")
    beyond = {j.key for j in runner.chapter_jobs(s, ["beyond"])["beyond"]}
    assert {j.key for j in expand_grid(C.fig4_grid(s))} <= beyond


def test_a_new_chapter_is_one_record(monkeypatch):
    """The architecture doc's recipe: a record (and its notebook) puts a chapter in the runner's
    list, its grids in the prefetch and its page in the table of contents."""
    new = chapters.Chapter("fig6_new", "beyond", (C.table3_grid,), "table3", "table3")
    monkeypatch.setitem(chapters.CHAPTERS, new.name, new)
    monkeypatch.setitem(chapters.GRIDS, new.name, list(new.grids))
    assert "book/fig6_new" in dict(chapters.toc_parts())["Beyond the paper"]
    s = C.settings("smoke")
    assert runner.chapter_jobs(s, ["fig6_new"])["fig6_new"]
    with pytest.raises(CalibError, match="part 'appendix'"):
        chapters.Chapter("x", "appendix")


def test_every_notebook_takes_the_same_parameters_and_asks_for_its_chapter():
    for name in runner.CHAPTERS:
        nb = nbformat.read(runner.notebook(name), as_version=4)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, name
        names = [t.id for node in ast.parse(params[0].source).body for t in node.targets]
        assert tuple(names) == PARAMETERS, name
        assert _code(name)[1].startswith(f'from calib import book as C\ns = C.setup("{name}", globals())'), f"{name}: setup first, by its chapter's name"
        assert f'"{DEFAULT_PROFILE}"' not in params[0].source, "the default profile is written once"


def test_no_notebook_defines_a_function_or_reaches_into_a_private_name():
    for name in runner.CHAPTERS:
        for src in _code(name):
            tree = ast.parse(src)
            for node in ast.walk(tree):
                assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)), \
                    f"{name} defines {node.name}: move it into calib.book"
                if isinstance(node, ast.Attribute):
                    assert not (node.attr.startswith("_") and not node.attr.startswith("__")), f"{name}: .{node.attr}"
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("calib"):
                    assert not any(a.name.startswith("_") for a in node.names), f"{name}: {node.module}"
                    assert node.module not in ("calib.experiments.run",), f"{name} reaches into {node.module}"


def test_settings_are_values_checked_once():
    s = C.settings("smoke", {"seeds": 3, "suite": {"limit": 2}}, model="world-qwen")
    assert (s["seeds"], s["suite"]["limit"], s["suite"]["name"], s["model"]) == (3, 2, "world", "world-qwen")
    assert C.settings(None)["profile"] == DEFAULT_PROFILE
    with pytest.raises(CalibError, match="unknown setting 'sede' \\(from --settings/--set\\)"):
        C.settings("smoke", {"sede": 1})
    with pytest.raises(CalibError, match="dtype 'float8'.*float32"):
        C.settings("smoke", dtype="float8")
    with pytest.raises(CalibError, match="unknown notebook parameter 'model_dir'; valid: profile, model, dtype"):
        C.notebook_settings({"profile": "smoke", "model_dir": "x"})
    p = C.parameters({"profile": "smoke", "C": C, "np": ast, "f": len, "settings": {"seeds": 2}})
    assert p == {"profile": "smoke", "settings": {"seeds": 2}}
    assert C.notebook_settings(p)["seeds"] == 2


def test_a_relative_store_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert C.settings("smoke", store="here.db")["store"] == str(tmp_path / "here.db")
    assert C.settings("smoke")["store"] == str(tmp_path / "runs" / "book-smoke.db")


def test_notebooks_are_found_in_the_working_directory_then_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = runner.notebook("fig3_amount")
    assert shipped.parent.parent.name == "book" and shipped.is_file()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "fig3_amount.ipynb").write_text(shipped.read_text())
    assert runner.notebook("fig3_amount") == tmp_path / "notebooks" / "fig3_amount.ipynb"


def _setup_only(name: str, path):
    """The chapter's notebook up to its setup cell, then one cell that prints the settings it got."""
    nb = nbformat.read(runner.notebook(name), as_version=4)
    first = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"][:2]
    nb.cells = nb.cells[:first[1] + 1] + [nbformat.v4.new_code_cell(
        'print("SETTINGS", s["profile"], s["model"], s["dtype"], s["store"], s["seeds"])')]
    nbformat.write(nb, path)


def test_papermill_passes_parameters_and_refuses_an_unknown_one(tmp_path, monkeypatch):
    import papermill as pm
    monkeypatch.chdir(tmp_path)
    _setup_only("world", tmp_path / "in.ipynb")
    pm.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                        parameters={"profile": "smoke", "model": "world-qwen", "dtype": "float32", "store": "r.db",
                                    "settings": {"seeds": 3}}, progress_bar=False)
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in out.cells if c.cell_type == "code" for o in c.outputs)
    assert f"SETTINGS smoke world-qwen float32 {tmp_path / 'r.db'} 3" in text
    with pytest.raises(pm.PapermillExecutionError, match="unknown notebook parameter 'model_dir'"):
        pm.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "bad.ipynb"), kernel_name="python3",
                            parameters={"profile": "smoke", "model_dir": "x"}, progress_bar=False)


def _frame():
    import pandas as pd
    rows = []
    for method in ("owl", "wanda"):
        for src, base in (("world/web", 40.0), ("world/pretrain", 44.0)):
            for syn in (False, True):
                for seed in (0, 1):
                    rows.append({"method": method, "source": src, "synthetic": syn, "seed": seed,
                                 "avg": base + 2 * syn + seed, "alpaca_ppl": 10.0 - syn,
                                 "heldout_nll": 3.0 + 0.1 * seed if src == "world/web" else None,
                                 "prefix_len": 4.0 if syn else None})
    return pd.DataFrame(rows)


def test_heldout_table():
    mean, std = C.heldout_table(_frame(), ["world/pretrain", "world/web"])
    # methods in the book's order, sources without a held-out loss dropped, both labelled
    assert list(mean.index) == ["Wanda", "OWL"] and list(mean.columns) == ["web (C4)"]
    assert mean.loc["OWL", "web (C4)"] == pytest.approx(3.05) and std.loc["Wanda", "web (C4)"] == pytest.approx(  # 4 rows
        0.0577350, rel=1e-5)


def test_synthetic_table():
    d = _frame()
    mean, std = C.synthetic_table(d[d.method == "wanda"], ["world/web", "world/pretrain"], ["alpaca_ppl", "avg"])
    assert list(mean.index) == [("web (C4)", "original"), ("web (C4)", "w/ Syn"), ("pretrain (DCLM)", "original"),
                                ("pretrain (DCLM)", "w/ Syn")]
    assert list(mean["avg"]) == [40.5, 42.5, 44.5, 46.5] and list(mean["alpaca_ppl"]) == [10, 9, 10, 9]
    assert mean["delta"].isna().tolist() == [True, False, True, False] and mean["delta"].iloc[1] == 2.0
    assert std["avg"].iloc[0] == pytest.approx(0.7071068, rel=1e-6)


def test_by_architecture():
    d = _frame()
    both = C.by_architecture({"a": d, "b": d.head(3)})
    assert list(both.arch) == ["a"] * len(d) + ["b"] * 3
    assert both.prefix_len.dtype.kind == "i" and set(both.prefix_len) == {-1, 4}
