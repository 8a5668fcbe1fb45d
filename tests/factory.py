"""One factory for the tests' tiny random models and world tokenizers.

Sizes are arguments, so each test states what it needs (a context of 64 or 512,
a vocabulary of 96 or a trained 400-token BPE) instead of keeping its own builder.
"""
from __future__ import annotations

from functools import lru_cache

ARCHS = ("llama", "mistral", "qwen2", "qwen3", "olmo2", "gemma2", "gemma3_text", "phi3")
# what a tiny config of each needs beyond the shared sizes: Gemma's head_dim defaults to 256 and
# Gemma 3's layer pattern to 5 sliding layers per full one; Phi-3's pad id (32000) is past a tiny vocabulary
ARCH_EXTRA = {
    "olmo2": {"eos_token_id": 2},
    "gemma2": {"head_dim": 16},
    "gemma3_text": {"head_dim": 16, "layer_types": None},
    "phi3": {"pad_token_id": 0, "eos_token_id": 2},
}


@lru_cache(maxsize=4)
def world_tokenizer(vocab: int = 600):
    """A byte-level BPE (the world model's recipe) trained on 200 world pretraining documents."""
    from calib.world.model import train_tokenizer
    from calib.world.sources import documents
    return train_tokenizer(documents("world/pretrain", 200, split="train"), vocab)


def tiny_model(arch: str = "llama", vocab: int = 96, ctx: int = 64, hidden: int = 64, intermediate: int = 128,
               layers: int = 2, heads: int = 4, kv_heads: int = 2, tokenizer=None, seed: int = 0,
               attn: str | None = None, **extra):
    """A random decoder of ``arch`` in eval mode; with ``tokenizer`` its vocabulary and
    BOS/EOS ids come from the tokenizer."""
    import torch
    import transformers as tf
    config_cls, model_cls = {
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM), "mistral": (tf.MistralConfig, tf.MistralForCausalLM),
        "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM), "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM),
        "olmo2": (tf.Olmo2Config, tf.Olmo2ForCausalLM), "gemma2": (tf.Gemma2Config, tf.Gemma2ForCausalLM),
        "gemma3_text": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM), "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM),
    }[arch]
    defaults = dict(ARCH_EXTRA.get(arch, {}))
    if defaults.get("head_dim"):
        defaults["head_dim"] = hidden // heads
    if "layer_types" in defaults:  # alternate sliding and full layers, a sliding one first
        defaults["layer_types"] = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
    if tokenizer is not None:
        defaults.update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=0)
    extra = {**defaults, **extra}
    cfg = config_cls(**{"vocab_size": vocab, "hidden_size": hidden, "intermediate_size": intermediate,
                        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
                        "max_position_embeddings": ctx, **extra})
    if attn:
        cfg._attn_implementation = attn
    torch.manual_seed(seed)
    return model_cls(cfg).eval()


def save(model, tokenizer, path) -> str:
    """A save_pretrained folder of both (for CLI, grid and subprocess tests)."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def tiny_world_model(vocab: int = 600, ctx: int = 512, **kw):
    """A tiny random LLaMA over ``world_tokenizer(vocab)``: the shape most tests use."""
    return tiny_model(tokenizer=world_tokenizer(vocab), hidden=32, intermediate=64, ctx=ctx, **kw)
