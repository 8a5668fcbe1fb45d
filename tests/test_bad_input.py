"""Every bad input, through the real command line, is one line and exit code 2.

Each case runs ``calib.cli.main([...])`` (a few run in subprocesses, as a user
would), and asserts: the exit code is 2; there is no traceback; stderr is exactly
one line, ``calib CMD: error: ...`` (no usage block, no progress bar before it), and
it names the bad value; and nothing was left behind -- the work folder, which holds
every input and every output path the cases name, is exactly as it was (no output
file or folder, no store, no changed input).

Fixtures reach the code they test: the broken models carry a good tokenizer (so the
error is about their weights or config, not "no tokenizer"), and cases that must fail
before the weights load use the truncated-weights model (``m_trunc``) or omit
``--no-progress``, so a load first would show (a different error, or a progress bar).

The classes: numeric ranges and types, unknown names (sources, methods, modes,
devices, tasks, profiles), malformed files (jsonl lines, YAML, configs, weights,
tokenizers, SQLite), unusable output paths, settings that cannot sample, broken
models (NaN weights), and every grid field.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from factory import save, tiny_world_model

CTX = 128  # the tiny model's positions

PRUNE = "--nsamples 2 --seqlen 16 --no-progress --out {W}/pruned"
GEN = "--out {W}/gen.jsonl --ndocs 2 --max-new-tokens 4 --model {M}"
EVAL = "--suite ppl --ppl 2 --heldout 0"
BIG = 10 ** 12  # windows no machine holds


def _copy_model(src: Path, dst: Path, edit=None, drop=()):
    shutil.copytree(src, dst)
    for name in drop:
        for f in dst.glob(name):
            f.unlink()
    if edit:
        edit(dst)
    return dst


def _config(change):
    def edit(d):
        cfg = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps(change(cfg)))
    return edit


@pytest.fixture(scope="module")
def work(tiny_tokenizer, tmp_path_factory):
    """The work folder: models (good, NaN, corrupt in eight ways), data files, a regular
    file to put paths under, stores (calib, foreign SQLite, not SQLite), grids."""
    import torch
    W = tmp_path_factory.mktemp("work")
    old_cache = os.environ.get("CALIB_CACHE")
    os.environ["CALIB_CACHE"] = str(tmp_path_factory.mktemp("cache"))  # caches may be written; outputs may not
    model = tiny_world_model(600, CTX)
    M = Path(save(model, tiny_tokenizer, W / "model"))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    save(model, tiny_tokenizer, W / "nan")

    def truncate(d):
        f = d / "model.safetensors"
        f.write_bytes(f.read_bytes()[:1000])

    _copy_model(M, W / "m_trunc", truncate)
    _copy_model(M, W / "m_noweights", drop=["*.safetensors"])
    _copy_model(M, W / "m_cfgjson", lambda d: (d / "config.json").write_text("{not json"))
    _copy_model(M, W / "m_cfglist", lambda d: (d / "config.json").write_text("[1, 2]"))
    _copy_model(M, W / "m_notype", _config(lambda c: {k: v for k, v in c.items() if k != "model_type"}))
    _copy_model(M, W / "m_t5", _config(lambda c: {**c, "model_type": "t5"}))
    _copy_model(M, W / "m_bert", _config(lambda c: {**c, "model_type": "bert", "architectures": ["BertModel"]}))
    _copy_model(M, W / "m_notok", drop=["tokenizer*"])
    _copy_model(M, W / "m_badtok", lambda d: (d / "tokenizer.json").write_text("{truncated"))

    (W / "afile").write_text("a regular file\n")
    (W / "adir").mkdir()
    (W / "adir" / "keep").write_text("x")  # a non-empty folder
    (W / "meta.pt.json").mkdir()  # where `calib sample --out meta.pt` writes its meta
    (W / "readonly").mkdir(mode=0o555)  # read-only, except to root (see test_read_only_output)
    words = " ".join(f"word{i}" for i in range(60))
    (W / "good.jsonl").write_text("".join(json.dumps({"text": f"{words} {i}"}) + "\n" for i in range(4)))
    (W / "bad.jsonl").write_text(json.dumps({"text": words}) + "\n{bad json\n")
    (W / "body.jsonl").write_text("".join(json.dumps({"body": f"{words} {i}"}) + "\n" for i in range(3)))
    (W / "numbers.jsonl").write_text(json.dumps({"text": 5}) + "\n")
    (W / "empty.jsonl").write_text("")
    (W / "short.jsonl").write_text(json.dumps({"text": "two words"}) + "\n")
    (W / "data.csv").write_text("text\nhello\n")
    (W / "notsqlite.db").write_text("this is not a database\n")
    with sqlite3.connect(W / "foreign.db") as c:
        c.execute("CREATE TABLE people (name TEXT)")
        c.execute("INSERT INTO people VALUES ('ada')")
    c.close()
    # an interrupted generation with other settings: must not be resumed, nor touched
    (W / "other.jsonl").write_text(json.dumps({"generator": "calib.synth", "index": 0, "text": "x"}) + "\n")
    (W / "other.jsonl.meta.json").write_text(json.dumps({"seed": 99}))

    from calib.experiments import Store
    with Store(W / "calib.db") as s:
        s.put({"key": "k1", "status": "done", "params": {"method": "wanda", "calibration": {"seed": 0}},
               "metrics": {"alpaca_ppl": 10.0}})
        s.put({"key": "k2", "status": "failed", "params": {"method": "wanda", "calibration": {"seed": 1}},
               "error": "Traceback ...\ncalib.errors.CalibError: pattern 2:3: width 32 is not divisible by M=3"})

    g = W / "grids"
    g.mkdir()
    for name, body in GRIDS.items():
        body = body.replace("{W}", str(W))
        (g / f"{name}.yaml").write_text(body if name in RAW_GRIDS else f"model: {M}\n{body}\n")
    yield W, M
    if old_cache is None:
        os.environ.pop("CALIB_CACHE")
    else:
        os.environ["CALIB_CACHE"] = old_cache


def snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        for name in dirnames + files:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


def _check(rc, err, expect, where):
    assert rc == 2, (where, rc, err[-2000:])
    assert "Traceback" not in err, (where, err[-3000:])
    # the line that says which model, source and dtype a command chose (calib.cli.chosen) is not an error
    lines = [line for line in err.splitlines() if line.strip() and not re.match(r"calib [a-z]+: model \S", line)]
    assert len(lines) == 1 and ": error: " in lines[0], (where, err[-2000:])
    for s in expect:
        assert s in lines[0], (where, s, lines[0])


def _diff(before, after):
    return {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}


# ------------------------------------------------------------------------------- cases
# (argv with {W} the work folder and {M} the good model, substrings the error line must hold)
CASES = [
    # sample
    ("sample world/pretrain --model {M} --nsamples 0", ["nsamples", "0"]),
    ("sample world/pretrain --model {M} --nsamples -3", ["-3"]),
    ("sample world/pretrain --model {M} --seqlen 0", ["seqlen", "0"]),
    ("sample world/pretrain --model {M} --seqlen 200", ["200", f"{CTX} tokens"]),
    ("sample world/pretrain --model {M} --pool 0", ["pool", "0"]),
    ("sample world/pretrain --model {M} --seed -1", ["seed", "-1"]),
    ("sample world/nosuch --model {M}", ["'world/nosuch'", "world/pretrain"]),
    ("sample {W}/data.csv --model {M}", ["'.csv'", ".jsonl"]),
    ("sample {W}/bad.jsonl --model {M} --seqlen 8", ["bad.jsonl:2", "not valid JSON"]),
    ("sample {W}/body.jsonl --model {M} --text-field nosuch", ["body.jsonl:1", "'nosuch'", "body"]),
    ("sample {W}/body.jsonl --model {M}", ["'text'", "body"]),
    ("sample {W}/numbers.jsonl --model {M}", ["numbers.jsonl:1", "int"]),
    ("sample {W}/empty.jsonl --model {M}", ["empty.jsonl", "empty"]),
    ("sample world/pretrain --model {M} --text-field ''", ["text field", "''"]),
    ("sample world/pretrain --model {W}/nosuch", ["nosuch", "config.json"]),
    ("sample world/pretrain --model {W}/m_cfgjson", ["m_cfgjson/config.json", "not valid JSON"]),
    ("sample world/pretrain --model {W}/m_cfglist", ["m_cfglist/config.json", "list"]),
    ("sample world/pretrain --model {W}/m_notype", ["m_notype", "model_type"]),
    ("sample world/pretrain --model {W}/m_t5", ["'t5'", "not a causal language model"]),
    ("sample world/pretrain --model {W}/m_notok", ["m_notok", "tokenizer"]),
    ("sample world/pretrain --model {W}/m_badtok", ["m_badtok", "tokenizer"]),
    ("sample world/pretrain --model {M} --seqlen 8 --nsamples 2 --out {W}/afile/x.pt", ["afile", "is a file"]),
    ("sample world/pretrain --model {M} --seqlen 8 --nsamples 2 --out {W}/adir", ["adir", "folder"]),
    ("sample world/pretrain --model {M} --mode nosuch", ["'nosuch'", "document"]),
    ("sample world/pretrain --model {M} --nsamples abc", ["'abc'"]),
    # generate
    ("generate world/pretrain " + GEN + " --temperature 0", ["temperature 0", "> 0"]),
    ("generate world/pretrain " + GEN + " --temperature -1", ["temperature -1"]),
    ("generate world/pretrain " + GEN + " --temperature nan", ["temperature nan"]),
    ("generate world/pretrain " + GEN + " --top-p 1.5", ["top_p 1.5", "(0, 1]"]),
    ("generate world/pretrain " + GEN + " --top-p 0", ["top_p 0"]),
    ("generate world/pretrain " + GEN + " --top-k 0", ["top_k 0", ">= 1"]),
    ("generate world/pretrain " + GEN + " --top-k -5", ["top_k -5"]),
    ("generate world/pretrain " + GEN + " --repetition-penalty 0", ["repetition_penalty 0", "> 0"]),
    ("generate world/pretrain " + GEN + " --repetition-penalty -1.2", ["repetition_penalty -1.2"]),
    ("generate world/pretrain " + GEN + " --ndocs 0", ["--ndocs", "0"]),
    ("generate world/pretrain " + GEN + " --prefix-len -1", ["prefix length", "-1"]),
    ("generate world/pretrain " + GEN + " --prefix-len 2000", ["2000", "1024"]),
    ("generate world/pretrain " + GEN + " --max-new-tokens 0", ["max_new_tokens", "0"]),
    ("generate world/pretrain " + GEN + " --batch-size 0", ["batch size", "0"]),
    ("generate world/pretrain " + GEN + " --seed -1", ["seed", "-1"]),
    ("generate world/pretrain " + GEN + " --device tpu9", ["'tpu9'", "cpu, cuda, cuda:N"]),
    ("generate world/pretrain " + GEN + " --device cuda:x", ["'cuda:x'", "cuda:N"]),
    ("generate world/nosuch " + GEN, ["'world/nosuch'"]),
    ("generate {W}/bad.jsonl " + GEN, ["bad.jsonl:2"]),
    ("generate {W}/body.jsonl " + GEN + " --text-field nosuch", ["'nosuch'"]),
    ("generate world/pretrain --out {W}/afile/g.jsonl --ndocs 2 --model {M}", ["afile", "is a file"]),
    ("generate world/pretrain --out {W}/adir --ndocs 2 --model {M}", ["adir", "folder"]),
    ("generate world/pretrain --out {W}/other.jsonl --ndocs 2 --max-new-tokens 4 --model {M} --no-progress",
     ["other.jsonl", "other settings"]),
    ("generate world/pretrain --out {W}/gen.jsonl --ndocs 2 --max-new-tokens 4 --model {W}/nan --no-progress",
     ["non-finite logits", "document 0"]),
    ("generate world/pretrain --out {W}/gen.jsonl --ndocs 2 --model {W}/m_trunc", ["m_trunc", "could not load"]),
    ("generate world/pretrain --out {W}/gen.jsonl --ndocs 2 --model {W}/m_noweights",
     ["m_noweights", "could not load the model", "no file named model.safetensors"]),
    ("generate world/pretrain --out {W}/gen.jsonl --ndocs 2 --model {W}/m_t5", ["'t5'"]),
    # filter
    ("filter {W}/nosuch.jsonl --out {W}/f.jsonl --model {M}", ["no file at", "nosuch.jsonl"]),
    ("filter {W}/bad.jsonl --out {W}/f.jsonl --model {M}", ["bad.jsonl:2"]),
    ("filter {W}/body.jsonl --out {W}/f.jsonl --model {M}", ["body.jsonl:1", "'text'", "body"]),
    ("filter {W}/good.jsonl --out {W}/f.jsonl --model {M} --text-field nosuch", ["'nosuch'"]),
    ("filter {W}/numbers.jsonl --out {W}/f.jsonl --model {M}", ["numbers.jsonl:1", "int"]),
    ("filter {W}/empty.jsonl --out {W}/f.jsonl --model {M}", ["empty.jsonl", "nothing to filter"]),
    ("filter {W}/good.jsonl --out {W}/f.jsonl --model {M} --k 0", ["k", "0"]),
    ("filter {W}/good.jsonl --out {W}/f.jsonl --model {M} --k 100", ["100"]),
    ("filter {W}/good.jsonl --out {W}/f.jsonl --model {M} --k -5", ["-5"]),
    ("filter {W}/good.jsonl --out {W}/f.jsonl --model {M} --batch-size 0", ["batch size", "0"]),
    ("filter {W}/good.jsonl --out {W}/afile/f.jsonl --model {M}", ["afile", "is a file"]),
    ("filter {W}/good.jsonl --out {W}/f.jsonl --model {M} --device tpu9", ["'tpu9'"]),
    ("filter {W}/good.jsonl --out {W}/f.jsonl --model {W}/m_cfglist", ["m_cfglist/config.json", "list"]),
    ("filter {W}/good.jsonl --out {W}/f.jsonl --model {W}/nosuch", ["nosuch", "config.json missing"]),
    # similarity
    ("similarity world/web world/pretrain --ndocs 0", ["--ndocs", "0"]),
    ("similarity world/web world/pretrain --ndocs 2 --n 0", ["n-gram", "0"]),
    ("similarity world/web world/pretrain --ndocs 2 --n -1", ["-1"]),
    ("similarity world/web world/pretrain --ndocs 2 --num-perm 0", ["num_perm", "0"]),
    ("similarity world/web world/pretrain --ndocs 2 --seed -1", ["seed", "-1"]),
    ("similarity world/web world/pretrain --ndocs 2 --lsh-threshold 0", ["LSH threshold", "0"]),
    ("similarity world/web world/pretrain --ndocs 2 --lsh-threshold 1.5", ["1.5"]),
    ("similarity world/web world/pretrain --ndocs 2 --mink 0 --model {M}", ["k", "0"]),
    ("similarity world/web world/pretrain --ndocs 2 --mink 101 --model {M}", ["101"]),
    ("similarity world/web world/pretrain --ndocs 2 --batch-size 0", ["batch size", "0"]),
    ("similarity world/nosuch world/pretrain --ndocs 2", ["'world/nosuch'"]),
    ("similarity world/web {W}/bad.jsonl --ndocs 2", ["bad.jsonl:2"]),
    ("similarity {W}/short.jsonl {W}/short.jsonl --n 5", ["5-gram"]),
    ("similarity world/web world/pretrain --ndocs 2 --out {W}/afile/s.json", ["afile", "is a file"]),
    ("similarity world/web world/pretrain --ndocs 2 --mink 50 --model {W}/m_cfglist", ["m_cfglist/config.json"]),
    # prune
    ("prune --model {M} --method nosuch " + PRUNE, ["'nosuch'", "magnitude, wanda"]),
    ("prune --model {M} --sparsity 1.0 " + PRUNE, ["sparsity 1.0", "[0, 1)"]),
    ("prune --model {M} --sparsity -0.1 " + PRUNE, ["-0.1"]),
    ("prune --model {M} --sparsity nan " + PRUNE, ["nan"]),
    ("prune --model {M} --pattern 4:2 " + PRUNE, ["'4:2'", "0 < N < M"]),
    ("prune --model {M} --pattern abc " + PRUNE, ["'abc'", "unstructured"]),
    ("prune --model {M} --pattern 2:4 --sparsity 0.3 " + PRUNE, ["0.3", "2:4"]),
    ("prune --model {M} --pattern 2:3 " + PRUNE, ["2:3", "M=3"]),
    ("prune --model {M} --method magnitude --pattern 2:3 " + PRUNE, ["M=3"]),
    ("prune --model {M} --nsamples 0 --seqlen 16 --out {W}/pruned", ["--nsamples 0"]),
    ("prune --model {M} --nsamples 2 --seqlen 0 --out {W}/pruned", ["--seqlen 0"]),
    ("prune --model {M} --nsamples 2 --seqlen 200 --out {W}/pruned", ["200", f"{CTX} tokens"]),
    ("prune --model {M} --batch-size 0 " + PRUNE, ["--batch-size 0"]),
    ("prune --model {M} --dtype float8 " + PRUNE, ["'float8'", "bfloat16"]),
    ("prune --model {M} --seed -1 " + PRUNE, ["--seed", "-1"]),
    ("prune --model {M} --device tpu9 " + PRUNE, ["'tpu9'", "cuda:N"]),
    ("prune --model {M} --calib world/nosuch " + PRUNE, ["'world/nosuch'"]),
    ("prune --model {M} --calib-mode nosuch " + PRUNE, ["'nosuch'", "concat"]),
    ("prune --model {M} --method magnitude --calib world/nosuch " + PRUNE, ["'world/nosuch'"]),
    ("prune --model {M} --calib {W}/bad.jsonl " + PRUNE, ["bad.jsonl:2"]),
    ("prune --model {M} --calib {W}/body.jsonl " + PRUNE, ["'text'", "body"]),
    ("prune --model {M} --nsamples 2 --seqlen 16 --out {W}/afile/p", ["afile", "is a file"]),
    ("prune --model {M} --nsamples 2 --seqlen 16 --out {W}/adir", ["adir", "not empty"]),
    ("prune --model {M} --nsamples 2 --seqlen 16 --out {W}/good.jsonl", ["good.jsonl", "not a folder"]),
    ("prune --model {W}/nosuch " + PRUNE, ["nosuch", "config.json"]),
    ("prune --model {W}/m_trunc " + PRUNE, ["m_trunc", "could not load"]),
    ("prune --model {W}/m_noweights " + PRUNE, ["m_noweights", "could not load the model"]),
    ("prune --model {W}/m_bert " + PRUNE, ["'bert'", "llama, mistral, qwen2, qwen3"]),
    ("prune --model {W}/m_cfgjson " + PRUNE, ["m_cfgjson/config.json", "not valid JSON"]),
    ("prune --model {W}/m_notype " + PRUNE, ["model_type"]),
    ("prune --model {W}/m_notok " + PRUNE, ["m_notok", "tokenizer"]),
    ("prune --model {W}/nan " + PRUNE, ["non-finite activations"]),
    ("prune --model {M} --method sparsegpt --blocksize 0 " + PRUNE, ["blocksize 0"]),
    ("prune --model {M} --method sparsegpt --percdamp 0 " + PRUNE, ["percdamp 0"]),
    ("prune --model {M} --method sparsegpt --percdamp nan " + PRUNE, ["percdamp", "nan"]),
    ("prune --model {M} --method dsnot --max-cycle-time -1 " + PRUNE, ["max_cycle_time -1"]),
    ("prune --model {M} --method dsnot --update-threshold -1 " + PRUNE, ["update_threshold -1"]),
    ("prune --model {M} --method dsnot --skip-layer nosuch " + PRUNE, ["'nosuch'", "self_attn"]),
    ("prune --model {M} --method dsnot --skip-sub-layer nosuch " + PRUNE, ["'nosuch'", "q_proj"]),
    ("prune --model {M} --method dsnot --dsnot-init nosuch " + PRUNE, ["'nosuch'", "sparsegpt"]),
    ("prune --model {M} --method dsnot --dsnot-walk nosuch " + PRUNE, ["'nosuch'", "guarded, original"]),
    ("prune --model {M} --method wanda --dsnot-walk original " + PRUNE, ["--dsnot-walk", "'wanda'"]),
    ("prune --model {M} --method owl --owl-base nosuch " + PRUNE, ["'nosuch'"]),
    ("prune --model {M} --method owl --owl-m 0 " + PRUNE, ["owl_m", "0"]),
    ("prune --model {M} --method owl --owl-lambda -1 " + PRUNE, ["-1"]),
    ("prune --model {M} --method wanda --blocksize 64 " + PRUNE, ["--blocksize", "'wanda'"]),
    # run
    ("run {W}/grids/nosuch.yaml --store {W}/g.db", ["nosuch.yaml"]),
    ("run {W}/grids/ok.yaml --store {W}/g.db --executor nosuch", ["'nosuch'", "local, ray"]),
    ("run {W}/grids/ok.yaml --store {W}/g.db --retries -1", ["-1"]),
    ("run {W}/grids/ok.yaml --store {W}/g.db --ray-num-cpus 0", ["--ray-num-cpus", "0"]),
    ("run {W}/grids/ok.yaml --store {W}/afile/g.db", ["afile", "is a file"]),
    ("run {W}/grids/ok.yaml --store {W}/adir", ["adir", "folder"]),
    ("run {W}/grids/ok.yaml --store {W}/notsqlite.db", ["notsqlite.db", "not a calib results store"]),
    ("run {W}/grids/ok.yaml --store {W}/foreign.db", ["foreign.db", "not a calib results store", "people"]),
    ("run {W}/grids/ok.yaml --store {W}/foreign.db --dry-run", ["foreign.db", "not a calib results store"]),
    # results
    ("results --store {W}/nosuch.db", ["nosuch.db"]),
    ("results --store {W}/foreign.db", ["foreign.db", "not a calib results store"]),
    ("results --store {W}/notsqlite.db", ["notsqlite.db", "not a calib results store"]),
    ("results --store {W}/afile", ["afile", "not a calib results store"]),
    ("results --store {W}/calib.db --status nosuch", ["'nosuch'", "done, failed, all"]),
    ("results --store {W}/calib.db --metrics nosuch", ["'nosuch'", "alpaca_ppl"]),
    ("results --store {W}/calib.db --over nosuch", ["'nosuch'"]),
    ("results --store {W}/calib.db --csv {W}/afile/r.csv", ["afile", "is a file"]),
    # world
    ("world show world/nosuch", ["'world/nosuch'", "world/pretrain"]),
    ("world show world/pretrain --split nosuch", ["'nosuch'", "train, calib, eval"]),
    ("world show world/pretrain -n -1", ["-1"]),
    ("world show world/pretrain --seed -1", ["seed", "-1"]),
    ("world build --arch nosuch", ["'nosuch'", "llama, qwen2"]),
    ("world build --retrain --model {W}/wm --no-report --device tpu9", ["'tpu9'"]),
    ("world build --retrain --model {W}/wm --no-report --steps 0", ["steps", "0"]),
    ("world build --retrain --model {W}/afile/wm --no-report --steps 1", ["afile"]),
    ("world build --model {M} --report {W}/afile/r.json", ["afile", "is a file"]),
    ("world tasks --out {W}/afile/t", ["afile", "is a file"]),
    # ---- issue 23: the last tracebacks, silent acceptances and leftovers
    # evaluate: the device and --json before the model loads (m_trunc would fail to load)
    ("evaluate --model {M} --device tpu9 " + EVAL, ["'tpu9'", "cpu, cuda, cuda:N"]),
    ("evaluate --model {W}/m_trunc --device tpu9 " + EVAL, ["'tpu9'", "cuda:N"]),
    ("evaluate --model {M} --device cuda:x " + EVAL, ["'cuda:x'"]),
    ("evaluate --model {M} --json {W}/afile/r.json " + EVAL, ["--json", "afile", "is a file"]),
    ("evaluate --model {W}/m_trunc --json {W}/afile/r.json " + EVAL, ["--json", "afile"]),
    ("evaluate --model {M} --json {W}/adir " + EVAL, ["--json", "adir", "folder"]),
    ("evaluate --model {M} --suite nosuch", ["'nosuch'", "world, paper, ppl"]),
    ("evaluate --model {M} --suite world --tasks nosuch", ["'nosuch'", "world_boolq"]),
    ("evaluate --model {M} --limit 0", ["--limit", "0"]),
    ("evaluate --model {M} --ppl -1", ["--ppl", "-1"]),
    ("evaluate --model {M} --suite world --heldout -1", ["--heldout", "-1"]),
    ("evaluate --model {M} --batch-size 0 " + EVAL, ["--batch-size", "0"]),
    ("evaluate --model {M} --dtype float8 " + EVAL, ["'float8'", "float32"]),
    ("evaluate --model {M} --scorer nosuch " + EVAL, ["'nosuch'", "fast, hflm"]),
    ("evaluate --model {W}/nosuch " + EVAL, ["nosuch", "config.json missing"]),
    ("evaluate --model {W}/m_cfglist " + EVAL, ["m_cfglist/config.json"]),
    ("evaluate --model {W}/m_t5 " + EVAL, ["'t5'", "not a causal language model"]),
    ("evaluate --model {W}/m_notok " + EVAL, ["m_notok", "no tokenizer"]),
    ("evaluate --model {W}/m_badtok " + EVAL, ["m_badtok", "could not load the tokenizer"]),
    ("evaluate --model {W}/m_trunc " + EVAL, ["m_trunc", "could not load the model"]),
    ("evaluate --model {M} --limit abc", ["--limit", "'abc'"]),
    ("evaluate --model {M} --nosuch 1", ["calib evaluate: error: unrecognized arguments", "--nosuch"]),
    ("evaluate --suite ppl", ["required", "--model"]),
    # --device: the one check (calib.models.device) in every sub-command, before any work
    ("sample world/pretrain --model {M} --device tpu9", ["'tpu9'", "cuda:N"]),
    ("similarity world/web world/pretrain --ndocs 2 --device tpu9", ["'tpu9'", "cuda:N"]),
    ("filter {W}/good.jsonl --out {W}/f.jsonl --model {W}/m_trunc --device tpu9", ["'tpu9'"]),
    ("generate world/pretrain --out {W}/gen.jsonl --ndocs 2 --model {W}/m_trunc --device tpu9", ["'tpu9'"]),
    ("prune --model {W}/m_trunc --device tpu9 " + PRUNE, ["'tpu9'"]),
    ("world build --device foo --no-report", ["'foo'", "cpu, cuda, cuda:N"]),
    ("world build --model {M} --no-report --device cuda:x", ["'cuda:x'"]),
    ("world build --model {M} --device foo --report {W}/r.json", ["'foo'"]),
    # sizes against memory and the source, before the work
    (f"sample world/pretrain --model {{M}} --nsamples {BIG}", [f"nsamples {BIG}", "GB", "valid: nsamples <="]),
    ("sample world/pretrain --model {M} --nsamples 10000000", ["nsamples 10000000", "valid: nsamples <="]),
    ("sample world/pretrain --model {M} --seqlen 64 --pool 20 --nsamples 100000",
     ["nsamples 100000", "distinct windows", "valid: nsamples <="]),
    ("sample world/encyclopedia --model {M} --seqlen 64 --pool 5 --nsamples 100000",
     ["nsamples 100000", "concatenated", "valid: nsamples <="]),
    ("sample {W}/good.jsonl --model {M} --seqlen 16 --nsamples 100000", ["nsamples 100000", "distinct windows"]),
    (f"prune --model {{M}} --nsamples {BIG} --seqlen 16 --out {{W}}/pruned",
     [f"nsamples {BIG}", "activation buffer", "valid: nsamples <="]),
    (f"prune --model {{W}}/m_trunc --nsamples {BIG} --seqlen 16 --out {{W}}/pruned", [f"nsamples {BIG}"]),
    ("prune --model {M} --calib {W}/good.jsonl --nsamples 100000 --seqlen 16 --out {W}/pruned",
     ["nsamples 100000", "distinct windows"]),
    # N:M against config.json's widths, before the weights (no --no-progress: a load would show its bar)
    ("prune --model {M} --pattern 2:5 --nsamples 2 --seqlen 16 --out {W}/pruned",
     ["2:5", "width 32", "M=5", "2, 4, 8, 16, 32"]),
    ("prune --model {W}/m_trunc --pattern 2:3 " + PRUNE, ["2:3", "M=3"]),
    ("prune --model {W}/m_trunc --method magnitude --pattern 4:6 " + PRUNE, ["4:6", "M=6"]),
    # a bad calibration file before the weights
    ("prune --model {M} --calib {W}/bad.jsonl --nsamples 2 --seqlen 16 --out {W}/pruned", ["bad.jsonl:2"]),
    ("prune --model {W}/m_trunc --calib {W}/bad.jsonl " + PRUNE, ["bad.jsonl:2", "not valid JSON"]),
    ("prune --model {W}/m_trunc --calib {W}/body.jsonl " + PRUNE, ["'text'", "body"]),
    ("prune --model {W}/m_trunc --calib {W}/empty.jsonl " + PRUNE, ["empty.jsonl", "empty"]),
    ("prune --model {W}/m_trunc --calib {W}/good.jsonl --seqlen 4096 --nsamples 2 --no-progress --out {W}/pruned",
     ["4096", f"{CTX} tokens"]),
    # argparse's own errors: one line, for every sub-command
    ("prune --model {M} --sparsity abc " + PRUNE, ["--sparsity", "'abc'", "calib prune --help"]),
    ("prune --model {M} --nsamples abc --out {W}/pruned", ["--nsamples", "'abc'"]),
    ("prune --model {M} --same-sign maybe " + PRUNE, ["--same-sign", "'maybe'", "true"]),
    ("prune --out {W}/pruned", ["required", "--model"]),
    ("prune --model {M} " + PRUNE + " --nosuch", ["calib prune: error: unrecognized arguments", "--nosuch"]),
    ("generate world/pretrain " + GEN + " --top-k abc", ["--top-k", "'abc'"]),
    ("generate world/pretrain --ndocs 2", ["required", "--out"]),
    ("filter {W}/good.jsonl --out {W}/f.jsonl --k abc", ["--k", "'abc'"]),
    ("similarity world/web world/pretrain --n abc", ["--n", "'abc'"]),
    ("similarity world/web", ["required", "b"]),
    ("run {W}/grids/ok.yaml --retries abc", ["--retries", "'abc'"]),
    ("results --store {W}/calib.db --raw --nosuch", ["calib results: error: unrecognized", "--nosuch"]),
    ("world sources --nosuch", ["calib world sources: error: unrecognized arguments", "--nosuch"]),
    ("world build --steps abc", ["--steps", "'abc'"]),
    ("world show world/pretrain -n abc", ["-n", "'abc'"]),
    ("world nosuch", ["invalid choice", "'nosuch'", "build"]),
    ("nosuch", ["invalid choice", "'nosuch'", "prune"]),
    ("", ["required", "COMMAND"]),
    # output paths before the work, --dry-run included
    ("run {W}/grids/ok.yaml --store {W}/afile/g.db --dry-run", ["--store", "afile", "is a file"]),
    ("run {W}/grids/ok.yaml --store {W}/adir --dry-run", ["--store", "adir", "folder"]),
    ("run {W}/grids/model_missing.yaml --store {W}/afile/g.db --dry-run", ["--store", "afile"]),
    ("results --store {W}/calib.db --csv {W}/adir", ["--csv", "adir", "folder"]),
    ("sample world/pretrain --model {M} --seqlen 8 --nsamples 2 --out {W}/meta.pt", ["meta.pt.json", "folder"]),
    ("generate world/pretrain --out {W}/adir/keep/g.jsonl --ndocs 2 --model {M}", ["keep", "is a file"]),
    ("filter {W}/good.jsonl --out {W}/adir --model {M}", ["adir", "folder"]),
    ("similarity world/web world/pretrain --ndocs 2 --out {W}/adir", ["adir", "folder"]),
    ("world tasks --out {W}/good.jsonl", ["good.jsonl", "not a folder"]),
    ("world build --model {M} --report {W}/adir", ["--report", "adir", "folder"]),
    ("world build --steps 0", ["--steps", "0"]),
]

RAW_GRIDS = {"bad_yaml", "not_mapping", "model_int", "model_arch", "model_config", "world_2_5", "world_3_8"}
GRIDS = {  # every grid field, one bad value each (the model is prepended unless the grid is raw)
    "ok": "suite: ppl",
    "bad_yaml": "method: [wanda,\nsparsity: 0.5\n",
    "not_mapping": "- wanda\n- sparsegpt\n",
    "model_int": "model: 5\n",
    "model_missing": "model: /nonexistent/model",
    "model_arch": "model: {W}/m_bert\n",
    "model_config": "model: {W}/m_cfglist\n",
    "method": "method: nosuch",
    "sparsity": "sparsity: 1.5",
    "sparsity_str": "sparsity: half",
    "pattern_unquoted": "pattern: 2:4",
    "pattern": "pattern: '5:4'",
    "options_unknown": "options: {wanda: {nosuch: 1}}",
    "options_type": "options: {wanda: {use_variant: 'yes'}}",
    "options_float": "method: sparsegpt\noptions: {sparsegpt: {percdamp: 1e-2}}",
    "options_range": "method: dsnot\noptions: {dsnot: {max_cycle_time: -1}}",
    "options_choice": "method: dsnot\noptions: {dsnot: {skip_layer: nosuch}}",
    "options_walk": "method: dsnot\noptions: {dsnot: {walk: reference}}",
    "options_map": "options: 5",
    "dtype": "dtype: float8",
    "calibration_source": "calibration: {source: world/nosuch}",
    "calibration_mode": "calibration: {mode: nosuch}",
    "calibration_nsamples": "calibration: {nsamples: 0}",
    "calibration_seqlen": f"calibration: {{seqlen: {CTX + 1}}}",
    "calibration_seed": "calibration: {seed: -1}",
    "calibration_pool": "calibration: {pool: 0}",
    "calibration_field": "calibration: {nosuch: 1}",
    "calibration_map": "calibration: 5",
    "synthetic_generator": "synthetic: {generator: nosuch}",
    "synthetic_prefix": "synthetic: {prefix_len: -1}",
    "synthetic_ndocs": "synthetic: {n_docs: 0}",
    "synthetic_tokens": "synthetic: {max_new_tokens: 0}",
    "synthetic_seed": "synthetic: {gen_seed: -1}",
    "synthetic_batch": "synthetic: {batch_size: 0}",
    "synthetic_rate": "synthetic: {filter_rate: 100}",
    "synthetic_temperature": "synthetic: {sampling: {temperature: 0}}",
    "synthetic_top_p": "synthetic: {sampling: {top_p: 1.5}}",
    "synthetic_top_k": "synthetic: {sampling: {top_k: 0}}",
    "synthetic_penalty": "synthetic: {sampling: {repetition_penalty: 0}}",
    "synthetic_sampling": "synthetic: {sampling: {nosuch: 1}}",
    "synthetic_field": "synthetic: {nosuch: 1}",
    "suite_name": "suite: nosuch",
    "suite_limit": "suite: {limit: 0}",
    "suite_alpaca": "suite: {n_alpaca: -1}",
    "suite_tasks": "suite: {tasks: [nosuch]}",
    "suite_shots": "suite: {name: paper, shots: {mmlu: -1}}",
    "execution_prune_batch": "execution: {prune_batch_size: 0}",
    "execution_eval_batch": "execution: {eval_batch_size: 0}",
    "execution_device": "execution: {device: tpu9}",
    "execution_offload": "execution: {offload: 'yes'}",
    "execution_field": "execution: {nosuch: 1}",
    "grids_empty": "grids: []",
    "grids_list": "grids: [5]",
    "grids_field": "grids: [{nosuch: 1}]",
    "top_field": "nosuch: 1",
    "range": "calibration: {seed: {range: [1, 2, 3]}}",
    "axis_empty": "method: []",
    "pattern_width": "pattern: '2:3'",
    "pattern_width_axis": "method: [wanda, magnitude]\npattern: ['2:4', '1:6']",
    "world_2_5": "model: world\npattern: '2:5'\n",
    "world_3_8": "model: world\ngrids: [{pattern: '2:4'}, {pattern: '3:8'}, {pattern: '1:3'}]\n",
}
GRID_EXPECT = {
    "bad_yaml": ["bad_yaml.yaml:", "not valid YAML"], "not_mapping": ["a grid is a mapping"],
    "model_int": ["model", "5"], "model_missing": ["/nonexistent/model"],
    "model_arch": ["model", "'bert'", "llama"], "model_config": ["m_cfglist/config.json"], "method": ["method", "'nosuch'"],
    "sparsity": ["sparsity", "1.5"], "sparsity_str": ["'half'"], "pattern_unquoted": ["124", "quote it"],
    "pattern": ["'5:4'"], "options_unknown": ["nosuch", "use_variant"], "options_type": ["use_variant", "'yes'"],
    "options_float": ["percdamp", "'1e-2'"], "options_range": ["max_cycle_time -1"],
    "options_choice": ["skip_layer", "'nosuch'"], "options_walk": ["walk", "'reference'", "guarded, original"], "options_map": ["options", "5"], "dtype": ["'float8'"],
    "calibration_source": ["calibration.source", "'world/nosuch'"], "calibration_mode": ["calibration.mode"],
    "calibration_nsamples": ["calibration.nsamples", "0"], "calibration_seqlen": ["calibration.seqlen", str(CTX + 1)],
    "calibration_seed": ["calibration.seed", "-1"], "calibration_pool": ["calibration.pool", "0"],
    "calibration_field": ["calibration.nosuch"], "calibration_map": ["calibration", "5"],
    "synthetic_generator": ["synthetic.generator", "'nosuch'"], "synthetic_prefix": ["synthetic.prefix_len", "-1"],
    "synthetic_ndocs": ["synthetic.n_docs", "0"], "synthetic_tokens": ["synthetic.max_new_tokens", "0"],
    "synthetic_seed": ["synthetic.gen_seed", "-1"], "synthetic_batch": ["synthetic.batch_size", "0"],
    "synthetic_rate": ["synthetic.filter_rate", "100"], "synthetic_temperature": ["temperature 0"],
    "synthetic_top_p": ["top_p 1.5"], "synthetic_top_k": ["top_k 0"], "synthetic_penalty": ["repetition_penalty 0"],
    "synthetic_sampling": ["synthetic.sampling.nosuch"], "synthetic_field": ["synthetic.nosuch"],
    "suite_name": ["suite.name", "'nosuch'"], "suite_limit": ["suite.limit", "0"],
    "suite_alpaca": ["suite.n_alpaca", "-1"], "suite_tasks": ["suite.tasks", "'nosuch'"],
    "suite_shots": ["suite.shots.mmlu", "-1"], "execution_prune_batch": ["execution.prune_batch_size", "0"],
    "execution_eval_batch": ["execution.eval_batch_size", "0"], "execution_device": ["execution.device", "'tpu9'"],
    "execution_offload": ["execution.offload", "'yes'"], "execution_field": ["execution.nosuch"],
    "grids_empty": ["grids", "empty list"], "grids_list": ["grids", "[5]"], "grids_field": ["grids[0]", "nosuch"],
    "top_field": ["nosuch", "unknown field"], "range": ["[1, 2, 3]"], "axis_empty": ["method", "empty list"],
    "pattern_width": ["pattern", "2:3", "width 32", "M=3", "2, 4, 8, 16, 32"],
    "pattern_width_axis": ["pattern", "1:6", "M=6"],
    "world_2_5": ["model world: pattern 2:5", "2:5", "width 192", "hidden_size", "M=5", "2, 4, 8, 16, 32, 64"],
    "world_3_8": ["grids[2]", "1:3", "width 512", "intermediate_size", "M=3"],
}
CASES += [(f"run {{W}}/grids/{name}.yaml --store {{W}}/g.db", GRID_EXPECT[name]) for name in GRIDS if name != "ok"]
CASES += [(f"run {{W}}/grids/{name}.yaml --store {{W}}/g.db --dry-run", GRID_EXPECT[name])
          for name in ("grids_empty", "synthetic_temperature", "execution_device", "pattern_width", "world_2_5")]


def _id(case):
    return case[0].replace("{W}/", "").replace("{M}", "M")[:90] or "(no arguments)"


@pytest.mark.parametrize("argv,expect", CASES, ids=[_id(c) for c in CASES])
def test_bad_input(work, argv, expect, capsys):
    import shlex

    from calib.cli import main
    W, M = work
    args = shlex.split(argv.format(W=W, M=M))
    if args and args[0] == "prune" and "--calib" not in args:  # the tiny models are not world models: c4 by default
        args += ["--calib", "world/pretrain"]
    before = snapshot(W)
    try:
        rc = main(args)
    except SystemExit as e:  # argparse's own one-line errors exit 2 as well
        rc = e.code
    err = capsys.readouterr().err
    _check(rc, err, [e.format(W=W, M=M) for e in expect], argv)
    assert not _diff(before, snapshot(W)), (argv, _diff(before, snapshot(W)))


def test_device_cuda_without_gpu(work, capsys):
    import torch

    from calib.cli import main
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    W, M = work
    before = snapshot(W)
    rc = main(["prune", "--model", str(M), "--device", "cuda", *PRUNE.format(W=W).split()])
    _check(rc, capsys.readouterr().err, ["'cuda'", "no GPU is present", "cpu"], "cuda")
    assert not _diff(before, snapshot(W))


@pytest.mark.parametrize("argv,expect", [
    (["--profile", "foo"], ["'foo'", "smoke, toy, paper"]),
    (["--profile", "smoke", "--chapter", "nosuch"], ["'nosuch'", "fig1_methods"]),
])
def test_book_runner(argv, expect, capsys):
    from calib.book.runner import main
    _check(main(argv), capsys.readouterr().err, expect, argv)


def test_foreign_sqlite_is_left_alone(work):
    W, _ = work
    with sqlite3.connect(W / "foreign.db") as c:
        assert [t for (t,) in c.execute("SELECT name FROM sqlite_master")] == ["people"]
    c.close()


# ------------------------------------------------------------------ as a user runs it
def test_bad_input_in_subprocesses(work):
    """The installed entry points, as separate processes, started together."""
    W, M = work
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [
        ([sys.executable, "-m", "calib.cli", "generate", "world/pretrain", "--out", f"{W}/gen.jsonl",
          "--model", str(M), "--device", "tpu9"], ["'tpu9'"]),
        ([sys.executable, "-m", "calib.cli", "sample", f"{W}/bad.jsonl", "--model", str(M)], ["bad.jsonl:2"]),
        ([sys.executable, "-m", "calib.cli", "results", "--store", f"{W}/foreign.db"], ["not a calib results store"]),
        ([sys.executable, "-m", "calib.book", "--profile", "foo"], ["'foo'"]),
    ]
    before = snapshot(W)
    procs = [(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), expect)
             for cmd, expect in runs]
    for p, expect in procs:
        _, err = p.communicate(timeout=300)
        _check(p.returncode, err, expect, p.args)
    assert not _diff(before, snapshot(W))


# ------------------------------------------------------------------ what replaced the crashes
def test_results_shows_failures(work, capsys):
    from calib.cli import main
    W, _ = work
    assert main(["results", "--store", str(W / "calib.db"), "--status", "failed"]) == 0
    out = capsys.readouterr().out
    assert "k2" in out and "not divisible by M=3" in out and "Traceback" not in out


def test_dry_run_creates_no_store(work, capsys):
    from calib.cli import main
    W, _ = work
    assert main(["run", str(W / "grids" / "ok.yaml"), "--store", str(W / "new.db"), "--dry-run"]) == 0
    assert "todo" in capsys.readouterr().out and not (W / "new.db").exists()


def test_deterministic_failure_is_not_retried_and_its_reason_printed(work, tmp_path, capsys):
    """A model with NaN weights fails the same way every time: one attempt, and `calib run`
    prints why. (A pattern the widths cannot take no longer gets this far: the grid is an error.)"""
    from calib.cli import main
    from calib.experiments import Store
    W, _ = work
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"model": str(W / "nan"), "suite": {"name": "ppl", "n_alpaca": 8},
                                    "calibration": {"source": "world/pretrain", "nsamples": 2, "seqlen": 16,
                                                    "pool": 20}}))
    assert main(["run", str(grid), "--store", str(tmp_path / "r.db"), "--retries", "3", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "failed" in err and "non-finite activations" in err
    assert "1 jobs: 0 already done, 0 done, 1 failed" in err
    with Store(tmp_path / "r.db") as s:
        (row,) = s.rows(status="failed")
    assert row["attempts"] == 1 and "CalibError" in row["error"]


def test_stale_prune_folders_of_dead_processes_are_removed(work, tmp_path, capsys):
    """A killed `calib prune` leaves a checkpoint-sized hidden folder; the next run next
    to it removes it (and only those of dead processes)."""
    import socket

    from calib.cli import main
    _, M = work
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    out = tmp_path / "pruned"
    stale = [tmp_path / f".pruned.tmp-{gone.pid}", tmp_path / f".pruned.tmp-{socket.gethostname()}-{gone.pid}"]
    mine = tmp_path / f".pruned.tmp-{socket.gethostname()}-{os.getppid()}"  # the live parent of this test
    for d in (*stale, mine):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"0" * 1000)
    assert main(["prune", "--model", str(M), "--method", "magnitude", "--out", str(out), "--no-progress"]) == 0
    assert (out / "prune_report.json").is_file()
    assert not any(d.exists() for d in stale) and mine.exists()


def test_stale_temporary_files_of_dead_processes_are_removed(work, tmp_path, capsys):
    """A killed write leaves ``.NAME.HOST-PID.tmp`` (``.NAME.PID.tmp`` before); the next write
    of NAME removes those of dead processes on this host, and nothing else."""
    import socket

    from calib.cli import main
    W, _ = work
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    out = tmp_path / "r.csv"
    stale = [tmp_path / f".r.csv.{gone.pid}.tmp", tmp_path / f".r.csv.{host}-{gone.pid}.tmp"]
    keep = [tmp_path / f".r.csv.{host}-{os.getppid()}.tmp",  # a live process's write in progress
            tmp_path / f".r.csv.otherhost-{gone.pid}.tmp",  # another host's: never known dead here
            tmp_path / f".r.csv.json.{host}-{gone.pid}.tmp"]  # another file's (r.csv.json)
    for f in (*stale, *keep):
        f.write_text("half a file")
    assert main(["results", "--store", str(W / "calib.db"), "--csv", str(out)]) == 0
    assert out.is_file() and "alpaca_ppl" in out.read_text()
    assert not any(f.exists() for f in stale) and all(f.exists() for f in keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["r.csv", *(f.name for f in keep)])


def test_an_interrupted_write_is_cleaned_by_the_next(tmp_path):
    """A process killed inside atomic_write (between writing the temporary and renaming it)
    leaves its temporary; the next write of the same file removes it."""
    from calib.io import atomic_write
    target = tmp_path / "x.json"
    code = ("import os, sys; sys.path.insert(0, sys.argv[2]); import calib.io as io\n"
            "os.replace = lambda *a: os.kill(os.getpid(), 9)\n"  # die where a crash would hurt most
            "io.atomic_write(sys.argv[1], 'new')")
    p = subprocess.run([sys.executable, "-c", code, str(target), str(Path(__file__).parents[1])])
    assert p.returncode == -9
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(".x.json.") and left.name.endswith(".tmp")
    atomic_write(target, "ok")
    assert [f.name for f in tmp_path.iterdir()] == ["x.json"] and target.read_text() == "ok"


# ------------------------------------------------------------------ in subprocesses: limits a test process cannot take
def _unprivileged():
    """The command prefix that runs a process without root's override of file permissions
    (a read-only folder is writable to root); None where that cannot be arranged."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv and subprocess.run([setpriv, "--bounding-set=-dac_override", "true"]).returncode == 0:
        return [setpriv, "--bounding-set=-dac_override"]
    return None


READ_ONLY = [  # {R} a read-only folder inside the work folder
    ("evaluate --model {M} --suite ppl --ppl 2 --heldout 0 --json {R}/r.json", ["--json", "read-only"]),
    ("run {W}/grids/ok.yaml --store {R}/s.db --dry-run", ["--store", "read-only"]),
    ("run {W}/grids/ok.yaml --store {R}/s.db", ["--store", "read-only"]),
    ("results --store {W}/calib.db --csv {R}/r.csv", ["--csv", "read-only"]),
    ("prune --model {M} --nsamples 2 --seqlen 16 --no-progress --out {R}/pruned", ["--out", "read-only"]),
    ("sample world/pretrain --model {M} --seqlen 8 --nsamples 2 --out {R}/s.pt", ["--out", "read-only"]),
    ("generate world/pretrain --out {R}/g.jsonl --ndocs 2 --model {M}", ["--out", "read-only"]),
    ("filter {W}/good.jsonl --out {R}/f.jsonl --model {M}", ["--out", "read-only"]),
    ("similarity world/web world/pretrain --ndocs 2 --out {R}/s.json", ["--out", "read-only"]),
    ("world tasks --out {R}/tasks", ["read-only"]),
    ("world build --model {M} --report {R}/report.json", ["--report", "read-only"]),
    ("world build --retrain --model {R}/wm --no-report --steps 1", ["--model", "read-only"]),
]


@pytest.mark.parametrize("argv,expect", READ_ONLY, ids=[_id(c) for c in READ_ONLY])
def test_read_only_output(work, argv, expect):
    """Every output path in a read-only folder: one line before any work, --dry-run too."""
    import shlex
    W, M = work
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: a read-only folder is writable")
    R = W / "readonly"
    before = snapshot(W)
    args = shlex.split(argv.format(W=W, M=M, R=R))
    p = subprocess.run([*prefix, sys.executable, "-m", "calib.cli", *args], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    _check(p.returncode, p.stderr, [e.format(W=W, M=M, R=R) for e in expect] + [str(R)], argv)
    assert not _diff(before, snapshot(W)), (argv, _diff(before, snapshot(W)))


def test_sample_under_a_memory_limit(work):
    """`calib sample world/pretrain --nsamples 10000000` under a memory limit: one line, at once
    (it was a MemoryError after 55 s)."""
    import resource
    import time
    W, _ = work
    limit = 3 << 30

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    before = snapshot(W)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "calib.cli", "sample", "world/pretrain", "--nsamples", "10000000",
                        "--out", str(W / "s.pt")], capture_output=True, text=True, preexec_fn=cap,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    _check(p.returncode, p.stderr, ["nsamples 10000000 x seqlen 512", "GB", "valid: nsamples <="], "memory")
    assert time.perf_counter() - t0 < 60
    assert not _diff(before, snapshot(W))
