"""`calib sample | generate | filter | similarity`: the calibration-data steps."""
from __future__ import annotations

import argparse
import json
import sys

from calib import data, filters, synth
from calib.errors import CalibError, integer
from calib.io import atomic_write, check_output

SOURCE_HELP = ("a world source (world/pretrain, world/web, world/encyclopedia, world/mixed, "
               "world/instructions), a real source (real/code, real/docs, real/reference; for --model smollm2), a hub source (c4, wikipedia, slimpajama, dclm, alpaca), "
               "a local .jsonl/.json/.parquet/.txt file, or a jsonl written by `calib generate`")
MODEL_HELP = "model folder (save_pretrained) or alias world | world-qwen | smollm2; default: world"
FMT = argparse.ArgumentDefaultsHelpFormatter


def _device(args) -> str:
    """--device, checked by the one function every sub-command uses, before any work."""
    from calib import models
    return models.device(args.device)


def _load(args):
    import torch
    from calib import models
    dev = _device(args)
    torch.manual_seed(0)
    model, tok = models.load(args.model or "world", progress=not getattr(args, "no_progress", False))
    return model.to(dev), tok


def _write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=1))


# ---------------------------------------------------------------------------- sample
def cmd_sample(args) -> int:
    import io

    import torch
    from calib import models
    _device(args)  # unused by sampling, but a bad one is an error here as everywhere
    if args.out:
        check_output(args.out, "--out")
        check_output(str(args.out) + ".json", "--out")
    model = args.model or "world"
    config = models.model_config(model)
    tok = models.load_tokenizer(model)  # the tokenizer alone: no weights needed
    ctx = models.context_length(config)
    seqlen = data.default_seqlen(ctx) if args.seqlen is None else args.seqlen
    cs = data.sample(args.source, tok, args.nsamples, seqlen, seed=args.seed, mode=args.mode, pool=args.pool,
                     text_field=args.text_field, context=ctx)
    if args.out:
        buf = io.BytesIO()
        torch.save({"input_ids": cs.input_ids, "meta": cs.meta}, buf)
        atomic_write(args.out, buf.getvalue())
        _write_json(str(args.out) + ".json", cs.meta)
    m = cs.meta
    print(f"{m['nsamples']} x {m['seqlen']} tokens from {m['source']} ({m['mode']} mode, seed {m['seed']}, "
          f"{len(m['documents_used'])} of {m['pool']} documents) hash {cs.hash}")
    return 0


# -------------------------------------------------------------------------- generate
def cmd_generate(args) -> int:
    import logging
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    sampling = synth.check_options(args.prefix_len, args.max_new_tokens, args.batch_size, args.seed,
                                   dict(top_k=args.top_k, top_p=args.top_p, temperature=args.temperature,
                                        repetition_penalty=args.repetition_penalty))
    integer("--ndocs", args.ndocs, 1)
    check_output(args.out, "--out")
    check_output(synth.meta_path(args.out), "--out")
    _device(args)
    texts = data.load_texts(args.source, args.ndocs, args.text_field)
    model, tok = _load(args)
    rows = synth.generate(model, tok, texts, args.out, prefix_len=args.prefix_len,
                          max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed,
                          sampling=sampling, skip_short=args.skip_short, source=args.source,
                          progress=not args.no_progress)
    print(f"{len(rows)} synthetic texts in {args.out} ({sum(r['new_tokens'] for r in rows)} new tokens)")
    return 0


# ---------------------------------------------------------------------------- filter
def cmd_filter(args) -> int:
    import numpy as np
    filters.check_k(args.k)
    filters.check_batch_size(args.batch_size)
    check_output(args.out, "--out")
    _device(args)
    rows, texts = data.jsonl_texts(args.input, args.text_field)
    if not rows:
        raise CalibError(f"{args.input} is empty: nothing to filter")
    model, tok = _load(args)
    ppl = filters.perplexities(model, tok, texts, batch_size=args.batch_size, progress=not args.no_progress)
    ok = ~np.isnan(ppl)
    if not ok.any():
        raise CalibError(f"no text in {args.input} has the 2 tokens a perplexity needs: nothing to filter")
    if not ok.all():
        print(f"dropping {int((~ok).sum())} texts too short to score", file=sys.stderr)
    keep = np.zeros(len(rows), dtype=bool)
    keep[ok] = filters.ppl_keep(ppl[ok], args.k)
    threshold = float(np.percentile(ppl[ok], 100 - args.k))
    atomic_write(args.out, "".join(json.dumps({**r, "ppl": float(p)}, ensure_ascii=False) + "\n"
                                   for r, p, k in zip(rows, ppl, keep) if k))
    print(f"kept {int(keep.sum())} of {len(rows)} texts with perplexity < {threshold:.4g} "
          f"(the {100 - args.k:g}th percentile) -> {args.out}")
    return 0


# ------------------------------------------------------------------------ similarity
def cmd_similarity(args) -> int:
    import numpy as np
    filters.check_similarity(args.n, args.num_perm, args.seed)
    filters.check_batch_size(args.batch_size)
    if args.mink is not None:
        filters.check_k(args.mink, allow_100=True)
    integer("--ndocs", args.ndocs, 1)
    if args.out:
        check_output(args.out, "--out")
    _device(args)  # used by --mink only, but a bad one is an error here as everywhere
    if args.mink is not None:
        from calib import models
        models.check_causal_lm(args.model or "world")  # before the corpora are read
    a = data.load_texts(args.a, args.ndocs, args.text_field)
    b = data.load_texts(args.b, args.ndocs, args.text_field)
    out = {"a": args.a, "b": args.b, "documents": [len(a), len(b)], "n": args.n, "num_perm": args.num_perm,
           "minhash_jaccard": filters.minhash_jaccard(a, b, args.n, args.num_perm, args.seed)}
    if args.exact:
        out["exact_jaccard"] = filters.exact_jaccard(a, b, args.n)
    if args.lsh_threshold is not None:
        out["lsh_overlap"] = filters.lsh_overlap(a, b, args.lsh_threshold, args.n, args.num_perm, args.seed)
    if args.mink is not None:
        model, tok = _load(args)
        for key, texts in (("a", a), ("b", b)):
            s = filters.mink_pp(model, tok, texts, args.mink, batch_size=args.batch_size,
                                progress=not args.no_progress)
            out[f"mink_pp_{key}"] = {"k": args.mink, "mean": float(np.nanmean(s)), "std": float(np.nanstd(s))}
    if args.out:
        _write_json(args.out, out)
    print(json.dumps(out, indent=1))
    return 0


# ---------------------------------------------------------------------------- parser
def _common(p, model=True, progress=True):
    p.add_argument("--text-field", default="text", help="field that holds the text in local files")
    if model:
        p.add_argument("--model", default=None, help=MODEL_HELP)
        p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    if progress:
        p.add_argument("--no-progress", action="store_true", help="no progress bars (model loading included)")


def add_parser(sub) -> None:
    p = sub.add_parser("sample", formatter_class=FMT, help="draw a calibration set of token windows",
                       description="Draw NSAMPLES windows of SEQLEN tokens (the paper: 128 x 2048, 20 seeds). "
                       "Modes: 'document' takes a random window inside one document with >= SEQLEN tokens "
                       "(the paper's C4, SlimPajama, DCLM); 'concat' joins the documents with spaces and takes "
                       "random windows that may cross documents (the paper's Wikipedia and self-generated data). "
                       "The default mode is the paper's for that source. Prints the set's sha256 content hash.")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--nsamples", type=int, default=data.NSAMPLES, help="windows to draw (paper: 128)")
    p.add_argument("--seqlen", type=int, default=None,
                   help=f"tokens per window (paper: {data.SEQLEN}; default {data.SEQLEN} capped to the model's context)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (the document pool is fixed)")
    p.add_argument("--mode", choices=list(data.MODES), default=None, help="default: the source's")
    p.add_argument("--pool", type=int, default=None,
                   help="documents read from the source (default: 2000 world, 5000 hub, all of a file)")
    p.add_argument("--out", default=None, help="save {input_ids, meta} with torch.save (+ OUT.json meta)")
    _common(p, progress=False)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("generate", formatter_class=FMT, help="self-generate synthetic calibration texts",
                       description="Paper §4: keep the first PREFIX_LEN tokens of each source document "
                       "(BOS is added and not counted; 0 = BOS only) and let the dense model continue with "
                       "top-k 50, top-p 0.95, temperature 0.6, repetition penalty 1.2 (the paper used 5000 "
                       "Wikipedia documents and prefix 2). Rows are appended to OUT as they finish; rerunning "
                       "the same command resumes an interrupted run.")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--out", required=True, help="output jsonl (resumed if it exists with the same settings)")
    p.add_argument("--ndocs", type=int, default=synth.N_DOCS, help="source documents to continue (paper: 5000)")
    p.add_argument("--prefix-len", type=int, default=synth.PREFIX_LEN,
                   help=f"text tokens kept from each document, 0..{synth.MAX_PREFIX_LEN}")
    p.add_argument("--max-new-tokens", type=int, default=synth.MAX_NEW_TOKENS,
                   help="new tokens at most (the original script: 2048; cut to the model's positions)")
    p.add_argument("--batch-size", type=int, default=synth.BATCH_SIZE, help="prompts decoded together")
    p.add_argument("--seed", type=int, default=0, help="generation seed (each row: seed + document index)")
    p.add_argument("--top-k", type=int, default=synth.SAMPLING["top_k"])
    p.add_argument("--top-p", type=float, default=synth.SAMPLING["top_p"])
    p.add_argument("--temperature", type=float, default=synth.SAMPLING["temperature"])
    p.add_argument("--repetition-penalty", type=float, default=synth.SAMPLING["repetition_penalty"])
    p.add_argument("--skip-short", action="store_true", help="skip documents shorter than the prefix")
    _common(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("filter", formatter_class=FMT, help="drop the highest-perplexity synthetic texts",
                       description="Paper §4/§6.3: score each text's perplexity exp(mean token NLL) under the "
                       "dense model and keep those strictly below np.percentile(ppl, 100 - K) (paper: K = 20).")
    p.add_argument("input", help="jsonl with a 'text' field (e.g. from `calib generate`)")
    p.add_argument("--out", required=True, help="filtered jsonl (rows gain a 'ppl' field)")
    p.add_argument("--k", type=float, default=float(filters.FILTER_RATE),
                   help="percent of highest-perplexity texts to drop, in (0, 100)")
    p.add_argument("--batch-size", type=int, default=filters.BATCH_SIZE)
    _common(p)
    p.set_defaults(func=cmd_filter)

    p = sub.add_parser("similarity", formatter_class=FMT, help="how alike two corpora are",
                       description="Paper §3.4: word-3-gram Jaccard similarity of two corpora, estimated with "
                       "MinHash (datasketch); --exact adds the exact value. Paper §6.4: with --mink K, also the "
                       "mean Min-K%%++ score of each corpus under the model (paper: K = 50; higher means "
                       "closer to the model's training data).")
    p.add_argument("a", help=SOURCE_HELP)
    p.add_argument("b", help="the second corpus, same kinds as A")
    p.add_argument("--ndocs", type=int, default=1000, help="documents read from each corpus")
    p.add_argument("--n", type=int, default=filters.NGRAM, help="word n-gram size")
    p.add_argument("--num-perm", type=int, default=filters.NUM_PERM, help="MinHash permutations")
    p.add_argument("--seed", type=int, default=filters.MINHASH_SEED, help="MinHash seed")
    p.add_argument("--exact", action="store_true", help="also compute the exact Jaccard")
    p.add_argument("--lsh-threshold", type=float, default=None,
                   help="also report the share of A's documents with an LSH near-duplicate in B")
    p.add_argument("--mink", type=float, default=None, metavar="K",
                   help=f"also score Min-K%%++ with the model (paper: K = {filters.MINK})")
    p.add_argument("--batch-size", type=int, default=filters.BATCH_SIZE)
    p.add_argument("--out", default=None, help="write the result as JSON")
    _common(p)
    p.set_defaults(func=cmd_similarity)
