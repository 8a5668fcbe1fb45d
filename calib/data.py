"""Calibration data: named sources and windowed sampling with recorded semantics.

A calibration set is ``nsamples`` windows of ``seqlen`` token ids drawn from a
finite pool of documents. Two sampling modes, as in the paper's released code:

* ``document``: pick a document whose tokenization has at least ``seqlen``
  tokens, then a uniformly random window inside it (C4, SlimPajama, DCLM).
* ``concat``: join the pool with single spaces, tokenize once, and take random
  windows of the stream; they may cross document boundaries (Wikipedia and the
  self-generated data).

The set's identity is ``calibration_hash``: sha256 of the ids as int32 bytes.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from calib.errors import CalibError, check_choice

if TYPE_CHECKING:  # numpy loads with the first draw, so `calib --help` stays fast
    import numpy as np

log = logging.getLogger("calib.data")

MODES = ("document", "concat")

# name -> (datasets args, text field, paper's sampling mode)
HUB_SOURCES = {
    "c4": (dict(path="allenai/c4", name="en", split="train"), "text", "document"),
    "wikipedia": (dict(path="wikimedia/wikipedia", name="20231101.en", split="train"), "text", "concat"),
    "slimpajama": (dict(path="DKYoon/SlimPajama-6B", split="train"), "text", "document"),
    "dclm": (dict(path="robbiegwaldd/dclm-micro", split="train"), "text", "document"),
    "alpaca": (dict(path="tatsu-lab/alpaca", split="train"), "text", "concat"),
    # OLMo-2-1124's own pretraining mix (profile paper-olmo2): its DCLM-Baseline part and its Wikipedia
    "olmo-mix-dclm": (dict(path="allenai/olmo-mix-1124", name="dclm", split="train"), "text", "document"),
    "olmo-mix-wiki": (dict(path="allenai/olmo-mix-1124", name="wiki", split="train"), "text", "concat"),
}
LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".txt": "text"}
SYNTH_GENERATOR = "calib.synth"  # value of the "generator" field in rows written by calib.synth

DEFAULT_POOL = {"world": 2000, "hub": 5000, "real": 500}  # documents read from a large source
NSAMPLES, SEQLEN = 128, 2048  # the paper's calibration set: 128 windows of 2048 tokens


def default_seqlen(context: int | None) -> int:
    """The paper's window length, capped to the model's context (the world model has 512)."""
    return SEQLEN if not context else min(SEQLEN, int(context))


# ----------------------------------------------------------------------------- sources
def source_names() -> list[str]:
    from calib import real
    from calib.world.sources import SOURCES
    return list(SOURCES) + list(real.SOURCES) + list(HUB_SOURCES)


def is_synthetic(path: str | Path) -> bool:
    """A jsonl written by calib.synth (its rows carry ``generator: calib.synth``)."""
    p = Path(path)
    if p.suffix != ".jsonl" or not p.is_file():
        return False
    with open(p, encoding="utf-8") as f:
        first = f.readline()
    try:
        return json.loads(first).get("generator") == SYNTH_GENERATOR
    except (ValueError, AttributeError):
        return False


def default_mode(source: str) -> str:
    """The paper's sampling mode for ``source``."""
    from calib import real
    from calib.world.sources import SOURCES
    if source in SOURCES:
        return SOURCES[source].sampling
    if source in real.SOURCES:
        return real.SOURCES[source].sampling
    if source in HUB_SOURCES:
        return HUB_SOURCES[source][2]
    if is_synthetic(source):
        return "concat"  # the paper concatenates its self-generated texts
    if Path(source).is_file():
        return "document"
    _unknown(source)


def _unknown(source: str):
    raise CalibError(f"unknown source {source!r}: not a file, and not one of the named sources: "
                     f"{', '.join(source_names())}; local files may be {', '.join(LOCAL_BUILDERS)}")


def _from_datasets(load_args: dict, text_field: str, pool: int | None, streaming: bool) -> list[str]:
    """Read up to ``pool`` non-empty texts through HF datasets (hub and local files alike)."""
    from datasets import load_dataset
    ds = load_dataset(**load_args, streaming=streaming)
    texts: list[str] = []
    for row in ds:
        if text_field not in row:
            raise CalibError(f"no text field {text_field!r}; the fields are: {', '.join(row)} "
                             f"(choose one with --text-field)")
        t = row[text_field]
        if isinstance(t, str) and t.strip():
            texts.append(t)
            if pool is not None and len(texts) >= pool:
                break
    return texts


@lru_cache(maxsize=8)
def _world_pool(source: str, n: int) -> tuple[str, ...]:
    from calib.world import sources as world
    return tuple(world.documents(source, n, seed=0, split="calib"))


def check_pool(pool) -> None:
    if pool is not None and (isinstance(pool, bool) or not isinstance(pool, int) or pool < 1):
        raise CalibError(f"pool (documents read from the source) must be a positive integer or None "
                         f"(the source's default), got {pool!r}")


def check_seed(seed, what: str = "seed") -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CalibError(f"{what} must be an integer >= 0, got {seed!r}")


def jsonl_texts(path: str | Path, text_field: str = "text") -> tuple[list[dict], list[str]]:
    """(rows, the ``text_field`` string of each row) of a jsonl file; a bad line, or a row
    without the field or with a value that is not a string, is a CalibError naming the
    file and line."""
    from calib.io import read_jsonl
    rows, texts = [], []
    for n, row in read_jsonl(path, line_numbers=True):
        if text_field not in row:
            raise CalibError(f"{path}:{n}: no text field {text_field!r}; the fields are: "
                             f"{', '.join(row) or 'none'} (choose one with --text-field)")
        if not isinstance(row[text_field], str):
            raise CalibError(f"{path}:{n}: field {text_field!r} holds a {type(row[text_field]).__name__}, "
                             f"not a text")
        rows.append(row)
        texts.append(row[text_field])
    return rows, texts


def load_texts(source: str, pool: int | None = None, text_field: str = "text") -> list[str]:
    """The document pool of ``source``: a world source, a hub source or a local file.

    ``pool`` caps how many documents are read (None: a local file is read whole,
    unbounded sources read DEFAULT_POOL). World documents come from split "calib",
    data seed 0, so the pool is fixed and only the sampling seed varies; real documents from
    their calibration split (``calib.real``), never the held-out one.
    """
    from calib import real
    from calib.world import sources as world
    check_pool(pool)
    if not isinstance(text_field, str) or not text_field:
        raise CalibError(f"text field must be a non-empty field name, got {text_field!r}")
    if source in world.SOURCES:
        texts = list(_world_pool(source, pool or DEFAULT_POOL["world"]))
    elif source in real.SOURCES:
        texts = real.texts(source, pool or DEFAULT_POOL["real"], split="calib")
    elif source in HUB_SOURCES:
        from calib import hub
        load_args, field_, _ = HUB_SOURCES[source]
        try:
            with hub.reading(source, load_args, list(HUB_SOURCES)) as args:  # a local copy (CALIB_SOURCES), or the hub
                texts = _from_datasets(args, field_, pool or DEFAULT_POOL["hub"], streaming=True)
        except CalibError:
            raise
        except Exception as e:  # a broken local copy, a schema error ...
            first = (str(e).strip().splitlines() or [""])[0]
            raise CalibError(f"could not read hub source {source!r} ({load_args['path']}): {type(e).__name__}: "
                             f"{first}") from e
    elif Path(source).is_file():
        suffix = Path(source).suffix.lower()
        check_choice("local file type", suffix, LOCAL_BUILDERS)
        if suffix == ".jsonl":
            texts = [t for t in jsonl_texts(source, text_field)[1] if t.strip()][:pool]
        else:
            builder = LOCAL_BUILDERS[suffix]
            load_args = dict(path=builder, data_files=str(source), split="train")
            if builder == "text":
                load_args["sample_by"] = "paragraph"  # documents are separated by blank lines
            try:
                texts = _from_datasets(load_args, text_field, pool, streaming=True)
            except CalibError as e:
                raise CalibError(f"{source}: {e}") from None
            except Exception as e:  # malformed JSON, a corrupt parquet file ...
                first = (str(e).strip().splitlines() or [""])[0]
                raise CalibError(f"{source}: could not read it as a {suffix} file: {type(e).__name__}: "
                                 f"{first}") from e
    else:
        _unknown(source)
    if not texts:
        raise CalibError(f"source {source!r} is empty: no non-empty {text_field!r} values")
    return texts


# ---------------------------------------------------------------------------- sampling
def calibration_hash(tensor) -> str:
    """sha256 hex of the ids as contiguous int32 bytes: the calibration set's identity."""
    import torch
    arr = tensor.detach().to("cpu", torch.int32).contiguous().numpy()
    return hashlib.sha256(arr.astype("<i4", copy=False).tobytes()).hexdigest()


@dataclass
class CalibrationSet:
    input_ids: "torch.LongTensor"  # noqa: F821 - [nsamples, seqlen]
    meta: dict = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return calibration_hash(self.input_ids)


def _check_sizes(nsamples: int, seqlen: int) -> None:
    if not isinstance(nsamples, int) or nsamples < 1:
        raise CalibError(f"nsamples must be a positive integer, got {nsamples!r}")
    if not isinstance(seqlen, int) or seqlen < 1:
        raise CalibError(f"seqlen must be a positive integer, got {seqlen!r}")


def check_memory(nsamples: int, seqlen: int, per_token: int = 16, what: str = "its token ids") -> None:
    """A CalibError, before any work, unless ``per_token`` bytes for each of nsamples x seqlen
    tokens fit in the memory this process can still use (default: the int64 ids tensor and
    the Python rows it is built from)."""
    from calib.models import host_memory
    avail = host_memory()
    need = nsamples * seqlen * per_token
    if avail is not None and need > avail:
        raise CalibError(f"nsamples {nsamples} x seqlen {seqlen} needs {need / 1e9:.3g} GB of memory for {what}; "
                         f"{avail / 1e9:.3g} GB is available here; valid: nsamples <= "
                         f"{avail // (seqlen * per_token)} at seqlen {seqlen}")


def _too_many(nsamples: int, windows: int, seqlen: int, where: str):
    """More windows than the source holds can only repeat windows: not more calibration data."""
    if nsamples > windows:
        raise CalibError(f"nsamples {nsamples} is more than the {windows} distinct windows of seqlen={seqlen} "
                         f"tokens {where}; valid: nsamples <= {windows}, or a larger pool or a smaller seqlen")


def document_windows(lengths: list[int], nsamples: int, seqlen: int, rng: np.random.Generator):
    """(doc, start) pairs: a uniform document among those with >= seqlen tokens (the same
    law as the original's rejection loop, but it cannot spin), then a uniform start."""
    import numpy as np
    eligible = np.flatnonzero(np.asarray(lengths) >= seqlen)
    if len(eligible) == 0:
        longest = int(np.argmax(lengths))
        raise CalibError(f"no document has seqlen={seqlen} tokens; the longest of {len(lengths)} "
                         f"has {lengths[longest]} tokens (document {longest}); use mode='concat', "
                         f"a smaller seqlen or a larger pool")
    _too_many(nsamples, int(sum(lengths[d] - seqlen + 1 for d in eligible)), seqlen,
              f"in the {len(eligible)} of {len(lengths)} documents that are that long")
    out = []
    for _ in range(nsamples):
        d = int(eligible[rng.integers(len(eligible))])
        out.append((d, int(rng.integers(0, lengths[d] - seqlen + 1))))
    return out


def concat_windows(total: int, nsamples: int, seqlen: int, rng: np.random.Generator) -> list[int]:
    """Uniform window starts in a stream of ``total`` tokens."""
    if total < seqlen:
        raise CalibError(f"the concatenated source has {total} tokens, fewer than seqlen={seqlen}; "
                         f"use a smaller seqlen or a larger pool")
    _too_many(nsamples, total - seqlen + 1, seqlen, f"in the concatenated source's {total} tokens")
    return [int(s) for s in rng.integers(0, total - seqlen + 1, size=nsamples)]


def sample(source: str, tokenizer, nsamples: int, seqlen: int, seed: int = 0, mode: str | None = None,
           pool: int | None = None, text_field: str = "text", context: int | None = None) -> CalibrationSet:
    """Draw a calibration set. Tokenization keeps the tokenizer's specials (a LLaMA
    tokenizer prepends <s> to each document in ``document`` mode, once to the stream
    in ``concat`` mode), as the paper's code did. ``context``: the model's positions,
    which a window may not exceed."""
    import torch
    _check_sizes(nsamples, seqlen)
    if context and seqlen > context:
        raise CalibError(f"seqlen {seqlen} is longer than the model's context ({context} tokens); "
                         f"valid: 1 .. {context}")
    check_seed(seed)
    check_pool(pool)
    mode = default_mode(source) if mode is None else mode
    check_choice("sampling mode", mode, MODES)
    check_memory(nsamples, seqlen)
    texts = load_texts(source, pool, text_field)
    import numpy as np
    rng = np.random.default_rng(seed)
    meta = dict(source=str(source), mode=mode, nsamples=nsamples, seqlen=seqlen, seed=seed,
                pool=len(texts), tokenizer=getattr(tokenizer, "name_or_path", type(tokenizer).__name__))
    if mode == "document":
        ids = tokenizer(texts, verbose=False)["input_ids"]
        windows = document_windows([len(x) for x in ids], nsamples, seqlen, rng)
        rows = [ids[d][s:s + seqlen] for d, s in windows]
        meta["windows"] = [{"doc": d, "start": s} for d, s in windows]
    else:
        joined = " ".join(texts)
        enc = tokenizer(joined, return_offsets_mapping=getattr(tokenizer, "is_fast", False), verbose=False)
        stream = enc["input_ids"]
        starts = concat_windows(len(stream), nsamples, seqlen, rng)
        rows = [stream[s:s + seqlen] for s in starts]
        meta["windows"] = [{"start": s} for s in starts]
        if "offset_mapping" in enc:  # which documents each window touches
            doc_starts, pos = [], 0
            for t in texts:
                doc_starts.append(pos)
                pos += len(t) + 1
            offs = enc["offset_mapping"]
            for w, s in zip(meta["windows"], starts):
                w["docs"] = [bisect.bisect_right(doc_starts, offs[s][0]) - 1,
                             bisect.bisect_right(doc_starts, max(offs[s + seqlen - 1][1] - 1, 0)) - 1]
    used = sorted({w["doc"] for w in meta["windows"]} if mode == "document" else
                  {d for w in meta["windows"] if "docs" in w for d in range(w["docs"][0], w["docs"][1] + 1)})
    meta["documents_used"] = used
    out = CalibrationSet(torch.tensor(rows, dtype=torch.long), meta)
    meta["hash"] = out.hash
    return out


def calibration_tensor(source, tokenizer, nsamples, seqlen, seed=0, mode=None, context=None):
    """[nsamples, seqlen] LongTensor of calibration windows (see ``sample``)."""
    return sample(source, tokenizer, nsamples, seqlen, seed=seed, mode=mode, context=context).input_ids
