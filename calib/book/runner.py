"""Run the book: every chapter's experiments in one sweep, then each notebook executed with
papermill into book/ (python -m calib.book).

``--settings FILE`` / ``--set KEY=VALUE`` override the profile's settings for the sweep and
every notebook (calib.book.overrides); ``--plan`` prints what would run and its cost
(calib.experiments.plan) and runs nothing.

A notebook is re-executed only when its source, its parameters or the calib
package changed since the last run (the key is stored in the executed
notebook's metadata), so re-building the book is cheap. Results themselves are
cached by the experiment store, so a re-execution only runs what is missing.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from calib.book import overrides as book_overrides
from calib.book.profiles import PROFILE_NAMES, ROOT, settings
from calib.errors import CalibError

NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"
# notebook -> chapter file in book/, in reading order
CHAPTERS = ["world", "fig1_methods", "fig2_sparsity", "fig3_amount", "table1_similarity", "table2_synthetic",
            "table3_settings", "fig4_prefix", "table4_filter", "fig5_mink", "beyond",
            "real_model"]


def _package_hash() -> str:
    h = hashlib.sha256()
    for f in sorted((ROOT / "calib").rglob("*")):
        if f.is_file() and f.suffix in {".py", ".json", ".safetensors"} and "__pycache__" not in f.parts:
            h.update(f.relative_to(ROOT).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _kernel_config(sockets: str):
    """The kernel talks over local sockets in a private folder: over TCP, ipykernel warns once
    per notebook that the traffic is unencrypted."""
    from traitlets.config import Config
    return Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}})


def _key(nb: Path, params: dict, pkg: str) -> str:
    return hashlib.sha256(nb.read_bytes() + json.dumps(params, sort_keys=True).encode() + pkg.encode()).hexdigest()


@contextlib.contextmanager
def handed_down(over: dict | None):
    """Hand the overrides to settings() here and in every notebook kernel (env CALIB_BOOK_SETTINGS)."""
    saved = os.environ.get(book_overrides.ENV)
    if over:
        os.environ[book_overrides.ENV] = json.dumps(over, sort_keys=True)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(book_overrides.ENV, None)
        else:
            os.environ[book_overrides.ENV] = saved


def _check(profile: str, chapters) -> None:
    from calib.errors import check_choice
    check_choice("profile", profile, PROFILE_NAMES)
    for name in chapters or []:
        check_choice("chapter", name, CHAPTERS)


def execute(profile: str, chapters: list[str] | None = None, force: bool = False, over: dict | None = None,
            book_dir: Path | str = BOOK) -> int:
    """Run the chapters' experiments, then execute their notebooks into ``book_dir``, with the
    profile's settings overridden by ``over`` (calib.book.overrides)."""
    _check(profile, chapters)
    with handed_down(over):
        settings(profile)  # bad overrides fail here, in one line
        return _execute(profile, chapters, force, over or {}, Path(book_dir))


def _execute(profile, chapters, force, over, book_dir) -> int:
    import nbformat
    import papermill as pm
    from calib.book.grids import GRIDS
    pkg = _package_hash()
    failed, todo = [], []
    book_dir.mkdir(parents=True, exist_ok=True)
    for name in chapters or CHAPTERS:
        src, dst = NOTEBOOKS / f"{name}.ipynb", book_dir / f"{name}.ipynb"
        params = {"profile": profile}
        key = _key(src, {**params, "settings": over} if over else params, pkg)
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
            with tempfile.TemporaryDirectory(prefix="calib-kernel-") as sockets:
                pm.execute_notebook(str(src), str(tmp), parameters=params, kernel_name="python3",
                                    cwd=str(ROOT), progress_bar=False, config=_kernel_config(sockets))
        except Exception as e:  # keep going: the build then fails on the missing chapter
            print(f"[book] {name}: FAILED: {type(e).__name__}: {str(e)[:2000]}", file=sys.stderr)
            failed.append(name)
            continue
        nb = nbformat.read(tmp, as_version=4)
        for cell in nb.cells:  # the book shows results; code (papermill's injected cell too) folds away
            tags = cell.metadata.setdefault("tags", [])
            if cell.cell_type == "code" and "hide-input" not in tags:
                tags.append("hide-input")
        nb.metadata["calib"] = {"key": key, "profile": profile, "seconds": round(time.time() - t0, 1),
                                **({"settings": over} if over else {})}
        nbformat.write(nb, dst)
        tmp.unlink()
        print(f"[book] {name}: done in {time.time() - t0:.0f} s")
    return 1 if failed else 0


def prefetch(profile: str, chapters: list[str] | None = None, progress: bool = True) -> dict:
    """Run every job the chapters need in one sweep (one Ray session for the whole
    book, so both cores stay busy), before the notebooks read them back."""
    from calib.book.frames import sweep
    from calib.experiments.sweep import release
    s = settings(profile)
    jobs = {j.key: j for js in chapter_jobs(s, chapters).values() for j in js}  # chapters share jobs
    with sweep(list(jobs.values()), s, progress) as (_, summary):
        pass
    release(s["executor"])  # the notebooks' kernels need the memory
    return summary


def chapter_jobs(s: dict, chapters: list[str] | None = None) -> dict[str, list]:
    """chapter -> its jobs (every grid it runs), for the chapters that run experiments."""
    from calib.book.grids import GRIDS
    from calib.experiments import expand_grid
    out = {}
    for name in chapters or CHAPTERS:
        if GRIDS.get(name):
            out[name] = list({j.key: j for make in GRIDS[name] for j in expand_grid(make(s))}.values())
    return out


def print_plan(profile: str, chapters: list[str] | None = None, over: dict | None = None,
               cost: dict | None = None, out=None) -> dict:
    """Print what the chapters will run (calib.experiments.plan): per chapter and for the book,
    whose jobs are shared between chapters (one sweep runs them once). Returns the book's plan."""
    from calib.experiments import plan as P
    from calib.models import MODEL_ALIASES, WORLD_MODELS
    out = out or sys.stdout
    _check(profile, chapters)
    with handed_down(over):
        s = settings(profile)
        from calib.models import model_path
        for m in [s["model"]] + ([s["second_model"]] if "beyond" in (chapters or CHAPTERS) else []):
            if m not in MODEL_ALIASES and not (model_path(m) / "config.json").is_file():
                raise CalibError(f"--plan: the profile's model {m} is not here (no config.json); pass --set "
                                 f"model=FOLDER (or second_model=FOLDER): a folder holding only the model's "
                                 f"config.json is enough to plan, and its tokenizer files, if there, let the plan "
                                 f"count evaluation tokens")
        jobs = chapter_jobs(s, chapters)
        status = P.store_status(s["store"])
        rows = [P.row(name, P.plan(js, status)) for name, js in jobs.items()]
        total = P.plan([j for js in jobs.values() for j in js], status)
    print(f"profile {profile}: {len(jobs)} chapters with experiments; store {s['store']} "
          f"({len(status)} rows)" + (f"; settings {json.dumps(over, sort_keys=True)}" if over else ""), file=out)
    print(P.table(rows + [P.row("book (distinct)", total)]), file=out)
    print(P.summary(total, cost, world_only=all(m in WORLD_MODELS for m in total.models)), file=out)
    return P.as_dict(total)


def _absolute(over: dict) -> dict:
    """Relative model and task-folder paths resolved here, since the notebooks run in the repository root."""
    out = dict(over)
    for k in ("model", "second_model"):
        if isinstance(out.get(k), str) and Path(out[k]).expanduser().exists():
            out[k] = str(Path(out[k]).expanduser().resolve())
    inc = (out.get("suite") or {}).get("include_path") if isinstance(out.get("suite"), dict) else None
    if isinstance(inc, str) and Path(inc).expanduser().exists():
        out["suite"] = {**out["suite"], "include_path": str(Path(inc).expanduser().resolve())}
    if isinstance(out.get("store"), str) and not os.path.isabs(out["store"]):
        out["store"] = str(Path(out["store"]).resolve())
    return out


def main(argv=None) -> int:
    from calib.experiments.plan import parse_cost
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="toy", help=" | ".join(PROFILE_NAMES))
    ap.add_argument("--chapter", action="append", help="only these chapters (repeatable)")
    ap.add_argument("--force", action="store_true", help="re-execute even if up to date")
    ap.add_argument("--settings", action="append", metavar="FILE",
                    help="YAML mapping of settings laid over the profile's (repeatable; e.g. model, store, sources)")
    ap.add_argument("--set", action="append", dest="sets", metavar="KEY=VALUE",
                    help="one setting, VALUE as YAML (repeatable, after --settings; dotted keys: suite.limit=100)")
    ap.add_argument("--book-dir", type=Path, default=BOOK, help="where the executed notebooks go (default book/)")
    ap.add_argument("--plan", action="store_true",
                    help="print the jobs, their distinct work and forward tokens per chapter; run nothing")
    ap.add_argument("--token-cost", default=None,
                    help="with --plan: seconds per forward token (one number, or prune=S,generate=S,evaluate=S,"
                         "per_job=S)")
    a = ap.parse_args(argv)
    try:
        over = _absolute(book_overrides.collect(a.settings, a.sets))
        if a.plan:
            print_plan(a.profile, a.chapter, over, parse_cost(a.token_cost))
            return 0
        return execute(a.profile, a.chapter, a.force, over, a.book_dir)
    except CalibError as e:
        print(f"python -m calib.book: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
