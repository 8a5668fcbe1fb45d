"""Shared fixtures: a tiny world tokenizer and a tiny random LLaMA (session-scoped)."""
from __future__ import annotations

import os

import pytest

from factory import tiny_world_model, world_tokenizer

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _threads():
    import torch
    torch.set_num_threads(1)  # the machine has 2 cores; background jobs share them


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return world_tokenizer(600)


@pytest.fixture(scope="session")
def tiny_llama():
    return tiny_world_model(600, 512)


@pytest.fixture()
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CALIB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
