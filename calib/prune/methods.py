"""The method table: each pruning method's options and defaults, the statistics it
needs, how its options are validated, and how it turns a layer's statistics into a mask.

This is the one file to edit to add a pruning method. It knows the methods, not the
model: capture, offload and the block-by-block order are in ``sequential.py``, the
run and its report in ``engine.py``. Importing it does not import torch (the CLI
reads the table for its help); the mask functions import their math when called.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from calib.errors import CalibError, at, check_choice
from calib.models import ARCHITECTURES as SUPPORTED_ARCHS  # noqa: F401 - the one list, kept importable
from calib.models import BLOCK_PARTS, check_architecture  # noqa: F401 - re-exported

METHODS = ("magnitude", "wanda", "sparsegpt", "dsnot", "owl")
# Each pruner's output version, part of every job key: bump a method's number whenever a change
# alters its masks or weights (tests/test_golden.py fails until it is bumped).
VERSIONS = {"magnitude": 1, "wanda": 1, "sparsegpt": 1, "dsnot": 1, "owl": 1}

# Every method option, with the reference implementations' defaults.
OPTIONS = {
    "magnitude": {},
    "wanda": {"use_variant": False},
    "sparsegpt": {"blocksize": 128, "percdamp": 0.01},
    "dsnot": {
        "initial_method": "wanda", "max_cycle_time": 50, "update_threshold": 0.1,
        "pow_of_var_regrowing": 1.0, "skip_layer": "mlp", "skip_sub_layer": "no_skip",
        "without_dsnot": False, "same_sign": None, "percdamp": 0.01, "walk": "guarded",
    },
    "owl": {
        "base": "wanda", "owl_m": 5.0, "owl_lambda": 0.08, "use_variant": False,
        "blocksize": 128, "percdamp": 0.01,
    },
}
DSNOT_INITIAL = ("wanda", "sparsegpt", "magnitude")
DSNOT_WALKS = ("guarded", "original")  # calib's fixed walk, or the original loop (dsnot.py, docs/pruning.md)
OWL_BASES = ("wanda", "sparsegpt", "magnitude")
DSNOT_SKIP_LAYERS = ("no_skip", "mlp", "self_attn")  # the first part of a linear's name in its block
# the second part of a linear's name: LLaMA-style names, Phi-3's fused ones, open_lm's (DCLM-7B)
DSNOT_SKIP_SUB_LAYERS = ("no_skip", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                         "qkv_proj", "gate_up_proj", "in_proj", "out_proj", "w12", "w3")
DEFAULT_SPARSITY = 0.5
BATCH_SIZE = 8  # calibration samples per block forward (memory, not results)


# ------------------------------------------------------------------ validation
def check_sub_layer(method: str, opts: dict, names) -> None:
    """DSnoT's skip_sub_layer must name a linear the model has (``names``: one block's linears):
    Phi-3 fuses q/k/v into qkv_proj and gate/up into gate_up_proj, so q_proj there would skip nothing."""
    sub = opts.get("skip_sub_layer", "no_skip") if method == "dsnot" else "no_skip"
    have = sorted({n.split(".")[1] for n in names if "." in n})
    if sub != "no_skip" and sub not in have:
        raise CalibError(f"DSnoT skip_sub_layer {sub!r} names no linear of this model; valid here: "
                         f"no_skip, {', '.join(have)}")


def parse_pattern(pattern: str):
    """'unstructured' -> None; 'N:M' -> (N, M) with 0 < N < M."""
    if pattern == "unstructured":
        return None
    if isinstance(pattern, int) and not isinstance(pattern, bool) and pattern >= 60:
        raise CalibError(f"unknown pattern {pattern!r}; YAML reads an unquoted N:M such as 2:4 as a base-60 "
                         f"number ({pattern}): quote it, \"2:4\"")
    try:
        n, m = (int(x) for x in str(pattern).split(":"))
    except ValueError:
        raise CalibError(f"unknown pattern {pattern!r}; valid: unstructured, 2:4, 4:8, or any N:M with 0 < N < M")
    if not 0 < n < m:
        raise CalibError(f"pattern {pattern!r} needs 0 < N < M (got N={n}, M={m}); e.g. 2:4 or 4:8")
    return n, m


def resolve_sparsity(sparsity, nm) -> float:
    """The sparsity of a run: N/M for an N:M pattern (``sparsity`` must then be omitted
    or equal), else ``sparsity`` (default DEFAULT_SPARSITY) in [0, 1)."""
    if nm is not None:
        implied = nm[0] / nm[1]
        if sparsity is not None and abs(float(sparsity) - implied) > 1e-9:
            raise CalibError(
                f"sparsity {sparsity} conflicts with pattern {nm[0]}:{nm[1]}, which implies {implied:g}; "
                f"omit --sparsity or pass {implied:g}"
            )
        return implied
    s = DEFAULT_SPARSITY if sparsity is None else sparsity
    try:
        s = float(s)
    except (TypeError, ValueError):
        raise CalibError(f"sparsity {sparsity!r} is not a number; valid range [0, 1)")
    if not 0 <= s < 1:
        raise CalibError(f"sparsity {s} is outside the valid range [0, 1)")
    return s


def resolve_options(method: str, options: dict) -> dict:
    """The method's options with defaults filled in; unknown or invalid ones are errors."""
    check_choice("pruning method", method, METHODS)
    opts = dict(OPTIONS[method])
    unknown = sorted(set(options) - set(opts))
    if unknown:
        valid = ", ".join(opts) or "none"
        raise CalibError(f"unknown option(s) {', '.join(unknown)} for method {method!r}; valid: {valid}")
    opts.update(options)
    for key, value in options.items():
        _check_type(method, key, value, OPTIONS[method][key])
    if method == "dsnot":
        check_choice("DSnoT initial method", opts["initial_method"], DSNOT_INITIAL)
        check_choice("DSnoT skip_layer", opts["skip_layer"], DSNOT_SKIP_LAYERS)
        check_choice("DSnoT skip_sub_layer", opts["skip_sub_layer"], DSNOT_SKIP_SUB_LAYERS)
        check_choice("DSnoT walk", opts["walk"], DSNOT_WALKS)
        if opts["max_cycle_time"] < 0:
            raise CalibError(f"max_cycle_time {opts['max_cycle_time']} must be >= 0")
        if opts["update_threshold"] < 0:
            raise CalibError(f"update_threshold {opts['update_threshold']} must be >= 0")
    if method == "owl":
        check_choice("OWL base method", opts["base"], OWL_BASES)
        if not opts["owl_lambda"] >= 0 or not opts["owl_m"] > 0:
            raise CalibError(f"OWL needs owl_lambda >= 0 and owl_m > 0 (got {opts['owl_lambda']}, {opts['owl_m']})")
    if "blocksize" in opts and int(opts["blocksize"]) < 1:
        raise CalibError(f"blocksize {opts['blocksize']} must be >= 1")
    if "percdamp" in opts and not float(opts["percdamp"]) > 0:
        raise CalibError(f"percdamp {opts['percdamp']} must be > 0")
    return opts


def _check_type(method: str, key: str, value, default) -> None:
    """An option has its default's type (a float option also takes an int); same_sign may be None."""
    if key == "same_sign":
        ok, kind = value is None or isinstance(value, bool), "true, false or null"
    elif isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        kind = "a finite number"
    else:
        ok, kind = isinstance(value, str), "a name"
    if not ok:
        raise CalibError(f"option {key} of method {method!r} must be {kind}, got {value!r}")


# ------------------------------------------------------------------ the setting
@dataclass(frozen=True)
class Setting:
    """One pruning setting, validated once wherever it comes from (``calib prune``, a grid's job,
    Python): the method, its sparsity (N/M for an N:M pattern), the pattern, and the method's
    options with every default filled in. ``engine.prune`` takes it as it is; how the method turns
    it into per-block targets (OWL's outlier-weighted plan) is the setting's, too."""
    method: str
    sparsity: float
    pattern: str
    nm: tuple[int, int] | None
    options: dict

    @classmethod
    def of(cls, method: str = "wanda", sparsity=None, pattern="unstructured", options: dict | None = None,
           names: dict | None = None) -> "Setting":
        """The checked setting; ``names`` prefixes an error with the field it concerns (a grid's
        'method', 'sparsity', ...), otherwise errors read as they are."""
        names = names or {}
        where = lambda f: at(names[f]) if f in names else contextlib.nullcontext()  # noqa: E731
        with where("method"):
            check_choice("pruning method", method, METHODS)
        with where("pattern"):
            nm = parse_pattern(pattern)
        with where("sparsity"):
            s = resolve_sparsity(sparsity, nm)
        with where("options"):
            opts = resolve_options(method, dict(options or {}))
        return cls(method=method, sparsity=s, pattern=pattern, nm=nm, options=opts)

    def check_widths(self, config) -> None:
        """An N:M pattern groups M consecutive inputs of every linear: each input width (from the
        model's config, before any weight is read) must be divisible by M."""
        if self.nm is None:
            return
        from calib.models import input_widths
        n, m = self.nm
        widths = input_widths(config)
        for what, w in widths.items():
            if w % m:
                distinct = sorted(set(widths.values()))
                g = math.gcd(*distinct)
                valid = ", ".join(str(d) for d in range(2, g + 1) if g % d == 0) or "none"
                raise CalibError(f"pattern {n}:{m}: width {w} ({what}) is not divisible by M={m}; "
                                 f"valid M for this model (dividing {' and '.join(map(str, distinct))}): {valid}")

    @property
    def data_free(self) -> bool:
        """Masks need no calibration data: magnitude pruning, or nothing to prune."""
        return self.method == "magnitude" or (self.nm is None and self.sparsity == 0)

    @property
    def outlier_pass(self) -> bool:
        """OWL: one dense pass over the calibration data measures each block's outlier ratio."""
        return self.method == "owl" and not self.data_free

    @property
    def mask_method(self) -> str:
        """The method whose rule masks each linear (OWL's base method; magnitude where data-free)."""
        if self.data_free:
            return "magnitude"
        return self.options["base"] if self.method == "owl" else self.method

    def block_plan(self, n_blocks: int, ratios: list[float] | None = None) -> list[tuple]:
        """(sparsity, nm) of each block: uniform, or OWL's from the blocks' outlier ``ratios``."""
        if self.outlier_pass:
            if ratios is None or len(ratios) != n_blocks:
                raise CalibError(f"OWL's block plan needs the outlier ratio of each of the {n_blocks} blocks")
            return owl_plan(ratios, self.sparsity, self.nm, self.options)
        return [(self.sparsity, self.nm)] * n_blocks


# ------------------------------------------------------------------ statistics
def needs(method: str, opts: dict) -> dict:
    """The input statistics (keyword flags of prune.stats.BlockStats) a method reads."""
    if method == "wanda":
        return {"sq": True}
    if method == "sparsegpt":
        return {"hessian": True}
    if method == "dsnot":
        return {"sq": True, "mean": True, "var": True, "hessian": opts["initial_method"] == "sparsegpt"}
    return {}


def dsnot_skips(name: str, opts: dict) -> bool:
    """DSnoT leaves the initial mask alone for the skipped layer type (``mlp`` by
    default, matched on the first part of the linear's name) and sub-layer."""
    parts = name.split(".")
    return bool(opts["without_dsnot"] or BLOCK_PARTS.get(parts[0], parts[0]) == opts["skip_layer"]
                or (len(parts) > 1 and parts[1] == opts["skip_sub_layer"]))


def dsnot_metric(W, st):
    """DSnoT's per-weight contribution to a row's mean output error: W times the mean input."""
    return W * st.mean.reshape(1, -1)


# ------------------------------------------------------------------------ masks
class InverseHessians(dict):
    """SparseGPT's inverse Hessian per input statistic, computed once per block: linears
    that read the same input (q/k/v, gate/up) share one statistic, so one inverse."""

    def __init__(self, opts: dict):
        super().__init__()
        self.opts = opts

    def of(self, st, name: str):
        from calib.prune.sparsegpt import inverse_hessian
        if id(st) not in self:
            self[id(st)] = inverse_hessian(st.H, float(self.opts["percdamp"]), name)
        return self[id(st)]


def mask(method: str, name: str, lin, st, s: float, nm, opts: dict, hinv: InverseHessians):
    """The pruning mask (True = pruned) of linear ``lin`` named ``name`` in its block, from
    its input statistics ``st``, at sparsity ``s`` or pattern ``nm``. SparseGPT also
    writes its updated weights into ``lin``."""
    from calib.prune import dsnot
    from calib.prune.masks import matrix_threshold_mask, nm_mask, row_mask, wanda_score, wanda_variant_mask
    from calib.prune.sparsegpt import saliency, sparsegpt_prune

    W = lin.weight.data
    if method == "magnitude":
        score = W.abs()
        return nm_mask(score, *nm) if nm else matrix_threshold_mask(score, s)
    if method == "wanda":
        score = wanda_score(W, st.sq)
        if nm:
            return nm_mask(score, *nm)
        return wanda_variant_mask(score, s) if opts.get("use_variant") else row_mask(score, s)
    if method == "sparsegpt":
        U, dead = hinv.of(st, name)
        newW, m = sparsegpt_prune(W, U, dead, s, *(nm or (0, 0)), blocksize=int(opts["blocksize"]))
        W.copy_(newW.to(W.dtype))
        return m
    if method != "dsnot":  # OWL masks with its base method (Setting.mask_method)
        raise CalibError(f"no mask rule for method {method!r}; valid choices: magnitude, wanda, sparsegpt, dsnot")
    # dsnot: an initial mask, then prune-and-regrow cycles driven by the mean input
    wanda = wanda_score(W, st.sq)
    init = opts["initial_method"]
    if init == "wanda":
        initial = wanda
    elif init == "magnitude":
        initial = W.abs()
    else:
        U, dead = hinv.of(st, name)
        Wf = W.float().clone()
        Wf[:, dead] = 0
        initial = saliency(Wf, U)
    skip = dsnot_skips(name, opts)
    cycles = dict(max_cycle_time=int(opts["max_cycle_time"]), update_threshold=float(opts["update_threshold"]),
                  pow_of_var_regrowing=float(opts["pow_of_var_regrowing"]), walk=opts["walk"])
    if nm:
        if skip:
            return nm_mask(initial, *nm)
        return dsnot.dsnot_nm(dsnot_metric(W, st), initial, st.var, *nm, **cycles,
                              same_sign=True if opts["same_sign"] is None else bool(opts["same_sign"]))
    if skip:
        return row_mask(initial, s)
    return dsnot.dsnot_unstructured(dsnot_metric(W, st), initial, wanda, st.var, s, **cycles,
                                    same_sign=False if opts["same_sign"] is None else bool(opts["same_sign"]))


def owl_plan(ratios: list[float], s: float, nm, opts: dict) -> list[tuple]:
    """OWL's per-block (sparsity, nm) from the blocks' outlier ratios."""
    from calib.prune import owl
    lam = float(opts["owl_lambda"])
    if nm:
        return [(s, (n_i, nm[1])) for n_i in owl.block_nm(ratios, nm[0], nm[1], lam)]
    return [(s_i, None) for s_i in owl.block_sparsities(ratios, s, lam)]
