"""calib.published: the paper's printed numbers load, and agree with themselves.

The arithmetic checks catch transcription slips. Tolerances come from the rounding:
each task cell is printed to 0.01, so the mean of seven printed cells lies within 0.005
of the true mean, and the printed avg within another 0.005 of it: |mean - avg| <= 0.01.
The paper's deltas turn out to be exact differences of its printed averages, so they
are held to half a unit of the last digit.
"""
from __future__ import annotations

import math

import pandas as pd
import pytest

from calib.book import published
from calib.errors import CalibError

TASKS = ["boolq", "winogrande", "piqa", "hellaswag", "arc_easy", "arc_challenge", "mmlu"]
SOURCES = {"c4", "wikipedia", "slimpajama", "dclm"}
METHODS = {"magnitude", "wanda", "sparsegpt", "dsnot", "owl"}
AVG_TOL = 0.01 + 1e-9
DELTA_TOL = 0.005 + 1e-9


def task_tables():
    return [n for n in published.names() if "avg" in published.load()[n]["columns"]]


def test_every_table_loads():
    names = published.names()
    assert names == [f"table{i}" for i in range(1, 8)]
    for name in names:
        df = published.table(name)
        assert isinstance(df, pd.DataFrame)
        assert list(df.columns)[: len(published.load()[name]["columns"])] == published.load()[name]["columns"]
    # tables 3 and 4 have no cells in the source text; every other table has rows
    assert [n for n in names if published.table(n).empty] == ["table3", "table4"]
    assert {"figures", "claims", "setup"} <= set(published.load())


def test_keys_and_types():
    for name in published.names():
        for row in published.load()[name]["rows"]:
            assert row["method"] is None or row["method"] in METHODS, (name, row)
            assert row["source"] is None or row["source"] in SOURCES, (name, row)
            for key, value in row.items():
                if key not in ("method", "source", "synthetic", "paper_inconsistent") and value is not None:
                    assert isinstance(value, float) and 0 < abs(value) < 100, (name, key, value)


def test_table1_is_three_methods_by_four_sources():
    df = published.table("table1")
    assert len(df) == 12
    assert set(df.method) == {"wanda", "dsnot", "owl"} and set(df.source) == SOURCES
    assert not df.duplicated(["method", "source"]).any()
    best = df.loc[df.groupby("method")["mean"].idxmax(), "source"]
    assert set(best) == {"dclm"}  # Sec 3.4: DCLM is the best source for every method
    assert df["std"].between(0.1, 0.3).all()


@pytest.mark.parametrize("name", ["table2", "table5", "table6", "table7"])
def test_avg_is_mean_of_the_seven_tasks(name):
    assert name in task_tables()
    df = published.table(name)
    flagged = df.get("paper_inconsistent", pd.Series(False, index=df.index)).fillna(False).astype(bool)
    for _, row in df[~flagged].iterrows():
        mean = sum(row[t] for t in TASKS) / 7
        assert abs(mean - row["avg"]) <= AVG_TOL, (name, row["method"], row["source"], row["synthetic"], mean)


@pytest.mark.parametrize("name", ["table2", "table5"])
def test_delta_is_synthetic_minus_original(name):
    df = published.table(name)
    assert len(df) == 24
    assert df.synthetic.sum() == 12
    for _, syn in df[df.synthetic].iterrows():
        orig = df[(df.method == syn.method) & (df.source == syn.source) & ~df.synthetic]
        assert len(orig) == 1
        assert math.isclose(syn["avg"] - orig["avg"].item(), syn["delta"], abs_tol=DELTA_TOL), (name, syn.method, syn.source)
    assert df.loc[~df.synthetic, "delta"].isna().all()


@pytest.mark.parametrize("name,methods", [("table6", ["wanda", "dsnot", "owl"]), ("table7", [None])])
def test_pooled_syn_tables_have_one_syn_row_per_method(name, methods):
    df = published.table(name)
    syn = df[df.synthetic]
    assert len(syn) == len(methods) and syn.source.isna().all()
    assert len(df) == 5 * len(methods)


def test_abstract_max_gain_is_the_largest_printed_delta():
    claims = {c["id"]: c for c in published.load()["claims"]}
    assert published.table("table2")["delta"].max() == claims["abstract_max_gain"]["value"]


def test_unknown_table_names_the_choices():
    with pytest.raises(CalibError, match="table8.*table1, table2, table3, table4, table5, table6, table7"):
        published.table("table8")
    with pytest.raises(CalibError):
        published.table("figures")


def test_load_returns_a_copy():
    published.load()["table1"]["rows"].clear()
    assert len(published.load()["table1"]["rows"]) == 12
