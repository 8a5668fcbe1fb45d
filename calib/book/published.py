"""The numbers Ji et al. (ICLR 2025, arXiv 2410.17711) publish, as data.

published.yaml holds every cell of the paper's tables that survives in our text copy
of it, the values its prose states about the figures, and its headline claims; its
header comment says where each block comes from and what is missing. This module
only reads that file:

    load()            -> the whole file as a dict
    table("table2")   -> one table's rows as a pandas DataFrame
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import pandas as pd
import yaml

from calib.errors import CalibError, check_choice

PATH = Path(__file__).with_name("published.yaml")


@functools.lru_cache(maxsize=1)
def _read() -> dict:
    return yaml.safe_load(PATH.read_text(encoding="utf-8"))


def load() -> dict:
    """The whole file (a fresh copy, so callers may change it freely)."""
    return copy.deepcopy(_read())


def names() -> list[str]:
    """The table names, in file order: table1 ... table7."""
    return [k for k in _read() if k.startswith("table")]


def table(name: str) -> pd.DataFrame:
    """One table's rows, columns in the order the table lists them (extra flags last)."""
    check_choice("table", name, names())
    t = _read()[name]
    df = pd.DataFrame(copy.deepcopy(t["rows"]), columns=None if t["rows"] else t["columns"])
    extra = [c for c in df.columns if c not in t["columns"]]  # e.g. paper_inconsistent
    return df.reindex(columns=t["columns"] + extra)


def _value(r: dict) -> str:
    if "value" in r:
        return f"{r['value']:g}"
    if "upper" in r:
        return f"< {r['upper']:g}"
    return f"{r['low']:g}–{r['high']:g}"


def stated(fig: str):
    """What the paper's text states about one of its figures (plots print no numbers)."""
    rows = load()["figures"][fig]["stated"]
    return pd.DataFrame([{"the paper states": r["what"], "value": _value(r), "unit": r.get("unit", "")}
                         for r in rows])


def claim(cid: str) -> dict:
    found = [c for c in load()["claims"] if c["id"] == cid]
    if not found:
        raise CalibError(f"no published claim {cid!r}")
    return {**found[0], "text": _value(found[0])}
