"""The world model: a byte-level BPE tokenizer and a small LlamaForCausalLM trained on
``world/pretrain`` (split "train") only.

``RECIPE`` is the exact recipe; the committed weights in ``calib/world/model/``
(and ``model_qwen/``, from ``QWEN_RECIPE``) were produced with it on one H100 by
``bench/world_recipes.py`` (variants ``long_hot`` and ``hot_qwen``), which calls
the same ``train(recipe, device="cuda")`` as ``calib world build --retrain --device cuda``:
about 6 minutes there, against roughly 10 hours on one CPU thread.
``training_log.json`` records the loss of every step, so that a short retraining
(on any device) can be checked against it.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from calib.errors import CalibError

MODEL_DIR = Path(__file__).parent / "model"
QWEN_DIR = Path(__file__).parent / "model_qwen"  # a second architecture for the book's "beyond" chapter
ARCHS = ("llama", "qwen2")

RECIPE = {
    "kb_seed": 0,
    "data_seed": 0,
    "train_docs": 100000,         # world/pretrain, split "train": ~20M tokens
    "vocab_size": 4096,
    "tokenizer_docs": 8000,
    "hidden_size": 192,
    "intermediate_size": 512,
    "num_hidden_layers": 6,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,      # grouped-query attention, 3 query heads per KV head
    "max_position_embeddings": 512,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "seq_len": 256,
    "batch_size": 128,
    "steps": 2500,                 # 82M tokens, ~4 passes over the corpus
    "lr": 8e-3,                    # a high rate: Wanda beats magnitude at 60% (R3); 4e-3 trained worse
    "min_lr_ratio": 0.1,
    "warmup_steps": 200,
    "weight_decay": 0.0,           # no decay: a lever for outlier features (R3)
    "betas": [0.9, 0.95],
    "grad_clip": 1.0,
    "torch_seed": 0,
    "threads": 1,             # 1 thread: robust on a shared 2-core machine
    "save_dtype": "float32",
}


# The Qwen-style world model: same data, tokenizer, sizes and schedule, Qwen2 blocks
# (it exists to test whether findings carry over to a second architecture).
QWEN_RECIPE = {**RECIPE, "arch": "qwen2", "rope_theta": 1000000.0}


# --------------------------------------------------------------------------- tokenizer
def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE with LLaMA-like specials: <s> prepended, no pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=RECIPE["max_position_embeddings"],
                                   clean_up_tokenization_spaces=False)


# ------------------------------------------------------------------------------ model
def make_config(recipe: dict, tokenizer):
    """LlamaConfig, or Qwen2Config (biased q/k/v projections, rope theta 1e6) for
    ``recipe["arch"] == "qwen2"``; the recipe's sizes either way."""
    from transformers import LlamaConfig, Qwen2Config
    arch = recipe.get("arch", "llama")
    if arch not in ARCHS:
        raise CalibError(f"unknown architecture {arch!r}; valid choices: {', '.join(ARCHS)}")
    cls = LlamaConfig if arch == "llama" else Qwen2Config
    return cls(
        vocab_size=len(tokenizer), hidden_size=recipe["hidden_size"],
        intermediate_size=recipe["intermediate_size"], num_hidden_layers=recipe["num_hidden_layers"],
        num_attention_heads=recipe["num_attention_heads"], num_key_value_heads=recipe["num_key_value_heads"],
        max_position_embeddings=recipe["max_position_embeddings"], rope_theta=recipe["rope_theta"],
        tie_word_embeddings=recipe["tie_word_embeddings"], bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, rms_norm_eps=1e-5,
    )


def pack(tokenizer, texts: list[str], seq_len: int) -> np.ndarray:
    """<s> doc </s> <s> doc </s> ... cut into windows; every window starts with <s>
    (real LLMs put massive activations on the first token, a lever for R3)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        stream.append(eos)
    body = seq_len - 1
    n = len(stream) // body
    arr = np.asarray(stream[: n * body], dtype=np.int64).reshape(n, body)
    return np.concatenate([np.full((n, 1), bos, dtype=np.int64), arr], axis=1)


def _train_document(args) -> str:
    from calib.world import sources
    index, seed = args
    return sources.document("world/pretrain", index, seed=seed, split="train")


def training_corpus(recipe: dict, procs: int = 1) -> list[str]:
    """The pretraining documents, minus any that equal a held-out instruction item
    (the Alpaca-role items must never be seen in pretraining). Documents are
    independent, so ``procs`` > 1 writes them in that many forked processes, in order."""
    from calib.world import sources
    from calib.world.tasks import alpaca_texts
    held_out = set(alpaca_texts())
    if procs > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(procs) as pool:
            docs = pool.map(_train_document, [(i, recipe["data_seed"]) for i in range(recipe["train_docs"])],
                            chunksize=256)
    else:
        docs = sources.documents("world/pretrain", recipe["train_docs"], seed=recipe["data_seed"], split="train")
    return [d for d in docs if d not in held_out]


def lr_at(step: int, recipe: dict) -> float:
    if step < recipe["warmup_steps"]:
        return recipe["lr"] * (step + 1) / recipe["warmup_steps"]
    t = (step - recipe["warmup_steps"]) / max(1, recipe["steps"] - recipe["warmup_steps"])
    floor = recipe["min_lr_ratio"]
    return recipe["lr"] * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def train(recipe: dict = RECIPE, out_dir: Path | None = None, steps: int | None = None,
          log_every: int = 50, progress: bool = True, device: str = "cpu", docs: list[str] | None = None) -> dict:
    """Train tokenizer and model from ``recipe``. With ``out_dir`` the result is saved
    with ``save_pretrained``. ``steps`` truncates the run (used by the reproduction test).
    ``device="cuda"`` trains on a GPU in float32 (TF32 off, so the first steps' losses
    match a CPU run to ~1e-5); ``docs`` passes a corpus already built from ``recipe``."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM

    from calib.errors import CalibError
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise CalibError(f"steps must be an integer >= 1 (or None: the recipe's {recipe['steps']}), got {steps!r}")
    torch.set_num_threads(recipe["threads"])
    torch.backends.cuda.matmul.allow_tf32 = False
    t0 = time.time()
    docs = training_corpus(recipe) if docs is None else docs
    tokenizer = train_tokenizer(docs[: recipe["tokenizer_docs"]], recipe["vocab_size"])
    data = pack(tokenizer, docs, recipe["seq_len"])
    torch.manual_seed(recipe["torch_seed"])
    model = AutoModelForCausalLM.from_config(make_config(recipe, tokenizer)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], betas=tuple(recipe["betas"]),
                            weight_decay=recipe["weight_decay"])
    order_rng = np.random.default_rng([recipe["data_seed"], 0x5EED])
    n_steps = recipe["steps"] if steps is None else steps
    losses: list[float] = []
    order = np.concatenate([order_rng.permutation(len(data)) for _ in range(
        math.ceil(recipe["steps"] * recipe["batch_size"] / len(data)) + 1)])
    model.train()
    bar = tqdm(range(n_steps), desc="train world model", disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, recipe)
        idx = order[step * recipe["batch_size"]:(step + 1) * recipe["batch_size"]]
        batch = torch.from_numpy(data[idx]).to(device)
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["grad_clip"])
        opt.step()
        losses.append(float(loss.detach()))
        if step % log_every == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-log_every:]):.3f}")
    model.eval().to("cpu")
    log = {"recipe": recipe, "losses": losses, "device": str(device), "train_tokens": int(n_steps * recipe["batch_size"] * recipe["seq_len"]),
           "corpus_tokens": int(data.size), "seconds": time.time() - t0,
           "params": sum(p.numel() for p in model.parameters())}
    if out_dir is not None:
        save(model, tokenizer, log, Path(out_dir))
    return {"model": model, "tokenizer": tokenizer, "log": log}


def save(model, tokenizer, log: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "training_log.json").write_text(json.dumps(log, indent=1))
