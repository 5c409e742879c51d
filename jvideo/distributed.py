"""Several processes, one job: Jittor's MPI, detected at run time.

Launch any jvideo command under Open MPI (`mpirun -np 4 jvideo train ...`) and each process
becomes one rank; started normally it is the only rank and every helper here is a no-op.
Nothing is configured by hand: Open MPI sets OMPI_COMM_WORLD_SIZE/RANK, Jittor reads them at
import (`jt.in_mpi`, `jt.rank`, `jt.world_size`).

Collectives are built on Jittor's `mpi_all_reduce("add")` (on CPU the only operation it
supports) applied to integer buffers: every rank writes its own slot of a zeroed buffer and
the sum is an exact copy of each slot, so data travel bit for bit whatever their dtype.
Every rank must call the same collectives in the same order.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from jvideo.errors import JVideoError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank in [0, size)."""
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_by_mpi() -> bool:
    """True under mpirun (Open MPI's environment); readable before Jittor is imported."""
    return "OMPI_COMM_WORLD_SIZE" in os.environ


def env_world() -> World:
    """The world as Open MPI's environment states it, without importing Jittor."""
    if not launched_by_mpi():
        return World()
    return World(int(os.environ.get("OMPI_COMM_WORLD_RANK", "0")), int(os.environ["OMPI_COMM_WORLD_SIZE"]))


_WORLD: World | None = None


def world() -> World:
    """This process's rank and the number of ranks (imports Jittor, which joins MPI)."""
    global _WORLD
    if _WORLD is None:
        from kernels import runtime
        jt = runtime.import_jittor()
        if jt.in_mpi:
            _WORLD = World(int(jt.rank), int(jt.world_size))
        elif env_world().distributed:
            # mpirun started us but Jittor found no mpicc: every rank would run the whole job alone.
            raise JVideoError("started by mpirun but Jittor has no MPI support "
                              "(apt-get install libopenmpi-dev, so that mpicc exists)")
        else:
            _WORLD = World()
    return _WORLD


def is_main() -> bool:
    """True on rank 0 (the rank that writes files and logs) and in a one-process run."""
    return world().is_main if launched_by_mpi() else True


def bounds(n: int, rank: int | None = None, size: int | None = None) -> tuple[int, int]:
    """[start, stop) of `rank`'s contiguous block when n items are split over `size` ranks.

    The first n % size ranks get one item more; the blocks, in rank order, are range(n).
    """
    if rank is None or size is None:
        w = world()
        rank, size = w.rank, w.size
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard(items: Sequence[T], rank: int | None = None, size: int | None = None) -> list[T]:
    """This rank's contiguous block of `items` (deterministic; blocks in rank order = items)."""
    start, stop = bounds(len(items), rank, size)
    return list(items[start:stop])


def _all_reduce_add(buffer: np.ndarray) -> np.ndarray:
    from kernels import runtime
    jt = runtime.import_jittor()
    # Pending lazy work may hold collectives (the optimizer's all-reduces): run it first, so
    # every rank issues its collectives in program order.
    jt.sync_all()
    return jt.array(buffer).mpi_all_reduce("add").numpy()


def barrier() -> None:
    """Wait until every rank gets here."""
    if world().distributed:
        _all_reduce_add(np.zeros(1, np.int32))


def all_gather_bytes(data: bytes) -> list[bytes]:
    """Every rank's `data`, in rank order, on every rank (exact)."""
    w = world()
    if not w.distributed:
        return [bytes(data)]
    lengths = np.zeros(w.size, np.int32)
    lengths[w.rank] = len(data)
    lengths = _all_reduce_add(lengths)
    words = max(1, -(-int(lengths.max()) // 4))
    # int32 slots: the sum of one payload and zeros is the payload, bit for bit.
    buf = np.zeros((w.size, words * 4), np.uint8)
    buf[w.rank, :len(data)] = np.frombuffer(data, np.uint8)
    summed = _all_reduce_add(buf.view(np.int32)).view(np.uint8)
    return [summed[r, :int(lengths[r])].tobytes() for r in range(w.size)]


def _npy_bytes(array: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.save(f, np.asarray(array), allow_pickle=False)
    return f.getvalue()


def _from_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def all_gather(array: np.ndarray) -> list[np.ndarray]:
    """Every rank's array (any dtype and shape; no object arrays), in rank order, on every rank."""
    return [_from_npy(b) for b in all_gather_bytes(_npy_bytes(array))]


def broadcast_array(array: np.ndarray | None, root: int = 0) -> np.ndarray:
    """`root`'s array on every rank (the other ranks may pass None). Exact: the bytes travel."""
    w = world()
    if not w.distributed:
        return np.asarray(array)
    header = broadcast_json([np.asarray(array).dtype.str, list(np.shape(array))] if w.rank == root else None, root)
    dtype, shape = np.dtype(header[0]), tuple(header[1])
    nbytes = dtype.itemsize * int(np.prod(shape))
    if nbytes == 0:
        return np.zeros(shape, dtype)
    if w.rank == root:
        buf = np.ascontiguousarray(array, dtype).reshape(-1).view(np.uint8)
    else:
        buf = np.zeros(nbytes, np.uint8)
    from kernels import runtime
    jt = runtime.import_jittor()
    return jt.array(buf).mpi_broadcast(root).numpy().view(dtype).reshape(shape)


def broadcast_vars(variables: Sequence[Any], root: int = 0) -> None:
    """Overwrite each Jittor Var in place with `root`'s value (optimizer moments, buffers)."""
    if not world().distributed:
        return
    from kernels import runtime
    jt = runtime.import_jittor()
    jt.sync_all()  # pending collectives first (see _all_reduce_add)
    for v in variables:
        v.update(v.mpi_broadcast(root))
    jt.sync_all(True)


def broadcast_json(obj: Any, root: int = 0) -> Any:
    """`root`'s JSON-serialisable object on every rank (no pickle: ranks may be other hosts)."""
    w = world()
    if not w.distributed:
        return obj
    data = json.dumps(obj).encode() if w.rank == root else b""
    return json.loads(all_gather_bytes(data)[root].decode())


def all_mean(value: float) -> float:
    """The mean of one float over all ranks (the same bits on every rank)."""
    w = world()
    if not w.distributed:
        return float(value)
    # Gathered exactly, then summed here in rank order: no reduction-order differences.
    parts = all_gather(np.array([value], np.float64))
    return float(np.concatenate(parts).sum() / w.size)


def broadcast_module(module, root: int = 0) -> None:
    """Overwrite every rank's parameters with `root`'s (start of training, after a resume)."""
    if world().distributed:
        from kernels import runtime
        jt = runtime.import_jittor()
        jt.sync_all()  # pending collectives first (see _all_reduce_add)
        module.mpi_param_broadcast(root)
        jt.sync_all(True)


def run_on_main(fn: Callable[[], T], root: int = 0) -> T:
    """Run `fn` on `root` only (reading or writing files) and give its JSON-able result to
    every rank; an error there is raised on every rank."""
    w = world()
    if not w.distributed:
        return fn()
    result, error = None, None
    if w.rank == root:
        try:
            result = fn()
        except JVideoError as err:
            error = str(err)
        except Exception as err:  # reported everywhere: a lone raise would hang the other ranks
            error = f"{type(err).__name__}: {err}"
    fail_together(error)
    return broadcast_json(result, root)


def fail_together(error: str | None) -> None:
    """Raise JVideoError on every rank when any rank passes an error message.

    Without it, one rank raising while the others wait in a collective hangs the job.
    """
    w = world()
    if not w.distributed:
        if error:
            raise JVideoError(error)
        return
    messages = all_gather_bytes((error or "").encode())
    for r, m in enumerate(messages):
        if m:
            raise JVideoError(m.decode() if r == 0 else f"rank {r}: {m.decode()}")
