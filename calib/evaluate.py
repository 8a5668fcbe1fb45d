"""Evaluation of (pruned) models: perplexity two ways, and downstream tasks via upstream lm-eval.

Perplexity on a held-out text set is reported as
* ``ppl_corpus``: token-weighted, exp(Σ NLL / Σ tokens);
* ``ppl_paper``: the paper's definition, mean over samples of exp(mean token NLL).

Tasks run through ``lm_eval.simple_evaluate`` with ``HFLM(pretrained=model)`` wrapping
the in-memory model: no fork, no temporary save.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
from functools import lru_cache
from typing import Sequence

import numpy as np

PAPER_TASKS = {"boolq": 0, "winogrande": 0, "piqa": 0, "hellaswag": 0, "arc_easy": 0, "arc_challenge": 0,
               "mmlu": 5}
"""The paper's tasks with their shot counts. The paper's released code ran MMLU
0-shot; the paper says 5-shot. The count is explicit so either can be chosen."""
BATCH_SIZE = 32  # sequences per forward pass when evaluating (memory, not results)


def token_nll(model, tokenizer, texts: Sequence[str], max_length: int | None = None,
              batch_size: int = 16, progress: bool = False) -> list[np.ndarray]:
    """Per-token negative log-likelihoods of each text (BOS as context, not scored).
    Batching and padding are the filters' scorer, so both measure the same thing."""
    from calib.filters import nll_per_token, token_logits

    if not texts:
        from calib.errors import CalibError
        raise CalibError("cannot compute perplexity of an empty text set")
    return [nll_per_token(ids, logits).double().numpy()
            for ids, logits in token_logits(model, tokenizer, list(texts), batch_size, max_length,
                                            desc="perplexity", progress=progress)]


def perplexity(model, tokenizer, texts: Sequence[str], max_length: int | None = None,
               batch_size: int = 16, progress: bool = False) -> dict:
    nlls = [n for n in token_nll(model, tokenizer, texts, max_length, batch_size, progress) if len(n)]
    total = sum(float(n.sum()) for n in nlls)
    count = sum(len(n) for n in nlls)
    per_sample = [math.exp(float(n.mean())) for n in nlls]
    return {"ppl_corpus": math.exp(total / count), "ppl_paper": float(np.mean(per_sample)),
            "nll_per_token": total / count, "n_texts": len(nlls), "n_tokens": count}


@lru_cache(maxsize=4)
def _task_manager(include_path: str | None):
    # Indexing lm-eval's ~14k bundled task YAMLs takes tens of seconds; a local task
    # folder (the world's) is self-contained, so skip them then, and index once per process.
    from lm_eval.tasks import TaskManager
    return TaskManager(include_path=include_path, include_defaults=include_path is None)


@contextlib.contextmanager
def _no_env_info():
    """lm-eval adds torch's environment report to every result, which runs pip and
    nvidia-smi in subprocesses (about 0.8 s per call, a quarter of a small world job),
    and the git hash of the working directory, whose `git describe` prints "fatal: not a
    git repository" outside a checkout. calib records its own versions in each row, so
    skip both."""
    from lm_eval import evaluator
    original = evaluator.add_env_info, getattr(evaluator, "get_git_commit_hash", None)
    evaluator.add_env_info = lambda results: None
    evaluator.get_git_commit_hash = lambda: None
    try:
        yield
    finally:
        evaluator.add_env_info = original[0]
        if original[1] is not None:
            evaluator.get_git_commit_hash = original[1]


def lm_eval_tasks(model, tokenizer, tasks: Sequence[str] | dict, include_path: str | None = None,
                  batch_size: int = BATCH_SIZE, limit: int | None = None, seed: int = 1234,
                  progress: bool = False) -> dict:
    """Run lm-eval tasks on an in-memory model. ``tasks`` is a list of names, or a dict
    name -> num_fewshot (None keeps the task's own setting). Returns per-task metrics
    plus the lm-eval version and each task's version."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.ERROR)
    shots = dict(tasks) if isinstance(tasks, dict) else {t: None for t in tasks}
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    tm = _task_manager(str(include_path) if include_path else None)
    results: dict = {"tasks": {}, "lm_eval_version": lm_eval.__version__, "task_versions": {}}
    # group by shot count: simple_evaluate takes one num_fewshot per call
    for n_shot in sorted({v for v in shots.values()}, key=lambda v: -1 if v is None else v):
        names = [t for t, v in shots.items() if v == n_shot]
        # lm-eval's own progress bars ignore TQDM_DISABLE; keep them out of logs and books
        with contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO()), _no_env_info():
            res = lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=tm, num_fewshot=n_shot,
                                          limit=limit, random_seed=seed, numpy_random_seed=seed,
                                          torch_random_seed=seed, fewshot_random_seed=seed,
                                          log_samples=False, verbosity="ERROR")
        for t, metrics in res["results"].items():
            clean = {k.split(",")[0]: float(v) for k, v in metrics.items()
                     if isinstance(v, (int, float)) and "," in k}
            results["tasks"][t] = clean
        results["task_versions"].update({k: v for k, v in res.get("versions", {}).items()})
        results["n_shot"] = {**results.get("n_shot", {}), **{k: v for k, v in res.get("n-shot", {}).items()}}
    return results


def world_suite(model, tokenizer, batch_size: int = BATCH_SIZE, limit: int | None = None,
                n_alpaca: int = 1000) -> dict:
    """The world's counterpart of the paper's evaluation: Alpaca-role perplexity and the
    seven world tasks. ``avg`` is the mean accuracy over tasks, as the paper's Avg."""
    from calib.world.tasks import TASKS, alpaca_texts, task_dir

    ppl = perplexity(model, tokenizer, alpaca_texts(n_alpaca), batch_size=batch_size)
    res = lm_eval_tasks(model, tokenizer, TASKS, include_path=str(task_dir()), batch_size=batch_size,
                        limit=limit)
    acc = {t: res["tasks"][t]["acc"] for t in TASKS}
    return {"alpaca_ppl": ppl["ppl_paper"], "alpaca_ppl_corpus": ppl["ppl_corpus"], "acc": acc,
            "avg": float(np.mean(list(acc.values()))), "lm_eval_version": res["lm_eval_version"],
            "task_versions": res["task_versions"], "tasks": res["tasks"]}
