"""`calib evaluate`: evaluate any checkpoint (dense, or pruned by `calib prune`) on a suite.

The world suite is the seven world tasks (plus Alpaca-role perplexity); the paper suite is the
paper's seven lm-eval tasks with their shot counts (from lm-eval's task index, or from a local
task folder given with --include-path). Prints a table; --json writes the metrics together with
every item's correctness.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from calib.errors import CalibError, check_choice

SUITES = ("world", "paper")
DTYPES = ("float32", "bfloat16", "float16")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate a model folder on the world or the paper suite",
        description="Evaluate a causal LM (a save_pretrained folder, e.g. written by `calib prune`) on the "
                    "world suite or the paper's lm-eval tasks; print a table and optionally write JSON.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", required=True,
                   help="model folder, or 'world' / 'world-qwen' (the packaged world models)")
    p.add_argument("--suite", default="world", help="world | paper")
    p.add_argument("--tasks", default=None,
                   help="comma-separated subset of the suite's tasks (default: all of them)")
    p.add_argument("--limit", type=int, default=None, help="items per task (default: all)")
    p.add_argument("--scorer", default="fast", help="fast | hflm (lm-eval's HFLM; same scores, slower)")
    p.add_argument("--ppl", type=int, default=None,
                   help="Alpaca-role texts for perplexity, 0 to skip (default: 1000 for world, 0 for paper)")
    p.add_argument("--include-path", default=None,
                   help="paper suite: a local lm-eval task folder holding the tasks (instead of lm-eval's own)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None, help="compute device (default: cuda if available, else cpu)")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    p.add_argument("--json", dest="json_out", default=None, type=Path, help="write the results here")
    p.set_defaults(func=handler)


def _suite_tasks(suite: str, include_path: str | None) -> tuple[dict, str | None]:
    """task -> num_fewshot (None: the task's own), and the lm-eval include path."""
    if suite == "world":
        from calib.world.tasks import TASKS, task_dir
        if include_path:
            raise CalibError("--include-path applies to --suite paper only")
        return {t: None for t in TASKS}, str(task_dir())
    from calib.evaluate import PAPER_TASKS
    if include_path and not Path(include_path).is_dir():
        raise CalibError(f"--include-path {include_path} is not a folder")
    return dict(PAPER_TASKS), str(Path(include_path).resolve()) if include_path else None


def _select(shots: dict, tasks: str | None) -> dict:
    if not tasks:
        return shots
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    for t in names:
        check_choice("task", t, shots)
    return {t: shots[t] for t in names}


def _model_dir(model: str) -> Path:
    from calib.hub import model_hint
    from calib.models import MODEL_ALIASES, model_path
    path = model_path(model)
    if not (path / "config.json").is_file():
        raise CalibError(f"--model: no model at {path} (config.json missing); valid: "
                         f"{' or '.join(map(repr, MODEL_ALIASES))} (the packaged world models) or a folder "
                         f"written by save_pretrained, e.g. by `calib prune --out`{model_hint(model)}")
    return path


def _table(out: dict) -> str:
    rows = [("task", "n-shot", "items", "acc", "acc_norm")]
    for t, m in out["tasks"].items():
        n = len(out["items"].get(t, [])) or ""
        rows.append((t, str(out["n_shot"].get(t, "")), str(n), f"{m.get('acc', float('nan')):.4f}",
                     f"{m['acc_norm']:.4f}" if "acc_norm" in m else ""))
    if "avg" in out:
        rows.append(("avg", "", "", f"{out['avg']:.4f}", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    if "alpaca_ppl" in out:
        lines.append(f"alpaca perplexity {out['alpaca_ppl']:.3f} (token-weighted {out['alpaca_ppl_corpus']:.3f}, "
                     f"{out['ppl_texts']} texts)")
    return "\n".join(lines)


def handler(args) -> int:
    from calib.evaluate import SCORERS
    t0 = time.perf_counter()
    # everything checkable without the model fails before anything is loaded
    check_choice("suite", args.suite, SUITES)
    check_choice("scorer", args.scorer, SCORERS)
    check_choice("dtype", args.dtype, DTYPES)
    if args.limit is not None and args.limit < 1:
        raise CalibError(f"--limit {args.limit} must be >= 1")
    if args.batch_size < 1:
        raise CalibError(f"--batch-size {args.batch_size} must be >= 1")
    n_ppl = (1000 if args.suite == "world" else 0) if args.ppl is None else args.ppl
    if n_ppl < 0:
        raise CalibError(f"--ppl {args.ppl} must be >= 0")
    path = _model_dir(args.model)
    shots, include = _suite_tasks(args.suite, args.include_path)
    shots = _select(shots, args.tasks)

    import torch

    from calib import evaluate as ev
    from calib.models import load
    model, tok = load(path, dtype=args.dtype)
    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(dev)
    out: dict = {"model": str(path), "suite": args.suite, "scorer": args.scorer, "limit": args.limit,
                 "dtype": args.dtype, "device": dev}
    if n_ppl:
        if args.suite == "world":
            from calib.world.tasks import alpaca_texts
            texts = alpaca_texts(n_ppl)
        else:
            from calib import data
            texts = data.load_texts("alpaca", pool=n_ppl)
        ppl = ev.perplexity(model, tok, texts, batch_size=args.batch_size)
        out.update(alpaca_ppl=ppl["ppl_paper"], alpaca_ppl_corpus=ppl["ppl_corpus"], ppl_texts=ppl["n_texts"])
    try:
        res = ev.lm_eval_tasks(model, tok, shots, include_path=include, batch_size=args.batch_size,
                               limit=args.limit, scorer=args.scorer)
    except ConnectionError as e:  # lm-eval's own tasks fetch their datasets from the hub
        raise CalibError(f"could not load the tasks' datasets ({e}); offline, pass --include-path with "
                         f"a local task folder") from e
    accs = [res["tasks"][t]["acc"] for t in shots if "acc" in res["tasks"].get(t, {})]
    out.update(tasks=res["tasks"], items=res["items"], n_shot=res.get("n_shot", {}),
               lm_eval_version=res["lm_eval_version"], task_versions=res["task_versions"])
    if accs:
        out["avg"] = sum(accs) / len(accs)
    out["seconds"] = time.perf_counter() - t0
    report = path / "prune_report.json"
    if report.is_file():
        rep = json.loads(report.read_text())
        out["pruned"] = {k: rep.get(k) for k in ("method", "pattern", "sparsity", "mask_hash")}
    print(_table(out))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json_out}")
    return 0
