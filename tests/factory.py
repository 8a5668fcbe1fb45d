"""One factory for the tests' tiny random models and world tokenizers.

Sizes are arguments, so each test states what it needs (a context of 64 or 512,
a vocabulary of 96 or a trained 400-token BPE) instead of keeping its own builder.
"""
from __future__ import annotations

from functools import lru_cache

ARCHS = ("llama", "mistral", "qwen2", "qwen3")


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
    }[arch]
    if tokenizer is not None:
        extra = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
                 "eos_token_id": tokenizer.eos_token_id, **extra}
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
