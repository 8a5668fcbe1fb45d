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
from calib.sources import REGISTRY, Source, register

if TYPE_CHECKING:  # numpy loads with the first draw, so `calib --help` stays fast
    import numpy as np

log = logging.getLogger("calib.data")

MODES = ("document", "concat")

# The hub's sources, one record each (calib.sources); their documents are field "text"
for _s in [
    Source("c4", "c4", "document", "C4", "hub", load=dict(path="allenai/c4", name="en", split="train")),
    Source("wikipedia", "wikipedia", "concat", "Wikipedia", "hub",
           load=dict(path="wikimedia/wikipedia", name="20231101.en", split="train")),
    Source("slimpajama", "slimpajama", "document", "SlimPajama", "hub",
           load=dict(path="DKYoon/SlimPajama-6B", split="train")),
    Source("dclm", "dclm", "document", "DCLM", "hub", load=dict(path="robbiegwaldd/dclm-micro", split="train")),
    Source("alpaca", "alpaca", "concat", "Alpaca", "hub", load=dict(path="tatsu-lab/alpaca", split="train")),
    # OLMo-2-1124's own pretraining mix (profile paper-olmo2): its DCLM-Baseline part and its Wikipedia
    Source("olmo-mix-dclm", "dclm", "document", "OLMo-mix dclm", "hub",
           load=dict(path="allenai/olmo-mix-1124", name="dclm", split="train")),
    Source("olmo-mix-wiki", "wikipedia", "concat", "OLMo-mix wiki", "hub",
           load=dict(path="allenai/olmo-mix-1124", name="wiki", split="train")),
]:
    register(_s)
# name -> (datasets args, text field, paper's sampling mode)
HUB_SOURCES = {s.name: (s.load, "text", s.sampling) for s in REGISTRY.values() if s.kind == "hub"}
LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".txt": "text"}
SYNTH_GENERATOR = "calib.synth"  # value of the "generator" field in rows written by calib.synth

DEFAULT_POOL = {"world": 2000, "hub": 5000, "real": 500}  # documents read from a large source
# the output version of sampling (a calibration set from a source), part of every job key:
# bump it whenever a change alters the windows drawn (tests/test_golden.py)
VERSION = 1
NSAMPLES, SEQLEN = 128, 2048  # the paper's calibration set: 128 windows of 2048 tokens


def default_seqlen(context: int | None) -> int:
    """The paper's window length, capped to the model's context (the world model has 512)."""
    return SEQLEN if not context else min(SEQLEN, int(context))


# ----------------------------------------------------------------------------- sources
def source_record(name: str) -> Source | None:
    """The record of a named source (calib.sources), None for anything else (a file). The
    modules that register sources are imported here."""
    import calib.real  # noqa: F401  (registers the real texts')
    import calib.world.sources  # noqa: F401  (registers the world's)
    return REGISTRY.get(str(name))


def source_names() -> list[str]:
    """The named sources: the world's first, then the others in the order they registered."""
    source_record("")
    return sorted(REGISTRY, key=lambda n: REGISTRY[n].kind != "world")


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
    rec = source_record(source)
    if rec is not None:
        return rec.sampling
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
def _pool(source: str, n: int, version: str | None) -> tuple[str, ...]:
    """A registered source's pool, read by its own record (cached per version)."""
    return tuple(REGISTRY[source].texts(n))


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
    check_pool(pool)
    if not isinstance(text_field, str) or not text_field:
        raise CalibError(f"text field must be a non-empty field name, got {text_field!r}")
    rec = source_record(source)
    if rec is not None and rec.texts is not None:
        texts = list(_pool(source, pool or DEFAULT_POOL.get(rec.kind, DEFAULT_POOL["hub"]), rec.version))
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


def saved_set(source) -> dict | None:
    """{path, meta} of a calibration set written by `calib sample --out F` (F and F.json), else None."""
    p = Path(str(source)).expanduser()
    side = Path(str(p) + ".json")
    if not p.is_file() or not side.is_file():
        return None
    with open(p, "rb") as f:
        if f.read(2) != b"PK":  # torch.save's zip archive
            return None
    try:
        meta = json.loads(side.read_text())
    except ValueError as e:
        raise CalibError(f"{side}: not valid JSON ({e}); it should be the meta `calib sample --out` wrote") from None
    if not isinstance(meta, dict) or not {"nsamples", "seqlen", "mode", "hash"} <= set(meta):
        raise CalibError(f"{side}: not the meta of a calibration set written by `calib sample --out`")
    return {"path": p, "meta": meta}


def saved_ids(saved: dict, tokenizer):
    """The [nsamples, seqlen] ids of a saved set, checked against its recorded hash and the
    tokenizer's vocabulary."""
    import torch
    p = saved["path"]
    try:
        ids = torch.load(p, map_location="cpu", weights_only=True)["input_ids"]
    except Exception as e:  # a truncated or foreign file
        raise CalibError(f"{p}: not a calibration set written by `calib sample --out` ({type(e).__name__})") from e
    if calibration_hash(ids) != saved["meta"]["hash"]:
        raise CalibError(f"{p}: its ids do not match the hash in {p}.json; draw it again with `calib sample`")
    if int(ids.max()) >= len(tokenizer):
        raise CalibError(f"{p}: token id {int(ids.max())} is outside this model's vocabulary ({len(tokenizer)}); "
                         f"the set was drawn with another tokenizer ({saved['meta'].get('tokenizer')})")
    return ids


def calibration_tensor(source, tokenizer, nsamples, seqlen, seed=0, mode=None, context=None, text_field="text"):
    """[nsamples, seqlen] LongTensor of calibration windows (see ``sample``)."""
    return sample(source, tokenizer, nsamples, seqlen, seed=seed, mode=mode, context=context,
                  text_field=text_field).input_ids
