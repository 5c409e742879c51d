"""Training state on disk: model weights (safetensors + config), optimizer moments, step, losses.

Everything is written atomically (temporary file in the same folder, fsync, rename), so a kill at
any moment leaves the previous checkpoint intact and `--resume` continues from it. Nothing here
unpickles: weights and moments are safetensors, the rest JSON.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from jvideo.errors import JVideoError


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path), fsync it, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", dir=str(path.parent))
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise JVideoError(f"{path}: missing") from None
    except json.JSONDecodeError as err:
        raise JVideoError(f"{path}: not valid JSON ({err.msg}); the checkpoint is corrupt") from None
    except UnicodeDecodeError:
        raise JVideoError(f"{path}: not UTF-8 text; the checkpoint is corrupt") from None


def save_npy(path: str, array: np.ndarray) -> None:
    """np.save to exactly `path` (np.save on a name would append '.npy')."""
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def optimizer_moments(optimizer) -> dict[str, np.ndarray]:
    """Jittor Adam/AdamW moments as numpy arrays keyed by parameter index."""
    out: dict[str, np.ndarray] = {}
    for g, group in enumerate(optimizer.param_groups):
        for name in ("m", "values"):
            for i, v in enumerate(group.get(name, [])):
                out[f"{g}.{name}.{i}"] = v.numpy()
    return out


def load_optimizer_moments(optimizer, moments: dict[str, np.ndarray]) -> None:
    for g, group in enumerate(optimizer.param_groups):
        for name in ("m", "values"):
            for i, v in enumerate(group.get(name, [])):
                key = f"{g}.{name}.{i}"
                if key not in moments or tuple(moments[key].shape) != tuple(v.shape):
                    raise JVideoError(f"optimizer state does not match the model ({key}); start without --resume")
                v.update(moments[key])


def save_moments(path: Path, moments: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file
    atomic_write(path, lambda tmp: save_file(moments, tmp))


def load_moments(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for truncated files
        raise JVideoError(f"{path}: unreadable optimizer state ({type(err).__name__}); start without --resume") from None


@contextlib.contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (flock on FOLDER/.lock) for one writer at a time.
    The kernel drops a flock when its process dies, so a killed run never leaves it stale;
    the file is removed on release, so a finished checkpoint folder holds no extra file."""
    import fcntl
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # A holder may have just released and removed the file we opened: then the
            # lock we got is on a dead inode, and the folder's lock is the new file's.
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError):
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            raise JVideoError(f"{folder} is in use by another {what} (pid {pid}); wait for it or pick another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield
        finally:
            os.unlink(path)              # still holding the lock: no one else owns this file
    finally:
        os.close(fd)


def sweep_temporary_files(folder: Path) -> int:
    """Remove what atomic_write leaves when its process is killed (`.NAME.XXXXXXXX` beside
    NAME), in `folder` and its sub-folders. Call it only while holding folder_lock: then no
    live writer owns them. Returns files removed."""
    removed = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            base = name[1:].rsplit(".", 1)[0] if name.startswith(".") else ""
            if base and name != ".lock" and (Path(root) / base).suffix and len(name.rsplit(".", 1)[1]) == 8:
                os.unlink(os.path.join(root, name))
                removed += 1
    return removed
