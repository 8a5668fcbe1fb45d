"""Pure tensor math: importance scores and the masks they induce.

Every function takes tensors and returns tensors; none touches a module.
A mask is a bool tensor shaped like the weight, True where the weight is pruned.
Tie-breaking is deterministic everywhere: stable sorts, lowest column first.
"""
from __future__ import annotations

import torch


def wanda_score(weight: torch.Tensor, scaler_row: torch.Tensor) -> torch.Tensor:
    """|W| * sqrt(mean over sequences of the per-channel sum of x^2), in fp32."""
    # Same expression (and so the same rounding) as the reference code:
    # |W| in the weight dtype promoted against an fp32 statistic.
    return torch.abs(weight) * torch.sqrt(scaler_row.reshape(1, -1))


def row_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Prune the int(cols * sparsity) lowest scores of each output row."""
    rows, cols = score.shape
    k = int(cols * sparsity)
    mask = torch.zeros(score.shape, dtype=torch.bool, device=score.device)
    if k > 0:
        idx = torch.sort(score, dim=-1, stable=True)[1][:, :k]
        mask.scatter_(1, idx, True)
    return mask


def matrix_threshold_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """One threshold per matrix: prune every score <= the int(numel * s)-th smallest.

    Like the reference magnitude pruner this prunes int(numel*s)+1 entries
    (more on ties): the threshold value itself is pruned.
    """
    flat = score.flatten()
    k = int(flat.numel() * sparsity)
    thresh = torch.kthvalue(flat.float(), k + 1).values.to(score.dtype)
    return score <= thresh


def nm_groups_order(score: torch.Tensor, m: int) -> torch.Tensor:
    """Column indices of each M-group, each group sorted by ascending score."""
    rows, cols = score.shape
    groups = score.float().reshape(rows, cols // m, m)
    order = torch.sort(groups, dim=2, stable=True)[1]
    base = torch.arange(0, cols, m, device=score.device).reshape(1, -1, 1)
    return order + base  # [rows, cols // m, m]


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """In each row and each group of M consecutive columns, prune the N lowest."""
    mask = torch.zeros(score.shape, dtype=torch.bool, device=score.device)
    if n > 0:
        idx = nm_groups_order(score, m)[..., :n].reshape(score.shape[0], -1)
        mask.scatter_(1, idx, True)
    return mask


def _alpha_mask(alpha, sorted_vals, score, cumsum, row_sum):
    # Prune, per row, the smallest entries whose running sum stays within
    # alpha * the row total. The reference code gathers at index -1 when no
    # entry qualifies (an error on CPU); we prune nothing in that row instead.
    within = cumsum <= (row_sum * alpha).reshape(-1, 1)
    count = within.sum(dim=1, keepdim=True)
    thresh = torch.gather(sorted_vals, 1, (count - 1).clamp(min=0))
    thresh = torch.where(count > 0, thresh, torch.full_like(thresh, -float("inf")))
    mask = score <= thresh
    return mask, (mask == True).sum() / mask.numel()  # noqa: E712 - fp32 ratio as upstream


def wanda_variant_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Wanda's appendix variant: bisect alpha until the matrix sparsity is within 0.001."""
    sorted_vals = torch.sort(score, dim=-1, stable=True)[0]
    cumsum = torch.cumsum(sorted_vals, dim=1)
    row_sum = score.sum(dim=1)
    alpha, lo, hi = 0.4, 0.0, 0.8
    mask, cur = _alpha_mask(alpha, sorted_vals, score, cumsum, row_sum)
    while torch.abs(cur - sparsity) > 0.001 and hi - lo >= 0.001:
        if cur > sparsity:
            alpha, hi = (alpha + lo) / 2.0, alpha
        else:
            alpha, lo = (alpha + hi) / 2.0, alpha
        mask, cur = _alpha_mask(alpha, sorted_vals, score, cumsum, row_sum)
    return mask


def check_nm(mask: torch.Tensor, n: int, m: int) -> bool:
    """True when every M-group of every row has exactly N pruned entries."""
    rows, cols = mask.shape
    if cols % m:
        return False
    return bool((mask.reshape(rows, cols // m, m).sum(-1) == n).all())
