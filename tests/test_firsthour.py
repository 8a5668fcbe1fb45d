"""A user's first hour (issue 34): defaults that follow the model, hub ids from a local hub
cache, `calib sample`'s output as --calib, --text-field, outputs that never overwrite inputs,
the model card, help texts, --version."""
from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

from calib.cli import build_parser, main
from calib.models import defaults
from factory import save

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TEXTS = [f"the river {i} runs past the old mill and the town keeps its records of {i} floods" for i in range(40)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_llama, tiny_tokenizer):
    return save(tiny_llama, tiny_tokenizer, tmp_path_factory.mktemp("m") / "model")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    f = tmp_path_factory.mktemp("c") / "docs.jsonl"
    f.write_text("".join(json.dumps({"body": t}) + "\n" for t in TEXTS))
    return f


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, model_dir):
    """A hub cache laid out as huggingface_hub writes it, holding org/tiny at COMMIT; offline."""
    import shutil

    from huggingface_hub import constants
    repo = tmp_path / "hub" / "models--org--tiny"
    shutil.copytree(model_dir, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    from calib import models
    models._hub_snapshot.cache_clear()
    yield repo
    models._hub_snapshot.cache_clear()


def _err(capsys):
    return capsys.readouterr().err.strip().splitlines()


def test_defaults_follow_the_model(model_dir, tmp_path):
    world = {"source": "world/pretrain", "suite": "world", "dtype": "float32"}
    assert defaults("world") == defaults("world-qwen") == defaults(None) == world
    assert defaults(model_dir) == {"source": "c4", "suite": "paper", "dtype": "auto"}
    assert defaults("org/name") == defaults(model_dir)
    pruned = tmp_path / "p"  # a folder written by `calib prune` takes its base model's defaults
    pruned.mkdir()
    (pruned / "prune_report.json").write_text(json.dumps({"base_model": "world"}))
    assert defaults(pruned) == world


def test_other_model_calibrates_on_c4_and_says_so(model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CALIB_SOURCES", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rc = main(["prune", "--model", model_dir, "--nsamples", "2", "--seqlen", "16", "--out", str(tmp_path / "p"),
               "--no-progress"])
    err = _err(capsys)
    assert rc == 2 and len(err) == 2, err
    assert err[0] == f"calib prune: model {model_dir}, calibration c4, dtype auto (float32 here)"
    assert err[1].startswith("calib prune: error: source 'c4'") and "CALIB_SOURCES" in err[1]
    assert not (tmp_path / "p").exists()


def test_hub_id_from_local_cache_offline(hub_cache, corpus, tmp_path, capsys):
    out = tmp_path / "p"
    rc = main(["prune", "--model", "org/tiny", "--calib", str(corpus), "--text-field", "body", "--nsamples", "2",
               "--seqlen", "8", "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "prune_report.json").read_text())
    assert rep["revision"] == COMMIT and rep["base_model"] == "org/tiny"
    assert rep["versions"]["calib"] and "calib_commit" in rep["versions"]
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == "org/tiny" and meta["library_name"] == "transformers" and "wanda" in meta["tags"]
    for value in (str(corpus), rep["calibration"]["sha256_int32"], COMMIT, "| nsamples x seqlen | 2 x 8 |"):
        assert value in card
    # a revision by commit resolves too; an unknown one, or an uncached model, is one line naming `hf download`
    assert main(["sample", str(corpus), "--model", "org/tiny", "--revision", COMMIT, "--text-field", "body",
                 "--nsamples", "2", "--seqlen", "8"]) == 0
    capsys.readouterr()
    for argv, name in ((["--model", "org/missing"], "org/missing"), (["--model", "org/tiny", "--revision", "v9"],
                                                                     "org/tiny --revision v9")):
        assert main(["sample", str(corpus), "--text-field", "body", *argv]) == 2
        err = _err(capsys)
        assert len(err) == 1 and "not in the local hub cache" in err[0] and f"`hf download {name}`" in err[0], err


def test_a_grid_job_takes_a_hub_id(hub_cache, cache_env):
    from calib.experiments import Job
    from calib.experiments.run import calibration_key
    j = Job(model="org/tiny", method="magnitude", calibration={"nsamples": 2, "seqlen": 8})
    assert j.model == "org/tiny" and j.calibration["source"] == "c4" and j.suite["name"] == "paper"
    assert j.dtype == "float32"  # auto, on this CPU-only machine
    assert j.stages == {"sampling": 1, "scoring": 1, "pruner": {"magnitude": 1}}
    assert len(j.key) == 32 and calibration_key(j)


def test_revision_needs_a_hub_id(model_dir, corpus, capsys):
    assert main(["sample", str(corpus), "--model", model_dir, "--revision", "main", "--text-field", "body"]) == 2
    assert "--revision 'main' applies to hub model ids" in _err(capsys)[-1]


def test_sample_output_feeds_prune(model_dir, corpus, tmp_path, capsys):
    f = tmp_path / "set.pt"
    assert main(["sample", str(corpus), "--model", model_dir, "--text-field", "body", "--nsamples", "3",
                 "--seqlen", "8", "--seed", "4", "--out", str(f)]) == 0
    h = json.loads((tmp_path / "set.pt.json").read_text())["hash"]
    out = tmp_path / "p"
    assert main(["prune", "--model", model_dir, "--calib", str(f), "--out", str(out), "--no-progress"]) == 0
    rep = json.loads((out / "prune_report.json").read_text())
    assert rep["calibration"]["sha256_int32"] == h and rep["calibration"]["nsamples"] == 3
    assert rep["calibration"]["seqlen"] == 8 and rep["calibration"]["mode"] == "document"
    (tmp_path / "set.pt.json").write_text(json.dumps({**json.loads((tmp_path / "set.pt.json").read_text()),
                                                      "hash": "0" * 64}))
    capsys.readouterr()
    assert main(["prune", "--model", model_dir, "--calib", str(f), "--out", str(tmp_path / "q"),
                 "--no-progress"]) == 2
    assert "do not match the hash" in _err(capsys)[-1]


def _same(paths):
    return {p: (p.read_bytes() if p.is_file() else sorted(x.name for x in p.iterdir())) for p in paths}


def test_no_command_writes_over_its_inputs(model_dir, corpus, tmp_path, capsys):
    from pathlib import Path
    model_dir = Path(model_dir)
    store = tmp_path / "runs.db"
    sqlite3.connect(store).close()
    grid = tmp_path / "grid.yaml"
    grid.write_text("model: world\n")
    other = tmp_path / "b.jsonl"
    other.write_text(corpus.read_text())
    cases = [
        (["filter", str(corpus), "--out", str(corpus), "--text-field", "body"], "is the input source"),
        (["prune", "--model", str(model_dir), "--out", str(model_dir), "--overwrite", "--calib", str(corpus)],
         "is the input --model"),
        (["prune", "--model", str(model_dir), "--out", str(model_dir / "sub"), "--calib", str(corpus)],
         "lies inside the input --model"),
        (["prune", "--model", str(model_dir), "--out", str(model_dir.parent), "--overwrite", "--calib",
          str(corpus)], "holds the input --model"),
        (["prune", "--model", str(model_dir), "--out", str(corpus), "--calib", str(corpus)], "exists and is not"),
        (["generate", str(corpus), "--model", str(model_dir), "--out", str(corpus)], "is the input source"),
        (["sample", str(corpus), "--model", str(model_dir), "--out", str(corpus)], "is the input source"),
        (["similarity", str(corpus), str(other), "--out", str(other)], "is the input source"),
        (["evaluate", "--model", str(model_dir), "--json", str(model_dir / "eval.json")],
         "lies inside the input --model"),
        (["results", "--store", str(store), "--csv", str(store)], "is the input --store"),
        (["run", str(grid), "--store", str(grid)], "is the input grid"),
    ]
    watched = [corpus, other, model_dir, store, grid]
    before = _same(watched)
    for argv, why in cases:
        assert main(argv) == 2, argv
        err = _err(capsys)
        assert why in err[-1] and err[-1].startswith(f"calib {argv[0]}: error:"), (argv, err)
        assert _same(watched) == before, argv
    assert not (model_dir / "sub").exists() and not (model_dir / "eval.json").exists()


def _actions(parser, prog="calib"):
    import argparse
    # prune's method options are generated from the methods' records (issue 31), with their own wording
    records = {id(a) for g in parser._action_groups if (g.title or "").startswith("method options")
               for a in g._group_actions}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _actions(sub, f"{prog} {name}")
        elif not isinstance(a, (argparse._HelpAction, argparse._VersionAction)) and id(a) not in records:
            yield prog, a


def test_help_every_option_has_help_and_one_default():
    import argparse

    from calib.book.runner import main as book_main  # noqa: F401  (its parser is checked below)
    for prog, a in _actions(build_parser()):
        assert a.help, f"{prog} {a.option_strings or a.dest} has no help"
        assert "default" not in a.help.replace("%(default)s", ""), f"{prog} {a.option_strings}: {a.help}"
    helps = [build_parser().format_help()]

    def sub_helps(p):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub in a.choices.values():
                    helps.append(sub.format_help())
                    sub_helps(sub)
    sub_helps(build_parser())
    for text in helps:
        assert "%%" not in text and "(default: None)" not in text and "(default: False)" not in text
        for block in text.split("\n  -"):
            assert block.count("(default") <= 1, block
    assert any("Min-K%++" in h for h in helps)


def test_version_and_book_prog(capsys):
    import calib
    from importlib.metadata import version
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"calib {version('calib')}"
    assert calib.__version__ == version("calib")
    from calib.book.runner import main as book_main
    with pytest.raises(SystemExit):
        book_main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m calib.book") and "papermill" in out and "(default: None)" not in out
