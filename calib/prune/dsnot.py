"""DSnoT (Zhang et al., 2024): training-free prune-and-regrow on top of an initial mask.

Each output row carries a reconstruction error err = sum of dsnot_metric over
its pruned weights (dsnot_metric = W * mean input). Every cycle a row swaps one
pruned weight back in and one kept weight out, choosing sides so that err moves
towards zero, while |err| stays above a threshold. All rows advance in lockstep.

Two walks (docs/pruning.md, "DSnoT on narrow layers"):

walk="guarded" (the default) fixes the original code (zyxxmu/DSnoT, lib/prune.py):
* regrow candidates are the pruned weights only; a row that runs out of
  candidates (or, in N:M mode, has no kept weight left in the group) stops,
  instead of "regrowing" kept weights and pruning extra ones (which broke the
  sparsity and the N:M pattern when cycles outnumbered the candidates);
* kept weights whose dsnot_metric is exactly 0 keep their own index in the
  prune order (the original replaced them by column 0);
* stopped rows leave the mask alone;
* a row also stops when the candidate it would take has the wrong sign (its
  weights of the needed sign are used up), instead of going on to prune its
  highest-scored kept weights of the other sign, which pushes err away from zero.

walk="original" is the original loop as published: regrow candidates sorted over
the whole row (kept weights at 0), zero-metric kept weights mapped to the row's
lowest-Wanda kept weight, every row's pointers advancing every cycle, and stopped
rows still writing the mask (the reverse of a swap: the prune candidate kept, the
regrow candidate pruned). It departs only where the original fails: a row whose
pointer leaves its list (an IndexError there) or whose write would change its
number of pruned weights (the per-row sparsity, or its M-group's N) is frozen from
that cycle on: no write, err kept, as if it had stopped without writing.
"""
from __future__ import annotations

import torch

from calib.errors import check_choice
from calib.prune.masks import nm_groups_order

# The two walks below. The dsnot record (methods.py) offers the same choices; this module does not
# import it (the record imports this math, not the other way; tests/test_methods.py holds them equal).
WALKS = ("guarded", "original")


def _regrow_order(dsnot_metric, pruned_idx, kept_idx, var, pow_of_var, whole_row=False):
    """Initial err per row, its sign, and the pruned columns sorted by metric / var^pow
    (whole_row: every column, the kept ones at 0, as the original sorts them)."""
    regrow = dsnot_metric.clone()
    regrow.scatter_(1, kept_idx, 0)
    err = torch.sum(regrow, dim=1, keepdim=True)
    if pow_of_var:
        regrow /= torch.pow(var.reshape(1, -1), pow_of_var)
    if whole_row:
        return err, torch.sign(err), torch.sort(regrow, dim=1, stable=True)[1]
    # Ties break by column index, as a stable sort over the whole row would.
    cols = torch.sort(pruned_idx, dim=1)[0]
    order = torch.sort(regrow.gather(1, cols), dim=1, stable=True)[1]
    return err, torch.sign(err), cols.gather(1, order)


def _prune_order(dsnot_metric, wanda, pruned_idx, n_kept, zeros_to_first=False):
    """Kept columns by ascending Wanda score, then: negative metric first (in that
    order), zeros, then positive metric in reverse order (zeros_to_first: every
    zero slot holds the first kept column instead, as in the original)."""
    w = wanda.clone()
    w.scatter_(1, pruned_idx, float("inf"))
    kept = torch.sort(w, dim=1, stable=True)[1][:, :n_kept]
    val = dsnot_metric.gather(1, kept)
    pos = torch.arange(n_kept, device=kept.device).expand_as(kept)
    key = torch.where(val < 0, pos, torch.where(val == 0, n_kept + pos, 3 * n_kept - 1 - pos))
    slots = torch.argsort(key, dim=1)
    order = kept.gather(1, slots)
    if zeros_to_first:  # the original: neither sign (0, or NaN) -> the lowest-Wanda kept column
        v = val.gather(1, slots)
        order = torch.where((v < 0) | (v > 0), order, kept[:, :1])
    return order


def _pick(order, lo, hi, from_top):
    """Entry at the hi pointer where from_top, else at lo; and whether the range is empty."""
    empty = lo > hi
    pos = torch.where(from_top, hi, lo).clamp(0, max(order.shape[1] - 1, 0))
    return order.gather(1, pos), empty


def _towards_zero(err, r_val, p_val):
    """Rows whose candidates do not push err away from zero: the regrown weight's
    metric has err's sign (or is 0) and the pruned one's the opposite sign (or is 0).
    Once a row runs out of candidates of the right sign it stops; walk="original"
    walks on into the wrong-signed ones (see docs/pruning.md, DSnoT on narrow layers)."""
    s = torch.sign(err)
    ok = r_val * s >= 0
    return ok if p_val is None else ok & (p_val * s <= 0)


def _swapping(active, err, threshold, empty, towards, same_sign, after, sign0):
    """The guarded walk's rows that swap this cycle, and its own stops among the rows still going
    (|err| above the threshold): ``no_candidate`` (a list used up) and ``wrong_sign`` (the guard);
    with same_sign, a swap must also keep err's initial sign (``after``: err after the swap)."""
    going = active & (err.abs() > threshold)
    no_candidate = going & empty
    going = going & ~no_candidate
    wrong_sign = going & ~towards
    active = going & towards
    if same_sign:
        active = active & (torch.sign(after) == sign0)
    return active, no_candidate, wrong_sign


def _advance(lo, hi, from_top):
    step = from_top.long()
    return lo + (1 - step), hi - step


def dsnot_unstructured(
    dsnot_metric, initial_metric, wanda, var, sparsity,
    max_cycle_time=50, update_threshold=0.1, pow_of_var_regrowing=1.0, same_sign=False,
    walk="guarded", on_cycle=None,
):
    """Mask (True = pruned) after up to max_cycle_time swap cycles. on_cycle, if
    given, is called after every cycle with (cycle, mask, err, active, stops):
    stops maps each of calib's own stopping rules to the rows it ended in that
    cycle, rows the original's rules would have let go on ("wrong_sign", the
    guard, and "no_candidate" for walk "guarded"; "off_list" and "pattern", the
    departures, for "original"). The mask is updated in place afterwards, so a
    callback that keeps it must copy it."""
    check_choice("DSnoT walk", walk, WALKS)
    rows, cols = dsnot_metric.shape
    k = int(cols * sparsity)
    sorted_idx = torch.sort(initial_metric, dim=-1, stable=True)[1]
    pruned_idx, kept_idx = sorted_idx[:, :k], sorted_idx[:, k:]
    mask = torch.zeros(dsnot_metric.shape, dtype=torch.bool, device=dsnot_metric.device)
    mask.scatter_(1, pruned_idx, True)
    if k == 0 or k == cols or max_cycle_time <= 0:
        return mask
    if walk == "original":
        err, sign0, regrow_order = _regrow_order(dsnot_metric, pruned_idx, kept_idx, var, pow_of_var_regrowing,
                                                 whole_row=True)
        prune_order = _prune_order(dsnot_metric, wanda, pruned_idx, cols - k, zeros_to_first=True)
        return _walk_original(mask, dsnot_metric, err, sign0, regrow_order, prune_order, None, None,
                              max_cycle_time, update_threshold, same_sign, on_cycle)

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
        active, no_candidate, wrong_sign = _swapping(active, err, update_threshold, r_empty | p_empty,
                                                     _towards_zero(err, r_val, p_val), same_sign,
                                                     err + p_val - r_val, sign0)
        a = active[:, 0]
        mask[row_ids[a], p_idx[a, 0]] = True
        mask[row_ids[a], r_idx[a, 0]] = False
        err = torch.where(active, err + p_val, err)
        err = torch.where(active, err - r_val, err)
        r_lo, r_hi = _advance(r_lo, r_hi, grow_top)
        p_lo, p_hi = _advance(p_lo, p_hi, prune_top)
        if on_cycle is not None:
            on_cycle(cycle, mask, err, active, {"wrong_sign": wrong_sign, "no_candidate": no_candidate})
    return mask


def dsnot_nm(
    dsnot_metric, initial_metric, var, n, m,
    max_cycle_time=50, update_threshold=0.1, pow_of_var_regrowing=1.0, same_sign=True,
    walk="guarded", on_cycle=None,
):
    """As dsnot_unstructured, with the regrown weight paired inside its M-group."""
    check_choice("DSnoT walk", walk, WALKS)
    rows, cols = dsnot_metric.shape
    groups = nm_groups_order(initial_metric, m)
    pruned_idx = groups[..., :n].reshape(rows, -1)
    kept_idx = groups[..., n:].reshape(rows, -1)
    mask = torch.zeros(dsnot_metric.shape, dtype=torch.bool, device=dsnot_metric.device)
    mask.scatter_(1, pruned_idx, True)
    if n == 0 or max_cycle_time <= 0:
        return mask
    if walk == "original":
        err, sign0, regrow_order = _regrow_order(dsnot_metric, pruned_idx, kept_idx, var, pow_of_var_regrowing,
                                                 whole_row=True)
        avail = initial_metric.clone()  # in its own dtype, as the original's topk sees it
        avail.scatter_(1, pruned_idx, float("inf"))
        return _walk_original(mask, dsnot_metric, err, sign0, regrow_order, None, avail, m,
                              max_cycle_time, update_threshold, same_sign, on_cycle)

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
        active, no_candidate, wrong_sign = _swapping(active, err, update_threshold, r_empty | none_left,
                                                     _towards_zero(err, r_val, None), same_sign,
                                                     err + p_val - r_val, sign0)
        a = active[:, 0]
        mask[row_ids[a], p_idx[a, 0]] = True
        mask[row_ids[a], r_idx[a, 0]] = False
        avail[row_ids[a], p_idx[a, 0]] = float("inf")
        err = torch.where(active, err + p_val, err)
        err = torch.where(active, err - r_val, err)
        r_lo, r_hi = _advance(r_lo, r_hi, grow_top)
        if on_cycle is not None:
            on_cycle(cycle, mask, err, active, {"wrong_sign": wrong_sign, "no_candidate": no_candidate})
    return mask


# ------------------------------------------------------------ walk="original"

def _walk_original(mask, dsnot_metric, err, sign0, regrow_order, prune_order, avail, m,
                   cycles, threshold, same_sign, on_cycle):
    """The original's loop (unstructured: prune_order; N:M: avail and m). Every row's
    pointers move every cycle; a row stops for good at |err| <= threshold or, with
    same_sign, when err would change sign, and then keeps writing (_write_original)
    until the last row stops. Rows frozen where the original would fail make no writes."""
    rows, cols = mask.shape
    zeros = torch.zeros((rows, 1), dtype=torch.long, device=mask.device)
    r_lo, r_hi = zeros.clone(), zeros + (cols - 1)
    if prune_order is not None:
        n_kept = prune_order.shape[1]
        p_lo, p_hi = zeros.clone(), zeros + (n_kept - 1)
    else:
        offsets = torch.arange(m, device=mask.device).reshape(1, -1)
    update = torch.ones((rows, 1), dtype=torch.bool, device=mask.device)
    frozen = torch.zeros_like(update)

    for cycle in range(1, cycles + 1):
        if not update.any():
            break
        grow_top = err > 0
        r_pos = torch.where(grow_top, r_hi, r_lo)
        off_list = (r_pos < 0) | (r_pos >= cols)
        r_idx = regrow_order.gather(1, r_pos.clamp(0, cols - 1))
        if prune_order is not None:
            prune_top = err < 0
            p_pos = torch.where(prune_top, p_hi, p_lo)
            off_list = off_list | (p_pos < 0) | (p_pos >= n_kept)
            p_idx = prune_order.gather(1, p_pos.clamp(0, n_kept - 1))
        else:  # lowest initial score in the regrown weight's group, used ones at inf (ties: topk's pick)
            start = r_idx - r_idx % m
            p_idx = start + torch.topk(avail.gather(1, start + offsets), 1, dim=1, largest=False)[1]
        off_list = off_list & ~frozen  # the original stops with an index error here
        frozen = frozen | off_list
        r_val = dsnot_metric.gather(1, r_idx)
        p_val = dsnot_metric.gather(1, p_idx)
        update = update & ~frozen & (err.abs() > threshold)
        if same_sign:
            update = update & (torch.sign(err + p_val - r_val) == sign0)
        if prune_order is None:
            avail.scatter_(1, p_idx, float("inf"))  # every row's, stopped ones too
        pattern = _write_original(mask, p_idx, r_idx, update, ~frozen)
        frozen = frozen | pattern
        update = update & ~frozen
        err = torch.where(update, err + p_val, err)
        err = torch.where(update, err - r_val, err)
        r_lo, r_hi = _advance(r_lo, r_hi, grow_top)
        if prune_order is not None:
            p_lo, p_hi = _advance(p_lo, p_hi, prune_top)
        if on_cycle is not None:
            on_cycle(cycle, mask, err, update, {"off_list": off_list, "pattern": pattern})
    return mask


def _write_original(mask, p_idx, r_idx, update, live):
    """The original's two writes, mask[p] = update and then mask[r] = not update (a
    swap for a row still updating, its reverse for a stopped one), made for the live
    rows they leave with as many pruned weights as before. Returns the live rows
    whose writes would change that number; they are not written."""
    old_p, old_r = mask.gather(1, p_idx).long(), mask.gather(1, r_idx).long()
    u = update.long()
    change = torch.where(p_idx == r_idx, (1 - u) - old_p, (u - old_p) + ((1 - u) - old_r))
    breaks = live & (change != 0)
    w = (live & ~breaks)[:, 0]
    rows = torch.arange(mask.shape[0], device=mask.device)[w]
    mask[rows, p_idx[w, 0]] = update[w, 0]
    mask[rows, r_idx[w, 0]] = ~update[w, 0]
    return breaks
