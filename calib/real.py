"""Real text nobody here wrote, for the real model (``--model smollm2``): three domains read
from files the project's set-up installs at pinned versions (``make setup``; see
docs/calibration-data.md for provenance and licenses).

* ``real/code``: the Python source of Django 5.1.4 (its PyPI sdist), one document per file;
* ``real/docs``: Django 5.1.4's English documentation (reStructuredText, same sdist), one per file;
* ``real/reference``: GCIDE, the Collaborative International Dictionary of English (Debian's
  dict-gcide 0.48.5+nmu2), one document per run of consecutive entries (a page).

Each document has a fixed id (its path, or its first entry's byte offset). A document is held
out when the first byte of sha256(id) is below HELDOUT_SHARE x 256, so the split never depends on
how many documents are read; the two splits are disjoint by construction. Within a split the
documents are ordered by sha256(id): the first N are a fixed pseudo-random sample, so a pool of
N documents spans the whole source. Files are checked against their pinned sha256, so the same
name gives byte-identical text everywhere. Knows nothing of models or sampling.
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from calib.cache import digest
from calib.errors import CalibError, check_choice
from calib.sources import Source, register

DJANGO = ("Django-5.1.4.tar.gz", "de450c09e91879fa5a307f696e57c851955c910a438a35e6b4c895e86bedc82a")
GCIDE = ("gcide.dict.dz", "3e6b2cdcbc1b3664c2f1466e3c8e44012e815c4c67fa83fa61f39777cd6e8517")
GCIDE_INDEX = ("gcide.index", "e78de035e075f16dd686dd87a4dbf5b4525130d0550968a02d929f5ddf63a6a1")  # where each entry starts and ends
SETUP = ("`make setup` (it runs `pip download --no-deps --no-binary :all: django==5.1.4 -d DIR` and "
         "`apt-get download dict-gcide=0.48.5+nmu2`; DIR: $CALIB_REAL_DATA, default <venv>/share/calib/real)")
HELDOUT_SHARE = 0.1  # a tenth of each source's documents is held out for evaluation
MIN_CHARS = 200  # shorter files (empty __init__.py, stubs) are not documents
PAGE_CHARS = 2000  # a reference document: consecutive dictionary entries up to about this long
SPLITS = ("calib", "heldout")


@dataclass(frozen=True)
class RealSource:
    """What this module needs to read a source; its calib.sources record says the rest."""
    name: str
    kind_of_text: str
    display: str  # a figure's label
    colour: str  # a figure's colour (matplotlib name)
    file: tuple[str, str]  # (file name, sha256) of what it is read from
    sampling: str  # calib.data's sampling mode: "document" or "concat"
    description: str


# The one table of real sources.
SOURCES: dict[str, RealSource] = {s.name: s for s in [
    RealSource("real/code", "Python code", "Code (Django)", "tab:green", DJANGO, "document",
               "the Python source files of Django 5.1.4"),
    RealSource("real/docs", "technical documentation", "Docs (Django)", "tab:purple", DJANGO, "document",
               "Django 5.1.4's English documentation, reStructuredText"),
    RealSource("real/reference", "reference work", "Dictionary (GCIDE)", "tab:brown", GCIDE, "concat",
               "GCIDE dictionary entries (Webster's 1913 revised, with WordNet), in pages of consecutive entries"),
]}
REAL_DEFAULT_SOURCE = "real/code"  # the smollm2 model's default calibration source (issue 34 wires it)
REAL_SUITE = "real"  # the suite of the real sources' held-out perplexity (calib.evaluate)
N_HELDOUT = 32  # held-out documents the real suite scores per source, by default
HELDOUT_TOKENS = 256  # each scored over its first this many tokens (a CPU's budget; the model has 8192)


def data_dir() -> Path:
    """Where the set-up put the files: $CALIB_REAL_DATA, else <prefix>/share/calib/real."""
    return Path(os.environ.get("CALIB_REAL_DATA") or Path(sys.prefix) / "share" / "calib" / "real")


def _file(name: str, sha256: str) -> Path:
    """The pinned file, checked; a one-line CalibError naming the set-up where it is missing or differs."""
    where = [data_dir() / name] + ([Path("/usr/share/dictd") / name] if name.startswith("gcide") else [])
    path = next((p for p in where if p.is_file()), None)
    if path is None:
        raise CalibError(f"real text file {name} is not installed (looked in {', '.join(map(str, where))}); "
                         f"run {SETUP}")
    got = _sha256(str(path), path.stat().st_mtime_ns)
    if got != sha256:
        raise CalibError(f"{path}: sha256 {got[:16]}... is not the pinned version's ({sha256[:16]}...); "
                         f"remove it and run {SETUP}")
    return path


@lru_cache(maxsize=8)
def _sha256(path: str, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _django(path: Path) -> dict[str, dict[str, str]]:
    """source name -> {id: text} of the sdist's package sources and its documentation."""
    import tarfile
    out: dict[str, dict[str, str]] = {"real/code": {}, "real/docs": {}}
    with tarfile.open(path, "r:gz") as tar:
        for m in tar:
            parts = m.name.split("/")  # Django-5.1.4/<top>/...
            if not m.isfile() or len(parts) < 3:
                continue
            kind = "real/code" if parts[1] == "django" and m.name.endswith(".py") else \
                "real/docs" if parts[1] == "docs" and m.name.endswith(".txt") else None
            if kind:
                text = tar.extractfile(m).read().decode("utf-8", errors="replace")
                if len(text.strip()) >= MIN_CHARS:
                    out[kind]["/".join(parts[1:])] = text
    return out


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _gcide(path: Path) -> dict[str, str]:
    """{id: page}: the dictionary's entries in file order (00-database-* headers skipped), joined
    into pages of about PAGE_CHARS characters; a page's id is its first entry's byte offset."""
    import gzip
    body = gzip.open(path).read()  # dictzip is gzip-compatible
    spans = set()  # the entries' (offset, length) as dictd's index gives them (base64 numbers)
    num = lambda s: sum(_B64.index(c) << (6 * i) for i, c in enumerate(reversed(s)))  # noqa: E731
    for line in _file(*GCIDE_INDEX).read_text(encoding="utf-8", errors="replace").splitlines():
        word, off, size = line.split("\t")[:3]
        if not word.startswith("00-database"):
            spans.add((num(off), num(size)))
    pages, cur, start = {}, [], None
    for off, size in sorted(spans):
        text = body[off:off + size].decode("utf-8", errors="replace").strip()
        if start is None:
            start = off
        cur.append(text)
        if sum(map(len, cur)) >= PAGE_CHARS:
            pages[f"gcide/{start}"] = "\n\n".join(cur)
            cur, start = [], None
    if cur:
        pages[f"gcide/{start}"] = "\n\n".join(cur)
    return pages


@lru_cache(maxsize=4)
def _documents(name: str) -> tuple[tuple[str, str], ...]:
    """Every (id, text) of a source, ordered by sha256(id)."""
    src = SOURCES[name]
    path = _file(*src.file)
    docs = _django(path)[name] if src.file == DJANGO else _gcide(path)
    return tuple(sorted(docs.items(), key=lambda kv: _key(kv[0])))


def _key(doc_id: str) -> bytes:
    return hashlib.sha256(doc_id.encode()).digest()


def heldout(doc_id: str) -> bool:
    return _key(doc_id)[0] < HELDOUT_SHARE * 256


def get_source(name: str) -> RealSource:
    check_choice("real source", name, SOURCES)
    return SOURCES[name]


def documents(name: str, n: int | None = None, split: str = "calib") -> list[tuple[str, str]]:
    """The first ``n`` (all: None) (id, text) documents of a source's split."""
    get_source(name)
    check_choice("split", split, SPLITS)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise CalibError(f"number of documents must be an integer >= 0, got {n!r}")
    docs = [d for d in _documents(name) if heldout(d[0]) == (split == "heldout")]
    return docs[:n]


def version() -> str:
    """What fixes the real suite's texts: the pinned files and the split and scoring constants."""
    return digest([sorted((s.name, s.file) for s in SOURCES.values()), GCIDE_INDEX, HELDOUT_SHARE, MIN_CHARS,
                   PAGE_CHARS, HELDOUT_TOKENS])[:12]


def texts(name: str, n: int | None = None, split: str = "calib") -> list[str]:
    return [t for _, t in documents(name, n, split)]


def _register() -> None:
    """Each real source as a calib.sources record: it plays no paper corpus; its version is the
    pinned file's hash and the split's constants, so it keys only its own jobs."""
    for src in SOURCES.values():
        spec = [src.file, GCIDE_INDEX if src.file == GCIDE else None, HELDOUT_SHARE, MIN_CHARS, PAGE_CHARS]
        register(Source(src.name, None, src.sampling, src.display, "real",
                        texts=lambda n, name=src.name: texts(name, n, "calib"), version=digest(spec)[:12],
                        colour=src.colour))


_register()
