import numpy as np
import pytest

from kernels import runtime


def test_backend_follows_the_cuda_probe(monkeypatch):
    monkeypatch.setenv("nvcc_path", "")
    assert runtime.select_backend(probe=lambda: True) == "cuda"
    assert "nvcc_path" not in runtime.os.environ  # Jittor may look for nvcc again
    assert runtime.select_backend(probe=lambda: False) == "cpu"
    assert runtime.os.environ["nvcc_path"] == ""


def test_this_machine_has_no_usable_cuda():
    # nvcc may exist here, but without a runtime and a GPU the probe must say no.
    assert runtime.probe_cuda() in (True, False)
    assert runtime.STATE.backend == ("cuda" if runtime.probe_cuda() else "cpu")


def test_onednn_folder_is_prepared():
    ok, reason = runtime.prepare_onednn()
    assert ok, reason
    assert (runtime.onednn_dir() / "lib" / "libmkldnn.so").exists()
    assert runtime.STATE.onednn


def test_matmul_and_conv_match_numpy_under_onednn():
    jt = runtime.import_jittor()
    rng = np.random.default_rng(1)
    a = rng.standard_normal((37, 53)).astype(np.float32)
    b = rng.standard_normal((53, 29)).astype(np.float32)
    np.testing.assert_allclose(jt.matmul(jt.array(a), jt.array(b)).numpy(), a @ b, atol=1e-4)

    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    got = jt.nn.conv2d(jt.array(x), jt.array(w), padding=1).numpy()
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.zeros((2, 4, 9, 7), np.float32)
    for i in range(3):
        for j in range(3):
            want += np.einsum("bchw,oc->bohw", xp[:, :, i:i + 9, j:j + 7], w[:, :, i, j])
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_jittor_logs_stay_out_of_normal_output():
    import subprocess
    import sys
    code = ("import jvideo\nfrom kernels import runtime\njt = runtime.import_jittor()\n"
            "print(float((jt.ones(3) * 2).sum()))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**runtime.os.environ, "JVIDEO_VERBOSE": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "6.0"
    assert "[i " not in proc.stderr  # Jittor's info log lines


def test_a_killed_child_or_ctrl_c_does_not_kill_a_jittor_process():
    # Jittor's own handlers quick_exit(1) the process when a child dies from a signal.
    import subprocess
    import sys
    code = ("from kernels import runtime\njt = runtime.import_jittor()\nimport subprocess, signal, os\n"
            "p = subprocess.Popen(['sleep', '30']); p.kill(); p.wait()\n"
            "try:\n    os.kill(os.getpid(), signal.SIGINT)\nexcept KeyboardInterrupt:\n    print('interrupt handled')\n"
            "print('still alive')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["interrupt", "handled", "still", "alive"]


def test_jittor_compile_pool_is_gone_at_exit_and_the_process_exits():
    # The exit hook killed the pool's workers, its handler thread respawned them, and
    # multiprocessing's own exit hook then waited forever on a fresh idle worker (CI hung
    # after `python -m kernels.runtime warm` printed "ready").
    import subprocess
    import sys
    code = ("import multiprocessing, time\nfrom kernels import runtime\njt = runtime.import_jittor()\n"
            "import jittor_utils as ju\nassert ju.p is not None, 'no compile pool to test'\n"
            "ju.pool_cleanup()\ntime.sleep(0.5)\n"
            "print(len(multiprocessing.active_children()))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"


def test_a_swallowed_ctrl_c_still_stops_the_next_step():
    """A KeyboardInterrupt raised inside a callback Python only reports ('Exception ignored
    in ...') is lost ("survived" shows it); the training and generation loops call raise_if_interrupted each step,
    so the Ctrl-C still stops them (seen: a SIGINT landing in an import-lock weakref callback
    let a training run finish with exit 0)."""
    import subprocess
    import sys
    import textwrap
    code = textwrap.dedent("""
        import os, signal
        from kernels import runtime
        runtime.restore_signal_handlers()
        class Finaliser:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGINT)   # its KeyboardInterrupt is only printed
        f = Finaliser()
        del f
        print("survived")
        try:
            runtime.raise_if_interrupted()
        except KeyboardInterrupt:
            print("stopped")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["survived", "stopped"], (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr   # a clean interrupt: the swallowed one is not printed
