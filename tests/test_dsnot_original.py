"""DSnoT's two walks against a transcription of the original loop (issue 22).

tests/dsnot_transcription.py transcribes the loop of zyxxmu/DSnoT (lib/prune.py,
prune_DSnoT) as published; this file pins calib to it:

* walk="original" equals the transcription bit for bit wherever the transcription
  stays in range (no error, the sparsity pattern intact after every cycle); where
  it does not, calib freezes the row at the cycle the original fails
  (docs/pruning.md lists these departures).
* walk="guarded" (the default) stops a row at its first candidate of the wrong
  sign. Where none arises the two walks agree (unless the original's stopped rows
  rewrite the mask, which guarded leaves alone); the guard fires exactly where the
  original's candidate would push err away from zero (a prune candidate of err's
  sign, or a regrow candidate the initial mask kept); and in unstructured mode it
  ends with the smaller |err|, the surrogate DSnoT minimises (on average; in N:M
  mode it does not: see docs/pruning.md).

The naive reference in tests/test_prune_reference.py pins calib's guarded rule
(the default), not the original loop; this file pins the original.
"""
from __future__ import annotations

import random

import pytest
import torch

from calib.prune import dsnot as D
from calib.prune import prune
from calib.prune.masks import check_nm
from dsnot_transcription import original_nm, original_unstructured
from factory import tiny_model

CYCLES = (1, 10, 25, 50)


def layer(rows, cols, positive, seed, init, dead=0.0):
    """dsnot_metric, initial score, Wanda score and input variance of a random layer
    whose weights (and so metrics: the mean inputs are positive) are positive with
    probability `positive`: the sign split. A `dead` share of the inputs has mean 0
    (metric 0), half of them also no variance and no energy (0/0 regrow scores)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(rows, cols, generator=g).abs()
    W = torch.where(torch.rand(rows, cols, generator=g) < positive, W, -W)
    mean = torch.rand(cols, generator=g) + 0.2
    sq = torch.rand(cols, generator=g) + 0.5
    var = torch.rand(cols, generator=g) + 0.3
    off = torch.rand(cols, generator=g)
    mean[off < dead] = 0
    sq[off < dead / 2] = 0
    var[off < dead / 2] = 0
    wanda = W.abs() * sq.sqrt()
    initial = {"wanda": wanda, "magnitude": W.abs(), "other": torch.rand(rows, cols, generator=g)}[init]
    return W * mean, initial, wanda, var


def configs(mode, cycles, count=120, dead=False):
    """Random settings: widths, sign splits (balanced to skewed), thresholds, one row
    to many, sparsities or N:M patterns, regrowth by variance or not; dead: some
    layers with dead inputs too."""
    rng = random.Random(f"{mode}-{cycles}-{dead}")
    for i in range(count):
        c = {"mode": mode, "cycles": cycles, "rows": rng.choice([1, 1, 4, 16, 32]),
             "positive": rng.choice([0.5, 0.3, 0.1, 0.02]), "threshold": rng.choice([0.0, 0.1, 1.0, 4.0]),
             "pow": rng.choice([0.0, 1.0]), "init": rng.choice(["wanda", "wanda", "magnitude", "other"]),
             "dead": rng.choice([0.0, 0.1, 0.3]) if dead else 0.0, "seed": 1000 * cycles + i}
        if mode == "unstructured":
            c.update(cols=rng.choice([8, 16, 32, 64, 128, 256]), sparsity=rng.choice([0.5, 0.6, 0.7]),
                     same_sign=rng.choice([False, True]))
        else:
            n, m = rng.choice([(2, 4), (4, 8), (1, 4), (3, 4)])
            c.update(n=n, m=m, cols=m * rng.choice([2, 4, 8, 16, 32]))
        yield c


class Case:
    """One setting: its layer, calib's walks and the transcription's run."""

    def __init__(self, c):
        self.c = c
        self.metric, self.initial, self.wanda, self.var = layer(c["rows"], c["cols"], c["positive"], c["seed"],
                                                                c["init"], c["dead"])

    def calib(self, walk, cycles=None, on_cycle=None):
        c = self.c
        cycles = c["cycles"] if cycles is None else cycles
        if c["mode"] == "unstructured":
            return D.dsnot_unstructured(self.metric, self.initial, self.wanda, self.var, c["sparsity"], cycles,
                                        c["threshold"], c["pow"], c["same_sign"], walk=walk, on_cycle=on_cycle)
        return D.dsnot_nm(self.metric, self.initial, self.var, c["n"], c["m"], cycles, c["threshold"], c["pow"],
                          walk=walk, on_cycle=on_cycle)

    def keeps_pattern(self, mask):
        c = self.c
        if c["mode"] == "unstructured":
            return bool((mask.sum(1) == int(c["cols"] * c["sparsity"])).all())
        return check_nm(mask, c["n"], c["m"])

    def transcribe(self):
        """The transcription's mask (None if it raised), the first cycle that raised or
        broke the pattern (None if none), and per cycle (mask, r, p)."""
        c, seen, bad = self.c, [], []

        def after(cycle, mask, r, p):
            seen.append((mask.clone(), r.clone(), p.clone()))
            if not bad and not self.keeps_pattern(mask):
                bad.append(cycle)
        try:
            if c["mode"] == "unstructured":
                mask = original_unstructured(self.metric, self.initial, self.wanda, self.var, c["sparsity"],
                                             c["cycles"], c["threshold"], c["pow"], not c["same_sign"], after)
            else:
                mask = original_nm(self.metric, self.initial, self.var, c["n"], c["m"], c["cycles"],
                                   c["threshold"], c["pow"], after)
        except RuntimeError as e:  # a pointer past the end of its list: torch.gather's index error
            assert "out of bounds" in str(e)
            return None, bad[0] if bad else len(seen) + 1, seen
        return mask, bad[0] if bad else None, seen

    def guarded_log(self):
        """calib's guarded mask, and per cycle (mask, err, active, stops)."""
        log = []
        mask = self.calib("guarded", on_cycle=lambda cy, m, e, a, s: log.append(
            (m.clone(), e.clone(), a.clone(), {k: v.clone() for k, v in s.items()})))
        return mask, log


def cases(mode, cycles=CYCLES, dead=False):
    return [Case(c) for cy in cycles for c in configs(mode, cy, dead=dead)]


# ------------------------------------------------------------ walk="original" is the original loop

@pytest.mark.parametrize("cycles", CYCLES)
@pytest.mark.parametrize("mode", ["unstructured", "nm"])
def test_original_walk_is_the_transcription(mode, cycles):
    tally = {"in_range": 0, "guard_mattered": 0, "raised": 0, "broke_pattern": 0}
    for case in cases(mode, [cycles]) + cases(mode, [cycles], dead=True):
        want, bad, seen = case.transcribe()
        got = case.calib("original")
        if want is not None and bad is None:
            assert torch.equal(got, want), case.c
            tally["in_range"] += 1
            tally["guard_mattered"] += not torch.equal(got, case.calib("guarded"))
            continue
        tally["raised" if want is None else "broke_pattern"] += 1
        # Out of the original's range: calib keeps the pattern, and a lone row is frozen
        # with the mask it had before the cycle at which the original fails.
        assert case.keeps_pattern(got), case.c
        if case.c["rows"] == 1:
            before = seen[bad - 2][0] if bad >= 2 else case.calib("original", cycles=0)
            assert torch.equal(got, before), case.c
    assert tally["in_range"] >= 40, tally
    if cycles >= 10 and mode == "unstructured":
        # Not vacuous: in range the original walks where the guard would have stopped.
        assert tally["guard_mattered"] >= 10, tally
    if cycles == 50:
        assert tally["raised"] >= 5 and tally["broke_pattern"] >= 5, tally


def test_transcribed_examples():
    """Two small rows worked by hand, on the transcription and on calib's walks."""
    cols = lambda m: sorted(torch.nonzero(m[0]).flatten().tolist())  # noqa: E731
    # cols 0-2 pruned (err 12), kept: col 3 (metric -1) and col 4 (+6, top Wanda score).
    metric = torch.tensor([[5.0, 4.0, 3.0, -1.0, 6.0]])
    wanda = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    args = (metric, wanda, wanda, torch.ones(5), 0.6)
    # Cycle 1 swaps cols 0/3 (err 6); cycle 2 prunes col 4, the row's top weight (err 8);
    # cycle 3 reads past the prune list's two entries.
    assert cols(original_unstructured(*args, max_cycle_time=2, update_threshold=0.01)) == [2, 3, 4]
    with pytest.raises(RuntimeError, match="out of bounds"):
        original_unstructured(*args, max_cycle_time=3, update_threshold=0.01)
    assert cols(D.dsnot_unstructured(*args, update_threshold=0.01, walk="original")) == [2, 3, 4]
    assert cols(D.dsnot_unstructured(*args, update_threshold=0.01)) == [1, 2, 3]
    # One 2:4 group, cols 0, 1 pruned (err 2). Cycle 1 swaps cols 0/2 (err 1); cycle 2's
    # regrow candidate is col 3, kept, and its group's lowest kept weight: a no-op;
    # cycle 3 regrows col 2 against an all-used group and leaves one pruned weight.
    metric, initial = torch.tensor([[3.0, -1.0, 2.0, 0.5]]), torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    args = (metric, initial, torch.ones(4), 2, 4)
    assert cols(original_nm(*args, max_cycle_time=2, update_threshold=0.01)) == [1, 2]
    assert cols(original_nm(*args, max_cycle_time=3, update_threshold=0.01)) == [1]
    assert cols(D.dsnot_nm(*args, update_threshold=0.01, walk="original")) == [1, 2]
    assert cols(D.dsnot_nm(*args, update_threshold=0.01)) == [1, 2]


def test_nm_original_walk_regrows_what_a_swap_pruned():
    """In N:M mode the original's regrow list runs through the initially kept columns
    once the pruned ones of the needed sign are used up; one that a swap has pruned
    meanwhile is regrown, in range. Two 2:4 groups, cols 0, 1 and 4, 5 pruned, err -3.1."""
    cols = lambda m: sorted(torch.nonzero(m[0]).flatten().tolist())  # noqa: E731
    metric = torch.tensor([[-3.0, 0.5, -1.5, -1.0, -1.0, 0.4, -0.3, 0.2]])
    args = (metric, torch.tensor([[1.0, 2, 3, 4, 1, 2, 3, 4]]), torch.ones(8), 2, 4)
    # Cycles 1-2 swap 0/2 and 4/6 (err -0.9). Cycle 3: the guarded walk's next candidate
    # is col 5 (+0.4, the wrong sign) and it stops; the original takes col 2, kept at the
    # start and pruned in cycle 1, and swaps it for col 3 (err -0.4).
    assert cols(original_nm(*args, max_cycle_time=3)) == [1, 3, 5, 6]
    assert cols(D.dsnot_nm(*args, max_cycle_time=3, walk="original")) == [1, 3, 5, 6]
    assert cols(D.dsnot_nm(*args, max_cycle_time=3)) == [1, 2, 5, 6]


# ------------------------------------------------------------ the guard

def stopped_rows_rewrite(case):
    """Whether walk="original" changes the mask of a row in a cycle in which that row
    is not updating: the reverse write of a stopped row (upstream's, which guarded
    leaves out), when it is not a no-op."""
    seen, prev = [False], [case.calib("original", cycles=0)]

    def note(cycle, mask, err, active, stops):
        changed = (mask != prev[0]).any(1)
        seen[0] |= bool((changed & ~active[:, 0]).any())
        prev[0] = mask.clone()
    case.calib("original", on_cycle=note)
    return seen[0]


@pytest.mark.parametrize("mode", ["unstructured", "nm"])
def test_walks_agree_where_no_wrong_sign_candidate_arises(mode):
    """Where the guard never fires (nor calib's own end of candidates) and upstream's
    stopped rows make no write that changes the mask, the walks give the same mask."""
    swapped = rewrites = 0
    for case in cases(mode):
        guarded, log = case.guarded_log()
        if any(s[k].any() for *_, s in log for k in s):  # the guard, or calib's own end of candidates
            continue
        if stopped_rows_rewrite(case):
            rewrites += 1
            continue
        assert torch.equal(guarded, case.calib("original")), case.c
        swapped += not torch.equal(guarded, case.calib("guarded", cycles=0))
    assert swapped >= 100 and rewrites <= 10, (swapped, rewrites)


@pytest.mark.parametrize("mode", ["unstructured", "nm"])
def test_guard_fires_where_the_original_pushes_err_away_from_zero(mode):
    """Row by row against the transcription: while the guarded walk swaps, the original
    takes the same two weights; where the guard fires, the original's candidate has the
    wrong sign: a prune candidate of err's sign, or a regrow candidate the initial mask
    kept (the original's regrow list runs through the kept columns there)."""
    fired = swaps = 0
    for case in cases(mode, (10, 25, 50)):
        _, _, seen = case.transcribe()
        start = case.calib("guarded", cycles=0)
        _, log = case.guarded_log()
        prev_mask, prev_err = start, (case.metric * start).sum(1, keepdim=True)
        prev_active = torch.ones_like(prev_err, dtype=torch.bool)
        for (mask, err, active, stops), (_, r, p) in zip(log, seen):
            for i in torch.nonzero(active[:, 0]).flatten().tolist():
                changed = torch.nonzero(mask[i] != prev_mask[i]).flatten().tolist()
                assert sorted(changed) == sorted({int(r[i]), int(p[i])}), case.c
                swaps += 1
            for i in torch.nonzero(stops["wrong_sign"][:, 0]).flatten().tolist():
                assert prev_active[i]
                s = torch.sign(prev_err[i, 0])
                kept_r = not bool(start[i, r[i]])
                wrong_p = mode == "unstructured" and bool(case.metric[i, p[i]] * s > 0)
                assert kept_r or wrong_p, case.c
                fired += 1
            prev_mask, prev_err, prev_active = mask, err, active
    assert fired >= 100 and swaps >= 1000, (fired, swaps)


def surrogate_after_guard(mode, in_range=True):
    """|err| at the end, guarded and original, of every row in which the guard fired,
    over the random settings at 10, 25 and 50 cycles; in_range: only settings the
    transcription runs in range (else walk="original" stands in for it). Run
    `PYTHONPATH=.:tests python -c "import test_dsnot_original as t; t.show()"` for the figures."""
    g_err, o_err = [], []
    for case in cases(mode, (10, 25, 50)):
        want, bad, _ = case.transcribe()
        if want is None or bad is not None:
            if in_range:
                continue
            want = case.calib("original")
        guarded, log = case.guarded_log()
        fired = torch.stack([s["wrong_sign"][:, 0] for *_, s in log]).any(0) if log else None
        if fired is None or not fired.any():
            continue
        g_err.append((case.metric * guarded).sum(1).abs()[fired])
        o_err.append((case.metric * want).sum(1).abs()[fired])
    return torch.cat(g_err), torch.cat(o_err)


def show():
    for mode in ("unstructured", "nm"):
        for in_range in (True, False):
            g, o = surrogate_after_guard(mode, in_range)
            print(f"{mode} {'in range' if in_range else 'all'}: {len(g)} rows, guarded |err| smaller in "
                  f"{float((g < o).float().mean()):.0%}, equal in {float((g == o).float().mean()):.0%}, "
                  f"mean {float(g.mean()):.2f} vs original {float(o.mean()):.2f}")


def test_guard_ends_with_the_smaller_unstructured_error():
    """Where the guard fires and the original stays in range, guarded ends with the
    smaller |err| = |sum of dsnot_metric over the pruned weights| (the surrogate DSnoT
    minimises): on average, and in most such rows. Not in every row: the original's
    later swaps sometimes bring err back (about 1 row in 5 here)."""
    g, o = surrogate_after_guard("unstructured")
    assert len(g) >= 200
    assert float((g <= o).float().mean()) >= 0.7
    assert float(g.mean()) < 0.85 * float(o.mean())


# ------------------------------------------------------------ the option

def test_walk_option_in_the_engine():
    """walk is a DSnoT option: validated, recorded in the report, guarded by default;
    with many cycles on narrow layers the original walk still keeps the sparsity and
    N:M patterns (frozen rows), and differs from the guarded one."""
    from calib.errors import CalibError
    from calib.prune.methods import resolve_options
    assert resolve_options("dsnot", {})["walk"] == "guarded"
    with pytest.raises(CalibError, match="guarded, original"):
        resolve_options("dsnot", {"walk": "reference"})
    ids = torch.randint(0, 96, (4, 24), generator=torch.Generator().manual_seed(1))

    def run(**opts):
        model = tiny_model(vocab=96, ctx=128, layers=2, seed=0, initializer_range=0.05)
        return prune(model, ids, method="dsnot", keep_masks=True, update_threshold=1e-3, skip_layer="no_skip",
                     **opts)
    g, o = run(sparsity=0.6), run(sparsity=0.6, walk="original")
    assert g.report["options"]["walk"] == "guarded" and o.report["options"]["walk"] == "original"
    assert g.mask_hash != o.mask_hash
    assert g.mask_hash == run(sparsity=0.6, walk="guarded").mask_hash
    for name, m in o.masks.items():
        assert (m.sum(1) == int(m.shape[1] * 0.6)).all(), name
    nm = run(pattern="2:4", walk="original", max_cycle_time=500)
    assert all(check_nm(m, 2, 4) for m in nm.masks.values())


def test_walk_is_a_grid_axis():
    """Grids take walk like any option; each walk is its own job (its own key)."""
    from calib.experiments import expand_grid
    jobs = expand_grid({"model": "world", "method": "dsnot", "options": {"dsnot": {"walk": ["guarded", "original"]}},
                        "suite": "ppl"})
    assert [j.options["walk"] for j in jobs] == ["guarded", "original"]
    assert jobs[0].key != jobs[1].key
