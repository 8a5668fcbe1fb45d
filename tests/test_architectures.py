"""The decoders of calib.models.ARCHITECTURES beyond LLaMA/Mistral/Qwen (OLMo-2, Gemma 2, Gemma 3
text, Phi-3) and an OpenLM (DCLM-7B) stand-in, through the pruner, the fast scorer, the written
checkpoint and self-generation; and the errors for what is not supported.

The pruner's masks are checked against a reference that shares nothing with calib.prune's
plumbing: forward pre-hooks on the linears of block i collect the statistics while the whole
model runs, one sample at a time, with blocks 0..i-1 already pruned; the mask rules are the naive
ones of tests/test_prune_reference.py. So a block call captured wrongly (a sliding-window mask,
Gemma 3's per-layer rotary tables, OLMo-2's norms, open_lm's (hidden, cache) pairs) shows up as
different masks.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from test_prune_reference import RefStats, assert_same, ref_nm, ref_row_lowest, ref_sparsegpt

from calib.errors import CalibError
from calib.prune import prune
from calib.prune.masks import check_nm
from calib.prune.sequential import Sequential
from factory import save, tiny_model

VOCAB = 96
NEW = ("olmo2", "gemma2", "gemma3_text", "phi3")
# sliding windows shorter than the calibration windows (20 tokens), so the captured masks matter
WINDOW = {"gemma2": {"sliding_window": 8}, "gemma3_text": {"sliding_window": 8}, "phi3": {"sliding_window": 8}}


def tiny(arch, seed=0, **extra):
    if arch == "openlm":
        return OpenLMStandIn(seed=seed, **extra)
    return tiny_model(arch, vocab=VOCAB, ctx=64, hidden=32, intermediate=64, seed=seed, initializer_range=0.1,
                      **{**WINDOW.get(arch, {}), **extra})


def ids(n=4, t=20, seed=1):
    return torch.randint(0, VOCAB, (n, t), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ an OpenLM stand-in
# The module tree of open_lm's Transformer (open_lm/model.py, which needs xformers and is not
# installed here), written for these tests: model.layers[i] with attention.in_proj (fused q, k, v),
# q/k LayerNorms without bias, rotary positions offset by the cached length, attention.out_proj,
# feed_forward.w12 (gate and up fused) and w3; blocks take (x, past_key_value, use_cache=...,
# attention_mask=...) and return (x, past_key_value), which the model unpacks.
class _Rotary(nn.Module):
    def __init__(self, head_dim, base=10000.0):
        super().__init__()
        self.register_buffer("inv", 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim), persistent=False)

    def forward(self, x, offset):  # x [B, T, H, D]
        ang = torch.outer(torch.arange(offset, offset + x.shape[1], dtype=torch.float32), self.inv)
        cos, sin = ang.cos()[None, :, None].repeat(1, 1, 1, 2), ang.sin()[None, :, None].repeat(1, 1, 1, 2)
        a, b = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-b, a], dim=-1) * sin


class _Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.in_proj = nn.Linear(dim, 3 * dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)
        self.q_norm, self.k_norm = nn.LayerNorm(dim, bias=False), nn.LayerNorm(dim, bias=False)
        self.pos = _Rotary(dim // heads)

    def forward(self, x, is_causal=True, past_key_value=None, use_cache=False, attention_mask=None):
        b, t, d = x.shape
        q, k, v = self.in_proj(x).chunk(3, dim=-1)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (z.view(b, t, self.heads, d // self.heads) for z in (q, k, v))
        past = 0 if past_key_value is None else past_key_value[0].shape[1]
        q, k = self.pos(q, past), self.pos(k, past)
        if past_key_value is not None:
            k, v = torch.cat([past_key_value[0], k], 1), torch.cat([past_key_value[1], v], 1)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=past == 0 and t > 1)
        return self.out_proj(o.transpose(1, 2).reshape(b, t, d)), ([k, v] if use_cache else None)


class _SwiGLUTorch(nn.Module):  # open_lm's ffn_type swiglu_torch: calls its linears
    def __init__(self, dim, hidden):
        super().__init__()
        self.w12, self.w3 = nn.Linear(dim, 2 * hidden, bias=False), nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        gate, up = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * up)


class SwiGLU(_SwiGLUTorch):  # as xformers' SwiGLU (ffn_type swiglu): reads the weights in one fused op
    def forward(self, x):
        w1, w2 = self.w12.weight.chunk(2, dim=0)
        return F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w2), self.w3.weight)


class _Block(nn.Module):
    def __init__(self, dim, heads, hidden, fused):
        super().__init__()
        self.attention = _Attention(dim, heads)
        self.feed_forward = (SwiGLU if fused else _SwiGLUTorch)(dim, hidden)
        self.attention_norm, self.ffn_norm = nn.LayerNorm(dim, bias=False), nn.LayerNorm(dim, bias=False)

    def forward(self, x, past_key_value=None, use_cache=False, attention_mask=None):
        h, past_key_value = self.attention(self.attention_norm(x), past_key_value=past_key_value,
                                           use_cache=use_cache, attention_mask=attention_mask)
        h = x + h
        return h + self.feed_forward(self.ffn_norm(h)), past_key_value


class _Transformer(nn.Module):
    def __init__(self, dim, heads, hidden, layers, fused):
        super().__init__()
        self.tok_embeddings = nn.Embedding(VOCAB, dim)
        self.layers = nn.ModuleList(_Block(dim, heads, hidden, fused) for _ in range(layers))
        self.norm = nn.LayerNorm(dim, bias=False)
        self.output = nn.Linear(dim, VOCAB, bias=False)

    def forward(self, input_ids, past_key_values=None, use_cache=False, attention_mask=None):
        x = self.tok_embeddings(input_ids)
        past = list(past_key_values) if past_key_values is not None else [None] * len(self.layers)
        for i, layer in enumerate(self.layers):
            x, past[i] = layer(x, past[i], use_cache=use_cache, attention_mask=attention_mask)
        x = self.norm(x)
        return self.output(x).float(), x, past


class OpenLMStandIn(nn.Module):
    """OpenLMForCausalLM's shape: ``.model`` is the Transformer, ``.config`` has model_type openlm,
    n_layers and seq_len."""

    def __init__(self, seed=0, dim=32, heads=4, hidden=64, layers=2, fused=False):
        super().__init__()
        torch.manual_seed(seed)
        self.config = SimpleNamespace(model_type="openlm", n_layers=layers, seq_len=64, dim=dim, n_heads=heads)
        self.model = _Transformer(dim, heads, hidden, layers, fused)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.1)
        self.eval()

    def forward(self, input_ids=None, attention_mask=None, past_key_values=None, use_cache=None, **_):
        logits, _, past = self.model(input_ids, past_key_values, bool(use_cache), attention_mask)
        return SimpleNamespace(logits=logits, past_key_values=past)


@pytest.fixture
def open_lm_here(monkeypatch):
    """As if open_lm were installed (it is not, here): the architecture check passes."""
    import calib.models
    monkeypatch.setattr(calib.models, "openlm_available", lambda: True)


# ------------------------------------------------------------------ the reference pruner
def _blocks(model):
    return model.model.layers


@torch.no_grad()
def hook_reference(model, x, method, s, n=0, m=0):
    """Block by block: hooks on block i's linears, the whole model run one sample at a time
    (earlier blocks pruned), then the naive mask rule of each linear. Returns {name: mask}."""
    masks = {}
    for i, block in enumerate(_blocks(model)):
        lins = {k: v for k, v in block.named_modules() if isinstance(v, nn.Linear)}
        st = {k: RefStats(v.in_features) for k, v in lins.items()}
        hooks = [v.register_forward_pre_hook(lambda mod, a, k=k: st[k].add(a[0].detach()))
                 for k, v in lins.items()]
        try:
            for j in range(x.shape[0]):
                model(input_ids=x[j:j + 1])
        finally:
            for h in hooks:
                h.remove()
        for k, lin in lins.items():
            W = lin.weight.data
            if method == "wanda":
                score = W.abs() * torch.sqrt(st[k].scaler_row.reshape(1, -1))
                mask = ref_nm(score, n, m) if n else ref_row_lowest(score, int(W.shape[1] * s))
            else:
                newW, mask = ref_sparsegpt(W, st[k].H, s, n, m)
                lin.weight.data = newW.to(W.dtype)
            lin.weight.data[mask] = 0
            masks[f"model.layers.{i}.{k}"] = mask
    return masks


CASES = [("wanda", "unstructured", 0.6), ("wanda", "2:4", None), ("sparsegpt", "unstructured", 0.6),
         ("sparsegpt", "2:4", None)]


@pytest.mark.parametrize("arch", NEW + ("openlm",))
@pytest.mark.parametrize("method,pattern,s", CASES, ids=lambda v: str(v))
def test_masks_equal_a_hook_based_whole_model_pass(arch, method, pattern, s, request):
    if arch == "openlm":
        request.getfixturevalue("open_lm_here")
    n, m = (0, 0) if pattern == "unstructured" else map(int, pattern.split(":"))
    x = ids()
    ref = tiny(arch)
    want = hook_reference(ref, x, method, s if s is not None else n / m, n, m)
    model = tiny(arch)
    res = prune(model, x, method=method, sparsity=s, pattern=pattern, batch_size=2, keep_masks=True)
    assert_same(res.masks, want)
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
    if arch == "phi3":  # the fused projections are pruned as the single linears they are
        assert {"model.layers.0.self_attn.qkv_proj", "model.layers.0.mlp.gate_up_proj"} <= set(res.masks)


@pytest.mark.parametrize("arch", NEW + ("openlm",))
def test_captured_calls_reproduce_the_models_hidden_states(arch, request):
    if arch == "openlm":
        request.getfixturevalue("open_lm_here")
    model, x = tiny(arch), ids()
    with torch.no_grad():
        if arch == "openlm":  # the stand-in has no output_hidden_states: hook the block outputs
            want, hs = [], [b.register_forward_hook(lambda mod, a, out: want.append(out[0])) for b in _blocks(model)]
            model(input_ids=x)
            for h in hs:
                h.remove()
        else:
            want = model(x, output_hidden_states=True).hidden_states[1:]
        run = Sequential(model, 3, "cpu", True)
        buf = run.capture(x)
        for i, block in enumerate(run.blocks[:-1]):
            run.forward(i, block, buf, write=True)
            torch.testing.assert_close(buf, want[i], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", NEW + ("openlm",))
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt", "dsnot", "owl"])
@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_every_method_and_pattern_runs(arch, method, pattern, request):
    if arch == "openlm":
        request.getfixturevalue("open_lm_here")
    model = tiny(arch)
    s = 0.5 if pattern == "unstructured" else None
    res = prune(model, ids(), method=method, sparsity=s, pattern=pattern, batch_size=3, offload=True,
                keep_masks=True)
    assert len(res.masks) == 2 * (4 if arch in ("phi3", "openlm") else 7)
    for name, mask in res.masks.items():
        assert bool((model.get_parameter(name + ".weight")[mask] == 0).all()), name
        if pattern == "2:4":
            assert check_nm(mask, 2, 4), name
    assert 0.45 < res.report["overall"]["sparsity"] < 0.56


def test_the_fused_swiglu_of_xformers_is_walked_through_its_linears(open_lm_here):
    """open_lm's ffn_type swiglu (xformers' SwiGLU) reads w12/w3 in a fused op, so input hooks on
    them would see nothing; calib calls them as modules while it walks the blocks. Same weights,
    same math: the same masks as the swiglu_torch layout, and the forward is given back."""
    x = ids()
    fused = tiny("openlm", fused=True)
    plain = tiny("openlm", fused=False)
    plain.load_state_dict(fused.state_dict())
    a = prune(fused, x, method="wanda", sparsity=0.5, keep_masks=True)
    b = prune(plain, x, method="wanda", sparsity=0.5, keep_masks=True)
    assert_same(a.masks, b.masks)
    assert all("forward" not in vars(blk.feed_forward) for blk in _blocks(fused))


def test_dsnot_sub_layers_follow_the_models_names(open_lm_here):
    from calib.prune.methods import dsnot_skips, resolve_options
    opts = resolve_options("dsnot", {})
    # open_lm's feed_forward is DSnoT's "mlp": skipped by default, as LLaMA's mlp is
    assert dsnot_skips("feed_forward.w12", opts) and not dsnot_skips("attention.in_proj", opts)
    with pytest.raises(CalibError, match="skip_sub_layer 'q_proj' names no linear of this model; valid here: "
                                         "no_skip, down_proj, gate_up_proj, o_proj, qkv_proj"):
        prune(tiny("phi3"), ids(), method="dsnot", skip_sub_layer="q_proj")
    with pytest.raises(CalibError, match="skip_sub_layer 'qkv_proj'.*valid here: no_skip, down_proj, gate_proj"):
        prune(tiny("olmo2"), ids(), method="dsnot", skip_sub_layer="qkv_proj")
    a = prune(tiny("phi3"), ids(), method="dsnot", sparsity=0.5, skip_layer="no_skip", skip_sub_layer="qkv_proj",
              update_threshold=1e-3, keep_masks=True)
    b = prune(tiny("phi3"), ids(), method="wanda", sparsity=0.5, keep_masks=True)
    key = "model.layers.0.self_attn.qkv_proj"
    assert torch.equal(a.masks[key], b.masks[key])  # skipped: Wanda's initial mask
    assert any(not torch.equal(a.masks[k], b.masks[k]) for k in a.masks if "qkv" not in k)


# ------------------------------------------------------------------ the fast scorer
@pytest.fixture(scope="module")
def paper_dir(tmp_path_factory):
    from paper_tasks import write_paper_tasks
    return write_paper_tasks(tmp_path_factory.mktemp("paper_tasks"), n=4, mmlu_facts=1)


def _scorer_model(arch, tok, **extra):
    window = {"sliding_window": 48} if arch in WINDOW else {}
    return tiny_model(arch, tokenizer=tok, ctx=1024, hidden=32, intermediate=64, initializer_range=0.2,
                      **{**window, **extra})


def _lms(model, tok, **kw):
    from lm_eval.models.huggingface import HFLM

    from calib.scorer import FastLM
    hf_kw = {"batch_size": 16, **kw}
    return FastLM(pretrained=model, tokenizer=tok, **kw), HFLM(pretrained=model, tokenizer=tok, **hf_kw)


def _scores(lm, inst):
    return lm.loglikelihood(inst, disable_tqdm=True)


@pytest.mark.parametrize("arch", NEW)
def test_fast_scorer_equals_hflm(arch, tiny_tokenizer, paper_dir, monkeypatch):
    """Every paper-task shape, MMLU 5-shot past the sliding window; Gemma's final soft-capping is
    applied (without it the scores would differ) and its embedding scale is the model's own."""
    from paper_tasks import PAPER_SHOTS

    from paper_tasks import built_requests
    from calib.scorer import FastLM
    model = _scorer_model(arch, tiny_tokenizer)
    fast, hf = _lms(model, tiny_tokenizer)
    inst = built_requests(paper_dir, PAPER_SHOTS, limit=4)
    assert max(len(fast.tok_encode(i.args[0])) for i in inst) > 48
    a, b = _scores(fast, inst), _scores(hf, inst)
    assert fast.stats["tokens_fed"] < fast.stats["input_tokens"]  # the fast path ran
    assert max(abs(x[0] - y[0]) for x, y in zip(a, b)) <= 1e-4
    assert [x[1] for x in a] == [y[1] for y in b]
    if arch.startswith("gemma"):  # Gemma 2 caps at 30 by default, Gemma 3 not at all: a cap that bites
        model.config.final_logit_softcapping = 5.0
        a, b = _scores(fast, inst), _scores(hf, inst)
        assert max(abs(x[0] - y[0]) for x, y in zip(a, b)) <= 1e-4
        monkeypatch.setattr(FastLM, "_final_softcap", lambda self: None)
        c = _scores(fast, inst)
        assert max(abs(x[0] - y[0]) for x, y in zip(c, b)) > 1e-2


def test_longrope_inputs_past_the_switch_go_to_hflm(tiny_tokenizer, paper_dir):
    """Phi-3-128k's longrope picks its frequencies by the longest position of a forward pass;
    inputs longer than original_max_position_embeddings are scored by HFLM's own code."""
    from paper_tasks import built_requests
    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0] * 4, "long_factor": [4.0] * 4,
            "original_max_position_embeddings": 256}
    model = _scorer_model("phi3", tiny_tokenizer, rope_parameters=rope, original_max_position_embeddings=256)
    inst = built_requests(paper_dir, {"arc_easy": 0, "mmlu": 5}, limit=4)
    fast, hf = _lms(model, tiny_tokenizer, batch_size=16)  # there HFLM's scores depend on its batches
    longest = max(len(fast.tok_encode(i.args[0] + i.args[1])) for i in inst)
    assert longest > 256
    a, b = _scores(fast, inst), _scores(hf, inst)
    assert a == b and fast.stats == {}  # HFLM's code ran
    short = built_requests(paper_dir, {"arc_easy": 0}, limit=4)
    a, b = _scores(fast, short), _scores(hf, short)
    assert fast.stats and max(abs(x[0] - y[0]) for x, y in zip(a, b)) <= 1e-4


# ------------------------------------------------------------------ the written checkpoint
@pytest.mark.parametrize("arch", NEW)
def test_pruned_checkpoint_reloads_in_plain_transformers(arch, tiny_tokenizer, tmp_path, monkeypatch):
    """`calib prune` writes the checkpoint; AutoModelForCausalLM reads it back with exactly the
    weights of the same pruning run in memory (SparseGPT: kept weights updated too)."""
    from transformers import AutoModelForCausalLM

    from calib import data
    from calib.cli import main

    def shim_ids(source, tokenizer, nsamples, seqlen, seed=0, mode=None, **_):
        return torch.randint(0, len(tokenizer), (nsamples, seqlen), generator=torch.Generator().manual_seed(seed))
    monkeypatch.setattr(data, "calibration_tensor", shim_ids)
    monkeypatch.setattr(data, "default_mode", lambda source: "document")
    kw = {**WINDOW.get(arch, {})}
    src = save(tiny_model(arch, tokenizer=tiny_tokenizer, ctx=64, hidden=32, intermediate=64, **kw),
               tiny_tokenizer, tmp_path / "dense")
    out = tmp_path / "pruned"
    assert main(["prune", "--model", src, "--method", "sparsegpt", "--pattern", "2:4", "--calib", "x",
                 "--nsamples", "4", "--seqlen", "16", "--out", str(out), "--no-progress"]) == 0
    got = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert got.config.model_type == arch
    want = tiny_model(arch, tokenizer=tiny_tokenizer, ctx=64, hidden=32, intermediate=64, **kw)
    res = prune(want, shim_ids(None, tiny_tokenizer, 4, 16), method="sparsegpt", pattern="2:4")
    assert json.loads((out / "prune_report.json").read_text())["mask_hash"] == res.mask_hash
    sd_got, sd_want = got.state_dict(), want.state_dict()
    assert set(sd_got) == set(sd_want)
    for k in sd_want:
        assert torch.equal(sd_got[k], sd_want[k]), k


# ------------------------------------------------------------------ self-generation
@pytest.mark.parametrize("arch", NEW)
def test_self_generation_runs_and_batching_does_not_change_it(arch, tiny_tokenizer, tmp_path):
    from calib import synth
    from calib.world.sources import documents
    model = tiny_model(arch, tokenizer=tiny_tokenizer, ctx=128, hidden=32, intermediate=64,
                       **({"sliding_window": 6} if arch in WINDOW else {}))
    docs = documents("world/pretrain", 6, split="train")
    prompts = [p[:1 + (i * 5) % 9] for i, (_, p) in enumerate(synth.build_prompts(tiny_tokenizer, docs, 8))]
    eos = tiny_tokenizer.eos_token_id

    def gens():
        return [torch.Generator().manual_seed(synth.row_seed(3, i)) for i in range(len(prompts))]
    batched = synth.generate_batch(model, prompts, gens(), 16, eos, eos)
    g = gens()
    assert batched == [synth.generate_batch(model, [p], [g[i]], 16, eos, eos)[0] for i, p in enumerate(prompts)]
    assert any(len(new) > 6 for new, _ in batched)  # past the sliding window
    rows = synth.generate(model, tiny_tokenizer, docs, tmp_path / "g.jsonl", max_new_tokens=12, batch_size=4,
                          progress=False)
    assert len(rows) == len(docs) and all(r["text"].startswith(r["prefix"]) for r in rows)


def test_self_generation_stops_at_a_longrope_switch(tiny_tokenizer, tmp_path, caplog):
    """Past original_max_position_embeddings longrope would switch frequencies mid-generation,
    with the cached keys still rotated by the short ones: generation stops there."""
    from calib import synth
    from calib.world.sources import documents
    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0] * 4, "long_factor": [4.0] * 4,
            "original_max_position_embeddings": 24}
    model = tiny_model("phi3", tokenizer=tiny_tokenizer, ctx=256, hidden=32, intermediate=64,
                       rope_parameters=rope, original_max_position_embeddings=24)
    rows = synth.generate(model, tiny_tokenizer, documents("world/pretrain", 3, split="train"), tmp_path / "g.jsonl",
                          max_new_tokens=100, progress=False)
    assert "before its RoPE switches frequencies" in caplog.text
    assert max(r["new_tokens"] for r in rows) <= 24 - 3  # BOS + 2 prefix tokens


# ------------------------------------------------------------------ what is not supported
def _config_dir(tmp_path, config):
    d = tmp_path / config["model_type"]
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config))
    return d


def test_unsupported_architectures_are_one_line_errors(tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    from calib.cli import main
    from calib.models import ARCHITECTURES, check_architecture
    with pytest.raises(CalibError) as e:
        prune(GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=VOCAB, bos_token_id=0,
                                         eos_token_id=0)), ids(), method="wanda")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("unsupported architecture 'gpt2'; supported: ")
    assert all(a in msg for a in ARCHITECTURES) and "openlm (DCLM-7B) with open_lm installed" in msg
    with pytest.raises(CalibError, match="'gemma3' is the multimodal Gemma 3.*use a text-only checkpoint "
                                         r"\(model_type 'gemma3_text'"):
        check_architecture({"model_type": "gemma3"})
    gpt2 = _config_dir(tmp_path, {"model_type": "gpt2", "n_positions": 64})
    capsys.readouterr()
    assert main(["prune", "--model", str(gpt2), "--calib", "world/pretrain", "--out", str(tmp_path / "o")]) == 2
    # the line that says which source and dtype prune chose comes first; the error is one line
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("calib prune: model ")]
    assert len(err) == 1 and "unsupported architecture 'gpt2'; supported: llama, mistral" in err[0]


def test_openlm_without_open_lm_says_what_to_install(tmp_path, capsys):
    """DCLM-7B's OpenLM checkpoint: open_lm is not installed here, so every entry point says how."""
    from calib.cli import main
    from calib.models import check_architecture, load, openlm_available
    assert not openlm_available()
    d = _config_dir(tmp_path, {"model_type": "openlm", "architectures": ["OpenLMForCausalLM"], "dim": 4096,
                               "n_layers": 32, "n_heads": 32, "seq_len": 2048, "vocab_size": 50432})
    install = "pip install git+https://github.com/mlfoundations/open_lm.git"
    for call in (lambda: check_architecture({"model_type": "openlm"}), lambda: load(d)):
        with pytest.raises(CalibError, match="needs the open_lm package, which is not installed: run `"
                                             + install.replace("+", r"\+") + "`"):
            call()
    assert main(["prune", "--model", str(d), "--calib", "world/pretrain", "--out", str(tmp_path / "o")]) == 2
    assert install in capsys.readouterr().err


def test_openlm_is_pruned_but_not_self_generated_from(open_lm_here, tmp_path):
    from calib import synth
    from calib.experiments import Job
    from calib.models import context_length
    model = tiny("openlm")
    assert context_length(model.config) == 64  # OpenLM's seq_len
    with pytest.raises(CalibError, match="self-generation does not run on 'openlm' models"):
        synth.generate(model, None, ["a b c"], tmp_path / "g.jsonl")
    d = _config_dir(tmp_path, {"model_type": "openlm", "n_layers": 2, "seq_len": 64})
    assert Job(model=str(d), method="wanda").model == str(d.resolve())  # a grid's job takes it
    with pytest.raises(CalibError, match="model .*openlm: self-generation does not run on 'openlm'"):
        Job(model=str(d), method="wanda", synthetic=True)
