"""The book's chapters, one record each, in reading order: the notebook, the grids it runs, its
headline verdict and that verdict's label among the paper's numbers, and its part of the table
of contents. ``GRIDS``, the runner's chapter list and the check of ``_toc.yml`` derive from
``CHAPTERS``; a notebook asks for its record by name (``calib.book.setup``).

Adding a chapter is one record here and its notebook, ``notebooks/<name>.ipynb`` in this
package (``docs/architecture.md``); ``_toc.yml`` must list it under its part.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from calib.book import grids as G
from calib.errors import check_choice

INTRO = "intro"  # the book's first page: every chapter's headline, recomputed (calib.book.findings), executed last
NOTEBOOKS = "notebooks"  # the chapters' notebooks: this package's folder, or one in the working directory
PARTS = {  # table-of-contents part -> its caption in _toc.yml
    "world": "The embedded world",
    "sec3": "How much calibration data matters (Sec. 3)",
    "sec5": "Self-generated calibration data (Sec. 5-6)",
    "beyond": "Beyond the paper",
    "real": "A real pretrained model",
}


@dataclass(frozen=True)
class Chapter:
    name: str  # its notebook (notebooks/<name>.ipynb) and its page (book/<name>)
    part: str  # a PARTS key
    grids: tuple[Callable[[dict], dict], ...] = ()  # what it runs (calib.book.grids), prefetched by the runner
    verdict: str | None = None  # its headline's function in calib.book.verdicts
    paper: str | None = None  # the headline's label in verdicts.paper_effects()

    def __post_init__(self):
        check_choice(f"chapter {self.name}: part", self.part, PARTS)

    @property
    def verdict_function(self) -> Callable | None:
        from calib.book import verdicts
        return getattr(verdicts, self.verdict) if self.verdict else None


CHAPTERS: dict[str, Chapter] = {c.name: c for c in [
    Chapter("world", "world"),
    Chapter("fig1_methods", "sec3", (G.fig1_grid,), "fig1", "fig1"),
    Chapter("fig2_sparsity", "sec3", (G.fig2_grid,), "fig2", "fig2_range60"),
    Chapter("fig3_amount", "sec3", (G.fig3_grid,), "fig3", "fig3"),
    Chapter("table1_similarity", "sec3", (G.table1_grid,), "table1", "table1"),
    Chapter("table2_synthetic", "sec5", (G.table2_grid,), "table2", "table2"),
    Chapter("table3_settings", "sec5", (G.table3_grid,), "table3", "table3"),
    Chapter("fig4_prefix", "sec5", (G.fig4_grid,), "fig4", "fig4"),
    Chapter("table4_filter", "sec5", (G.table4_grid,), "table4", "table4"),
    Chapter("fig5_mink", "sec5", (G.table2_grid,), "fig5", "fig5"),
    Chapter("beyond", "beyond", (G.table2_grid, G.pruned_generator_grid, G.second_model_grid, G.fig4_grid),
            "pruned_generator"),
    Chapter("real_model", "real", (G.real_grid,), "real_model"),
]}


GRIDS = {c.name: list(c.grids) for c in CHAPTERS.values() if c.grids}  # chapter -> the grids it runs


def chapter(name: str) -> Chapter:
    check_choice("chapter", name, CHAPTERS)
    return CHAPTERS[name]


def toc_parts() -> list[tuple[str, list[str]]]:
    """(caption, chapter pages) per part, in reading order: what _toc.yml lists for the notebooks."""
    out: dict[str, list[str]] = {}
    for c in CHAPTERS.values():
        out.setdefault(PARTS[c.part], []).append(f"book/{c.name}")
    return list(out.items())
