"""A footage library on disk: shots with features and text, searchable by meaning.

Layout of a library folder:
    library.sqlite   metadata (files, shots, each shot's embedding) - the source of truth
    shots.faiss      inner-product index over unit vectors, ids = shot ids (IndexIDMap)
    thumbs/          one JPEG per shot
    cache/           text-embedding cache
    library.lock     held (flock) by the one process that writes

SQLite commits are atomic, so an interrupted writer leaves the last committed state. The faiss
file is written atomically too but may lag behind SQLite after a kill; `open` notices that its
ids differ from the shots table and rebuilds it from the embeddings kept in SQLite.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .embedding import DIM, MODEL_NAME, TextEmbedder, normalise
from .errors import MontageError

SCHEMA_VERSION = 1
DB_FILE = "library.sqlite"
INDEX_FILE = "shots.faiss"
LOCK_FILE = "library.lock"
THUMBS_DIR = "thumbs"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    hash TEXT NOT NULL,            -- content hash (sampled blocks, see indexer.content_hash)
    text_sig TEXT NOT NULL DEFAULT '',  -- hash of the sidecar text used for its shots
    status TEXT NOT NULL,          -- 'done' | 'failed'
    error TEXT NOT NULL DEFAULT '',
    duration REAL NOT NULL DEFAULT 0,
    indexed_at REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS shots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id INTEGER REFERENCES files(id),
    source TEXT NOT NULL,
    start REAL NOT NULL, "end" REAL NOT NULL,
    fps REAL NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    thumbnail TEXT NOT NULL,
    lab_l REAL NOT NULL, lab_a REAL NOT NULL, lab_b REAL NOT NULL,
    brightness REAL NOT NULL, sharpness REAL NOT NULL, motion REAL NOT NULL,
    camera TEXT NOT NULL,
    text TEXT NOT NULL,
    tags TEXT NOT NULL,            -- JSON list
    generated INTEGER NOT NULL DEFAULT 0,
    has_audio INTEGER NOT NULL DEFAULT 0,
    embedding BLOB NOT NULL        -- float32 (384,), unit length
);
CREATE INDEX IF NOT EXISTS shots_file ON shots(file_id);
"""

_SHOT_COLUMNS = ("id, file_id, source, start, \"end\", fps, width, height, thumbnail, lab_l, lab_a, "
                 "lab_b, brightness, sharpness, motion, camera, text, tags, generated, has_audio")

_STOPWORDS = frozenset(
    "a an the and or but of in on at to for from by with without into onto over under is are was "
    "were be been being it its this that these those as then than so such there here very".split())


@dataclass
class Shot:
    """One shot: a time range of one source video and what is known about it."""
    id: int
    source: str                      # absolute path of the video file
    start: float                     # seconds in the source
    end: float
    fps: float
    width: int
    height: int
    thumbnail: str                   # path of a JPEG inside the library folder
    lab: tuple[float, float, float]  # mean CIE L*a*b* colour
    brightness: float                # 0..1
    sharpness: float                 # 0..1, variance of Laplacian squashed
    motion: float                    # 0..1, mean frame-to-frame change
    camera: str                      # "static" | "pan" | "zoom"
    text: str                        # caption + tags + transcript used for retrieval
    tags: list[str] = field(default_factory=list)
    generated: bool = False          # True for shots the generator made (film pipeline)
    has_audio: bool = False          # the source has an audio stream
    file_id: int | None = None       # row of the files table (None for generated shots)

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass
class FileRecord:
    """One row of the files table."""
    id: int
    path: str
    size: int
    mtime: float
    hash: str
    status: str                      # "done" | "failed"
    error: str
    duration: float
    text_sig: str = ""


def tokens(text: str) -> list[str]:
    """Lower-case word stems used by keyword matching (stopwords dropped)."""
    out = []
    for w in re.findall(r"[^\W_]+", text.lower()):
        if w in _STOPWORDS:
            continue
        out.append(stem(w))
    return out


def stem(word: str) -> str:
    """A crude suffix stripper: 'dogs'/'running'/'walked' -> 'dog'/'runn'/'walk'. Symmetric use
    on both sides is all keyword matching needs."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


class Library:
    """Read and write one library folder. Use `open` or `create`, not the constructor."""

    def __init__(self, folder: Path, con: sqlite3.Connection):
        self.folder = Path(folder)
        self._con = con
        self._embedder: TextEmbedder | None = None
        self._index = None               # faiss index, loaded lazily
        self._index_dirty = False
        self._keywords: dict[str, set[int]] | None = None
        self._lock_fd: int | None = None
        self._lock_depth = 0

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: str | os.PathLike) -> "Library":
        """Open an existing library; MontageError (one line) if missing or corrupt."""
        folder = Path(folder).expanduser().resolve()
        db = folder / DB_FILE
        if not folder.is_dir():
            raise MontageError(f"library {folder} does not exist (create it with 'jvideo index FOLDER --library {folder}')")
        if not db.is_file():
            raise MontageError(f"{folder} is not a jvideo library (no {DB_FILE})")
        con = cls._connect(db)
        try:
            version = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            con.execute("SELECT count(*) FROM shots").fetchone()
            con.execute("SELECT count(*) FROM files").fetchone()
        except sqlite3.OperationalError as err:
            con.close()
            if "no such table" in str(err):
                raise MontageError(f"library {folder} is corrupt ({err})") from err
            raise MontageError(f"cannot read library {folder}: {err}") from err
        except sqlite3.DatabaseError as err:
            con.close()
            raise MontageError(f"library {folder} is corrupt ({err})") from err
        if version is None or int(version[0]) != SCHEMA_VERSION:
            con.close()
            raise MontageError(f"library {folder} has schema version "
                               f"{version[0] if version else 'none'}, expected {SCHEMA_VERSION}")
        return cls(folder, con)

    @classmethod
    def create(cls, folder: str | os.PathLike) -> "Library":
        """Create a library folder (or open the library already there)."""
        folder = Path(folder).expanduser().resolve()
        if (folder / DB_FILE).is_file() and not cls._is_blank(folder / DB_FILE):
            return cls.open(folder)
        if folder.exists() and not folder.is_dir():
            raise MontageError(f"cannot create library {folder}: it is a file")
        try:
            (folder / THUMBS_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise MontageError(f"cannot create library {folder}: {err.strerror}") from err
        con = cls._connect(folder / DB_FILE)
        try:
            with con:
                con.executescript(_SCHEMA)
                con.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)",
                                [("schema_version", str(SCHEMA_VERSION)), ("model", MODEL_NAME),
                                 ("dim", str(DIM))])
        except sqlite3.DatabaseError as err:
            con.close()
            raise MontageError(f"cannot create library {folder}: {err}") from err
        return cls(folder, con)

    @staticmethod
    def _is_blank(db: Path) -> bool:
        """A database file with no tables: a `create` killed before its first commit."""
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
            try:
                return con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
            finally:
                con.close()
        except sqlite3.Error:
            return False

    @staticmethod
    def _connect(db: Path) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(db, timeout=30)
        except sqlite3.Error as err:
            raise MontageError(f"cannot open library {db.parent}: {err}") from err
        try:
            con.execute("PRAGMA journal_mode=WAL")   # readers never block the indexer
            con.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.OperationalError:
            pass                                     # a read-only folder: plain reads still work
        except sqlite3.DatabaseError as err:
            con.close()
            raise MontageError(f"library {db.parent} is corrupt ({err})") from err
        return con

    def close(self) -> None:
        """Close; a faiss index rebuilt in memory is written back if no other process is
        writing the library and the folder is writable (else the next open rebuilds it)."""
        if self._index_dirty:
            try:
                with self.lock():
                    self.save_index()
            except (MontageError, OSError, RuntimeError):
                pass
        self._con.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- lock ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the library's writer lock (re-entrant in this process). The kernel releases a
        flock when its process dies, so a killed run never leaves a stale lock behind."""
        if self._lock_depth == 0:
            path = self.folder / LOCK_FILE
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise MontageError(f"library {self.folder} is in use by pid {pid}") from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            self._lock_fd = fd
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock_fd is not None:
                os.ftruncate(self._lock_fd, 0)
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- reading -------------------------------------------------------------------------
    @property
    def embedder(self) -> TextEmbedder:
        if self._embedder is None:
            self._embedder = TextEmbedder(cache_dir=self.folder / "cache")
        return self._embedder

    @property
    def thumbs_dir(self) -> Path:
        return self.folder / THUMBS_DIR

    def __len__(self) -> int:
        return self._con.execute("SELECT count(*) FROM shots").fetchone()[0]

    def _row_to_shot(self, row: tuple) -> Shot:
        (sid, file_id, source, start, end, fps, w, h, thumb, l, a, b, bright, sharp, motion,
         camera, text, tags, generated, has_audio) = row
        if thumb and not os.path.isabs(thumb):   # stored relative so the folder can move
            thumb = str(self.folder / thumb)
        return Shot(id=sid, source=source, start=start, end=end, fps=fps, width=w, height=h,
                    thumbnail=thumb, lab=(l, a, b), brightness=bright, sharpness=sharp,
                    motion=motion, camera=camera, text=text, tags=list(json.loads(tags)),
                    generated=bool(generated), has_audio=bool(has_audio), file_id=file_id)

    def shots(self) -> list[Shot]:
        """Every shot, in id order."""
        rows = self._con.execute(f"SELECT {_SHOT_COLUMNS} FROM shots ORDER BY id").fetchall()
        return [self._row_to_shot(r) for r in rows]

    def get(self, shot_id: int) -> Shot:
        row = self._con.execute(f"SELECT {_SHOT_COLUMNS} FROM shots WHERE id=?",
                                (int(shot_id),)).fetchone()
        if row is None:
            raise MontageError(f"library {self.folder} has no shot {shot_id}")
        return self._row_to_shot(row)

    def ids(self) -> np.ndarray:
        """Shot ids in id order, (N,) int64."""
        rows = self._con.execute("SELECT id FROM shots ORDER BY id").fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def embeddings(self, ids: Sequence[int] | None = None) -> np.ndarray:
        """Embeddings of the given shots (default: all, id order). Returns (N, 384) float32."""
        if ids is None:
            rows = self._con.execute("SELECT embedding FROM shots ORDER BY id").fetchall()
            blobs = [r[0] for r in rows]
        else:
            ids = [int(i) for i in ids]
            found: dict[int, bytes] = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                q = f"SELECT id, embedding FROM shots WHERE id IN ({','.join('?' * len(chunk))})"
                found.update(self._con.execute(q, chunk).fetchall())
            missing = [i for i in ids if i not in found]
            if missing:
                raise MontageError(f"library {self.folder} has no shot {missing[0]}")
            blobs = [found[i] for i in ids]
        if not blobs:
            return np.zeros((0, DIM), dtype=np.float32)
        return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), DIM).copy()

    # -- vector search -------------------------------------------------------------------
    def _faiss(self):
        import faiss  # noqa: WPS433 - only commands that search pay for it
        return faiss

    def index(self):
        """The faiss index, loaded from shots.faiss (rebuilt from SQLite if it is stale)."""
        if self._index is None:
            faiss = self._faiss()
            ids = self.ids()
            path = self.folder / INDEX_FILE
            index = None
            if path.is_file():
                try:
                    index = faiss.read_index(str(path))
                    stored = np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
                    if index.d != DIM or not np.array_equal(stored, ids):
                        index = None
                except (RuntimeError, AttributeError):
                    index = None   # unreadable or not ours: rebuild below
            if index is None:
                index = faiss.IndexIDMap(faiss.IndexFlatIP(DIM))
                if len(ids):
                    index.add_with_ids(self.embeddings(), ids)
                self._index = index
                self._index_dirty = True
            else:
                self._index = index
        return self._index

    def search_vectors(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine search. q: (384,) or (M, 384). Returns scores (M, k) float32 and shot ids
        (M, k) int64, best first; id -1 where the library has fewer than k shots."""
        q = normalise(np.atleast_2d(np.asarray(q, dtype=np.float32)))
        if q.shape[1] != DIM:
            raise MontageError(f"query vectors have {q.shape[1]} dimensions, the library {DIM}")
        index = self.index()
        k = int(k)
        if k <= 0 or index.ntotal == 0:
            return (np.zeros((len(q), max(k, 0)), np.float32), np.full((len(q), max(k, 0)), -1, np.int64))
        scores, ids = index.search(q, k)
        return scores.astype(np.float32), ids.astype(np.int64)

    def search(self, query: str, k: int = 10) -> list[tuple[Shot, float]]:
        """The k shots whose text is nearest in meaning to `query`, with cosine scores."""
        if not query.strip():
            raise MontageError("empty search text")
        # Never more than the library holds: faiss allocates (1, k) results up front, so
        # `-k 1000000000` took minutes and 1e20 crashed numpy.
        k = min(int(k), len(self))
        scores, ids = self.search_vectors(self.embedder.embed([query]), k)
        return [(self.get(int(i)), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]

    def keyword_match(self, words: Iterable[str]) -> set[int]:
        """Ids of shots whose text shares a word stem with `words` (first stage of cascaded
        retrieval). Each item of `words` may itself be a phrase; stopwords are ignored."""
        if self._keywords is None:
            table: dict[str, set[int]] = {}
            for sid, text in self._con.execute("SELECT id, text FROM shots"):
                for t in tokens(text):
                    table.setdefault(t, set()).add(sid)
            self._keywords = table
        out: set[int] = set()
        for w in words:
            for t in tokens(w):
                out |= self._keywords.get(t, set())
        return out

    # -- files (used by the indexer) -----------------------------------------------------
    def file_record(self, path: str) -> FileRecord | None:
        row = self._con.execute("SELECT id, path, size, mtime, hash, status, error, duration, "
                                "text_sig FROM files WHERE path=?", (path,)).fetchone()
        return FileRecord(*row) if row else None

    def file_records(self) -> list[FileRecord]:
        rows = self._con.execute("SELECT id, path, size, mtime, hash, status, error, duration, "
                                 "text_sig FROM files ORDER BY path").fetchall()
        return [FileRecord(*r) for r in rows]

    def file_shots(self, path: str) -> list[Shot]:
        """Shots cut from one source file, in time order."""
        rows = self._con.execute(
            f"SELECT {_SHOT_COLUMNS} FROM shots WHERE file_id=(SELECT id FROM files WHERE path=?) "
            "ORDER BY start", (path,)).fetchall()
        return [self._row_to_shot(r) for r in rows]

    def drop_unused_thumbnails(self, paths: Iterable[str]) -> int:
        """Delete those of `paths` (thumbnails inside the library) that no shot refers to any
        more. Called after the transaction that replaced their shots. Returns how many."""
        n = 0
        for p in set(paths):
            ref = self._thumb_ref(p)
            if not p or os.path.isabs(ref):
                continue                       # outside the library: not ours to delete
            if self._con.execute("SELECT 1 FROM shots WHERE thumbnail=? LIMIT 1", (ref,)).fetchone():
                continue
            try:
                (self.folder / ref).unlink()
                n += 1
            except FileNotFoundError:
                pass
        return n

    def failed_files(self) -> list[FileRecord]:
        return [f for f in self.file_records() if f.status == "failed"]

    def touch_file(self, path: str, size: int, mtime: float) -> None:
        """Record a new mtime for a file whose content hash did not change."""
        with self.lock(), self._con:
            self._con.execute("UPDATE files SET size=?, mtime=? WHERE path=?", (size, mtime, path))

    def replace_file(self, path: str, size: int, mtime: float, content_hash: str, status: str,
                     shots: Sequence[Shot] = (), embeddings: np.ndarray | None = None,
                     error: str = "", duration: float = 0.0, indexed_at: float = 0.0,
                     text_sig: str = "") -> list[int]:
        """Replace everything known about one source file in one transaction: its row, its old
        shots (removed) and its new shots. Returns the new shot ids."""
        with self.lock():
            self.index()  # load before the change so it can be updated in memory
            try:
                with self._con:
                    row = self._con.execute("SELECT id FROM files WHERE path=?", (path,)).fetchone()
                    old_ids: list[int] = []
                    if row:
                        file_id = row[0]
                        old_ids = [r[0] for r in self._con.execute(
                            "SELECT id FROM shots WHERE file_id=?", (file_id,))]
                        self._con.execute("DELETE FROM shots WHERE file_id=?", (file_id,))
                        self._con.execute(
                            "UPDATE files SET size=?, mtime=?, hash=?, status=?, error=?, duration=?, "
                            "indexed_at=?, text_sig=? WHERE id=?",
                            (size, mtime, content_hash, status, error, duration, indexed_at, text_sig,
                             file_id))
                    else:
                        file_id = self._con.execute(
                            "INSERT INTO files (path, size, mtime, hash, status, error, duration, "
                            "indexed_at, text_sig) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (path, size, mtime, content_hash, status, error, duration, indexed_at,
                             text_sig)).lastrowid
                    for s in shots:
                        s.file_id = file_id
                    new_ids = self._insert_shots(shots, embeddings)
            except sqlite3.Error as err:
                self._index = None   # memory copy may be ahead of SQLite: reload next time
                raise MontageError(f"cannot write library {self.folder}: {err}") from err
            self._index_update(old_ids, new_ids, embeddings)
            return new_ids

    def remove_file(self, path: str) -> int:
        """Forget a source file and its shots. Returns how many shots were removed."""
        with self.lock():
            self.index()
            with self._con:
                row = self._con.execute("SELECT id FROM files WHERE path=?", (path,)).fetchone()
                if not row:
                    return 0
                old = [r[0] for r in self._con.execute("SELECT id FROM shots WHERE file_id=?", (row[0],))]
                self._con.execute("DELETE FROM shots WHERE file_id=?", (row[0],))
                self._con.execute("DELETE FROM files WHERE id=?", (row[0],))
            self._index_update(old, [], None)
            return len(old)

    # -- writing shots -------------------------------------------------------------------
    def _insert_shots(self, shots: Sequence[Shot], embeddings: np.ndarray | None) -> list[int]:
        if not len(shots):
            return []
        emb = normalise(np.asarray(embeddings, dtype=np.float32).reshape(len(shots), -1))
        if emb.shape[1] != DIM:
            raise MontageError(f"shot embeddings have {emb.shape[1]} dimensions, the library {DIM}")
        ids = []
        for s, v in zip(shots, emb):
            cur = self._con.execute(
                f"INSERT INTO shots ({_SHOT_COLUMNS[4:]}, embedding) VALUES "
                f"({', '.join('?' * 20)})",
                (s.file_id, s.source, float(s.start), float(s.end), float(s.fps), int(s.width),
                 int(s.height), self._thumb_ref(s.thumbnail), *map(float, s.lab), float(s.brightness),
                 float(s.sharpness), float(s.motion), s.camera, s.text, json.dumps(list(s.tags)),
                 int(bool(s.generated)), int(bool(s.has_audio)), v.tobytes()))
            s.id = cur.lastrowid
            ids.append(cur.lastrowid)
        return ids

    def _thumb_ref(self, thumbnail: str) -> str:
        """Thumbnails inside the library folder are stored relative to it."""
        p = Path(str(thumbnail))
        try:
            return str(p.resolve().relative_to(self.folder)) if p.is_absolute() else str(p)
        except ValueError:
            return str(p)

    def add_shots(self, shots: Sequence[Shot], embeddings: np.ndarray) -> list[int]:
        """Add shots (N) with their embeddings (N, 384); each shot gets a new id, which is set
        on the Shot objects and returned. Used by the film pipeline for generated shots."""
        if len(shots) != len(np.atleast_2d(embeddings)) and len(shots):
            raise MontageError(f"{len(shots)} shots but {len(np.atleast_2d(embeddings))} embeddings")
        with self.lock():
            self.index()
            try:
                with self._con:
                    ids = self._insert_shots(shots, embeddings)
            except sqlite3.Error as err:
                raise MontageError(f"cannot write library {self.folder}: {err}") from err
            self._index_update([], ids, embeddings)
            self.save_index()
            return ids

    def _index_update(self, removed: list[int], added: list[int], embeddings) -> None:
        index = self.index()
        if removed:
            index.remove_ids(np.asarray(removed, dtype=np.int64))
        if added:
            emb = normalise(np.asarray(embeddings, dtype=np.float32).reshape(len(added), -1))
            index.add_with_ids(emb, np.asarray(added, dtype=np.int64))
        self._keywords = None
        self._index_dirty = self._index_dirty or bool(removed or added)

    def save_index(self) -> None:
        """Write shots.faiss atomically (temp file in the folder, then rename)."""
        if self._index is None:
            return
        faiss = self._faiss()
        fd, tmp = tempfile.mkstemp(prefix=".shots.", suffix=".faiss.tmp", dir=self.folder)
        os.close(fd)
        try:
            faiss.write_index(self._index, tmp)
            os.replace(tmp, self.folder / INDEX_FILE)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._index_dirty = False

    def stats(self) -> dict:
        """Counts for reports: files by status, shots, total shot seconds."""
        files = dict(self._con.execute("SELECT status, count(*) FROM files GROUP BY status").fetchall())
        n, secs = self._con.execute("SELECT count(*), coalesce(sum(\"end\"-start), 0) FROM shots").fetchone()
        return {"files": files, "shots": n, "seconds": float(secs)}


def shot_to_dict(shot: Shot) -> dict:
    """JSON-ready dict of a shot (plan files, `jvideo search --json`)."""
    d = asdict(shot)
    d["lab"] = list(shot.lab)
    d["duration"] = shot.duration
    return d
