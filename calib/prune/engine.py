"""Layer-wise sequential pruning of decoder-only Hugging Face models.

Data flow, per decoder block i:
  1. one dense pass of the block over all calibration samples, in batches,
     with pre-hooks accumulating each linear's input statistics;
  2. masks for every linear of the block from those statistics;
  3. one pass of the pruned block, whose outputs overwrite the activation
     buffer in place and become the inputs of block i+1.
Only block i sits on the compute device when offload=True; a single activation
buffer [nsamples, seqlen, hidden] is the only per-sample state.
"""
from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from calib.errors import CalibError, check_choice
from calib.prune import dsnot as _dsnot
from calib.prune import owl as _owl
from calib.prune.masks import (
    matrix_threshold_mask, nm_mask, row_mask, wanda_score, wanda_variant_mask,
)
from calib.prune.sparsegpt import inverse_hessian, saliency, sparsegpt_prune
from calib.prune.stats import BlockStats

SUPPORTED_ARCHS = ("llama", "mistral", "qwen2", "qwen3")
METHODS = ("magnitude", "wanda", "sparsegpt", "dsnot", "owl")

# Every method option, with the reference implementations' defaults.
OPTIONS = {
    "magnitude": {},
    "wanda": {"use_variant": False},
    "sparsegpt": {"blocksize": 128, "percdamp": 0.01},
    "dsnot": {
        "initial_method": "wanda", "max_cycle_time": 50, "update_threshold": 0.1,
        "pow_of_var_regrowing": 1.0, "skip_layer": "mlp", "skip_sub_layer": "no_skip",
        "without_dsnot": False, "same_sign": None, "percdamp": 0.01,
    },
    "owl": {
        "base": "wanda", "owl_m": 5.0, "owl_lambda": 0.08, "use_variant": False,
        "blocksize": 128, "percdamp": 0.01,
    },
}
DSNOT_INITIAL = ("wanda", "sparsegpt", "magnitude")
OWL_BASES = ("wanda", "sparsegpt", "magnitude")


@dataclass
class PruneResult:
    report: dict
    mask_hash: str
    masks: dict | None = None
    timings: dict = field(default_factory=dict)


class _Stop(Exception):
    pass


class _Recorder(nn.Module):
    """Stands in for a decoder block during capture: records its call, passes x through."""

    def __init__(self, block):
        super().__init__()
        # Not a submodule: moving the model must not move the real block.
        object.__setattr__(self, "_inner", block)
        self.stop = False
        self.call = None
        self.hidden = None

    def __getattr__(self, name):  # e.g. attention_type, read by some models
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(object.__getattribute__(self, "_inner"), name)

    def forward(self, hidden_states, *args, **kwargs):
        if self.call is None:
            self.call = (args, kwargs)
        self.hidden = hidden_states
        if self.stop:
            raise _Stop
        return hidden_states


# ---------------------------------------------------------------- validation

def parse_pattern(pattern: str):
    """'unstructured' -> None; 'N:M' -> (N, M) with 0 < N < M."""
    if pattern == "unstructured":
        return None
    try:
        n, m = (int(x) for x in str(pattern).split(":"))
    except ValueError:
        raise CalibError(f"unknown pattern {pattern!r}; valid: unstructured, 2:4, 4:8, or any N:M with 0 < N < M")
    if not 0 < n < m:
        raise CalibError(f"pattern {pattern!r} needs 0 < N < M (got N={n}, M={m}); e.g. 2:4 or 4:8")
    return n, m


def resolve_sparsity(sparsity, nm) -> float:
    if nm is not None:
        implied = nm[0] / nm[1]
        if sparsity is not None and abs(float(sparsity) - implied) > 1e-9:
            raise CalibError(
                f"sparsity {sparsity} conflicts with pattern {nm[0]}:{nm[1]}, which implies {implied:g}; "
                f"omit --sparsity or pass {implied:g}"
            )
        return implied
    s = 0.5 if sparsity is None else sparsity
    try:
        s = float(s)
    except (TypeError, ValueError):
        raise CalibError(f"sparsity {sparsity!r} is not a number; valid range [0, 1)")
    if not 0 <= s < 1:
        raise CalibError(f"sparsity {s} is outside the valid range [0, 1)")
    return s


def resolve_options(method: str, options: dict) -> dict:
    check_choice("pruning method", method, METHODS)
    opts = dict(OPTIONS[method])
    unknown = sorted(set(options) - set(opts))
    if unknown:
        valid = ", ".join(opts) or "none"
        raise CalibError(f"unknown option(s) {', '.join(unknown)} for method {method!r}; valid: {valid}")
    opts.update(options)
    if method == "dsnot":
        check_choice("DSnoT initial method", opts["initial_method"], DSNOT_INITIAL)
        if int(opts["max_cycle_time"]) < 0:
            raise CalibError(f"max_cycle_time {opts['max_cycle_time']} must be >= 0")
    if method == "owl":
        check_choice("OWL base method", opts["base"], OWL_BASES)
        if not opts["owl_lambda"] >= 0 or not opts["owl_m"] > 0:
            raise CalibError(f"OWL needs owl_lambda >= 0 and owl_m > 0 (got {opts['owl_lambda']}, {opts['owl_m']})")
    if "blocksize" in opts and int(opts["blocksize"]) < 1:
        raise CalibError(f"blocksize {opts['blocksize']} must be >= 1")
    if "percdamp" in opts and not float(opts["percdamp"]) > 0:
        raise CalibError(f"percdamp {opts['percdamp']} must be > 0")
    return opts


def check_architecture(config):
    mt = getattr(config, "model_type", None)
    if mt not in SUPPORTED_ARCHS:
        raise CalibError(
            f"unsupported architecture {mt!r}; supported: {', '.join(SUPPORTED_ARCHS)} "
            f"(decoder-only models with nn.Linear projections)"
        )


def context_length(config):
    return getattr(config, "max_position_embeddings", None)


def check_calib(calib_ids, config):
    if not isinstance(calib_ids, torch.Tensor) or calib_ids.dim() != 2:
        raise CalibError("calibration ids must be a 2-D LongTensor [nsamples, seqlen]")
    if calib_ids.dtype not in (torch.int64, torch.int32):
        raise CalibError(f"calibration ids must be integer token ids, got dtype {calib_ids.dtype}")
    n, t = calib_ids.shape
    if n < 1:
        raise CalibError(f"nsamples {n} must be >= 1")
    if t < 1:
        raise CalibError(f"seqlen {t} must be >= 1")
    ctx = context_length(config)
    if ctx is not None and t > ctx:
        raise CalibError(f"seqlen {t} is longer than the model's context ({ctx} tokens)")


def find_blocks(model):
    """(dotted name, ModuleList) of the decoder blocks."""
    check_architecture(model.config)
    n = model.config.num_hidden_layers
    for name, mod in model.named_modules():
        if (isinstance(mod, nn.ModuleList) and len(mod) == n and n > 0
                and all(type(b) is type(mod[0]) for b in mod)
                and any(isinstance(x, nn.Linear) for x in mod[0].modules())):
            return name, mod
    raise CalibError(f"could not find the {n} decoder blocks of {type(model).__name__}")


def find_linears(block) -> dict[str, nn.Linear]:
    return {name: m for name, m in block.named_modules() if isinstance(m, nn.Linear)}


def check_widths(blocks, nm):
    if nm is None:
        return
    for i, block in enumerate(blocks):
        for name, lin in find_linears(block).items():
            if lin.in_features % nm[1]:
                raise CalibError(
                    f"pattern {nm[0]}:{nm[1]}: width {lin.in_features} of block {i} {name} "
                    f"is not divisible by M={nm[1]}"
                )


# ---------------------------------------------------------------- the run

class _Run:
    def __init__(self, model, method, sparsity, nm, opts, batch_size, device, offload, keep_masks, progress):
        self.model, self.method, self.sparsity, self.nm, self.opts = model, method, sparsity, nm, opts
        self.batch_size, self.offload, self.keep_masks, self.progress = batch_size, offload, keep_masks, progress
        self.dev = torch.device(device) if device is not None else (
            torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
        self.blocks_name, self.blocks = find_blocks(model)
        self.hash = hashlib.sha256()
        self.masks = {} if keep_masks else None
        self.matrices, self.block_rows = {}, []
        self.timings = {"capture_s": 0.0, "stats_pass_s": 0.0, "masks_s": 0.0, "output_pass_s": 0.0}

    # -- plumbing

    def _park(self, block):
        if self.offload and self.dev.type != "cpu":
            block.to("cpu")

    def _load(self, block):
        if self.offload:
            block.to(self.dev)

    def capture(self, ids):
        """Block-0 inputs of every sample (one buffer) and each block's call arguments."""
        t0 = time.perf_counter()
        real = list(self.blocks)
        recs = [_Recorder(b) for b in real]
        act_dev = torch.device("cpu") if self.offload else self.dev
        buf = None
        try:
            for i, r in enumerate(recs):
                self.blocks[i] = r
            if self.offload:
                self.model.to(self.dev)  # the blocks are swapped out: only embeddings etc. move
            # Arguments (mask, rotary position_embeddings, ...) from one sample; they
            # broadcast over any batch. Each block is asked: masks can differ per layer type.
            recs[-1].stop = True
            try:
                self.model(input_ids=ids[:1].to(self.dev), use_cache=False)
            except _Stop:
                pass
            self.calls = [r.call for r in recs]
            recs[-1].stop, recs[0].stop = False, True
            for s in range(0, ids.shape[0], self.batch_size):
                try:
                    self.model(input_ids=ids[s:s + self.batch_size].to(self.dev), use_cache=False)
                except _Stop:
                    pass
                h = recs[0].hidden
                if buf is None:
                    buf = torch.empty((ids.shape[0], *h.shape[1:]), dtype=h.dtype, device=act_dev)
                buf[s:s + h.shape[0]].copy_(h)
                recs[0].hidden = None
        finally:
            if self.offload and self.dev.type != "cpu":
                self.model.to("cpu")
            for i, b in enumerate(real):
                self.blocks[i] = b
        if not torch.isfinite(buf).all():
            raise CalibError("non-finite activations (NaN or inf) in the input of decoder block 0 (the embeddings)")
        self.timings["capture_s"] += time.perf_counter() - t0
        return buf

    def forward(self, i, block, buf, write, hub=None):
        args, kwargs = self.calls[i]
        for s in range(0, buf.shape[0], self.batch_size):
            x = buf[s:s + self.batch_size].to(self.dev)
            out = block(x, *args, **kwargs)
            if isinstance(out, (tuple, list)):
                out = out[0]
            if not torch.isfinite(out).all():
                raise CalibError(
                    f"non-finite activations (NaN or inf) in the output of decoder block {i} "
                    f"({self.blocks_name}.{i}); the model or the calibration data is broken"
                )
            if write:
                buf[s:s + out.shape[0]].copy_(out)
            if hub is not None:
                hub.end_batch()

    def gather_stats(self, i, block, buf, linears, write, **needs):
        t0 = time.perf_counter()
        hub = BlockStats(linears, **needs)
        try:
            self.forward(i, block, buf, write=write, hub=hub)
        finally:
            hub.remove()
        for name in linears:
            st = hub.stats.get(name)
            if st is None:
                raise CalibError(f"{self.blocks_name}.{i}.{name} received no input during the calibration pass")
            if not st.finite():
                raise CalibError(f"non-finite activations (NaN or inf) reach {self.blocks_name}.{i}.{name}")
        self.timings["stats_pass_s"] += time.perf_counter() - t0
        return hub.stats

    def record(self, i, name, lin, mask, target):
        full = f"{self.blocks_name}.{i}.{name}"
        pruned = int(mask.sum().item())
        self.matrices[full] = {
            "block": i, "shape": list(mask.shape), "pruned": pruned,
            "sparsity": pruned / mask.numel(), "target": target,
        }
        self.hash.update(full.encode() + b"\0" + repr(tuple(mask.shape)).encode() + b"\0")
        self.hash.update(_packbits(mask))
        if self.masks is not None:
            self.masks[full] = mask.detach().to("cpu", copy=True)

    # -- methods

    def needs(self, method):
        if method == "wanda":
            return {"sq": True}
        if method == "sparsegpt":
            return {"hessian": True}
        if method == "dsnot":
            return {"sq": True, "mean": True, "var": True,
                    "hessian": self.opts["initial_method"] == "sparsegpt"}
        return {}

    def _hinv(self, st, name, cache):
        key = id(st)
        if key not in cache:
            cache[key] = inverse_hessian(st.H, float(self.opts["percdamp"]), name)
        return cache[key]

    def mask_for(self, method, name, lin, st, s, nm, cache):
        W = lin.weight.data
        o = self.opts
        if method == "magnitude":
            score = torch.abs(W)
            return nm_mask(score, *nm) if nm else matrix_threshold_mask(score, s)
        if method == "wanda":
            score = wanda_score(W, st.sq)
            if nm:
                return nm_mask(score, *nm)
            return wanda_variant_mask(score, s) if o.get("use_variant") else row_mask(score, s)
        if method == "sparsegpt":
            U, dead = self._hinv(st, name, cache)
            newW, mask = sparsegpt_prune(W, U, dead, s, *(nm or (0, 0)), blocksize=int(o["blocksize"]))
            W.copy_(newW.to(W.dtype))
            return mask
        # dsnot
        wanda = wanda_score(W, st.sq)
        init = o["initial_method"]
        if init == "wanda":
            initial = wanda
        elif init == "magnitude":
            initial = torch.abs(W)
        else:
            U, dead = self._hinv(st, name, cache)
            Wf = W.float().clone()
            Wf[:, dead] = 0
            initial = saliency(Wf, U)
        parts = name.split(".")
        skip = (o["without_dsnot"] or parts[0] == o["skip_layer"]
                or (len(parts) > 1 and parts[1] == o["skip_sub_layer"]))
        if nm:
            if skip:
                return nm_mask(initial, *nm)
            return _dsnot.dsnot_nm(
                W * st.mean.reshape(1, -1), initial, st.var, *nm,
                max_cycle_time=int(o["max_cycle_time"]), update_threshold=float(o["update_threshold"]),
                pow_of_var_regrowing=float(o["pow_of_var_regrowing"]),
                same_sign=True if o["same_sign"] is None else bool(o["same_sign"]))
        if skip:
            return row_mask(initial, s)
        return _dsnot.dsnot_unstructured(
            W * st.mean.reshape(1, -1), initial, wanda, st.var, s,
            max_cycle_time=int(o["max_cycle_time"]), update_threshold=float(o["update_threshold"]),
            pow_of_var_regrowing=float(o["pow_of_var_regrowing"]),
            same_sign=False if o["same_sign"] is None else bool(o["same_sign"]))

    def prune_blocks(self, method, ids, per_block):
        """per_block[i] = (sparsity, nm) for block i."""
        needs = self.needs(method)
        buf = self.capture(ids) if needs else None
        last = len(self.blocks) - 1
        for i, block in enumerate(self._bar(self.blocks, method)):
            s, nm = per_block[i]
            self._load(block)
            linears = find_linears(block)
            stats = self.gather_stats(i, block, buf, linears, write=False, **needs) if needs else {}
            t0 = time.perf_counter()
            cache = {}
            with _serial_on_cpu(self.dev):
                for name, lin in linears.items():
                    if (nm is None and s == 0) or (nm is not None and nm[0] == 0):
                        mask = torch.zeros(lin.weight.shape, dtype=torch.bool, device=lin.weight.device)
                    else:
                        mask = self.mask_for(method, name, lin, stats.get(name), s, nm, cache)
                        lin.weight.data.masked_fill_(mask, 0)
                    self.record(i, name, lin, mask, s)
            del cache, stats
            self.timings["masks_s"] += time.perf_counter() - t0
            if needs and i < last:
                t0 = time.perf_counter()
                self.forward(i, block, buf, write=True)
                self.timings["output_pass_s"] += time.perf_counter() - t0
            self._park(block)

    def owl_ratios(self, ids):
        """Outlier ratio of every block from a dense layer-wise pass (outputs stay dense)."""
        buf = self.capture(ids)
        ratios = []
        for i, block in enumerate(self._bar(self.blocks, "owl ratios")):
            self._load(block)
            linears = find_linears(block)
            stats = self.gather_stats(i, block, buf, linears, write=i < len(self.blocks) - 1, sq=True)

            def scores():
                return (wanda_score(lin.weight.data, stats[name].sq) for name, lin in linears.items())

            ratios.append(_owl.outlier_ratio(scores, float(self.opts["owl_m"])))
            self._park(block)
        return ratios

    def _bar(self, it, desc):
        from tqdm import tqdm
        return tqdm(it, desc=f"prune {desc}", unit="block", disable=not self.progress, leave=False)

    def report(self, extra):
        blocks = {}
        for name, row in self.matrices.items():
            b = blocks.setdefault(row["block"], {"index": row["block"], "pruned": 0, "total": 0, "target": row["target"]})
            b["pruned"] += row["pruned"]
            b["total"] += row["shape"][0] * row["shape"][1]
        for b in blocks.values():
            b["sparsity"] = b["pruned"] / b["total"]
        pruned = sum(b["pruned"] for b in blocks.values())
        total = sum(b["total"] for b in blocks.values())
        return {
            **extra,
            "matrices": self.matrices,
            "blocks": [blocks[k] for k in sorted(blocks)],
            "overall": {"pruned": pruned, "total": total, "sparsity": pruned / total if total else 0.0},
        }


@contextmanager
def _serial_on_cpu(dev):
    """One intra-op thread for the mask phase on CPU: it is thousands of small ops
    (SparseGPT's column sweep, DSnoT's cycles) where thread fork/join costs more
    than it saves -- 40x more on a busy machine. Results do not depend on it."""
    if dev.type != "cpu":
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _packbits(mask: torch.Tensor) -> bytes:
    flat = mask.flatten().to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=flat.device)
    return (flat.reshape(-1, 8) * weights).sum(dim=1, dtype=torch.uint8).cpu().numpy().tobytes()


# ---------------------------------------------------------------- public API

@torch.no_grad()
def prune(
    model,
    calib_ids: torch.Tensor | None = None,
    method: str = "wanda",
    sparsity: float | None = None,
    pattern: str = "unstructured",
    batch_size: int = 8,
    device=None,
    offload: bool = True,
    keep_masks: bool = False,
    progress: bool = False,
    **method_options,
) -> PruneResult:
    """Prune `model` in place; weights stay dense, pruned entries are exact zeros.

    calib_ids: LongTensor [nsamples, seqlen] (ignored by magnitude, and by OWL on
    magnitude for everything but the outlier pass). sparsity defaults to 0.5;
    with an N:M pattern it must be omitted or equal N/M. method_options are the
    keys of OPTIONS[method]. Deterministic: same inputs, same masks.

    offload=True keeps one block at a time on `device` and leaves the model on
    the CPU; offload=False moves the whole model to `device` and leaves it there.
    On an error the in-memory model may be partly pruned (the CLI writes nothing).
    """
    t_start = time.perf_counter()
    nm = parse_pattern(pattern)
    s = resolve_sparsity(sparsity, nm)
    opts = resolve_options(method, method_options)
    if int(batch_size) < 1:
        raise CalibError(f"batch_size {batch_size} must be >= 1")
    run = _Run(model, method, s, nm, opts, int(batch_size), device, offload, keep_masks, progress)
    check_widths(run.blocks, nm)
    data_free = method == "magnitude" or (nm is None and s == 0)
    if not data_free:
        if calib_ids is None:
            raise CalibError(f"method {method!r} needs calibration ids")
        check_calib(calib_ids, model.config)
        calib_ids = calib_ids.long()

    model.eval()
    if not offload:
        model.to(run.dev)
    nblocks = len(run.blocks)
    extra = {"method": method, "pattern": pattern, "sparsity": s, "options": opts}
    if data_free:
        run.prune_blocks("magnitude", None, [(s, nm)] * nblocks)
    elif method == "owl":
        ratios = run.owl_ratios(calib_ids)
        lam = float(opts["owl_lambda"])
        if nm:
            plan = [(s, (n_i, nm[1])) for n_i in _owl.block_nm(ratios, nm[0], nm[1], lam)]
        else:
            plan = [(s_i, None) for s_i in _owl.block_sparsities(ratios, s, lam)]
        extra["owl"] = {"outlier_ratios": ratios, "block_plan": [
            {"sparsity": p[0]} if p[1] is None else {"n": p[1][0], "m": p[1][1]} for p in plan]}
        run.prune_blocks(opts["base"], calib_ids, plan)
    else:
        run.prune_blocks(method, calib_ids, [(s, nm)] * nblocks)
    run.timings["total_s"] = time.perf_counter() - t_start
    extra["calibration"] = None if calib_ids is None else {
        "nsamples": int(calib_ids.shape[0]), "seqlen": int(calib_ids.shape[1])}
    digest = run.hash.hexdigest()
    rep = run.report(extra)
    rep["mask_hash"] = digest
    rep["timings"] = dict(run.timings)
    return PruneResult(report=rep, mask_hash=digest, masks=run.masks, timings=dict(run.timings))
