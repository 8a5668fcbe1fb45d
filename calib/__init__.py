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

__version__ = "0.1.0"


def versions() -> dict:
    """The versions of everything that shapes a result, recorded in every row and report."""
    import sys
    from importlib.metadata import PackageNotFoundError, version

    out = {"calib": __version__, "python": sys.version.split()[0]}
    for name, dist in (("torch", "torch"), ("transformers", "transformers"), ("numpy", "numpy"),
                       ("lm_eval", "lm_eval")):
        try:
            out[name] = version(dist)
        except PackageNotFoundError:  # lm-eval missing: only the ppl suite can run
            pass
    return out
