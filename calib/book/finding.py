"""What a verdict says: ``Finding``, one test of one metric (its outcome, effect, confidence
interval, p and n), and ``Verdict``, a chapter's parts with an outcome per metric.

The rules, in one place:
* a part is "reproduced" or "contradicted" only when its p is below ALPHA, which is exactly when
  its CI excludes zero (p and CI come from one distribution), on the paper's side or the other;
  else "inconclusive";
* a chapter's tested parts, headline and secondary, on both metrics (accuracy and the log-score),
  form one family, adjusted by Bonferroni (``adjust``): with m parts each p is multiplied by m, its
  CI is the 1 - ALPHA/m interval and its MDE is at ALPHA/m. Bonferroni rather than Holm because
  its intervals are simultaneous and sit on the same level as its decisions (Holm's step-down
  levels have no such intervals), so a CI still excludes zero exactly when the part is decided.
  The log-score was added after the accuracy results were seen (issue 32): it is in the family,
  never a free second chance;
* a diagnostic (``Finding.diagnostic``, e.g. Alpaca-role perplexity) is shown with its own 95% CI
  but is outside the family and has no chapter outcome;
* a chapter's outcome per metric: its parts' common outcome; else "mixed" when one part is
  reproduced and another contradicted; else "contradicted" when the headline is; else "partly"
  when some part is reproduced; else "mixed". Metrics are never merged.
Pure functions and records; the tests that make Findings are in ``inference``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from calib.errors import CalibError, check_choice

OUTCOMES = ("reproduced", "contradicted", "inconclusive")
CHAPTER_OUTCOMES = OUTCOMES + ("partly", "mixed")
LEVEL = 0.95          # every CI is a 95% interval, unless a family's adjustment widens it
ALPHA = 1 - LEVEL
POWER = 0.80          # the power of the minimum detectable effect
# the per-item metrics every contrast reports: the paper's accuracy, and the gold choice's
# log-probability normalised over the item's choices (calib.evaluate's records), x 100
METRICS = {"acc": "accuracy", "logscore": "log-score"}
UNITS = {"acc": "points", "logscore": "nats×100"}
NAMES = {**METRICS, "alpaca_ppl": "Alpaca-role perplexity",   # what a metric is called in text
         "nll_per_token": "held-out NLL per token"}            # the real-model chapter's (calib.book.real)
PAPER_METRIC = "acc"


@dataclass(frozen=True)
class Finding:
    """One test of one metric. ``n_seeds`` is an int when the arms share their seeds (paired),
    else (n_a, n_b); ``n_points`` counts the points of a correlation or the values of two samples;
    ``p_raw`` is the p before the family's adjustment; ``mde`` the smallest effect the design finds with
    80% power; ``detail`` holds a test's further numbers (they go into ``as_dict``)."""
    outcome: str
    effect: float | None = None
    ci: tuple[float, float] | None = None
    level: float = LEVEL
    p: float | None = None
    p_raw: float | None = None
    adjusted: str = ""          # how p was adjusted ("Bonferroni, 4 parts"), or ""
    mde: float | None = None
    metric: str = "acc"
    n_seeds: int | tuple[int, int] | None = None
    n_items: int | None = None
    n_facts: int | None = None
    n_points: int | None = None
    claim: str = ""
    direction: int = 1
    label: str = ""
    measure: str = ""           # printed before the effect: "range", "rho", ...
    unit: str = "points"
    null95: float | None = None
    descriptive_ci: bool = False  # the CI describes the estimate; the outcome is the test's (range tests)
    diagnostic: bool = False      # shown, never decided with the chapter (outside the family, no outcome)
    detail: dict = field(default_factory=dict)
    ci_at: Callable | None = field(default=None, compare=False, repr=False)  # level -> CI

    def __post_init__(self):
        check_choice("outcome", self.outcome, OUTCOMES)

    @property
    def half_width(self) -> float | None:
        return None if self.ci is None else (self.ci[1] - self.ci[0]) / 2

    @property
    def metric_name(self) -> str:
        return NAMES.get(self.metric, self.metric)

    def numbers(self) -> str:
        """'+1.42 points [+0.95, +1.90]' ('[98.8% CI ...]' when the family's adjustment widened it)."""
        if self.effect is None:
            return ""
        unit = f" {self.unit}" if self.unit else ""
        head = f"{self.measure} " if self.measure else ""
        sign = "" if self.measure == "range" else "+"   # a range is never negative
        lvl = "" if abs(self.level - LEVEL) < 1e-12 else f"{100 * self.level:.1f}% CI "
        return f"{head}{self.effect:{sign}.2f}{unit} [{lvl}{self.ci[0]:{sign}.2f}, {self.ci[1]:{sign}.2f}]"

    def n_text(self) -> str:
        if self.n_points is not None:
            return f"{self.n_points} points"
        seeds = self.n_seeds if isinstance(self.n_seeds, int) else "{} vs {}".format(*self.n_seeds)
        facts = f" on {self.n_facts:,} facts" if self.n_facts and self.n_facts != self.n_items else ""
        items = f" x {self.n_items:,} items{facts}" if self.n_items else ""
        return f"{seeds} seeds{items}"

    def p_text(self) -> str:
        """'p = 0.196', 'p < 0.001' (never 'p = 0.000'), with the unadjusted p after an adjusted one."""
        if self.p is None:
            return ""
        small = lambda v: v < 0.0005  # noqa: E731 - what rounds to 0.000
        p = "p < 0.001" if small(self.p) else f"p = {self.p:.3f}"
        if self.adjusted:
            return f"{p} ({self.adjusted}; unadjusted {'< 0.001' if small(self.p_raw) else f'{self.p_raw:.3f}'})"
        return p

    def text(self) -> str:
        """'reproduced: +1.42 points [+0.95, +1.90], p = 0.001, n = 10 seeds x 3,500 items on 1,359 facts'."""
        out = f"{self.outcome}: {self.numbers()}"
        out += f", {self.p_text()}" if self.p is not None else ""
        out += f", n = {self.n_text()}"
        if self.null95 is not None:
            out += f" (noise-only null: 97.5th percentile {self.null95:.2f})"
        if self.detail.get("note"):
            out += f" ({self.detail['note']})"
        if self.outcome == "inconclusive":
            unit = f" {self.unit}" if self.unit else ""
            if self.null95 is not None:
                out += "; a range below that could not be told from noise"
            elif self.mde is not None:
                out += (f"; CI half-width ±{self.half_width:.2f}{unit}: an effect of {self.mde:.2f}{unit} or more "
                        f"would be found at least 80% of the time, one near ±{self.half_width:.2f}{unit} about half")
        return out

    def as_dict(self) -> dict:
        """A flat row for a table."""
        n = self.n_seeds if not isinstance(self.n_seeds, tuple) else "{} vs {}".format(*self.n_seeds)
        ci = self.ci or (None, None)
        return {"label": self.label, "metric": self.metric, "claim": self.claim, "outcome": self.outcome,
                "effect": self.effect, "ci_low": ci[0], "ci_high": ci[1], "level": self.level,
                "half_width": self.half_width, "mde": self.mde, "p": self.p, "p_raw": self.p_raw,
                "n_seeds": n, "n_items": self.n_items, "n_facts": self.n_facts, "n_points": self.n_points,
                "null95": self.null95, **self.detail, "text": self.text()}


def outcome_of(p: float, effect: float, direction: int = 1, alpha: float = ALPHA) -> str:
    """reproduced / contradicted when p < alpha, on the paper's side (``direction``) or the other."""
    check_choice("direction", direction, (1, -1))
    if not p < alpha:
        return "inconclusive"
    return "reproduced" if np.sign(effect) == direction else "contradicted"


def holm(p: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the order given."""
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj, running = np.empty(m), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def _adjusted(f: Finding, m: int) -> Finding:
    """``f`` as one of ``m`` parts of a Bonferroni family: p x m, the 1 - ALPHA/m CI (simultaneous
    with the family's others) and the MDE at ALPHA/m."""
    p_adj = min(1.0, f.p * m)
    level, ci, mde = f.level, f.ci, f.mde
    if f.ci_at is not None and not f.descriptive_ci:
        level = 1 - ALPHA / m
        ci = f.ci_at(level)
    spread = f.detail.get("spread")
    if mde is not None and spread is not None:
        mde = spread.mde(ALPHA / m)
    return replace(f, p=p_adj, p_raw=f.p, adjusted=f"Bonferroni, {m} parts", level=level, ci=ci, mde=mde,
                   outcome=outcome_of(p_adj, f.effect, f.direction))


def adjust(parts: list[Finding]) -> list[Finding]:
    """The chapter's family (every part with a p that is not a diagnostic) Bonferroni-adjusted."""
    family = [i for i, p in enumerate(parts) if p.p is not None and not p.diagnostic]
    out = list(parts)
    if len(family) > 1:
        for i in family:
            out[i] = _adjusted(parts[i], len(family))
    return out


@dataclass(frozen=True)
class Verdict:
    """A chapter's verdict: its parts (each metric's first is its headline) and an outcome per
    metric; ``per_task`` holds the headline's effect per task (the forest plot), if computed."""
    claim: str
    parts: tuple[Finding, ...]
    outcomes: dict
    per_task: object = None

    def headline(self, metric: str | None = None) -> Finding:
        metric = metric or next(iter(self.outcomes))
        return next(p for p in self.parts if p.metric == metric)

    def headline_outcome(self, metric: str) -> str | None:
        """The headline part's own outcome on ``metric`` (None where the verdict has no such metric);
        ``outcomes`` holds the chapter's, over all its parts."""
        return self.headline(metric).outcome if metric in self.outcomes else None

    @property
    def outcome(self) -> str:
        """The outcome on the paper's measure (accuracy), or on the first metric where it has none."""
        return self.outcomes.get(PAPER_METRIC, next(iter(self.outcomes.values())))


def chapter_outcome(parts: list[Finding]) -> str:
    """One metric's parts (headline first) -> the chapter's outcome on that metric."""
    kinds = {p.outcome for p in parts}
    if len(kinds) == 1:
        return kinds.pop()
    if {"reproduced", "contradicted"} <= kinds:
        return "mixed"            # a contradicted part is never hidden under "partly"
    if parts[0].outcome == "contradicted":
        return "contradicted"
    return "partly" if "reproduced" in kinds else "mixed"


def combine(parts, claim: str = "", per_task=None) -> Verdict:
    """A chapter's verdict from its parts (each metric's first is its headline): the family adjusted
    (``adjust``), then an outcome per metric; diagnostics are kept and get none."""
    parts = list(parts)
    if not parts:
        raise CalibError("combine needs at least one part")
    out = adjust(parts)
    decided = [p for p in out if not p.diagnostic]
    metrics = list(dict.fromkeys(p.metric for p in decided))
    outcomes = {m: chapter_outcome([p for p in decided if p.metric == m]) for m in metrics}
    return Verdict(claim=claim, parts=tuple(out), outcomes=outcomes, per_task=per_task)
