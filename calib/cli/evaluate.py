"""`calib evaluate`: evaluate any checkpoint (dense, or pruned by `calib prune`) on a suite.

The world suite is the seven world tasks (plus Alpaca-role perplexity and held-out loss); the
paper suite is the paper's seven lm-eval tasks with their shot counts (from lm-eval's task index,
or from a local task folder given with --include-path) and Alpaca perplexity. What a suite holds
and its defaults are `calib.evaluate.Suite`'s; this module maps flags onto it. Prints a table;
--json writes the metrics together with every item's record.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from calib.errors import CalibError

# flag -> the Suite field it sets, so an error names the flag
FLAGS = {"name": "--suite", "tasks": "--tasks", "limit": "--limit", "n_alpaca": "--ppl",
         "n_heldout": "--heldout", "include_path": "--include-path"}


def add_parser(sub) -> None:
    from calib.evaluate import BATCH_SIZE, SCORER, SCORERS, SUITE_NAMES
    from calib.models import DTYPES
    from calib.real import N_HELDOUT as REAL_HELDOUT
    from calib.world.tasks import N_ALPACA, N_HELDOUT
    p = sub.add_parser(
        "evaluate", help="evaluate a model folder on the world or the paper suite",
        description="Evaluate a causal LM (a save_pretrained folder, e.g. written by `calib prune`) on the "
                    "world suite or the paper's lm-eval tasks; print a table and optionally write JSON.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", required=True,
                   help="model folder, or 'world' / 'world-qwen' (the packaged world models) or 'smollm2'")
    p.add_argument("--suite", default="world", help=" | ".join(SUITE_NAMES))
    p.add_argument("--tasks", default=None,
                   help="comma-separated subset of the suite's tasks (default: all of them)")
    p.add_argument("--limit", type=int, default=None, help="items per task (default: all)")
    p.add_argument("--scorer", default=SCORER, help=f"{' | '.join(SCORERS)} (hflm: lm-eval's HFLM; same scores, slower)")
    p.add_argument("--ppl", type=int, default=None,
                   help=f"Alpaca-role texts for perplexity, 0 to skip (default: {N_ALPACA}; the paper suite reads "
                        f"Alpaca from the hub or a local copy, CALIB_SOURCES; the real suite has none)")
    p.add_argument("--heldout", type=int, default=None,
                   help=f"world suite: held-out pretraining documents for the held-out loss, 0 to skip (default: "
                        f"{N_HELDOUT}); real suite: held-out documents per real source (default: {REAL_HELDOUT})")
    p.add_argument("--include-path", default=None,
                   help="paper suite: a local lm-eval task folder holding the tasks (instead of lm-eval's own)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--device", default=None, help="compute device (default: cuda if available, else cpu)")
    p.add_argument("--dtype", default="float32", help=" | ".join(DTYPES))
    p.add_argument("--json", dest="json_out", default=None, type=Path, help="write the results here")
    p.set_defaults(func=handler)


def _model_dir(model: str) -> Path:
    from calib.hub import model_hint
    from calib.models import MODEL_ALIASES, model_path
    path = model_path(model)
    if not (path / "config.json").is_file():
        raise CalibError(f"--model: no model at {path} (config.json missing); valid: "
                         f"{' or '.join(map(repr, MODEL_ALIASES))} (packaged models) or a folder "
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
    if not out["tasks"]:  # a perplexity-only suite (real, ppl): no task table
        lines = []
    if "alpaca_ppl" in out:
        lines.append(f"alpaca perplexity {out['alpaca_ppl']:.3f} (token-weighted {out['alpaca_ppl_corpus']:.3f}, "
                     f"{out['ppl_texts']} texts)")
    for t, r in out.get("real", {}).items():
        lines.append(f"{t} held-out perplexity {r['ppl']:.3f} ({r['documents']} documents)")
    if "real_ppl" in out:
        lines.append(f"average over the real sources {out['real_ppl']:.3f}")
    if "heldout_nll" in out:
        lines.append(f"held-out loss {out['heldout_nll']:.4f} nats/token ({out['heldout_texts']} documents)")
    return "\n".join(lines)


def suite_of(args):
    """The Suite the flags describe (the paper suite has no held-out texts: --heldout is ignored there)."""
    from calib.evaluate import Suite
    tasks = None if not args.tasks else [t.strip() for t in args.tasks.split(",") if t.strip()]
    given = {"n_alpaca": args.ppl, "n_heldout": args.heldout if args.suite != "paper" else 0}
    return Suite.of({"name": args.suite, "tasks": tasks, "limit": args.limit, "include_path": args.include_path,
                     **{k: v for k, v in given.items() if v is not None}}, flags=FLAGS)


def handler(args) -> int:
    from calib.errors import check_choice, integer
    from calib.evaluate import SCORERS
    from calib.io import check_output
    from calib.models import DTYPES
    t0 = time.perf_counter()
    # everything checkable without the model fails before anything is loaded
    suite = suite_of(args)
    check_choice("scorer", args.scorer, SCORERS)
    check_choice("dtype", args.dtype, DTYPES)
    integer("--batch-size", args.batch_size, 1)
    if args.json_out:
        check_output(args.json_out, "--json")
    path = _model_dir(args.model)
    from calib import evaluate as ev
    from calib.models import device, load
    dev = device(args.device)
    suite.preflight(FLAGS)
    model, tok = load(path, dtype=args.dtype)
    model = model.to(dev)
    res = ev.run_suite(model, tok, suite, batch_size=args.batch_size, scorer=args.scorer)
    out: dict = {"model": str(path), "suite": suite.name, "scorer": args.scorer, "limit": suite.limit,
                 "dtype": args.dtype, "device": dev, **res["metrics"],
                 **({"ppl_texts": res["meta"]["alpaca_texts"]} if "alpaca_texts" in res["meta"] else {}),
                 **({"heldout_texts": res["meta"]["heldout_texts"]} if "heldout_texts" in res["meta"] else {}),
                 "tasks": res["tasks"], "items": ev.item_rows(res["records"]),
                 "n_shot": res["meta"].get("n_shot", {}), "lm_eval_version": res["meta"].get("lm_eval"),
                 "task_versions": res["meta"].get("task_versions", {})}
    if suite.name == "real":  # per real source: its held-out perplexity and documents
        out["real"] = {t: {"ppl": res["metrics"][f"{t}/ppl"], "documents": res["meta"]["heldout_texts"][t]}
                       for t in suite.tasks}
    out = {k: v for k, v in out.items() if "/" not in k}  # per-task accuracies are under "tasks"
    out["seconds"] = time.perf_counter() - t0
    report = path / "prune_report.json"
    if report.is_file():
        rep = json.loads(report.read_text())
        out["pruned"] = {k: rep.get(k) for k in ("method", "pattern", "sparsity", "mask_hash")}
    print(_table(out))
    if args.json_out:
        from calib.io import atomic_write
        atomic_write(args.json_out, json.dumps(out, indent=1))
        print(f"wrote {args.json_out}")
    return 0
