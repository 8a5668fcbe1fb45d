"""Grids: a YAML file (or dict) of axes, expanded into the jobs of the paper's figures and tables.

Every list is an axis (all combinations are run); ``{range: N}`` is 0..N-1; ``grids:``
is a list of sub-grids, each merged over the top-level fields, for grids that are not
one product. See docs/experiments.md and examples/grids/.
"""
from __future__ import annotations

import itertools
from pathlib import Path

from calib.errors import CalibError
from calib.experiments.job import TOP, Job, at

LIST_FIELDS = {"suite.tasks"}  # list-valued fields: a plain list is one value, not a grid axis
GRID_KEYS = TOP + ("grids", "description")


def _range(where, r) -> list[int]:
    r = [r] if isinstance(r, int) else r
    if not isinstance(r, list) or not 1 <= len(r) <= 2 or not all(isinstance(x, int) for x in r):
        raise CalibError(f"{where}: range must be N or [start, stop] (integers); got {r!r}")
    return list(range(*r))


def _expand(value, path: tuple = ()) -> list:
    """Every concrete value of a grid (sub)tree: lists are axes, mappings are crossed."""
    where = ".".join(path) or "grid"
    if isinstance(value, dict):
        if set(value) == {"range"}:
            return _range(where, value["range"])
        keys = list(value)
        combos = itertools.product(*[_expand(value[k], path + (k,)) for k in keys])
        return [dict(zip(keys, c)) for c in combos]
    if isinstance(value, list):
        if ".".join(path) in LIST_FIELDS and not any(isinstance(v, list) for v in value):
            return [value]
        if not value:
            raise CalibError(f"{where}: empty list (an axis needs at least one value)")
        return [c for v in value for c in _expand(v, path)]
    return [value]


def merge(base: dict, over: dict) -> dict:
    """``over`` laid over ``base``, mappings merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_grid(path_or_dict) -> tuple[dict, str]:
    """(grid, name for error messages) of a YAML file or a dict."""
    import yaml
    if isinstance(path_or_dict, dict):
        return path_or_dict, "grid"
    path = Path(path_or_dict)
    if not path.is_file():
        raise CalibError(f"no grid file at {path}")
    try:
        grid = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise CalibError(f"{where}: not valid YAML ({what})") from None
    return grid, str(path)


def expand_grid(path_or_dict) -> list[Job]:
    """Jobs of a grid (YAML file or dict), de-duplicated by key, in grid order."""
    grid, name = load_grid(path_or_dict)
    if not isinstance(grid, dict):
        raise CalibError(f"{name}: a grid is a mapping with fields {', '.join(GRID_KEYS)}")
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise CalibError(f"{name}: {unknown[0]}: unknown field; valid fields: {', '.join(GRID_KEYS)}")
    base = {k: v for k, v in grid.items() if k in TOP}
    subs = grid.get("grids", [{}])
    if not isinstance(subs, list) or not all(isinstance(s, dict) for s in subs):
        raise CalibError(f"{name}: grids: expected a list of mappings (sub-grids); got {subs!r}")
    if not subs:  # not "one default job": an empty list of sub-grids is no job at all
        raise CalibError(f"{name}: grids: empty list; give at least one sub-grid, or leave grids out")
    jobs, seen = [], set()
    for i, sub in enumerate(subs):
        where = f"{name}: grids[{i}]" if "grids" in grid else name
        bad = sorted(set(sub) - set(TOP))
        if bad:
            raise CalibError(f"{where}: {bad[0]}: unknown field; valid fields: {', '.join(TOP)}")
        with at(where):
            for cell in _expand(merge(base, sub)):
                job = Job(**cell)
                if job.key not in seen:
                    seen.add(job.key)
                    jobs.append(job)
    return jobs
