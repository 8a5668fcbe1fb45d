"""Files written so that a reader, or a process killed half-way, sees all or nothing.

Owns the one atomic write of a file, the one atomic publication of a folder, the
cross-process lock, reading jsonl with errors that name the file and line, the check
that an output path is usable before any work starts, and who owns a temporary
(host, pid, start time), so that what a dead process left behind can be cleaned up.
Knows nothing of models, data or experiments.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
from pathlib import Path

from calib.errors import CalibError

# errors that mean "this path cannot be written", as opposed to a full disk or an I/O fault
_UNUSABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR}


def _reraise(e: BaseException, path):
    """Raise ``e``, as a one-line CalibError when it says the path cannot be written."""
    if isinstance(e, OSError) and e.errno in _UNUSABLE:
        raise CalibError(f"cannot write {path}: {e.strerror or e}") from e
    raise e


def check_output(path: str | Path, what: str = "output", folder: bool = False) -> Path:
    """Raise CalibError unless ``path`` can be written: it is not a folder where a file
    goes (or a file where a folder goes), no parent is a regular file, and the nearest
    existing parent is writable. Creates nothing, so it runs before any work."""
    path = Path(path).expanduser()
    if path.is_dir() and not folder:
        raise CalibError(f"{what} {path} is a folder; give a file path")
    if path.exists() and not path.is_dir() and folder:
        raise CalibError(f"{what} {path} exists and is not a folder")
    if path.is_file() and not os.access(path, os.W_OK):
        raise CalibError(f"{what} {path} is read-only")
    parent = path.absolute().parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if not parent.is_dir():
        raise CalibError(f"{what} {path} cannot be created: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CalibError(f"{what} {path} cannot be created: {parent} is read-only")
    return path


def check_not_input(out: str | Path, inputs: dict, what: str = "--out") -> None:
    """Raise CalibError when the output ``out`` is one of the command's ``inputs`` (flag -> path;
    a name that is not an existing path, e.g. a source name, is skipped), lies inside one (a
    model folder), or holds one (a folder output replaced whole): writing would destroy it,
    with --overwrite too."""
    o = Path(out).expanduser().resolve()
    for flag, given in inputs.items():
        if given is None or not Path(str(given)).expanduser().exists():
            continue
        i = Path(str(given)).expanduser().resolve()
        if o == i or i in o.parents or (o.is_dir() and o in i.parents):
            how = "is" if o == i else "lies inside" if i in o.parents else "holds"
            raise CalibError(f"{what} {out} {how} the input {flag} {given}; write the output elsewhere "
                             f"(the input is left as it is)")


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write to a hidden sibling (``.NAME.HOST-PID.tmp``), fsync, rename: readers see the old
    file or the new one. The siblings that dead processes left are removed first."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{_tag()}.tmp")
    clean_stale(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        _reraise(e, path)


# ------------------------------------------------------------------ owners
def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, from /proc), which
    tells a live process from a later one that reuses its pid; None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name in (...) may hold spaces


def owner_id() -> str:
    """``host:pid:start`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{process_start(os.getpid()) or ''}"


def owner_dead(owner: str) -> bool:
    """True when ``owner`` (an ``owner_id``, or ``host:pid``) is a process on this host
    that no longer runs. An owner on another host is never known dead here."""
    host, _, rest = owner.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    pid = int(pid)
    if pid == os.getpid():
        return bool(start) and start != process_start(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        pass
    now = process_start(pid)
    return bool(start and now and start != now)  # the pid was reused by a later process


def _tag() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def clean_stale(out: str | Path) -> list[Path]:
    """Remove the hidden temporaries that dead processes on this host left next to
    ``out``: folders ``.OUT.tmp-HOST-PID`` (``atomic_folder``) and files ``.OUT.HOST-PID.tmp``
    (``atomic_write``; ``.OUT.PID.tmp`` from older versions). A stale ``.OUT.old-HOST-PID``
    is the previous ``out`` of a process killed mid-swap: it is put back when ``out`` is
    missing. A tag without a host means this host. Returns what was removed or restored."""
    out = Path(out)
    done, prefix, stale = [], f".{out.name}.", []
    try:
        names = [e.name for e in os.scandir(out.parent) if e.name.startswith(prefix)]
    except OSError:  # no folder yet, or not readable: nothing to clean
        return done
    for name in names:
        rest = name[len(prefix):]
        kind = rest[:3] if rest[:4] in ("tmp-", "old-") else "file" if rest.endswith(".tmp") else None
        if kind:
            stale.append((out.parent / name, kind, rest[4:] if kind != "file" else rest[:-4]))
    for p, kind, tag in stale:
        host, _, pid = tag.rpartition("-")
        if not pid.isdigit() or not owner_dead(f"{host or socket.gethostname()}:{pid}"):
            continue
        if kind == "old" and not out.exists():
            p.rename(out)
        elif kind == "file" or not p.is_dir():
            with contextlib.suppress(FileNotFoundError):  # another process cleaned it first
                p.unlink()
        else:
            shutil.rmtree(p, ignore_errors=True)
        done.append(p)
    return done


@contextlib.contextmanager
def atomic_folder(out: str | Path, replace: bool = True):
    """Yield a hidden sibling folder to fill; on success it becomes ``out`` in one rename
    (an old ``out`` is swapped out only at the very end), on any error it is removed.
    With ``replace=False`` a folder that appeared at ``out`` meanwhile (another process
    building the same thing) wins and the new copy is discarded."""
    out = Path(out)
    tmp = out.parent / f".{out.name}.tmp-{_tag()}"
    clean_stale(out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as e:
        _reraise(e, out)
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
        old = out.parent / f".{out.name}.old-{_tag()}"
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "w")
    except OSError as e:
        _reraise(e, path)
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_jsonl(path: str | Path, line_numbers: bool = False) -> list:
    """Every row of a jsonl file (blank lines skipped); a bad line is a CalibError
    that names the file and the line number. ``line_numbers``: (line, row) pairs."""
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
            rows.append((n, row) if line_numbers else row)
    return rows
