"""calib: calibration data for post-training pruning of LLMs (Ji et al., ICLR 2025).

The package follows the paper's data flow; imports only ever point down this list:

    errors, io, cache            foundations
    world/                       the embedded world: knowledge base, sources, tasks, world models
    models                       which model: aliases, loading, identity
    data                         calibration sources and sampling
    synth                        self-generated calibration data
    filters                      perplexity filter, Min-K%++, MinHash similarity
    prune/                       magnitude, Wanda, SparseGPT, DSnoT, OWL
    evaluate, scorer             perplexity and lm-eval tasks
    experiments/                 jobs, grids, the pipeline, sweeps, the results store
    book/                        the book's profiles, grids, verdicts and papermill runner
    cli/                         the `calib` command line

docs/architecture.md draws this and says which file to edit for common changes.
"""

def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("calib")
    except PackageNotFoundError:  # a bare checkout on PYTHONPATH, not installed
        return "0+unknown"


__version__ = _version()


def git_commit() -> str | None:
    """The git commit of the checkout calib runs from (None: not a git checkout, or no git)."""
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


_COMMIT: list = []


def _commit() -> str | None:
    if not _COMMIT:
        _COMMIT.append(git_commit())
    return _COMMIT[0]


def versions() -> dict:
    """The versions of everything that shapes a result, recorded in every row and report."""
    import sys
    from importlib.metadata import PackageNotFoundError, version

    out = {"calib": __version__, "calib_commit": _commit(), "python": sys.version.split()[0]}
    for name, dist in (("torch", "torch"), ("transformers", "transformers"), ("numpy", "numpy"),
                       ("lm_eval", "lm_eval")):
        try:
            out[name] = version(dist)
        except PackageNotFoundError:  # lm-eval missing: only the ppl suite can run
            pass
    return out
