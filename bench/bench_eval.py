"""Scoring speed: lm-eval's HFLM against calib's fast scorer (lm-eval model calib-fast), one thread.

Workloads, both on the committed world model:
  (a) the world suite, 500 items per task (--limit);
  (b) an MMLU-5-shot-shaped stand-in (tests/paper_tasks.py): --subjects subjects x --mmlu-items
      items, each subject's few-shot block (description + 5 first_n dev shots) about 500 tokens
      and each question about 70, the shape of real MMLU 5-shot prompts. Those prompts pass the
      world model's 512 positions, so for (b) its context limit is raised to 1024 for both
      scorers (RoPE extends; the accuracies there measure nothing, the speed and the equality do).

For each workload lm-eval builds the requests once; then the scorers run alternately (HFLM, fast,
HFLM, fast, ... --reps rounds) on the same tokenised requests, and the ratio of the median
times is reported together with every round's ratio. Each round also runs the fast scorer with
levers switched off (no prefix sharing; LM head at every position; both). End to end, `calib.evaluate.lm_eval_tasks`
(request building, scoring, metrics) runs with each scorer, alternated, for items/s and the
per-item correctness of both (which must be identical). Last, the saving of keeping built lm-eval
task objects per process: a toy-profile world evaluation (20 items per task) with cold and with
kept task objects.

    OMP_NUM_THREADS=1 python bench/bench_eval.py
    OMP_NUM_THREADS=1 python bench/bench_eval.py --limit 100 --mmlu-items 40 --reps 1   # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the paper-shaped task writer
TARGETS = {"world": 2.0, "mmlu": 3.0}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=500, help="items per world task")
    p.add_argument("--subjects", type=int, default=5, help="subjects of the MMLU-shaped stand-in")
    p.add_argument("--mmlu-items", type=int, default=100, help="items per subject")
    p.add_argument("--mmlu-facts", type=int, default=3, help="background sentences per question")
    p.add_argument("--mmlu-shot-facts", type=int, default=4, help="background sentences per dev shot")
    p.add_argument("--reps", type=int, default=3, help="timed runs of each scorer, alternated")
    p.add_argument("--batch-size", type=int, default=32, help="HFLM's batch size (calib's default)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "eval")
    return p.parse_args(argv)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: %.2f, %.2f, %.2f" % os.getloadavg()


def encoded(lm, instances):
    """The (key, context_enc, continuation_enc) requests lm-eval's own loglikelihood() builds."""
    captured = []
    lm._loglikelihood_tokens = lambda reqs, disable_tqdm=False, override_bs=None: \
        captured.extend(reqs) or [(0.0, False)] * len(reqs)
    try:
        lm.loglikelihood(instances, disable_tqdm=True)
    finally:
        del lm._loglikelihood_tokens
    return captured


def prompt_shape(reqs) -> dict:
    """Tokens of each subject's shared few-shot block, and of each item's own question."""
    groups: dict = {}
    for (ctx, _), ctx_enc, _ in reqs:
        groups.setdefault(ctx.split("\n", 1)[0], []).append(ctx_enc)

    def common(a, b):
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    prefix = {g: min(common(v[0], x) for x in v[1:]) for g, v in groups.items()}
    question = [len(x) - prefix[g] for g, v in groups.items() for x in v[::4]]
    return {"subjects": len(groups), "prefix_tokens": sorted(prefix.values()),
            "question_tokens_median": statistics.median(question),
            "question_tokens_range": [min(question), max(question)]}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def workload(name, model, tok, include, shots, limit, args) -> dict:
    from lm_eval.models.huggingface import HFLM

    from calib.evaluate import lm_eval_tasks
    from calib.scorer import FastLM

    class CountingHFLM(HFLM):  # counts the tokens HFLM feeds (padding included)
        fed = 0

        def _model_call(self, inps, attn_mask=None, labels=None):
            CountingHFLM.fed += inps.numel()
            return super()._model_call(inps, attn_mask, labels)

    hf = CountingHFLM(pretrained=model, tokenizer=tok, batch_size=args.batch_size)
    fast = FastLM(pretrained=model, tokenizer=tok)
    from calib.evaluate import Suite, suite_requests
    world = all(v is None for v in shots.values())
    suite = Suite.of({"name": "world", "limit": limit} if world else
                     {"name": "paper", "tasks": list(shots), "shots": shots, "limit": limit, "include_path": include})
    reqs = encoded(hf, [i for _, group in suite_requests(suite) for i in group])
    shape = prompt_shape(reqs) if name == "mmlu" else None
    print(f"[{name}] {len(reqs)} requests; {shape or ''} {uptime()}", flush=True)
    variants = {"no prefix sharing": {"share": False}, "LM head at every position": {"head": "all"},
                "neither": {"share": False, "head": "all"}}
    lever_lms = {k: FastLM(pretrained=model, tokenizer=tok, **kw) for k, kw in variants.items()}
    times: dict = {"hflm": [], "fast": [], **{k: [] for k in variants}}
    lever_diff = {}
    for rep in range(args.reps):  # every variant once per round, so load drifts hit all alike
        CountingHFLM.fed = 0
        t, ref = timed(lambda: hf._loglikelihood_tokens(reqs, disable_tqdm=True))
        times["hflm"].append(t)
        t, got = timed(lambda: fast._loglikelihood_tokens(reqs, disable_tqdm=True))
        times["fast"].append(t)
        for k, lm in lever_lms.items():
            t, out = timed(lambda: lm._loglikelihood_tokens(reqs, disable_tqdm=True))
            times[k].append(t)
            lever_diff[k] = max(abs(a[0] - b[0]) for a, b in zip(out, ref))
        print(f"[{name}] round {rep}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    hflm_fed, stats = CountingHFLM.fed, dict(fast.stats)
    diff = max(abs(a[0] - b[0]) for a, b in zip(got, ref))
    greedy_mismatch = sum(a[1] != b[1] for a, b in zip(got, ref))
    levers = {k: {"seconds": statistics.median(times[k]), "tokens_fed": lm.stats["tokens_fed"],
                  "head_positions": lm.stats["head_positions"], "max_abs_diff": lever_diff[k]}
              for k, lm in lever_lms.items()}
    # end to end: lm-eval builds requests, scores, computes metrics (built tasks kept: warm them)
    lm_eval_tasks(model, tok, shots, include_path=include, limit=2)
    e2e = {"hflm": [], "fast": []}
    items = {}
    for rep in range(args.reps):
        for scorer in ("hflm", "fast"):
            t, res = timed(lambda: lm_eval_tasks(model, tok, shots, include_path=include, limit=limit,
                                                 batch_size=args.batch_size, scorer=scorer))
            e2e[scorer].append(t)
            items[scorer] = res
        print(f"[{name}] end to end rep {rep}: hflm {e2e['hflm'][-1]:.2f} s, fast {e2e['fast'][-1]:.2f} s",
              flush=True)
    n_items = sum(len(items["fast"]["records"][t]["acc"]) for t in shots)
    med = {k: statistics.median(v) for k, v in times.items()}
    times = {k: times[k] for k in ("hflm", "fast")}
    med_e2e = {k: statistics.median(v) for k, v in e2e.items()}
    return {
        "requests": len(reqs), "items": n_items, "prompt_shape": shape,
        "scoring_seconds": times, "scoring_ratio": med["hflm"] / med["fast"],
        "scoring_ratio_per_pair": [h / f for h, f in zip(times["hflm"], times["fast"])],
        "end_to_end_seconds": e2e, "end_to_end_ratio": med_e2e["hflm"] / med_e2e["fast"],
        "items_per_s": {k: n_items / v for k, v in med_e2e.items()},
        "hflm_tokens_fed_padded": hflm_fed, "hflm_head_positions": hflm_fed,
        "fast": stats, "levers": levers,
        "max_abs_loglik_diff": diff, "is_greedy_mismatches": greedy_mismatch,
        "accuracy": {k: v["tasks"] for k, v in items.items()},
        "identical_item_correctness": all(items["fast"]["records"][t]["acc"] == items["hflm"]["records"][t]["acc"]
                                          for t in items["fast"]["records"]),
        "identical_accuracies": items["fast"]["tasks"] == items["hflm"]["tasks"],
        "uptime_after": uptime(),
    }


def task_build_saving(model, tok, reps: int = 3) -> dict:
    """A toy-profile world evaluation (20 items per task) with the task objects built anew
    and with them kept, alternated; and the build alone."""
    from calib import evaluate as ev
    from calib.world.tasks import TASKS, task_dir
    include = str(task_dir())
    cold, kept, build = [], [], []
    for _ in range(reps):
        ev._BUILT.clear()
        cold.append(timed(lambda: ev.lm_eval_tasks(model, tok, TASKS, include_path=include, limit=20))[0])
        kept.append(timed(lambda: ev.lm_eval_tasks(model, tok, TASKS, include_path=include, limit=20))[0])
        ev._BUILT.clear()
        build.append(timed(lambda: ev._built_tasks(TASKS, include, None))[0])
    return {"world_eval_20_items_cold_s": statistics.median(cold),
            "world_eval_20_items_kept_s": statistics.median(kept), "task_build_s": statistics.median(build)}


def markdown(r: dict) -> str:
    lines = ["# Fast multiple-choice scoring against lm-eval's HFLM", "",
             f"Command: `{r['command']}`  ", f"Machine: {r['machine']}; before: `{r['uptime_before']}`; "
             f"after: `{r['uptime_after']}`. The machine is shared: re-measure on a quiet one.", ""]
    for key, title in (("world", "(a) world suite"), ("mmlu", "(b) MMLU-5-shot-shaped stand-in")):
        w = r[key]
        f = w["fast"]
        lines += [f"## {title}: {w['items']} items, {w['requests']} requests", ""]
        if w["prompt_shape"]:
            sh = w["prompt_shape"]
            lines += [f"{sh['subjects']} subjects; shared few-shot block per subject: {sh['prefix_tokens']} tokens; "
                      f"question: median {sh['question_tokens_median']} tokens (range {sh['question_tokens_range']}).", ""]
        lines += [
                  "| | HFLM | fast | ratio |", "|---|---|---|---|",
                  f"| scoring s (median of {len(w['scoring_seconds']['hflm'])}, alternated) | "
                  f"{statistics.median(w['scoring_seconds']['hflm']):.2f} | "
                  f"{statistics.median(w['scoring_seconds']['fast']):.2f} | **{w['scoring_ratio']:.2f}x** "
                  f"(pairs: {', '.join(f'{x:.2f}' for x in w['scoring_ratio_per_pair'])}; target >= "
                  f"{TARGETS[key]:.0f}x) |",
                  f"| end to end s (lm_eval_tasks) | {statistics.median(w['end_to_end_seconds']['hflm']):.2f} | "
                  f"{statistics.median(w['end_to_end_seconds']['fast']):.2f} | {w['end_to_end_ratio']:.2f}x |",
                  f"| items/s end to end | {w['items_per_s']['hflm']:.1f} | {w['items_per_s']['fast']:.1f} | |",
                  f"| tokens fed to the model | {w['hflm_tokens_fed_padded']:,} (padded) | {f['tokens_fed']:,} "
                  f"({f['padded_tokens']:,} with padding; {f['past_tokens']:,} kept past tokens read) | |",
                  f"| positions through LM head + log-softmax | {w['hflm_head_positions']:,} | "
                  f"{f['head_positions']:,} | |", "",
                  f"Requests' input tokens: {f['input_tokens']:,}; distinct inputs: {f['unique_inputs']:,} "
                  f"({f['unique_input_tokens']:,} tokens); prefix tree: {f['tree_tokens']:,} tokens; "
                  f"{f['passes']} forward passes. Largest per-request |loglik difference|: "
                  f"{w['max_abs_loglik_diff']:.2e} nats; is_greedy mismatches: {w['is_greedy_mismatches']}; "
                  f"per-item correctness identical: {w['identical_item_correctness']}; accuracies identical: "
                  f"{w['identical_accuracies']}.", "",
                  "Each lever switched off (fast scorer, scoring seconds, median over the same rounds):", "",
                  "| variant | s | tokens fed | LM-head positions | max diff vs HFLM |", "|---|---|---|---|---|",
                  f"| fast (all levers) | {statistics.median(w['scoring_seconds']['fast']):.2f} | "
                  f"{f['tokens_fed']:,} | {f['head_positions']:,} | {w['max_abs_loglik_diff']:.1e} |"]
        lines += [f"| {k} | {v['seconds']:.2f} | {v['tokens_fed']:,} | {v['head_positions']:,} | "
                  f"{v['max_abs_diff']:.1e} |" for k, v in w["levers"].items()]
        lines += [""]
    b = r["task_build"]
    lines += ["## Built lm-eval tasks kept per process", "",
              f"A toy-profile world evaluation (7 tasks x 20 items, fast scorer; medians of 3, alternated): "
              f"{b['world_eval_20_items_cold_s']:.2f} s "
              f"when it builds the task objects, {b['world_eval_20_items_kept_s']:.2f} s when they are kept "
              f"(building them: {b['task_build_s']:.2f} s).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse(argv)
    import torch
    torch.set_num_threads(1)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging
    for name in ("lm-eval", "lm_eval", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from paper_tasks import write_paper_tasks

    from calib.models import load
    from calib.world.tasks import TASKS, task_dir
    result = {"command": "OMP_NUM_THREADS=1 python bench/bench_eval.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores shared, torch threads 1",
              "uptime_before": uptime(), "torch": torch.__version__}
    model, tok = load()
    result["world"] = workload("world", model, tok, str(task_dir()), {t: None for t in TASKS}, args.limit, args)
    subjects = [f"subject_{i}" for i in range(args.subjects)]
    with tempfile.TemporaryDirectory() as d:
        inc = write_paper_tasks(d, n=args.mmlu_items, tasks=["mmlu"], subjects=subjects,
                                mmlu_facts=args.mmlu_facts, mmlu_shot_facts=args.mmlu_shot_facts)
        long_model, long_tok = load()
        long_model.config.max_position_embeddings = 1024  # HFLM and FastLM read max_length from here
        result["mmlu"] = workload("mmlu", long_model, long_tok, str(inc), {"mmlu": 5}, None, args)
    result["task_build"] = task_build_saving(model, tok)
    result["uptime_after"] = uptime()
    result["pass"] = all(result[k]["scoring_ratio"] >= TARGETS[k] and result[k]["identical_item_correctness"]
                         and result[k]["max_abs_loglik_diff"] <= 1e-4 and not result[k]["is_greedy_mismatches"]
                         for k in TARGETS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
