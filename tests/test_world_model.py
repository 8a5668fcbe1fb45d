"""The committed world model: it loads like a hub model, and its recipe reproduces it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from calib.world.model import MODEL_DIR, RECIPE


def test_packaged_model_loads_with_auto_classes():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float32).eval()
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert cfg.num_hidden_layers >= 6 and cfg.num_key_value_heads < cfg.num_attention_heads  # GQA
    assert tok.pad_token is None and tok.bos_token == "<s>"  # LLaMA-like: no pad token
    size = sum(f.stat().st_size for f in MODEL_DIR.iterdir())
    assert size <= 20 * 2**20
    ids = torch.tensor([tok("Question: Where was")["input_ids"]])
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()


def test_recipe_reproduces_the_recorded_first_steps():
    """A short retraining from RECIPE gives the recorded losses of the first steps
    (and the same tokenizer), so the committed weights are explained by the recipe."""
    from transformers import AutoTokenizer
    from calib.world.model import train
    log = json.loads((MODEL_DIR / "training_log.json").read_text())
    assert log["recipe"] == RECIPE
    out = train(RECIPE, steps=3, progress=False)
    assert out["tokenizer"].get_vocab() == AutoTokenizer.from_pretrained(MODEL_DIR).get_vocab()
    np.testing.assert_allclose(out["log"]["losses"], log["losses"][:3], rtol=1e-4)
    assert out["log"]["losses"][0] == pytest.approx(np.log(RECIPE["vocab_size"]), rel=0.1)
