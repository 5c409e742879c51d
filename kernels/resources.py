"""Machine resources: refuse a job up front, with its estimate, when it cannot fit in memory.

A job that runs out of memory halfway is killed by the OS (no message, partial outputs, a lost
hour). Every command that sizes its buffers from user input (film size, frames, a checkpoint's
preset, a video's claimed resolution) estimates its peak bytes first and calls `check_memory`.
Standard library only: the montage side imports this without Jittor.
"""
from __future__ import annotations

from pathlib import Path


class ResourceError(Exception):
    """The job would not fit in this machine's memory; the message names the estimate."""


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable; keeps type checkers quiet


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int | None:
    """Bytes a new allocation can use now: /proc/meminfo's MemAvailable, lowered to the room
    left under a cgroup (container) limit when there is one. None where neither is readable."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    cg = Path("/sys/fs/cgroup")
    limit, used = _read_int(cg / "memory.max"), _read_int(cg / "memory.current")
    if limit is not None and used is not None:
        room = max(0, limit - used)
        avail = room if avail is None else min(avail, room)
    return avail


def check_memory(need: float, what: str) -> None:
    """Raise ResourceError when `need` bytes exceed the memory available now.

    `what` says which job and which inputs set its size, e.g. "a 100000x100000 film".
    """
    avail = available_memory()
    if avail is None:
        return  # not Linux: nothing reliable to compare with
    if need > avail:
        raise ResourceError(f"{what} needs about {human_bytes(need)} of memory, but only "
                            f"{human_bytes(avail)} is available; make it smaller")
