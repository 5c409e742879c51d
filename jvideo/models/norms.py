"""Layer norms routed through `kernels.ops` (one fused switch for the whole model)."""
from __future__ import annotations

from kernels import runtime as _runtime

jt = _runtime.import_jittor()
from jittor import nn  # noqa: E402

from kernels import ops  # noqa: E402


class LayerNorm(nn.Module):
    """LayerNorm over the last dim, optionally without affine parameters (DiT, PixArt)."""

    def __init__(self, dim: int, eps: float = 1e-5, elementwise_affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = jt.ones((dim,)) if elementwise_affine else None
        self.bias = jt.zeros((dim,)) if elementwise_affine else None

    def execute(self, x: jt.Var) -> jt.Var:
        return ops.layer_norm(x, self.weight, self.bias, eps=self.eps)

    def modulate(self, x: jt.Var, shift: jt.Var, scale: jt.Var) -> jt.Var:
        """norm(x) * (1 + scale) + shift; x (B, N, C), shift/scale (B, C)."""
        if self.weight is None:
            return ops.layernorm_modulate(x, shift, scale, eps=self.eps)
        h = ops.layer_norm(x, self.weight, self.bias, eps=self.eps)
        return h * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class GroupNorm(nn.Module):
    """GroupNorm on (N, C, *spatial) with an optional fused SiLU after it."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.num_groups = num_groups
        self.eps = eps
        self.weight = jt.ones((num_channels,))
        self.bias = jt.zeros((num_channels,))

    def execute(self, x: jt.Var, silu: bool = False) -> jt.Var:
        return ops.group_norm(x, self.num_groups, self.weight, self.bias, eps=self.eps, silu=silu)
