"""The source registry (calib.sources): fixed world ids, per-source versions in job keys, and a
non-world source registered with one call."""
from __future__ import annotations

import dataclasses
import hashlib

import pytest

from calib import data, sources as registry
from calib.errors import CalibError
from calib.world import sources as world, tasks

# sha256 of documents 0-2 (seed 0, "calib") and 0-1 (seed 5, "eval") of each source, as written
# by the code before ids were fixed (de4ce79): every document stays byte-identical
GOLDEN = {"world/pretrain": "3dbf38998036bfc4", "world/web": "bcfcb5084b66f2c7",
          "world/encyclopedia": "c65cda3050b80684", "world/mixed": "d53297eeedc73a07",
          "world/instructions": "fef11ad35d852084"}


def _digest(name: str) -> str:
    docs = world.documents(name, 3, seed=0) + world.documents(name, 2, seed=5, split="eval")
    return hashlib.sha256("\x00".join(docs).encode()).hexdigest()[:16]


def _reregister(monkeypatch, records):
    """Lay ``records`` out as the world's source list and register them, as at import."""
    monkeypatch.setattr(world, "SOURCES", {s.name: s for s in records})
    for name in list(registry.REGISTRY):
        if registry.REGISTRY[name].kind == "world":
            monkeypatch.delitem(registry.REGISTRY, name)
    world._register()
    data._pool.cache_clear()


@pytest.fixture
def restore_registry():
    saved = dict(registry.REGISTRY)
    yield
    registry.REGISTRY.clear()
    registry.REGISTRY.update(saved)
    data._pool.cache_clear()


def test_documents_are_unchanged():
    assert {n: _digest(n) for n in GOLDEN} == GOLDEN


def test_inserting_a_source_in_the_middle_changes_no_other_documents(monkeypatch, restore_registry):
    recs = list(world.SOURCES.values())
    new = world.Source("world/stories", 16, "c4", (("stories", 1.0),), "stories alone", "document")
    _reregister(monkeypatch, recs[:1] + [new] + recs[1:])
    assert {n: _digest(n) for n in GOLDEN} == GOLDEN
    assert "world/stories" in data.source_names() and data.load_texts("world/stories", pool=2)
    clash = world.Source("world/clash", 12, "c4", (("web", 1.0),), "reuses web's id", "document")
    with pytest.raises(AssertionError, match="distinct"):
        _reregister(monkeypatch, recs + [clash])


def _job(source, **kw):
    from calib.experiments import Job
    return Job(model="world", method="wanda", sparsity=0.5,
               calibration={"source": source, "nsamples": 4, "seqlen": 32, "seed": 0},
               suite={"name": "world", "limit": 4}, **kw)


def test_editing_one_source_changes_only_its_jobs_keys(monkeypatch, restore_registry):
    names = ["world/web", "world/pretrain", "world/mixed", "c4"]
    before = {n: _job(n).key for n in names}
    syn_before = _job("world/mixed", synthetic={"n_docs": 4, "max_new_tokens": 8}).key
    version_before = tasks.version()
    recs = {s.name: s for s in world.SOURCES.values()}
    recs["world/web"] = dataclasses.replace(recs["world/web"], mixture=(("web", 0.9), ("news", 0.1)))
    _reregister(monkeypatch, recs.values())
    after = {n: _job(n).key for n in names}
    assert after["world/web"] != before["world/web"]
    assert {n: after[n] for n in names[1:]} == {n: before[n] for n in names[1:]}
    assert _job("world/mixed", synthetic={"n_docs": 4, "max_new_tokens": 8}).key == syn_before
    assert tasks.version() == version_before  # the suite's texts do not draw on world/web
    # the held-out texts do draw on world/pretrain: its edit re-runs every world-suite job
    recs["world/pretrain"] = dataclasses.replace(recs["world/pretrain"], description="edited", id=11)
    _reregister(monkeypatch, recs.values())
    assert tasks.version() == version_before  # a description shapes no document
    recs["world/pretrain"] = dataclasses.replace(recs["world/pretrain"], mixture=(("web", 1.0),))
    _reregister(monkeypatch, recs.values())
    assert tasks.version() != version_before and _job("world/mixed").key != before["world/mixed"]


def test_a_non_world_source_registers_with_one_call(restore_registry):
    from calib.book.figures import source_colour
    from calib.book.profiles import label, role
    texts = [f"toy document {i} " * 20 for i in range(6)]
    registry.register(registry.Source("real/toy", "wikipedia", "concat", "toy", "real",
                                      texts=lambda n: texts[:n], version="v1"))
    assert data.load_texts("real/toy", pool=4) == texts[:4]
    assert data.default_mode("real/toy") == "concat" and "real/toy" in data.source_names()
    assert (role("real/toy"), label("real/toy"), source_colour("real/toy")) == \
        ("wikipedia", "toy (Wikipedia)", registry.ROLE_COLOURS["wikipedia"])
    key = _job("real/toy").key
    registry.unregister("real/toy")
    registry.register(registry.Source("real/toy", "wikipedia", "concat", "toy", "real",
                                      texts=lambda n: texts[1:n + 1], version="v2"))
    assert _job("real/toy").key != key


def test_bad_records_are_one_line_errors(restore_registry):
    with pytest.raises(CalibError, match="unknown role 'books'.*valid: c4"):
        registry.Source("real/x", "books", "concat", "x", "real")
    with pytest.raises(CalibError, match="unknown sampling 'lines'"):
        registry.Source("real/x", "c4", "lines", "x", "real")
    registry.register(registry.Source("real/x", "c4", "concat", "x", "real", version="1"))
    with pytest.raises(CalibError, match="registered twice"):
        registry.register(registry.Source("real/x", "c4", "concat", "x", "real", version="2"))
