"""calib.prune's masks against deliberately naive references.

The references below follow the original implementations' structure: one
calibration sample at a time through each block, running statistics updated
per sample exactly as the original wrappers do, and per-row Python loops for
the mask rules. They share no code with calib.prune. DSnoT's reference is calib's
default walk (walk="guarded"), not the original loop: that one is pinned by
tests/test_dsnot_original.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from calib.prune import prune
from calib.prune.masks import check_nm
from factory import tiny_model

torch.set_num_threads(2)


def tiny_llama(seed=0, layers=2):
    return tiny_model(vocab=96, ctx=128, layers=layers, seed=seed, initializer_range=0.05)


def calib_ids(n=6, t=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 96, (n, t), generator=g)


# ------------------------------------------------------------ naive statistics

class RefStats:
    """Per-sample running statistics, updated the way the original wrappers do."""

    def __init__(self, cols):
        self.n = 0
        self.ntok = 0
        self.scaler_row = torch.zeros(cols)
        self.sum_row = torch.zeros(cols)
        self.var = torch.zeros(cols, 1)
        self.H = torch.zeros(cols, cols)

    def add(self, x):  # x: [1, T, C], one sample
        x = x.reshape(-1, x.shape[-1]).t().float()  # [C, T]
        v = torch.var(x, dim=1, unbiased=False, keepdim=True)
        t = x.shape[1]
        self.var = v if self.ntok == 0 else (self.var * self.ntok + v * t) / (self.ntok + t)
        self.ntok += t
        self.scaler_row *= self.n / (self.n + 1)
        self.sum_row *= self.n / (self.n + 1)
        self.H *= self.n / (self.n + 1)
        self.n += 1
        self.scaler_row += torch.norm(x, p=2, dim=1) ** 2 / self.n
        self.sum_row += torch.sum(x, dim=1) / self.n
        xs = math.sqrt(2 / self.n) * x
        self.H += xs.matmul(xs.t())


# ------------------------------------------------------------ naive mask rules

def ref_row_lowest(score, k):
    mask = torch.zeros(score.shape, dtype=torch.bool)
    for r in range(score.shape[0]):
        row = score[r].tolist()
        for j in sorted(range(len(row)), key=lambda j: (row[j], j))[:k]:
            mask[r, j] = True
    return mask


def ref_nm(score, n, m):
    mask = torch.zeros(score.shape, dtype=torch.bool)
    for r in range(score.shape[0]):
        row = score[r].float().tolist()
        for g in range(0, len(row), m):
            for j in sorted(range(g, g + m), key=lambda j: (row[j], j))[:n]:
                mask[r, j] = True
    return mask


def ref_magnitude(W, s):
    flat = sorted(W.abs().flatten().tolist())
    return W.abs() <= flat[int(len(flat) * s)]


def ref_wanda_variant(score, s):
    def given(alpha):
        mask = torch.zeros(score.shape, dtype=torch.bool)
        for r in range(score.shape[0]):
            vals = torch.sort(score[r], stable=True)[0]
            csum = torch.cumsum(vals, dim=0)
            limit = score[r].sum() * alpha
            c = int((csum <= limit).sum())
            if c > 0:
                mask[r] = score[r] <= vals[c - 1]
        return mask, mask.sum() / mask.numel()

    lo, hi, alpha = 0.0, 0.8, 0.4
    mask, cur = given(alpha)
    while abs(float(cur) - s) > 0.001 and hi - lo >= 0.001:
        if cur > s:
            hi, alpha = alpha, (alpha + lo) / 2
        else:
            lo, alpha = alpha, (alpha + hi) / 2
        mask, cur = given(alpha)
    return mask


def ref_hinv(H, percdamp=0.01):
    H = H.clone()
    dead = torch.diag(H) == 0
    for j in torch.nonzero(dead).flatten().tolist():
        H[j, j] = 1
    damp = percdamp * torch.mean(torch.diag(H))
    for j in range(H.shape[0]):
        H[j, j] += damp
    L = torch.linalg.cholesky(H)
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True), dead


def ref_sparsegpt(W, H, s, n=0, m=0, blocksize=128):
    Hinv, dead = ref_hinv(H)
    W = W.clone().float()
    W[:, dead] = 0
    cols = W.shape[1]
    full = torch.zeros(W.shape, dtype=torch.bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        E1 = torch.zeros_like(W1)
        Hi = Hinv[i1:i2, i1:i2]
        if n == 0:
            sal = W1 ** 2 / (torch.diag(Hi).reshape(1, -1)) ** 2
            thresh = torch.sort(sal.flatten())[0][int(sal.numel() * s)]
            mask1 = sal <= thresh
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(i2 - i1):
            if n and i % m == 0:
                sal = W1[:, i:i + m] ** 2 / (torch.diag(Hi)[i:i + m].reshape(1, -1)) ** 2
                mask1.scatter_(1, i + torch.topk(sal, n, dim=1, largest=False)[1], True)
            w = W1[:, i]
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            e = (w - q) / Hi[i, i]
            W1[:, i:] -= e.unsqueeze(1).matmul(Hi[i, i:].unsqueeze(0))
            E1[:, i] = e
        W[:, i1:i2] = Q1
        W[:, i2:] -= E1.matmul(Hinv[i1:i2, i2:])
        full[:, i1:i2] = mask1
    full[:, dead] = True
    return W, full


def _row_setup(D, r, P, K, var, pw):
    """fp32 numpy views of one row: initial err (torch's sum), its sign, regrow ratios."""
    z = D[r].clone()
    z[K] = 0
    err = np.float32(z.sum().item())
    ratio = (D[r] / torch.pow(var, pw)) if pw else D[r]
    return err, np.sign(err), ratio.tolist(), D[r].numpy()


# The two DSnoT references below pin calib's default walk, walk="guarded": they
# contain its fixes (regrow candidates are the pruned weights only, stopped rows
# leave the mask alone, and the stop at a candidate of the wrong sign), so they are
# not the original loop. tests/dsnot_transcription.py transcribes the original, and
# tests/test_dsnot_original.py pins walk="original" to it.

def ref_dsnot_unstructured(D, init, wanda, var, s, cycles=50, thr=0.1, pw=1.0, same_sign=False):
    """calib's guarded walk, one row at a time."""
    rows, cols = D.shape
    k = int(cols * s)
    thr = np.float32(thr)
    mask = torch.zeros(D.shape, dtype=torch.bool)
    for r in range(rows):
        iv = init[r].tolist()
        order = sorted(range(cols), key=lambda j: (iv[j], j))
        P, K = order[:k], order[k:]
        mask[r, P] = True
        if k == 0 or k == cols or cycles <= 0:
            continue
        err, sign0, ratio, d = _row_setup(D, r, P, K, var, pw)
        grow = sorted(P, key=lambda j: (ratio[j], j))
        wv = wanda[r].tolist()
        kept = sorted(K, key=lambda j: (wv[j], j))
        order_p = ([j for j in kept if d[j] < 0] + [j for j in kept if d[j] == 0]
                   + [j for j in kept if d[j] > 0][::-1])
        glo, ghi, plo, phi = 0, len(grow) - 1, 0, len(order_p) - 1
        for _ in range(cycles):
            if glo > ghi or plo > phi:
                break
            top, ptop = err > 0, err < 0
            rj = grow[ghi] if top else grow[glo]
            pj = order_p[phi] if ptop else order_p[plo]
            if not abs(err) > thr:
                break
            # calib's guard: stop once the candidates of the needed sign are used up
            # (the original walks on into the wrong-signed ones).
            if d[rj] * np.sign(err) < 0 or d[pj] * np.sign(err) > 0:
                break
            if same_sign and np.sign(err + d[pj] - d[rj]) != sign0:
                break
            mask[r, pj], mask[r, rj] = True, False
            err = err + d[pj]
            err = err - d[rj]
            ghi, glo = (ghi - 1, glo) if top else (ghi, glo + 1)
            phi, plo = (phi - 1, plo) if ptop else (phi, plo + 1)
    return mask


def ref_dsnot_nm(D, init, var, n, m, cycles=50, thr=0.1, pw=1.0, same_sign=True):
    """calib's guarded walk in N:M mode, one row at a time."""
    rows, cols = D.shape
    thr = np.float32(thr)
    mask = torch.zeros(D.shape, dtype=torch.bool)
    for r in range(rows):
        iv = init[r].float().tolist()
        P = []
        for g in range(0, cols, m):
            P += sorted(range(g, g + m), key=lambda j: (iv[j], j))[:n]
        mask[r, P] = True
        pset = set(P)
        avail = {j: iv[j] for j in range(cols) if j not in pset}
        err, sign0, ratio, d = _row_setup(D, r, P, list(avail), var, pw)
        grow = sorted(P, key=lambda j: (ratio[j], j))
        glo, ghi = 0, len(grow) - 1
        for _ in range(cycles):
            if glo > ghi:
                break
            top = err > 0
            rj = grow[ghi] if top else grow[glo]
            g0 = rj - rj % m
            cands = [j for j in range(g0, g0 + m) if j in avail]
            if not cands:
                break
            pj = min(cands, key=lambda j: (avail[j], j))
            if not abs(err) > thr:
                break
            if d[rj] * np.sign(err) < 0:  # calib's guard, as in the unstructured reference
                break
            if same_sign and np.sign(err + d[pj] - d[rj]) != sign0:
                break
            mask[r, pj], mask[r, rj] = True, False
            del avail[pj]
            err = err + d[pj]
            err = err - d[rj]
            ghi, glo = (ghi - 1, glo) if top else (ghi, glo + 1)
    return mask


def ref_owl_sparsities(ratios, s, lam):
    r = np.array(ratios)
    r = (r - r.min()) * (1 / (r.max() - r.min()) * lam * 2)
    r = r - np.mean(r) + (1 - s)
    return [1 - x for x in r]


# ------------------------------------------------------------ naive driver

def ref_block_io(model, ids):
    emb = model.model.embed_tokens(ids)
    t = ids.shape[1]
    pos = torch.arange(t).unsqueeze(0)
    causal = torch.full((t, t), torch.finfo(emb.dtype).min).triu(1)[None, None]
    kw = dict(attention_mask=causal, position_ids=pos,
              position_embeddings=model.model.rotary_emb(emb[:1], pos))
    return [emb[j:j + 1] for j in range(ids.shape[0])], kw


def run_layer(layer, x, kw):
    out = layer(x, **kw)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def ref_prune(model, ids, method, s, n=0, m=0, opts=None, block_sparsity=None):
    """One-sample-at-a-time layer-wise pruning; returns {full name: mask}."""
    opts = opts or {}
    inps, kw = ref_block_io(model, ids)
    masks = {}
    for i, layer in enumerate(model.model.layers):
        subset = {k: v for k, v in layer.named_modules() if isinstance(v, nn.Linear)}
        st = {k: RefStats(v.in_features) for k, v in subset.items()}
        hooks = [v.register_forward_hook(lambda mod, inp, out, k=k: st[k].add(inp[0].data))
                 for k, v in subset.items()]
        for x in inps:
            run_layer(layer, x, kw)
        for h in hooks:
            h.remove()
        si = s if block_sparsity is None else block_sparsity[i]
        for name, lin in subset.items():
            W = lin.weight.data
            if method == "wanda":
                score = W.abs() * torch.sqrt(st[name].scaler_row.reshape(1, -1))
                if n:
                    mask = ref_nm(score, n, m)
                elif opts.get("use_variant"):
                    mask = ref_wanda_variant(score, si)
                else:
                    mask = ref_row_lowest(score, int(W.shape[1] * si))
            elif method == "sparsegpt":
                newW, mask = ref_sparsegpt(W, st[name].H, si, n, m, opts.get("blocksize", 128))
                lin.weight.data = newW.to(W.dtype)
            elif method == "dsnot":
                D = W * st[name].sum_row.reshape(1, -1)
                wanda = W.abs() * torch.sqrt(st[name].scaler_row.reshape(1, -1))
                init = opts.get("initial_method", "wanda")
                if init == "wanda":
                    im = wanda
                elif init == "magnitude":
                    im = W.abs()
                else:
                    Hinv, dead = ref_hinv(st[name].H)
                    Wf = W.clone().float()
                    Wf[:, dead] = 0
                    im = Wf ** 2 / (torch.diag(Hinv).reshape(1, -1)) ** 2
                skip = name.split(".")[0] == opts.get("skip_layer", "mlp")
                cyc = opts.get("max_cycle_time", 50)
                thr = opts.get("update_threshold", 0.1)
                var = st[name].var.reshape(-1)
                if n:
                    mask = ref_nm(im, n, m) if skip else ref_dsnot_nm(D, im, var, n, m, cyc, thr)
                else:
                    k = int(W.shape[1] * si)
                    mask = ref_row_lowest(im, k) if skip else ref_dsnot_unstructured(D, im, wanda, var, si, cyc, thr)
            lin.weight.data[mask] = 0
            masks[f"model.layers.{i}.{name}"] = mask
        inps = [run_layer(layer, x, kw) for x in inps]
    return masks


@torch.no_grad()
def ref_owl_ratios(model, ids, M=5):
    inps, kw = ref_block_io(model, ids)
    ratios = []
    for layer in model.model.layers:
        subset = {k: v for k, v in layer.named_modules() if isinstance(v, nn.Linear)}
        st = {k: RefStats(v.in_features) for k, v in subset.items()}
        hooks = [v.register_forward_hook(lambda mod, inp, out, k=k: st[k].add(inp[0].data))
                 for k, v in subset.items()]
        outs = [run_layer(layer, x, kw) for x in inps]
        for h in hooks:
            h.remove()
        allw = torch.cat([torch.flatten(v.weight.data.abs() * torch.sqrt(st[k].scaler_row.reshape(1, -1)))
                          for k, v in subset.items()])
        ratios.append(float((allw > torch.mean(allw) * M).sum()) / allw.numel() * 100)
        inps = outs
    return ratios


def ref_magnitude_model(model, s, n=0, m=0, block_sparsity=None):
    masks = {}
    for i, layer in enumerate(model.model.layers):
        si = s if block_sparsity is None else block_sparsity[i]
        for name, lin in layer.named_modules():
            if isinstance(lin, nn.Linear):
                W = lin.weight.data
                mask = ref_nm(W.abs(), n, m) if n else ref_magnitude(W, si)
                W[mask] = 0
                masks[f"model.layers.{i}.{name}"] = mask
    return masks


def assert_same(got, want):
    assert set(got) == set(want)
    for k in want:
        diff = (got[k] != want[k]).sum().item()
        assert diff == 0, f"{k}: {diff} entries differ"


# ------------------------------------------------------------ the tests

def test_reference_chain_matches_model():
    """The naive block chain reproduces the model's own hidden states (so the
    references see what the model sees)."""
    model = tiny_llama()
    ids = calib_ids(2, 16)
    inps, kw = ref_block_io(model, ids)
    with torch.no_grad():
        want = model(ids, output_hidden_states=True).hidden_states[1]
        got = torch.cat([run_layer(model.model.layers[0], x, kw) for x in inps])
    torch.testing.assert_close(got, want)


CASES = [
    ("wanda", "unstructured", 0.6, {}),
    ("wanda", "unstructured", 0.3, {"use_variant": True}),
    ("wanda", "2:4", None, {}),
    ("wanda", "4:8", None, {}),
    ("sparsegpt", "unstructured", 0.6, {}),
    ("sparsegpt", "unstructured", 0.5, {"blocksize": 32}),
    ("sparsegpt", "2:4", None, {}),
    ("sparsegpt", "4:8", None, {}),
    ("dsnot", "unstructured", 0.6, {"update_threshold": 1e-3}),
    ("dsnot", "unstructured", 0.6, {"update_threshold": 1e-3, "skip_layer": "no_skip"}),
    ("dsnot", "unstructured", 0.5, {"initial_method": "sparsegpt", "update_threshold": 1e-3}),
    ("dsnot", "unstructured", 0.5, {"initial_method": "magnitude", "update_threshold": 1e-3}),
    ("dsnot", "2:4", None, {"update_threshold": 1e-3, "skip_layer": "no_skip"}),
    ("dsnot", "4:8", None, {"update_threshold": 1e-3}),
]


@pytest.mark.parametrize("method,pattern,s,opts", CASES, ids=lambda v: str(v))
def test_masks_match_naive_reference(method, pattern, s, opts):
    ids = calib_ids()
    n, m = (0, 0) if pattern == "unstructured" else map(int, pattern.split(":"))
    ref_model = tiny_llama()
    want = ref_prune(ref_model, ids, method, s if s is not None else n / m, n, m, opts)
    model = tiny_llama()
    res = prune(model, ids, method=method, sparsity=s, pattern=pattern, batch_size=4, keep_masks=True, **opts)
    assert_same(res.masks, want)
    if n:
        assert all(check_nm(v, n, m) for v in res.masks.values())
    # Weights: zeros where pruned; SparseGPT's reconstruction matches too.
    for (name, p), (_, q) in zip(model.named_parameters(), ref_model.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)


def test_dsnot_cases_actually_swap():
    """Guard against vacuous DSnoT tests: the loop must change the initial mask."""
    ids = calib_ids()
    a = prune(tiny_llama(), ids, method="dsnot", sparsity=0.6, keep_masks=True, update_threshold=1e-3)
    b = prune(tiny_llama(), ids, method="dsnot", sparsity=0.6, keep_masks=True, without_dsnot=True)
    changed = sum(int((a.masks[k] != b.masks[k]).sum()) for k in a.masks)
    assert changed > 0
    c = prune(tiny_llama(), ids, method="dsnot", pattern="2:4", keep_masks=True, update_threshold=1e-3,
              skip_layer="no_skip")
    d = prune(tiny_llama(), ids, method="wanda", pattern="2:4", keep_masks=True)
    assert sum(int((c.masks[k] != d.masks[k]).sum()) for k in c.masks) > 0


@pytest.mark.parametrize("pattern,s", [("unstructured", 0.55), ("2:4", None), ("4:8", None)])
def test_magnitude_matches_naive_reference(pattern, s):
    n, m = (0, 0) if pattern == "unstructured" else map(int, pattern.split(":"))
    want = ref_magnitude_model(tiny_llama(), s or 0, n, m)
    res = prune(tiny_llama(), None, method="magnitude", sparsity=s, pattern=pattern, keep_masks=True)
    assert_same(res.masks, want)


@pytest.mark.parametrize("base", ["wanda", "sparsegpt", "magnitude"])
def test_owl_matches_naive_reference(base):
    ids = calib_ids()
    s, lam = 0.6, 0.08
    ratios = ref_owl_ratios(tiny_llama(), ids)
    sp = ref_owl_sparsities(ratios, s, lam)
    assert len(set(ratios)) > 1
    if base == "magnitude":
        want = ref_magnitude_model(tiny_llama(), s, block_sparsity=sp)
    else:
        want = ref_prune(tiny_llama(), ids, base, s, block_sparsity=sp)
    res = prune(tiny_llama(), ids, method="owl", sparsity=s, base=base, keep_masks=True, batch_size=4)
    assert res.report["owl"]["outlier_ratios"] == pytest.approx(ratios, abs=1e-9)
    assert_same(res.masks, want)


def test_owl_nm_keeps_pattern_with_default_lambda():
    ids = calib_ids()
    want = ref_prune(tiny_llama(), ids, "wanda", 0.5, 2, 4)
    res = prune(tiny_llama(), ids, method="owl", pattern="2:4", keep_masks=True)
    assert_same(res.masks, want)
