"""The world's named sources, in the roles the paper's corpora play.

Document ``i`` of (source, split, seed) is drawn from its own Generator seeded
by those numbers and the source's fixed ``id``, so a document never depends on how many were
asked for, nor on the other sources (a new source takes a new id, anywhere in the list), and the
same seed gives byte-identical text on any platform. Each source is registered in
``calib.sources`` with a digest of its own record and the generator's code as its version.
"""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Iterator

import numpy as np

from calib import sources as registry
from calib.errors import CalibError, check_choice
from calib.world.domains import DOMAINS, Writer
from calib.world.kb import KB, build_kb

KB_SEED = 0


@dataclass(frozen=True)
class Source:
    name: str
    id: int  # its random stream: fixed, never reused (documents depend on it, not on list order)
    role: str  # the paper corpus it plays (calib.sources.PAPER_CORPORA)
    mixture: tuple[tuple[str, float], ...]  # (domain, weight)
    description: str
    sampling: str  # the paper's sampling mode for its counterpart: "document" or "concat"


SOURCES: dict[str, Source] = {s.name: s for s in [
    Source("world/pretrain", 11, "dclm",
           (("web", 0.45), ("stories", 0.18), ("news", 0.18), ("code", 0.125), ("encyclopedia", 0.05),
            ("instructions", 0.015)),
           "held-out draws of the exact pretraining mixture", "document"),
    Source("world/web", 12, "c4",
           (("web", 0.85), ("news", 0.10), ("dialogue", 0.05)),
           "web text; overlaps the pretraining mixture in part", "document"),
    Source("world/encyclopedia", 13, "wikipedia", (("encyclopedia", 1.0),),
           "formal articles: high quality, but only 5% of pretraining", "concat"),
    Source("world/mixed", 14, "slimpajama",
           (("web", 0.15), ("encyclopedia", 0.2), ("code", 0.05), ("stories", 0.05), ("papers", 0.3),
            ("dialogue", 0.25)),
           "a broad mixture, including registers (papers, dialogue) absent from pretraining", "document"),
    Source("world/instructions", 15, "alpaca", (("instructions", 1.0),),
           "held-out instruction-response pairs, for evaluation only", "concat"),
]}

# Distinct streams: the model is trained on split "train"; calibration draws
# come from "calib"; the Alpaca-role evaluation set from "eval".
SPLITS = {"train": 1, "calib": 2, "eval": 3}


@lru_cache(maxsize=4)
def kb(seed: int = KB_SEED) -> KB:
    return build_kb(seed)


def get_source(name: str) -> Source:
    check_choice("world source", name, SOURCES)
    return SOURCES[name]


def document(source: str, index: int, seed: int = 0, split: str = "calib") -> str:
    """Document ``index`` of a source's stream."""
    src = get_source(source)
    check_choice("split", split, SPLITS)
    rng = np.random.default_rng([KB_SEED, src.id, SPLITS[split], seed, index])
    domains = [d for d, _ in src.mixture]
    weights = np.array([p for _, p in src.mixture], dtype=np.float64)
    domain = domains[int(rng.choice(len(domains), p=weights / weights.sum()))]
    writer = Writer(kb(), rng)
    # A document is 1 + Geometric pieces of one domain (a page of posts, an
    # article with sections), so lengths vary and some fall short of seqlen.
    pieces = 1 if domain == "instructions" else int(rng.geometric(0.4)) + int(rng.random() < 0.5)
    return "\n\n".join(DOMAINS[domain](writer) for _ in range(pieces))


def iter_documents(source: str, seed: int = 0, split: str = "calib", start: int = 0) -> Iterator[str]:
    i = start
    while True:
        yield document(source, i, seed, split)
        i += 1


def documents(source: str, n: int, seed: int = 0, split: str = "calib") -> list[str]:
    get_source(source)
    check_choice("split", split, SPLITS)
    if n < 0:
        raise CalibError(f"number of documents must be >= 0, got {n}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CalibError(f"seed must be an integer >= 0, got {seed!r}")
    return [document(source, i, seed, split) for i in range(n)]


def _generator_code() -> bytes:
    """What shapes every world document besides a source's record: the knowledge base, the
    domain writers and ``document`` itself (not this file's other lines)."""
    here = Path(__file__).parent
    return b"".join((here / f).read_bytes() for f in ("kb.py", "domains.py")) + inspect.getsource(document).encode()


def version(source: str) -> str:
    """A digest of what shapes ``source``'s documents: its record and the generator's code."""
    src = get_source(source)
    h = hashlib.sha256(_generator_code())
    h.update(repr((KB_SEED, src.name, src.id, src.mixture, SPLITS)).encode())
    return h.hexdigest()[:12]


def _register() -> None:
    ids = [s.id for s in SOURCES.values()]
    assert len(set(ids)) == len(ids), f"world source ids must be distinct: {ids}"
    for s in SOURCES.values():
        registry.register(registry.Source(
            s.name, s.role, s.sampling, s.name.split("/", 1)[1], "world",
            texts=partial(_pool, s.name), version=version(s.name)))


def _pool(source: str, n: int) -> list[str]:
    return documents(source, n, seed=0, split="calib")


def domain_documents(domain: str, n: int, seed: int = 0) -> list[str]:
    """Documents of one domain alone (used to show the domains differ)."""
    check_choice("world domain", domain, DOMAINS)
    out = []
    for i in range(n):
        rng = np.random.default_rng([KB_SEED, 97, list(DOMAINS).index(domain), seed, i])
        out.append(DOMAINS[domain](Writer(kb(), rng)))
    return out


_register()
