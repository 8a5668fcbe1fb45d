"""Run the book: every chapter's experiments in one sweep, then each notebook executed with
papermill into book/ (python -m calib.book).

A notebook is re-executed only when its source, its parameters or the calib
package changed since the last run (the key is stored in the executed
notebook's metadata), so re-building the book is cheap. Results themselves are
cached by the experiment store, so a re-execution only runs what is missing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from calib.book.profiles import PROFILE_NAMES, ROOT, settings

NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"
# notebook -> chapter file in book/, in reading order
CHAPTERS = ["world", "fig1_methods", "fig2_sparsity", "fig3_amount", "table1_similarity", "table2_synthetic",
            "table3_settings", "fig4_prefix", "table4_filter", "fig5_mink", "beyond"]


def _package_hash() -> str:
    h = hashlib.sha256()
    for f in sorted((ROOT / "calib").rglob("*")):
        if f.is_file() and f.suffix in {".py", ".json", ".safetensors"} and "__pycache__" not in f.parts:
            h.update(f.relative_to(ROOT).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _key(nb: Path, params: dict, pkg: str) -> str:
    return hashlib.sha256(nb.read_bytes() + json.dumps(params, sort_keys=True).encode() + pkg.encode()).hexdigest()


def execute(profile: str, chapters: list[str] | None = None, force: bool = False) -> int:
    from calib.errors import check_choice
    check_choice("profile", profile, PROFILE_NAMES)  # before the heavy imports
    for name in chapters or []:
        check_choice("chapter", name, CHAPTERS)
    import nbformat
    import papermill as pm
    from calib.book.grids import GRIDS
    pkg = _package_hash()
    failed, todo = [], []
    for name in chapters or CHAPTERS:
        src, dst = NOTEBOOKS / f"{name}.ipynb", BOOK / f"{name}.ipynb"
        params = {"profile": profile}
        key = _key(src, params, pkg)
        if not force and dst.exists():
            old = nbformat.read(dst, as_version=4).metadata.get("calib", {})
            if old.get("key") == key:
                print(f"[book] {name}: up to date")
                continue
        todo.append((name, src, dst, params, key))
    if any(name in GRIDS for name, *_ in todo):
        t0 = time.time()
        print(f"[book] running the experiments of {len(todo)} chapter(s) (profile={profile}) ...", flush=True)
        summary = prefetch(profile, [name for name, *_ in todo])
        print(f"[book] experiments: {summary['total']} jobs, {summary['skipped']} already in the store, "
              f"{summary['done']} run, {summary['failed']} failed, {time.time() - t0:.0f} s", flush=True)
    for name, src, dst, params, key in todo:
        print(f"[book] {name}: executing (profile={profile}) ...", flush=True)
        t0 = time.time()
        tmp = dst.with_suffix(".running.ipynb")
        try:
            pm.execute_notebook(str(src), str(tmp), parameters=params, kernel_name="python3",
                                cwd=str(ROOT), progress_bar=False)
        except Exception as e:  # keep going: the build then fails on the missing chapter
            print(f"[book] {name}: FAILED: {type(e).__name__}: {str(e)[:2000]}", file=sys.stderr)
            failed.append(name)
            continue
        nb = nbformat.read(tmp, as_version=4)
        for cell in nb.cells:  # the book shows results; code (papermill's injected cell too) folds away
            tags = cell.metadata.setdefault("tags", [])
            if cell.cell_type == "code" and "hide-input" not in tags:
                tags.append("hide-input")
        nb.metadata["calib"] = {"key": key, "profile": profile, "seconds": round(time.time() - t0, 1)}
        nbformat.write(nb, dst)
        tmp.unlink()
        print(f"[book] {name}: done in {time.time() - t0:.0f} s")
    return 1 if failed else 0


def prefetch(profile: str, chapters: list[str] | None = None, progress: bool = True) -> dict:
    """Run every job the chapters need in one sweep (one Ray session for the whole
    book, so both cores stay busy), before the notebooks read them back."""
    from calib.book.frames import sweep
    from calib.book.grids import GRIDS
    from calib.experiments import expand_grid
    s = settings(profile)
    jobs = {}
    for name in chapters or list(GRIDS):
        for make in GRIDS.get(name, []):
            for j in expand_grid(make(s)):
                jobs.setdefault(j.key, j)
    with sweep(list(jobs.values()), s, progress) as (_, summary):
        pass
    if s["executor"] == "ray":
        import ray
        ray.shutdown()  # the notebooks' kernels need the memory
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="toy", help=" | ".join(PROFILE_NAMES))
    ap.add_argument("--chapter", action="append", help="only these chapters (repeatable)")
    ap.add_argument("--force", action="store_true", help="re-execute even if up to date")
    a = ap.parse_args(argv)
    from calib.errors import CalibError
    try:
        return execute(a.profile, a.chapter, a.force)
    except CalibError as e:  # one line, as the calib command prints it
        print(f"python -m calib.book: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
