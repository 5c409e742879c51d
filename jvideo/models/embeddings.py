"""Position, timestep, label and caption embeddings (diffusers' names and numerics).

Fixed sin-cos tables are computed once in numpy (float64 frequencies, as diffusers does)
and kept as non-parameter Vars (leading underscore: not in the state dict).
"""
from __future__ import annotations

import math

import numpy as np

from kernels import runtime as _runtime

jt = _runtime.import_jittor()
from jittor import nn  # noqa: E402

from kernels import ops  # noqa: E402


# ---- fixed sin-cos tables (numpy) -------------------------------------------------------

def sincos_1d(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    """pos (M,) -> (M, embed_dim) as [sin, cos]; frequencies 1/10000^(2i/D) in float64."""
    if embed_dim % 2:
        raise ValueError("embed_dim must be even")
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.outer(np.asarray(pos, dtype=np.float64).reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(embed_dim: int, grid_hw: tuple[int, int], base_size: int,
              interpolation_scale: float = 1.0) -> np.ndarray:
    """(H*W, embed_dim) float32 table; first half encodes the column, second the row.

    Matches diffusers.get_2d_sincos_pos_embed (and DiT/MAE's table when base_size == H).
    """
    gh, gw = grid_hw
    rows = np.arange(gh, dtype=np.float32) / np.float32(gh / base_size) / np.float32(interpolation_scale)
    cols = np.arange(gw, dtype=np.float32) / np.float32(gw / base_size) / np.float32(interpolation_scale)
    col_grid, row_grid = np.meshgrid(cols, rows, indexing="xy")  # (gh, gw) each
    emb = np.concatenate([sincos_1d(embed_dim // 2, col_grid), sincos_1d(embed_dim // 2, row_grid)], axis=1)
    return emb.astype(np.float32)


# ---- timestep embedding -----------------------------------------------------------------

def timestep_embedding(t: jt.Var, dim: int = 256, flip_sin_to_cos: bool = True,
                       freq_shift: float = 0.0, max_period: float = 10000.0) -> jt.Var:
    """t (N,) -> (N, dim) sinusoidal features, [cos, sin] when flipped.

    freq_shift=1 is diffusers' DiT (exponent / (half - 1)); 0 is PixArt/Latte and the
    original DiT (exponent / half).
    """
    half = dim // 2
    exponent = -math.log(max_period) * np.arange(half, dtype=np.float32)
    freqs = np.exp(exponent / np.float32(half - freq_shift)).astype(np.float32)
    args = t.float32().reshape((-1, 1)) * jt.array(freqs).reshape((1, half))
    sin, cos = jt.sin(args), jt.cos(args)
    emb = jt.concat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=1)
    if dim % 2:
        emb = jt.concat([emb, jt.zeros((emb.shape[0], 1))], dim=1)
    return emb


class TimestepEmbedding(nn.Module):
    """256 sinusoidal features -> Linear -> SiLU -> Linear. Keys linear_1, linear_2."""

    def __init__(self, in_channels: int, embed_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, embed_dim)
        self.linear_2 = nn.Linear(embed_dim, embed_dim)

    def execute(self, x: jt.Var) -> jt.Var:
        return self.linear_2(nn.silu(self.linear_1(x)))


class LabelEmbedding(nn.Module):
    """Class labels (N,) -> (N, D); row `num_classes` is the null class for guidance."""

    def __init__(self, num_classes: int, hidden: int, dropout_prob: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden)

    def drop(self, labels: jt.Var) -> jt.Var:
        """Training-time label dropout: each label becomes the null class with dropout_prob."""
        labels = labels.int32()
        if not (self.is_training() and self.dropout_prob > 0):
            return labels
        dropped = jt.rand(labels.shape) < self.dropout_prob
        return jt.ternary(dropped, jt.full_like(labels, self.num_classes), labels)

    def execute(self, labels: jt.Var) -> jt.Var:
        return self.embedding_table(labels.int32())


class CombinedTimestepLabelEmbeddings(nn.Module):
    """DiT conditioning: timestep MLP + label embedding (N, D). Keys as diffusers."""

    def __init__(self, num_classes: int, hidden: int, freq_shift: float = 1.0,
                 class_dropout_prob: float = 0.1):
        super().__init__()
        self.freq_shift = freq_shift
        self.timestep_embedder = TimestepEmbedding(256, hidden)
        self.class_embedder = LabelEmbedding(num_classes, hidden, class_dropout_prob)

    def execute(self, t: jt.Var, labels: jt.Var) -> jt.Var:
        t_emb = self.timestep_embedder(timestep_embedding(t, 256, True, self.freq_shift))
        return t_emb + self.class_embedder(labels)


class PixArtTimestepEmbeddings(nn.Module):
    """adaLN-single's timestep embedder (no size/aspect conditions). Keys timestep_embedder.*"""

    def __init__(self, hidden: int):
        super().__init__()
        self.timestep_embedder = TimestepEmbedding(256, hidden)

    def execute(self, t: jt.Var) -> jt.Var:
        return self.timestep_embedder(timestep_embedding(t, 256, True, 0.0))


class AdaLayerNormSingle(nn.Module):
    """PixArt adaLN-single: t (B,) -> modulation (B, 6D) and the embedded timestep (B, D)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.emb = PixArtTimestepEmbeddings(hidden)
        self.linear = nn.Linear(hidden, 6 * hidden)

    def execute(self, t: jt.Var, extra: jt.Var | None = None) -> tuple[jt.Var, jt.Var]:
        """extra (B, D), optional: more conditioning added to the embedded timestep."""
        embedded = self.emb(t)
        if extra is not None:
            embedded = embedded + extra
        return self.linear(nn.silu(embedded)), embedded


class CaptionProjection(nn.Module):
    """Text embeddings (B, S, Ct) of any width -> (B, S, D): Linear, GELU-tanh, Linear."""

    def __init__(self, in_features: int, hidden: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, hidden)
        self.linear_2 = nn.Linear(hidden, hidden)

    def execute(self, caption: jt.Var) -> jt.Var:
        h = nn.matmul_transpose(caption, self.linear_1.weight)
        return self.linear_2(ops.bias_gelu(h, self.linear_1.bias))


# ---- patches ----------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    """(N, C, H, W) -> (N, H/p * W/p, D) tokens plus fixed 2-D sin-cos positions.

    `sample_size` fixes the base grid the positions are scaled to (diffusers' base_size);
    other input sizes get a table computed for their grid, as in diffusers.
    """

    def __init__(self, sample_size: int, patch_size: int, in_channels: int, embed_dim: int,
                 interpolation_scale: float = 1.0):
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.base_size = sample_size // patch_size
        self.interpolation_scale = interpolation_scale
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        self._pos_cache: dict[tuple[int, int], jt.Var] = {}

    def pos_embed(self, grid_hw: tuple[int, int]) -> jt.Var:
        """(1, gh*gw, D) fixed table for a grid, cached per grid size."""
        if grid_hw not in self._pos_cache:
            table = sincos_2d(self.embed_dim, grid_hw, self.base_size, self.interpolation_scale)
            self._pos_cache[grid_hw] = jt.array(table[None]).stop_grad()
        return self._pos_cache[grid_hw]

    def execute(self, x: jt.Var) -> jt.Var:
        n, _, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"input {h}x{w} is not divisible by patch size {p}")
        tokens = self.proj(x)                                    # (N, D, h/p, w/p)
        tokens = tokens.reshape((n, self.embed_dim, -1)).transpose((0, 2, 1))
        return tokens + self.pos_embed((h // p, w // p))


def unpatchify(x: jt.Var, grid_hw: tuple[int, int], patch: int, channels: int) -> jt.Var:
    """(N, gh*gw, p*p*C) -> (N, C, gh*p, gw*p)."""
    n = x.shape[0]
    gh, gw = grid_hw
    x = x.reshape((n, gh, gw, patch, patch, channels))
    x = x.permute(0, 5, 1, 3, 2, 4)                              # n c gh p gw q
    return x.reshape((n, channels, gh * patch, gw * patch))
