"""Calibration sampling: sources, both modes' semantics, determinism, hashes, bad input, CLI."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from calib import data
from calib.errors import CalibError
from factory import save, tiny_world_model, world_tokenizer

torch.set_num_threads(1)

WORDS = "the river flows past a quiet town where bakers sell warm bread every morning".split()


def _docs(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, n)) for n in lengths]


def _jsonl(path, texts, **extra):
    with open(path, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t, **extra}) + "\n")
    return str(path)


def _contains(seq, row):
    n = len(row)
    return any(seq[i:i + n] == row for i in range(len(seq) - n + 1))


@pytest.fixture(scope="module")
def tok():
    return world_tokenizer(400)


def test_document_mode_windows_lie_inside_one_long_document(tmp_path, tok):
    docs = _docs([5, 8, 200, 12, 150, 3, 300])
    src = _jsonl(tmp_path / "d.jsonl", docs)
    toks = [tok(d)["input_ids"] for d in docs]
    seqlen = 64
    cs = data.sample(src, tok, 200, seqlen, seed=3, mode="document")
    assert cs.input_ids.shape == (200, seqlen) and cs.input_ids.dtype == torch.long
    long_docs = [i for i, t in enumerate(toks) if len(t) >= seqlen]
    assert len(long_docs) == 3
    starts = []
    for row, w in zip(cs.input_ids.tolist(), cs.meta["windows"]):
        assert w["doc"] in long_docs                    # short documents are rejected
        assert toks[w["doc"]][w["start"]:w["start"] + seqlen] == row
        starts.append(w["start"] / (len(toks[w["doc"]]) - seqlen))
    assert {w["doc"] for w in cs.meta["windows"]} == set(long_docs)
    assert min(starts) < 0.1 and max(starts) > 0.9    # starts spread over each document


def test_concat_mode_windows_cross_document_boundaries(tmp_path, tok):
    docs = _docs([10] * 40, seed=1)
    src = _jsonl(tmp_path / "c.jsonl", docs)
    per_doc = [tok(d)["input_ids"] for d in docs]
    longest = max(map(len, per_doc))
    seqlen = longest + 5                                # every document shorter than seqlen
    with pytest.raises(CalibError, match=rf"longest of 40 has {longest} tokens"):
        data.sample(src, tok, 4, seqlen, mode="document")
    cs = data.sample(src, tok, 50, seqlen, seed=0, mode="concat")
    stream = tok(" ".join(docs))["input_ids"]
    rows = cs.input_ids.tolist()
    assert all(_contains(stream, r) for r in rows)
    assert not any(_contains(t, r) for t in per_doc for r in rows)   # no window fits in one doc
    assert all(w["docs"][1] > w["docs"][0] for w in cs.meta["windows"])
    with pytest.raises(CalibError, match="fewer than seqlen"):
        data.sample(src, tok, 4, len(stream) + 1, mode="concat")


def test_determinism_and_hash(tok):
    a = data.sample("world/encyclopedia", tok, 6, 48, seed=5, pool=60)
    b = data.sample("world/encyclopedia", tok, 6, 48, seed=5, pool=60)
    c = data.sample("world/encyclopedia", tok, 6, 48, seed=6, pool=60)
    assert torch.equal(a.input_ids, b.input_ids) and a.hash == b.hash
    assert a.hash != c.hash
    expect = hashlib.sha256(np.ascontiguousarray(a.input_ids.numpy(), dtype=np.int32).tobytes()).hexdigest()
    assert data.calibration_hash(a.input_ids) == expect == a.meta["hash"]
    assert data.calibration_hash(a.input_ids.T) == \
        hashlib.sha256(np.ascontiguousarray(a.input_ids.T.numpy(), dtype=np.int32).tobytes()).hexdigest()
    t = data.calibration_tensor("world/encyclopedia", tok, 6, 48, seed=5)
    assert t.shape == (6, 48) and t.dtype == torch.long


def test_default_modes_follow_the_paper(tmp_path):
    assert data.default_mode("world/web") == "document"          # C4 role
    assert data.default_mode("world/encyclopedia") == "concat"   # Wikipedia role
    assert [data.default_mode(s) for s in ("c4", "slimpajama", "dclm", "wikipedia")] == \
        ["document", "document", "document", "concat"]
    syn = _jsonl(tmp_path / "s.jsonl", ["a b c"], generator="calib.synth", index=0)
    plain = _jsonl(tmp_path / "p.jsonl", ["a b c"])
    assert data.default_mode(syn) == "concat" and data.default_mode(plain) == "document"


def test_local_files_load_through_datasets(tmp_path):
    import pandas as pd
    texts = _docs([6, 9, 4], seed=2)
    pd.DataFrame({"body": texts, "n": [1, 2, 3]}).to_parquet(tmp_path / "x.parquet")
    assert data.load_texts(str(tmp_path / "x.parquet"), text_field="body") == texts
    with pytest.raises(CalibError, match="no text field 'text'.*body"):
        data.load_texts(str(tmp_path / "x.parquet"))
    (tmp_path / "x.json").write_text(json.dumps([{"text": t} for t in texts]))
    assert data.load_texts(str(tmp_path / "x.json")) == texts
    (tmp_path / "x.txt").write_text("\n\n".join(texts) + "\n")
    assert [t.strip() for t in data.load_texts(str(tmp_path / "x.txt"))] == texts
    assert data.load_texts(_jsonl(tmp_path / "x.jsonl", texts), pool=2) == texts[:2]


def test_hub_sources_stream_through_the_same_path(tmp_path, monkeypatch, tok):
    """No network here: stand in a local jsonl for the hub and check the call the hub would get."""
    import datasets
    local = _jsonl(tmp_path / "hub.jsonl", _docs([120] * 10, seed=4))
    calls = []
    real = datasets.load_dataset

    def fake(**kw):
        calls.append(kw)
        return real(path="json", data_files=local, split="train", streaming=kw["streaming"])
    monkeypatch.setattr(datasets, "load_dataset", fake)
    cs = data.sample("c4", tok, 3, 32, pool=7)
    assert calls[0]["path"] == "allenai/c4" and calls[0]["name"] == "en" and calls[0]["streaming"]
    assert cs.meta["mode"] == "document" and cs.meta["pool"] == 7


def test_bad_input_messages(tmp_path, tok):
    with pytest.raises(CalibError, match="unknown source 'nope'.*world/web.*c4.*alpaca"):
        data.sample("nope", tok, 1, 8)
    with pytest.raises(CalibError, match="empty"):
        data.sample(_jsonl(tmp_path / "e.jsonl", ["", "  "]), tok, 1, 8)
    with pytest.raises(CalibError, match="sampling mode 'window'.*document, concat"):
        data.sample("world/web", tok, 1, 8, mode="window", pool=5)
    with pytest.raises(CalibError, match="nsamples"):
        data.sample("world/web", tok, 0, 8, pool=5)
    (tmp_path / "x.csv").write_text("text\nabc\n")
    with pytest.raises(CalibError, match="local file type '.csv'"):
        data.sample(str(tmp_path / "x.csv"), tok, 1, 8)


def test_cli_sample(tmp_path, capsys):
    from calib.cli import main
    model = save(tiny_world_model(400, 256), world_tokenizer(400), tmp_path / "m")
    out = tmp_path / "cal.pt"
    assert main(["sample", "world/web", "--model", model, "--nsamples", "4", "--seqlen", "32",
                 "--pool", "50", "--out", str(out)]) == 0
    saved = torch.load(out)
    assert saved["input_ids"].shape == (4, 32) and saved["meta"]["mode"] == "document"
    assert data.calibration_hash(saved["input_ids"]) in capsys.readouterr().out
    assert main(["sample", "nowhere", "--model", model]) == 2
    assert "unknown source 'nowhere'" in capsys.readouterr().err
    for cmd in ("sample", "generate", "filter", "similarity"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
    assert "paper" in capsys.readouterr().out


HEAVY = ("torch", "numpy", "transformers", "datasets", "lm_eval", "pandas", "scipy", "ray")


@pytest.mark.parametrize("cmd", ["", "world", "sample", "generate", "filter", "similarity", "prune",
                                 "evaluate", "run", "results"])
def test_help_loads_no_heavy_library(cmd):
    """`calib [COMMAND] --help` answers before torch or numpy loads (start-up is the README's figure)."""
    code = ("import sys\nfrom calib.cli import main\n"
            f"try:\n    main({[*cmd.split(), '--help']!r})\nexcept SystemExit as e:\n    assert e.code == 0\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", f"calib {cmd} --help loaded {out.strip().splitlines()[-1]}"
