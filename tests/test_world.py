"""The embedded world: determinism, domains, tokenizer, model I/O, tasks, CLI errors."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from calib.errors import CalibError
from calib.filters import exact_jaccard
from calib.world import sources
from calib.world.domains import DOMAINS


def _digest(docs):
    return hashlib.sha256("\x00".join(docs).encode()).hexdigest()


def test_corpus_is_deterministic_across_calls_and_processes():
    a = sources.documents("world/mixed", 40, seed=3)
    assert a == sources.documents("world/mixed", 40, seed=3)
    code = ("import hashlib; from calib.world import sources; "
            "print(hashlib.sha256('\\x00'.join(sources.documents('world/mixed', 40, seed=3)).encode()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.strip()
    assert out == _digest(a)


def test_document_does_not_depend_on_count_and_seeds_differ():
    assert sources.documents("world/web", 5)[:3] == sources.documents("world/web", 3)
    assert sources.documents("world/web", 5, seed=0) != sources.documents("world/web", 5, seed=1)
    assert sources.documents("world/pretrain", 5, split="train") != sources.documents("world/pretrain", 5)


def test_domains_differ_measurably():
    docs = {d: sources.domain_documents(d, 60) for d in DOMAINS}
    for d in DOMAINS:
        within = exact_jaccard(docs[d][:30], docs[d][30:])
        for e in DOMAINS:
            if e != d:
                across = exact_jaccard(docs[d][:30], docs[e][30:])
                assert across < within, (d, e, within, across)


def test_source_similarity_orders_as_in_the_paper():
    ref = sources.documents("world/pretrain", 600, split="train")
    j = {s: exact_jaccard(sources.documents(s, 200, seed=1), ref)
         for s in ["world/pretrain", "world/web", "world/mixed", "world/encyclopedia"]}
    assert j["world/pretrain"] > j["world/web"] > j["world/mixed"] > j["world/encyclopedia"], j


def test_instruction_items_never_in_pretraining():
    from calib.world.model import RECIPE
    from calib.world.tasks import alpaca_texts
    held = set(alpaca_texts())
    train = sources.documents("world/pretrain", 3000, seed=RECIPE["data_seed"], split="train")
    n_instr = sum(d.startswith("### Instruction:") for d in train)
    assert 0.005 < n_instr / len(train) < 0.03  # the format is seen in ~1-2% of pretraining
    # the recipe drops exact matches; the corpus builder must keep none
    from calib.world import model as wm
    small = dict(RECIPE, train_docs=3000)
    assert not held & set(wm.training_corpus(small))


def test_unknown_source_domain_split_are_clear_errors():
    with pytest.raises(CalibError, match="world/pretrain"):
        sources.documents("world/nope", 1)
    with pytest.raises(CalibError, match="encyclopedia"):
        sources.domain_documents("poetry", 1)
    with pytest.raises(CalibError, match="calib"):
        sources.documents("world/web", 1, split="dev")


def test_tokenizer_round_trips(tiny_tokenizer):
    for text in sources.documents("world/mixed", 20) + ["naïve café — 3.14 ✓\n\ttabs"]:
        ids = tiny_tokenizer(text)["input_ids"]
        assert ids[0] == tiny_tokenizer.bos_token_id
        assert tiny_tokenizer.decode(ids, skip_special_tokens=True) == text


def test_model_save_load_round_trip_identical_logits(tiny_llama, tiny_tokenizer, tmp_path):
    import torch
    from calib.models import load
    tiny_llama.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    model, tok = load(tmp_path)
    ids = torch.tensor([tiny_tokenizer("Brekka is a city.")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(tiny_llama(ids).logits, model(ids).logits)
    assert tok("a b")["input_ids"] == tiny_tokenizer("a b")["input_ids"]


def test_missing_and_corrupt_model_folders(tmp_path, tiny_llama, tiny_tokenizer):
    from calib.models import load
    with pytest.raises(CalibError, match="config.json missing"):
        load(tmp_path / "nothing")
    tiny_llama.save_pretrained(tmp_path / "m")
    tiny_tokenizer.save_pretrained(tmp_path / "m")
    w = tmp_path / "m" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CalibError, match="could not load"):
        load(tmp_path / "m")


def test_task_items_are_valid_and_distinct():
    from calib.world.tasks import CHANCE, TASKS, make_items
    for t in TASKS:
        items = make_items(t, 500)
        assert len({json.dumps(i, sort_keys=True) for i in items}) == 500
        n_choices = 2 if t == "world_winogrande" else len(items[0]["choices"])
        assert abs(1 / n_choices - CHANCE[t]) < 1e-9
        labels = np.array([i["label"] for i in items])
        # answers are balanced: no position bias to exploit
        assert np.bincount(labels).min() > 0.6 * 500 / n_choices


def test_world_lm_eval_task_runs_on_tiny_model(tiny_llama, tiny_tokenizer, cache_env):
    from calib.evaluate import lm_eval_tasks
    from calib.world.tasks import task_dir
    res = lm_eval_tasks(tiny_llama, tiny_tokenizer, ["world_winogrande", "world_mmlu"],
                        include_path=str(task_dir()), limit=8, batch_size=8)
    assert set(res["tasks"]) == {"world_winogrande", "world_mmlu"}
    assert 0.0 <= res["tasks"]["world_mmlu"]["acc"] <= 1.0
    assert res["lm_eval_version"] and res["task_versions"]["world_mmlu"] == 2.0
    assert res["n_shot"]["world_mmlu"] == 5


def test_world_task_requests_have_one_space_before_the_answer(cache_env):
    """lm-eval joins context and choice with target_delimiter; the world's choices carry
    their own leading space, so a request must read "Answer: yes", never "Answer:  yes"."""
    from calib.evaluate import _task_manager
    from calib.world.tasks import task_dir
    tasks = _task_manager(str(task_dir(n=4))).load(["world_arc_easy", "world_winogrande", "world_mmlu"])["tasks"]
    assert set(tasks) == {"world_arc_easy", "world_winogrande", "world_mmlu"}, sorted(tasks)
    for name, task in tasks.items():
        task.set_fewshot_seed(0)
        task.build_all_requests(limit=2, rank=0, world_size=1)
        for inst in task.instances:
            context, continuation = inst.args
            assert continuation.startswith(" ") and not continuation.startswith("  "), (name, continuation)
            assert not context.endswith(" "), (name, context[-20:])
            if name == "world_mmlu":  # the five shots end in " A".." D" after one space
                assert "Answer:  " not in context and context.count("\nAnswer: ") == 5


def test_perplexity_two_ways(tiny_llama, tiny_tokenizer):
    from calib.evaluate import perplexity, token_nll
    texts = sources.documents("world/instructions", 6, split="eval")
    p = perplexity(tiny_llama, tiny_tokenizer, texts, batch_size=4)
    nll = token_nll(tiny_llama, tiny_tokenizer, texts, batch_size=1)  # unpadded reference
    ref_corpus = np.exp(np.concatenate(nll).mean())
    ref_paper = np.mean([np.exp(n.mean()) for n in nll])
    assert p["ppl_corpus"] == pytest.approx(ref_corpus, rel=1e-4)
    assert p["ppl_paper"] == pytest.approx(ref_paper, rel=1e-4)
    assert p["ppl_paper"] >= p["ppl_corpus"] * 0.5


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "calib.cli", *args], capture_output=True, text=True)


def test_cli_errors_name_bad_value_and_choices(tmp_path):
    r = _cli("world", "show", "world/nope")
    assert r.returncode == 2 and "world/nope" in r.stderr and "world/pretrain" in r.stderr
    r = _cli("world", "show", "world/web", "--split", "dev")
    assert r.returncode == 2 and "'dev'" in r.stderr and "train" in r.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    r = _cli("world", "build", "--model", str(tmp_path / "bad"), "--no-report")
    assert r.returncode == 2 and "bad/config.json: not valid JSON" in r.stderr
    r = _cli("world", "build", "--retrain", "--device", "tpu", "--model", str(tmp_path / "new"), "--no-report")
    assert r.returncode == 2 and "'tpu'" in r.stderr and "cuda" in r.stderr and not (tmp_path / "new").exists()


def test_cli_sources_lists_roles():
    r = _cli("world", "sources")
    assert r.returncode == 0
    for role in ["DCLM", "C4", "Wikipedia", "SlimPajama", "Alpaca"]:
        assert role in r.stdout
