"""Public fused-operator API: one switch, one function per op.

Every function takes and returns jittor Vars (fp32) and is differentiable. Each dispatches on
the global switch: fused kernel (`kernels.fused`) when on, plain-Jittor reference path
(`kernels.reference`) when off. The switch defaults to on.

    from kernels import ops
    y = ops.layernorm_modulate(x, shift, scale)      # fused
    with ops.use_fused(False):
        y_ref = ops.layernorm_modulate(x, shift, scale)  # reference

`last_path(name)` says which path an op took on its latest call (used by tests).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from kernels import reference as ref

_STATE = {"fused": True}
_LAST_PATH: dict[str, str] = {}


def set_fused(enabled: bool) -> None:
    """Turn the fused kernels on or off for every op."""
    _STATE["fused"] = bool(enabled)


def fused_enabled() -> bool:
    return _STATE["fused"]


@contextlib.contextmanager
def use_fused(enabled: bool) -> Iterator[None]:
    """Context manager: set the switch, restore the previous state on exit."""
    prev = _STATE["fused"]
    _STATE["fused"] = bool(enabled)
    try:
        yield
    finally:
        _STATE["fused"] = prev


def last_path(name: str) -> str | None:
    """"fused" or "reference": the path op `name` took on its latest call."""
    return _LAST_PATH.get(name)


def _fused_impl(name: str):
    """The fused implementation of `name`, or None when the switch is off."""
    if not _STATE["fused"]:
        return None
    from kernels import fused
    return getattr(fused, name, None)


def _dispatch(name: str, *args, **kwargs):
    impl = _fused_impl(name)
    if impl is None:
        _LAST_PATH[name] = "reference"
        return getattr(ref, name)(*args, **kwargs)
    _LAST_PATH[name] = "fused"
    return impl(*args, **kwargs)


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5):
    """x (..., C); weight, bias (C,) or None -> (..., C)."""
    return _dispatch("layer_norm", x, weight, bias, eps)


def layernorm_modulate(x, shift, scale, eps: float = 1e-6):
    """x (B, N, C); shift, scale (B, C) -> LN(x) (no affine) * (1 + scale) + shift."""
    return _dispatch("layernorm_modulate", x, shift, scale, eps)


def bias_gelu(x, bias):
    """x (..., C), bias (C,) -> GELU-tanh(x + bias)."""
    return _dispatch("bias_gelu", x, bias)


def gated_residual(x, gate, y):
    """x, y (B, N, C); gate (B, C) -> x + gate[:, None] * y."""
    return _dispatch("gated_residual", x, gate, y)


def gated_residual_layernorm_modulate(x, gate, y, shift, scale, eps: float = 1e-6):
    """x, y (B, N, C); gate, shift, scale (B, C) -> (xn, h) with xn = x + gate[:, None] * y and
    h = LN(xn) * (1 + scale) + shift: a DiT block's residual and the next norm in one pass."""
    return _dispatch("gated_residual_layernorm_modulate", x, gate, y, shift, scale, eps)


def attention(q, k, v, scale: float | None = None):
    """q (B, H, L, D), k/v (B, H, S, D) -> softmax(q k^T * scale) v, (B, H, L, D).

    scale defaults to D ** -0.5.
    """
    return _dispatch("attention", q, k, v, scale)


def group_norm(x, num_groups: int, weight=None, bias=None, eps: float = 1e-6, silu: bool = False):
    """x (N, C, *spatial), 3-D to 5-D; weight, bias (C,) or None; optional SiLU after."""
    return _dispatch("group_norm", x, num_groups, weight, bias, eps, silu)


def rms_norm(x, weight=None, eps: float = 1e-6):
    """x (..., D); weight (D,) or None -> x * rsqrt(mean(x^2) + eps) * weight."""
    return _dispatch("rms_norm", x, weight, eps)
