"""Post-training pruning: magnitude, Wanda, SparseGPT, DSnoT and OWL, layer-wise and exact.

    from calib.prune import Setting, prune
    result = prune(model, calib_ids, method="wanda", sparsity=0.6)
    result = prune(model, calib_ids, setting=Setting.of("wanda", 0.6))   # the same, checked once up front
    result.report["overall"]["sparsity"], result.mask_hash

methods.py holds the method records (torch-free to import), sequential.py the
block-by-block plumbing, engine.py the run; masks, stats, sparsegpt, dsnot and
owl are the methods' math. ``prune`` and ``PruneResult`` load torch on first use.
"""
from calib.prune.methods import METHODS, OPTIONS, Setting, parse_pattern, resolve_options, resolve_sparsity

__all__ = ["METHODS", "OPTIONS", "PruneResult", "Setting", "parse_pattern", "prune", "resolve_options",
           "resolve_sparsity"]


def __getattr__(name):  # the engine imports torch: only when it is used
    if name in ("prune", "PruneResult"):
        from calib.prune import engine
        return getattr(engine, name)
    raise AttributeError(f"module 'calib.prune' has no attribute {name!r}")
