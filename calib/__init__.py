"""calib: calibration data for post-training pruning of LLMs.

Data flow, as in Ji et al. (ICLR 2025):
world/data -> synth -> filters -> prune -> evaluate -> experiments.
"""

__version__ = "0.1.0"
