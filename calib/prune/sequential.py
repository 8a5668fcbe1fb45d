"""Layer-wise plumbing: find a decoder's blocks, capture block 0's inputs, run one
block at a time over the calibration activations, gather input statistics, offload.

Per decoder block i:
  1. one dense pass of the block over all calibration samples, in batches, with
     pre-hooks accumulating each linear's input statistics;
  2. a mask for every linear of the block from those statistics (the caller's);
  3. one pass of the pruned block, whose outputs overwrite the activation buffer
     in place and become the inputs of block i+1.
Only block i sits on the compute device when offload=True; a single activation
buffer [nsamples, seqlen, hidden] is the only per-sample state.

Knows nothing of pruning methods: masks come from a callback.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from calib.errors import CalibError
from calib.models import OPENLM, check_architecture, context_length, num_layers
from calib.models import device as resolve_device
from calib.prune.methods import SUPPORTED_ARCHS  # noqa: F401 - re-exported
from calib.prune.stats import BlockStats


# ---------------------------------------------------------------- structure
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
    n = num_layers(model.config)
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


# ---------------------------------------------------------------- capture
class _Stop(Exception):
    pass


class _Recorder(nn.Module):
    """Stands in for a decoder block during capture: records its call, passes x through."""

    def __init__(self, block, pair: bool = False):
        super().__init__()
        # Not a submodule: moving the model must not move the real block.
        object.__setattr__(self, "_inner", block)
        self.stop = False
        self.call = None
        self.hidden = None
        self.pair = pair  # the model unpacks (hidden, past key/value) from each block (open_lm)

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
        return (hidden_states, None) if self.pair else hidden_states


def _swiglu_by_linears(ff, x):
    """xformers' SwiGLU (open_lm's ffn_type swiglu) as calls of its own w12 and w3 linears, so
    their input hooks fire: silu(first half of w12 x) * second half, then w3; the same math as its
    fused op and as open_lm's swiglu_torch."""
    gate, up = ff.w12(x).chunk(2, dim=-1)
    return ff.w3(F.silu(gate) * up)


@contextmanager
def linears_called(blocks):
    """Blocks whose feed-forward reads its linears' weights in a fused op (xformers' SwiGLU in
    open_lm) call them as modules while calib walks the blocks, then get their forward back."""
    fused = [b.feed_forward for b in blocks if type(getattr(b, "feed_forward", None)).__name__ == "SwiGLU"
             and getattr(b.feed_forward, "w12", None) is not None and hasattr(b.feed_forward, "w3")]
    for ff in fused:
        ff.forward = _swiglu_by_linears.__get__(ff)
    try:
        yield
    finally:
        for ff in fused:
            del ff.forward


@contextmanager
def serial_on_cpu(dev):
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


class Sequential:
    """One model's blocks run one at a time over a shared activation buffer.

    ``timings`` sums seconds per phase: capture, statistics passes, masks, output passes.
    """

    def __init__(self, model, batch_size: int, device=None, offload: bool = True):
        self.model, self.batch_size, self.offload = model, batch_size, offload
        self.dev = torch.device(resolve_device(device))
        self.blocks_name, self.blocks = find_blocks(model)
        self.pair = model.config.model_type == OPENLM
        self.calls = None
        self.timings = {"capture_s": 0.0, "stats_pass_s": 0.0, "masks_s": 0.0, "output_pass_s": 0.0}

    def park(self, block):
        if self.offload and self.dev.type != "cpu":
            block.to("cpu")

    def load(self, block):
        if self.offload:
            block.to(self.dev)

    def capture(self, ids):
        """Block-0 inputs of every sample (one buffer) and each block's call arguments."""
        t0 = time.perf_counter()
        real = list(self.blocks)
        recs = [_Recorder(b, self.pair) for b in real]
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
        """Block ``i`` over the buffer in batches; ``write`` replaces the buffer by its outputs."""
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
        """Input statistics of ``linears`` from one pass of block ``i``."""
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

    def prune_blocks(self, ids, needs: dict, mask_block, progress: bool = False, desc: str = ""):
        """Block by block: statistics (when ``needs`` any), then ``mask_block(i, linears,
        stats)`` masks the block in place, then the pruned block's outputs feed block i+1."""
        buf = self.capture(ids) if needs else None
        last = len(self.blocks) - 1
        with linears_called(self.blocks):
            for i, block in enumerate(self._bar(self.blocks, desc, progress)):
                self.load(block)
                linears = find_linears(block)
                stats = self.gather_stats(i, block, buf, linears, write=False, **needs) if needs else {}
                t0 = time.perf_counter()
                with serial_on_cpu(self.dev):
                    mask_block(i, linears, stats)
                del stats
                self.timings["masks_s"] += time.perf_counter() - t0
                if needs and i < last:
                    t0 = time.perf_counter()
                    self.forward(i, block, buf, write=True)
                    self.timings["output_pass_s"] += time.perf_counter() - t0
                self.park(block)

    def dense_pass(self, ids, per_block, progress: bool = False, desc: str = "", **needs):
        """One dense layer-wise pass (outputs stay dense): ``per_block(i, linears, stats)``
        for every block, returned as a list."""
        buf = self.capture(ids)
        out = []
        with linears_called(self.blocks):
            for i, block in enumerate(self._bar(self.blocks, desc, progress)):
                self.load(block)
                linears = find_linears(block)
                stats = self.gather_stats(i, block, buf, linears, write=i < len(self.blocks) - 1, **needs)
                out.append(per_block(i, linears, stats))
                self.park(block)
        return out

    @staticmethod
    def _bar(it, desc, progress):
        from tqdm import tqdm
        return tqdm(it, desc=f"prune {desc}", unit="block", disable=not progress, leave=False)
