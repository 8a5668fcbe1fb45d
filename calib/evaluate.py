"""Evaluation of (pruned) models: a ``Suite`` (what is measured) and ``run_suite`` (measuring it),
the one way every caller evaluates: jobs, ``calib evaluate``, the realism report and the planner.

Perplexity on a held-out text set is reported as
* ``ppl_corpus``: token-weighted, exp(Σ NLL / Σ tokens);
* ``ppl_paper``: the paper's definition, mean over samples of exp(mean token NLL).

Tasks run through ``lm_eval.simple_evaluate`` on the in-memory model (no fork, no temporary
save), scored by ``calib.scorer.FastLM`` (``scorer="fast"``; lm-eval users also reach it as model
``calib-fast``) or by upstream ``HFLM`` (``scorer="hflm"``), each built here directly; both give the
same scores. Built lm-eval task objects are
kept per process, so only the first evaluation in a worker builds them.

Per item, every evaluation keeps what lm-eval scored (``records``): 0/1 ``acc`` (and ``acc_norm``
where the task has it), ``logscore``, the gold choice's log-probability normalised over the item's
choices (the log-softmax of the choices' log-likelihoods at the label: the numbers ``acc`` takes its
argmax over), and ``fact``, the unit the item's correctness depends on (a world item's knowledge-base
fact; elsewhere the document itself).
"""
from __future__ import annotations

import base64
import json
import contextlib
import io
import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from calib.errors import CalibError, at, check_choice, integer, section

if TYPE_CHECKING:  # numpy loads with the first score, so `calib --help` stays fast
    import numpy as np

PAPER_TASKS = {"boolq": 0, "winogrande": 0, "piqa": 0, "hellaswag": 0, "arc_easy": 0, "arc_challenge": 0,
               "mmlu": 5}
"""The paper's tasks with their shot counts. The paper's released code ran MMLU
0-shot; the paper says 5-shot. The count is explicit so either can be chosen."""
OPTIONAL_TASKS = {"wikitext": 0}
"""Paper-suite tasks run only when named (``tasks: [..., wikitext]``, ``--tasks ...,wikitext``):
lm-eval's WikiText-2 perplexity, the headline metric of the Wanda and SparseGPT papers."""
PPL_METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")  # what a perplexity task reports
BATCH_SIZE = 32  # sequences per forward pass when evaluating (memory, not results)
SUITE_NAMES = ("world", "paper", "ppl", "real")  # ppl: perplexities only (no lm-eval), for quick sweeps
REAL_BATCH = 4  # documents per forward pass in the real suite: logits over SmolLM2's 49k-token vocabulary


def token_nll(model, tokenizer, texts: Sequence[str], max_length: int | None = None,
              batch_size: int = 16, progress: bool = False) -> list[np.ndarray]:
    """Per-token negative log-likelihoods of each text (BOS as context, not scored).
    Batching and padding are the filters' scorer, so both measure the same thing."""
    from calib.filters import nll_per_token, token_logits

    if not texts:
        raise CalibError("cannot compute perplexity of an empty text set")
    return [nll_per_token(ids, logits).double().numpy()
            for ids, logits in token_logits(model, tokenizer, list(texts), batch_size, max_length,
                                            desc="perplexity", progress=progress)]


def perplexity(model, tokenizer, texts: Sequence[str], max_length: int | None = None,
               batch_size: int = 16, progress: bool = False) -> dict:
    import numpy as np
    nlls = [n for n in token_nll(model, tokenizer, texts, max_length, batch_size, progress) if len(n)]
    total = sum(float(n.sum()) for n in nlls)
    count = sum(len(n) for n in nlls)
    per_sample = [math.exp(float(n.mean())) for n in nlls]
    return {"ppl_corpus": math.exp(total / count), "ppl_paper": float(np.mean(per_sample)),
            "nll_per_token": total / count, "n_texts": len(nlls), "n_tokens": count}


@lru_cache(maxsize=4)
def _task_manager(include_path: str | None):
    # Indexing lm-eval's ~14k bundled task YAMLs takes tens of seconds; a local task
    # folder (the world's) is self-contained, so skip them then, and index once per process.
    from lm_eval.tasks import TaskManager
    return TaskManager(include_path=include_path, include_defaults=include_path is None)


@lru_cache(maxsize=4096)
def _jinja(template: str):
    from lm_eval import utils
    return utils.env.from_string(template)


def _render(template: str, doc: dict) -> str:
    return _jinja(template).render(**doc)


@contextlib.contextmanager
def _lean_lm_eval():
    """Three lm-eval costs calib does not need, switched off while it runs:
    * the torch environment report added to every result runs pip and nvidia-smi in
      subprocesses (about 0.8 s per call, a quarter of a small world job), and the git hash
      runs git (which prints "fatal: not a git repository" outside one); calib records its
      own versions in each row;
    * every doc_to_text/target/choice compiles its jinja template anew (about 3 s of a
      world evaluation at 500 items per task); the same template is compiled once here, in
      lm-eval's own jinja environment, so the text is the same."""
    from lm_eval import evaluator, utils
    originals = evaluator.add_env_info, evaluator.get_git_commit_hash, utils.apply_template
    evaluator.add_env_info, evaluator.get_git_commit_hash = (lambda results: None), (lambda: None)
    utils.apply_template = _render
    try:
        yield
    finally:
        evaluator.add_env_info, evaluator.get_git_commit_hash, utils.apply_template = originals


SCORERS = {"fast": "calib.scorer.FastLM, calib's exact prefix-sharing scorer",
           "hflm": "lm-eval's HFLM (the same scores, slower)"}
"""scorer -> what scores; both classes are built here directly, not through lm-eval's registry."""
# the output version of scoring (a suite's metrics and item records), part of every job key and
# of the dense evaluations' cache: bump it whenever a change alters a score (tests/test_golden.py)
VERSION = 1
SCORER = "fast"  # the default: calib.scorer's exact multiple-choice scorer

_BUILT: dict = {}  # (include_path, task name, num_fewshot) -> built lm-eval Task/Group objects


def _lm(model, tokenizer, scorer: str, batch_size: int):
    check_choice("scorer", scorer, SCORERS)
    if scorer == "fast":
        from calib.scorer import FastLM as LM
    else:
        from lm_eval.models.huggingface import HFLM as LM
    return LM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def _built_tasks(names: list[str], include_path: str | None, n_shot: int | None) -> list:
    """lm-eval task objects, built once per process. simple_evaluate re-seeds their few-shot
    samplers and rebuilds their requests on every call; the key includes the shot count because
    simple_evaluate writes it into the task's config."""
    missing = [t for t in names if (include_path, t, n_shot) not in _BUILT]
    if missing:
        loaded = _task_manager(include_path).load(missing)
        for t in missing:
            if t in loaded["groups"]:
                _BUILT[(include_path, t, n_shot)] = [loaded["groups"][t]]
            elif t in loaded["tasks"]:
                _BUILT[(include_path, t, n_shot)] = [loaded["tasks"][t]]
            else:  # a tag: its tasks
                _BUILT[(include_path, t, n_shot)] = list(loaded["tasks"].values())
    return [obj for t in names for obj in _BUILT[(include_path, t, n_shot)]]


def check_tasks(names, include_path: str | None) -> None:
    """Every name is a task, group or tag of the folder (or of lm-eval's index); else one line
    naming the unknown ones, the valid choices and the close matches."""
    tm = _task_manager(include_path)
    unknown = [t for t in names if t not in tm.all_tasks]
    if unknown:
        import difflib
        where = f"in {include_path}" if include_path else "in lm-eval's task index"
        known = sorted(tm.all_tasks) if include_path else ["any lm-eval task, group or tag"]
        close = sorted({c for t in unknown for c in difflib.get_close_matches(t, list(tm.all_tasks), n=3)})
        raise CalibError(f"unknown task {', '.join(map(repr, unknown))} {where}; valid choices: "
                         f"{', '.join(known)}" + (f" (close: {', '.join(close)})" if close else ""))


def _load_tasks(names: list[str], include_path: str | None, n_shot: int | None) -> list:
    """_built_tasks, with a dataset that cannot be read (no network, not in the HF cache) as one line."""
    try:
        return _built_tasks(names, include_path, n_shot)
    except OSError as e:  # datasets' ConnectionError / FileNotFoundError, hub HTTP errors
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise CalibError(f"lm-eval task(s) {', '.join(names)}: a dataset cannot be read ({first}); without network, "
                         f"fill the HF datasets cache (HF_HOME) where the hub is reachable, or point the suite at "
                         f"a local task folder (suite.include_path, calib evaluate --include-path)") from None


def _leaves(name: str, subtasks: dict) -> list[str]:
    """The leaf tasks of a group, depth first (lm-eval's ``group_subtasks``); a task is its own leaf."""
    if name not in subtasks:
        return [name]
    return [leaf for sub in subtasks[name] for leaf in _leaves(sub, subtasks)]


def _quiet():
    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.ERROR)


# ------------------------------------------------------------------ the suite
@dataclass(frozen=True)
class Suite:
    """What an evaluation measures: the paper's Alpaca-role perplexity, held-out loss on the
    pretraining mixture (world suites), and lm-eval tasks with their shot counts.

    * ``world``: the seven world tasks (``calib.world.tasks``), Alpaca-role and held-out texts;
    * ``paper``: the paper's lm-eval tasks (``PAPER_TASKS``), from lm-eval's index or from a local
      task folder (``include_path``), and Alpaca from the hub (``calib.data``);
    * ``ppl``: the world's perplexities only;
    * ``real``: held-out perplexity on each real source (``calib.real``; ``tasks`` are its sources,
      ``n_heldout`` its documents per source), for a real model such as ``smollm2``.

    Build one with ``Suite.of`` (a name, a grid's mapping, or a Suite): it checks every field and
    fills in the defaults, so two spellings of one suite are equal."""
    name: str
    tasks: tuple[str, ...]
    shots: tuple[tuple[str, int], ...]  # paper suite: (task, num_fewshot), in task order
    limit: int | None
    n_alpaca: int
    n_heldout: int
    include_path: str | None

    @classmethod
    def defaults(cls) -> dict:
        """A grid's suite fields and their defaults (``tasks`` None: all of the suite's)."""
        from calib.world.tasks import N_ALPACA, N_HELDOUT
        return {"name": "world", "limit": None, "n_alpaca": N_ALPACA, "n_heldout": N_HELDOUT, "tasks": None,
                "shots": {}, "include_path": None}

    @classmethod
    def of(cls, value=None, where: str = "suite", flags: dict | None = None) -> "Suite":
        """The suite ``value`` names (None: the world suite), checked; an error names the field as
        ``where.field``, or as ``flags[field]`` (a CLI's own flag names)."""
        if isinstance(value, Suite):
            return value
        flags = flags or {}
        name = lambda f: flags.get(f, f"{where}.{f}")  # noqa: E731
        given = {"name": value} if isinstance(value, str) else value
        s = section(where, given, cls.defaults())
        with at(name("name")):
            check_choice("suite", s["name"], SUITE_NAMES)
        if s["name"] == "real":  # its own defaults: no Alpaca, held-out documents per real source
            from calib import real
            given = given or {}
            s["n_alpaca"], s["n_heldout"] = given.get("n_alpaca", 0), given.get("n_heldout", real.N_HELDOUT)
            if s["n_alpaca"] != 0:
                raise CalibError(f"{name('n_alpaca')}: the real suite has no Alpaca perplexity; valid: 0")
        integer(name("limit"), s["limit"], 1, none=True)
        integer(name("n_alpaca"), s["n_alpaca"], 0)  # 0: no Alpaca perplexity
        integer(name("n_heldout"), s["n_heldout"], 0)
        valid = cls.valid_tasks(s["name"])
        tasks = [t for t in valid if t not in OPTIONAL_TASKS] if s["tasks"] is None else s["tasks"]
        if not isinstance(tasks, (list, tuple)) or (s["name"] == "ppl" and tasks) or (s["name"] == "real" and not tasks):
            raise CalibError(f"{name('tasks')}: expected a list of task names of suite {s['name']!r}: "
                             f"{', '.join(valid) or 'none'}; got {tasks!r}")
        for t in tasks:
            with at(name("tasks")):
                check_choice("task", t, valid)
        tasks = tuple(t for t in valid if t in tasks)  # canonical order
        shots = s["shots"] or {}
        if shots and s["name"] != "paper":
            raise CalibError(f"{name('shots')}: only the paper suite takes shot counts (world tasks fix their own)")
        for t, n in shots.items():
            with at(name("shots")):
                check_choice("task", t, tasks)
            integer(f"{name('shots')}.{t}", n, 0)
        own = {**PAPER_TASKS, **OPTIONAL_TASKS}
        shots = tuple((t, shots.get(t, own[t])) for t in tasks) if s["name"] == "paper" else ()
        inc = s["include_path"]
        if inc is not None:
            if s["name"] != "paper":
                raise CalibError(f"{name('include_path')}: only the paper suite reads a task folder "
                                 f"(the world's is built in)")
            if not isinstance(inc, str) or not Path(inc).expanduser().is_dir():
                raise CalibError(f"{name('include_path')}: expected a folder of lm-eval task YAMLs; "
                                 f"{inc!r} is not a folder")
            inc = str(Path(inc).expanduser().resolve())
        return cls(name=s["name"], tasks=tasks, shots=shots, limit=s["limit"], n_alpaca=s["n_alpaca"],
                   n_heldout=s["n_heldout"], include_path=inc)

    @staticmethod
    def valid_tasks(name: str) -> list[str]:
        from calib import real
        from calib.world.tasks import TASKS
        return {"world": list(TASKS), "paper": [*PAPER_TASKS, *OPTIONAL_TASKS], "ppl": [], "real": list(real.SOURCES)}[name]

    def as_dict(self) -> dict:
        """The canonical mapping (a job's ``suite`` and part of its key); ``include_path`` only when
        set, so the keys of jobs without one are what they were before it existed."""
        d = {"name": self.name, "limit": self.limit, "n_alpaca": self.n_alpaca, "n_heldout": self.n_heldout,
             "tasks": list(self.tasks), "shots": dict(self.shots)}
        if self.include_path is not None:
            d["include_path"] = self.include_path
        return d

    @property
    def world(self) -> bool:
        return self.name in ("world", "ppl")

    def lm_eval(self) -> tuple[dict, str | None]:
        """(task -> num_fewshot, None keeping the task's own; the lm-eval include path)."""
        if self.name in ("ppl", "real"):
            return {}, None
        if self.name == "world":
            from calib.world.tasks import task_dir
            return {t: None for t in self.tasks}, str(task_dir())
        return dict(self.shots), self.include_path

    def alpaca_texts(self) -> list[str]:
        """The Alpaca-role texts: the world's held-out instructions, or Alpaca itself (hub or local copy)."""
        if not self.n_alpaca or self.name == "real":
            return []
        if self.world:
            from calib.world.tasks import alpaca_texts
            return alpaca_texts(self.n_alpaca)
        from calib import data
        return data.load_texts("alpaca", pool=self.n_alpaca)

    def heldout_texts(self) -> list[str]:
        """Held-out documents of the pretraining mixture (world suites; the paper's is not at hand)."""
        if not self.world or not self.n_heldout:
            return []
        from calib.world.tasks import heldout_texts
        return heldout_texts(self.n_heldout)

    @property
    def version(self) -> str | None:
        """The world tasks' version (``world.tasks.version``); None for the paper's lm-eval tasks,
        whose versions lm-eval records in each evaluation."""
        if self.name == "real":
            from calib import real
            return real.version()
        if not self.world:
            return None
        from calib.world.tasks import version
        return version()

    def preflight(self, flags: dict | None = None) -> None:
        """Fail in one line, before a model is loaded, where the suite's data is not at hand: the
        paper's Alpaca (hub or local copy) and the tasks of a local task folder."""
        if self.name == "paper" and self.n_alpaca:
            from calib import data
            skip = (flags or {}).get("n_alpaca", "suite.n_alpaca")
            with at(f"the paper suite's Alpaca perplexity ({skip} 0 skips it)"):
                data.load_texts("alpaca", pool=1)
        if self.include_path:
            check_tasks(sorted(self.tasks), self.include_path)
        if self.name == "real":
            from calib import real
            for t in self.tasks:
                real.documents(t, 1, split="heldout")  # the pinned files are installed


# ------------------------------------------------------------------ requests
def suite_requests(suite: Suite) -> list[tuple[int | None, list]]:
    """The loglikelihood requests lm-eval builds for the suite's tasks, few-shot contexts included:
    what a scorer is fed. One list per ``simple_evaluate`` call of ``lm_eval_tasks`` (tasks of one
    shot count go together), as (num_fewshot, lm-eval Instances)."""
    shots, include = suite.lm_eval()
    if not shots:
        return []
    _quiet()
    check_tasks(list(shots), include)
    out = []
    for n_shot, names in _by_shots(shots):
        tasks = _task_manager(include).load(names)["tasks"]
        instances = []
        with contextlib.redirect_stderr(io.StringIO()):
            for task in tasks.values():
                if n_shot is not None or task.get_config("num_fewshot") is None:
                    task.set_config(key="num_fewshot", value=n_shot or 0)
                task.set_fewshot_seed(1234)
                task.build_all_requests(limit=suite.limit, rank=0, world_size=1)
                instances += task.instances
        out.append((n_shot, instances))
    return out


def _by_shots(shots: dict) -> list[tuple[int | None, list[str]]]:
    """Tasks grouped by shot count (simple_evaluate takes one num_fewshot per call), None first."""
    counts = sorted(set(shots.values()), key=lambda v: -1 if v is None else v)
    return [(n, [t for t, v in shots.items() if v == n]) for n in counts]


# ------------------------------------------------------------------ per-item records
RECORD_FIELDS = ("acc", "acc_norm", "logscore", "fact", "nll", "tokens")  # nll, tokens: a real document's


def _gold(task, doc) -> list[int]:
    """The gold choice(s) of a multiple-choice doc, found as lm-eval's process_results finds them:
    the label is doc_to_text's where the choices are contexts (Winogrande), else doc_to_target's,
    an index or the text of a choice."""
    choices = task.doc_to_choice(doc)
    gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
    golds = gold if isinstance(gold, list) else [gold]
    return [choices.index(g) if isinstance(g, str) else int(g) for g in golds]


def _leaf_tasks(built: list) -> dict:
    """name -> lm-eval Task of every task in ``built`` (a group's subtasks too)."""
    out = {}
    for obj in built:
        for task in obj.get_all_tasks() if hasattr(obj, "get_all_tasks") else [obj]:
            out[task.config.task] = task
    return out


def _record(sample: dict, name: str, task) -> dict:
    """What lm-eval scored for one item: acc (and acc_norm), the gold choice's log-probability
    normalised over the choices (several gold choices: their total), and the item's fact (a world
    item's; elsewhere the document, task/doc_id)."""
    import numpy as np
    lls = np.array([float(r[0]) for r in sample["filtered_resps"]], dtype=np.float64)
    gold = _gold(task, sample["doc"])
    logscore = float(np.logaddexp.reduce(lls[gold]) - np.logaddexp.reduce(lls))
    out = {"doc_id": int(sample["doc_id"]), "acc": int(sample["acc"]), "logscore": logscore,
           "fact": str(sample["doc"].get("fact") or f"{name}/{sample['doc_id']}")}
    if "acc_norm" in sample:
        out["acc_norm"] = int(sample["acc_norm"])
    return out


def _columns(records: list[dict]) -> dict:
    """Per-item records -> one list per field, in doc order."""
    keys = [k for k in ("doc_id", *RECORD_FIELDS) if all(k in r for r in records)]
    return {k: [r[k] for r in records] for k in keys}


def encode_records(records: dict) -> dict:
    """Per task, the compact form a store row keeps: acc/acc_norm as strings of 0/1, logscore as
    base64 float32, the items' facts as a JSON list (an item's own may join several by '|'); a real
    document's nll sum as base64 float64, its tokens int32."""
    import numpy as np
    out = {}
    for t, r in records.items():
        e = {k: "".join(str(int(v)) for v in r[k]) for k in ("acc", "acc_norm") if k in r}
        if "logscore" in r:
            e["logscore"] = base64.b64encode(np.asarray(r["logscore"], dtype="<f4").tobytes()).decode()
        for k, dt in (("nll", "<f8"), ("tokens", "<i4")):
            if k in r:
                e[k] = base64.b64encode(np.asarray(r[k], dtype=dt).tobytes()).decode()
        if "fact" in r:
            e["fact"] = json.dumps([str(f) for f in r["fact"]])
        out[t] = e
    return out


def decode_records(stored: dict) -> dict:
    """``encode_records`` undone, as numpy arrays; a row from before records existed (task -> a
    string of 0/1) gives ``acc`` alone, so its missing fields are seen, not guessed."""
    import numpy as np
    out = {}
    for t, e in (stored or {}).items():
        if isinstance(e, str):
            e = {"acc": e}
        r = {k: np.frombuffer(e[k].encode(), dtype=np.uint8) - ord("0") for k in ("acc", "acc_norm") if k in e}
        if "logscore" in e:
            r["logscore"] = np.frombuffer(base64.b64decode(e["logscore"]), dtype="<f4").astype(np.float64)
        for k, dt, to in (("nll", "<f8", np.float64), ("tokens", "<i4", np.int64)):
            if k in e:
                r[k] = np.frombuffer(base64.b64decode(e[k]), dtype=dt).astype(to)
        if "fact" in e:
            f = e["fact"]  # rows written before facts were a JSON list joined them by '|'
            r["fact"] = np.array(json.loads(f) if f.startswith("[") else f.split("|"), dtype=object)
        out[t] = r
    return out


def item_rows(records: dict) -> dict:
    """Per task, one dict per item (doc_id, acc, acc_norm, logscore, fact): ``calib evaluate --json``."""
    return {t: [dict(zip(r, vals)) for vals in zip(*(list(v) for v in r.values()))] for t, r in records.items()}


# ------------------------------------------------------------------ running
def real_heldout(model, tokenizer, source: str, n: int, batch_size: int = REAL_BATCH) -> dict:
    """Held-out perplexity on a real source: its first ``n`` held-out documents (``calib.real``),
    each scored over its first HELDOUT_TOKENS tokens. Returns ``ppl`` (token-weighted) and the
    per-document records: ``fact`` the document's id (the unit statistics resample, as a world
    item's fact), ``nll`` the summed NLL in nats, ``tokens`` the tokens scored."""
    from calib import real
    docs = real.documents(source, n, split="heldout")
    if not docs:
        raise CalibError(f"real source {source!r} has no held-out documents")
    cut = logging.getLogger("calib.filters")
    level, _ = cut.level, cut.setLevel(logging.ERROR)  # cutting to HELDOUT_TOKENS is the design, not news
    try:
        nlls = token_nll(model, tokenizer, [t for _, t in docs], max_length=real.HELDOUT_TOKENS,
                         batch_size=min(batch_size, REAL_BATCH))
    finally:
        cut.setLevel(level)
    nll, tokens = [float(x.sum()) for x in nlls], [len(x) for x in nlls]
    return {"ppl": math.exp(sum(nll) / sum(tokens)),
            "records": {"doc_id": list(range(len(docs))), "fact": [i for i, _ in docs], "nll": nll, "tokens": tokens}}


def lm_eval_tasks(model, tokenizer, tasks: Sequence[str] | dict, include_path: str | None = None,
                  batch_size: int = BATCH_SIZE, limit: int | None = None, seed: int = 1234,
                  progress: bool = False, scorer: str = SCORER) -> dict:
    """Run lm-eval tasks on an in-memory model. ``tasks`` is a list of names, or a dict
    name -> num_fewshot (None keeps the task's own setting). Returns per-task metrics, the
    lm-eval version and each task's version, and ``records``: per task, per-item fields in doc
    order (see the module docstring; a group's are its subtasks', one after another)."""
    import lm_eval
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet()
    shots = dict(tasks) if isinstance(tasks, dict) else {t: None for t in tasks}
    include = str(include_path) if include_path else None
    check_tasks(shots, include)
    lm = _lm(model, tokenizer, scorer, batch_size)
    tm = _task_manager(include)
    results: dict = {"tasks": {}, "records": {}, "lm_eval_version": lm_eval.__version__, "task_versions": {},
                     "n_shot": {}}
    for n_shot, names in _by_shots(shots):
        # lm-eval's own progress bars ignore TQDM_DISABLE; keep them out of logs and books
        with contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO()), _lean_lm_eval():
            built = _load_tasks(names, include, n_shot)
            res = lm_eval.simple_evaluate(model=lm, tasks=built, task_manager=tm,
                                          num_fewshot=n_shot, limit=limit, random_seed=seed,
                                          numpy_random_seed=seed, torch_random_seed=seed,
                                          fewshot_random_seed=seed, log_samples=True, verbosity="ERROR")
        for t, metrics in res["results"].items():
            results["tasks"][t] = {k.split(",")[0]: float(v) for k, v in metrics.items()
                                   if isinstance(v, (int, float)) and "," in k}
        leaves = _leaf_tasks(built)
        per_leaf = {t: [_record(x, t, leaves[t]) for x in sorted(samples, key=lambda x: x["doc_id"])]
                    for t, samples in res.get("samples", {}).items() if samples and "acc" in samples[0]}
        results["records"].update({t: _columns(r) for t, r in per_leaf.items()})
        for t in names:  # a group (MMLU): its subtasks' items, in the group's order
            if t not in per_leaf:
                flat = [r for leaf in _leaves(t, res.get("group_subtasks", {})) for r in per_leaf.get(leaf, [])]
                if flat:
                    results["records"][t] = _columns(flat)
        results["task_versions"].update(res.get("versions", {}))
        results["n_shot"].update(res.get("n-shot", {}))
    return results


def run_suite(model, tokenizer, suite: Suite | dict | str | None = None, batch_size: int = BATCH_SIZE,
              scorer: str = SCORER, progress: bool = False) -> dict:
    """Evaluate ``model`` on ``suite``: the one evaluation of jobs, ``calib evaluate``, the realism
    report and the dense baselines. Returns

    * ``metrics``: ``alpaca_ppl`` (the paper's definition) and ``alpaca_ppl_corpus`` (token-weighted)
      where the suite has Alpaca texts, ``heldout_nll`` (nats/token) where it has held-out texts,
      ``<task>/acc`` and ``<task>/acc_norm`` per task, and ``avg``, the mean accuracy over the suite's
      tasks, as the paper's Avg;
    * ``meta``: the lm-eval version, each task's version and shot count, the texts counted;
    * ``tasks``: every metric lm-eval reported per task (groups' subtasks too);
    * ``records``: per task, per-item fields (``lm_eval_tasks``)."""
    suite = Suite.of(suite)
    check_choice("scorer", scorer, SCORERS)
    metrics: dict = {}
    meta: dict = {}
    alpaca = suite.alpaca_texts()
    if alpaca:
        ppl = perplexity(model, tokenizer, alpaca, batch_size=batch_size)
        metrics.update(alpaca_ppl=ppl["ppl_paper"], alpaca_ppl_corpus=ppl["ppl_corpus"])
        meta["alpaca_texts"] = ppl["n_texts"]
    heldout = suite.heldout_texts()
    if heldout:
        metrics["heldout_nll"] = perplexity(model, tokenizer, heldout, batch_size=batch_size)["nll_per_token"]
        meta["heldout_texts"] = len(heldout)
    shots, include = suite.lm_eval()
    out = {"metrics": metrics, "meta": meta, "tasks": {}, "records": {}}
    if suite.name == "real":  # per source: real/code/ppl ...; real_ppl, their mean (the chapters' average)
        for t in suite.tasks:
            r = real_heldout(model, tokenizer, t, suite.n_heldout, batch_size)
            metrics[f"{t}/ppl"] = r["ppl"]
            out["records"][t] = r["records"]
        metrics["real_ppl"] = float(sum(metrics[f"{t}/ppl"] for t in suite.tasks) / len(suite.tasks))
        meta["heldout_texts"] = {t: len(out["records"][t]["fact"]) for t in suite.tasks}
    if not shots:
        return out
    res = lm_eval_tasks(model, tokenizer, shots, include_path=include, batch_size=batch_size, limit=suite.limit,
                        scorer=scorer, progress=progress)
    for t in suite.tasks:
        for m in ("acc", "acc_norm", *PPL_METRICS):
            if m in res["tasks"].get(t, {}):
                metrics[f"{t}/{m}"] = res["tasks"][t][m]
    accs = [res["tasks"][t]["acc"] for t in suite.tasks if "acc" in res["tasks"].get(t, {})]
    if accs:
        metrics["avg"] = float(sum(accs) / len(accs))
    meta.update(lm_eval=res["lm_eval_version"], task_versions=res["task_versions"], n_shot=res["n_shot"])
    out.update(tasks=res["tasks"], records={t: res["records"][t] for t in suite.tasks if t in res["records"]})
    return out


def accuracies(result: dict, tasks=None) -> dict:
    """task -> acc of a ``run_suite`` result (its suite's tasks, or ``tasks``)."""
    names = tasks or [k[:-4] for k in result["metrics"] if k.endswith("/acc")]
    return {t: result["metrics"][f"{t}/acc"] for t in names}
