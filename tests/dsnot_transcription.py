"""The DSnoT loop of the original repository (zyxxmu/DSnoT, lib/prune.py, prune_DSnoT),
transcribed for tests: written from reading that loop, step for step, with its
pointer pairs, its conditions and its stopping rule as they are, in plain torch.

What the original does and calib's walk="guarded" does not: the regrow list is
every column of the row sorted by metric / var^pow with the kept columns at 0;
the prune list maps kept weights of metric 0 to the row's lowest-Wanda kept
column; each cycle every row's pointer moves, stopped rows included; a stopped
row still writes the mask (prune candidate kept, regrow candidate pruned); the
loop runs until every row has stopped or the cycles are spent; a pointer past a
list's end raises (torch.gather). Nothing here is guarded against that: a test
that gets an error or a broken pattern from it is outside the original's range.

after_cycle(cycle, mask, r, p), if given, sees the mask after every cycle and the
columns each row took as its regrow (r) and prune (p) candidates in it.
"""
from __future__ import annotations

import torch


def _pointer_pair(rows, last):
    """(rows, 2): column 0 the low pointer (from 0, steps +1), column 1 the high one (from last, steps -1)."""
    at = torch.zeros((rows, 2), dtype=torch.long)
    at[:, 1] = last
    step = torch.ones((rows, 2), dtype=torch.long)
    step[:, 1] = -1
    return at, step


def _take(at, step, which, order):
    """Entry of `order` at pointer `which` (0 low, 1 high) per row; that pointer then moves."""
    pos = at.gather(1, which)
    entry = order.gather(1, pos)  # raises past either end, as the original does
    at.scatter_(1, which, pos + step.gather(1, which))
    return entry


def _regrow_list(metric, kept, var, pow_of_var):
    """Initial err (metric summed over the pruned columns), its sign, and every column
    sorted by metric / var^pow with the kept columns at 0."""
    grow = metric.clone()
    grow.scatter_(1, kept, 0)
    err = grow.sum(dim=1, keepdim=True)
    if pow_of_var:
        grow /= torch.pow(var.reshape(1, -1), pow_of_var)
    return err, torch.sign(err), torch.sort(grow, dim=1, stable=True)[1]


def _negative_then_positive_reversed(values):
    """Per row, slot positions: those of negative values in order, then position 0 for
    every value that is neither, then those of positive values from the last back."""
    out = []
    for row in values.tolist():
        neg = [j for j, v in enumerate(row) if v < 0]
        pos = [j for j, v in enumerate(row) if v > 0]
        out.append(neg + [0] * (len(row) - len(neg) - len(pos)) + pos[::-1])
    return torch.tensor(out, dtype=torch.long).reshape(values.shape)


def _write(mask, p, r, update, err, p_val, r_val):
    mask.scatter_(1, p, update)
    mask.scatter_(1, r, ~update)
    err += torch.where(update, p_val, torch.zeros_like(p_val))
    err -= torch.where(update, r_val, torch.zeros_like(r_val))


def original_unstructured(metric, initial, wanda, var, sparsity, max_cycle_time=50, update_threshold=0.1,
                          pow_of_var_regrowing=1.0, without_same_sign=True, after_cycle=None):
    rows, cols = metric.shape
    mask = torch.zeros((rows, cols), dtype=torch.bool)
    n_pruned = int(cols * sparsity)
    n_kept = cols - n_pruned
    pruned, kept = torch.split(torch.sort(initial, dim=-1, stable=True)[1], [n_pruned, n_kept], dim=1)
    mask.scatter_(1, pruned, True)
    err, sign0, regrow_list = _regrow_list(metric, kept, var, pow_of_var_regrowing)
    w = wanda.clone()
    w.scatter_(1, pruned, float("inf"))
    by_wanda = torch.split(torch.sort(w, dim=1, stable=True)[1], [n_kept, n_pruned], dim=1)[0]
    prune_list = by_wanda.gather(1, _negative_then_positive_reversed(metric.gather(1, by_wanda)))
    g_at, g_step = _pointer_pair(rows, cols - 1)
    p_at, p_step = _pointer_pair(rows, n_kept - 1)
    update = torch.ones((rows, 1), dtype=torch.bool)
    cycle = 0
    while not (bool(torch.all(~update)) or cycle >= max_cycle_time):
        cycle += 1
        r = _take(g_at, g_step, (err > 0).long(), regrow_list)
        r_val = metric.gather(1, r)
        p = _take(p_at, p_step, (err < 0).long(), prune_list)
        p_val = metric.gather(1, p)
        after = err + p_val - r_val
        update = update & (err.abs() > update_threshold)
        if not without_same_sign:
            update = update & (sign0 == torch.sign(after))
        _write(mask, p, r, update, err, p_val, r_val)
        if after_cycle is not None:
            after_cycle(cycle, mask, r, p)
    return mask


def original_nm(metric, initial, var, n, m, max_cycle_time=50, update_threshold=0.1, pow_of_var_regrowing=1.0,
                after_cycle=None):
    rows, cols = metric.shape
    score = initial.clone()  # the original overwrites its initial metric
    mask = torch.zeros((rows, cols), dtype=torch.bool)
    pruned, kept = [], []
    for g in range(0, cols, m):
        order = torch.sort(score[:, g:g + m].float(), dim=1)[1] + g
        pruned.append(order[:, :n])
        kept.append(order[:, n:])
    pruned, kept = torch.cat(pruned, dim=1), torch.cat(kept, dim=1)
    mask.scatter_(1, pruned, True)
    err, sign0, regrow_list = _regrow_list(metric, kept, var, pow_of_var_regrowing)
    g_at, g_step = _pointer_pair(rows, cols - 1)
    score.scatter_(1, pruned, float("inf"))
    used = score.max(dim=1, keepdim=True)[0] + 1
    in_group = torch.arange(m).reshape(1, -1)
    update = torch.ones((rows, 1), dtype=torch.bool)
    cycle = 1
    while not (bool(torch.all(~update)) or cycle > max_cycle_time):
        cycle += 1
        which = (err > 0).long()
        r = regrow_list.gather(1, g_at.gather(1, which))
        r_val = metric.gather(1, r)
        first = r - r % m
        p = first + torch.topk(score.gather(1, first + in_group), 1, dim=1, largest=False)[1]
        p_val = metric.gather(1, p)
        after = err + p_val - r_val
        update = update & (sign0 == torch.sign(after)) & (err.abs() > update_threshold)
        score.scatter_(1, p, used)
        _write(mask, p, r, update, err, p_val, r_val)
        g_at.scatter_(1, which, g_at.gather(1, which) + g_step.gather(1, which))
        if after_cycle is not None:
            after_cycle(cycle - 1, mask, r, p)
    return mask
