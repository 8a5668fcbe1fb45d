"""Running input statistics of a block's linears, gathered by forward pre-hooks.

Constant memory, fp32, any number of calibration samples: nothing is stored
per sample. Linears that read the very same input tensor (q/k/v, gate/up)
share one accumulator, so each statistic is computed once per input.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


class InputStats:
    """Per input channel, over the sequences seen so far:

    sq    (1/N_seq) sum_seq sum_tok x^2          -- Wanda's scaler_row
    mean  (1/N_seq) sum_seq sum_tok x            -- DSnoT's mean input (sum over tokens)
    var   mean over sequences of the variance over tokens (biased); all
          sequences have the same length, so this is the token-weighted mean
    H     (2/N_seq) sum x x^T                    -- SparseGPT's Hessian
    """

    def __init__(self, cols: int, device, sq=False, mean=False, var=False, hessian=False):
        z = lambda *shape: torch.zeros(shape, dtype=torch.float32, device=device)  # noqa: E731
        self.nseq = 0
        self.sq = z(cols) if sq else None
        self.mean = z(cols) if mean else None
        self._var_sum = z(cols) if var else None
        self.H = z(cols, cols) if hessian else None

    @torch.no_grad()
    def add(self, x: torch.Tensor):
        if x.dim() == 2:
            x = x.unsqueeze(0)
        x = x.float()
        # Batched reductions, then the reference's per-sequence running rescale,
        # so a batch gives the same fp32 numbers as one sequence at a time.
        sq = torch.linalg.vector_norm(x, ord=2, dim=1) ** 2 if self.sq is not None else None
        sm = x.sum(dim=1) if self.mean is not None else None
        for b in range(x.shape[0]):
            if self._var_sum is not None:  # per sequence: [T, C] temporaries, not [B, T, C]
                self._var_sum += x[b].var(dim=0, unbiased=False)
            old, new = self.nseq, self.nseq + 1
            self.nseq = new
            if sq is not None:
                self.sq *= old / new
                self.sq += sq[b] / new
            if sm is not None:
                self.mean *= old / new
                self.mean += sm[b] / new
            if self.H is not None:
                self.H *= old / new
                xs = math.sqrt(2 / new) * x[b]
                self.H += xs.t().matmul(xs)

    @property
    def var(self):
        return self._var_sum / max(self.nseq, 1)

    def finite(self) -> bool:
        return all(
            bool(torch.isfinite(t).all())
            for t in (self.sq, self.mean, self._var_sum, self.H)
            if t is not None
        )


class BlockStats:
    """Hooks every given linear; stats[name] is its InputStats after a pass."""

    def __init__(self, linears: dict[str, nn.Linear], **needs):
        self.stats: dict[str, InputStats] = {}
        self._needs = needs
        self._last = (None, None)
        self._handles = [
            lin.register_forward_pre_hook(self._hook(name, lin.in_features, lin.weight.device))
            for name, lin in linears.items()
        ]

    def _hook(self, name, cols, device):
        def fn(module, args):
            x = args[0]
            last_x, last_acc = self._last
            if x is last_x:  # same tensor object as the previous linear: share
                acc = self.stats.setdefault(name, last_acc)
                if acc is last_acc:
                    return
            else:
                acc = self.stats.get(name)
                if acc is None:
                    acc = self.stats[name] = InputStats(cols, device, **self._needs)
            acc.add(x)
            # Holding x keeps its identity unique until the next hook fires.
            self._last = (x, acc)
        return fn

    def end_batch(self):
        self._last = (None, None)

    def remove(self):
        for h in self._handles:
            h.remove()
        self._handles = []
        self._last = (None, None)
