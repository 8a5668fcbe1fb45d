"""DSnoT (Zhang et al., 2024): training-free prune-and-regrow on top of an initial mask.

Each output row carries a reconstruction error err = sum of dsnot_metric over
its pruned weights (dsnot_metric = W * mean input). Every cycle a row swaps one
pruned weight back in and one kept weight out, choosing sides so that err moves
towards zero, while |err| stays above a threshold. All rows advance in lockstep.

Fixes relative to the reference code (see docs/pruning.md):
* regrow candidates are the pruned weights only; a row that runs out of
  candidates (or, in N:M mode, has no kept weight left in the group) stops,
  instead of "regrowing" kept weights and pruning extra ones (which broke the
  sparsity and the N:M pattern when cycles outnumbered the candidates);
* kept weights whose dsnot_metric is exactly 0 keep their own index in the
  prune order (the reference replaced them by column 0);
* a row also stops when the candidate it would take has the wrong sign (its
  weights of the needed sign are used up), instead of going on to prune its
  highest-scored kept weights of the other sign, which pushes err away from zero.
"""
from __future__ import annotations

import torch

from calib.prune.masks import nm_groups_order


def _regrow_order(dsnot_metric, pruned_idx, kept_idx, var, pow_of_var):
    """Initial err per row, its sign, and the pruned columns sorted by metric / var^pow."""
    regrow = dsnot_metric.clone()
    regrow.scatter_(1, kept_idx, 0)
    err = torch.sum(regrow, dim=1, keepdim=True)
    if pow_of_var:
        regrow /= torch.pow(var.reshape(1, -1), pow_of_var)
    # Ties break by column index, as a stable sort over the whole row would.
    cols = torch.sort(pruned_idx, dim=1)[0]
    order = torch.sort(regrow.gather(1, cols), dim=1, stable=True)[1]
    return err, torch.sign(err), cols.gather(1, order)


def _prune_order(dsnot_metric, wanda, pruned_idx, n_kept):
    """Kept columns by ascending Wanda score, then: negative metric first (in that
    order), zeros, then positive metric in reverse order."""
    w = wanda.clone()
    w.scatter_(1, pruned_idx, float("inf"))
    kept = torch.sort(w, dim=1, stable=True)[1][:, :n_kept]
    val = dsnot_metric.gather(1, kept)
    pos = torch.arange(n_kept, device=kept.device).expand_as(kept)
    key = torch.where(val < 0, pos, torch.where(val == 0, n_kept + pos, 3 * n_kept - 1 - pos))
    return kept.gather(1, torch.argsort(key, dim=1))


def _pick(order, lo, hi, from_top):
    """Entry at the hi pointer where from_top, else at lo; and whether the range is empty."""
    empty = lo > hi
    pos = torch.where(from_top, hi, lo).clamp(0, max(order.shape[1] - 1, 0))
    return order.gather(1, pos), empty


def _towards_zero(err, r_val, p_val):
    """Rows whose candidates do not push err away from zero: the regrown weight's
    metric has err's sign (or is 0) and the pruned one's the opposite sign (or is 0).
    Once a row runs out of candidates of the right sign it stops; the reference code
    walks on into the wrong-signed ones (see docs/pruning.md, DSnoT at narrow widths)."""
    s = torch.sign(err)
    ok = r_val * s >= 0
    return ok if p_val is None else ok & (p_val * s <= 0)


def _advance(lo, hi, from_top):
    step = from_top.long()
    return lo + (1 - step), hi - step


def dsnot_unstructured(
    dsnot_metric, initial_metric, wanda, var, sparsity,
    max_cycle_time=50, update_threshold=0.1, pow_of_var_regrowing=1.0, same_sign=False,
    on_cycle=None,
):
    """Mask (True = pruned) after up to max_cycle_time swap cycles. on_cycle, if
    given, is called after every cycle with (cycle, mask, err, active); the mask is
    updated in place afterwards, so a callback that keeps it must copy it."""
    rows, cols = dsnot_metric.shape
    k = int(cols * sparsity)
    sorted_idx = torch.sort(initial_metric, dim=-1, stable=True)[1]
    pruned_idx, kept_idx = sorted_idx[:, :k], sorted_idx[:, k:]
    mask = torch.zeros(dsnot_metric.shape, dtype=torch.bool, device=dsnot_metric.device)
    mask.scatter_(1, pruned_idx, True)
    if k == 0 or k == cols or max_cycle_time <= 0:
        return mask

    err, sign0, regrow_order = _regrow_order(dsnot_metric, pruned_idx, kept_idx, var, pow_of_var_regrowing)
    prune_order = _prune_order(dsnot_metric, wanda, pruned_idx, cols - k)
    zeros = torch.zeros((rows, 1), dtype=torch.long, device=mask.device)
    r_lo, r_hi = zeros.clone(), zeros + (k - 1)
    p_lo, p_hi = zeros.clone(), zeros + (cols - k - 1)
    active = torch.ones((rows, 1), dtype=torch.bool, device=mask.device)
    row_ids = torch.arange(rows, device=mask.device)

    for cycle in range(1, max_cycle_time + 1):
        if not active.any():
            break
        grow_top = err > 0   # err > 0: regrow the most positive candidate
        prune_top = err < 0  # err < 0: prune from the positive end
        r_idx, r_empty = _pick(regrow_order, r_lo, r_hi, grow_top)
        p_idx, p_empty = _pick(prune_order, p_lo, p_hi, prune_top)
        r_val = dsnot_metric.gather(1, r_idx)
        p_val = dsnot_metric.gather(1, p_idx)
        active = active & ~r_empty & ~p_empty & (err.abs() > update_threshold)
        active = active & _towards_zero(err, r_val, p_val)
        if same_sign:
            active = active & (torch.sign(err + p_val - r_val) == sign0)
        a = active[:, 0]
        mask[row_ids[a], p_idx[a, 0]] = True
        mask[row_ids[a], r_idx[a, 0]] = False
        err = torch.where(active, err + p_val, err)
        err = torch.where(active, err - r_val, err)
        r_lo, r_hi = _advance(r_lo, r_hi, grow_top)
        p_lo, p_hi = _advance(p_lo, p_hi, prune_top)
        if on_cycle is not None:
            on_cycle(cycle, mask, err, active)
    return mask


def dsnot_nm(
    dsnot_metric, initial_metric, var, n, m,
    max_cycle_time=50, update_threshold=0.1, pow_of_var_regrowing=1.0, same_sign=True,
    on_cycle=None,
):
    """As dsnot_unstructured, with the regrown weight paired inside its M-group."""
    rows, cols = dsnot_metric.shape
    groups = nm_groups_order(initial_metric, m)
    pruned_idx = groups[..., :n].reshape(rows, -1)
    kept_idx = groups[..., n:].reshape(rows, -1)
    mask = torch.zeros(dsnot_metric.shape, dtype=torch.bool, device=dsnot_metric.device)
    mask.scatter_(1, pruned_idx, True)
    if n == 0 or max_cycle_time <= 0:
        return mask

    err, sign0, regrow_order = _regrow_order(dsnot_metric, pruned_idx, kept_idx, var, pow_of_var_regrowing)
    # Score of each kept weight still available for pruning; inf = pruned or used.
    avail = initial_metric.float().clone()
    avail.scatter_(1, pruned_idx, float("inf"))
    npruned = pruned_idx.shape[1]
    zeros = torch.zeros((rows, 1), dtype=torch.long, device=mask.device)
    r_lo, r_hi = zeros.clone(), zeros + (npruned - 1)
    active = torch.ones((rows, 1), dtype=torch.bool, device=mask.device)
    row_ids = torch.arange(rows, device=mask.device)
    offsets = torch.arange(m, device=mask.device).reshape(1, -1)

    for cycle in range(1, max_cycle_time + 1):
        if not active.any():
            break
        grow_top = err > 0
        r_idx, r_empty = _pick(regrow_order, r_lo, r_hi, grow_top)
        start = r_idx - r_idx % m
        group = start + offsets
        best = torch.sort(avail.gather(1, group), dim=1, stable=True)
        p_idx = start + best[1][:, :1]
        none_left = torch.isinf(best[0][:, :1])
        r_val = dsnot_metric.gather(1, r_idx)
        p_val = dsnot_metric.gather(1, p_idx)
        active = active & ~r_empty & ~none_left & (err.abs() > update_threshold)
        active = active & _towards_zero(err, r_val, None)
        if same_sign:
            active = active & (torch.sign(err + p_val - r_val) == sign0)
        a = active[:, 0]
        mask[row_ids[a], p_idx[a, 0]] = True
        mask[row_ids[a], r_idx[a, 0]] = False
        avail[row_ids[a], p_idx[a, 0]] = float("inf")
        err = torch.where(active, err + p_val, err)
        err = torch.where(active, err - r_val, err)
        r_lo, r_hi = _advance(r_lo, r_hi, grow_top)
        if on_cycle is not None:
            on_cycle(cycle, mask, err, active)
    return mask
