"""Experiments: a job is one cell of the paper's grid; running it writes one row.

    from calib.experiments import Job, expand_grid, run_job, Store, run_sweep, results_frame
    job = Job(method="wanda", sparsity=0.6, calibration={"source": "world/web", "seed": 3})
    row = run_job(job)                                   # calibration -> prune -> evaluate
    run_sweep(expand_grid("examples/grids/world.yaml"), Store("runs.db"))
    results_frame(Store("runs.db"))                      # mean and std over seeds

A job's key hashes its canonical parameters (every default filled in) with the
model replaced by a hash of its files: the same cell on the same model has the
same key anywhere, and a changed model never reuses a row. ``execution``
(batch sizes, device) is recorded but not part of the key.

Expensive intermediates live under the cache dir (env CALIB_CACHE, default
~/.cache/calib), named by content hashes: calibration sets, self-generated sets
with their perplexities, filtered sets, and the dense model's evaluation.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import json
import math
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from calib.errors import CalibError, check_choice
from calib.store import Store

# ------------------------------------------------------------------ job fields
TOP = ("model", "method", "sparsity", "pattern", "options", "dtype", "calibration", "synthetic", "suite",
       "execution")
CALIBRATION = {"source": "world/pretrain", "mode": None, "nsamples": 128, "seqlen": None, "seed": 0, "pool": None}
SYNTHETIC = {"generator": "dense", "n_docs": 5000, "prefix_len": 2, "max_new_tokens": 2048, "gen_seed": 0,
             "filter_rate": 20, "batch_size": 32, "sampling": {}}
SUITE = {"name": "world", "limit": None, "n_alpaca": 1000, "tasks": None, "shots": {}}
EXECUTION = {"prune_batch_size": 8, "eval_batch_size": 32, "device": None, "offload": True}
SUITES = ("world", "paper", "ppl")  # ppl: Alpaca-role perplexity only (no lm-eval), for quick sweeps
GENERATORS = ("dense", "pruned")
DTYPES = ("float32", "bfloat16", "float16")
LIST_FIELDS = {"suite.tasks"}  # list-valued fields: a plain list is one value, not a grid axis
GRID_KEYS = TOP + ("grids", "description")


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("CALIB_CACHE", Path.home() / ".cache" / "calib"))


@contextlib.contextmanager
def _at(where: str):
    """Prefix a CalibError with the field it concerns."""
    try:
        yield
    except CalibError as e:
        raise CalibError(f"{where}: {e}") from None


def _section(where: str, value, defaults: dict) -> dict:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise CalibError(f"{where}: expected a mapping with fields {', '.join(defaults)}; got {value!r}")
    unknown = sorted(set(value) - set(defaults))
    if unknown:
        raise CalibError(f"{where}.{unknown[0]}: unknown field; valid fields: {', '.join(defaults)}")
    return {**defaults, **value}


def _int(where: str, v, lo: int = 0, hi: int | None = None, none: bool = False):
    if v is None and none:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        rng = f"an integer in [{lo}, {hi}]" if hi is not None else f"an integer >= {lo}"
        raise CalibError(f"{where}: expected {rng}{' or null' if none else ''}; got {v!r}")
    return v


MODEL_ALIASES = ("world", "world-qwen")  # the packaged world models (calib world build [--arch qwen2])


def model_path(model: str) -> Path:
    from calib.world.model import MODEL_DIR, QWEN_DIR
    return dict(zip(MODEL_ALIASES, (MODEL_DIR, QWEN_DIR))).get(model) or Path(model)


def _model_config(model: str) -> dict:
    if _MEMO is not None and ("config", model) in _MEMO:
        return _MEMO[("config", model)]
    path = model_path(model)
    if not (path / "config.json").is_file():
        raise CalibError(f"model: no model at {path} (config.json missing); valid: 'world' or 'world-qwen' "
                         f"(the packaged world models; `calib world build [--arch qwen2]` creates them) or a "
                         f"folder written by save_pretrained")
    config = json.loads((path / "config.json").read_text())
    if _MEMO is not None:
        _MEMO[("config", model)] = config
    return config


# --------------------------------------------------------------------- the job
@dataclass
class Job:
    """One cell of the grid. Construction validates and fills in every default, so two
    spellings of the same cell compare (and hash) equal; errors name the field."""
    model: str = "world"
    method: str = "wanda"
    sparsity: float | None = None
    pattern: str = "unstructured"
    options: dict = field(default_factory=dict)
    dtype: str = "float32"
    calibration: dict = field(default_factory=dict)
    synthetic: dict | None = None
    suite: dict = field(default_factory=dict)
    execution: dict = field(default_factory=dict)
    _key: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        from calib import data
        from calib.prune.engine import METHODS, parse_pattern, resolve_options, resolve_sparsity

        if self.model not in (*MODEL_ALIASES, None):
            self.model = str(Path(self.model).expanduser().resolve())
        self.model = self.model or "world"
        config = _model_config(self.model)
        with _at("method"):
            check_choice("pruning method", self.method, METHODS)
        with _at("pattern"):
            nm = parse_pattern(self.pattern)
        with _at("sparsity"):
            self.sparsity = resolve_sparsity(self.sparsity, nm)
        opts = self.options or {}
        if not isinstance(opts, dict):
            raise CalibError(f"options: expected a mapping of method options; got {opts!r}")
        if opts and set(opts) <= set(METHODS):  # per-method options: {owl: {owl_lambda: 0.1}, ...}
            opts = opts.get(self.method) or {}
        with _at("options"):
            self.options = resolve_options(self.method, opts)
        with _at("dtype"):
            check_choice("dtype", self.dtype, DTYPES)

        c = _section("calibration", self.calibration, CALIBRATION)
        if not isinstance(c["source"], str):
            raise CalibError(f"calibration.source: expected a source name or file; got {c['source']!r}")
        if Path(c["source"]).expanduser().is_file():
            c["source"] = str(Path(c["source"]).expanduser().resolve())
        with _at("calibration.source"):
            default_mode = data.default_mode(c["source"])
        c["mode"] = c["mode"] or default_mode
        with _at("calibration.mode"):
            check_choice("sampling mode", c["mode"], data.MODES)
        ctx = config.get("max_position_embeddings") or 2048
        c["seqlen"] = min(2048, ctx) if c["seqlen"] is None else c["seqlen"]
        _int("calibration.seqlen", c["seqlen"], 1, ctx)
        _int("calibration.nsamples", c["nsamples"], 1)
        _int("calibration.seed", c["seed"], 0)
        _int("calibration.pool", c["pool"], 1, none=True)
        self.calibration = c

        if self.synthetic is not None and self.synthetic is not False:
            self.synthetic = self._synthetic(self.synthetic)
        else:
            self.synthetic = None
        self.suite = self._suite(self.suite)
        e = _section("execution", self.execution, EXECUTION)
        _int("execution.prune_batch_size", e["prune_batch_size"], 1)
        _int("execution.eval_batch_size", e["eval_batch_size"], 1)
        if not isinstance(e["offload"], bool):
            raise CalibError(f"execution.offload: expected true or false; got {e['offload']!r}")
        self.execution = e

    @staticmethod
    def _synthetic(value) -> dict:
        from calib import synth
        s = _section("synthetic", {} if value is True else value, SYNTHETIC)
        with _at("synthetic.generator"):
            check_choice("generator", s["generator"], GENERATORS)
        _int("synthetic.prefix_len", s["prefix_len"], 0, synth.MAX_PREFIX_LEN)
        _int("synthetic.n_docs", s["n_docs"], 1)
        _int("synthetic.max_new_tokens", s["max_new_tokens"], 1)
        _int("synthetic.gen_seed", s["gen_seed"], 0)
        _int("synthetic.batch_size", s["batch_size"], 1)
        k = s["filter_rate"]
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 <= k < 100:
            raise CalibError(f"synthetic.filter_rate: expected a percentage in [0, 100) (0: no filter); got {k!r}")
        s["sampling"] = _section("synthetic.sampling", s["sampling"], synth.SAMPLING)
        return s

    @staticmethod
    def _suite(value) -> dict:
        from calib.evaluate import PAPER_TASKS
        from calib.world.tasks import TASKS
        s = _section("suite", {"name": value} if isinstance(value, str) else value, SUITE)
        with _at("suite.name"):
            check_choice("suite", s["name"], SUITES)
        _int("suite.limit", s["limit"], 1, none=True)
        _int("suite.n_alpaca", s["n_alpaca"], 1)
        valid = {"world": TASKS, "paper": list(PAPER_TASKS), "ppl": []}[s["name"]]
        tasks = valid if s["tasks"] is None else s["tasks"]
        if not isinstance(tasks, list) or (s["name"] == "ppl" and tasks):
            raise CalibError(f"suite.tasks: expected a list of task names of suite {s['name']!r}: "
                             f"{', '.join(valid) or 'none'}; got {tasks!r}")
        for t in tasks:
            with _at("suite.tasks"):
                check_choice(f"task of suite {s['name']!r}", t, valid)
        s["tasks"] = [t for t in valid if t in tasks]  # canonical order
        shots = s["shots"] or {}
        if shots and s["name"] != "paper":
            raise CalibError("suite.shots: only the paper suite takes shot counts (world tasks fix their own)")
        for t, n in shots.items():
            with _at("suite.shots"):
                check_choice("task", t, s["tasks"])
            _int(f"suite.shots.{t}", n, 0)
        s["shots"] = {t: shots.get(t, PAPER_TASKS[t]) for t in s["tasks"]} if s["name"] == "paper" else {}
        return s

    def params(self) -> dict:
        """Every parameter that defines the cell (all but ``execution``)."""
        return {k: getattr(self, k) for k in TOP if k != "execution"}

    @property
    def key(self) -> str:
        if self._key is None:
            p = self.params()
            p["model"] = model_identity(model_path(self.model))
            self._key = digest(p)[:32]
        return self._key


# ------------------------------------------------------------------------ grids
def _range(where, r) -> list[int]:
    r = [r] if isinstance(r, int) else r
    if not isinstance(r, list) or not 1 <= len(r) <= 2 or not all(isinstance(x, int) for x in r):
        raise CalibError(f"{where}: range must be N or [start, stop] (integers); got {r!r}")
    return list(range(*r))


def _expand(value, path: tuple = ()) -> list:
    """Every concrete value of a grid (sub)tree: lists are axes, mappings are crossed."""
    where = ".".join(path) or "grid"
    if isinstance(value, dict):
        if set(value) == {"range"}:
            return _range(where, value["range"])
        keys = list(value)
        combos = itertools.product(*[_expand(value[k], path + (k,)) for k in keys])
        return [dict(zip(keys, c)) for c in combos]
    if isinstance(value, list):
        if ".".join(path) in LIST_FIELDS and not any(isinstance(v, list) for v in value):
            return [value]
        if not value:
            raise CalibError(f"{where}: empty list (an axis needs at least one value)")
        return [c for v in value for c in _expand(v, path)]
    return [value]


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_grid(path_or_dict) -> tuple[dict, str]:
    import yaml
    if isinstance(path_or_dict, dict):
        return path_or_dict, "grid"
    path = Path(path_or_dict)
    if not path.is_file():
        raise CalibError(f"no grid file at {path}")
    try:
        grid = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CalibError(f"{path}: not valid YAML: {e}") from None
    return grid, str(path)


def expand_grid(path_or_dict) -> list[Job]:
    """Jobs of a grid (YAML file or dict), de-duplicated by key, in grid order.

    Every list is an axis (all combinations are run); ``{range: N}`` is 0..N-1.
    ``grids:`` is a list of sub-grids, each merged over the top-level fields, for
    grids that are not one product (the paper's figures and tables)."""
    grid, name = load_grid(path_or_dict)
    if not isinstance(grid, dict):
        raise CalibError(f"{name}: a grid is a mapping with fields {', '.join(GRID_KEYS)}")
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise CalibError(f"{name}: {unknown[0]}: unknown field; valid fields: {', '.join(GRID_KEYS)}")
    base = {k: v for k, v in grid.items() if k in TOP}
    subs = grid.get("grids") or [{}]
    if not isinstance(subs, list) or not all(isinstance(s, dict) for s in subs):
        raise CalibError(f"{name}: grids: expected a list of mappings (sub-grids)")
    global _MEMO
    jobs, seen, _MEMO = [], set(), {}  # read each model folder once per expansion
    try:
        _expand_into(grid, name, base, subs, jobs, seen)
    finally:
        _MEMO = None
    return jobs


def _expand_into(grid, name, base, subs, jobs, seen):
    for i, sub in enumerate(subs):
        where = f"{name}: grids[{i}]" if "grids" in grid else name
        bad = sorted(set(sub) - set(TOP))
        if bad:
            raise CalibError(f"{where}: {bad[0]}: unknown field; valid fields: {', '.join(TOP)}")
        with _at(where):
            for cell in _expand(_merge(base, sub)):
                job = Job(**cell)
                if job.key not in seen:
                    seen.add(job.key)
                    jobs.append(job)


# ------------------------------------------------------------- model identity
_MEMO: dict | None = None  # per-expansion memo of model configs and identities
_ID_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".model")
_IDS: dict[str, str] = {}


def _identity_file(name: str) -> bool:
    return name == "config.json" or name.startswith("tokenizer") or name == "special_tokens_map.json" \
        or name.endswith(_ID_SUFFIXES)


def model_identity(path) -> str:
    """sha256 over the config, weight and tokenizer files of a model folder; cached
    per (path, file sizes and mtimes) in memory and under the cache dir."""
    if _MEMO is not None and ("id", str(path)) in _MEMO:
        return _MEMO[("id", str(path))]
    path = Path(path).resolve()
    files = sorted(f for f in path.iterdir() if f.is_file() and _identity_file(f.name))
    stat = digest([str(path)] + [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files])
    if stat not in _IDS:
        memo = cache_dir() / "model_ids" / stat
        if memo.is_file():
            _IDS[stat] = memo.read_text().strip()
        else:
            h = hashlib.sha256()
            for f in files:
                h.update(f.name.encode() + b"\0")
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 22), b""):
                        h.update(chunk)
            _IDS[stat] = h.hexdigest()
            _atomic_write(memo, _IDS[stat])
    if _MEMO is not None:
        _MEMO[("id", str(path))] = _IDS[stat]
    return _IDS[stat]


# -------------------------------------------------------------------- caching
def _atomic_write(path: Path, data: str | bytes) -> None:
    """Write to a sibling temp file, fsync, rename: readers see all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock across processes; the OS drops it when the holder dies."""
    import fcntl
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _Timer(dict):
    @contextlib.contextmanager
    def __call__(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self[stage] = self.get(stage, 0.0) + time.perf_counter() - t


def _load(job: Job):
    from calib.world.model import load
    return load(model_path(job.model), dtype=job.dtype)


def _device(job: Job) -> str:
    import torch
    return job.execution["device"] or ("cuda" if torch.cuda.is_available() else "cpu")


def _prune(job: Job, model, ids):
    from calib.prune import prune
    return prune(model, ids, method=job.method, sparsity=job.sparsity, pattern=job.pattern,
                 batch_size=job.execution["prune_batch_size"], device=_device(job),
                 offload=job.execution["offload"], **job.options)


class _PoolTokenizer:
    """A tokenizer that remembers its last few whole-pool encodings. data.sample
    tokenizes the same document pool for every seed; the ids do not change, so a
    sweep over seeds tokenizes each pool once per process."""
    _memo: dict = {}

    def __init__(self, tok, ident: str):
        self._tok, self._ident = tok, ident

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, text, **kw):
        h = hashlib.sha256()
        for t in [text] if isinstance(text, str) else text:
            h.update(hashlib.sha256(t.encode()).digest())
        key = (self._ident, h.hexdigest(), json.dumps(kw, sort_keys=True, default=str))
        if key not in self._memo:
            while len(self._memo) >= 4:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = self._tok(text, **kw)
        return self._memo[key]


def calibration_set(job: Job, model, tok, timer: _Timer | None = None):
    """(ids [nsamples, seqlen], info) for the job, cached by content hash."""
    import torch
    from calib import data
    timer = timer if timer is not None else _Timer()
    c, s = job.calibration, job.synthetic
    mid = model_identity(model_path(job.model))
    key = digest({"model": mid, "calibration": c, "synthetic": s, "generation": s and _generation_spec(job, mid)})
    f = cache_dir() / "calibration" / f"{key[:32]}.pt"
    if f.is_file():
        blob = torch.load(f, weights_only=True)
        return blob["ids"], json.loads(blob["info"])
    if s is None:
        cs = data.sample(c["source"], _PoolTokenizer(tok, mid), c["nsamples"], c["seqlen"], seed=c["seed"],
                         mode=c["mode"], pool=c["pool"])
        info = {}
    else:
        path, info = synthetic_source(job, model, tok, timer)
        with timer("calibration_sample"):
            cs = data.sample(str(path), tok, c["nsamples"], c["seqlen"], seed=c["seed"], mode="concat")
    info.update(pool=cs.meta["pool"], documents_used=len(cs.meta["documents_used"]), hash=cs.hash)
    buf = io.BytesIO()
    torch.save({"ids": cs.input_ids, "info": json.dumps(info)}, buf)
    _atomic_write(f, buf.getvalue())
    return cs.input_ids, info


def _generation_spec(job: Job, mid: str) -> dict:
    s, c = job.synthetic, job.calibration
    spec = {"model": mid, "dtype": job.dtype, "source": c["source"],
            **{k: v for k, v in s.items() if k != "filter_rate"}}
    if s["generator"] == "pruned":  # the generator is pruned like the job, on the original source
        spec["pruned_by"] = {"method": job.method, "sparsity": job.sparsity, "pattern": job.pattern,
                             "options": job.options, "calibration": c}
    return spec


def synthetic_source(job: Job, model, tok, timer: _Timer):
    """Self-generate from the source's documents, score perplexities, filter: the path of
    the filtered jsonl (a calib.synth file) and its stats. Generated sets are cached per
    (model, source, generation options), filtered sets per filter rate as well."""
    import numpy as np
    from calib import data, filters, synth
    s, c = job.synthetic, job.calibration
    spec = _generation_spec(job, model_identity(model_path(job.model)))
    d = cache_dir() / "synthetic" / digest(spec)[:32]
    gen, done = d / "generated.jsonl", d / "complete.json"
    with _lock(d / ".lock"):  # one writer per generated set, even across processes
        if not done.is_file():
            with timer("synth_generate"):
                gmodel = model
                if s["generator"] == "pruned":
                    gmodel, _ = _load(job)
                    plain = Job(**{**job.params(), "synthetic": None, "execution": job.execution})
                    ids, _ = calibration_set(plain, gmodel, tok, timer)
                    _prune(job, gmodel, ids)
                gmodel.to(_device(job))
                texts = data.load_texts(c["source"], pool=s["n_docs"])
                kw = dict(prefix_len=s["prefix_len"], max_new_tokens=s["max_new_tokens"], batch_size=s["batch_size"],
                          seed=s["gen_seed"], sampling=s["sampling"], skip_short=True, source=c["source"],
                          progress=False)
                try:
                    rows = synth.generate(gmodel, tok, texts, gen, **kw)
                except CalibError as e:
                    if "other settings" not in str(e):
                        raise
                    gen.unlink()  # a partial file from another path to the same model: start over
                    rows = synth.generate(gmodel, tok, texts, gen, **kw)
                ppl = filters.perplexities(gmodel, tok, [r["text"] for r in rows], progress=False)
                if job.execution["offload"]:
                    model.to("cpu")
                _atomic_write(done, json.dumps({"spec": spec, "n_rows": len(rows),
                                                "ppl": [None if not math.isfinite(p) else p for p in ppl]}))
    meta = json.loads(done.read_text())
    k = s["filter_rate"]
    out = d / f"filtered-{k:g}.jsonl"
    ppl = np.array([np.nan if p is None else p for p in meta["ppl"]])
    # texts of < 2 tokens have no perplexity and are dropped either way
    keep = filters.ppl_keep(ppl, k) if k > 0 else np.isfinite(ppl)
    if not out.is_file():
        rows = synth.read_rows(gen)
        _atomic_write(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r, kp in zip(rows, keep) if kp))
    return out, {"synthetic_dir": d.name, "generated": meta["n_rows"], "kept": int(keep.sum())}


# ------------------------------------------------------------------ evaluation
def _task_metrics(res: dict, tasks: list[str]) -> dict:
    out = {}
    for t in tasks:
        for m in ("acc", "acc_norm"):
            if m in res["tasks"].get(t, {}):
                out[f"{t}/{m}"] = res["tasks"][t][m]
    accs = [res["tasks"][t]["acc"] for t in tasks if "acc" in res["tasks"].get(t, {})]
    if accs:
        out["avg"] = float(sum(accs) / len(accs))
    return out


def evaluate(job: Job, model, tok) -> tuple[dict, dict]:
    """(flat metrics, evaluation metadata) of the job's suite on ``model``."""
    from calib import evaluate as ev
    s, bs = job.suite, job.execution["eval_batch_size"]
    if s["name"] in ("world", "ppl"):
        from calib.world.tasks import alpaca_texts, task_dir
        ppl = ev.perplexity(model, tok, alpaca_texts(s["n_alpaca"]), batch_size=bs)
        metrics = {"alpaca_ppl": ppl["ppl_paper"], "alpaca_ppl_corpus": ppl["ppl_corpus"]}
        if s["name"] == "ppl":
            return metrics, {}
        res = ev.lm_eval_tasks(model, tok, s["tasks"], include_path=str(task_dir()), batch_size=bs,
                               limit=s["limit"])
    else:
        from calib import data
        ppl = ev.perplexity(model, tok, data.load_texts("alpaca", pool=s["n_alpaca"]), batch_size=bs)
        metrics = {"alpaca_ppl": ppl["ppl_paper"], "alpaca_ppl_corpus": ppl["ppl_corpus"]}
        res = ev.lm_eval_tasks(model, tok, s["shots"], batch_size=bs, limit=s["limit"])
    metrics.update(_task_metrics(res, s["tasks"]))
    meta = {"lm_eval": res["lm_eval_version"], "task_versions": res["task_versions"],
            "n_shot": res.get("n_shot", {})}
    return metrics, meta


def dense_evaluation(job: Job, model, tok) -> tuple[dict, dict]:
    """The unpruned model's metrics on the job's suite, cached per (model, dtype, suite)."""
    key = digest({"model": model_identity(model_path(job.model)), "dtype": job.dtype, "suite": job.suite})
    f = cache_dir() / "dense_eval" / f"{key[:32]}.json"
    if f.is_file():
        blob = json.loads(f.read_text())
        return blob["metrics"], blob["meta"]
    metrics, meta = evaluate(job, model, tok)
    _atomic_write(f, json.dumps({"metrics": metrics, "meta": meta}))
    return metrics, meta


def versions() -> dict:
    import numpy
    import torch
    import transformers

    import calib
    out = {"calib": calib.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
           "numpy": numpy.__version__, "python": sys.version.split()[0]}
    try:
        from importlib.metadata import version
        out["lm_eval"] = version("lm_eval")
    except Exception:  # not installed: only the ppl suite can run
        pass
    return out


# ------------------------------------------------------------------- running
def run_job(job: Job) -> dict:
    """Build or reuse the calibration set, prune, evaluate; return the row (not written).
    Raises on failure, including non-finite weights or metrics."""
    import torch
    t0 = time.perf_counter()
    timer = _Timer()
    with timer("load"):
        model, tok = _load(job)
    with timer("calibration"):
        ids, cinfo = calibration_set(job, model, tok, timer)
    dev = _device(job)
    with timer("dense_evaluate"):
        model.to(dev)
        dense, _ = dense_evaluation(job, model, tok)
        if job.execution["offload"]:
            model.to("cpu")
    with timer("prune"):
        res = _prune(job, model, ids)
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise FloatingPointError(f"the pruned model has non-finite weights in {', '.join(bad[:5])}")
    with timer("evaluate"):
        model.to(dev)
        metrics, meta = evaluate(job, model, tok)
    nan = sorted(k for k, v in metrics.items() if isinstance(v, float) and math.isnan(v))
    if nan:
        raise FloatingPointError(f"NaN metrics: {', '.join(nan)}")
    metrics["sparsity_actual"] = res.report["overall"]["sparsity"]
    timer["total"] = time.perf_counter() - t0
    info = {"calibration": cinfo, "prune": {k: res.report[k] for k in ("overall", "owl") if k in res.report},
            "execution": job.execution, "device": dev, "pid": os.getpid()}
    return {"key": job.key, "status": "done", "params": job.params(), "calib_hash": cinfo["hash"],
            "mask_hash": res.mask_hash, "metrics": metrics, "dense": dense,
            "versions": {**versions(), **meta}, "timings": dict(timer), "info": info,
            "host": socket.gethostname()}


def failed_row(job: Job, error: str, attempts: int) -> dict:
    return {"key": job.key, "status": "failed", "params": job.params(), "error": error,
            "attempts": attempts, "versions": versions(), "info": {"execution": job.execution},
            "host": socket.gethostname()}


def __getattr__(name):  # sweep helpers, imported lazily: calib.experiments.run_sweep etc.
    if name in ("run_sweep", "results_frame"):
        from calib import sweep
        return getattr(sweep, name)
    raise AttributeError(name)


# ------------------------------------------------------------------------ CLI
def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a grid of experiments (prune + evaluate) into a results store",
                       description="Expand a YAML grid into jobs and run those not yet finished in the store. "
                                   "Safe to kill and re-run: finished rows are kept and skipped.")
    p.add_argument("grid", type=Path, help="grid file (YAML); see docs/experiments.md")
    p.add_argument("--store", type=Path, default=Path("runs.db"), help="SQLite results store (default runs.db)")
    p.add_argument("--executor", default="local", help="local (in sequence, the default) | ray")
    p.add_argument("--retries", type=int, default=1, help="extra attempts for a failing job (default 1)")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--ray-num-cpus", type=int, default=None, help="CPUs of a local Ray started by this command")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and what is done; run nothing")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_cmd)

    r = sub.add_parser("results", help="export the results store: mean ± std over seeds, or raw rows",
                       description="Export a results store as a table (stdout) or CSV.")
    r.add_argument("--store", type=Path, default=Path("runs.db"))
    r.add_argument("--csv", type=Path, default=None, help="write CSV here instead of printing")
    r.add_argument("--raw", action="store_true", help="one line per row, no aggregation")
    r.add_argument("--over", default="calibration.seed",
                   help="comma-separated parameters to average over (default calibration.seed)")
    r.add_argument("--status", default="done", help="done | failed | all (default done)")
    r.add_argument("--metrics", default=None, help="comma-separated metrics to keep (default all)")
    r.set_defaults(func=_results_cmd)


def _run_cmd(args) -> int:
    from calib import sweep
    check_choice("executor", args.executor, sweep.EXECUTORS)
    if args.retries < 0:
        raise CalibError(f"--retries must be >= 0, got {args.retries}")
    jobs = expand_grid(args.grid)
    with Store(args.store) as store:
        if args.dry_run:
            status = store.status()
            for j in jobs:
                c = j.calibration
                print(j.key, status.get(j.key, "todo"), j.method, j.pattern, f"{j.sparsity:g}", c["source"],
                      f"n={c['nsamples']}", f"seed={c['seed']}", "synthetic" if j.synthetic else "", sep="\t")
            return 0
        summary = sweep.run_sweep(jobs, store, executor=args.executor, retries=args.retries,
                                  progress=not args.no_progress, ray_address=args.ray_address,
                                  ray_num_cpus=args.ray_num_cpus)
    print(f"{summary['total']} jobs: {summary['skipped']} already done, {summary['done']} done, "
          f"{summary['failed']} failed; store {args.store}", file=sys.stderr)
    return 1 if summary["failed"] else 0


def _results_cmd(args) -> int:
    from calib import sweep
    check_choice("status", args.status, ("done", "failed", "all"))
    if not args.store.is_file():
        raise CalibError(f"no results store at {args.store}")
    with Store(args.store) as store:
        over = [o for o in args.over.split(",") if o]
        metrics = args.metrics.split(",") if args.metrics else None
        df = sweep.results_frame(store, over=None if args.raw else over, status=args.status, metrics=metrics)
    if args.csv:
        df.to_csv(args.csv, index=False)
        print(f"{len(df)} lines -> {args.csv}", file=sys.stderr)
    else:
        import pandas as pd
        with pd.option_context("display.max_rows", 500, "display.max_columns", 50, "display.width", 200):
            print(df if args.raw else sweep.pretty(df).to_string(index=False))
    return 0
