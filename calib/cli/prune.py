"""`calib prune`: prune a Hugging Face model with calibration data and save it.

The output folder is written atomically (calib.io.atomic_folder): everything goes
to a hidden sibling folder first, which is renamed to --out only once complete;
the hidden folders of killed runs (dead processes on this host) are removed.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from calib import data
from calib.errors import CalibError
from calib.prune import methods

# CLI flag -> method option; None defaults mean "the method's own default".
_OPTION_FLAGS = {
    "use_variant": "--use-variant",
    "blocksize": "--blocksize",
    "percdamp": "--percdamp",
    "initial_method": "--dsnot-init",
    "max_cycle_time": "--max-cycle-time",
    "update_threshold": "--update-threshold",
    "pow_of_var_regrowing": "--pow-of-var-regrowing",
    "skip_layer": "--skip-layer",
    "skip_sub_layer": "--skip-sub-layer",
    "without_dsnot": "--without-dsnot",
    "same_sign": "--same-sign",
    "walk": "--dsnot-walk",
    "base": "--owl-base",
    "owl_m": "--owl-m",
    "owl_lambda": "--owl-lambda",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "prune", help=f"prune a model layer by layer ({', '.join(methods.METHODS)})",
        description="Prune a decoder-only Hugging Face model (LLaMA, Mistral, Qwen2/3, OLMo-2, Gemma 2/3, "
                    "Phi-3; DCLM-7B's OpenLM with open_lm installed) layer by layer "
                    "and save it with dense weights and exact zeros, plus prune_report.json.",
    )
    p.add_argument("--model", required=True, help="model folder (save_pretrained layout) or alias world | world-qwen | smollm2")
    p.add_argument("--method", default="wanda", help=" | ".join(methods.METHODS))
    p.add_argument("--sparsity", type=float, default=None,
                   help="unstructured sparsity in [0, 1) (default 0.5); implied by N:M patterns")
    p.add_argument("--pattern", default="unstructured", help="unstructured | 2:4 | 4:8 | N:M")
    p.add_argument("--calib", default="world/pretrain", help="world source (e.g. world/pretrain) or a local text file")
    p.add_argument("--calib-mode", default=None, help="sampling mode of the source (default: the source's own)")
    p.add_argument("--nsamples", type=int, default=data.NSAMPLES, help="calibration windows (paper: 128)")
    p.add_argument("--seqlen", type=int, default=None,
                   help=f"tokens per window (paper: {data.SEQLEN}; default {data.SEQLEN} capped to the model's context)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path, help="output folder (must not exist, or be empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--batch-size", type=int, default=methods.BATCH_SIZE, help="calibration samples per block forward")
    p.add_argument("--device", default=None, help="compute device (default: cuda if available, else cpu)")
    p.add_argument("--no-offload", action="store_true",
                   help="keep the whole model on the device (default: one block at a time)")
    p.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    p.add_argument("--no-progress", action="store_true")
    g = p.add_argument_group("method options (default: the original implementations' values)")
    g.add_argument("--use-variant", action="store_const", const=True, default=None,
                   help="wanda/owl: Wanda's alpha-search variant")
    g.add_argument("--blocksize", type=int, default=None, help="sparsegpt: column block size (128)")
    g.add_argument("--percdamp", type=float, default=None, help="sparsegpt/dsnot: Hessian damping (0.01)")
    g.add_argument("--dsnot-init", dest="initial_method", default=None, help="dsnot: wanda | sparsegpt | magnitude")
    g.add_argument("--max-cycle-time", type=int, default=None, help="dsnot: cycles (50)")
    g.add_argument("--update-threshold", type=float, default=None, help="dsnot: stop when |err| <= this (0.1)")
    g.add_argument("--pow-of-var-regrowing", type=float, default=None, help="dsnot: variance power (1)")
    g.add_argument("--skip-layer", default=None, help="dsnot: no_skip | mlp | self_attn (mlp)")
    g.add_argument("--skip-sub-layer", default=None, help="dsnot: e.g. q_proj (no_skip)")
    g.add_argument("--without-dsnot", action="store_const", const=True, default=None,
                   help="dsnot: initial mask only")
    g.add_argument("--same-sign", default=None, choices=["true", "false"],
                   help="dsnot: require err to keep its sign (default: false unstructured, true N:M, as upstream)")
    g.add_argument("--dsnot-walk", dest="walk", default=None,
                   help="dsnot: guarded (calib's fixed walk) | original (the published loop) (guarded)")
    g.add_argument("--owl-base", dest="base", default=None, help="owl: wanda | sparsegpt | magnitude")
    g.add_argument("--owl-m", type=float, default=None, help="owl: outlier threshold M (5)")
    g.add_argument("--owl-lambda", type=float, default=None, help="owl: lambda (0.08)")
    p.set_defaults(func=handler)


def _method_options(args, method):
    from calib.prune.methods import OPTIONS
    opts = {}
    for key, flag in _OPTION_FLAGS.items():
        val = getattr(args, key)
        if val is None:
            continue
        if key not in OPTIONS.get(method, {}):
            raise CalibError(f"{flag} does not apply to method {method!r}")
        opts[key] = (val == "true") if key == "same_sign" else val
    return opts


def _check_out(out: Path, overwrite: bool):
    if out.exists():
        if not out.is_dir():
            raise CalibError(f"--out {out} exists and is not a folder")
        if any(out.iterdir()) and not overwrite:
            raise CalibError(f"--out {out} is not empty; pass --overwrite to replace it")


def handler(args) -> int:
    from calib.errors import check_choice
    from calib.io import check_output, clean_stale
    from calib.models import DTYPES, device, model_config
    from calib.prune.methods import METHODS, Setting

    t0 = time.perf_counter()
    # Everything checkable without the model fails before anything is loaded.
    check_choice("pruning method", args.method, METHODS)  # before the options, which depend on it
    setting = Setting.of(args.method, args.sparsity, args.pattern, _method_options(args, args.method))
    if args.nsamples < 1:
        raise CalibError(f"--nsamples {args.nsamples} must be >= 1")
    if args.seqlen is not None and args.seqlen < 1:
        raise CalibError(f"--seqlen {args.seqlen} must be >= 1")
    if args.batch_size < 1:
        raise CalibError(f"--batch-size {args.batch_size} must be >= 1")
    check_choice("dtype", args.dtype, ["auto", *DTYPES])
    data.check_seed(args.seed, "--seed")
    dev = device(args.device)
    # the calibration source and mode are checked for every method, magnitude too
    mode = args.calib_mode or data.default_mode(args.calib)
    check_choice("sampling mode", mode, data.MODES)
    out = check_output(args.out, "--out", folder=True)
    _check_out(out, args.overwrite)
    config = model_config(args.model)
    methods.check_architecture(config)
    setting.check_widths(config)  # N:M against the linears' widths, from config.json
    clean_stale(out)  # checkpoint-sized folders of killed runs: gone before this run adds its own

    import torch

    import calib
    from calib.io import atomic_folder
    from calib.models import context_length, input_widths, load, load_tokenizer, model_path
    from calib.prune.engine import prune

    ctx = context_length(config)
    seqlen = data.default_seqlen(ctx) if args.seqlen is None else args.seqlen
    if ctx is not None and seqlen > ctx:
        raise CalibError(f"--seqlen {seqlen} is longer than the model's context ({ctx} tokens)")

    timings = {"calibration_s": 0.0}
    ids = None
    if setting.data_free:  # magnitude (or nothing to prune) needs no data
        mode = None
    else:  # the ids, and the activation buffer [nsamples, seqlen, hidden] where it sits in host memory
        dtype = args.dtype if args.dtype != "auto" else config.get("dtype") or config.get("torch_dtype")
        on_host = not args.no_offload or dev == "cpu"
        buffer = (2 if dtype in ("bfloat16", "float16") else 4) * input_widths(config).get("hidden_size", 0)
        data.check_memory(args.nsamples, seqlen, 16 + buffer * on_host, "its token ids and the activation buffer")
        # the calibration set before the weights: a bad source fails before a large model loads
        t = time.perf_counter()
        ids = data.calibration_tensor(args.calib, load_tokenizer(args.model), nsamples=args.nsamples,
                                      seqlen=seqlen, seed=args.seed, mode=mode)
        timings["calibration_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model, tokenizer = load(args.model, dtype=args.dtype, progress=not args.no_progress)
    timings["load_s"] = time.perf_counter() - t

    torch.manual_seed(args.seed)
    t = time.perf_counter()
    result = prune(model, ids, setting=setting, batch_size=args.batch_size, device=args.device,
                   offload=not args.no_offload, progress=not args.no_progress)
    timings["prune_s"] = time.perf_counter() - t

    report = {
        "model": str(model_path(args.model)),
        "method": args.method,
        "pattern": args.pattern,
        "sparsity": setting.sparsity,
        "options": setting.options,
        "calibration": {
            "source": args.calib, "mode": mode, "nsamples": args.nsamples, "seqlen": seqlen,
            "sha256_int32": None if ids is None else data.calibration_hash(ids),
        },
        "seed": args.seed,
        "mask_hash": result.mask_hash,
        "sparsity_report": {k: result.report[k] for k in ("overall", "blocks", "matrices")},
        "owl": result.report.get("owl"),
        "versions": calib.versions(),
        "timings": {**timings, "engine": result.timings},
    }

    t = time.perf_counter()
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        report["timings"]["save_s"] = time.perf_counter() - t
        report["timings"]["total_s"] = time.perf_counter() - t0
        (tmp / "prune_report.json").write_text(json.dumps(report, indent=2))
    ov = report["sparsity_report"]["overall"]
    print(f"pruned {args.method} {args.pattern} -> {out}: sparsity {ov['sparsity']:.4f} "
          f"({ov['pruned']}/{ov['total']}), mask hash {result.mask_hash[:16]}")
    return 0
