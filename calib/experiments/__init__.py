"""Experiments: a job is one cell of the paper's grid; running it writes one row.

    from calib.experiments import Job, expand_grid, run_job, Store, run_sweep, results_frame
    job = Job(method="wanda", sparsity=0.6, calibration={"source": "world/web", "seed": 3})
    row = run_job(job)                                   # calibration -> prune -> evaluate
    run_sweep(expand_grid("examples/grids/world.yaml"), Store("runs.db"))
    results_frame(Store("runs.db"))                      # mean and std over seeds

job.py describes a job, grid.py expands grids into jobs, run.py runs one, sweep.py
runs many (locally or on Ray) into store.py's SQLite store.
"""
from calib.experiments.grid import expand_grid
from calib.experiments.job import Job
from calib.experiments.run import run_job
from calib.experiments.store import Store
from calib.experiments.sweep import results_frame, run_sweep

__all__ = ["Job", "Store", "expand_grid", "results_frame", "run_job", "run_sweep"]
