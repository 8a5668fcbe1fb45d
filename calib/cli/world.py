"""`calib world ...`: build, inspect and export the embedded world."""
from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("world", help="the embedded world: sources, model, tasks, realism report",
                       description="The embedded default: a small world whose pretraining data is fully known, "
                                   "and a LLaMA-architecture model trained on it.")
    wsub = p.add_subparsers(dest="world_command", metavar="ACTION")
    wsub.required = True

    b = wsub.add_parser("build", help="train the world model (or reuse the committed one) and write the realism report")
    b.add_argument("--arch", default="llama",
                   help="llama (the world model, calib/world/model) | qwen2 (the Qwen-style second model, "
                        "calib/world/model_qwen, trained by QWEN_RECIPE)")
    b.add_argument("--model", type=Path, default=None, help="model folder (unset: the packaged folder of --arch)")
    b.add_argument("--retrain", action="store_true", help="train from the recipe even if a model exists")
    b.add_argument("--steps", type=int, default=None, help="truncate training to this many steps (testing)")
    b.add_argument("--device", default=None,
                   help="where to train (unset: cuda if available, else cpu) (the committed weights were trained on one H100 in ~6 min; "
                        "roughly 10 hours on one CPU thread)")
    b.add_argument("--report", type=Path, default=None,
                   help="where to write the JSON report (unset: calib/world/report.json)")
    b.add_argument("--no-report", action="store_true", help="skip the realism report")
    b.add_argument("--no-prune", action="store_true", help="skip the pruning measurements (R2, R3) of the report")
    b.set_defaults(func=_build)

    s = wsub.add_parser("sources", help="list the world's sources and their roles")
    s.set_defaults(func=_sources)

    sh = wsub.add_parser("show", help="print documents of a source")
    sh.add_argument("source", help="e.g. world/pretrain")
    sh.add_argument("-n", type=int, default=3, help="documents to print")
    sh.add_argument("--seed", type=int, default=0, help="which documents (a sampling seed)")
    sh.add_argument("--split", default="calib", help="train | calib | eval")
    sh.set_defaults(func=_show)

    t = wsub.add_parser("tasks", help="write the world's lm-eval tasks (YAML + jsonl) to a folder")
    t.add_argument("--out", type=Path, required=True, help="folder to write the tasks into")
    t.set_defaults(func=_tasks)


def _build(args) -> int:
    from calib.errors import CalibError, check_choice, integer
    from calib.io import atomic_write, check_output
    from calib.models import device, load
    from calib.world import model as wm
    check_choice("architecture", args.arch, wm.ARCHS)
    args.device = device(args.device)  # every sub-command checks --device, whether it trains or not
    integer("--steps", args.steps, 1, none=True)
    recipe = wm.RECIPE if args.arch == "llama" else wm.QWEN_RECIPE
    target = args.model or (wm.MODEL_DIR if args.arch == "llama" else wm.QWEN_DIR)
    exists = (target / "config.json").is_file()
    if not args.no_report:
        from calib.realism import REPORT_PATH
        check_output(args.report or REPORT_PATH, "--report")
    if args.retrain or not exists:
        from calib.io import atomic_folder
        check_output(target, "--model", folder=True)
        print(f"training the {args.arch} world model from its recipe into {target} ...")
        with atomic_folder(target) as tmp:  # nothing half-written at the target
            wm.train(recipe, out_dir=tmp, steps=args.steps, device=args.device)
    else:
        print(f"reusing the world model at {target} (use --retrain to train it again)")
    load(target)  # fail early, with a hint, if the folder is corrupt
    if args.no_report:
        return 0
    from calib.realism import REPORT_PATH, build_report, markdown
    try:
        rep = build_report(target, with_pruning=not args.no_prune)
    except ImportError as e:
        raise CalibError(f"the report needs a module that is missing: {e}") from e
    out = args.report or REPORT_PATH
    atomic_write(out, json.dumps(rep, indent=1))
    print(markdown(rep))
    print(f"report written to {out}")
    return 0


def _sources(args) -> int:
    from calib.sources import PAPER_CORPORA
    from calib.world.sources import SOURCES
    for s in SOURCES.values():
        mix = ", ".join(f"{d} {w:.1%}" for d, w in s.mixture)
        print(f"{s.name:22s} {PAPER_CORPORA[s.role]:11s} {s.sampling:9s} {s.description}\n{'':22s} {mix}")
    return 0


def _show(args) -> int:
    from calib.world.sources import documents
    for i, d in enumerate(documents(args.source, args.n, seed=args.seed, split=args.split)):
        print(f"--- {args.source} [{args.split}] #{i}\n{d}")
    return 0


def _tasks(args) -> int:
    from calib.world.tasks import write_task_dir
    path = write_task_dir(args.out)
    print(f"lm-eval tasks written to {path}; run them with: lm_eval --include_path {path} --tasks world ...")
    return 0
