"""A stand-in for the paper profile's world outside: models, hub datasets and lm-eval tasks in
their real formats, small enough for CPU, written to local folders.

* ``llama3_tokenizer`` / ``qwen25_tokenizer``: byte-level BPE trained here on world documents,
  saved as a PreTrainedTokenizerFast in the real models' layout: LLaMA-3's pre-tokenizer split,
  special tokens and BOS post-processor; Qwen2.5's specials with no BOS;
* ``llama3_model`` / ``qwen25_model``: random-init models with the real configs' fields
  (LLaMA-3.1: GQA, llama3 rope scaling, rope_theta 5e5, untied embeddings; Qwen2.5: GQA, qkv
  bias, rope_theta 1e6, untied), scaled down to a few narrow layers, saved in bf16;
* ``write_sources``: C4, Wikipedia, SlimPajama, DCLM and Alpaca, and olmo-mix-1124's dclm and
  wiki parts, as data files in each hub dataset's own schema and file layout, with world texts in
  the ``text`` field;
* ``write_tasks``: tests/paper_tasks.py's tasks under the real names, in the real splits;
* ``book_settings``: the paper profile's overrides that point at all of these.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from paper_tasks import write_paper_tasks

# LLaMA-3's pre-tokenizer split (the tiktoken-style pattern of its tokenizer.json)
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _bpe(texts: list[str], vocab: int, specials: list[str]):
    """A byte-level BPE over LLaMA-3's split; the specials follow the learned vocabulary, as in LLaMA-3."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens(specials)
    return tok


def _texts(n: int = 400) -> list[str]:
    from calib.world.sources import documents
    return documents("world/pretrain", n, split="train")


def llama3_tokenizer(vocab: int = 1000, texts=None, max_length: int = 131072):
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    tok = _bpe(texts or _texts(), vocab, LLAMA3_SPECIALS)
    bos = "<|begin_of_text|>"
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                       special_tokens=[(bos, tok.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token="<|end_of_text|>",
                                   model_max_length=max_length, clean_up_tokenization_spaces=False)


def qwen25_tokenizer(vocab: int = 1000, texts=None, max_length: int = 32768):
    from transformers import PreTrainedTokenizerFast
    tok = _bpe(texts or _texts(), vocab, QWEN_SPECIALS)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   model_max_length=max_length, clean_up_tokenization_spaces=False)


def _save(model, tok, folder, tokenizer_class: str) -> str:
    """save_pretrained in bf16; the tokenizer declares the class the real model's does."""
    import torch
    folder = Path(folder)
    model.to(torch.bfloat16).save_pretrained(folder)
    tok.save_pretrained(folder)
    f = folder / "tokenizer_config.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "tokenizer_class": tokenizer_class}, indent=2))
    return str(folder)


def llama3_model(folder, tok, layers: int = 2, hidden: int = 64, heads: int = 8, kv_heads: int = 2,
                 intermediate: int = 224, seed: int = 0) -> str:
    """Meta-Llama-3.1-8B's config fields, scaled down (8B: 32 layers, 4096 wide, 32/8 heads)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, hidden_act="silu", max_position_embeddings=131072,
        rms_norm_eps=1e-5, rope_theta=500000.0, attention_bias=False, mlp_bias=False, tie_word_embeddings=False,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, torch_dtype="bfloat16")
    torch.manual_seed(seed)
    return _save(LlamaForCausalLM(cfg).eval(), tok, folder, "PreTrainedTokenizerFast")


def qwen25_model(folder, tok, layers: int = 2, hidden: int = 64, heads: int = 4, kv_heads: int = 2,
                 intermediate: int = 176, seed: int = 1) -> str:
    """Qwen2.5-7B's config fields, scaled down (7B: 28 layers, 3584 wide, 28/4 heads, qkv bias)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, hidden_act="silu", max_position_embeddings=32768,
        rms_norm_eps=1e-6, rope_theta=1000000.0, use_sliding_window=False, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=tok.eos_token_id, torch_dtype="bfloat16")
    torch.manual_seed(seed)
    return _save(Qwen2ForCausalLM(cfg).eval(), tok, folder, "Qwen2Tokenizer")


# --------------------------------------------------------------------------- sources
def _parquet(path: Path, rows: list[dict]) -> Path:
    import pandas as pd
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def write_sources(folder, n: int = 60) -> dict[str, str]:
    """The hub sources (the paper's five, OLMo-2's mix parts) as local copies in their datasets' schemas and layouts; returns
    source -> path for CALIB_SOURCES (a config folder of shards, or one file)."""
    from calib.world import sources
    from calib.world.tasks import alpaca_texts
    root = Path(folder)
    docs = {r: sources.documents(w, n, seed=3, split="calib") for r, w in
            (("c4", "world/web"), ("wikipedia", "world/encyclopedia"), ("slimpajama", "world/mixed"),
             ("dclm", "world/pretrain"))}
    # allenai/c4: en/c4-train.NNNNN-of-01024.json.gz, one JSON object a line
    c4 = root / "c4" / "en"
    c4.mkdir(parents=True, exist_ok=True)
    for shard, part in enumerate((docs["c4"][: n // 2], docs["c4"][n // 2:])):
        with gzip.open(c4 / f"c4-train.{shard:05d}-of-01024.json.gz", "wt", encoding="utf-8") as f:
            for i, t in enumerate(part):
                f.write(json.dumps({"text": t, "timestamp": f"2019-04-{10 + i % 18:02d}T08:1{i % 10}:00Z",
                                    "url": f"https://example.org/web/{shard}/{i}"}) + "\n")
    # wikimedia/wikipedia: 20231101.en/train-NNNNN-of-00041.parquet with id, url, title, text
    wiki = _parquet(root / "wikipedia" / "20231101.en" / "train-00000-of-00041.parquet",
                    [{"id": str(12 + i), "url": f"https://en.wikipedia.org/wiki?curid={12 + i}",
                      "title": t.split(".")[0][:60], "text": t} for i, t in enumerate(docs["wikipedia"])])
    # DKYoon/SlimPajama-6B: data/train-NNNNN-of-00048.parquet with text, meta, __index_level_0__
    sets = ["RedPajamaCommonCrawl", "RedPajamaC4", "RedPajamaWikipedia", "RedPajamaBook"]
    _parquet(root / "slimpajama" / "data" / "train-00000-of-00048.parquet",
             [{"text": t, "meta": {"redpajama_set_name": sets[i % 4]}, "__index_level_0__": i}
              for i, t in enumerate(docs["slimpajama"])])
    # robbiegwaldd/dclm-micro: DCLM-baseline's record fields
    dclm = _parquet(root / "dclm" / "output_0.parquet", [{
        "bff_contained_ngram_count_before_dedup": 0, "language_id_whole_page_fasttext": {"en": 0.95},
        "metadata": {"Content-Length": str(len(t)), "Content-Type": "application/http; msgtype=response",
                     "WARC-Date": "2019-04-18T10:12:44Z", "WARC-Record-ID": f"<urn:uuid:{i:08d}>",
                     "WARC-Target-URI": f"https://example.org/dclm/{i}", "WARC-Type": "conversion"},
        "previous_word_count": len(t.split()), "text": t, "url": f"https://example.org/dclm/{i}",
        "warcinfo": "isPartOf: CC-MAIN-2019-18", "fasttext_openhermes_reddit_eli5_vs_rw_v2_bigram_200k_train_prob":
        0.02} for i, t in enumerate(docs["dclm"])])
    # tatsu-lab/alpaca: data/train-00000-of-00001-*.parquet with instruction, input, output, text
    rows = []
    for t in alpaca_texts(n):
        instruction, _, output = t.partition("\n")
        rows.append({"instruction": instruction, "input": "", "output": output or instruction,
                     "text": "Below is an instruction that describes a task. Write a response that appropriately "
                             f"completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
                             f"{output or instruction}"})
    alpaca = _parquet(root / "alpaca" / "data" / "train-00000-of-00001-a09b74b3ef9c3b56.parquet", rows)
    # allenai/olmo-mix-1124's dclm and wiki parts: dolma records (id, text, source, ...) in .json.gz shards
    mix = {}
    for name, part, role in (("olmo-mix-dclm", "dclm", "dclm"), ("olmo-mix-wiki", "wiki", "wikipedia")):
        folder = root / "olmo-mix-1124" / "data" / part
        folder.mkdir(parents=True, exist_ok=True)
        with gzip.open(folder / f"{part}-0000.json.gz", "wt", encoding="utf-8") as f:
            for i, t in enumerate(docs[role]):
                f.write(json.dumps({"id": f"{part}-{i}", "text": t, "source": part, "added": "2024-11-01",
                                    "metadata": {"length": len(t)}}) + "\n")
        mix[name] = str(folder)
    return {"c4": str(c4), "wikipedia": str(wiki.parent), "slimpajama": str(root / "slimpajama"),
            "dclm": str(dclm), "alpaca": str(alpaca.parent), **mix}


def sources_env(paths: dict[str, str]) -> str:
    """The CALIB_SOURCES value for ``paths``."""
    return ",".join(f"{k}={v}" for k, v in paths.items())


def write_tasks(folder, n: int = 8, **kw) -> str:
    return str(write_paper_tasks(folder, n=n, **kw))
