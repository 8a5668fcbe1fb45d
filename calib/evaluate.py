"""Evaluation of (pruned) models: perplexity two ways, and downstream tasks via upstream lm-eval.

Perplexity on a held-out text set is reported as
* ``ppl_corpus``: token-weighted, exp(Σ NLL / Σ tokens);
* ``ppl_paper``: the paper's definition, mean over samples of exp(mean token NLL).

Tasks run through ``lm_eval.simple_evaluate`` on the in-memory model (no fork, no temporary
save), scored by ``calib.scorer.FastLM`` (``scorer="fast"``, lm-eval model ``calib-fast``) or by
upstream ``HFLM`` (``scorer="hflm"``); both give the same scores. Built lm-eval task objects are
kept per process, so only the first evaluation in a worker builds them.
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


@lru_cache(maxsize=4096)
def _jinja(template: str):
    from lm_eval import utils
    return utils.env.from_string(template)


def _render(template: str, doc: dict) -> str:
    return _jinja(template).render(**doc)


@contextlib.contextmanager
def _lean_lm_eval():
    """Three lm-eval costs calib does not need, switched off while it runs:
    * the torch environment report added to every result runs pip and nvidia-smi in
      subprocesses (about 0.8 s per call, a quarter of a small world job), and the git hash
      runs git (which prints "fatal: not a git repository" outside one); calib records its
      own versions in each row;
    * every doc_to_text/target/choice compiles its jinja template anew (about 3 s of a
      world evaluation at 500 items per task); the same template is compiled once here, in
      lm-eval's own jinja environment, so the text is the same."""
    from lm_eval import evaluator, utils
    originals = evaluator.add_env_info, evaluator.get_git_commit_hash, utils.apply_template
    evaluator.add_env_info, evaluator.get_git_commit_hash = (lambda results: None), (lambda: None)
    utils.apply_template = _render
    try:
        yield
    finally:
        evaluator.add_env_info, evaluator.get_git_commit_hash, utils.apply_template = originals


SCORERS = {"fast": "calib-fast", "hflm": "hf"}
"""scorer -> lm-eval model name (calib-fast is registered by calib.scorer)."""
SCORER = "fast"  # the default: calib.scorer's exact multiple-choice scorer

_BUILT: dict = {}  # (include_path, task name, num_fewshot) -> built lm-eval Task/Group objects


def _lm(model, tokenizer, scorer: str, batch_size: int):
    from lm_eval.api.registry import get_model

    from calib.errors import check_choice
    check_choice("scorer", scorer, SCORERS)
    if scorer == "fast":
        import calib.scorer  # noqa: F401  (registers calib-fast)
    return get_model(SCORERS[scorer]).create_from_arg_obj(
        {"pretrained": model, "tokenizer": tokenizer, "batch_size": batch_size})


def _built_tasks(names: list[str], include_path: str | None, n_shot: int | None) -> list:
    """lm-eval task objects, built once per process. simple_evaluate re-seeds their few-shot
    samplers and rebuilds their requests on every call; the key includes the shot count because
    simple_evaluate writes it into the task's config."""
    missing = [t for t in names if (include_path, t, n_shot) not in _BUILT]
    if missing:
        loaded = _task_manager(include_path).load(missing)
        for t in missing:
            if t in loaded["groups"]:
                _BUILT[(include_path, t, n_shot)] = [loaded["groups"][t]]
            elif t in loaded["tasks"]:
                _BUILT[(include_path, t, n_shot)] = [loaded["tasks"][t]]
            else:  # a tag: its tasks
                _BUILT[(include_path, t, n_shot)] = list(loaded["tasks"].values())
    return [obj for t in names for obj in _BUILT[(include_path, t, n_shot)]]


def _check_tasks(names, include_path: str | None) -> None:
    from calib.errors import CalibError
    tm = _task_manager(include_path)
    unknown = [t for t in names if t not in tm.all_tasks]
    if unknown:
        import difflib
        where = f"in {include_path}" if include_path else "in lm-eval's task index"
        known = sorted(tm.all_tasks) if include_path else ["any lm-eval task, group or tag"]
        close = sorted({c for t in unknown for c in difflib.get_close_matches(t, list(tm.all_tasks), n=3)})
        raise CalibError(f"unknown task {', '.join(map(repr, unknown))} {where}; valid choices: "
                         f"{', '.join(known)}" + (f" (close: {', '.join(close)})" if close else ""))


def _load_tasks(names: list[str], include_path: str | None, n_shot: int | None) -> list:
    """_built_tasks, with a dataset that cannot be read (no network, not in the HF cache) as one line."""
    from calib.errors import CalibError
    try:
        return _built_tasks(names, include_path, n_shot)
    except OSError as e:  # datasets' ConnectionError / FileNotFoundError, hub HTTP errors
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise CalibError(f"lm-eval task(s) {', '.join(names)}: a dataset cannot be read ({first}); without network, "
                         f"fill the HF datasets cache (HF_HOME) where the hub is reachable, or point the suite at "
                         f"a local task folder (suite.include_path, calib evaluate --include-path)") from None


def _leaves(name: str, subtasks: dict) -> list[str]:
    """The leaf tasks of a group, depth first (lm-eval's ``group_subtasks``); a task is its own leaf."""
    if name not in subtasks:
        return [name]
    return [leaf for sub in subtasks[name] for leaf in _leaves(sub, subtasks)]


def built_requests(include_path: str | None, shots: dict, limit: int | None = None) -> list:
    """The loglikelihood requests lm-eval builds for tasks ``shots`` (name -> num_fewshot; a
    group's name covers its subtasks), few-shot contexts included: what a scorer is fed."""
    loaded = _task_manager(None if include_path is None else str(include_path)).load(list(shots))
    out = []
    for name, task in loaded["tasks"].items():
        n_shot = shots.get(name, shots.get(name.split("_")[0]))
        if n_shot is not None or task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=n_shot or 0)
        task.set_fewshot_seed(1234)
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        out += task.instances
    return out


def lm_eval_tasks(model, tokenizer, tasks: Sequence[str] | dict, include_path: str | None = None,
                  batch_size: int = BATCH_SIZE, limit: int | None = None, seed: int = 1234,
                  progress: bool = False, scorer: str = SCORER) -> dict:
    """Run lm-eval tasks on an in-memory model. ``tasks`` is a list of names, or a dict
    name -> num_fewshot (None keeps the task's own setting). Returns per-task metrics, the
    lm-eval version and each task's version, and ``items``: per task the 0/1 ``acc`` of every
    item in doc_id order (for paired comparisons between models; a group's are its subtasks',
    one after another)."""
    import lm_eval
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.ERROR)
    shots = dict(tasks) if isinstance(tasks, dict) else {t: None for t in tasks}
    include = str(include_path) if include_path else None
    _check_tasks(shots, include)
    lm = _lm(model, tokenizer, scorer, batch_size)
    tm = _task_manager(include)
    results: dict = {"tasks": {}, "items": {}, "lm_eval_version": lm_eval.__version__, "task_versions": {}}
    # group by shot count: simple_evaluate takes one num_fewshot per call
    for n_shot in sorted({v for v in shots.values()}, key=lambda v: -1 if v is None else v):
        names = [t for t, v in shots.items() if v == n_shot]
        # lm-eval's own progress bars ignore TQDM_DISABLE; keep them out of logs and books
        with contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO()), _lean_lm_eval():
            res = lm_eval.simple_evaluate(model=lm, tasks=_load_tasks(names, include, n_shot), task_manager=tm,
                                          num_fewshot=n_shot, limit=limit, random_seed=seed,
                                          numpy_random_seed=seed, torch_random_seed=seed,
                                          fewshot_random_seed=seed, log_samples=True, verbosity="ERROR")
        for t, metrics in res["results"].items():
            clean = {k.split(",")[0]: float(v) for k, v in metrics.items()
                     if isinstance(v, (int, float)) and "," in k}
            results["tasks"][t] = clean
        for t, samples in res.get("samples", {}).items():
            if samples and "acc" in samples[0]:
                results["items"][t] = [int(s["acc"]) for s in sorted(samples, key=lambda s: s["doc_id"])]
        for t in names:  # a group (MMLU): its subtasks' items, in the group's order
            if t not in results["items"]:
                flat = [v for leaf in _leaves(t, res.get("group_subtasks", {})) for v in results["items"].get(leaf, [])]
                if flat:
                    results["items"][t] = flat
        results["task_versions"].update({k: v for k, v in res.get("versions", {}).items()})
        results["n_shot"] = {**results.get("n_shot", {}), **{k: v for k, v in res.get("n-shot", {}).items()}}
    return results


def world_suite(model, tokenizer, batch_size: int = BATCH_SIZE, limit: int | None = None,
                n_alpaca: int = 1000, scorer: str = SCORER) -> dict:
    """The world's counterpart of the paper's evaluation: Alpaca-role perplexity and the
    seven world tasks. ``avg`` is the mean accuracy over tasks, as the paper's Avg;
    ``items`` the per-item correctness of each task."""
    from calib.world.tasks import TASKS, alpaca_texts, task_dir

    ppl = perplexity(model, tokenizer, alpaca_texts(n_alpaca), batch_size=batch_size)
    res = lm_eval_tasks(model, tokenizer, TASKS, include_path=str(task_dir()), batch_size=batch_size,
                        limit=limit, scorer=scorer)
    acc = {t: res["tasks"][t]["acc"] for t in TASKS}
    return {"alpaca_ppl": ppl["ppl_paper"], "alpaca_ppl_corpus": ppl["ppl_corpus"], "acc": acc,
            "avg": float(np.mean(list(acc.values()))), "lm_eval_version": res["lm_eval_version"],
            "task_versions": res["task_versions"], "tasks": res["tasks"], "items": res["items"]}
