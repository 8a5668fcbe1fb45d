"""Self-generated calibration data (paper §4): the dense model continues a short
prefix of each source document, and the outputs become the calibration source.

Prefix: ``[start] + first t text tokens`` of the document, where ``start`` is
BOS (EOS for a tokenizer without BOS). BOS is *not* counted in t, so t = 0 is
"BOS only" as in §6.2 and the default t = 2 is BOS plus two text tokens.

Decoding is our own KV-cached loop rather than ``model.generate`` so that every
row draws from its own RNG seeded by (seed, document index): a text does not
depend on which rows share its batch, rows leave the batch as soon as they emit
EOS, and a resumed run regenerates exactly what an uninterrupted one would.
Logit processing follows HF's order: repetition penalty, temperature, top-k, top-p.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path

from calib.data import SYNTH_GENERATOR as GENERATOR  # the marker data.py recognises in rows
from calib.errors import CalibError
from calib.io import atomic_write, check_output

log = logging.getLogger("calib.synth")

SAMPLING = {"top_k": 50, "top_p": 0.95, "temperature": 0.6, "repetition_penalty": 1.2}
# the output version of self-generation, part of the job key of every job with synthetic data:
# bump it whenever a change alters the texts generated (tests/test_golden.py)
VERSION = 1
PREFIX_LEN = 2
MAX_PREFIX_LEN = 1024
MAX_NEW_TOKENS = 2048  # what the original script passes to generate()
BATCH_SIZE = 32
N_DOCS = 5000  # source documents continued (the paper: 5,000)


class SettingsMismatch(CalibError):
    """The output file exists and was written with other settings: resuming would mix two runs."""


# ---------------------------------------------------------------------------- tokens
def start_token(tokenizer) -> int:
    if tokenizer.bos_token_id is not None:
        return tokenizer.bos_token_id
    if tokenizer.eos_token_id is None:
        raise CalibError("the tokenizer has neither a BOS nor an EOS token to start generation from")
    log.warning("tokenizer has no BOS token; prefixes start with EOS (id %d) instead", tokenizer.eos_token_id)
    return tokenizer.eos_token_id


def pad_token(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is None:
        raise CalibError("the tokenizer has neither a pad nor an EOS token to pad with")
    log.warning("tokenizer has no pad token; padding with EOS %r (id %d); pads are masked out",
                tokenizer.eos_token, tokenizer.eos_token_id)
    return tokenizer.eos_token_id


def build_prompts(tokenizer, texts: list[str], prefix_len: int = PREFIX_LEN,
                  skip_short: bool = False) -> list[tuple[int, list[int]]]:
    """(document index, prefix ids) for each document long enough for the prefix."""
    if not isinstance(prefix_len, int) or not 0 <= prefix_len <= MAX_PREFIX_LEN:
        raise CalibError(f"prefix length must be an integer in [0, {MAX_PREFIX_LEN}], got {prefix_len!r}")
    if not texts:
        raise CalibError("no source documents to continue (the source is empty)")
    start = start_token(tokenizer)
    ids = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    short = [i for i, x in enumerate(ids) if len(x) < prefix_len]
    if short and not skip_short:
        i = short[0]
        raise CalibError(f"{len(short)} of {len(texts)} documents are shorter than the prefix of "
                         f"{prefix_len} tokens (document {i} has {len(ids[i])}); lower the prefix "
                         f"length or skip them (skip_short=True, --skip-short)")
    if short:
        log.warning("skipping %d of %d documents shorter than the %d-token prefix", len(short), len(texts), prefix_len)
    if len(short) == len(texts):
        raise CalibError(f"every document is shorter than the prefix of {prefix_len} tokens")
    skip = set(short)
    return [(i, [start] + x[:prefix_len]) for i, x in enumerate(ids) if i not in skip]


# -------------------------------------------------------------------------- checks
def _number(name: str, v, ok, valid: str):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
        raise CalibError(f"{name} {v!r} cannot sample; valid: {valid}")


def check_sampling(sampling: dict | None = None) -> dict:
    """The sampling settings with defaults filled in; a setting that cannot sample
    (temperature <= 0, top_p outside (0, 1], top_k < 1, repetition penalty <= 0) is an error."""
    given = dict(sampling or {})
    unknown = sorted(set(given) - set(SAMPLING))
    if unknown:
        raise CalibError(f"unknown sampling setting {unknown[0]!r}; valid: {', '.join(SAMPLING)}")
    s = {**SAMPLING, **given}
    k = s["top_k"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise CalibError(f"top_k {k!r} cannot sample; valid: an integer >= 1 (the paper: {SAMPLING['top_k']})")
    _number("top_p", s["top_p"], lambda v: 0 < v <= 1, f"a number in (0, 1] (the paper: {SAMPLING['top_p']})")
    _number("temperature", s["temperature"], lambda v: v > 0, f"a number > 0 (the paper: {SAMPLING['temperature']})")
    _number("repetition_penalty", s["repetition_penalty"], lambda v: v > 0,
            f"a number > 0 (1: none; the paper: {SAMPLING['repetition_penalty']})")
    return s


def _integer(name: str, v, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise CalibError(f"{name} must be an integer >= {lo}, got {v!r}")


def check_options(prefix_len: int = PREFIX_LEN, max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = BATCH_SIZE,
                  seed: int = 0, sampling: dict | None = None) -> dict:
    """Every generation setting checked before a model is loaded or a file written;
    returns the full sampling settings."""
    if isinstance(prefix_len, bool) or not isinstance(prefix_len, int) or not 0 <= prefix_len <= MAX_PREFIX_LEN:
        raise CalibError(f"prefix length must be an integer in [0, {MAX_PREFIX_LEN}], got {prefix_len!r}")
    _integer("max_new_tokens", max_new_tokens, 1)
    _integer("batch size", batch_size, 1)
    _integer("generation seed", seed, 0)
    return check_sampling(sampling)


# -------------------------------------------------------------------------- sampling
def candidates(logits, seen, top_k: int, top_p: float, temperature: float, repetition_penalty: float):
    """HF's processors (repetition penalty, temperature, top-k, top-p, in that order) applied
    to [B, V] next-token logits; ``seen`` [B, V] marks tokens already in each row (prompt and
    generated, pads excluded). Returns (logits, token ids), [B, K] each, sorted by logit,
    with -inf where a token is removed; K = top_k, so sampling touches K tokens, not V."""
    import torch
    if repetition_penalty != 1.0:
        pen = torch.where(logits < 0, logits * repetition_penalty, logits / repetition_penalty)
        logits = torch.where(seen, pen, logits)
    logits = logits / temperature
    k = top_k if top_k and top_k < logits.shape[-1] else logits.shape[-1]
    vals, ids = logits.topk(k, dim=-1)  # sorted, largest first
    if top_p < 1.0:
        # drop a token once the mass strictly above it reaches top_p (HF: the low tail of
        # mass <= 1 - top_p goes); the top token always stays
        probs = vals.softmax(-1)
        above = probs.cumsum(-1) - probs
        drop = above >= top_p
        drop[..., 0] = False
        vals = vals.masked_fill(drop, float("-inf"))
    return vals, ids


def process_logits(logits, seen, **sampling):
    """``candidates`` scattered back to a full [B, V] tensor (-inf elsewhere)."""
    import torch
    vals, ids = candidates(logits, seen, **sampling)
    return torch.full_like(logits, float("-inf")).scatter(-1, ids, vals)


def row_seed(seed: int, index: int) -> int:
    import numpy as np  # here, so `calib --help` does not load it
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


def sample_rows(logits, generators, ids=None):
    """One categorical draw per row from softmax(logits), row r using generators[r]
    (exponential race: argmax p_i / E_i with E_i ~ Exp(1)). With ``ids`` the logits are
    candidates and the drawn candidate's id is returned."""
    import torch
    probs = logits.float().softmax(-1)
    race = torch.stack([torch.empty(probs.shape[-1], device=probs.device).exponential_(generator=g)
                        for g in generators])
    pick = (probs / race).argmax(-1)
    return pick if ids is None else ids.gather(-1, pick[:, None]).squeeze(-1)


def _cache_arg(model) -> str:
    """The forward argument that takes the KV cache: ``cache`` in recent transformers
    (where ``past_key_values`` is deprecated and warns on every call), else ``past_key_values``."""
    import inspect
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def check_logits(logits, rows, step: int) -> None:
    """A CalibError naming the rows whose next-token logits hold NaN or +inf, or no finite
    value at all: sampling from them would write garbage and look like success."""
    import torch
    bad = (torch.isnan(logits) | (logits == float("inf"))).any(-1) | (logits == float("-inf")).all(-1)
    if bool(bad.any()):
        which = [rows[i] for i in bad.nonzero().flatten().tolist()]
        raise CalibError(f"the model produced non-finite logits (NaN or inf) at generation step {step} for "
                         f"{', '.join(map(str, which[:8]))}{f' and {len(which) - 8} more' if len(which) > 8 else ''}"
                         f" of the batch; its weights are probably broken")


def generate_batch(model, prompts: list[list[int]], generators, max_new_tokens: int, eos: int, pad: int,
                   sampling: dict = SAMPLING, on_step=None, labels=None) -> list[tuple[list[int], str]]:
    """Continue left-padded prompts with a KV cache; a row leaves the batch at EOS.
    Returns (new ids without the EOS, "eos" | "length") per prompt. ``labels`` name
    the prompts in errors (default: their positions)."""
    import torch
    from transformers import DynamicCache
    dev = model.device
    labels = [f"row {i}" for i in range(len(prompts))] if labels is None else list(labels)
    kv = _cache_arg(model)
    B, P, V = len(prompts), max(map(len, prompts)), model.config.vocab_size
    ids = torch.full((B, P), pad, dtype=torch.long)
    mask = torch.zeros((B, P), dtype=torch.long)
    seen = torch.zeros((B, V), dtype=torch.bool)
    for r, p in enumerate(prompts):
        ids[r, P - len(p):] = torch.tensor(p)
        mask[r, P - len(p):] = 1
        seen[r, p] = True
    ids, mask, seen = ids.to(dev), mask.to(dev), seen.to(dev)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    alive = torch.arange(B, device=dev)  # original row of each live row
    gens = list(generators)
    new: list[list[int]] = [[] for _ in range(B)]
    stop = ["length"] * B
    padded = not bool(mask.all())  # without pads the mask is all ones: skip building it each step
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask if padded else None, position_ids=pos,
                    use_cache=True, logits_to_keep=1, **{kv: cache})
        last = pos[:, -1:]
        for step in range(max_new_tokens):
            logits = out.logits[:, -1].float()
            check_logits(logits, [labels[r] for r in alive.tolist()], step)
            vals, cand = candidates(logits, seen, **sampling)
            nxt = sample_rows(vals, gens, cand)
            done = nxt == eos
            for r, t, d in zip(alive.tolist(), nxt.tolist(), done.tolist()):
                if d:
                    stop[r] = "eos"
                else:
                    new[r].append(t)
            if on_step:
                on_step(int((~done).sum()))
            if step == max_new_tokens - 1:
                break
            if done.any():  # drop finished rows from the batch and the cache
                keep = (~done).nonzero().squeeze(-1)
                if len(keep) == 0:
                    break
                alive, nxt, mask, seen, last = alive[keep], nxt[keep], mask[keep], seen[keep], last[keep]
                gens = [gens[i] for i in keep.tolist()]
                cache.batch_select_indices(keep)
            seen[torch.arange(len(nxt), device=dev), nxt] = True
            if padded:
                mask = torch.cat([mask, mask.new_ones((len(nxt), 1))], dim=1)
            last = last + 1
            out = model(input_ids=nxt[:, None], attention_mask=mask if padded else None, position_ids=last,
                        use_cache=True, **{kv: cache})
    return list(zip(new, stop))


def plan_batches(prompts: list[tuple[int, list[int]]], batch_size: int) -> list[list[int]]:
    """Positions into ``prompts``, longest prefixes first (ties by document index), so
    that a batch pads little and the largest batch runs first."""
    if batch_size < 1:
        raise CalibError(f"batch size must be >= 1, got {batch_size}")
    order = sorted(range(len(prompts)), key=lambda j: (-len(prompts[j][1]), prompts[j][0]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


# ----------------------------------------------------------------------------- files
def meta_path(out_path: str | Path) -> Path:
    p = Path(out_path)
    return p.with_name(p.name + ".meta.json")


def read_rows(out_path: str | Path) -> list[dict]:
    """Complete rows of a (possibly interrupted) output file. A torn last line is cut
    off the file so that appending continues cleanly."""
    p = Path(out_path)
    if not p.exists():
        return []
    rows, good = [], 0
    with open(p, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
            good += len(line)
    if good != p.stat().st_size:
        log.warning("%s: dropping a torn last line (%d bytes) from an interrupted run", p, p.stat().st_size - good)
        with open(p, "r+b") as f:
            f.truncate(good)
    return rows


def _append(f, rows: list[dict]) -> None:
    """Write finished rows durably (a batch at a time)."""
    f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    f.flush()
    os.fsync(f.fileno())


def texts_digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(hashlib.sha256(t.encode()).digest())
    return h.hexdigest()


# ------------------------------------------------------------------------------ main
def generate(model, tokenizer, texts: list[str], out_path: str | Path, prefix_len: int = PREFIX_LEN,
             max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = BATCH_SIZE, seed: int = 0,
             sampling: dict | None = None, skip_short: bool = False, source: str | None = None,
             progress: bool = True) -> list[dict]:
    """Continue each document's prefix and append one jsonl row per document to
    ``out_path``; an existing file with the same settings is resumed. Returns all rows.
    Every setting is checked before anything is written, and the files appear with
    the first finished batch, so a failed start leaves nothing behind."""
    import torch
    from tqdm.auto import tqdm

    from calib.models import check_architecture, rope_switch
    check_architecture(model.config, "generate")
    sampling = check_options(prefix_len, max_new_tokens, batch_size, seed, sampling)
    out_path, mp = Path(out_path), meta_path(out_path)
    check_output(out_path, "output")
    check_output(mp, "output")
    prompts = build_prompts(tokenizer, texts, prefix_len, skip_short)
    eos, pad = tokenizer.eos_token_id, pad_token(tokenizer)
    # past a longrope / dynamic RoPE switch the cached keys would hold the other frequency set
    switch = rope_switch(model.config)
    limit = switch or getattr(model.config, "max_position_embeddings", None)
    longest = max(len(p) for _, p in prompts)
    if limit and longest + max_new_tokens > limit:
        log.warning("max_new_tokens %d cut to %d: the model has %d positions%s", max_new_tokens,
                    limit - longest, limit, " before its RoPE switches frequencies" if switch else "")
        max_new_tokens = limit - longest
        if max_new_tokens < 1:
            raise CalibError(f"prefixes of {longest} tokens leave no room in the model's {limit} positions")
    settings = dict(generator=GENERATOR, source=source, texts_sha256=texts_digest(texts), n_texts=len(texts),
                    prefix_len=prefix_len, bos_counted=False, max_new_tokens=max_new_tokens,
                    batch_size=batch_size, seed=seed, skip_short=skip_short, **sampling,
                    model=getattr(model.config, "_name_or_path", "") or type(model).__name__)
    if out_path.exists() and out_path.stat().st_size:
        try:
            old = json.loads(mp.read_text()) if mp.exists() else None
        except ValueError:
            old = None
        if old != settings:
            diff = sorted(k for k in settings if not isinstance(old, dict) or old.get(k) != settings[k])
            raise SettingsMismatch(f"{out_path} exists and was written with other settings ({', '.join(diff)}); "
                             f"choose another output path or delete it")
    done = {r["index"]: r for r in read_rows(out_path)}
    batches = plan_batches(prompts, batch_size)
    todo = sum(1 for b in batches for j in b if prompts[j][0] not in done)
    if done:
        log.info("resuming %s: %d rows done, %d to go", out_path, len(done), todo)

    bar = tqdm(total=todo, desc="self-generate", unit="doc", disable=not progress)
    t0, n_new, shown = time.perf_counter(), 0, 0.0

    def on_step(n):  # the rate is redrawn about once a second, also inside a long batch
        nonlocal n_new, shown
        n_new += n
        now = time.perf_counter()
        if now - shown > 1.0:
            shown = now
            bar.set_postfix_str(f"{n_new / max(now - t0, 1e-9):.0f} new tok/s")

    f = None
    try:
        for b in batches:
            missing = [j for j in b if prompts[j][0] not in done]
            if not missing:
                continue
            # a batch is always regenerated whole, so a resumed batch sees the same shapes
            gens = [torch.Generator(device=model.device).manual_seed(row_seed(seed, prompts[j][0])) for j in b]
            outs = generate_batch(model, [prompts[j][1] for j in b], gens, max_new_tokens, eos, pad,
                                  sampling, on_step, labels=[f"document {prompts[j][0]}" for j in b])
            rows = []
            for j, (ids, stop) in zip(b, outs):
                i, p = prompts[j]
                if i in done:
                    continue
                rows.append(dict(generator=GENERATOR, index=i,
                                 text=tokenizer.decode(p + ids, skip_special_tokens=True),
                                 prefix=tokenizer.decode(p, skip_special_tokens=True),
                                 new_tokens=len(ids), stop=stop))
            if f is None:  # the settings go down before the first row, which needs them to resume
                atomic_write(mp, json.dumps(settings, indent=1))
                f = open(out_path, "a", encoding="utf-8")
            _append(f, rows)
            done.update((r["index"], r) for r in rows)
            bar.update(len(rows))
    finally:
        if f is not None:
            f.close()
        bar.close()
    return read_rows(out_path)
