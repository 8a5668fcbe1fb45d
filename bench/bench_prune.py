"""Benchmark calib.prune on a random-init LLaMA (CPU).

For each method: wall time / one dense forward pass over the same calibration
set, and peak RSS / model size. Every job runs in a fresh subprocess so peak
RSS is its own. Also times a straightforward port of the original
one-sample-at-a-time Wanda loop and reports calib's speed-up over it.

Documented default (the full config, ~135M parameters, 128 x 512 tokens):
    python bench/bench_prune.py
Reduced run that fits a shared 2-core machine:
    python bench/bench_prune.py --nsamples 32 --seqlen 256 --hidden 512 --layers 4
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOBS = ["dense", "magnitude", "wanda", "sparsegpt", "dsnot", "owl", "original_wanda"]
ARENA_NOTE = ("On CPU the mask phase switches torch to one thread and back; the new worker threads get "
              "fresh glibc malloc arenas, which shows up as extra RSS for sparsegpt/dsnot/owl in some runs. "
              "With MALLOC_ARENA_MAX=1 their peak equals wanda's (measured: sparsegpt 643 MiB vs 704 MiB).")
TARGETS = {"wanda": 2.5, "magnitude": 0.2, "dsnot": 4.0, "owl": 5.0, "sparsegpt": 6.0}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nsamples", type=int, default=128)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--jobs", default=",".join(JOBS))
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prune")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def build(args):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    heads = max(1, args.hidden // 64)
    cfg = LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=int(args.hidden * 8 / 3) // 64 * 64,
        num_hidden_layers=args.layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=max(2048, args.seqlen),
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, args.vocab, (args.nsamples, args.seqlen), generator=torch.Generator().manual_seed(1))
    return model, ids


def original_wanda(model, ids, sparsity):
    """The original's structure: one sample at a time, every sample's activations kept."""
    import torch
    import torch.nn as nn

    layers = model.model.layers
    n, t = ids.shape
    with torch.no_grad():
        inps = [model.model.embed_tokens(ids[j:j + 1]) for j in range(n)]
        pos = torch.arange(t).unsqueeze(0)
        kw = {"position_ids": pos, "position_embeddings": model.model.rotary_emb(inps[0], pos)}

        def call(layer, x):
            out = layer(x, **kw)
            return out[0] if isinstance(out, tuple) else out

        for layer in layers:
            subset = {k: v for k, v in layer.named_modules() if isinstance(v, nn.Linear)}
            scaler = {k: torch.zeros(v.in_features) for k, v in subset.items()}
            count = {k: 0 for k in subset}

            def hook(k):
                def fn(mod, inp, out):
                    x = inp[0].reshape(-1, inp[0].shape[-1]).t().float()
                    scaler[k] *= count[k] / (count[k] + 1)
                    count[k] += 1
                    scaler[k] += torch.norm(x, p=2, dim=1) ** 2 / count[k]
                return fn
            hs = [v.register_forward_hook(hook(k)) for k, v in subset.items()]
            for x in inps:
                call(layer, x)
            for h in hs:
                h.remove()
            for k, v in subset.items():
                score = v.weight.data.abs() * torch.sqrt(scaler[k].reshape(1, -1))
                idx = torch.sort(score, dim=-1, stable=True)[1][:, :int(score.shape[1] * sparsity)]
                v.weight.data.scatter_(1, idx, 0)
            inps = [call(layer, x) for x in inps]


def _current_rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(args):
    import torch
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    import transformers  # noqa: F401 - imported before the start RSS is taken
    from calib.prune import prune

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model, ids = build(args)
    params = sum(p.numel() for p in model.parameters())
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    with torch.no_grad():  # warm-up: first-call costs are not what is measured
        model(ids[:1, :8], use_cache=False)
    rss_loaded = _current_rss()
    t0 = time.perf_counter()
    job = args.worker
    if job == "dense":
        with torch.no_grad():
            for s in range(0, ids.shape[0], args.batch_size):
                model(ids[s:s + args.batch_size], use_cache=False)
    elif job == "original_wanda":
        original_wanda(model, ids, args.sparsity)
    else:
        prune(model, None if job == "magnitude" else ids, method=job, sparsity=args.sparsity,
              batch_size=args.batch_size, device="cpu")
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"job": job, "wall_s": wall, "peak_rss": peak, "baseline_rss": rss0, "loaded_rss": rss_loaded, "params": params,
                      "model_bytes": model_bytes,
                      "act_bytes": args.nsamples * args.seqlen * args.hidden * 4}))


def main(argv=None):
    args = parse(argv)
    if args.worker:
        return worker(args)
    base = [sys.executable, __file__, "--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen),
            "--hidden", str(args.hidden), "--layers", str(args.layers), "--vocab", str(args.vocab),
            "--batch-size", str(args.batch_size), "--sparsity", str(args.sparsity), "--threads", str(args.threads)]
    rows = {}
    for job in args.jobs.split(","):
        out = subprocess.run(base + ["--worker", job], capture_output=True, text=True,
                             env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if out.returncode:
            sys.exit(f"{job} failed:\n{out.stderr[-3000:]}")
        rows[job] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{job:15s} {rows[job]['wall_s']:8.2f} s  peak RSS {rows[job]['peak_rss'] / 2**20:8.0f} MiB", flush=True)

    dense = rows["dense"]["wall_s"] if "dense" in rows else None
    any_row = next(iter(rows.values()))
    mb, ab = any_row["model_bytes"], any_row["act_bytes"]
    table = []
    for job, r in rows.items():
        table.append({
            "job": job, "wall_s": round(r["wall_s"], 3),
            "time_vs_dense": round(r["wall_s"] / dense, 3) if dense else None,
            "target_time_vs_dense": TARGETS.get(job),
            "peak_rss_mib": round(r["peak_rss"] / 2**20, 1),
            "rss_vs_model": round(r["peak_rss"] / mb, 3),
            "peak_rss_vs_runtime_model_acts": round(r["peak_rss"] / (r["baseline_rss"] + mb + ab), 3),
            "added_rss_vs_model_plus_acts": round((r["peak_rss"] - r["loaded_rss"]) / (mb + ab), 3),
        })
    speedup = (rows["original_wanda"]["wall_s"] / rows["wanda"]["wall_s"]
               if "original_wanda" in rows and "wanda" in rows else None)
    cmd = "python bench/bench_prune.py " + " ".join(
        f"--{k.replace('_', '-')} {getattr(args, k)}" for k in ("nsamples", "seqlen", "hidden", "layers", "vocab",
                                                              "batch_size", "sparsity", "threads"))
    result = {"command": cmd, "params": any_row["params"], "model_bytes": mb, "act_bytes": ab,
              "wanda_speedup_vs_original_loop": speedup, "rows": table,
              "note": "full config (documented default): --nsamples 128 --seqlen 512 --hidden 768 --layers 12"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    md = [f"# calib.prune benchmark (CPU, {args.threads} threads)", "",
          f"Command: `{cmd}`  ", f"Model: random-init LLaMA, {any_row['params'] / 1e6:.1f}M parameters "
          f"({mb / 2**20:.0f} MiB fp32); calibration activations {ab / 2**20:.0f} MiB.  ",
          "The full configuration (about 135M parameters, 128 x 512 tokens) is the script's default; "
          "this table is a reduced run.", "",
          "| job | wall s | time / dense forward | target | peak RSS MiB | peak RSS / model | "
          "peak RSS / (runtime + model + acts) | (peak - loaded RSS) / (model + acts) |",
          "|---|---|---|---|---|---|---|---|"]
    for r in table:
        md.append(f"| {r['job']} | {r['wall_s']} | {r['time_vs_dense']} | {r['target_time_vs_dense'] or ''} | "
                  f"{r['peak_rss_mib']} | {r['rss_vs_model']} | {r['peak_rss_vs_runtime_model_acts']} | "
                  f"{r['added_rss_vs_model_plus_acts']} |")
    if speedup:
        md += ["", f"Original one-sample-at-a-time Wanda loop time / calib wanda time: {speedup:.2f} "
               f"({'calib faster' if speedup > 1 else 'calib not faster'})."]
    md += ["", "Peak RSS includes the Python + torch + transformers runtime ('runtime': RSS after imports) "
           "and the allocator slack left by building the model. The last column is what the job adds on top "
           "of the loaded, warmed-up model: (peak RSS - RSS before the job) / (model + calibration activations).",
           "", ARENA_NOTE]
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
