"""The statistics behind each chapter's verdict, in one namespace for the notebooks:

finding.py    ``Finding`` and ``Verdict``: outcome rules, the family's adjustment, the text
designs.py    what is resampled: calibration seeds and the facts evaluation items rest on
inference.py  contrasts: paired (per-item metrics), per task, per-job measures, trends of a gap
comparisons.py  tests against a null: ranges across sources, correlations, two samples' means
power.py      what a design could resolve, and what a target half-width would take

Every function takes the tidy frame (``calib.book.frames.tidy``): one line per job, parameter
columns (method, source, seed, ...), ``avg`` (points) and ``records``, per task the per-item
fields of ``calib.evaluate`` (``acc``, ``logscore``, ``fact``) in the same item order for every job.
"""
from calib.book.designs import PARAMETERS, Design, Items, item_matrix
from calib.book.finding import (
    ALPHA, CHAPTER_OUTCOMES, LEVEL, METRICS, NAMES, OUTCOMES, PAPER_METRIC, POWER, UNITS, Finding, Verdict,
    adjust, chapter_outcome, combine, holm, outcome_of,
)
from calib.book.comparisons import correlation, mean_difference, range_test
from calib.book.inference import (
    N_RESAMPLES, RNG, Spread, job_contrast, margin_test, paired_contrast, per_task, range_trend, stream,
)
from calib.book.power import Need, needed

__all__ = [
    "PARAMETERS", "Design", "Items", "item_matrix", "ALPHA", "CHAPTER_OUTCOMES", "LEVEL", "METRICS", "NAMES", "OUTCOMES",
    "PAPER_METRIC", "POWER", "UNITS", "Finding", "Verdict", "adjust", "chapter_outcome", "combine", "holm", "outcome_of",
    "N_RESAMPLES", "RNG", "Spread", "correlation", "job_contrast", "margin_test",
    "mean_difference", "paired_contrast", "per_task",
    "range_test", "range_trend", "stream", "Need", "needed",
]
