"""The hub's datasets as calibration sources: local copies, and one-line errors instead of
network tracebacks.

A hub source (``c4``, ``wikipedia``, ``slimpajama``, ``dclm``, ``alpaca``, and OLMo-2's mix
``olmo-mix-dclm``, ``olmo-mix-wiki``: ``data.HUB_SOURCES``) is read from the Hugging Face hub
unless env ``CALIB_SOURCES`` points it at a local copy:

    CALIB_SOURCES="c4=/data/c4/en,wikipedia=/data/wikipedia/20231101.en,olmo-mix-dclm=/data/olmo-mix-1124/dclm"
    CALIB_SOURCES=/data/sources.yaml        # a YAML mapping, e.g. {c4: /data/c4/en}

A copy is one data file (.jsonl, .json, .json.gz, .jsonl.gz, .parquet, .txt) or a folder of
such files of one kind (a downloaded snapshot of the dataset's config, e.g. C4's ``en/``
shards); rows keep the dataset's own schema, and the text is read from its ``text`` field.
A copy stands for the hub dataset under the same name (same job keys): the row's
``calib_hash`` records the token ids actually used.

Without network the hub fails in one line that names the source, the dataset id and this
alternative, at once: an unreachable endpoint is detected with one TCP connect before
``datasets`` starts its retries (which took 7-33 s). Imports only calib.errors.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from calib.errors import CalibError

ENV = "CALIB_SOURCES"
PROBE_TIMEOUT = 3.0  # seconds for the one TCP connect to the hub endpoint
# file suffix -> datasets builder; the longest matching suffix wins (.json.gz before .gz)
BUILDERS = {".jsonl": "json", ".json": "json", ".jsonl.gz": "json", ".json.gz": "json",
            ".parquet": "parquet", ".txt": "text"}
_PROXIES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def builder(path: Path) -> str | None:
    """The datasets builder for a data file, by suffix (None: not a data file)."""
    name = path.name.lower()
    hits = [s for s in BUILDERS if name.endswith(s)]
    return BUILDERS[max(hits, key=len)] if hits else None


def _parse(value: str) -> dict[str, str]:
    p = Path(value).expanduser()
    if p.suffix in (".yaml", ".yml", ".json") and p.is_file():
        import yaml
        m = yaml.safe_load(p.read_text()) or {}
        if not isinstance(m, dict):
            raise CalibError(f"{ENV}={value}: expected a mapping of source -> local path")
        return {str(k): str(v) for k, v in m.items()}
    out = {}
    for part in (x.strip() for x in value.split(",")):
        if not part:
            continue
        name, sep, path = part.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise CalibError(f"{ENV}: {part!r} is not name=path (e.g. {ENV}='c4=/data/c4/en,dclm=/data/dclm')")
        out[name.strip()] = path.strip()
    return out


def local_copies(names) -> dict[str, Path]:
    """name -> local copy from env CALIB_SOURCES; ``names`` are the valid source names."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return {}
    out = {}
    for name, path in _parse(value).items():
        if name not in names:
            raise CalibError(f"{ENV}: unknown source {name!r}; valid choices: {', '.join(names)}")
        p = Path(path).expanduser().resolve()
        if not p.exists():
            raise CalibError(f"{ENV}: the local copy of {name!r} at {p} does not exist")
        out[name] = p
    return out


def local_args(name: str, path: Path) -> dict:
    """datasets.load_dataset arguments for a local copy (a file, or a folder of one kind of file)."""
    if path.is_file():
        files = [path]
    else:
        files = sorted(f for f in path.rglob("*") if f.is_file() and builder(f) and not f.name.startswith("."))
    kinds = {builder(f) for f in files} - {None}
    if len(kinds) != 1:
        found = "no data files" if not kinds else f"files of several kinds ({', '.join(sorted(kinds))})"
        raise CalibError(f"{ENV}: the local copy of {name!r} at {path} has {found}; expected one file or a "
                         f"folder of one kind: {', '.join(BUILDERS)}")
    args = dict(path=kinds.pop(), data_files=[str(f) for f in files], split="train")
    if args["path"] == "text":
        args["sample_by"] = "paragraph"
    return args


def offline() -> bool:
    """Whether HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _dataset_id(load_args: dict) -> str:
    name = load_args.get("name")
    return f"{load_args.get('path')}" + (f" (config {name})" if name else "")


def unavailable(name: str, load_args: dict, why: str) -> CalibError:
    return CalibError(f"source {name!r}: the hub dataset {_dataset_id(load_args)} cannot be read ({why}); "
                      f"point it at a local copy in the dataset's own schema: {ENV}='{name}=/path/to/file-or-folder'")


def probe(name: str, load_args: dict) -> None:
    """Fail at once when the hub endpoint cannot be reached (offline mode: datasets itself
    fails fast, or reads its cache; behind a proxy a direct connect proves nothing)."""
    if offline() or any(os.environ.get(k) for k in _PROXIES):
        return
    from huggingface_hub import constants
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=PROBE_TIMEOUT).close()
    except OSError as e:
        raise unavailable(name, load_args, f"{url.hostname} is unreachable: {e.strerror or e}") from None


@contextlib.contextmanager
def reading(name: str, load_args: dict, names):
    """Yield the load_dataset arguments for hub source ``name`` (its local copy's when
    CALIB_SOURCES has one); network, gated and missing-dataset errors become one CalibError."""
    copy = local_copies(names).get(name)
    if copy is not None:
        yield local_args(name, copy)
        return
    probe(name, load_args)
    try:
        yield load_args
    except CalibError:
        raise
    except OSError as e:  # ConnectionError, offline mode, gated or missing repository, HTTP errors
        why = "offline mode (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and not in the cache" if offline() else \
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
        raise unavailable(name, load_args, why) from None


# ---------------------------------------------------------------------------------- models
def looks_like_id(given: str) -> bool:
    """``org/name`` that is not a local path: a hub model id."""
    p = Path(given).expanduser()
    return given.count("/") == 1 and not given.startswith((".", "/", "~")) and not p.exists() \
        and not p.parent.exists() and all(given.split("/"))


def resolve_model(given: str, revision: str | None = None) -> str:
    """A hub model id's local snapshot folder (downloaded through huggingface_hub, or read from
    its cache when offline: HF_HUB_OFFLINE); anything else is returned as given. Offline and not
    cached, or unreachable, is a one-line CalibError naming `hf download`."""
    given = str(given)
    if not looks_like_id(given):
        if revision is not None:
            raise CalibError(f"--revision {revision!r} applies to hub model ids (org/name) only; {given!r} is "
                             f"a local folder or an alias")
        return given
    from huggingface_hub import snapshot_download
    fetch = f"fetch it with `hf download {given}" + (f" --revision {revision}" if revision else "") + "`"
    if not offline():
        probe_model(given, fetch)
    try:
        return snapshot_download(given, revision=revision, local_files_only=offline())
    except Exception as e:  # not cached offline, a missing or gated repository, a network error
        why = "offline (HF_HUB_OFFLINE) and not in the local hub cache" if offline() else \
            f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
        raise CalibError(f"hub model {given!r}" + (f" at revision {revision!r}" if revision else "") +
                         f" cannot be read ({why}); {fetch} (a gated model needs its licence accepted on the hub "
                         f"and HF_TOKEN set)") from None


def probe_model(given: str, fetch: str) -> None:
    """Fail at once when the hub endpoint cannot be reached (a cached snapshot is used offline)."""
    if any(os.environ.get(k) for k in _PROXIES):
        return
    from huggingface_hub import constants
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=PROBE_TIMEOUT).close()
    except OSError as e:
        raise CalibError(f"hub model {given!r} cannot be read ({url.hostname} is unreachable: {e.strerror or e}); "
                         f"{fetch}, or set HF_HUB_OFFLINE=1 to use the local hub cache") from None


def revision_of(path) -> str | None:
    """The hub commit of a snapshot folder (``.../models--org--name/snapshots/<commit>``), else None."""
    p = Path(path)
    parts = p.resolve().parts if p.exists() else p.parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-1]
    return None


def model_hint(given: str) -> str:
    """What to add when ``given`` is neither a model folder nor an alias and looks like a hub id ('' otherwise)."""
    if looks_like_id(given):
        return f"; {given!r} looks like a hub model id: fetch it with `hf download {given}`"
    return ""
