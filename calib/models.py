"""Which model: the packaged world models' aliases, loading any causal-LM folder
with clear errors, the model's identity (a hash of its files), its context and device.

Every interface (CLI, grids, notebooks) resolves a model through ``model_path`` and
loads it through ``load``, so ``world`` means the same thing everywhere. Knows
nothing of calibration data, pruning or experiments.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from calib.cache import cache_dir, digest
from calib.errors import CalibError
from calib.io import atomic_write

MODEL_ALIASES = ("world", "world-qwen")  # the packaged world models (`calib world build [--arch qwen2]`)
DTYPES = ("float32", "bfloat16", "float16")


def model_path(model: str | Path) -> Path:
    """The folder of a model alias ('world', 'world-qwen') or of a path."""
    from calib.world.model import MODEL_DIR, QWEN_DIR
    return dict(zip(MODEL_ALIASES, (MODEL_DIR, QWEN_DIR))).get(str(model)) or Path(model).expanduser()


def _missing(path: Path) -> CalibError:
    from calib.hub import model_hint
    return CalibError(f"no model at {path} (config.json missing); valid: 'world' or 'world-qwen' (the packaged "
                      f"world models; `calib world build [--arch qwen2]` creates them) or a folder written by "
                      f"save_pretrained{model_hint(str(path))}")


def model_config(model: str | Path) -> dict:
    """The model's config.json as a dict (read once per file version)."""
    f = model_path(model) / "config.json"
    if not f.is_file():
        raise _missing(f.parent)
    st = f.stat()
    return _read_config(str(f.resolve()), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=64)
def _read_config(path: str, mtime_ns: int, size: int) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except ValueError as e:
        raise CalibError(f"{path}: not valid JSON ({e}); point --model at a folder written by save_pretrained") from None


def context_length(config) -> int | None:
    """Positions the model can attend over (``max_position_embeddings``), from a config object or dict."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    return get("max_position_embeddings", None)


# ------------------------------------------------------------------------- identity
_ID_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".model")
_IDS: dict[str, str] = {}


def _identity_file(name: str) -> bool:
    return name == "config.json" or name.startswith("tokenizer") or name == "special_tokens_map.json" \
        or name.endswith(_ID_SUFFIXES)


def model_identity(path) -> str:
    """sha256 over the config, weight and tokenizer files of a model folder; cached
    per (path, file sizes and mtimes) in memory and under the cache dir."""
    path = model_path(path).resolve()
    files = sorted(f for f in path.iterdir() if f.is_file() and _identity_file(f.name))
    stat = digest([str(path)] + [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files])
    if stat not in _IDS:
        memo = cache_dir() / "model_ids" / stat
        if memo.is_file():
            _IDS[stat] = memo.read_text().strip()
        else:
            h = hashlib.sha256()
            for f in files:
                h.update(f.name.encode() + b"\0")
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 22), b""):
                        h.update(chunk)
            _IDS[stat] = h.hexdigest()
            atomic_write(memo, _IDS[stat])
    return _IDS[stat]


# ---------------------------------------------------------------------------- loading
def load_tokenizer(model: str | Path):
    """The tokenizer class the folder declares. transformers 5's AutoTokenizer swaps in
    the model type's own class for some types (a qwen2 config gets Qwen2Tokenizer, which
    re-splits digits and adds a pad token outside the vocabulary); the world tokenizers
    are plain tokenizers.json files and must load as such."""
    from transformers import AutoTokenizer
    path = model_path(model)
    cfg = path / "tokenizer_config.json"
    if cfg.is_file() and json.loads(cfg.read_text()).get("tokenizer_class") == "TokenizersBackend":
        from transformers import TokenizersBackend
        return TokenizersBackend.from_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def load(model: str | Path | None = None, dtype: str = "float32"):
    """(model, tokenizer) of an alias or a causal-LM folder, in eval mode on the CPU, with a
    clear error and a rebuild hint when the folder is missing or corrupt. ``dtype`` is one
    of DTYPES, or "auto" for the dtype the weights were saved in."""
    import torch
    from transformers import AutoModelForCausalLM

    from calib.world.model import MODEL_DIR
    path = model_path("world" if model is None else model)
    hint = "run `calib world build` to (re)create the world model" if path == MODEL_DIR else \
        "point --model at a folder written by save_pretrained"
    if not (path / "config.json").is_file():
        raise CalibError(f"no model at {path} (config.json missing); {hint}") if path == MODEL_DIR else _missing(path)
    if dtype != "auto" and dtype not in DTYPES:
        raise CalibError(f"unknown dtype {dtype!r}; valid choices: auto, {', '.join(DTYPES)}")
    try:
        tok = load_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype="auto" if dtype == "auto" else getattr(torch, dtype))
    except Exception as e:  # corrupt weights, bad JSON, truncated safetensors ...
        raise CalibError(f"could not load the model at {path}: {type(e).__name__}: {e}; {hint}") from e
    model.eval()
    return model, tok


def device(name: str | None = None) -> str:
    """The compute device: ``name``, or cuda when available, else cpu."""
    import torch
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
