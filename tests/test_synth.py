"""Self-generation: prompts, logit processing, batching, determinism, resume after a kill."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from calib import data, synth
from calib.errors import CalibError
from calib.world.sources import documents
from factory import save, tiny_world_model, world_tokenizer

torch.set_num_threads(1)
DOCS = documents("world/web", 14)
FAST = dict(max_new_tokens=24, batch_size=4, progress=False)


@pytest.fixture(scope="module")
def mt():
    return tiny_world_model(400, 256), world_tokenizer(400)


def test_prompts_count_bos_apart(mt):
    _, tok = mt
    bos = tok.bos_token_id
    p0 = synth.build_prompts(tok, DOCS[:3], 0)
    assert [p for _, p in p0] == [[bos]] * 3                      # t = 0: BOS only
    p2 = synth.build_prompts(tok, DOCS[:3], 2)
    for (i, p), d in zip(p2, DOCS):
        assert p[0] == bos and len(p) == 3
        assert d.startswith(tok.decode(p, skip_special_tokens=True))
    with pytest.raises(CalibError, match=r"2 of 3 documents are shorter than the prefix of 5 tokens"):
        synth.build_prompts(tok, ["ab", DOCS[0], "c"], 5)
    assert [i for i, _ in synth.build_prompts(tok, ["ab", DOCS[0], "c"], 5, skip_short=True)] == [1]
    for bad in (-1, 1025, 2.5):
        with pytest.raises(CalibError, match=r"prefix length must be an integer in \[0, 1024\]"):
            synth.build_prompts(tok, DOCS[:1], bad)
    with pytest.raises(CalibError, match="empty"):
        synth.build_prompts(tok, [], 2)


def test_missing_pad_token_falls_back_to_eos_with_a_warning(mt, caplog):
    _, tok = mt
    assert tok.pad_token_id is None
    with caplog.at_level(logging.WARNING, logger="calib.synth"):
        assert synth.pad_token(tok) == tok.eos_token_id
    assert "no pad token; padding with EOS" in caplog.text


@pytest.mark.parametrize("top_k,top_p,lo,hi", [(50, 0.95, 10, 49), (0, 0.9, 60, 299), (50, 1.0, 50, 50)])
def test_logit_processing_matches_hf_processors(top_k, top_p, lo, hi):
    from transformers.generation.logits_process import (RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                                                        TopKLogitsWarper, TopPLogitsWarper)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 300, generator=g) * 0.8
    ids = torch.randint(0, 300, (6, 12), generator=g)
    seen = torch.zeros(6, 300, dtype=torch.bool).scatter_(1, ids, True)
    ref = logits.clone()
    procs = [RepetitionPenaltyLogitsProcessor(1.2), TemperatureLogitsWarper(0.6)]
    procs += [TopKLogitsWarper(top_k)] if top_k else []
    procs += [TopPLogitsWarper(top_p)] if top_p < 1 else []
    for proc in procs:
        ref = proc(ids, ref)
    ours = synth.process_logits(logits, seen, top_k=top_k, top_p=top_p, temperature=0.6, repetition_penalty=1.2)
    kept = ~torch.isinf(ours)
    assert torch.equal(kept, ~torch.isinf(ref))
    assert lo <= kept.sum(-1).min() and kept.sum(-1).max() <= hi    # the cuts really bite
    torch.testing.assert_close(ours.softmax(-1), ref.softmax(-1))


def test_row_sampler_is_seeded_and_unbiased():
    p = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = p.log().expand(4000, 4)
    gens = [torch.Generator().manual_seed(synth.row_seed(0, i)) for i in range(4000)]
    draws = synth.sample_rows(logits, gens)
    freq = torch.bincount(draws, minlength=4).float() / 4000
    assert (freq - p).abs().max() < 0.03                          # 4 sigma is ~0.031 at worst
    again = synth.sample_rows(logits[:5], [torch.Generator().manual_seed(synth.row_seed(0, i)) for i in range(5)])
    assert torch.equal(again, draws[:5])


def test_left_padded_batch_equals_one_at_a_time(mt):
    model, tok = mt
    base = synth.build_prompts(tok, DOCS[:8], 12)
    prompts = [p[:1 + (i * 5) % 13] for i, (_, p) in enumerate(base)]   # lengths 1..13, mixed
    assert len({len(p) for p in prompts}) > 4

    def gens():
        return [torch.Generator().manual_seed(synth.row_seed(7, i)) for i in range(len(prompts))]
    eos = tok.eos_token_id
    batched = synth.generate_batch(model, prompts, gens(), 20, eos, eos)
    g = gens()
    single = [synth.generate_batch(model, [p], [g[i]], 20, eos, eos)[0] for i, p in enumerate(prompts)]
    assert batched == single


def _texts(rows):
    return {r["index"]: r["text"] for r in rows}


def test_same_seed_same_texts_and_batch_size_does_not_matter(mt, tmp_path):
    model, tok = mt
    a = synth.generate(model, tok, DOCS, tmp_path / "a.jsonl", seed=1, **FAST)
    b = synth.generate(model, tok, DOCS, tmp_path / "b.jsonl", seed=1, **{**FAST, "batch_size": 5})
    c = synth.generate(model, tok, DOCS, tmp_path / "c.jsonl", seed=2, **FAST)
    assert len(a) == len(DOCS) and sorted(r["index"] for r in a) == list(range(len(DOCS)))
    assert _texts(a) == _texts(b) and _texts(a) != _texts(c)
    assert all(r["text"].startswith(r["prefix"]) and DOCS[r["index"]].startswith(r["prefix"]) for r in a)
    assert all(r["new_tokens"] <= 24 and r["stop"] in ("eos", "length") for r in a)
    # the output is a synthetic source sampled by concatenation, as in the paper
    assert data.default_mode(str(tmp_path / "a.jsonl")) == "concat"
    with pytest.raises(CalibError, match="other settings.*seed"):
        synth.generate(model, tok, DOCS, tmp_path / "a.jsonl", seed=3, **FAST)


def test_resume_after_an_exception_mid_write(mt, tmp_path, monkeypatch):
    model, tok = mt
    full = synth.generate(model, tok, DOCS, tmp_path / "full.jsonl", seed=4, **FAST)
    real, calls = synth._append, []

    def dying(f, rows):  # second batch: two rows, then a torn line, then death
        calls.append(len(rows))
        if len(calls) == 2:
            real(f, rows[:2])
            f.write(json.dumps(rows[2])[:15])
            f.flush()
            raise KeyboardInterrupt
        real(f, rows)
    monkeypatch.setattr(synth, "_append", dying)
    out = tmp_path / "part.jsonl"
    with pytest.raises(KeyboardInterrupt):
        synth.generate(model, tok, DOCS, out, seed=4, **FAST)
    assert len(synth.read_rows(out)) == 6
    monkeypatch.setattr(synth, "_append", real)
    resumed = synth.generate(model, tok, DOCS, out, seed=4, **FAST)
    assert resumed == full                                      # same rows, same order, nothing twice
    assert len(out.read_text().splitlines()) == len(DOCS)


CHILD = """
import sys, torch
torch.set_num_threads(1)
from calib import synth
from calib.models import load
from calib.world.sources import documents
model, tok = load(sys.argv[1])
synth.generate(model, tok, documents("world/web", 14), sys.argv[2], seed=4, max_new_tokens=24, batch_size=4,
               progress=False)
"""


def test_resume_after_sigkill(mt, tmp_path):
    model_dir = save(tiny_world_model(400, 256), world_tokenizer(400), tmp_path / "m")
    from calib.models import load
    model, tok = load(model_dir)
    full = synth.generate(model, tok, DOCS, tmp_path / "full.jsonl", seed=4, **FAST)
    out = tmp_path / "killed.jsonl"
    # slow the child's writes so that the kill lands mid-run
    child = CHILD.replace("synth.generate(", "import time; _a = synth._append\n"
                          "synth._append = lambda f, r: (_a(f, r), time.sleep(0.5))\nsynth.generate(", 1)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", child, model_dir, str(out)], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or len(out.read_bytes().splitlines()) < 4):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n = len(synth.read_rows(out))
    assert 4 <= n < len(DOCS)
    assert synth.generate(model, tok, DOCS, out, seed=4, **FAST) == full


def test_generation_is_cut_to_the_model_positions(mt, tmp_path, caplog):
    model, tok = mt
    with caplog.at_level(logging.WARNING, logger="calib.synth"):
        rows = synth.generate(model, tok, DOCS[:2], tmp_path / "x.jsonl", max_new_tokens=5000, progress=False,
                              sampling={"repetition_penalty": 1.0, "temperature": 5.0})
    assert "max_new_tokens 5000 cut to 253" in caplog.text
    assert max(r["new_tokens"] for r in rows) <= 253
