"""Calibration-quality predictors: statistics of a calibration set, measurable before
pruning, that might predict how well it calibrates (the book's Beyond chapter).

``activation_profile`` is the per-channel input RMS Wanda scales weights by;
``profile_distance`` compares two profiles up to a global scale. Min-K%++ and
MinHash similarity are calib.filters'. Pure functions over a model and token ids.
"""
from __future__ import annotations

def activation_profile(model, ids, batch_size: int = 16) -> dict:
    """Per linear of the decoder blocks: the RMS of each input channel over all
    calibration tokens, i.e. the statistic Wanda scales weights by."""
    import torch
    from calib.prune.stats import InputStats
    stats, hooks = {}, []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and ".layers." in f".{name}.":
            stats[name] = InputStats(mod.in_features, mod.weight.device, sq=True)
            hooks.append(mod.register_forward_pre_hook(lambda _, inp, st=stats[name]: st.add(inp[0].detach())))
    try:
        with torch.inference_mode():
            for i in range(0, len(ids), batch_size):
                model(input_ids=ids[i:i + batch_size].to(model.device))
    finally:
        for h in hooks:
            h.remove()
    return {k: st.sq.sqrt().cpu() for k, st in stats.items()}


def profile_distance(a: dict, b: dict) -> float:
    """Mean over linears of the RMS difference of log channel norms: 0 when the two
    sets would give Wanda the same per-channel weighting, up to a global scale."""
    import torch
    out = []
    for k in a:
        d = torch.log(a[k].clamp_min(1e-8)) - torch.log(b[k].clamp_min(1e-8))
        out.append(float((d - d.mean()).square().mean().sqrt()))
    return sum(out) / len(out)
