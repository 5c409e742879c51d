"""Multi-head attention with diffusers' parameter names (to_q, to_k, to_v, to_out.0).

The score/softmax/value product goes through `kernels.ops.attention`, so the fused switch
covers it. A key mask (cross-attention on padded text) takes the plain Jittor path.
"""
from __future__ import annotations

from kernels import runtime as _runtime

jt = _runtime.import_jittor()
from jittor import nn  # noqa: E402

from kernels import ops  # noqa: E402

from .norms import GroupNorm  # noqa: E402


def split_heads(x: jt.Var, heads: int) -> jt.Var:
    """(B, L, H*D) -> (B, H, L, D)."""
    b, l, c = x.shape
    return x.reshape((b, l, heads, c // heads)).permute(0, 2, 1, 3)


def merge_heads(x: jt.Var) -> jt.Var:
    """(B, H, L, D) -> (B, L, H*D)."""
    b, h, l, d = x.shape
    return x.permute(0, 2, 1, 3).reshape((b, l, h * d))


def masked_attention(q: jt.Var, k: jt.Var, v: jt.Var, key_mask: jt.Var, scale: float) -> jt.Var:
    """Attention where key_mask (B, S) is 1 for real tokens, 0 for padding; (B,H,L,D) out."""
    scores = jt.matmul(q, k.transpose((0, 1, 3, 2))) * scale          # (B, H, L, S)
    bias = (1.0 - key_mask.float32()).reshape((key_mask.shape[0], 1, 1, key_mask.shape[1])) * -10000.0
    return jt.matmul(nn.softmax(scores + bias, dim=-1), v)


class Attention(nn.Module):
    """Self- or cross-attention on tokens (B, L, C) -> (B, L, C).

    `context` (B, S, Cc) makes it cross-attention (Cc = cross_attention_dim).
    """

    def __init__(self, query_dim: int, heads: int, dim_head: int, cross_attention_dim: int | None = None,
                 bias: bool = False, out_bias: bool = True):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head ** -0.5
        kv_dim = cross_attention_dim or query_dim
        self.to_q = nn.Linear(query_dim, inner, bias=bias)
        self.to_k = nn.Linear(kv_dim, inner, bias=bias)
        self.to_v = nn.Linear(kv_dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim, bias=out_bias)])

    def execute(self, x: jt.Var, context: jt.Var | None = None, key_mask: jt.Var | None = None) -> jt.Var:
        context = x if context is None else context
        q = split_heads(self.to_q(x), self.heads)
        k = split_heads(self.to_k(context), self.heads)
        v = split_heads(self.to_v(context), self.heads)
        if key_mask is None:
            out = ops.attention(q, k, v, scale=self.scale)
        else:
            out = masked_attention(q, k, v, key_mask, self.scale)
        return self.to_out[0](merge_heads(out))


class SpatialSelfAttention(nn.Module):
    """The VAE mid-block attention on feature maps (B, C, H, W) -> (B, C, H, W).

    GroupNorm, single-head attention over the H*W positions, output projection, residual.
    Keys: group_norm, to_q, to_k, to_v, to_out.0 (diffusers' converted attention block).
    """

    def __init__(self, channels: int, num_groups: int, eps: float = 1e-6, dim_head: int | None = None):
        super().__init__()
        dim_head = dim_head or channels
        self.heads = channels // dim_head
        self.scale = dim_head ** -0.5
        self.num_groups = num_groups
        self.eps = eps
        self.group_norm = GroupNorm(num_groups, channels, eps=eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def execute(self, x: jt.Var) -> jt.Var:
        b, c, h, w = x.shape
        hs = self.group_norm(x)
        hs = hs.reshape((b, c, h * w)).transpose((0, 2, 1))             # (B, HW, C)
        q = split_heads(self.to_q(hs), self.heads)
        k = split_heads(self.to_k(hs), self.heads)
        v = split_heads(self.to_v(hs), self.heads)
        out = self.to_out[0](merge_heads(ops.attention(q, k, v, scale=self.scale)))
        return out.transpose((0, 2, 1)).reshape((b, c, h, w)) + x
