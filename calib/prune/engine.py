"""``prune()``: one pruning run of a decoder-only Hugging Face model, and its report.

The contract (as torchao's sparsity front end): the run finds masks and zeroes the
pruned weights in place; the weights stay dense, so any runtime can load them.
The mask hash identifies the masks bit for bit. Method knowledge is in
``methods.py``, the block-by-block plumbing in ``sequential.py``.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import torch

from calib.errors import CalibError
from calib.prune import methods
from calib.prune.sequential import Sequential, check_calib, check_widths, find_linears

@dataclass
class PruneResult:
    report: dict
    mask_hash: str
    masks: dict | None = None
    timings: dict = field(default_factory=dict)


def _packbits(mask: torch.Tensor) -> bytes:
    flat = mask.flatten().to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=flat.device)
    return (flat.reshape(-1, 8) * weights).sum(dim=1, dtype=torch.uint8).cpu().numpy().tobytes()


class _Masks:
    """The masks of a run, in order: their hash, per-matrix counts, optionally the masks."""

    def __init__(self, keep: bool):
        self.hash = hashlib.sha256()
        self.kept = {} if keep else None
        self.matrices = {}

    def add(self, full: str, block: int, mask, target: float):
        pruned = int(mask.sum().item())
        self.matrices[full] = {"block": block, "shape": list(mask.shape), "pruned": pruned,
                               "sparsity": pruned / mask.numel(), "target": target}
        self.hash.update(full.encode() + b"\0" + repr(tuple(mask.shape)).encode() + b"\0")
        self.hash.update(_packbits(mask))
        if self.kept is not None:
            self.kept[full] = mask.detach().to("cpu", copy=True)

    def report(self, extra: dict) -> dict:
        blocks = {}
        for row in self.matrices.values():
            b = blocks.setdefault(row["block"], {"index": row["block"], "pruned": 0, "total": 0,
                                                 "target": row["target"]})
            b["pruned"] += row["pruned"]
            b["total"] += row["shape"][0] * row["shape"][1]
        for b in blocks.values():
            b["sparsity"] = b["pruned"] / b["total"]
        pruned = sum(b["pruned"] for b in blocks.values())
        total = sum(b["total"] for b in blocks.values())
        return {**extra, "matrices": self.matrices, "blocks": [blocks[k] for k in sorted(blocks)],
                "overall": {"pruned": pruned, "total": total, "sparsity": pruned / total if total else 0.0}}


def _prune_blocks(seq: Sequential, masks: _Masks, setting: methods.Setting, ids, plan: list, progress: bool):
    """Mask every linear of every block; ``plan[i]`` = (sparsity, nm) of block i."""
    method, opts = setting.mask_method, setting.options

    def mask_block(i, linears, stats):
        s, nm = plan[i]
        hinv = methods.InverseHessians(opts)
        for name, lin in linears.items():
            if (nm is None and s == 0) or (nm is not None and nm[0] == 0):
                m = torch.zeros(lin.weight.shape, dtype=torch.bool, device=lin.weight.device)
            else:
                m = methods.mask(method, name, lin, stats.get(name), s, nm, opts, hinv)
                lin.weight.data.masked_fill_(m, 0)
            masks.add(f"{seq.blocks_name}.{i}.{name}", i, m, s)

    seq.prune_blocks(ids, setting.needs, mask_block, progress, desc=method)


def _outlier_ratios(seq: Sequential, ids, setting: methods.Setting, progress: bool) -> list[float]:
    """The outlier ratio of every block (the method's ``outliers``), from a dense layer-wise pass
    that gathers each linear's input norms."""
    record = setting.record

    def ratio(i, linears, stats):
        return record.outliers(linears, stats, setting.options)

    return seq.dense_pass(ids, ratio, progress, desc=f"{record.name} ratios", sq=True)


@torch.no_grad()
def prune(
    model,
    calib_ids: torch.Tensor | None = None,
    method: str = methods.DEFAULT_METHOD,
    sparsity: float | None = None,
    pattern: str = "unstructured",
    batch_size: int = methods.BATCH_SIZE,
    device=None,
    offload: bool = True,
    keep_masks: bool = False,
    progress: bool = False,
    setting: methods.Setting | None = None,
    **method_options,
) -> PruneResult:
    """Prune `model` in place; weights stay dense, pruned entries are exact zeros.

    calib_ids: LongTensor [nsamples, seqlen] (ignored where the method needs no data, and
    by OWL on magnitude for everything but the outlier pass). The setting is ``setting`` (a
    ``methods.Setting``, checked where it was made), or else made here from method,
    sparsity (default 0.5; with an N:M pattern omitted or N/M), pattern and
    method_options (the keys of OPTIONS[method]). Deterministic: same inputs, same masks.

    offload=True keeps one block at a time on `device` and leaves the model on
    the CPU; offload=False moves the whole model to `device` and leaves it there.
    On an error the in-memory model may be partly pruned (the CLI writes nothing).
    """
    t_start = time.perf_counter()
    if setting is None:
        setting = methods.Setting.of(method, sparsity, pattern, method_options)
    if int(batch_size) < 1:
        raise CalibError(f"batch_size {batch_size} must be >= 1")
    seq = Sequential(model, int(batch_size), device, offload)
    check_widths(seq.blocks, setting.nm)
    methods.check_linears(setting.method, setting.options, find_linears(seq.blocks[0]))
    if not setting.data_free:
        if calib_ids is None:
            raise CalibError(f"method {setting.method!r} needs calibration ids")
        check_calib(calib_ids, model.config)
        calib_ids = calib_ids.long()

    model.eval()
    if not offload:
        model.to(seq.dev)
    masks = _Masks(keep_masks)
    extra = {"method": setting.method, "pattern": setting.pattern, "sparsity": setting.sparsity,
             "options": setting.options}
    ratios = _outlier_ratios(seq, calib_ids, setting, progress) if setting.outlier_pass else None
    plan = setting.block_plan(len(seq.blocks), ratios)
    if ratios is not None:  # under the method's name (methods.outlier_reports)
        extra[setting.method] = {"outlier_ratios": ratios, "block_plan": [
            {"sparsity": p[0]} if p[1] is None else {"n": p[1][0], "m": p[1][1]} for p in plan]}
    _prune_blocks(seq, masks, setting, None if setting.data_free else calib_ids, plan, progress)
    seq.timings["total_s"] = time.perf_counter() - t_start
    extra["calibration"] = None if calib_ids is None else {
        "nsamples": int(calib_ids.shape[0]), "seqlen": int(calib_ids.shape[1])}
    digest = masks.hash.hexdigest()
    rep = masks.report(extra)
    rep["mask_hash"] = digest
    rep["timings"] = dict(seq.timings)
    return PruneResult(report=rep, mask_hash=digest, masks=masks.kept, timings=dict(seq.timings))
