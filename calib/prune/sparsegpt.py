"""SparseGPT (Frantar & Alistarh, 2023): prune column by column, pushing each
pruned weight's error onto the not-yet-visited columns through the inverse Hessian.

Pure functions of (W, H); the engine supplies H from a running accumulator.
"""
from __future__ import annotations

import torch

from calib.errors import CalibError

# Damping multipliers tried in order when the Cholesky factorisation fails.
DAMP_RETRIES = (1.0, 10.0, 100.0)


def inverse_hessian(H: torch.Tensor, percdamp: float = 0.01, name: str = "?"):
    """Upper Cholesky factor of the damped inverse Hessian, plus the dead-column mask.

    Works on a copy: several linears reading the same input share one H.
    Retries with 10x and 100x the damping before giving up with a CalibError.
    """
    if not torch.isfinite(H).all():
        raise CalibError(f"SparseGPT: the Hessian of {name} contains NaN or inf")
    H = H.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    mean_diag = torch.mean(torch.diag(H))
    for mult in DAMP_RETRIES:
        Hd = H.clone()
        diag = torch.arange(Hd.shape[0], device=Hd.device)
        Hd[diag, diag] += (percdamp * mult) * mean_diag
        L, info = torch.linalg.cholesky_ex(Hd)
        if info.item() != 0:
            continue
        U, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(L), upper=True)
        if info.item() == 0:
            return U, dead
    tried = ", ".join(f"{percdamp * m:g}" for m in DAMP_RETRIES)
    raise CalibError(
        f"SparseGPT: Cholesky factorisation of the Hessian of {name} failed with "
        f"percdamp {tried}; the calibration activations are degenerate "
        f"(try more or different calibration samples, or a larger --percdamp)"
    )


def saliency(W: torch.Tensor, Hinv: torch.Tensor) -> torch.Tensor:
    """OBS saliency w^2 / [H^-1]_cc^2 (the SparseGPT mask criterion)."""
    return W ** 2 / (torch.diag(Hinv).reshape(1, -1)) ** 2


def sparsegpt_prune(W, Hinv, dead, sparsity, n=0, m=0, blocksize=128):
    """Return (new fp32 weight, mask). N:M when n > 0, else one threshold per rows x blocksize block."""
    W = W.float().clone()
    W[:, dead] = 0
    rows, cols = W.shape
    if n and blocksize % m:
        # Keep the M-groups aligned to global columns.
        blocksize = max(m, blocksize // m * m)
    mask = torch.zeros(W.shape, dtype=torch.bool, device=W.device)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d1 = torch.diag(Hinv1)
        if n:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        else:
            # The threshold is taken on the block as updated by earlier blocks.
            tmp = W1 ** 2 / d1.reshape(1, -1) ** 2
            k = int(tmp.numel() * sparsity)
            mask1 = tmp <= torch.kthvalue(tmp.flatten(), k + 1).values
        for i in range(i2 - i1):
            if n and i % m == 0:
                tmp = W1[:, i:i + m] ** 2 / d1[i:i + m].reshape(1, -1) ** 2
                idx = torch.sort(tmp, dim=1, stable=True)[1][:, :n]
                mask1.scatter_(1, i + idx, True)
            w = W1[:, i]
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err = (w - q) / Hinv1[i, i]
            W1[:, i:] -= err.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
        mask[:, i1:i2] = mask1
    return W, mask | dead.reshape(1, -1)
