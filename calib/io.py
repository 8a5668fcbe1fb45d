"""Files written so that a reader, or a process killed half-way, sees all or nothing.

Owns the one atomic write of a file, the one atomic publication of a folder, the
cross-process lock, and reading jsonl with errors that name the file and line.
Knows nothing of models, data or experiments.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from calib.errors import CalibError


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write to a hidden sibling, fsync, rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(out: str | Path, replace: bool = True):
    """Yield a hidden sibling folder to fill; on success it becomes ``out`` in one rename
    (an old ``out`` is swapped out only at the very end), on any error it is removed.
    With ``replace=False`` a folder that appeared at ``out`` meanwhile (another process
    building the same thing) wins and the new copy is discarded."""
    out = Path(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if not out.exists():
            try:
                tmp.rename(out)
                return
            except OSError:  # lost a race to another process
                if replace:
                    raise
        if not replace:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            old.rename(out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def file_lock(path: str | Path):
    """An exclusive lock across processes; the OS drops it when the holder dies."""
    import fcntl
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_jsonl(path: str | Path) -> list[dict]:
    """Every row of a jsonl file (blank lines skipped); a bad line is a CalibError
    that names the file and the line number."""
    path = Path(path)
    if not path.is_file():
        raise CalibError(f"no file at {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise CalibError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise CalibError(f"{path}:{n}: expected a JSON object per line; got {type(row).__name__}")
            rows.append(row)
    return rows
