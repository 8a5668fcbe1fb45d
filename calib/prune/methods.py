"""The pruning methods, one ``Method`` record each: its name and display name, its typed
options (defaults and help), what it needs (calibration data, input statistics such as
Hessians, an outlier pass), its mask rule and its block plan. ``register`` adds a record;
``METHODS`` (name -> record), ``OPTIONS``, ``DISPLAY_NAMES``, the CLI's option flags and the
grids' checks all read the records.

This is the one file to edit to add a pruning method (its math goes in a module beside
``masks.py``; docs/architecture.md, "Add a method"). It knows the methods, not the model:
capture, offload and the block-by-block order are in ``sequential.py``, the run and its
report in ``engine.py``. Importing it does not import torch (the CLI reads the records for
its help); the mask rules import their math when called, and the math never imports this.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

from calib.errors import CalibError, at, check_choice
from calib.models import ARCHITECTURES as SUPPORTED_ARCHS  # noqa: F401 - the one list, kept importable
from calib.models import BLOCK_PARTS, check_architecture  # noqa: F401 - re-exported

DEFAULT_SPARSITY = 0.5
BATCH_SIZE = 8  # calibration samples per block forward (memory, not results)


# ------------------------------------------------------------------ the records
@dataclass(frozen=True)
class Option:
    """One method option: its default (whose type is the option's; ``kind`` where the default is
    None), help, the valid choices or lower bound, and its ``calib prune`` flag (default --name)."""
    name: str
    default: object
    help: str
    choices: tuple | None = None
    minimum: float | None = None  # value >= minimum
    positive: bool = False  # value > 0
    kind: type | None = None  # the type where the default is None (then None is valid too)
    flag: str | None = None

    @property
    def type(self) -> type:
        return self.kind or type(self.default)

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def check(self, method: str, value) -> None:
        """A value of the option's type (a float option also takes an int), in its choices or range."""
        t = self.type
        if value is None and self.default is None:
            return
        if t is bool:
            ok, what = isinstance(value, bool), "true or false" + (" or null" if self.default is None else "")
        elif t is int:
            ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif t is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            what = "a finite number"
        else:
            ok, what = isinstance(value, str), "a name"
        if not ok:
            raise CalibError(f"option {self.name} of method {method!r} must be {what}, got {value!r}")
        if self.choices is not None:
            check_choice(f"{METHODS[method].display} {self.name}", value, self.choices)
        if self.minimum is not None and value < self.minimum:
            raise CalibError(f"{self.name} {value} must be >= {self.minimum:g}")
        if self.positive and not value > 0:
            raise CalibError(f"{self.name} {value} must be > 0")


def _no_statistics(opts: dict) -> dict:
    return {}


@dataclass(frozen=True)
class Method:
    """A pruning method. ``rule(name, lin, st, s, nm, opts, hinv)`` returns the mask (True = pruned)
    of linear ``lin`` (``name`` in its block) from its input statistics ``st`` at sparsity ``s`` or
    pattern ``nm``; a method without a rule masks with ``masks_with(opts)``'s (OWL: its base).
    ``needs(opts)``: the input statistics the rule reads (keyword flags of prune.stats.BlockStats:
    sq, mean, var, hessian). ``outliers(linears, stats, opts)``: one block's ratio from a dense
    pass that reads ``sq`` first; ``plan(ratios, s, nm, opts)``: each block's (sparsity, nm) from
    them. ``check_linears(opts, names)``: options checked against one block's linear names."""
    name: str
    display: str  # as the book and its tables write it
    options: tuple[Option, ...] = ()
    calibration: bool = True  # False: masks from the weights alone
    needs: Callable[[dict], dict] = _no_statistics
    rule: Callable | None = None
    masks_with: Callable[[dict], str] | None = None
    outliers: Callable | None = None
    plan: Callable | None = None
    check_linears: Callable | None = None
    order: int = 100  # position in the book's tables (the paper's order)
    # the output version, part of every job key: bump it whenever a change alters the method's masks
    # or weights (tests/test_golden.py fails until it is bumped)
    version: int = 1

    @property
    def defaults(self) -> dict:
        return {o.name: o.default for o in self.options}


METHODS: dict[str, Method] = {}
"""name -> record, in registration order (the CLI's and the error messages' order)."""
DEFAULT_METHOD = "wanda"  # the one default method: CLI, jobs, Setting.of and engine.prune read it


def register(method: Method) -> Method:
    """Add a method. An option another method also has (blocksize, percdamp, ...) must be the same
    option there, as ``calib prune`` has one flag for it."""
    if method.name in METHODS:
        raise CalibError(f"method {method.name!r} is already registered")
    if (method.rule is None) == (method.masks_with is None):
        raise CalibError(f"method {method.name!r}: give a mask rule or masks_with, not both or neither")
    if (method.outliers is None) != (method.plan is None):
        raise CalibError(f"method {method.name!r}: an outlier pass and a block plan come together")
    for opt in method.options:
        other = shared_options().get(opt.name)
        if other is not None and other != opt:
            raise CalibError(f"method {method.name!r}: option {opt.name} differs from the other methods' {opt.name}")
    METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a method (tests; the built-in ones stay)."""
    METHODS.pop(name)


def shared_options() -> dict[str, Option]:
    """Every option name of every method, once: ``calib prune`` has one flag per name."""
    return {o.name: o for m in METHODS.values() for o in m.options}


def option_methods(name: str) -> list[str]:
    """The methods that take option ``name``."""
    return [m.name for m in METHODS.values() if any(o.name == name for o in m.options)]


class _View(Mapping):
    """A live view of the records, name -> ``value(record)``, in registration order or by ``key``."""

    def __init__(self, value: Callable, key: Callable | None = None):
        self.value, self.key = value, key

    def __getitem__(self, name):
        return self.value(METHODS[name])

    def __iter__(self):
        ordered = sorted(METHODS.values(), key=self.key) if self.key else METHODS.values()
        return (m.name for m in ordered)

    def __len__(self):
        return len(METHODS)


OPTIONS = _View(lambda m: m.defaults)  # method -> {option: default}
DISPLAY_NAMES = _View(lambda m: m.display, key=lambda m: m.order)  # the book's names, in the paper's order
VERSIONS = _View(lambda m: m.version)  # method -> its output version


def outlier_reports(report: dict) -> dict:
    """The outlier-pass sections of an engine report, one per method that has the pass (None
    where this run made none): what ``calib prune`` and a job's row keep of the plan."""
    return {m.name: report.get(m.name) for m in METHODS.values() if m.outliers is not None}


# ------------------------------------------------------------------ validation
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
    record = METHODS[method]
    opts = record.defaults
    unknown = sorted(set(options) - set(opts))
    if unknown:
        valid = ", ".join(opts) or "none"
        raise CalibError(f"unknown option(s) {', '.join(unknown)} for method {method!r}; valid: {valid}")
    by_name = {o.name: o for o in record.options}
    for key, value in options.items():
        by_name[key].check(method, value)
    opts.update(options)
    return opts


def check_linears(method: str, opts: dict, names) -> None:
    """The method's options against one block's linear ``names`` (the model's own), where it has such a check."""
    record = METHODS[method]
    if record.check_linears is not None:
        record.check_linears(opts, names)


# ------------------------------------------------------------------ the setting
@dataclass(frozen=True)
class Setting:
    """One pruning setting, validated once wherever it comes from (``calib prune``, a grid's job,
    Python): the method, its sparsity (N/M for an N:M pattern), the pattern, and the method's
    options with every default filled in. ``engine.prune`` takes it as it is; what the method's
    record says about it (data, statistics, the outlier pass, per-block targets) is read here."""
    method: str
    sparsity: float
    pattern: str
    nm: tuple[int, int] | None
    options: dict

    @classmethod
    def of(cls, method: str = DEFAULT_METHOD, sparsity=None, pattern="unstructured", options: dict | None = None,
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
    def record(self) -> Method:
        return METHODS[self.method]

    @property
    def data_free(self) -> bool:
        """Masks need no calibration data: the method reads none, or there is nothing to prune."""
        return not self.record.calibration or (self.nm is None and self.sparsity == 0)

    @property
    def outlier_pass(self) -> bool:
        """A dense pass over the calibration data measures each block's outlier ratio first (OWL)."""
        return self.record.outliers is not None and not self.data_free

    @property
    def mask_method(self) -> str:
        """The method whose rule masks each linear (its own, or the one it masks with: OWL's base)."""
        r = self.record
        return r.name if r.masks_with is None else r.masks_with(self.options)

    @property
    def needs(self) -> dict:
        """The input statistics the mask rule reads (none where the masks need no data)."""
        return {} if self.data_free else METHODS[self.mask_method].needs(self.options)

    def block_plan(self, n_blocks: int, ratios: list[float] | None = None) -> list[tuple]:
        """(sparsity, nm) of each block: uniform, or the method's plan from the blocks' outlier ``ratios``."""
        if self.outlier_pass:
            if ratios is None or len(ratios) != n_blocks:
                raise CalibError(f"{self.record.display}'s block plan needs the outlier ratio of each of the "
                                 f"{n_blocks} blocks")
            return self.record.plan(ratios, self.sparsity, self.nm, self.options)
        return [(self.sparsity, self.nm)] * n_blocks


# ------------------------------------------------------------------ mask rules
def needs(method: str, opts: dict) -> dict:
    """The input statistics (keyword flags of prune.stats.BlockStats) a method's rule reads."""
    return METHODS[method].needs(opts)


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
    """The pruning mask (True = pruned) of linear ``lin`` by ``method``'s rule (see ``Method``)."""
    rule = METHODS[method].rule if method in METHODS else None
    if rule is None:
        valid = ", ".join(m.name for m in METHODS.values() if m.rule is not None)
        raise CalibError(f"no mask rule for method {method!r}; valid choices: {valid}")
    return rule(name, lin, st, s, nm, opts, hinv)


def _magnitude(name, lin, st, s, nm, opts, hinv):
    from calib.prune.masks import matrix_threshold_mask, nm_mask
    score = lin.weight.data.abs()
    return nm_mask(score, *nm) if nm else matrix_threshold_mask(score, s)


def _wanda(name, lin, st, s, nm, opts, hinv):
    from calib.prune.masks import nm_mask, row_mask, wanda_score, wanda_variant_mask
    score = wanda_score(lin.weight.data, st.sq)
    if nm:
        return nm_mask(score, *nm)
    return wanda_variant_mask(score, s) if opts.get("use_variant") else row_mask(score, s)


def _sparsegpt(name, lin, st, s, nm, opts, hinv):
    """SparseGPT also writes its updated weights into ``lin``."""
    from calib.prune.sparsegpt import sparsegpt_prune
    W = lin.weight.data
    U, dead = hinv.of(st, name)
    newW, m = sparsegpt_prune(W, U, dead, s, *(nm or (0, 0)), blocksize=int(opts["blocksize"]))
    W.copy_(newW.to(W.dtype))
    return m


def dsnot_skips(name: str, opts: dict) -> bool:
    """DSnoT leaves the initial mask alone for the skipped layer type (``mlp`` by
    default, matched on the first part of the linear's name) and sub-layer."""
    parts = name.split(".")
    return bool(opts["without_dsnot"] or BLOCK_PARTS.get(parts[0], parts[0]) == opts["skip_layer"]
                or (len(parts) > 1 and parts[1] == opts["skip_sub_layer"]))


def dsnot_metric(W, st):
    """DSnoT's per-weight contribution to a row's mean output error: W times the mean input."""
    return W * st.mean.reshape(1, -1)


def _dsnot(name, lin, st, s, nm, opts, hinv):
    """An initial mask, then prune-and-regrow cycles driven by the mean input."""
    from calib.prune import dsnot
    from calib.prune.masks import nm_mask, row_mask, wanda_score
    from calib.prune.sparsegpt import saliency
    W = lin.weight.data
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


def _dsnot_sub_layer(opts: dict, names) -> None:
    """DSnoT's skip_sub_layer must name a linear the model has (``names``: one block's linears):
    Phi-3 fuses q/k/v into qkv_proj and gate/up into gate_up_proj, so q_proj there would skip nothing."""
    sub = opts.get("skip_sub_layer", "no_skip")
    have = sorted({n.split(".")[1] for n in names if "." in n})
    if sub != "no_skip" and sub not in have:
        raise CalibError(f"DSnoT skip_sub_layer {sub!r} names no linear of this model; valid here: "
                         f"no_skip, {', '.join(have)}")


def _owl_ratio(linears, stats, opts) -> float:
    """A block's outlier ratio, from the Wanda scores of its linears."""
    from calib.prune.masks import wanda_score
    from calib.prune.owl import outlier_ratio

    def scores():
        return (wanda_score(lin.weight.data, stats[name].sq) for name, lin in linears.items())
    return outlier_ratio(scores, float(opts["owl_m"]))


def owl_plan(ratios: list[float], s: float, nm, opts: dict) -> list[tuple]:
    """OWL's per-block (sparsity, nm) from the blocks' outlier ratios."""
    from calib.prune import owl
    lam = float(opts["owl_lambda"])
    if nm:
        return [(s, (n_i, nm[1])) for n_i in owl.block_nm(ratios, nm[0], nm[1], lam)]
    return [(s_i, None) for s_i in owl.block_sparsities(ratios, s, lam)]


# ------------------------------------------------------------------ the methods
# Options two methods share are one Option (one `calib prune` flag); defaults are the reference
# implementations'.
USE_VARIANT = Option("use_variant", False, "Wanda's alpha-search variant")
BLOCKSIZE = Option("blocksize", 128, "SparseGPT's column block size", minimum=1)
PERCDAMP = Option("percdamp", 0.01, "Hessian damping (SparseGPT, and a sparsegpt start)", positive=True)
BASES = ("wanda", "sparsegpt", "magnitude")  # the rules DSnoT starts from and OWL masks with

register(Method("magnitude", "Magnitude", calibration=False, rule=_magnitude, order=0))
register(Method("wanda", "Wanda", (USE_VARIANT,), needs=lambda o: {"sq": True}, rule=_wanda, order=2))
register(Method("sparsegpt", "SparseGPT", (BLOCKSIZE, PERCDAMP), needs=lambda o: {"hessian": True},
                rule=_sparsegpt, order=1))
register(Method(
    "dsnot", "DSnoT", (
        Option("initial_method", "wanda", "initial mask", choices=BASES, flag="--dsnot-init"),
        Option("max_cycle_time", 50, "cycles", minimum=0),
        Option("update_threshold", 0.1, "stop a row when |err| <= this", minimum=0),
        Option("pow_of_var_regrowing", 1.0, "variance power of the regrow order"),
        # the first part of a linear's name in its block
        Option("skip_layer", "mlp", "layer type left at the initial mask", choices=("no_skip", "mlp", "self_attn")),
        # the second part: LLaMA-style names, Phi-3's fused ones, open_lm's (DCLM-7B)
        Option("skip_sub_layer", "no_skip", "sub-layer left at the initial mask (a linear's second name part)",
               choices=("no_skip", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                        "qkv_proj", "gate_up_proj", "in_proj", "out_proj", "w12", "w3")),
        Option("without_dsnot", False, "initial mask only"),
        Option("same_sign", None, "require err to keep its sign (default: false unstructured, true N:M, "
               "as upstream)", kind=bool),
        PERCDAMP,
        # calib's fixed walk, or the original loop (dsnot.py, docs/pruning.md)
        Option("walk", "guarded", "the prune-and-regrow walk (guarded: calib's fix; original: the published loop)",
               choices=("guarded", "original"), flag="--dsnot-walk"),
    ),
    needs=lambda o: {"sq": True, "mean": True, "var": True, "hessian": o["initial_method"] == "sparsegpt"},
    rule=_dsnot, check_linears=_dsnot_sub_layer, order=3))
register(Method(
    "owl", "OWL", (
        Option("base", "wanda", "the method that masks each block", choices=BASES, flag="--owl-base"),
        Option("owl_m", 5.0, "outlier threshold M", positive=True),
        Option("owl_lambda", 0.08, "lambda, the spread of the block sparsities", minimum=0),
        USE_VARIANT, BLOCKSIZE, PERCDAMP,
    ),
    masks_with=lambda o: o["base"], outliers=_owl_ratio, plan=owl_plan, order=4))
