"""Jittor runtime set-up: decide the backend before the first `import jittor`.

Every entry point (the CLI, the test suite, `import jvideo`, `import kernels.ops`) calls
`configure()` before Jittor is imported, so a user never sets a Jittor environment variable:

* CUDA is used only when a CUDA runtime *and* a GPU are present. nvcc alone (as on the
  project's build machines) makes a plain `import jittor` crash, so Jittor is told to skip
  CUDA (`nvcc_path=""`) whenever the probe says no.
* Jittor's CPU conv/matmul use oneDNN. Its own download fails offline, so we point it at
  Debian's libdnnl (linked where Jittor looks). Without oneDNN we fall back to Jittor's slow
  CPU kernels and warn once.
* Jittor's compile chatter stays out of normal output unless `verbose=True`.
* Jittor's parallel op compiler gets a thread-safety fix (kernels/jittor_patch.py) before
  its first build.

This module never imports Jittor at module level and stays importable without it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kernels import jittor_patch

# The folder name Jittor 1.3.x looks for under ~/.cache/jittor/mkl (see jittor/compile_extern.py).
JITTOR_DNNL_NAME = "dnnl_lnx_2.2.0_cpu_gomp"
SYSTEM_DNNL_LIBS = ("/usr/lib/x86_64-linux-gnu/libdnnl.so", "/usr/lib/aarch64-linux-gnu/libdnnl.so",
                    "/usr/lib64/libdnnl.so", "/usr/local/lib/libdnnl.so")
SYSTEM_DNNL_INCLUDE = "/usr/include"


@dataclass
class RuntimeState:
    """What `configure` decided; read by `jvideo doctor`."""
    backend: str = "cpu"          # "cpu" or "cuda"
    onednn: bool = False
    onednn_reason: str = ""
    compile_fix: bool = False     # kernels.jittor_patch applied to Jittor's source
    compile_fix_reason: str = ""
    verbose: bool = False
    configured: bool = False


STATE = RuntimeState()
_warned_fallback = False


def jittor_home() -> Path:
    """The folder Jittor keeps its caches under (JITTOR_HOME or the user's home)."""
    return Path(os.environ.get("JITTOR_HOME", str(Path.home())))


def onednn_dir() -> Path:
    return jittor_home() / ".cache" / "jittor" / "mkl" / JITTOR_DNNL_NAME


def _load(name_or_path: str) -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(name_or_path)
    except OSError:
        return None


def probe_cuda() -> bool:
    """True when a CUDA runtime library loads and the driver reports at least one GPU."""
    runtime_candidates = [ctypes.util.find_library("cudart") or ""]
    runtime_candidates += sorted(glob.glob("/usr/local/cuda*/lib64/libcudart.so*"))
    runtime_candidates += sorted(glob.glob("/usr/lib/x86_64-linux-gnu/libcudart.so*"))
    if not any(c and _load(c) for c in runtime_candidates):
        return False
    driver = _load("libcuda.so.1") or _load("libcuda.so")
    if driver is None:
        return False
    if driver.cuInit(0) != 0:
        return False
    count = ctypes.c_int(0)
    if driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return False
    return count.value > 0


def system_dnnl_lib() -> Path | None:
    for cand in SYSTEM_DNNL_LIBS:
        if Path(cand).exists():
            return Path(cand)
    return None


def prepare_onednn() -> tuple[bool, str]:
    """Make Jittor's oneDNN folder point at the system oneDNN. Idempotent.

    Returns (ok, reason). Never downloads anything.
    """
    target = onednn_dir()
    lib = target / "lib" / "libmkldnn.so"
    if lib.exists():
        return True, f"oneDNN at {target}"
    sys_lib = system_dnnl_lib()
    if sys_lib is None or not Path(SYSTEM_DNNL_INCLUDE, "dnnl.h").exists():
        return False, "system oneDNN not found (install libdnnl-dev: apt-get install libdnnl-dev)"
    (target / "lib").mkdir(parents=True, exist_ok=True)
    (target / "include").mkdir(parents=True, exist_ok=True)
    _symlink(sys_lib, lib)
    for header in glob.glob(os.path.join(SYSTEM_DNNL_INCLUDE, "dnnl*.h*")):
        _symlink(Path(header), target / "include" / Path(header).name)
    oneapi = Path(SYSTEM_DNNL_INCLUDE, "oneapi")
    if oneapi.exists():
        _symlink(oneapi, target / "include" / "oneapi")
    return True, f"linked {sys_lib} into {target}"


def _symlink(src: Path, dst: Path) -> None:
    # Replace atomically so a concurrent reader never sees a missing link.
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(src)
    os.replace(tmp, dst)


def select_backend(probe: Callable[[], bool] = probe_cuda) -> str:
    """Pick "cuda" or "cpu" from the probe and set the variable Jittor reads at import."""
    if probe():
        if os.environ.get("nvcc_path") == "":
            del os.environ["nvcc_path"]  # let Jittor find nvcc itself
        return "cuda"
    os.environ["nvcc_path"] = ""  # nvcc without a runtime crashes `import jittor`
    return "cpu"


def split_threads_between_ranks() -> int | None:
    """Under mpirun, give each rank of this host its share of the cores for OpenMP.

    Open MPI binds ranks to cores or sockets, and OpenMP then uses the cores of the binding.
    Unbound ranks (`--bind-to none`, or more ranks than cores) would each start one thread per
    core: N ranks x all cores. An explicit OMP_NUM_THREADS is kept. Returns the count set.
    """
    local = os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE")
    if not local or "OMP_NUM_THREADS" in os.environ or not hasattr(os, "sched_getaffinity"):
        return None
    cores = os.cpu_count() or 1
    if len(os.sched_getaffinity(0)) < cores:
        return None  # bound: OpenMP already follows the binding
    threads = max(1, cores // max(1, int(local)))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads


def configure(verbose: bool | None = None, probe: Callable[[], bool] = probe_cuda) -> RuntimeState:
    """Set Jittor's environment before it is imported. Safe to call many times.

    `probe` answers "is a CUDA runtime with a GPU here?"; tests pass a fake.
    """
    global _warned_fallback
    if verbose is None:
        verbose = os.environ.get("JVIDEO_VERBOSE", "") not in ("", "0")
    if STATE.configured and "jittor" in sys.modules:
        if verbose != STATE.verbose:
            _set_jittor_verbosity(verbose)
            STATE.verbose = verbose
        return STATE

    STATE.backend = select_backend(probe)
    split_threads_between_ranks()
    STATE.compile_fix, STATE.compile_fix_reason = jittor_patch.apply()

    if os.environ.get("use_mkl") == "0":
        STATE.onednn, STATE.onednn_reason = False, "disabled by use_mkl=0"
    else:
        STATE.onednn, STATE.onednn_reason = prepare_onednn()
        if not STATE.onednn:
            os.environ["use_mkl"] = "0"
    if not STATE.onednn and not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            "jvideo: oneDNN unavailable (" + STATE.onednn_reason + "); Jittor's CPU conv and "
            "matmul fall back to slow kernels. Run 'make setup' to fix.", RuntimeWarning, stacklevel=2)

    # Jittor's compiled code enables flush-to-zero; numpy then warns on every finfo lookup.
    warnings.filterwarnings("ignore", message="The value of the smallest subnormal")
    STATE.verbose = verbose
    os.environ["log_silent"] = "0" if verbose else "1"
    STATE.configured = True
    return STATE


def _set_jittor_verbosity(verbose: bool) -> None:
    import jittor_utils
    jittor_utils.LOG.log_silent = 0 if verbose else 1


def import_jittor(verbose: bool | None = None):
    """Configure, import Jittor and select the device. Returns the `jittor` module."""
    state = configure(verbose)
    first = "jittor" not in sys.modules
    import jittor as jt
    if first:
        restore_signal_handlers()
        tame_compile_pool()
        sys.setrecursionlimit(_RECURSION_LIMIT)
    jt.flags.use_cuda = 1 if (state.backend == "cuda" and jt.has_cuda) else 0
    return jt


# Python's default. Jittor raises it to 10**6 on import: a deeply nested JSON file a user
# brings ('[' * 100000: a preset, a project) then overflows the C stack (a segfault) instead
# of raising RecursionError.
_RECURSION_LIMIT = sys.getrecursionlimit()


def tame_compile_pool() -> None:
    """Make Ctrl-C stop a process that has Jittor's compile pool.

    Ctrl-C reaches the whole process group, so the pool's workers die with it; Jittor's
    atexit handler then waits forever in Pool.terminate() for a lock a dead worker held (the
    CLI printed 'interrupted' and never exited). Workers now ignore SIGINT (the parent
    alone handles it), and the exit handler kills workers instead of waiting on them.
    """
    import atexit
    import signal
    try:
        import jittor_utils as ju
    except ImportError:
        return
    original_init, original_cleanup = ju.pool_initializer, ju.pool_cleanup

    def initializer() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        original_init()

    def cleanup() -> None:
        pool = getattr(ju, "p", None)
        if pool is None:
            return
        stop_worker_handler(pool)
        for worker in list(getattr(pool, "_pool", None) or []):
            if worker.is_alive():
                worker.kill()     # compile workers hold nothing of ours
            worker.join(timeout=5)
        finalizer = getattr(pool, "_terminate", None)
        if finalizer is not None:
            finalizer.cancel()    # Pool.terminate() would wait on a lock a dead worker held
            pool._state = "TERMINATE"   # multiprocessing.pool.TERMINATE: __del__ does nothing

    ju.pool_initializer, ju.pool_cleanup = initializer, cleanup
    if getattr(ju, "p", None) is not None:   # the import compiled: its pool exists already
        atexit.unregister(original_cleanup)
        atexit.register(cleanup)


def stop_worker_handler(pool) -> None:
    """Stop a multiprocessing Pool's thread that replaces workers which exit.

    Without this, the workers killed at exit were respawned within 0.1 s; multiprocessing's
    own exit hook then joined a fresh worker it had not terminated, which waits for a task
    forever: the process printed its result and never exited (CI timed out in set-up).
    """
    handler = getattr(pool, "_worker_handler", None)
    if handler is None:
        return
    handler._state = "TERMINATE"          # multiprocessing.pool.TERMINATE
    notifier = getattr(pool, "_change_notifier", None)
    if notifier is not None:
        notifier.put(None)                # wake it from its wait on the workers
    handler.join(timeout=5)


def restore_signal_handlers() -> None:
    """Undo Jittor's process-wide SIGCHLD and SIGINT handlers.

    On import Jittor makes the *whole process* quick_exit(1) when any child process dies from
    a signal (an ffmpeg we kill, a test's killed subprocess) and on Ctrl-C, skipping Python's
    clean-up: temporary files stay behind and the exit looks like a crash. Python's defaults
    give KeyboardInterrupt (handled by the CLI) and ignore children's deaths.
    """
    global _previous_unraisablehook
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, _on_sigint)
    if sys.unraisablehook is not _quiet_swallowed_interrupt:   # keep any hook set before (pytest's)
        _previous_unraisablehook = sys.unraisablehook
        sys.unraisablehook = _quiet_swallowed_interrupt


_interrupted = False


def _on_sigint(signum, frame) -> None:
    """Python's own Ctrl-C (KeyboardInterrupt), remembered: when the exception lands inside a
    callback whose errors Python only prints ('Exception ignored in ...': a weakref callback of
    the import machinery, a __del__), it is lost; `raise_if_interrupted` raises it again."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


_previous_unraisablehook = sys.unraisablehook


def _quiet_swallowed_interrupt(unraisable) -> None:
    """A swallowed Ctrl-C is not an error to print (a traceback on a clean interrupt): the next
    `raise_if_interrupted` raises it. Anything else goes to the previous hook."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        return
    _previous_unraisablehook(unraisable)


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C came and was swallowed; long loops call it each step."""
    if _interrupted:
        raise KeyboardInterrupt


def warm() -> None:
    """Compile Jittor's core and the ops the test suite uses most, and check oneDNN results."""
    import numpy as np
    jt = import_jittor()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 48)).astype("float32")
    b = rng.standard_normal((48, 32)).astype("float32")
    got = jt.matmul(jt.array(a), jt.array(b)).numpy()
    assert np.abs(got - a @ b).max() < 1e-4, "matmul check failed"
    x = jt.array(rng.standard_normal((2, 3, 8, 8)).astype("float32"))
    conv = jt.nn.Conv2d(3, 4, 3, padding=1)
    conv(x).sync()
    jt.sync_all(True)
    print(f"jittor {jt.__version__} ready: backend={STATE.backend} oneDNN={'on' if STATE.onednn else 'off'}")


def _main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "probe"
    if cmd == "prepare-onednn":
        ok, reason = prepare_onednn()
        print(("ok: " if ok else "warning: ") + reason)
        return 0
    if cmd == "patch-jittor":
        fixed, reason = jittor_patch.apply()
        print(("ok: " if fixed else "warning: ") + reason)
        return 0
    if cmd == "warm":
        warm()
        return 0
    if cmd == "probe":
        state = configure()
        print(f"backend={state.backend} onednn={state.onednn} ({state.onednn_reason})")
        return 0
    print(f"usage: python -m kernels.runtime [probe|prepare-onednn|patch-jittor|warm]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
