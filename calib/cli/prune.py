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
from calib.cli import model_options, chosen
from calib.errors import CalibError
from calib.prune import methods

SOURCE_HELP = ("a world source (world/pretrain, ...), a hub source (c4, wikipedia, slimpajama, dclm, alpaca, "
               "olmo-mix-dclm, olmo-mix-wiki), a local .jsonl/.json/.parquet/.txt file")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "prune", help=f"prune a model layer by layer ({', '.join(methods.METHODS)})",
        description="Prune a decoder-only Hugging Face model (LLaMA, Mistral, Qwen2/3, OLMo-2, Gemma 2/3, "
                    "Phi-3; DCLM-7B's OpenLM with open_lm installed) layer by layer "
                    "and save it with dense weights and exact zeros, plus prune_report.json and a model card "
                    "(README.md, with Hugging Face metadata). Prints the calibration source and dtype it chose.",
    )
    model_options(p, required=True)
    p.add_argument("--method", default=methods.DEFAULT_METHOD, help=" | ".join(methods.METHODS))
    p.add_argument("--sparsity", type=float, default=None,
                   help=f"unstructured sparsity in [0, 1) (unset: {methods.DEFAULT_SPARSITY}); an N:M pattern sets "
                        f"N/M, and a different --sparsity with it is an error")
    p.add_argument("--pattern", default="unstructured", help="unstructured | 2:4 | 4:8 | N:M")
    p.add_argument("--calib", default=None,
                   help=f"{SOURCE_HELP}, or a calibration set saved by `calib sample --out`; unset: the "
                        f"model's own (world models: world/pretrain, any other: c4)")
    p.add_argument("--calib-mode", default=None, help="sampling mode of the source (unset: the source's own)")
    p.add_argument("--text-field", default="text", help="field that holds the text in a local --calib file")
    p.add_argument("--nsamples", type=int, default=data.NSAMPLES, help="calibration windows (paper: 128)")
    p.add_argument("--seqlen", type=int, default=None,
                   help=f"tokens per window (paper: {data.SEQLEN}; unset: {data.SEQLEN} capped to the model's context)")
    p.add_argument("--seed", type=int, default=0, help="calibration sampling seed (and torch's)")
    p.add_argument("--out", required=True, type=Path,
                   help="output folder (must not exist, or be empty; never one of the inputs)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--batch-size", type=int, default=methods.BATCH_SIZE, help="calibration samples per block forward")
    p.add_argument("--device", default=None, help="compute device (unset: cuda if available, else cpu)")
    p.add_argument("--no-offload", action="store_true",
                   help="keep the whole model on the device (unset: one block at a time)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_option_flags(p)
    p.set_defaults(func=handler)


def _add_option_flags(p) -> None:
    """One flag per method option (methods.py's records), its help naming the methods that take it
    and the default. Flags default to None: "not given", so the method's own default applies."""
    g = p.add_argument_group("method options (default: the original implementations' values)")
    for opt in methods.shared_options().values():
        text = f"{'/'.join(methods.option_methods(opt.name))}: {opt.help}"
        if opt.choices and len(opt.choices) <= 4:
            text += f": {' | '.join(opt.choices)}"
        if opt.default is not None:
            text += f" (unset: {str(opt.default).lower() if opt.type is bool else opt.default})"
        kw = {"dest": opt.name, "default": None, "help": text}
        if opt.type is bool and opt.default is False:
            kw.update(action="store_const", const=True)
        elif opt.type is bool:  # true, false, or not given (None: the method decides)
            kw.update(choices=["true", "false"])
        elif opt.type in (int, float):
            kw.update(type=opt.type)
        g.add_argument(opt.cli_flag, **kw)


def _method_options(args, method):
    opts = {}
    for name, opt in methods.shared_options().items():
        val = getattr(args, name)
        if val is None:
            continue
        if name not in methods.OPTIONS.get(method, {}):
            raise CalibError(f"{opt.cli_flag} does not apply to method {method!r}")
        opts[name] = (val == "true") if isinstance(val, str) and opt.type is bool else val
    return opts


def _check_out(out: Path, overwrite: bool):
    if out.exists():
        if not out.is_dir():
            raise CalibError(f"--out {out} exists and is not a folder")
        if any(out.iterdir()) and not overwrite:
            raise CalibError(f"--out {out} is not empty; pass --overwrite to replace it")


def model_card(report: dict) -> str:
    """A Hugging Face model card (README.md) for a pruned folder: metadata in YAML front matter,
    then what was done, from the prune report."""
    import yaml
    c = report["calibration"]
    base = report.get("base_model") or report["model"]
    meta = {"base_model": base, "library_name": "transformers",
            "tags": ["calib", "pruned", report["method"], f"sparsity-{report['sparsity']:g}"]
            + ([report["pattern"]] if report["pattern"] != "unstructured" else [])}
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# {base}, pruned with {report['method']}", "",
             f"Pruned by calib {report['versions']['calib']} "
             f"(commit {report['versions'].get('calib_commit') or 'unknown'}) from `{base}`"
             + (f" at revision `{report['revision']}`" if report.get("revision") else "") + ".", "",
             "| setting | value |", "| --- | --- |",
             f"| method | {report['method']} |", f"| sparsity | {report['sparsity']:g} |",
             f"| pattern | {report['pattern']} |", f"| options | {json.dumps(report['options'])} |",
             f"| calibration source | {c['source']} |", f"| calibration mode | {c['mode']} |",
             f"| nsamples x seqlen | {c['nsamples']} x {c['seqlen']} |", f"| seed | {report['seed']} |",
             f"| calibration set sha256 (int32 ids) | {c['sha256_int32']} |",
             f"| mask hash | {report['mask_hash']} |", f"| dtype | {report['dtype']} |",
             f"| calib version | {report['versions']['calib']} |", "",
             "The weights are dense tensors with exact zeros; `prune_report.json` holds the full report.", ""]
    return "\n".join(lines)


def handler(args) -> int:
    from calib.errors import check_choice
    from calib.io import check_output, clean_stale
    from calib.io import check_not_input
    from calib.models import device, model_config, model_path
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
    data.check_seed(args.seed, "--seed")
    dev = device(args.device)
    given = args.model
    chosen(args, "prune", source="calib")
    # the calibration source and mode are checked for every method, magnitude too
    saved = data.saved_set(args.calib)  # a set written by `calib sample --out`
    mode = args.calib_mode or (saved["meta"]["mode"] if saved else data.default_mode(args.calib))
    check_choice("sampling mode", mode, data.MODES)
    out = check_output(args.out, "--out", folder=True)
    check_not_input(out, {"--model": model_path(args.model), "--calib": args.calib})
    _check_out(out, args.overwrite)
    config = model_config(args.model)
    methods.check_architecture(config)
    setting.check_widths(config)  # N:M against the linears' widths, from config.json
    clean_stale(out)  # checkpoint-sized folders of killed runs: gone before this run adds its own

    import torch

    import calib
    from calib.io import atomic_folder
    from calib.hub import revision_of
    from calib.models import context_length, input_widths, load, load_tokenizer, resolve_dtype
    from calib.prune.engine import prune

    ctx = context_length(config)
    seqlen = data.default_seqlen(ctx) if args.seqlen is None else args.seqlen
    if saved:  # the saved set's own sizes
        args.nsamples, seqlen = saved["meta"]["nsamples"], saved["meta"]["seqlen"]
    if ctx is not None and seqlen > ctx:
        raise CalibError(f"--seqlen {seqlen} is longer than the model's context ({ctx} tokens)")

    timings = {"calibration_s": 0.0}
    ids = None
    if setting.data_free:  # magnitude (or nothing to prune) needs no data
        mode = None
    else:  # the ids, and the activation buffer [nsamples, seqlen, hidden] where it sits in host memory
        dtype = resolve_dtype(args.dtype, dev)
        on_host = not args.no_offload or dev == "cpu"
        buffer = (2 if dtype in ("bfloat16", "float16") else 4) * input_widths(config).get("hidden_size", 0)
        data.check_memory(args.nsamples, seqlen, 16 + buffer * on_host, "its token ids and the activation buffer")
        # the calibration set before the weights: a bad source fails before a large model loads
        t = time.perf_counter()
        tok = load_tokenizer(args.model, args.trust_remote_code)
        if saved:
            ids = data.saved_ids(saved, tok)
        else:
            ids = data.calibration_tensor(args.calib, tok, nsamples=args.nsamples, seqlen=seqlen, seed=args.seed,
                                          mode=mode, text_field=args.text_field)
        timings["calibration_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model, tokenizer = load(args.model, dtype=resolve_dtype(args.dtype, dev), progress=not args.no_progress,
                            trust_remote_code=args.trust_remote_code)
    timings["load_s"] = time.perf_counter() - t

    torch.manual_seed(args.seed)
    t = time.perf_counter()
    result = prune(model, ids, setting=setting, batch_size=args.batch_size, device=args.device,
                   offload=not args.no_offload, progress=not args.no_progress)
    timings["prune_s"] = time.perf_counter() - t

    report = {
        "model": str(model_path(args.model)),
        "base_model": given,
        "revision": revision_of(model_path(args.model)),
        "dtype": resolve_dtype(args.dtype, dev),
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
        **methods.outlier_reports(result.report),
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
        (tmp / "README.md").write_text(model_card(report))
    ov = report["sparsity_report"]["overall"]
    print(f"pruned {args.method} {args.pattern} -> {out}: sparsity {ov['sparsity']:.4f} "
          f"({ov['pruned']}/{ov['total']}), mask hash {result.mask_hash[:16]}")
    return 0
