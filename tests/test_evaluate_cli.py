"""`calib evaluate`: a checkpoint written by `calib prune`, both suites, clear errors."""
from __future__ import annotations

import json

import pytest
from factory import save, tiny_world_model, world_tokenizer
from paper_tasks import write_paper_tasks

from calib.cli import main


def _save_tiny(path) -> str:
    return save(tiny_world_model(400, 256), world_tokenizer(400), path)


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    """A tiny random LLaMA pruned by `calib prune` (Wanda, world calibration data)."""
    d = tmp_path_factory.mktemp("evaluate_cli")
    dense = _save_tiny(d / "dense")
    rc = main(["prune", "--model", dense, "--method", "wanda", "--sparsity", "0.5", "--calib", "world/pretrain",
               "--nsamples", "4", "--seqlen", "32", "--out", str(d / "pruned"), "--no-progress"])
    assert rc == 0
    return d / "pruned"


def test_evaluates_a_pruned_checkpoint(pruned, tmp_path, capsys, cache_env):
    out = tmp_path / "eval.json"
    rc = main(["evaluate", "--model", str(pruned), "--suite", "world", "--limit", "5", "--ppl", "8",
               "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    from calib.world.tasks import TASKS
    assert list(res["tasks"]) == TASKS and all(len(res["items"][t]) == 5 for t in TASKS)
    first = res["items"]["world_arc_easy"][0]  # each item's record: what lm-eval scored, and its fact
    assert set(first) == {"doc_id", "acc", "acc_norm", "logscore", "fact"} and first["logscore"] <= 0
    assert res["heldout_nll"] > 0 and res["heldout_texts"] == 200
    assert res["pruned"]["method"] == "wanda" and res["pruned"]["sparsity"] == 0.5
    assert res["alpaca_ppl"] > 1 and res["n_shot"]["world_mmlu"] == 5 and res["scorer"] == "fast"
    assert abs(res["avg"] - sum(res["tasks"][t]["acc"] for t in TASKS) / len(TASKS)) < 1e-12
    table = capsys.readouterr().out
    assert "world_mmlu" in table and "avg" in table and "alpaca perplexity" in table
    # the same checkpoint scored by lm-eval's HFLM: the same items right and wrong
    rc = main(["evaluate", "--model", str(pruned), "--suite", "world", "--limit", "5", "--ppl", "0", "--scorer", "hflm",
               "--json", str(tmp_path / "hflm.json")])
    hflm = json.loads((tmp_path / "hflm.json").read_text())
    assert rc == 0 and hflm["tasks"] == res["tasks"]
    for t in TASKS:
        for a, b in zip(hflm["items"][t], res["items"][t], strict=True):
            assert abs(a.pop("logscore") - b.pop("logscore")) < 1e-4 and a == b


def test_paper_suite_from_a_local_task_folder(pruned, tmp_path, capsys):
    tasks = write_paper_tasks(tmp_path / "paper", n=4)
    out = tmp_path / "paper.json"
    rc = main(["evaluate", "--model", str(pruned), "--suite", "paper", "--include-path", str(tasks),
               "--tasks", "winogrande,mmlu", "--ppl", "0", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["n_shot"]["mmlu"] == 5 and len(res["items"]["winogrande"]) == 4
    assert {"winogrande", "mmlu", "mmlu_nutrition"} <= set(res["tasks"]) and "boolq" not in res["tasks"]
    assert "alpaca_ppl" not in res and "heldout_nll" not in res  # --ppl 0; the paper suite has no held-out texts
    assert res["items"]["winogrande"][0]["fact"] == "winogrande/0"  # real tasks: each document is its own unit


def test_packaged_model_alias(capsys, cache_env):
    assert main(["evaluate", "--model", "world", "--tasks", "world_arc_easy", "--limit", "3", "--ppl", "0"]) == 0
    assert "world_arc_easy" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--suite", "glue"], "--suite: unknown suite 'glue'; valid choices: world, paper, ppl"),
    (["--scorer", "vllm"], "unknown scorer 'vllm'; valid choices: fast, hflm"),
    (["--tasks", "world_boolq,boolq"], "unknown task 'boolq'; valid choices: world_boolq,"),
    (["--suite", "paper", "--tasks", "lambada"], "unknown task 'lambada'; valid choices: boolq,"),
    (["--limit", "0"], "--limit: expected an integer >= 1; got 0"),
    (["--ppl", "-1"], "--ppl: expected an integer >= 0; got -1"),
    (["--suite", "paper", "--include-path", "/tmp"], "the paper suite's Alpaca perplexity (--ppl 0 skips it)"),
    (["--dtype", "int8"], "unknown dtype 'int8'; valid choices: auto, float32, bfloat16, float16"),
    (["--suite", "paper", "--include-path", "/nonexistent/tasks"], "is not a folder"),
])
def test_bad_input_is_a_clear_error(argv, message, capsys):
    assert main(["evaluate", "--model", "world", *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    assert main(["evaluate", "--model", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no model at" in err and "'world' or 'world-qwen'" in err and "calib prune" in err
