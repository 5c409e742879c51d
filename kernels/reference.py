"""Reference paths: every fused op written in plain Jittor ops.

These are the ground truth the fused kernels are tested against, and the "unfused" column of
the benchmark. They follow PyTorch's numerics, not Jittor's shortcuts: variance is computed in
two passes (Jittor's LayerNorm uses E[x^2]-E[x]^2, which cancels badly), GELU is the tanh form
(jt.nn.gelu is erf-only), and softmax subtracts the row maximum.
"""
from __future__ import annotations

import math

from kernels import runtime

jt = runtime.import_jittor()

GELU_C = math.sqrt(2.0 / math.pi)
GELU_K = 0.044715


def _normalize_last(x, eps: float):
    """x (..., C) -> (x - mean) / sqrt(var + eps) over the last axis, two-pass variance."""
    mean = x.mean(-1, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(-1, keepdims=True)
    return xc * jt.rsqrt(var + eps)


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5):
    """x (..., C); weight, bias (C,) or None -> (..., C)."""
    y = _normalize_last(x, eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def layernorm_modulate(x, shift, scale, eps: float = 1e-6):
    """x (B, N, C); shift, scale (B, C) -> LN(x) * (1 + scale) + shift, (B, N, C)."""
    y = _normalize_last(x, eps)
    return y * (1.0 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def stable_sigmoid(u):
    """sigmoid through exp(-|u|): exact tails and finite gradients everywhere.

    jt.sigmoid clamps its input at -30 (sigmoid(-200) = 9e-14) and jt.tanh's gradient is NaN
    for large negative inputs, so the reference path builds both from this.
    """
    e = jt.exp(-jt.abs(u))
    return jt.ternary(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def gelu_tanh(u):
    """GELU, tanh approximation (PyTorch's approximate='tanh'): 0.5 u (1 + tanh z) = u sigmoid(2z)."""
    return u * stable_sigmoid(2.0 * GELU_C * (u + GELU_K * u * u * u))


def bias_gelu(x, bias):
    """x (..., C), bias (C,) -> gelu_tanh(x + bias), (..., C)."""
    return gelu_tanh(x + bias)


def gated_residual(x, gate, y):
    """x, y (B, N, C); gate (B, C) -> x + gate[:, None] * y."""
    return x + gate.unsqueeze(1) * y


def gated_residual_layernorm_modulate(x, gate, y, shift, scale, eps: float = 1e-6):
    """x, y (B, N, C); gate, shift, scale (B, C) -> (x + gate * y, LN(that) * (1 + scale) + shift)."""
    xn = gated_residual(x, gate, y)
    return xn, layernorm_modulate(xn, shift, scale, eps)


def attention(q, k, v, scale: float | None = None):
    """q (B, H, L, D), k/v (B, H, S, D) -> softmax(q k^T * scale) v, (B, H, L, D).

    Materialises the (B, H, L, S) score matrix: this is the memory the fused kernel avoids.
    """
    if scale is None:
        scale = q.shape[-1] ** -0.5
    s = jt.matmul(q, k.transpose(-2, -1)) * scale
    s = s - s.max(-1, keepdims=True)
    p = s.exp()
    p = p / p.sum(-1, keepdims=True)
    return jt.matmul(p, v)


def group_norm(x, num_groups: int, weight=None, bias=None, eps: float = 1e-6, silu: bool = False):
    """x (N, C, *spatial) (3-D to 5-D); weight, bias (C,) or None -> same shape.

    Optionally followed by SiLU (the VAE's GroupNorm -> SiLU pair).
    """
    n, c = x.shape[0], x.shape[1]
    if c % num_groups != 0:
        raise ValueError(f"group_norm: {c} channels not divisible by {num_groups} groups")
    shape = x.shape
    g = x.reshape(n, num_groups, -1)
    y = _normalize_last(g, eps).reshape(shape)
    bshape = [1, c] + [1] * (len(shape) - 2)
    if weight is not None:
        y = y * weight.reshape(bshape)
    if bias is not None:
        y = y + bias.reshape(bshape)
    if silu:
        y = y * stable_sigmoid(y)
    return y


def rms_norm(x, weight=None, eps: float = 1e-6):
    """x (..., D); weight (D,) or None -> x / sqrt(mean(x^2) + eps) * weight."""
    y = x * jt.rsqrt((x * x).mean(-1, keepdims=True) + eps)
    if weight is not None:
        y = y * weight
    return y
