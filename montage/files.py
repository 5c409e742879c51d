"""Output files: temporary names for atomic writes, fsync, and paths as ffmpeg arguments."""
from __future__ import annotations

import os
import threading
from pathlib import Path


def scratch_path(out: str | os.PathLike, ext: str = "") -> Path:
    """Where to write `out` before renaming it into place: `.NAME.PID.THREAD.tmp EXT` beside it.

    The pid lets a later run tell a killed writer's leftovers from a live one's
    (render.sweep_stale_temps); the thread id keeps two threads writing the same output (two
    copies of one video share their thumbnails) off each other's file. `ext` keeps the
    extension tools such as PIL and espeak-ng choose a format by.
    """
    out = Path(out)
    return out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp{ext}")


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a finished file to disk before it is renamed into place: after a crash the name
    points at complete data, never at a file whose blocks were not written yet."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_arg(path: str | os.PathLike) -> str:
    """A path as an ffmpeg/ffprobe argument that is never read as a protocol or an option (names
    with colons, such as `concat:x` or `http:x`, or a leading dash)."""
    return "file:" + str(Path(path).absolute())
