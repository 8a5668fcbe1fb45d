"""Self-generation throughput: calib.synth vs the original script's approach, and the
cost of generation relative to one teacher-forced forward pass over the same tokens.

    python bench/bench_synth.py                 # the world model, paper's sampling settings
    python bench/bench_synth.py --random        # a random model of the world recipe (no weights needed)

Writes bench/results/synth.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from calib import synth  # noqa: E402
from calib.world.sources import documents  # noqa: E402


def random_world_model():
    """The world recipe's tokenizer and architecture with random weights."""
    from transformers import LlamaForCausalLM
    from calib.world.model import RECIPE, make_config, train_tokenizer
    tok = train_tokenizer(documents("world/pretrain", 2000, split="train"), RECIPE["vocab_size"])
    torch.manual_seed(0)
    return LlamaForCausalLM(make_config(RECIPE, tok)).eval(), tok


def original_generate(model, tok, prompts, max_new_tokens, batch_size, seed):
    """The released script's loop: HF generate in fixed batches, left padding with EOS,
    no attention mask. Returns the number of new tokens (up to each row's first EOS)."""
    torch.manual_seed(seed)
    eos, n_new = tok.eos_token_id, 0
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i:i + batch_size]
        P = max(map(len, chunk))
        ids = torch.tensor([[eos] * (P - len(p)) + p for p in chunk])
        with torch.no_grad():
            out = model.generate(input_ids=ids, do_sample=True, top_k=50, top_p=0.95, temperature=0.6,
                                 repetition_penalty=1.2, max_new_tokens=max_new_tokens, use_cache=True,
                                 pad_token_id=eos)
        for row in out[:, P:].tolist():
            n_new += row.index(eos) if eos in row else len(row)
    return n_new


def forward_time(model, seqs, batch_size):
    """One teacher-forced forward pass over the sequences (right-padded, masked)."""
    order = sorted(seqs, key=len, reverse=True)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(order), batch_size):
            chunk = order[i:i + batch_size]
            T = max(map(len, chunk))
            ids = torch.zeros(len(chunk), T, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, s in enumerate(chunk):
                ids[r, :len(s)] = torch.tensor(s)
                mask[r, :len(s)] = 1
            model(input_ids=ids, attention_mask=mask, logits_to_keep=1)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the world model)")
    ap.add_argument("--random", action="store_true", help="random weights with the world recipe")
    ap.add_argument("--source", default="world/encyclopedia", help="prefix source (paper: Wikipedia)")
    ap.add_argument("--ndocs", type=int, default=128)
    ap.add_argument("--prefix-len", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=2048, help="cut to the model's positions")
    ap.add_argument("--batch-size", type=int, default=128, help="calib's batch (one batch for 128 prompts)")
    ap.add_argument("--orig-batch-size", type=int, default=32, help="the original script's batch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-original", action="store_true")
    ap.add_argument("--forward-batch-size", type=int, default=8, help="batch of the teacher-forced reference")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "synth"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.random:
        model, tok = random_world_model()
        model_name = "random weights, world recipe"
    else:
        from calib.models import load
        model, tok = load(args.model)
        model_name = args.model or "calib/world/model"
    texts = documents(args.source, args.ndocs)
    limit = model.config.max_position_embeddings
    L = min(args.max_new_tokens, limit - args.prefix_len - 1)

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        rows = synth.generate(model, tok, texts, Path(d) / "s.jsonl", prefix_len=args.prefix_len, max_new_tokens=L,
                              batch_size=args.batch_size, seed=args.seed)
        t_calib = time.perf_counter() - t0
    n_calib = sum(r["new_tokens"] for r in rows)
    prompts = dict(synth.build_prompts(tok, texts, args.prefix_len))
    # the generated sequences (prompt + new tokens), re-tokenized from the text and held
    # at the exact generated length: the forward pass sees the same number of tokens
    seqs = []
    for r in rows:
        n = len(prompts[r["index"]]) + r["new_tokens"]
        ids = tok(r["text"])["input_ids"][:n]
        seqs.append(ids + [tok.eos_token_id] * (n - len(ids)))
    # length-sorted small batches: the forward sees (almost) no padding, so it costs
    # what the tokens cost and the ratio is not flattered by padded work
    t_fwd = forward_time(model, seqs, args.forward_batch_size)
    res = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "model": model_name, "params": sum(p.numel() for p in model.parameters()),
        "source": args.source, "ndocs": args.ndocs, "prefix_len": args.prefix_len, "max_new_tokens": L,
        "sampling": synth.SAMPLING, "threads": args.threads, "device": "cpu", "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "calib": {"batch_size": args.batch_size, "seconds": t_calib, "new_tokens": n_calib,
                  "new_tokens_per_s": n_calib / t_calib,
                  "stopped_at_eos": sum(r["stop"] == "eos" for r in rows)},
        "forward": {"seconds": t_fwd, "tokens": sum(map(len, seqs))},
        "calib_over_forward": t_calib / t_fwd,
    }
    if not args.skip_original:
        t0 = time.perf_counter()
        n_orig = original_generate(model, tok, list(prompts.values()), L, args.orig_batch_size, args.seed)
        t_orig = time.perf_counter() - t0
        res["original"] = {"batch_size": args.orig_batch_size, "seconds": t_orig, "new_tokens": n_orig,
                           "new_tokens_per_s": n_orig / t_orig, "attention_mask": False}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    md = ["# Self-generation benchmark", "", f"`{res['command']}`", "",
          f"Model: {model_name} ({res['params']:,} parameters), {args.threads} CPU threads, torch {torch.__version__}.",
          f"{args.ndocs} prefixes of {args.prefix_len} tokens from {args.source}, up to {L} new tokens, "
          f"top-k 50, top-p 0.95, temperature 0.6, repetition penalty 1.2.", "",
          "| approach | batch | new tokens | seconds | new tok/s |", "| --- | --- | --- | --- | --- |",
          f"| calib.synth (KV cache, masks, finished rows leave) | {args.batch_size} | {n_calib} | "
          f"{t_calib:.1f} | {n_calib / t_calib:.0f} |"]
    if "original" in res:
        o = res["original"]
        md.append(f"| original: HF generate, no mask | {o['batch_size']} | {o['new_tokens']} | {o['seconds']:.1f} | "
                  f"{o['new_tokens_per_s']:.0f} |")
    md += ["", f"One teacher-forced forward over the same {res['forward']['tokens']} tokens: {t_fwd:.2f} s; "
           f"calib generation / forward = **{res['calib_over_forward']:.2f}x** (target <= 3x)."]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
