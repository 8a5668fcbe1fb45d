"""The pruning methods are records (calib.prune.methods): a new method is one record plus its math,
and every consumer (``calib prune`` and its flags, grids and jobs, the book's names) reads them.
The modules that run methods never name one, each default has one owner, and nothing imports in a
cycle (lazy imports counted)."""
from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import pytest

from calib.errors import CalibError
from calib.prune import methods

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "calib"
# the modules that run methods, with no method of their own (issue 31's list)
RUNNERS = [PKG / "prune" / "engine.py", PKG / "prune" / "sequential.py", *sorted((PKG / "cli").glob("*.py")),
           *sorted((PKG / "experiments").glob("*.py"))]


def _strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string constant of ``source`` that is not a docstring (f-strings' parts too)."""
    tree = ast.parse(source)
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def method_literals(source: str, names) -> list[tuple[int, str]]:
    """String constants that name a method (as a word: 'owl', '--owl-m', 'owl ratios')."""
    word = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(map(re.escape, names)) + r")(?![A-Za-z0-9])")
    return [(line, text) for line, text in _strings(source) if word.search(text)]


@pytest.mark.parametrize("path", RUNNERS, ids=lambda p: str(p.relative_to(PKG)))
def test_no_method_is_named_where_methods_run(path):
    """engine, sequential, the CLI and the experiments read records: no method name (the default
    included: it is methods.DEFAULT_METHOD) appears in their code."""
    found = method_literals(path.read_text(), list(methods.METHODS))
    assert not found, f"{path.relative_to(ROOT)} names a method: {found}"


def test_the_literal_check_fails_on_the_old_code():
    """The check above catches what de4ce79 had: 'owl' branched on, flags and the default written out."""
    old_engine = 'def prune(model, method: str = "wanda"):\n    extra["owl"] = ratios\n'
    old_cli = 'g.add_argument("--owl-m", type=float, default=None, help="owl: outlier threshold M (5)")\n'
    old_run = 'info = {k: res.report[k] for k in ("overall", "owl") if k in res.report}\n'
    for src in (old_engine, old_cli, old_run):
        assert method_literals(src, list(methods.METHODS))
    assert not method_literals('"""Masks by OWL or wanda."""\nx = "owls_nest", "knowledge"\n', list(methods.METHODS))


def test_the_default_method_has_one_owner():
    """``DEFAULT_METHOD`` is assigned once, in methods.py; Setting.of's default reads it (no literal)."""
    owners = [p for p in PKG.rglob("*.py") if re.search(r"^DEFAULT_METHOD\s*=", p.read_text(), re.M)]
    assert owners == [PKG / "prune" / "methods.py"]
    src = (PKG / "prune" / "methods.py").read_text()
    of = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.FunctionDef) and n.name == "of")
    assert [d.id for d in of.args.defaults if isinstance(d, ast.Name)][:1] == ["DEFAULT_METHOD"]
    from calib.cli import build_parser
    from calib.experiments.job import Job
    from calib.prune.engine import prune
    sub = build_parser()._subparsers._group_actions[0].choices["prune"]
    assert sub.get_default("method") == Job.method == inspect.signature(prune).parameters["method"].default \
        == methods.DEFAULT_METHOD


def test_the_cache_layout_has_one_owner():
    """Where a cached intermediate lives is said once (experiments/run.py); the planner asks it."""
    texts = {p.relative_to(PKG): p.read_text() for p in PKG.rglob("*.py")}
    for name in ("dense_eval", "complete.json"):
        where = [(p, line) for p, text in texts.items() if name in text for line, s in _strings(text) if s == name]
        assert len(where) == 1 and where[0][0] == Path("experiments/run.py"), (name, where)
    assert [p for p, text in texts.items() if p.parts[0] == "experiments" and "cache_dir()" in text] \
        == [Path("experiments/run.py")]


def test_dsnot_walks_are_the_records_choices():
    """dsnot.py does not import the record (no cycle), so the two lists are held equal here."""
    from calib.prune import dsnot
    walk = next(o for o in methods.METHODS["dsnot"].options if o.name == "walk")
    assert walk.choices == dsnot.WALKS


def test_no_import_cycles():
    """No module of calib imports itself through others, imports inside functions counted."""
    import grimp
    graph = grimp.build_graph("calib", cache_dir=None)
    cycles = [(a, b) for a in sorted(graph.modules) for b in sorted(graph.find_modules_directly_imported_by(a))
              if graph.chain_exists(importer=b, imported=a)]
    assert not cycles


def test_register_checks_a_record():
    with pytest.raises(CalibError, match="already registered"):
        methods.register(methods.Method("wanda", "Wanda", rule=lambda *a: None))
    with pytest.raises(CalibError, match="option percdamp differs"):
        methods.register(methods.Method("x", "X", (methods.Option("percdamp", 0.1, "other"),), rule=lambda *a: None))
    with pytest.raises(CalibError, match="mask rule or masks_with"):
        methods.register(methods.Method("x", "X"))
    assert "x" not in methods.METHODS


# ------------------------------------------------------------------ a toy method, end to end
def _toy_rule(name, lin, st, s, nm, opts, hinv):
    """The toy's math: |W| times |mean input| ** power, pruned per row (or per N:M group)."""
    from calib.prune.masks import nm_mask, row_mask
    score = lin.weight.data.abs() * st.mean.abs().reshape(1, -1) ** opts["toy_power"]
    return nm_mask(score, *nm) if nm else row_mask(score, s)


@pytest.fixture
def toy():
    record = methods.register(methods.Method(
        "toy", "Toy", (methods.Option("toy_power", 1.0, "power of the mean input", minimum=0),),
        needs=lambda o: {"mean": True}, rule=_toy_rule))
    try:
        yield record
    finally:
        methods.unregister("toy")
    assert "toy" not in methods.METHODS and "toy" not in methods.DISPLAY_NAMES


def test_a_registered_method_is_everywhere(toy, tmp_path, capsys):
    from calib.book.profiles import METHOD_NAMES
    from calib.cli import main
    from calib.experiments.grid import expand_grid
    from calib.experiments.job import Job

    # calib prune --help: the method and its flag, with the record's default
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"--method METHOD {' | '.join(methods.METHODS)} (default: wanda)" in text and "owl | toy" in text
    assert "--toy-power TOY_POWER toy: power of the mean input (unset: 1.0)" in text
    # a real prune of the world model
    out = tmp_path / "pruned"
    assert main(["prune", "--model", "world", "--method", "toy", "--toy-power", "2", "--sparsity", "0.6",
                 "--nsamples", "2", "--seqlen", "16", "--out", str(out), "--no-progress"]) == 0
    rep = json.loads((out / "prune_report.json").read_text())
    assert rep["method"] == "toy" and rep["options"] == {"toy_power": 2.0}
    assert abs(rep["sparsity_report"]["overall"]["sparsity"] - 0.6) < 0.01
    assert main(["prune", "--model", "world", "--method", "toy", "--owl-m", "3", "--out", str(tmp_path / "x")]) == 2
    assert "--owl-m does not apply to method 'toy'" in capsys.readouterr().err
    # grids and jobs
    jobs = expand_grid({"model": "world", "method": ["wanda", "toy"], "sparsity": 0.5,
                        "options": {"toy": {"toy_power": 0.5}}, "calibration": {"nsamples": 2}})
    assert [(j.method, j.options) for j in jobs] == [("wanda", {"use_variant": False}), ("toy", {"toy_power": 0.5})]
    with pytest.raises(CalibError, match="options: toy_power -1 must be >= 0"):
        Job(model="world", method="toy", options={"toy_power": -1})
    # the book's names, after the paper's five
    assert METHOD_NAMES["toy"] == "Toy" and list(METHOD_NAMES)[-1] == "toy"
