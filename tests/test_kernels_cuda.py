"""CUDA sources compile with nvcc (compile only: no GPU is needed or used).

The ops' real call sites are captured by running every fused op once on CPU, then pasted into
a translation unit with Jittor-like pointer/shape variables, so a launcher signature that
drifts from what kernels.fused calls fails here too.
"""
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kernels import runtime

jt = runtime.import_jittor()
from kernels import fused, ops  # noqa: E402

NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not found (CUDA toolkit not installed)")


def _capture_cuda_sources() -> list[str]:
    seen: list[str] = []
    real = fused._code

    def spy(shapes, inputs, cpu_src, cuda_src=""):
        assert cuda_src, f"op without a CUDA source: {cpu_src[:60]}"
        seen.append(cuda_src)
        return real(shapes, inputs, cpu_src, cuda_src)

    rng = np.random.default_rng(0)
    a = lambda *s: jt.array(rng.standard_normal(s).astype("float32"))  # noqa: E731
    fused._code = spy
    try:
        x, v, s = a(2, 5, 37), a(37), a(2, 37)
        q, k = a(2, 3, 45, 20), a(2, 3, 70, 20)
        g, gw = a(2, 8, 3, 5, 7), a(8)
        calls = [(ops.layer_norm(x, v, v), [x, v]), (ops.layernorm_modulate(x, s, s), [x, s]),
                 (ops.rms_norm(x, v), [x, v]), (ops.bias_gelu(x, v), [x, v]),
                 (ops.gated_residual(x, s, x), [x, s]), (ops.attention(q, k, k), [q, k]),
                 (jt.concat(list(ops.gated_residual_layernorm_modulate(x, s, x, s, s)), -1), [x, s]),
                 (ops.group_norm(g, 4, gw, gw, silu=True), [g, gw]),
                 (ops.group_norm(g, 4, gw, gw), [g, gw])]
        for y, leaves in calls:  # the backward passes record their sources too
            for grad in jt.grad((y * y).sum(), leaves):
                grad.sync()
    finally:
        fused._code = real
    return seen


def test_cuda_sources_compile_with_nvcc(tmp_path):
    sources = sorted(set(_capture_cuda_sources()))
    names = {m for s in sources for m in re.findall(r"jv::(\w+_cuda)", s)}
    assert {"rownorm_fwd_cuda", "rownorm_bwd_cuda", "bias_gelu_fwd_cuda", "attn_fwd_cuda",
            "group_norm_fwd_cuda", "gated_residual_fwd_cuda", "residual_lnmod_bwd_cuda"} <= names
    header = (Path(fused.CSRC) / "jv_cuda.cuh").resolve()
    decls = ["float *" + ", *".join(f"in{i}_p" for i in range(8)) + ";",
             "float *" + ", *".join(f"out{i}_p" for i in range(5)) + ";",
             "long " + ", ".join(f"{io}{i}_shape{d}" for io in ("in", "out") for i in range(8) for d in range(4)) + ";"]
    bodies = [f"void call_{n}() {{\n  {' '.join(decls)}\n  {src}\n}}" for n, src in enumerate(sources)]
    unit = tmp_path / "jv_cuda_calls.cu"
    unit.write_text(f'#include "{header}"\n' + "\n".join(bodies) + "\n")
    proc = subprocess.run([NVCC, "-std=c++14", "-c", str(unit), "-o", str(tmp_path / "jv.o")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "jv.o").stat().st_size > 0
