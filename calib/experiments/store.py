"""The results store: one SQLite row per job, keyed by the job's hash.

Crash safety comes from SQLite itself: WAL journal, synchronous=FULL, and each
row written by one statement in its own transaction, only after the job has
finished. A process killed at any moment leaves either the whole row or none.
Several processes may write at once; they wait on SQLite's lock (busy_timeout).

A finished row is never overwritten (an upsert that only replaces failed rows),
so a re-run, a duplicate submission or two racing writers cannot change it.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

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
    """``Store(path)``: open (or create) the database. Cheap; one per process."""

    def __init__(self, path: str | Path, timeout: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: every write below is one explicit transaction
        self.conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")  # a committed row survives power loss too
        self.conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        self.conn.execute(SCHEMA)

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
