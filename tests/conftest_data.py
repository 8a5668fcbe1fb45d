"""Tiny tokenizer and random Llama shared by the calibration-data tests (built once per process)."""
from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def tiny_tokenizer():
    from calib.world.model import train_tokenizer
    from calib.world.sources import documents
    return train_tokenizer(documents("world/pretrain", 200, split="train"), 400)


@lru_cache(maxsize=1)
def tiny_model():
    from transformers import LlamaConfig, LlamaForCausalLM
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return LlamaForCausalLM(cfg).eval()


def save_tiny(path) -> str:
    """Write the tiny model and tokenizer as a save_pretrained folder (for CLI and subprocess tests)."""
    tiny_model().save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return str(path)
