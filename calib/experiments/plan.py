"""What a list of jobs will cost before anything runs (``calib run GRID --plan``,
``python -m calib.book --plan``): the distinct calibration sets, self-generations and
evaluations after deduplication, the rows a store already holds, and the model forward
tokens of each stage, turned into hours by a per-token cost.

Forward tokens follow the code, one token through every decoder block counted once:

* prune: the block-by-block pass (prune/sequential.py) runs each block twice over the
  ``nsamples x seqlen`` calibration tokens (statistics, then the pruned block's outputs for the
  next block; the last block once); OWL adds one dense pass for its layer ratios; magnitude
  pruning reads no data;
* generate: each self-generated set samples at most ``n_docs x (1 + prefix_len +
  max_new_tokens)`` tokens (cut to the model's positions; KV-cached, one token per step) and
  scores them once more for the perplexity filter; a pruned generator also prunes;
* evaluate: per evaluation (every job's pruned model, and once per model, dtype and suite the
  dense model) the perplexity texts plus what the job's scorer feeds of the lm-eval requests
  (``calib.evaluate.suite_requests``): the fast scorer the prefix tree of their model inputs, each
  token once (``calib.scorer.plan``, as it runs them); HFLM every unique model input. Local tasks
  (the world's, a paper suite's include_path) are counted from their requests, encoded as lm-eval
  encodes them with the model's tokenizer; lm-eval's own paper tasks are estimated from ``PAPER_EVAL``.
  Both scorers' totals are printed; the table shows the jobs' own.

Hours are tokens x seconds per token of each stage, plus seconds per job for what does not grow
with tokens (loading the model, the mask search, lm-eval's set-up of the evaluation). ``CPU_COST`` was measured on
the world model (bench/bench_plan.py); a GPU's cost is a parameter (the same script measures it there).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from calib.errors import CalibError
from calib.evaluate import SCORERS

STAGES = ("prune", "generate", "evaluate")
COSTS = STAGES + ("per_job",)  # seconds per forward token of each stage; seconds per job

# Seconds per forward token (per job), world model (3.1M parameters), one CPU thread, fp32, a toy job:
# `OMP_NUM_THREADS=1 python bench/bench_plan.py` (bench/results/plan.md: machine and load; its check,
# a six-job sweep timed against its plan, measured 1.03x the prediction, on a 2-core machine at load 1).
# Evaluation tokens are the fast scorer's (the prefix tree it runs), so its cost per token is higher
# than per unique HFLM input token: the same seconds over fewer tokens.
CPU_COST = {"prune": 9.7e-5, "generate": 9.0e-5, "evaluate": 1.6e-4, "per_job": 0.27}
CPU_COST_NOTE = "the world model on one CPU thread (bench/bench_plan.py)"

# lm-eval's paper tasks, where their data is not here to count: (items lm-eval evaluates, forward
# tokens per item fed by HFLM, by the fast scorer). Items are the evaluated splits' sizes (BoolQ,
# Winogrande-xl, PIQA, HellaSwag: validation; ARC, MMLU: test). Tokens per item are estimates for a
# LLaMA-family tokenizer. HFLM: unique model inputs per item (BoolQ's and MMLU's one-token answers
# share the prompt, ARC and HellaSwag run each choice) x a typical prompt length (MMLU: five shots
# and the question). Fast: the item's context once plus each choice's own tokens; MMLU's five shots
# are one block per subject (lm-eval's first_n sampler), shared by the subject's items, so an item
# adds its question (about 60 tokens) and the 57 blocks of about 560 tokens add 2 per item.
PAPER_EVAL = {"boolq": (3270, 150, 150), "winogrande": (1267, 60, 45), "piqa": (1838, 90, 70),
              "hellaswag": (10042, 260, 140), "arc_easy": (2376, 140, 50), "arc_challenge": (1172, 160, 60),
              "mmlu": (14042, 620, 62)}
ALPACA_TOKENS = 180  # estimated tokens of one Alpaca `text` (template, instruction, input and response)
CHARS_PER_TOKEN = 4  # without a tokenizer (a config-only model folder): a typical English ratio


def parse_cost(text: str | None) -> dict | None:
    """'2e-5' (seconds per token of every stage, no per-job overhead) or
    'prune=1e-5,generate=4e-5,evaluate=1e-5,per_job=3' (those not named cost nothing)."""
    if text is None:
        return None
    text = str(text).strip()
    try:
        if "=" not in text:
            out = {**{s: float(text) for s in STAGES}, "per_job": 0.0}
        else:
            out = dict.fromkeys(COSTS, 0.0)
            for part in text.split(","):
                k, _, v = part.partition("=")
                if k.strip() not in COSTS:
                    raise CalibError(f"--token-cost: unknown stage {k.strip()!r}; valid choices: {', '.join(COSTS)}")
                out[k.strip()] = float(v)
    except CalibError:
        raise
    except ValueError:
        raise CalibError(f"--token-cost {text!r}: expected seconds per token (e.g. 2e-5) or "
                         f"name=seconds pairs ({', '.join(f'{s}=...' for s in COSTS)})") from None
    if any(not math.isfinite(v) or v < 0 for v in out.values()) or not any(out.values()):
        raise CalibError(f"--token-cost {text!r}: costs must be >= 0 and not all zero")
    return out


# ------------------------------------------------------------------------------ tokens
def _config(job) -> dict:
    from calib.models import model_config
    return model_config(job.model)


def prune_tokens(job) -> int:
    """Forward tokens of pruning ``job``: the block-by-block pass, plus a dense pass where the
    setting measures outlier ratios first (OWL); none where its masks need no data."""
    setting, c = job.setting, job.calibration
    if setting.data_free:
        return 0
    layers = _config(job).get("num_hidden_layers")
    passes = (2 - 1 / layers if layers else 2) + (1 if setting.outlier_pass else 0)
    return round(passes * c["nsamples"] * c["seqlen"])


def generation_tokens(job) -> int:
    """Forward tokens of the job's self-generated set: sampling and the perplexity scores."""
    s = job.synthetic
    per_doc = 1 + s["prefix_len"] + s["max_new_tokens"]
    ctx = _config(job).get("max_position_embeddings")
    per_doc = min(per_doc, ctx) if ctx else per_doc
    tokens = 2 * s["n_docs"] * per_doc
    if s["generator"] == "pruned":  # the generator is pruned like the job, on the original source
        tokens += prune_tokens(job)
    return tokens


def _tokenizer(model: str):
    from calib.models import load_tokenizer
    try:
        return load_tokenizer(model)
    except Exception:  # a config-only folder: count characters instead
        return None


def _count(tok, texts) -> int:
    texts = list(texts)
    if not texts:
        return 0
    if tok is None:
        return sum(math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts)
    return sum(len(ids) for ids in tok(list(texts), verbose=False)["input_ids"])


def _request_tokens(job, tok) -> dict | None:
    """Forward tokens each scorer feeds for the requests lm-eval builds for the job's suite
    (``calib.evaluate.suite_requests``), counted by the scorers' own plan (``calib.scorer.request_tokens``);
    None without a tokenizer or a config transformers can build."""
    from calib import evaluate, scorer
    from calib.models import model_path
    if tok is None:
        return None
    try:
        from transformers import AutoConfig
        config = AutoConfig.from_pretrained(model_path(job.model))
    except Exception:  # e.g. an architecture this transformers does not know (DCLM-7B's openlm)
        return None
    return scorer.request_tokens(config, tok, evaluate.suite_requests(job.evaluation))


_EVAL: dict = {}


def evaluation_tokens(job, scorer: str | None = None) -> tuple[int, bool]:
    """(forward tokens of one evaluation of the job's suite by ``scorer`` (default: the job's),
    whether counted rather than estimated)."""
    from calib.cache import digest
    key = digest({"model": job.model, "suite": job.suite})
    if key not in _EVAL:
        _EVAL[key] = _evaluation_tokens(job)
    tokens, counted = _EVAL[key]
    return tokens[scorer or job.execution["scorer"]], counted


def _evaluation_tokens(job) -> tuple[dict, bool]:
    """({scorer: tokens}, counted) of one evaluation: perplexity texts, then the lm-eval requests."""
    suite = job.evaluation
    if suite.name == "real":  # each held-out document scored over at most its first HELDOUT_TOKENS
        from calib import real
        n = len(suite.tasks) * (suite.n_heldout or real.N_HELDOUT) * real.HELDOUT_TOKENS
        return {"fast": n, "hflm": n}, False
    tok = _tokenizer(job.model)
    counted = tok is not None
    if suite.world:
        texts = _count(tok, suite.alpaca_texts()) + _count(tok, suite.heldout_texts())
    else:
        from calib import data, hub
        if not suite.n_alpaca:
            texts = 0
        elif "alpaca" in hub.local_copies(list(data.HUB_SOURCES)):
            texts = _count(tok, suite.alpaca_texts())
        else:
            texts, counted = ALPACA_TOKENS * suite.n_alpaca, False
    requests = {"fast": 0, "hflm": 0}
    if suite.tasks and (suite.world or suite.include_path):
        found = _request_tokens(job, tok)
        if found is None:  # a config-only folder: characters / CHARS_PER_TOKEN of what each scorer runs
            counted = False
            found = {k: sum(math.ceil(len(t) / CHARS_PER_TOKEN) for t in _request_texts(job, k == "fast"))
                     for k in requests}
        requests = found
    elif suite.tasks:  # lm-eval's own tasks, whose data is not here: PAPER_EVAL's estimates
        counted = False
        for t in suite.tasks:
            n, hflm, fast = PAPER_EVAL[t]
            items = min(n, suite.limit or n)
            requests["hflm"] += items * hflm
            requests["fast"] += items * fast
    return {k: texts + v for k, v in requests.items()}, counted


def _request_texts(job, shared: bool) -> list[str]:
    """Without a tokenizer, the text each scorer runs: HFLM every unique context + continuation;
    the fast scorer each unique context once, then each of its continuations."""
    from calib import evaluate
    out: set = set()
    for _, instances in evaluate.suite_requests(job.evaluation):
        for inst in instances:
            ctx, cont = inst.arguments[:2]
            out |= {(ctx,), (ctx, cont)} if shared else {(ctx + cont,)}
    return [v[-1] for v in out]


# -------------------------------------------------------------------------------- plan
@dataclass
class Plan:
    """The deduplicated work of a list of jobs, and what a store and the cache already hold."""
    jobs: int = 0
    done: int = 0
    failed: int = 0
    calibration_sets: int = 0
    generations: int = 0
    dense_evaluations: int = 0
    tokens: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    todo_tokens: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    estimated: bool = False  # some evaluation tokens are estimates, not counts
    by_model: dict = field(default_factory=dict)  # model -> forward tokens
    by_scorer: dict = field(default_factory=lambda: dict.fromkeys(SCORERS, 0))  # evaluate tokens if all used it

    @property
    def models(self) -> list:
        return sorted(self.by_model)

    @property
    def evaluations(self) -> int:
        return self.jobs + self.dense_evaluations

    def hours(self, cost: dict, todo: bool = False) -> float:
        t = self.todo_tokens if todo else self.tokens
        n = self.jobs - self.done if todo else self.jobs
        return (sum(t[s] * cost[s] for s in STAGES) + n * cost.get("per_job", 0.0)) / 3600


def plan(jobs, store_status: dict | None = None) -> Plan:
    """The plan of ``jobs`` (deduplicated by key); ``store_status``: key -> status of a store."""
    from calib.experiments.run import calibration_key, dense_file, generation_done
    status = store_status or {}
    unique = list({j.key: j for j in jobs}.values())
    p = Plan(jobs=len(unique))
    cals = set()
    gens: dict = {}   # generated set's cache file -> [tokens, needed by an unfinished job, model]
    dense: dict = {}  # dense evaluation's cache file -> [tokens, needed by an unfinished job, model]
    for j in unique:
        st = status.get(j.key)
        p.done += st == "done"
        p.failed += st == "failed"
        todo = st != "done"
        cals.add(calibration_key(j))
        ev, counted = evaluation_tokens(j)
        each = {sc: evaluation_tokens(j, sc)[0] for sc in SCORERS}
        for sc in SCORERS:
            p.by_scorer[sc] += each[sc]
        p.estimated |= not counted
        pr = prune_tokens(j)
        p.tokens["prune"] += pr
        p.tokens["evaluate"] += ev
        p.by_model[j.model] = p.by_model.get(j.model, 0) + pr + ev
        if todo:
            p.todo_tokens["prune"] += pr
            p.todo_tokens["evaluate"] += ev
        g = generation_done(j)
        if g:
            gens.setdefault(g, [generation_tokens(j), False, j.model])[1] |= todo
        d = dense_file(j)
        if d not in dense:
            for sc in SCORERS:
                p.by_scorer[sc] += each[sc]
        dense.setdefault(d, [ev, False, j.model])[1] |= todo
    for stage, work in (("generate", gens), ("evaluate", dense)):
        for f, (tokens, needed, model) in work.items():
            p.tokens[stage] += tokens
            p.by_model[model] += tokens
            if needed and not f.is_file():
                p.todo_tokens[stage] += tokens
    p.calibration_sets, p.generations, p.dense_evaluations = len(cals), len(gens), len(dense)
    return p


def n_parameters(config: dict) -> int | None:
    """Parameters of a LLaMA-style decoder from its config (None if the config lacks the fields)."""
    try:
        h, n, inter, vocab = (int(config[k]) for k in ("hidden_size", "num_hidden_layers", "intermediate_size",
                                                       "vocab_size"))
    except (KeyError, TypeError, ValueError):
        return None
    heads = int(config.get("num_attention_heads") or 1)
    kv = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or h // heads)
    attn = 2 * h * heads * head_dim + 2 * h * kv * head_dim
    embed = vocab * h * (1 if config.get("tie_word_embeddings") else 2)
    return n * (attn + 3 * h * inter) + embed


# ---------------------------------------------------------------------------- printing
def _tok(n: float) -> str:
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


HEADER = ("", "jobs", "in store", "failed", "calib sets", "generations", "evaluations", "prune tok",
          "generate tok", "evaluate tok", "total tok")


def row(name: str, p: Plan) -> tuple:
    return (name, p.jobs, p.done, p.failed, p.calibration_sets, p.generations,
            f"{p.evaluations} ({p.dense_evaluations} dense)", *(_tok(p.tokens[s]) for s in STAGES),
            _tok(sum(p.tokens.values())))


def table(rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    line = lambda r: "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)  # noqa: E731
                               for i, (v, w) in enumerate(zip(r, widths)))
    return "\n".join([line(HEADER), *map(line, rows)])


def summary(total: Plan, cost: dict | None, world_only: bool) -> str:
    """The totals' paragraph: tokens by stage, what is left to run, FLOPs, hours."""
    from calib.models import model_config
    out = [f"forward tokens: {_tok(sum(total.tokens.values()))} "
           f"({', '.join(f'{s} {_tok(total.tokens[s])}' for s in STAGES)}); "
           f"not yet in the store or cache: {_tok(sum(total.todo_tokens.values()))}"]
    out.append("evaluation tokens by scorer, were every evaluation scored by it: "
               + ", ".join(f"{sc} {_tok(total.by_scorer[sc])}" for sc in SCORERS)
               + " (the table counts each job's own scorer)")
    if total.estimated:
        out.append("  (evaluation tokens partly estimated: lm-eval's paper tasks from calib.experiments.plan.PAPER_EVAL, "
                   "Alpaca from ALPACA_TOKENS, or characters / 4 without a tokenizer)")
    from calib.prune.sequential import check_architecture
    flops = 0.0
    for m in total.models:
        try:
            check_architecture(model_config(m))
        except CalibError as e:
            out.append(f"model {m}: cannot be pruned as it is: {e}")
        n = n_parameters(model_config(m))
        out.append(f"model {m}: {_tok(total.by_model[m])} forward tokens"
                   + (f", {_tok(n)} parameters (from config.json)" if n else ""))
        flops = flops + 2 * n * total.by_model[m] if n and flops is not None else None
    if flops:
        out.append(f"about {flops:.3g} FLOPs (2 x parameters x tokens, attention not counted)")
    if cost is None and world_only:
        cost, note = CPU_COST, CPU_COST_NOTE
    elif cost is None:
        out.append("hours: pass --token-cost SECONDS (per forward token on your device, or "
                   "prune=S,generate=S,evaluate=S,per_job=S; `python bench/bench_plan.py --model M --device cuda` "
                   "measures them)")
        return "\n".join(out)
    else:
        note = "--token-cost"
    per = ", ".join(f"{s} {cost[s]:.2g}" for s in STAGES) + f"; s per job: {cost.get('per_job', 0):.2g}"
    out.append(f"hours on one worker at {note} (s/token: {per}): all {total.hours(cost):.3g} h, "
               f"still to run {total.hours(cost, todo=True):.3g} h; divide by the workers (Ray: one job per GPU)")
    return "\n".join(out)


def store_status(path) -> dict:
    """key -> status of the store at ``path`` (empty when there is none yet; nothing is created)."""
    from pathlib import Path

    from calib.experiments.store import Store
    if not Path(path).is_file():
        return {}
    with Store(path) as store:
        return store.status()


def as_dict(p: Plan) -> dict:
    """A JSON-able view (for tests and scripts)."""
    return json.loads(json.dumps({**p.__dict__, "evaluations": p.evaluations}))
