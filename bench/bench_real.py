"""Costs on the real model (SmolLM2-135M, `--model smollm2`), CPU.

Per job, through the CLI in a fresh process as a user runs it: `calib prune` (Wanda, 50%,
real/code), `calib generate` (self-generation from real/code prefixes), `calib evaluate --suite
real`. In-process: Wanda's pruning time against one dense forward pass over the same calibration
tokens (the <= 1.1x target the world model meets). The machine's load (`uptime`) is recorded.

    python bench/bench_real.py                       # 16 x 256 tokens (the issue's done-when run)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cli(*argv) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "calib.cli", *argv], check=True, cwd=ROOT, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--ndocs", type=int, default=8)
    ap.add_argument("--heldout", type=int, default=8)
    a = ap.parse_args()
    import torch

    from calib import data
    from calib.models import load, model_path
    from calib.prune import prune
    load_avg = [os.getloadavg()]
    path = model_path("smollm2")  # converted once (cached) before anything is timed
    model, tok = load(path, progress=False)
    ids = data.sample("real/code", tok, a.nsamples, a.seqlen, seed=0).input_ids
    with torch.inference_mode():
        model(ids[:1])  # warm-up
        t = time.perf_counter()
        for row in ids.split(8):
            model(row)
        dense = time.perf_counter() - t
    t = time.perf_counter()
    prune(model, ids, method="wanda", sparsity=0.5)
    wanda = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pruned"
        jobs = {
            "prune (wanda 50%, real/code)": _cli("prune", "--model", "smollm2", "--method", "wanda", "--sparsity",
                                                 "0.5", "--calib", "real/code", "--nsamples", str(a.nsamples),
                                                 "--seqlen", str(a.seqlen), "--out", str(out)),
            f"generate ({a.ndocs} documents)": _cli("generate", "real/code", "--model", "smollm2", "--ndocs",
                                                    str(a.ndocs), "--out", str(Path(tmp) / "gen.jsonl"),
                                                    "--no-progress"),
            f"evaluate (suite real, {a.heldout} documents per source)": _cli(
                "evaluate", "--model", str(out), "--suite", "real", "--heldout", str(a.heldout)),
        }
    load_avg.append(os.getloadavg())
    res = {"nsamples": a.nsamples, "seqlen": a.seqlen, "dense_forward_s": dense, "wanda_s": wanda,
           "wanda_over_dense": wanda / dense, "target": 1.1, "jobs_s": jobs, "loadavg": load_avg,
           "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
           "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    lines = ["# Costs on SmolLM2-135M (CPU)", "", f"Load: {res['uptime']} (load average before "
             f"{load_avg[0][0]:.2f}, after {load_avg[1][0]:.2f}; {res['cpus']} CPUs, torch threads {res['threads']}).",
             "", f"Wanda over {a.nsamples} x {a.seqlen} tokens: {wanda:.1f} s; one dense forward pass over the same "
             f"tokens: {dense:.1f} s; ratio {wanda / dense:.2f}x (target <= 1.1x).", "",
             "| job (CLI, fresh process) | seconds |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.1f} |" for k, v in jobs.items()]
    (ROOT / "bench/results").mkdir(exist_ok=True)
    (ROOT / "bench/results/real.json").write_text(json.dumps(res, indent=1) + "\n")
    (ROOT / "bench/results/real.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
