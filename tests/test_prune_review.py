"""What the bit-exactness review pinned down: N:M ties break by the lowest column
(calib's stable sorts; upstream's torch.topk leaves the order of equal scores to the
kernel), upstream DSnoT's SparseGPT start on a never-accumulated Hessian, and what
prune_report.json records."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from calib.prune.masks import check_nm, nm_mask, row_mask
from calib.prune.sparsegpt import inverse_hessian, saliency, sparsegpt_prune


def _tied(rows=3, cols=16, dtype=torch.bfloat16):
    """Weights with exact ties inside every M-group: bf16 keeps 8 bits of mantissa, so
    nearby values collapse onto one (1.0 and 1.001 are the same bf16 number)."""
    base = torch.tensor([1.0, 1.001, 0.5, 0.5004, 2.0, 2.0, 2.0, 2.0], dtype=torch.float32)
    w = base.repeat(rows, cols // len(base)).to(dtype)
    assert w[0, 0] == w[0, 1] and w[0, 2] == w[0, 3]  # the ties are exact
    return w


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8)])
def test_nm_ties_break_by_lowest_column(n, m):
    w = _tied()
    mask = nm_mask(w.abs(), n, m)
    assert check_nm(mask, n, m)
    rows, cols = w.shape
    for r in range(rows):
        for g in range(0, cols, m):
            s = w[r, g:g + m].float().abs().numpy()
            # the rule: ascending score, and among equal scores the lower column first
            want = sorted(range(m), key=lambda j: (s[j], j))[:n]
            assert sorted(np.flatnonzero(mask[r, g:g + m].numpy())) == sorted(want)


def test_all_equal_scores_prune_the_first_n_of_each_group():
    mask = nm_mask(torch.ones(2, 8, dtype=torch.bfloat16), 2, 4)
    assert mask[:, [0, 1, 4, 5]].all() and not mask[:, [2, 3, 6, 7]].any()


def test_sparsegpt_nm_ties_break_by_lowest_column():
    """SparseGPT's N:M choice (w^2 / [H^-1]_cc^2 per group) with equal saliencies: with an
    identity inverse Hessian the saliency is w^2, and the pruned weights are the ones
    of lower column among equals."""
    w = _tied(2, 8).float()
    U = torch.eye(8)
    _, mask = sparsegpt_prune(w, U, torch.zeros(8, dtype=torch.bool), 0.5, 2, 4, blocksize=8)
    # group 0: |w| = 1, 1, .5, .5 -> the two 0.5s; group 1: all 2.0 -> columns 4 and 5
    assert mask[:, [2, 3, 4, 5]].all() and not mask[:, [0, 1, 6, 7]].any()


def test_upstream_dsnot_sparsegpt_start_prunes_the_first_columns():
    """Upstream DSnoT (zyxxmu/DSnoT at HEAD) allocates the Hessian for
    --initial_method sparsegpt as zeros and never adds a batch to it. Every column is
    then 'dead', the dead-column rule zeroes every weight of the copy it scores, the
    score is 0 everywhere, and the stable row sort prunes the first int(cols * s) input
    columns of every row, whatever the weights and the data. calib accumulates H; with
    the zero H of upstream its own functions reproduce that mask."""
    torch.manual_seed(0)
    W = torch.randn(6, 20)
    U, dead = inverse_hessian(torch.zeros(20, 20), 0.01)
    assert dead.all()
    Wf = W.clone()
    Wf[:, dead] = 0
    score = saliency(Wf, U)
    assert (score == 0).all()
    mask = row_mask(score, 0.5)
    assert mask[:, :10].all() and not mask[:, 10:].any()


# ----------------------------------------------------------------------- the report
@pytest.fixture(scope="module")
def model_dir(tiny_tokenizer, tmp_path_factory):
    from factory import save, tiny_world_model
    return save(tiny_world_model(600, 128), tiny_tokenizer, tmp_path_factory.mktemp("m") / "model")


@pytest.mark.parametrize("extra,mode", [([], "document"), (["--calib-mode", "concat"], "concat")])
def test_prune_report_records_mode_and_numpy(model_dir, tmp_path, extra, mode, cache_env):
    from calib.cli import main
    out = tmp_path / "out"
    assert main(["prune", "--model", model_dir, "--calib", "world/pretrain", "--nsamples", "2", "--seqlen", "16",
                 "--out", str(out), "--no-progress", *extra]) == 0
    rep = json.loads((out / "prune_report.json").read_text())
    assert rep["calibration"]["mode"] == mode  # world/pretrain's own mode is the paper's document mode
    assert rep["versions"]["numpy"] == np.__version__
    assert {"calib", "python", "torch", "transformers"} <= set(rep["versions"])
