"""`calib prune`: output layout, report, atomic writes, bad input."""
from __future__ import annotations

import json

import pytest
import torch

from calib.cli import main
from factory import save, tiny_model

torch.set_num_threads(2)
VOCAB = 96


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, VOCAB)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny") / "model"
    save(tiny_model(vocab=VOCAB, ctx=64), _tokenizer(), d)
    return d


def _shim_ids(source, tokenizer, nsamples, seqlen, seed=0, mode=None, **_):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (nsamples, seqlen), generator=g)


@pytest.fixture
def shim(monkeypatch):
    """Stand-in calibration sampler, so these tests do not depend on calib.data's sources."""
    from calib import data
    monkeypatch.setattr(data, "calibration_tensor", _shim_ids)
    monkeypatch.setattr(data, "default_mode", lambda source: "document")
    return data


def _run(model_dir, out, *extra):
    return main(["prune", "--model", str(model_dir), "--calib", "x", "--nsamples", "4", "--seqlen", "16",
                 "--out", str(out), "--no-progress", *extra])


@pytest.mark.parametrize("method,extra", [
    ("wanda", ["--sparsity", "0.6"]),
    ("sparsegpt", ["--pattern", "2:4"]),
    ("dsnot", ["--pattern", "4:8", "--update-threshold", "0.001"]),
    ("dsnot", ["--sparsity", "0.6", "--dsnot-walk", "original", "--skip-layer", "no_skip"]),
    ("owl", ["--sparsity", "0.6", "--owl-base", "wanda"]),
    ("magnitude", ["--sparsity", "0.5"]),
])
def test_prune_writes_model_and_report(shim, model_dir, tmp_path, method, extra):
    from transformers import AutoModelForCausalLM

    from calib.prune import prune

    out = tmp_path / "out"
    assert _run(model_dir, out, "--method", method, *extra) == 0
    rep = json.loads((out / "prune_report.json").read_text())
    assert rep["method"] == method and rep["seed"] == 0
    if method == "dsnot":  # the walk is recorded: guarded unless asked
        assert rep["options"]["walk"] == ("original" if "--dsnot-walk" in extra else "guarded")
    assert set(rep["versions"]) >= {"torch", "transformers", "calib"}
    assert {"load_s", "prune_s", "save_s", "total_s"} <= set(rep["timings"])
    ids = _shim_ids("x", None, 4, 16)
    import hashlib
    want_hash = hashlib.sha256(ids.to(torch.int32).numpy().tobytes()).hexdigest()
    assert rep["calibration"]["sha256_int32"] == (None if method == "magnitude" else want_hash)
    # The saved weights are dense with exact zeros where the report says.
    saved = AutoModelForCausalLM.from_pretrained(out)
    zeros = sum(int((saved.get_parameter(k + ".weight") == 0).sum()) for k in rep["sparsity_report"]["matrices"])
    assert zeros == rep["sparsity_report"]["overall"]["pruned"] > 0
    # Same masks as the API on the same inputs.
    api = prune(AutoModelForCausalLM.from_pretrained(model_dir), None if method == "magnitude" else ids,
                method=method, sparsity=rep["sparsity"] if "--pattern" not in extra else None,
                pattern=rep["pattern"], **rep["options"])
    assert api.mask_hash == rep["mask_hash"]
    assert not list(tmp_path.glob(".out.*"))


@pytest.mark.parametrize("extra,match", [
    (["--sparsity", "1.5"], "outside"),
    (["--pattern", "4:2"], "0 < N < M"),
    (["--pattern", "3:5"], "not divisible"),
    (["--seqlen", "100"], "longer than the model's context"),
    (["--nsamples", "0"], "--nsamples 0"),
    (["--method", "nope"], "valid choices"),
    (["--owl-m", "3"], "does not apply"),
])
def test_bad_input_leaves_no_output(shim, model_dir, tmp_path, capsys, extra, match):
    out = tmp_path / "out"
    assert _run(model_dir, out, *extra) == 2
    assert match in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_unsupported_architecture(shim, tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    d = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=VOCAB)).save_pretrained(d)
    assert _run(d, tmp_path / "out") == 2
    assert "llama, mistral, qwen2, qwen3" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_failure_during_pruning_leaves_no_output(shim, model_dir, tmp_path, capsys, monkeypatch):
    import calib.prune.engine as eng

    def broken(*a, **k):
        raise eng.CalibError("non-finite activations (NaN or inf) in the output of decoder block 1")
    monkeypatch.setattr(eng, "prune", broken)
    out = tmp_path / "out"
    assert _run(model_dir, out) == 2
    assert "decoder block 1" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_failure_while_saving_leaves_no_output(shim, model_dir, tmp_path, monkeypatch):
    from transformers import PreTrainedTokenizerFast

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", boom)
    with pytest.raises(OSError):
        _run(model_dir, tmp_path / "out")
    assert not list(tmp_path.iterdir())


def test_existing_output_needs_overwrite(shim, model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert _run(model_dir, out) == 2
    assert (out / "keep.txt").exists()
    assert _run(model_dir, out, "--overwrite") == 0
    assert (out / "prune_report.json").exists() and not (out / "keep.txt").exists()


def test_real_calibration_sampler(model_dir, tmp_path):
    """Integration with calib.data on a local text file."""
    try:
        from calib.data import calibration_tensor  # noqa: F401
    except ImportError:
        pytest.skip("calib.data is not available yet")
    text = tmp_path / "calib.txt"
    text.write_text("\n".join(" ".join(f"w{(i * 7 + j) % 95 + 1}" for j in range(40)) for i in range(30)))
    out = tmp_path / "out"
    rc = main(["prune", "--model", str(model_dir), "--calib", str(text), "--nsamples", "3", "--seqlen", "16",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    rep = json.loads((out / "prune_report.json").read_text())
    assert rep["calibration"]["source"] == str(text) and rep["calibration"]["sha256_int32"]


@pytest.mark.parametrize("method,extra", [("wanda", ["--sparsity", "0.6"]), ("owl", ["--pattern", "2:4"])])
def test_the_setting_is_checked_once_from_the_flags_to_the_mask_rule(shim, model_dir, tmp_path, monkeypatch,
                                                                      method, extra):
    """`calib prune` resolves method, pattern, sparsity and options once (methods.Setting.of); the
    engine takes that setting as it is, down to the mask rule."""
    from calib.prune import methods
    calls = {}
    for name in ("parse_pattern", "resolve_sparsity", "resolve_options"):
        real = getattr(methods, name)

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*a, **k)
        monkeypatch.setattr(methods, name, counted)
    assert _run(model_dir, tmp_path / "out", "--method", method, *extra) == 0
    assert calls == {"parse_pattern": 1, "resolve_sparsity": 1, "resolve_options": 1}
