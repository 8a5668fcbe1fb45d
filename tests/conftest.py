"""Shared fixtures: a tiny world tokenizer and a tiny random LLaMA (session-scoped)."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _threads():
    import torch
    torch.set_num_threads(1)  # the machine has 2 cores; background jobs share them


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from calib.world import model as wm
    from calib.world import sources
    return wm.train_tokenizer(sources.documents("world/pretrain", 200, split="train"), 600)


@pytest.fixture(scope="session")
def tiny_llama(tiny_tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=len(tiny_tokenizer), max_position_embeddings=512,
                      bos_token_id=tiny_tokenizer.bos_token_id, eos_token_id=tiny_tokenizer.eos_token_id)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture()
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CALIB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
