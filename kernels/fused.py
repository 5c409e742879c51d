"""Fused implementations behind kernels.ops, one jt.Function per op.

Each forward and backward is a single `jt.code` op: C++/OpenMP on CPU (kernels/csrc/jv_cpu.h),
CUDA on GPU (kernels/csrc/jv_cuda.cuh). Shapes are read at run time, so one compiled op serves
every shape; only constants baked into the source (eps, attention scale, SiLU on/off) make a
new op. Backward passes recompute cheap intermediates instead of storing them: the norms keep
per-row mean/rstd, attention keeps the per-row log-sum-exp (memory O(L)).
"""
from __future__ import annotations

from pathlib import Path

from kernels import runtime

jt = runtime.import_jittor()

CSRC = Path(__file__).resolve().parent / "csrc"
CPU_HEADER = (CSRC / "jv_cpu.h").read_text()
CUDA_HEADER = (CSRC / "jv_cuda.cuh").read_text() if (CSRC / "jv_cuda.cuh").exists() else ""
# Row chunks for the partial sums of parameter gradients (summed afterwards in Jittor):
# more chunks than threads keeps OpenMP balanced; few enough that the partials stay small.
GRAD_CHUNKS = 16


def _lit(x: float) -> str:
    """A C float literal for x."""
    return f"{float(x):.9e}f"  # always has an exponent: "8f" would not be a C literal


def _code(shapes, inputs, cpu_src: str, cuda_src: str = ""):
    """Run one fused op; returns a list of fp32 outputs with the given shapes."""
    kw = {"cpu_header": CPU_HEADER, "cpu_src": cpu_src}
    if jt.flags.use_cuda:
        if not cuda_src:
            raise RuntimeError("kernels.fused: no CUDA kernel for this op")
        kw = {"cuda_header": CUDA_HEADER, "cuda_src": cuda_src}
    outs = jt.code([tuple(s) for s in shapes], ["float32"] * len(shapes), list(inputs), **kw)
    return outs


def _f32(*xs):
    return [None if x is None else (x if x.dtype == "float32" else x.float32()) for x in xs]


def _chunks(rows: int) -> int:
    return max(1, min(GRAD_CHUNKS, rows))


# ---------------------------------------------------------------------------------------------
# Row norms (LayerNorm, LN + modulate, RMSNorm)

class _RowNorm(jt.Function):
    """y = xhat * S[p] + T[p], p = row // (R / P). x (R, C); S, T (P, C)."""

    def __init__(self, center: bool, eps: float):
        self.center = "true" if center else "false"
        self.eps = eps

    def execute(self, x, S, T):
        R, C = x.shape
        y, mean, rstd = _code(
            [(R, C), (R,), (R,)], [x, S, T],
            f"jv::rownorm_fwd<{self.center}>(in0_p, in1_p, in2_p, out0_p, out1_p, out2_p, "
            f"in0_shape0, in0_shape1, in1_shape0, {_lit(self.eps)});",
            f"jv::rownorm_fwd_cuda<{self.center}>(in0_p, in1_p, in2_p, out0_p, out1_p, out2_p, "
            f"in0_shape0, in0_shape1, in1_shape0, {_lit(self.eps)});")
        self.saved = (x, S, mean, rstd)
        return y

    def grad(self, dy):
        x, S, mean, rstd = self.saved
        R, C = x.shape
        P = S.shape[0]
        K = _chunks(R)
        dx, dSp, dTp = _code(
            [(R, C), (K, P, C), (K, P, C)], [x, mean, rstd, S, dy],
            f"jv::rownorm_bwd<{self.center}>(in0_p, in1_p, in2_p, in3_p, in4_p, out0_p, out1_p, "
            f"out2_p, in0_shape0, in0_shape1, in3_shape0, out1_shape0);",
            f"jv::rownorm_bwd_cuda<{self.center}>(in0_p, in1_p, in2_p, in3_p, in4_p, out0_p, "
            f"out1_p, out2_p, in0_shape0, in0_shape1, in3_shape0, out1_shape0);")
        return dx, dSp.sum(0), dTp.sum(0)


def _rownorm(x, S, T, center: bool, eps: float):
    shape = x.shape
    C = shape[-1]
    y = _RowNorm(center, eps)(x.reshape(-1, C), S, T)
    return y.reshape(shape)


def _param_or(value, C: int, fill: float):
    if value is not None:
        return value.reshape(1, C)
    return jt.ones((1, C)) if fill == 1.0 else jt.zeros((1, C))


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5):
    """x (..., C); weight, bias (C,) or None."""
    x, weight, bias = _f32(x, weight, bias)
    C = x.shape[-1]
    return _rownorm(x, _param_or(weight, C, 1.0), _param_or(bias, C, 0.0), True, eps)


def layernorm_modulate(x, shift, scale, eps: float = 1e-6):
    """x (B, N, C); shift, scale (B, C) -> LN(x) * (1 + scale) + shift."""
    x, shift, scale = _f32(x, shift, scale)
    if x.ndim != 3 or tuple(shift.shape) != (x.shape[0], x.shape[2]) or tuple(scale.shape) != tuple(shift.shape):
        raise ValueError(f"layernorm_modulate: x {x.shape}, shift {shift.shape}, scale {scale.shape}; "
                         "want x (B, N, C), shift/scale (B, C)")
    return _rownorm(x, 1.0 + scale, shift, True, eps)


def rms_norm(x, weight=None, eps: float = 1e-6):
    """x (..., D); weight (D,) or None."""
    x, weight = _f32(x, weight)
    D = x.shape[-1]
    return _rownorm(x, _param_or(weight, D, 1.0), jt.zeros((1, D)), False, eps)


# ---------------------------------------------------------------------------------------------
# bias + GELU (tanh)

class _BiasGelu(jt.Function):
    def execute(self, x, bias):
        R, C = x.shape
        (y,) = _code([(R, C)], [x, bias],
                     "jv::bias_gelu_fwd(in0_p, in1_p, out0_p, in0_shape0, in0_shape1);",
                     "jv::bias_gelu_fwd_cuda(in0_p, in1_p, out0_p, in0_shape0, in0_shape1);")
        self.saved = (x, bias)
        return y

    def grad(self, dy):
        x, bias = self.saved
        R, C = x.shape
        K = _chunks(R)
        dx, dbp = _code([(R, C), (K, C)], [x, bias, dy],
                        "jv::bias_gelu_bwd(in0_p, in1_p, in2_p, out0_p, out1_p, in0_shape0, "
                        "in0_shape1, out1_shape0);",
                        "jv::bias_gelu_bwd_cuda(in0_p, in1_p, in2_p, out0_p, out1_p, in0_shape0, "
                        "in0_shape1, out1_shape0);")
        return dx, dbp.sum(0)


def bias_gelu(x, bias):
    """x (..., C), bias (C,) -> GELU-tanh(x + bias)."""
    x, bias = _f32(x, bias)
    shape = x.shape
    C = shape[-1]
    if tuple(bias.shape) != (C,):
        raise ValueError(f"bias_gelu: bias {bias.shape} does not match x {shape}")
    return _BiasGelu()(x.reshape(-1, C), bias).reshape(shape)


# ---------------------------------------------------------------------------------------------
# gated residual

class _GatedResidual(jt.Function):
    def execute(self, x, gate, y):
        R, C = x.shape
        (out,) = _code([(R, C)], [x, gate, y],
                       "jv::gated_residual_fwd(in0_p, in1_p, in2_p, out0_p, in0_shape0, "
                       "in0_shape1, in1_shape0);",
                       "jv::gated_residual_fwd_cuda(in0_p, in1_p, in2_p, out0_p, in0_shape0, "
                       "in0_shape1, in1_shape0);")
        self.saved = (gate, y)
        return out

    def grad(self, dout):
        gate, y = self.saved
        R, C = y.shape
        B = gate.shape[0]
        K = _chunks(R)
        dy, dgp = _code([(R, C), (K, B, C)], [dout, gate, y],
                        "jv::gated_residual_bwd(in0_p, in1_p, in2_p, out0_p, out1_p, in0_shape0, "
                        "in0_shape1, in1_shape0, out1_shape0);",
                        "jv::gated_residual_bwd_cuda(in0_p, in1_p, in2_p, out0_p, out1_p, "
                        "in0_shape0, in0_shape1, in1_shape0, out1_shape0);")
        return dout, dgp.sum(0), dy


def gated_residual(x, gate, y):
    """x, y (B, N, C); gate (B, C) -> x + gate[:, None] * y."""
    x, gate, y = _f32(x, gate, y)
    if x.ndim != 3 or tuple(y.shape) != tuple(x.shape) or tuple(gate.shape) != (x.shape[0], x.shape[2]):
        raise ValueError(f"gated_residual: x {x.shape}, gate {gate.shape}, y {y.shape}; "
                         "want x, y (B, N, C), gate (B, C)")
    B, N, C = x.shape
    out = _GatedResidual()(x.reshape(B * N, C), gate, y.reshape(B * N, C))
    return out.reshape(B, N, C)


# ---------------------------------------------------------------------------------------------
# gated residual + LN-modulate in one pass

class _ResidualLNMod(jt.Function):
    def __init__(self, eps: float):
        self.eps = eps

    def execute(self, x, gate, y, S, T):
        R, C = x.shape
        xn, h, mean, rstd = _code(
            [(R, C), (R, C), (R,), (R,)], [x, gate, y, S, T],
            "jv::residual_lnmod_fwd(in0_p, in1_p, in2_p, in3_p, in4_p, out0_p, out1_p, out2_p, "
            f"out3_p, in0_shape0, in0_shape1, in1_shape0, {_lit(self.eps)});",
            "jv::residual_lnmod_fwd_cuda(in0_p, in1_p, in2_p, in3_p, in4_p, out0_p, out1_p, "
            f"out2_p, out3_p, in0_shape0, in0_shape1, in1_shape0, {_lit(self.eps)});")
        self.saved = (xn, mean, rstd, gate, y, S)
        return xn, h

    def grad(self, dxn, dh):
        xn, mean, rstd, gate, y, S = self.saved
        R, C = xn.shape
        B = gate.shape[0]
        K = _chunks(R)
        dxn = jt.zeros((R, C)) if dxn is None else dxn
        dh = jt.zeros((R, C)) if dh is None else dh
        dx, dy, dgp, dSp, dTp = _code(
            [(R, C), (R, C), (K, B, C), (K, B, C), (K, B, C)], [xn, mean, rstd, gate, y, S, dxn, dh],
            "jv::residual_lnmod_bwd(in0_p, in1_p, in2_p, in3_p, in4_p, in5_p, in6_p, in7_p, out0_p, "
            "out1_p, out2_p, out3_p, out4_p, in0_shape0, in0_shape1, in3_shape0, out2_shape0);",
            "jv::residual_lnmod_bwd_cuda(in0_p, in1_p, in2_p, in3_p, in4_p, in5_p, in6_p, in7_p, "
            "out0_p, out1_p, out2_p, out3_p, out4_p, in0_shape0, in0_shape1, in3_shape0, "
            "out2_shape0);")
        return dx, dgp.sum(0), dy, dSp.sum(0), dTp.sum(0)


def gated_residual_layernorm_modulate(x, gate, y, shift, scale, eps: float = 1e-6):
    """x, y (B, N, C); gate, shift, scale (B, C) -> (x + gate * y, LN(that) * (1 + scale) + shift)."""
    x, gate, y, shift, scale = _f32(x, gate, y, shift, scale)
    bc = (x.shape[0], x.shape[2]) if x.ndim == 3 else None
    if bc is None or tuple(y.shape) != tuple(x.shape) or \
            any(tuple(t.shape) != bc for t in (gate, shift, scale)):
        raise ValueError(f"gated_residual_layernorm_modulate: x {x.shape}, y {y.shape}, gate "
                         f"{gate.shape}, shift {shift.shape}, scale {scale.shape}; want x, y (B, N, C), "
                         "gate/shift/scale (B, C)")
    B, N, C = x.shape
    xn, h = _ResidualLNMod(eps)(x.reshape(B * N, C), gate, y.reshape(B * N, C), 1.0 + scale, shift)
    return xn.reshape(B, N, C), h.reshape(B, N, C)


# ---------------------------------------------------------------------------------------------
# attention (online softmax over key tiles; backward by recomputation)

class _Attention(jt.Function):
    def __init__(self, scale: float):
        self.scale = scale

    def execute(self, q, k, v):
        BH, L, D = q.shape
        o, lse = _code([(BH, L, D), (BH, L)], [q, k, v],
                       "jv::attn_fwd(in0_p, in1_p, in2_p, out0_p, out1_p, in0_shape0, in0_shape1, "
                       f"in1_shape1, in0_shape2, {_lit(self.scale)});",
                       "jv::attn_fwd_cuda(in0_p, in1_p, in2_p, out0_p, out1_p, in0_shape0, "
                       f"in0_shape1, in1_shape1, in0_shape2, {_lit(self.scale)});")
        self.saved = (q, k, v, o, lse)
        return o

    def grad(self, dout):
        q, k, v, o, lse = self.saved
        BH, L, D = q.shape
        S = k.shape[1]
        di = (dout * o).sum(-1)
        dq, dk, dv = _code([(BH, L, D), (BH, S, D), (BH, S, D)], [q, k, v, lse, di, dout],
                           "jv::attn_bwd(in0_p, in1_p, in2_p, in3_p, in4_p, in5_p, out0_p, out1_p, "
                           "out2_p, in0_shape0, in0_shape1, in1_shape1, in0_shape2, "
                           f"{_lit(self.scale)});",
                           "jv::attn_bwd_cuda(in0_p, in1_p, in2_p, in3_p, in4_p, in5_p, out0_p, "
                           "out1_p, out2_p, in0_shape0, in0_shape1, in1_shape1, in0_shape2, "
                           f"{_lit(self.scale)});")
        return dq, dk, dv


def attention(q, k, v, scale: float | None = None):
    """q (B, H, L, D), k/v (B, H, S, D) -> (B, H, L, D)."""
    q, k, v = _f32(q, k, v)
    if q.ndim != 4 or k.shape != v.shape or k.ndim != 4 or tuple(q.shape[:2]) != tuple(k.shape[:2]) \
            or q.shape[3] != k.shape[3]:
        raise ValueError(f"attention: q {q.shape}, k {k.shape}, v {v.shape}; "
                         "want q (B, H, L, D), k/v (B, H, S, D)")
    B, H, L, D = q.shape
    S = k.shape[2]
    if scale is None:
        scale = D ** -0.5
    if jt.flags.use_cuda and D > 128:  # the CUDA kernel keeps a query row in registers
        from kernels import reference
        return reference.attention(q, k, v, scale)
    o = _Attention(float(scale))(q.reshape(B * H, L, D), k.reshape(B * H, S, D), v.reshape(B * H, S, D))
    return o.reshape(B, H, L, D)


# ---------------------------------------------------------------------------------------------
# GroupNorm (+ SiLU)

class _GroupNorm(jt.Function):
    def __init__(self, groups: int, eps: float, silu: bool):
        self.groups, self.eps, self.silu = groups, eps, "true" if silu else "false"

    def execute(self, x, w, b):
        N, C, Sp = x.shape
        G = self.groups
        y, mean, rstd = _code(
            [(N, C, Sp), (N * G,), (N * G,)], [x, w, b],
            f"jv::group_norm_fwd(in0_p, in1_p, in2_p, out0_p, out1_p, out2_p, in0_shape0, "
            f"in0_shape1, in0_shape2, {G}, {_lit(self.eps)}, {self.silu});",
            f"jv::group_norm_fwd_cuda(in0_p, in1_p, in2_p, out0_p, out1_p, out2_p, in0_shape0, "
            f"in0_shape1, in0_shape2, {G}, {_lit(self.eps)}, {self.silu});")
        self.saved = (x, w, b, mean, rstd)
        return y

    def grad(self, dy):
        x, w, b, mean, rstd = self.saved
        N, C, Sp = x.shape
        G = self.groups
        dx, dwp, dbp = _code(
            [(N, C, Sp), (N, C), (N, C)], [x, w, b, mean, rstd, dy],
            f"jv::group_norm_bwd(in0_p, in1_p, in2_p, in3_p, in4_p, in5_p, out0_p, out1_p, "
            f"out2_p, in0_shape0, in0_shape1, in0_shape2, {G}, {self.silu});",
            f"jv::group_norm_bwd_cuda(in0_p, in1_p, in2_p, in3_p, in4_p, in5_p, out0_p, out1_p, "
            f"out2_p, in0_shape0, in0_shape1, in0_shape2, {G}, {self.silu});")
        return dx, dwp.sum(0), dbp.sum(0)


def group_norm(x, num_groups: int, weight=None, bias=None, eps: float = 1e-6, silu: bool = False):
    """x (N, C, *spatial), 3-D to 5-D; weight, bias (C,) or None; optional SiLU after."""
    x, weight, bias = _f32(x, weight, bias)
    if x.ndim < 2:
        raise ValueError(f"group_norm: x {x.shape} needs (N, C, *spatial)")
    shape = x.shape
    N, C = shape[0], shape[1]
    if C % num_groups != 0:
        raise ValueError(f"group_norm: {C} channels not divisible by {num_groups} groups")
    w = weight if weight is not None else jt.ones((C,))
    b = bias if bias is not None else jt.zeros((C,))
    y = _GroupNorm(int(num_groups), eps, silu)(x.reshape(N, C, -1), w, b)
    return y.reshape(shape)
