"""A job: one cell of the paper's grid (model, method, sparsity or pattern, calibration
data, evaluation suite), validated and with every default filled in.

A job's key hashes its canonical parameters with the model replaced by a hash of
its files, and the output versions of the stages it runs (``stages``): the same cell on
the same model has the same key anywhere, and a changed model, or a stage whose output
changed (its version bumped), never reuses a row. Unset model-dependent defaults (the
calibration source, the suite, the dtype) come from ``calib.models.defaults``. ``execution`` (batch sizes, device) is recorded but not
part of the key. This module only describes jobs; running them is ``run.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from calib import data, evaluate, filters, synth
from calib.cache import digest
from calib.errors import CalibError, at, check_choice, integer, section
from calib.hub import looks_like_id
from calib.models import (AUTO, DTYPES, MODEL_ALIASES, check_device, context_length, defaults, model_config,
                          model_identity, model_path, resolve_dtype)
from calib.prune import methods

TOP = ("model", "method", "sparsity", "pattern", "options", "dtype", "calibration", "synthetic", "suite",
       "execution")
GENERATORS = ("dense", "pruned")


CALIBRATION = {"source": None, "mode": None, "nsamples": data.NSAMPLES, "seqlen": None, "seed": 0,
               "pool": None}
SYNTHETIC = {"generator": "dense", "n_docs": synth.N_DOCS, "prefix_len": synth.PREFIX_LEN,
             "max_new_tokens": synth.MAX_NEW_TOKENS, "gen_seed": None, "filter_rate": filters.FILTER_RATE,
             "batch_size": synth.BATCH_SIZE, "sampling": {}}
# how a job runs, not what it computes: recorded, not part of the key (the scorers agree item for item)
EXECUTION = {"prune_batch_size": methods.BATCH_SIZE, "eval_batch_size": evaluate.BATCH_SIZE, "device": None,
             "offload": True, "scorer": evaluate.SCORER}


@dataclass
class Job:
    """One cell of the grid. Construction validates and fills in every default, so two
    spellings of the same cell compare (and hash) equal; errors name the field."""
    model: str = "world"
    method: str = methods.DEFAULT_METHOD
    sparsity: float | None = None
    pattern: str = "unstructured"
    options: dict = field(default_factory=dict)
    dtype: str | None = None
    calibration: dict = field(default_factory=dict)
    synthetic: dict | None = None
    suite: dict = field(default_factory=dict)
    execution: dict = field(default_factory=dict)
    _key: str | None = field(default=None, init=False, repr=False, compare=False)
    _evaluation: evaluate.Suite | None = field(default=None, init=False, repr=False, compare=False)
    _setting: methods.Setting | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.model is not None and not isinstance(self.model, str | Path):
            raise CalibError(f"model: expected a model folder or one of {', '.join(MODEL_ALIASES)}; "
                             f"got {self.model!r}")
        self.model = self.model or "world"
        own = defaults(self.model)  # the model's defaults: source, suite, dtype
        config = model_config(self.model)  # before resolving, so an error names the model as given
        if self.model not in MODEL_ALIASES and not looks_like_id(self.model):  # a hub id stays as given
            self.model = str(Path(self.model).expanduser().resolve())
        with at(f"model {self.model}"):
            methods.check_architecture(config)  # from its config.json: no weights read
        opts = self.options or {}
        if not isinstance(opts, dict):
            raise CalibError(f"options: expected a mapping of method options; got {opts!r}")
        if opts and set(opts) <= set(methods.METHODS):  # per-method options: {owl: {owl_lambda: 0.1}, ...}
            opts = opts.get(self.method) or {}
        self._setting = methods.Setting.of(self.method, self.sparsity, self.pattern, opts,
                                           names={f: f for f in ("method", "pattern", "sparsity", "options")})
        self.sparsity, self.options = self._setting.sparsity, self._setting.options
        with at(f"model {self.model}"):  # N:M against the linears' widths in config.json
            self._setting.check_widths(config)
        with at("dtype"):
            self.dtype = self.dtype or own["dtype"]
            check_choice("dtype", self.dtype, [AUTO, *DTYPES])

        c = section("calibration", self.calibration, CALIBRATION)
        c["source"] = c["source"] or own["source"]
        if not isinstance(c["source"], str):
            raise CalibError(f"calibration.source: expected a source name or file; got {c['source']!r}")
        if Path(c["source"]).expanduser().is_file():
            c["source"] = str(Path(c["source"]).expanduser().resolve())
        with at("calibration.source"):
            default_mode = data.default_mode(c["source"])
        c["mode"] = c["mode"] or default_mode
        with at("calibration.mode"):
            check_choice("sampling mode", c["mode"], data.MODES)
        ctx = context_length(config) or data.SEQLEN
        c["seqlen"] = data.default_seqlen(ctx) if c["seqlen"] is None else c["seqlen"]
        integer("calibration.seqlen", c["seqlen"], 1, ctx)
        integer("calibration.nsamples", c["nsamples"], 1)
        integer("calibration.seed", c["seed"], 0)
        integer("calibration.pool", c["pool"], 1, none=True)
        self.calibration = c

        if self.synthetic is not None and self.synthetic is not False:
            self.synthetic = self._synthetic(self.synthetic)
            if self.synthetic["gen_seed"] is None:  # each calibration seed its own generated corpus
                self.synthetic["gen_seed"] = c["seed"]
            with at(f"model {self.model}"):  # the job's model (dense or pruned) writes the texts
                methods.check_architecture(config, "generate")
        else:
            self.synthetic = None
        suite = {"name": self.suite} if isinstance(self.suite, str) else dict(self.suite or {})
        suite.setdefault("name", own["suite"])
        self._evaluation = evaluate.Suite.of(suite)
        self.suite = self._evaluation.as_dict()
        e = section("execution", self.execution, EXECUTION)
        integer("execution.prune_batch_size", e["prune_batch_size"], 1)
        integer("execution.eval_batch_size", e["eval_batch_size"], 1)
        with at("execution.device"):  # the spelling here; whether it exists, where the job runs
            check_device(e["device"])
        if not isinstance(e["offload"], bool):
            raise CalibError(f"execution.offload: expected true or false; got {e['offload']!r}")
        with at("execution.scorer"):
            check_choice("scorer", e["scorer"], evaluate.SCORERS)
        self.execution = e
        if self.dtype == AUTO:  # a concrete dtype in the key: bfloat16 on the job's GPU, float32 on a CPU
            self.dtype = resolve_dtype(AUTO, e["device"])

    @staticmethod
    def _synthetic(value) -> dict:
        s = section("synthetic", {} if value is True else value, SYNTHETIC)
        with at("synthetic.generator"):
            check_choice("generator", s["generator"], GENERATORS)
        integer("synthetic.prefix_len", s["prefix_len"], 0, synth.MAX_PREFIX_LEN)
        integer("synthetic.n_docs", s["n_docs"], 1)
        integer("synthetic.max_new_tokens", s["max_new_tokens"], 1)
        integer("synthetic.gen_seed", s["gen_seed"], 0, none=True)
        integer("synthetic.batch_size", s["batch_size"], 1)
        k = s["filter_rate"]
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 <= k < 100:
            raise CalibError(f"synthetic.filter_rate: expected a percentage in [0, 100) (0: no filter); got {k!r}")
        s["sampling"] = section("synthetic.sampling", s["sampling"], synth.SAMPLING)
        with at("synthetic.sampling"):
            synth.check_sampling(s["sampling"])
        return s

    def params(self) -> dict:
        """Every parameter that defines the cell (all but ``execution``)."""
        return {k: getattr(self, k) for k in TOP if k != "execution"}

    @property
    def setting(self) -> methods.Setting:
        """The job's pruning setting (method, sparsity, pattern, options), checked once."""
        return self._setting

    @property
    def evaluation(self) -> evaluate.Suite:
        """The job's suite as ``calib.evaluate.Suite`` (``suite`` is its canonical mapping)."""
        return self._evaluation

    @property
    def suite_version(self) -> str | None:
        """The world tasks' version; None for the paper's lm-eval tasks (their versions are in each row)."""
        return self.evaluation.version

    @property
    def source_version(self) -> str | None:
        """The calibration source's version (its record's, calib.sources); None where it has none."""
        rec = data.source_record(self.calibration["source"])
        return rec.version if rec is not None else None

    @property
    def stages(self) -> dict:
        """The output versions of the stages the job runs (sampling, generation and its filter,
        the pruner and any method its options name, e.g. a start or a base rule, scoring): part of the key."""
        names = {self.method} | {v for v in self.options.values() if isinstance(v, str) and v in methods.METHODS}
        out = {"sampling": data.VERSION, "scoring": evaluate.VERSION,
               "pruner": {m: methods.VERSIONS[m] for m in sorted(names)}}
        if self.synthetic:
            out.update(generation=synth.VERSION, filter=filters.VERSION)
        return out

    @property
    def key(self) -> str:
        if self._key is None:
            p = self.params()
            p["stages"] = self.stages
            p["model"] = model_identity(model_path(self.model))
            if self.suite_version is not None:
                p["suite_version"] = self.suite_version
            if self.source_version is not None:  # editing a source re-runs its own jobs, and only those
                p["source_version"] = self.source_version
            self._key = digest(p)[:32]
        return self._key
