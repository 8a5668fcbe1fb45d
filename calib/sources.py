"""Calibration sources, one record each: its paper role, sampling mode, display name, colour,
how its documents are read and what shapes them.

A module that owns sources registers each with one call, ``register(Source(...))``, at import
(``calib.world.sources``: the world's five; ``calib.data``: the hub's). ``calib.data.source``
imports those modules and looks a name up, so the rest of calib (sampling, job keys, the book's
labels and colours) reads one record. A new module of sources is imported there too.

``version`` is a digest of what shapes a source's documents: it is part of the key of every job
that calibrates on the source, so editing one source re-runs only its own jobs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from calib.errors import CalibError

SAMPLING = ("document", "concat")  # the paper's two sampling modes (calib.data)
# the paper's corpora (what a source's role names) and their names in tables
PAPER_CORPORA = {"c4": "C4", "wikipedia": "Wikipedia", "slimpajama": "SlimPajama", "dclm": "DCLM", "alpaca": "Alpaca"}
# a paper corpus and every source that plays it share a colour across the book
ROLE_COLOURS = {"dclm": "#1b9e77", "c4": "#d95f02", "slimpajama": "#7570b3", "wikipedia": "#e7298a",
                "alpaca": "#66a61e"}


@dataclass(frozen=True)
class Source:
    name: str  # what --calib and grids take: "world/web", "c4", "real/..."
    role: str | None  # the paper corpus it plays (a PAPER_CORPORA key); None: plays none (real text)
    sampling: str  # the paper's sampling mode for that corpus: "document" or "concat"
    display: str  # its short name: "web" (shown as "web (C4)"), "C4" for the corpus itself
    kind: str  # who reads its documents: "world", "hub", or the registering module's own kind
    texts: Callable[[int], list[str]] | None = None  # pool size -> documents; None: calib.data reads it
    load: dict | None = None  # a hub source's datasets.load_dataset arguments (field "text")
    version: str | None = None  # digest of what shapes its documents (part of its jobs' keys)
    colour: str | None = None  # None: its role's

    def __post_init__(self):
        if self.role is None and self.colour is None:
            raise CalibError(f"source {self.name!r}: a source that plays no paper corpus needs its own colour")
        if self.role is not None and self.role not in PAPER_CORPORA:
            raise CalibError(f"source {self.name!r}: unknown role {self.role!r}; valid: {', '.join(PAPER_CORPORA)}")
        if self.sampling not in SAMPLING:
            raise CalibError(f"source {self.name!r}: unknown sampling {self.sampling!r}; valid: {', '.join(SAMPLING)}")
        if self.colour is None:
            object.__setattr__(self, "colour", ROLE_COLOURS[self.role])

    @property
    def label(self) -> str:
        """'web (C4)' for a source playing a corpus, 'C4' for the corpus itself, its own name otherwise."""
        if self.role is None:
            return self.display
        corpus = PAPER_CORPORA[self.role]
        return corpus if self.display == corpus else f"{self.display} ({corpus})"


REGISTRY: dict[str, Source] = {}


def register(source: Source) -> Source:
    """Add a source; a name registered twice with a different record is an error."""
    old = REGISTRY.get(source.name)
    if old is not None and replace(old, texts=None) != replace(source, texts=None):
        raise CalibError(f"source {source.name!r} is registered twice, with different records")
    REGISTRY[source.name] = source
    return source


def unregister(name: str) -> None:
    """Remove a source (tests that register a toy one)."""
    REGISTRY.pop(name, None)
