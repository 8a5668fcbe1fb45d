"""Filters and similarity measures for calibration data (paper §3.4, §4, §6.3, §6.4).

The perplexity filter (the paper's percentile rule), Min-K%++ and MinHash / exact
word-n-gram Jaccard, with the batched scorer (``token_logits``) that evaluate.py
reuses. Pure functions over texts and an in-memory model; nothing is written.
"""
from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Iterable

from calib.errors import CalibError

if TYPE_CHECKING:  # numpy loads with the first score, so `calib --help` stays fast
    import numpy as np

log = logging.getLogger("calib.filters")

# the output version of the perplexity filter's scores, part of the job key of every job with
# synthetic data: bump it whenever a change alters the perplexities (tests/test_golden.py)
VERSION = 1
FILTER_RATE = 20  # percent of highest-perplexity texts dropped (the paper's k)
MINK = 50  # Min-K%++'s k (the paper: Min-50%++)
BATCH_SIZE = 8  # texts scored together
NGRAM, NUM_PERM, MINHASH_SEED = 3, 128, 1  # the paper's word 3-grams; MinHash permutations and seed

_WORD = re.compile(r"\S+")


def _positive(name: str, v, lo: int = 1) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise CalibError(f"{name} must be an integer >= {lo}, got {v!r}")


def check_similarity(n: int = NGRAM, num_perm: int = NUM_PERM, seed: int = MINHASH_SEED) -> None:
    """n-gram size >= 1, MinHash permutations >= 1, seed >= 0."""
    _positive("n-gram size n", n)
    _positive("num_perm (MinHash permutations)", num_perm)
    _positive("MinHash seed", seed, 0)


def check_batch_size(batch_size: int) -> None:
    _positive("batch size", batch_size)


def _both(sa, sb, n: int) -> None:
    if not sa and not sb:  # J(empty, empty) is undefined; 1.0 would read as "identical"
        raise CalibError(f"neither corpus has a word {n}-gram (every document is shorter than n = {n} words); "
                         f"use a smaller n")


def word_ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """Whitespace-word n-grams, lower-cased: the unit of the paper's MinHash Jaccard."""
    words = _WORD.findall(text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def corpus_ngrams(texts: Iterable[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for t in texts:
        out |= word_ngrams(t, n)
    return out


def exact_jaccard(a: Iterable[str], b: Iterable[str], n: int = NGRAM) -> float:
    """Exact Jaccard similarity of two corpora's word n-gram sets."""
    check_similarity(n)
    sa, sb = corpus_ngrams(a, n), corpus_ngrams(b, n)
    _both(sa, sb, n)
    return len(sa & sb) / len(sa | sb)


# ------------------------------------------------------------- MinHash estimate (§3.4)
def _minhash(grams: set[tuple[str, ...]], num_perm: int, seed: int):
    from datasketch import MinHash
    m = MinHash(num_perm=num_perm, seed=seed)
    m.update_batch([" ".join(g).encode("utf-8") for g in grams])
    return m


def minhash_jaccard(a: Iterable[str], b: Iterable[str], n: int = NGRAM, num_perm: int = NUM_PERM,
                    seed: int = MINHASH_SEED) -> float:
    """MinHash estimate of the corpora's word n-gram Jaccard (what the paper reports).
    Its standard error is about sqrt(J (1 - J) / num_perm)."""
    check_similarity(n, num_perm, seed)
    sa, sb = corpus_ngrams(a, n), corpus_ngrams(b, n)
    _both(sa, sb, n)
    return float(_minhash(sa, num_perm, seed).jaccard(_minhash(sb, num_perm, seed)))


def lsh_overlap(a: list[str], b: list[str], threshold: float = 0.5, n: int = NGRAM, num_perm: int = NUM_PERM,
                seed: int = MINHASH_SEED) -> float:
    """Share of documents in ``a`` that have a near-duplicate (n-gram Jaccard >= threshold,
    found by MinHash-LSH) in ``b``: a document-level view of the same similarity."""
    from datasketch import MinHashLSH
    check_similarity(n, num_perm, seed)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise CalibError(f"LSH threshold must be in (0, 1), got {threshold!r}")
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    for i, t in enumerate(b):
        g = word_ngrams(t, n)
        if g:
            lsh.insert(str(i), _minhash(g, num_perm, seed))
    hits = [bool(lsh.query(_minhash(g, num_perm, seed))) for g in map(lambda t: word_ngrams(t, n), a) if g]
    return sum(hits) / len(hits) if hits else 0.0


# ------------------------------------------------------------ perplexity filter (§4, §6.3)
def check_k(k: float, allow_100: bool = False) -> float:
    """k is a percentage in (0, 100); Min-K%++ also accepts 100 (every token)."""
    ok = isinstance(k, (int, float)) and not isinstance(k, bool) and (0 < k < 100 or (allow_100 and k == 100))
    if not ok:
        raise CalibError(f"k must be a percentage strictly between 0 and 100{' (or 100)' if allow_100 else ''}, "
                         f"got {k!r}")
    return float(k)


def ppl_keep(ppl, k: float = FILTER_RATE) -> np.ndarray:
    """Boolean mask of samples kept when the top k% by perplexity are dropped, with the
    paper's exact rule: keep ppl < np.percentile(ppl, 100 - k) (strictly below).
    A sample without a finite perplexity (fewer than 2 tokens) is dropped and left
    out of the percentile, so one such sample cannot turn the threshold into NaN."""
    import numpy as np
    ppl = np.asarray(ppl, dtype=np.float64)
    k = check_k(k)
    finite = np.isfinite(ppl)
    if not finite.any():
        return np.zeros(ppl.shape, dtype=bool)
    threshold = np.percentile(ppl[finite], 100 - k)
    return finite & (ppl < threshold)


def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield range(i, min(n, i + size))


def token_logits(model, tokenizer, texts: list[str], batch_size: int = BATCH_SIZE, max_length: int | None = None,
                 desc: str = "score", progress: bool = True):
    """Yield (ids, logits) per text: the text tokenized with the tokenizer's specials
    (BOS for LLaMA, as the paper's scripts did) and the model's logits at each position.
    Texts longer than the model's positions are cut to fit."""
    import torch
    from tqdm.auto import tqdm
    check_batch_size(batch_size)
    limit = max_length or getattr(model.config, "max_position_embeddings", None)
    enc = tokenizer(list(texts), verbose=False)["input_ids"]
    if limit and any(len(x) > limit for x in enc):
        log.warning("%d texts cut to the model's %d positions", sum(len(x) > limit for x in enc), limit)
        enc = [x[:limit] for x in enc]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    # longest first so padding stays small; results are yielded in input order
    order = sorted(range(len(enc)), key=lambda i: -len(enc[i]))
    out: dict[int, tuple] = {}
    nxt = 0
    with torch.inference_mode(), tqdm(total=len(enc), desc=desc, disable=not progress) as bar:
        for chunk in _batches(len(order), batch_size):
            idx = [order[j] for j in chunk]
            T = max(len(enc[i]) for i in idx)
            ids = torch.full((len(idx), T), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(idx):  # right padding: positions need no shifting
                ids[r, :len(enc[i])] = torch.tensor(enc[i])
                mask[r, :len(enc[i])] = 1
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float().cpu()
            for r, i in enumerate(idx):
                out[i] = (ids[r, :len(enc[i])], logits[r, :len(enc[i])])
            bar.update(len(idx))
            while nxt in out:
                yield out.pop(nxt)
                nxt += 1


def nll_per_token(ids, logits):
    """Negative log-likelihood of ids[1:] given the logits at positions [:-1]."""
    import torch
    return torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="none")


def perplexities(model, tokenizer, texts: list[str], batch_size: int = BATCH_SIZE, progress: bool = True) -> np.ndarray:
    """exp(mean token NLL) of each text under the model; nan for a text with < 2 tokens."""
    import numpy as np
    out = []
    for ids, logits in token_logits(model, tokenizer, texts, batch_size, desc="perplexity", progress=progress):
        out.append(float(nll_per_token(ids, logits).mean().exp()) if len(ids) > 1 else float("nan"))
    return np.asarray(out)


# -------------------------------------------------------------- Min-K%++ (§6.4, Zhang et al.)
def mink_pp_tokens(ids, logits):
    """Per-token (log p(x_t) - mu_t) / sigma_t, with mu_t, sigma_t the mean and standard
    deviation of log p under the next-token distribution p itself."""
    import torch
    logp = torch.log_softmax(logits[:-1].double(), -1)
    p = logp.exp()
    plogp = torch.where(p > 0, p * logp, torch.zeros_like(p))  # 0 * -inf counts as 0
    mu = plogp.sum(-1)
    var = (plogp * logp).nan_to_num(0.0).sum(-1) - mu.square()
    tok = logp.gather(-1, ids[1:, None]).squeeze(-1)
    return (tok - mu) / var.clamp_min(1e-12).sqrt()


def mink_pp_score(token_scores, k: float = MINK) -> float:
    """Mean of the lowest k% token scores (at least one token)."""
    import numpy as np
    s = np.sort(np.asarray(token_scores, dtype=np.float64))
    if len(s) == 0:
        return float("nan")
    m = max(1, int(len(s) * check_k(k, allow_100=True) / 100))
    return float(s[:m].mean())


def mink_pp(model, tokenizer, texts: list[str], k: float = MINK, batch_size: int = BATCH_SIZE,
            progress: bool = True) -> np.ndarray:
    """Min-K%++ score of each text (higher: more like the model's training data)."""
    import numpy as np
    check_k(k, allow_100=True)
    return np.asarray([mink_pp_score(mink_pp_tokens(ids, logits).numpy(), k)
                       for ids, logits in token_logits(model, tokenizer, texts, batch_size,
                                                       desc=f"Min-{k:g}%++", progress=progress)])
