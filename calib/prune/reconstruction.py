"""Reconstruction error of a pruned linear on its calibration inputs, and DSnoT's
cycles traced against it (the diagnostic of issue 16; docs/pruning.md).

For a mask (True = pruned) the error is ||W X - W' X||^2 / ||W X||^2 over every
calibration token the layer reads. It splits exactly into
  mean part        N * ||D mu||^2      what DSnoT's err measures (err = D . sum_tok x)
  covariance part  N * tr(D S D^T)     what it does not see
with D = W on the pruned entries, mu the mean input over tokens, S the covariance.

InputRecorder captures what each linear reads in a sequential pruning run: the
engine's statistics pass of its block, while the weight is still dense.
dsnot_trace replays either DSnoT walk (walk="guarded" or "original").
"""
from __future__ import annotations

import torch
import torch.nn as nn

from calib.prune import dsnot as _dsnot
from calib.prune.methods import dsnot_metric
from calib.prune.masks import wanda_score
from calib.prune.stats import InputStats


class InputRecorder:
    """Context manager: stats[name] (an InputStats with sq, mean, var and the Gram
    matrix H) of the inputs every decoder linear reads before its weight is pruned.

    "Before" is told by the weight's count of exact zeros, so this needs a method
    that prunes something in every linear (any sparsity > 0) and a dense start."""

    def __init__(self, model, blocks_name="model.layers"):
        prefix = blocks_name + "."
        self.linears = {n: m for n, m in model.named_modules()
                        if isinstance(m, nn.Linear) and n.startswith(prefix)}
        self.stats: dict[str, InputStats] = {}
        self._handles = []

    def __enter__(self):
        for name, lin in self.linears.items():
            zeros = int((lin.weight == 0).sum())
            self.stats[name] = InputStats(lin.in_features, lin.weight.device, sq=True, mean=True, var=True,
                                          hessian=True)
            self._handles.append(lin.register_forward_pre_hook(self._hook(name, zeros)))
        return self

    def _hook(self, name, dense_zeros):
        def fn(module, args):
            if int((module.weight == 0).sum()) == dense_zeros:
                self.stats[name].add(args[0])
        return fn

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []


def output_energy(W, st: InputStats) -> float:
    """||W X||^2 summed over every recorded token."""
    W = W.double()
    G = st.H.double() * (st.nseq / 2)  # H = (2 / nseq) sum x x^T
    return float(((W @ G) * W).sum())


def relative_error(W, mask, st: InputStats, seqlen: int, energy: float | None = None) -> tuple[float, float]:
    """(total, mean part) of ||W X - W' X||^2 / ||W X||^2 for `mask` (True = pruned)."""
    energy = output_energy(W, st) if energy is None else energy
    D = (W * mask).double()
    G = st.H.double() * (st.nseq / 2)
    total = float(((D @ G) * D).sum())
    mu = st.mean.double() / seqlen  # per-token mean: st.mean sums over the tokens of a sequence
    mean_part = st.nseq * seqlen * float(((D @ mu) ** 2).sum())
    return total / energy, mean_part / energy


def dsnot_inputs(W, st: InputStats):
    """DSnoT's inputs from a linear's statistics, as the engine builds them with a
    Wanda start: (dsnot_metric, initial_metric, wanda, var)."""
    wanda = wanda_score(W, st.sq)
    return dsnot_metric(W, st), wanda, wanda, st.var


def dsnot_trace(W, st: InputStats, sparsity: float, seqlen: int, **options) -> dict:
    """Run unstructured DSnoT (Wanda start) on one linear and record, for cycle 0
    (Wanda's mask) and after every cycle: the relative error and its mean part,
    DSnoT's own mean |err| over rows, and how many rows are still swapping.
    Cycles after every row has stopped repeat the last values. "stopped" maps each
    of calib's own stopping rules (dsnot.dsnot_unstructured's on_cycle) to the
    cycle at which it ended each row, 0 where it did not."""
    metric, initial, wanda, var = dsnot_inputs(W, st)
    energy = output_energy(W, st)
    cycles = int(options.get("max_cycle_time", 50))
    out = {k: [] for k in ("error", "mean_part", "abs_err", "active")}
    stopped = {}

    def note(mask, err, active):
        total, mean_part = relative_error(W, mask, st, seqlen, energy)
        out["error"].append(total)
        out["mean_part"].append(mean_part)
        out["abs_err"].append(float(err.abs().mean()))
        out["active"].append(int(active.sum()))

    def on_cycle(cycle, mask, err, active, stops):
        note(mask, err, active)
        for reason, rows in stops.items():
            at = stopped.setdefault(reason, torch.zeros(W.shape[0], dtype=torch.long))
            at[rows[:, 0]] = cycle

    start = _dsnot.dsnot_unstructured(metric, initial, wanda, var, sparsity, max_cycle_time=0)
    note(start, (metric * start).sum(dim=1), torch.ones(W.shape[0], dtype=torch.bool))
    mask = _dsnot.dsnot_unstructured(metric, initial, wanda, var, sparsity, on_cycle=on_cycle, **options)
    for v in out.values():  # rows all stopped early: the mask stays as it is
        v.extend([v[-1]] * (cycles + 1 - len(v)))
    out["mask"] = mask
    out["stopped"] = stopped
    return out
