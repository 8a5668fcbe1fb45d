"""`calib run | results`: sweeps of jobs into a results store, and the store read back."""
from __future__ import annotations

import sys
from pathlib import Path

from calib.errors import CalibError, check_choice


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a grid of experiments (prune + evaluate) into a results store",
                       description="Expand a YAML grid into jobs and run those not yet finished in the store. "
                                   "Safe to kill and re-run: finished rows are kept and skipped.")
    p.add_argument("grid", type=Path, help="grid file (YAML); see docs/experiments.md")
    p.add_argument("--store", type=Path, default=Path("runs.db"), help="SQLite results store (default runs.db)")
    p.add_argument("--executor", default="local",
                   help="local (in sequence, the default) | ray")
    p.add_argument("--retries", type=int, default=1, help="extra attempts for a failing job (default 1)")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--ray-num-cpus", type=int, default=None, help="CPUs of a local Ray started by this command")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and what is done; run nothing")
    p.add_argument("--plan", action="store_true",
                   help="print the distinct work after deduplication and its forward tokens (and hours); run nothing")
    p.add_argument("--token-cost", default=None,
                   help="with --plan: seconds per forward token (one number, or prune=S,generate=S,evaluate=S,"
                        "per_job=S; default: the world model's CPU cost, for world models only)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_cmd)

    r = sub.add_parser("results", help="export the results store: mean ± std over seeds, or raw rows",
                       description="Export a results store as a table (stdout) or CSV.")
    r.add_argument("--store", type=Path, default=Path("runs.db"))
    r.add_argument("--csv", type=Path, default=None, help="write CSV here instead of printing")
    r.add_argument("--raw", action="store_true", help="one line per row, no aggregation")
    r.add_argument("--over", default="calibration.seed",
                   help="comma-separated parameters to average over (default calibration.seed)")
    r.add_argument("--status", default="done", help="done | failed | all (default done)")
    r.add_argument("--metrics", default=None, help="comma-separated metrics to keep (default all)")
    r.set_defaults(func=_results_cmd)


def _run_cmd(args) -> int:
    from calib.experiments import Store, expand_grid, sweep
    check_choice("executor", args.executor, sweep.EXECUTORS)
    if args.retries < 0:
        raise CalibError(f"--retries must be >= 0, got {args.retries}")
    if args.ray_num_cpus is not None and args.ray_num_cpus < 1:
        raise CalibError(f"--ray-num-cpus must be >= 1, got {args.ray_num_cpus}")
    if args.plan:
        return _plan(args)
    from calib.io import check_output
    check_output(args.store, "--store")  # what the run would write, under --dry-run too
    jobs = expand_grid(args.grid)
    if args.dry_run:  # reads the store if there is one; creates nothing
        status = {}
        if args.store.exists():
            with Store(args.store, create=False) as store:
                status = store.status()
        for j in jobs:
            c = j.calibration
            print(j.key, status.get(j.key, "todo"), j.method, j.pattern, f"{j.sparsity:g}", c["source"],
                  f"n={c['nsamples']}", f"seed={c['seed']}", "synthetic" if j.synthetic else "", sep="\t")
        return 0
    with Store(args.store) as store:
        summary = sweep.run_sweep(jobs, store, executor=args.executor, retries=args.retries,
                                  progress=not args.no_progress, ray_address=args.ray_address,
                                  ray_num_cpus=args.ray_num_cpus)
    for f in summary["failures"]:
        print(f"failed {f['key'][:12]} ({f['job']}): {f['reason']}", file=sys.stderr)
    extra = "".join([f", {summary['elsewhere']} done or running in another sweep" if summary["elsewhere"] else "",
                     f", {summary['lost']} computed but already written by another sweep" if summary["lost"] else ""])
    print(f"{summary['total']} jobs: {summary['skipped']} already done, {summary['done']} done, "
          f"{summary['failed']} failed{extra}; store {args.store}", file=sys.stderr)
    return 1 if summary["failed"] else 0


def _plan(args) -> int:
    from calib.experiments import expand_grid
    from calib.experiments import plan as P
    from calib.models import WORLD_MODELS
    cost = P.parse_cost(args.token_cost)
    try:
        jobs = expand_grid(args.grid)
    except CalibError as e:
        if "config.json missing" in str(e):  # the weights may live elsewhere: the config is enough to plan
            raise CalibError(f"{e} (--plan needs only the model's config.json in that folder)") from None
        raise
    status = P.store_status(args.store)
    p = P.plan(jobs, status)
    print(f"{args.grid}: store {args.store} ({len(status)} rows)")
    print(P.table([P.row(args.grid.name, p)]))
    print(P.summary(p, cost, world_only=all(m in WORLD_MODELS for m in p.models)))
    return 0


def _results_cmd(args) -> int:
    from calib.experiments import Store, sweep
    from calib.io import check_output
    check_choice("status", args.status, ("done", "failed", "all"))
    if args.csv:
        check_output(args.csv, "--csv")
    with Store(args.store, create=False) as store:
        over = [o for o in args.over.split(",") if o]
        metrics = [m for m in args.metrics.split(",") if m] if args.metrics is not None else None
        df = sweep.results_frame(store, over=None if args.raw or args.status == "failed" else over,
                                 status=args.status, metrics=metrics)
    if args.csv:
        from calib.io import atomic_write
        atomic_write(args.csv, df.to_csv(index=False))
        print(f"{len(df)} lines -> {args.csv}", file=sys.stderr)
    elif df.empty:
        print(f"no {'' if args.status == 'all' else args.status + ' '}rows in {args.store}", file=sys.stderr)
    else:
        import pandas as pd
        if args.status == "failed":  # what failed and why, one line each
            df = df[[c for c in ("key", "method", "pattern", "sparsity", "calibration.source",
                                 "calibration.seed", "error") if c in df.columns]]
        with pd.option_context("display.max_rows", 500, "display.max_columns", 50, "display.width", 200,
                               "display.max_colwidth", 200):
            print(df.to_string(index=False) if args.raw or args.status == "failed"
                  else sweep.pretty(df).to_string(index=False))
    return 0
