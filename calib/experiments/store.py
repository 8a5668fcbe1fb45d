"""The results store: one SQLite row per job, keyed by the job's hash.

Crash safety comes from SQLite itself: WAL journal, synchronous=FULL, and each
row written by one statement in its own transaction, only after the job has
finished. A process killed at any moment leaves either the whole row or none.
Several processes may write at once; they wait on SQLite's lock (busy_timeout).

A finished row is never overwritten (an upsert that only replaces failed rows),
so a re-run, a duplicate submission or two racing writers cannot change it.

Concurrent sweeps split the work through ``claims``: a sweep claims a job (one
transaction) before running it, with a lease its heartbeat renews; a claim whose
lease ran out, or whose owner is known dead on this host, may be taken over.

A file that is not a calib store (not SQLite, or SQLite without a ``runs`` table)
is refused, never altered; ``create=False`` opens an existing store and creates nothing.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

from calib.errors import CalibError
from calib.io import check_output, owner_dead

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key        TEXT PRIMARY KEY,
    status     TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    params     TEXT NOT NULL,  -- canonical job parameters (JSON)
    calib_hash TEXT,
    mask_hash  TEXT,
    metrics    TEXT,           -- flat name -> value (JSON)
    dense      TEXT,           -- the dense model's metrics on the same suite (JSON)
    versions   TEXT,           -- library, lm-eval and task versions (JSON)
    timings    TEXT,           -- seconds per stage (JSON)
    info       TEXT,           -- anything else: prune report summary, synthetic-set stats (JSON)
    error      TEXT,           -- traceback of the last attempt, for failed rows
    attempts   INTEGER NOT NULL DEFAULT 1,
    host       TEXT,
    finished   REAL NOT NULL
)
"""
CLAIMS = """
CREATE TABLE IF NOT EXISTS claims (
    key     TEXT PRIMARY KEY,
    owner   TEXT NOT NULL,  -- host:pid:start of the sweep running the job
    expires REAL NOT NULL   -- unix time; the owner's heartbeat pushes it forward
)
"""
JSON_COLUMNS = ("params", "metrics", "dense", "versions", "timings", "info")
COLUMNS = ("key", "status", "calib_hash", "mask_hash", "error", "attempts", "host", "finished") + JSON_COLUMNS

# A done row replaces nothing but a failed one; a failed row never replaces a done one.
_UPSERT = f"""
INSERT INTO runs ({", ".join(COLUMNS)}) VALUES ({", ".join("?" * len(COLUMNS))})
ON CONFLICT(key) DO UPDATE SET {", ".join(f"{c}=excluded.{c}" for c in COLUMNS if c not in ("key", "attempts"))},
    attempts = runs.attempts + excluded.attempts
WHERE runs.status != 'done'
"""


def _dumps(value) -> str | None:
    # Python's JSON (NaN and Infinity allowed): a perplexity may overflow to inf
    return None if value is None else json.dumps(value, sort_keys=True)


class Store:
    """``Store(path)``: open (or create) the database. Cheap; one per process.
    ``create=False``: open an existing store only (for reading), creating nothing."""

    def __init__(self, path: str | Path, timeout: float = 60.0, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise CalibError(f"no results store at {self.path}")
        if create:
            check_output(self.path, "store")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit mode: every write below is one explicit transaction
            uri = f"file:{quote(str(self.path.absolute()))}?mode={'rwc' if create else 'rw'}"
            self.conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise CalibError(f"cannot open the results store {self.path}: {e}") from e
        try:
            self._check(create)  # before any write: a foreign file must stay as it was
            self.conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")  # a committed row survives power loss too
            if create:
                self.conn.execute(SCHEMA)
                self.conn.execute(CLAIMS)
        except sqlite3.DatabaseError as e:
            self.conn.close()
            raise CalibError(f"{self.path} is not a calib results store: {e}") from e
        except BaseException:
            self.conn.close()
            raise

    def _check(self, create: bool) -> None:
        tables = {n for (n,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "runs" not in tables:
            if tables or not create:
                raise CalibError(f"{self.path} is not a calib results store: an SQLite file without a runs "
                                 f"table (tables: {', '.join(sorted(tables)) or 'none'}); give another --store")
            return
        have = {row[1] for row in self.conn.execute("PRAGMA table_info(runs)")}
        missing = [c for c in COLUMNS if c not in have]
        if missing:
            raise CalibError(f"{self.path} is not a calib results store: its runs table lacks "
                             f"{', '.join(missing)}")

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ writes
    def put(self, row: dict) -> bool:
        """Write one row (``status`` 'done' or 'failed') atomically. Returns False when a
        finished row with this key already exists (the new row is then discarded)."""
        row = {"finished": time.time(), "attempts": 1, **row}
        values = [row.get(c) for c in COLUMNS[:8]] + [_dumps(row.get(c)) for c in JSON_COLUMNS]
        cur = self.conn.execute(_UPSERT, values)
        return cur.rowcount == 1

    # ------------------------------------------------------------------ claims
    def claim(self, key: str, owner: str, lease: float) -> str:
        """Try to take job ``key`` for ``owner`` (``calib.io.owner_id()``) for ``lease``
        seconds, in one transaction. Returns "ours" (claimed, or already ours), "done" (a
        finished row exists) or "busy" (claimed by a live owner whose lease holds). An
        expired lease, or an owner known dead on this host, is taken over."""
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            if self.conn.execute("SELECT 1 FROM runs WHERE key = ? AND status = 'done'", (key,)).fetchone():
                state = "done"
            else:
                held = self.conn.execute("SELECT owner, expires FROM claims WHERE key = ?", (key,)).fetchone()
                if held and held[0] != owner and held[1] > now and not owner_dead(held[0]):
                    state = "busy"
                else:
                    self.conn.execute("INSERT OR REPLACE INTO claims (key, owner, expires) VALUES (?, ?, ?)",
                                      (key, owner, now + lease))
                    state = "ours"
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return state

    def renew(self, owner: str, lease: float) -> int:
        """Push the leases of every claim of ``owner`` to now + ``lease``; returns how many."""
        return self.conn.execute("UPDATE claims SET expires = ? WHERE owner = ?",
                                 (time.time() + lease, owner)).rowcount

    def release(self, key: str, owner: str) -> None:
        self.conn.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, owner))

    def release_all(self, owner: str) -> None:
        self.conn.execute("DELETE FROM claims WHERE owner = ?", (owner,))

    def claims(self) -> dict[str, tuple[str, float]]:
        """key -> (owner, lease expiry) of every claim."""
        return {k: (o, e) for k, o, e in self.conn.execute("SELECT key, owner, expires FROM claims")}

    # ------------------------------------------------------------------- reads
    def status(self, keys=None) -> dict[str, str]:
        """key -> status, for all rows or for ``keys``."""
        rows = self.conn.execute("SELECT key, status FROM runs").fetchall()
        out = dict(rows)
        return out if keys is None else {k: out[k] for k in keys if k in out}

    def done_keys(self) -> set[str]:
        return {k for (k,) in self.conn.execute("SELECT key FROM runs WHERE status='done'")}

    def get(self, key: str) -> dict | None:
        rows = self.rows(where="key = ?", args=(key,))
        return rows[0] if rows else None

    def rows(self, status: str | None = None, where: str | None = None, args=()) -> list[dict]:
        sql = f"SELECT {', '.join(COLUMNS)} FROM runs"
        status = None if status == "all" else status
        conds = (["status = ?"] if status else []) + ([where] if where else [])
        args = ((status,) if status else ()) + tuple(args)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        out = []
        for values in self.conn.execute(sql + " ORDER BY finished", args):
            row = dict(zip(COLUMNS, values))
            for c in JSON_COLUMNS:
                row[c] = json.loads(row[c]) if row[c] is not None else None
            out.append(row)
        return out

    def count(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
