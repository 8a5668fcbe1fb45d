"""OWL (Yin et al., 2024): outlier-weighted layerwise sparsity.

A block with more outliers (Wanda scores above M x the block mean) keeps more
weights. Pure functions; the engine feeds them the Wanda scores of a dense pass.
"""
from __future__ import annotations

import numpy as np
import torch


def outlier_ratio(scores, m: float) -> float:
    """Percentage of scores above m * mean, taken over all of a block's matrices.

    `scores` is a zero-argument callable returning an iterable of score tensors;
    it is called twice (sum, then count) so no block-sized concatenation is held.
    """
    total, acc = 0, 0.0
    for s in scores():
        total += s.numel()
        acc += s.double().sum().item()
    # fp32 threshold, as torch.mean(fp32 scores) * m gives upstream.
    thresh = torch.tensor(acc / total, dtype=torch.float32) * m
    count = sum(int((s > thresh.to(s.device)).sum().item()) for s in scores())
    return count / total * 100


def _normalise(ratios, scale):
    r = np.asarray(ratios, dtype=np.float64)
    span = r.max() - r.min() if len(r) else 0.0
    if len(r) < 2 or span == 0:
        # The reference divides by zero here (one block, or all ratios equal).
        return None
    return (r - r.min()) * (1 / span * scale)


def block_sparsities(ratios, sparsity: float, lam: float = 0.08) -> list[float]:
    """Map outlier ratios to per-block sparsities: min-max to [0, 2*lam], mean shifted to 1 - s.

    Degenerate input (one block, or equal ratios) gives the uniform sparsity.
    Results are clamped like the reference Wanda-OWL: <= 0 becomes 0.01; >= 1 is capped below 1.
    """
    a = _normalise(ratios, lam * 2)
    if a is None:
        return [float(sparsity)] * len(ratios)
    a = a - np.mean(a) + (1 - sparsity)
    out = []
    for keep in a:
        s = 1 - float(keep)
        out.append(0.01 if s <= 0 else min(s, 1 - 1e-6))
    return out


def block_nm(ratios, n: int, m: int, lam: float = 0.08) -> list[int]:
    """N:M OWL (the reference's 'structure' variant): N_i = N - round(normalised ratio - mean).

    Ratios are min-max normalised to [0, lam]; with the default lam every block keeps N.
    """
    a = _normalise(ratios, lam)
    if a is None:
        return [n] * len(ratios)
    a = np.round(a - np.mean(a))
    return [int(min(max(n - x, 0), m - 1)) for x in a]
