"""Post-training pruning: magnitude, Wanda, SparseGPT, DSnoT and OWL, layer-wise and exact.

    from calib.prune import prune
    result = prune(model, calib_ids, method="wanda", sparsity=0.6)
    result.report["overall"]["sparsity"], result.mask_hash
"""
from calib.prune.engine import (
    METHODS, OPTIONS, SUPPORTED_ARCHS, PruneResult, parse_pattern, prune,
)

__all__ = ["METHODS", "OPTIONS", "SUPPORTED_ARCHS", "PruneResult", "parse_pattern", "prune"]
