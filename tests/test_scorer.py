"""calib.scorer (lm-eval model ``calib-fast``) scores exactly as lm-eval's HFLM.

Per request: |loglikelihood difference| <= 1e-4 nats and identical is_greedy; per item: identical
accuracy. Checked on every world task with the committed world model, and on stand-ins of the
paper's tasks (tests/paper_tasks.py, the real request shapes) with tiny random models of each
architecture `calib prune` supports. In bfloat16 neither scorer is exact (HFLM differs from
itself across batch sizes); there the fast scorer must be as close to float32 as HFLM is.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from paper_tasks import PAPER_SHOTS, built_requests, write_paper_tasks

TOL = 1e-4


def same_records(a: dict, b: dict) -> bool:
    """Two scorers' per-item records agree: the same items right and wrong, facts, and log-scores
    within TOL."""
    assert set(a) == set(b)
    for t in a:
        assert {k: v for k, v in a[t].items() if k != "logscore"} == {k: v for k, v in b[t].items() if k != "logscore"}
        assert np.allclose(a[t]["logscore"], b[t]["logscore"], rtol=0, atol=TOL), t
    return True


def _tiny(arch: str, tok, dtype=torch.float32, **extra):
    from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config
    cls = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config}[arch]
    cfg = cls(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=8, vocab_size=len(tok), max_position_embeddings=1024,
              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, initializer_range=0.2, **extra)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).to(dtype).eval()


def _lms(model, tok, **kw):
    from lm_eval.models.huggingface import HFLM

    from calib.scorer import FastLM
    return FastLM(pretrained=model, tokenizer=tok, **kw), HFLM(pretrained=model, tokenizer=tok, batch_size=16, **kw)


def _compare(fast, hf, instances):
    a = fast.loglikelihood(instances, disable_tqdm=True)
    b = hf.loglikelihood(instances, disable_tqdm=True)
    diff = max(abs(x[0] - y[0]) for x, y in zip(a, b))
    assert diff <= TOL, diff
    assert [x[1] for x in a] == [y[1] for y in b]
    return a, b


@pytest.fixture(scope="module")
def paper_dir(tmp_path_factory):
    return write_paper_tasks(tmp_path_factory.mktemp("paper_tasks"), n=6, mmlu_facts=1)


# ------------------------------------------------------------------------------ the plan
def _check_plan(p, inputs):
    """Every input's nodes spell it; every pass reads only nodes already in the pool, at
    their slots; the tree has exactly one node per distinct prefix."""
    token = np.full(p.n_nodes, -1)
    for k, s in enumerate(p.seqs):
        token[p.own[k]:p.own[k] + len(s) - p.shared[k]] = s[p.shared[k]:]
    for k, s in enumerate(p.seqs):
        assert (token[p.paths[k]] == s).all()
    assert p.n_nodes == len({s[:i] for s in inputs for i in range(1, len(s) + 1)})
    pool = np.full(p.pool_size, -1)
    for rows in p.batches:
        for k in rows:
            past = p.paths[k][:p.shared[k]]
            assert (pool[p.slot[past]] == past).all()
        for k in rows:
            mine = np.arange(p.own[k], p.own[k] + len(p.seqs[k]) - p.shared[k])
            mine = mine[p.kept[mine]]
            pool[p.slot[mine]] = mine
    assert sorted(np.concatenate(p.batches).tolist()) == list(range(len(p.seqs)))


@pytest.mark.parametrize("budget", [1 << 40, 7])
def test_plan_runs_each_distinct_prefix_once(budget):
    from calib.scorer import plan
    rng = np.random.default_rng(0)
    stems = [list(rng.integers(0, 9, size=int(rng.integers(1, 12)))) for _ in range(6)]
    requests = []
    for _ in range(60):
        ctx = [1] + stems[int(rng.integers(6))] + list(rng.integers(0, 9, size=int(rng.integers(0, 5))))
        requests.append((ctx, list(rng.integers(0, 9, size=int(rng.integers(1, 4))))))
    p = plan(requests, max_length=14, pass_tokens=16, budget_tokens=budget)
    inputs = [tuple((c + t)[-15:][:-1]) for c, t in requests]
    _check_plan(p, inputs)
    assert (p.stats["blocks"] > 1) == (budget == 7)
    # every request reads its last len(cont) input positions, predicting its continuation
    index = {tuple(x.tolist()): k for k, x in enumerate(p.seqs)}
    for r, ((c, t), s) in enumerate(zip(requests, inputs)):
        nodes = p.pair_node[p.req_pairs[r]:p.req_pairs[r] + p.req_len[r]]
        k = index[s]
        assert (nodes == p.paths[k][len(s) - len(t):]).all() and (p.pair_target[p.req_pairs[r]:][:len(t)] == t).all()


def test_registered_in_lm_eval():
    from lm_eval.api.registry import get_model

    from calib.scorer import MODEL_NAME, FastLM
    assert get_model(MODEL_NAME) is FastLM


def test_calib_builds_its_scorers_directly():
    """`scorer="fast"` is FastLM and `"hflm"` lm-eval's HFLM, built by calib with the arguments
    lm-eval's registry path passed (create_from_arg_obj: the class called with them)."""
    from lm_eval.models.huggingface import HFLM

    from calib.evaluate import _lm
    from calib.models import load
    from calib.scorer import FastLM
    model, tok = load()
    fast, hflm = _lm(model, tok, "fast", 4), _lm(model, tok, "hflm", 4)
    assert type(fast) is FastLM and type(hflm) is HFLM
    assert fast.model is model and hflm.model is model and fast.batch_size == hflm.batch_size == 4


# ------------------------------------------------------------------------ equality with HFLM
def test_every_world_task_scores_as_hflm(cache_env):
    from calib.evaluate import lm_eval_tasks
    from calib.models import load
    from calib.world.tasks import TASKS, task_dir
    model, tok = load()
    fast, hf = _lms(model, tok)
    a, _ = _compare(fast, hf, built_requests(task_dir(), {t: None for t in TASKS}, limit=30))
    assert any(g for _, g in a) and not all(g for _, g in a)  # is_greedy is really compared
    assert fast.stats["tokens_fed"] < fast.stats["input_tokens"] / 2
    res = {s: lm_eval_tasks(model, tok, TASKS, include_path=str(task_dir()), limit=30, scorer=s)
           for s in ("fast", "hflm")}
    assert same_records(res["fast"]["records"], res["hflm"]["records"]) and res["fast"]["tasks"] == res["hflm"]["tasks"]
    assert set(res["fast"]["records"]) == set(TASKS)
    assert all(len(v["acc"]) == len(v["logscore"]) == len(v["fact"]) == 30 for v in res["fast"]["records"].values())


@pytest.mark.parametrize("arch,extra", [("llama", {}), ("mistral", {"sliding_window": 48}), ("qwen2", {}),
                                        ("qwen3", {})])
def test_paper_shaped_tasks_score_as_hflm(arch, extra, tiny_tokenizer, paper_dir):
    """BoolQ, Winogrande (two contexts, one continuation), PIQA, HellaSwag, ARC and MMLU 5-shot
    over four subjects (own description, first_n dev shots); mistral with a sliding window
    shorter than the prompts."""
    from calib.evaluate import lm_eval_tasks
    model = _tiny(arch, tiny_tokenizer, **extra)
    fast, hf = _lms(model, tiny_tokenizer)
    inst = built_requests(paper_dir, PAPER_SHOTS, limit=6)
    assert max(len(fast.tok_encode(i.args[0])) for i in inst) > 48  # past the sliding window
    _compare(fast, hf, inst)
    res = {s: lm_eval_tasks(model, tiny_tokenizer, PAPER_SHOTS, include_path=str(paper_dir), scorer=s)
           for s in ("fast", "hflm")}
    assert same_records(res["fast"]["records"], res["hflm"]["records"])
    assert res["fast"]["n_shot"]["mmlu_nutrition"] == 5 and len(res["fast"]["records"]["mmlu_nutrition"]["acc"]) == 6


def test_truncation_blocks_and_levers_score_as_hflm(tiny_tokenizer, paper_dir):
    """Inputs longer than max_length (left-truncated as HFLM does), a key/value budget small
    enough to cut the tree into blocks, and the measurement switches (no sharing; LM head
    everywhere) all leave the scores unchanged."""
    model = _tiny("llama", tiny_tokenizer)
    inst = built_requests(paper_dir, {"mmlu": 5, "winogrande": 0, "hellaswag": 0}, limit=6)
    from lm_eval.models.huggingface import HFLM

    from calib.scorer import FastLM
    stats = {}
    for name, kw in {"default": {}, "truncated": {"max_length": 96}, "blocks": {"kv_budget_mb": 0.02},
                     "no sharing": {"share": False}, "head everywhere": {"head": "all"}}.items():
        fast = FastLM(pretrained=model, tokenizer=tiny_tokenizer, **kw)
        hf = HFLM(pretrained=model, tokenizer=tiny_tokenizer, batch_size=16, max_length=kw.get("max_length"))
        _compare(fast, hf, inst)
        stats[name] = fast.stats
    assert stats["default"]["longest_input"] > 96 == stats["truncated"]["longest_input"]
    assert stats["blocks"]["blocks"] > 1 == stats["default"]["blocks"]
    assert stats["no sharing"]["tokens_fed"] == stats["no sharing"]["unique_input_tokens"]
    assert stats["default"]["tokens_fed"] < stats["no sharing"]["tokens_fed"] / 3
    assert stats["head everywhere"]["head_positions"] == stats["default"]["tokens_fed"] \
        > 3 * stats["default"]["head_positions"]


def test_rolling_loglikelihood_scores_as_hflm(tiny_tokenizer):
    from lm_eval.api.instance import Instance

    from calib.world.sources import documents
    model = _tiny("qwen2", tiny_tokenizer)
    fast, hf = _lms(model, tiny_tokenizer, max_length=64)
    docs = documents("world/pretrain", 3, split="train")
    reqs = [Instance("loglikelihood_rolling", {}, (d,), i) for i, d in enumerate(docs)]
    a, b = fast.loglikelihood_rolling(reqs, disable_tqdm=True), hf.loglikelihood_rolling(reqs, disable_tqdm=True)
    assert np.allclose(a, b, rtol=0, atol=1e-3) and len(a) == 3


def test_other_architectures_fall_back_to_hflm(tiny_tokenizer, paper_dir):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=len(tiny_tokenizer),
                                       n_positions=1024)).eval()
    fast, hf = _lms(model, tiny_tokenizer)
    inst = built_requests(paper_dir, {"arc_easy": 0}, limit=3)
    assert fast.loglikelihood(inst, disable_tqdm=True) == hf.loglikelihood(inst, disable_tqdm=True)
    assert fast.stats == {}  # the fast path never ran


def test_bfloat16_is_as_close_to_float32_as_hflm(tiny_tokenizer, paper_dir):
    """bf16 rounding makes neither scorer exact; the fast one must stay as close to the
    float32 scores as HFLM in bf16 does (on average, and in the worst case)."""
    from lm_eval.models.huggingface import HFLM
    model = _tiny("llama", tiny_tokenizer)
    inst = built_requests(paper_dir, {"hellaswag": 0, "mmlu": 5, "winogrande": 0}, limit=6)
    ref = np.array([x for x, _ in HFLM(pretrained=model, tokenizer=tiny_tokenizer).loglikelihood(inst, True)])
    fast, hf = _lms(_tiny("llama", tiny_tokenizer, dtype=torch.bfloat16), tiny_tokenizer)
    err_fast = np.abs(np.array([x for x, _ in fast.loglikelihood(inst, True)]) - ref)
    err_hf = np.abs(np.array([x for x, _ in hf.loglikelihood(inst, True)]) - ref)
    assert err_hf.mean() > 0  # bf16 really ran
    assert err_fast.mean() <= 1.5 * err_hf.mean() and err_fast.max() <= 2 * err_hf.max() + 0.25


# ------------------------------------------------------------------------- lm_eval_tasks
def test_built_tasks_are_kept_per_process(tiny_tokenizer, paper_dir, monkeypatch):
    """The second evaluation builds no task objects, and a kept task gives what a fresh one
    gives, whatever limit it ran with before."""
    from calib import evaluate as ev
    model = _tiny("llama", tiny_tokenizer)
    shots = {"arc_easy": 0, "mmlu": 5}
    ev._BUILT.clear()
    fresh = ev.lm_eval_tasks(model, tiny_tokenizer, shots, include_path=str(paper_dir))
    tm = ev._task_manager(str(paper_dir))
    loads, load = [], tm.load

    def counting(specs):  # simple_evaluate hands kept Task objects back through load(): no build
        loads.extend(s for s in (specs if isinstance(specs, list) else [specs]) if isinstance(s, str))
        return load(specs)
    monkeypatch.setattr(tm, "load", counting)
    small = ev.lm_eval_tasks(model, tiny_tokenizer, shots, include_path=str(paper_dir), limit=2)
    again = ev.lm_eval_tasks(model, tiny_tokenizer, shots, include_path=str(paper_dir))
    assert not loads and again == fresh and len(small["records"]["arc_easy"]["acc"]) == 2
    assert small["records"]["mmlu_nutrition"]["acc"] == fresh["records"]["mmlu_nutrition"]["acc"][:2]


def test_lm_eval_tasks_bad_input(tiny_tokenizer, paper_dir):
    from calib.errors import CalibError
    from calib.evaluate import lm_eval_tasks
    model = _tiny("llama", tiny_tokenizer)
    with pytest.raises(CalibError, match="unknown scorer 'vllm'; valid choices: fast, hflm"):
        lm_eval_tasks(model, tiny_tokenizer, ["boolq"], include_path=str(paper_dir), scorer="vllm")
    with pytest.raises(CalibError, match="unknown task 'lambada' in .*; valid choices: .*boolq"):
        lm_eval_tasks(model, tiny_tokenizer, ["boolq", "lambada"], include_path=str(paper_dir))
