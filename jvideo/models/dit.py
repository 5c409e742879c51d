"""Image DiT (Peebles & Xie 2023) = diffusers' DiTTransformer2DModel, in Jittor.

Latents (B, C, H, W) are cut into p x p patches -> tokens (B, N, D) with fixed 2-D sin-cos
positions; each adaLN-Zero block modulates LayerNorm by (timestep + class) conditioning and
gates its residuals; the final layer modulates, projects to p*p*C_out and unpatchifies.

Parameter names follow diffusers (each block holds its own copy of the timestep/label
embedder, as diffusers does). `original_to_diffusers` / `diffusers_to_original` map the
facebookresearch/DiT checkpoint layout both ways.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import runtime as _runtime

jt = _runtime.import_jittor()
from jittor import nn  # noqa: E402

from kernels import ops  # noqa: E402
from jvideo.errors import JVideoError  # noqa: E402

from .attention import Attention  # noqa: E402
from .config import ModelConfig, require  # noqa: E402
from .embeddings import CombinedTimestepLabelEmbeddings, PatchEmbed, sincos_2d, unpatchify  # noqa: E402
from .mlp import FeedForward  # noqa: E402
from .norms import LayerNorm  # noqa: E402


@dataclass
class DiTConfig(ModelConfig):
    CLASS_NAME = "DiTTransformer2DModel"
    num_attention_heads: int = 16
    attention_head_dim: int = 72
    in_channels: int = 4
    out_channels: int | None = None
    num_layers: int = 28
    sample_size: int = 32
    patch_size: int = 2
    activation_fn: str = "gelu-approximate"
    num_embeds_ada_norm: int = 1000          # number of classes (+1 null row for guidance)
    attention_bias: bool = True
    norm_eps: float = 1e-5                   # the MLP's LayerNorm; original DiT uses 1e-6
    norm_elementwise_affine: bool = False
    # jvideo: diffusers' DiT computes timestep frequencies with shift 1, the original DiT with 0
    timestep_freq_shift: float = 1.0

    def validate(self, raw: dict) -> None:
        require(raw, "norm_type", ("ada_norm_zero",), "DiTTransformer2DModel")
        require(raw, "dropout", (0, 0.0), "DiTTransformer2DModel")

    @property
    def hidden_size(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def output_channels(self) -> int:
        return self.out_channels or self.in_channels


# Sizes of the paper's models (hidden, depth, heads); patch size comes from the name.
DIT_PRESETS = {"S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16), "XL": (1152, 28, 16)}


def dit_config(name: str, **overrides) -> DiTConfig:
    """'DiT-S/2' style names -> DiTConfig (latent 32x32x4, 1000 classes, learn_sigma)."""
    size, patch = name.removeprefix("DiT-").split("/")
    hidden, depth, heads = DIT_PRESETS[size]
    kw = dict(num_attention_heads=heads, attention_head_dim=hidden // heads, num_layers=depth,
              patch_size=int(patch), in_channels=4, out_channels=8, sample_size=32, norm_eps=1e-6)
    kw.update(overrides)
    return DiTConfig(**kw)


class AdaLayerNormZero(nn.Module):
    """Conditioning c = emb(t, y) (B, D) -> six (B, D) modulation vectors. Keys emb.*, linear."""

    def __init__(self, hidden: int, num_classes: int, freq_shift: float):
        super().__init__()
        self.emb = CombinedTimestepLabelEmbeddings(num_classes, hidden, freq_shift)
        self.linear = nn.Linear(hidden, 6 * hidden)

    def execute(self, t: jt.Var, y: jt.Var) -> list[jt.Var]:
        mod = self.linear(nn.silu(self.emb(t, y)))
        return list(jt.chunk(mod, 6, dim=1))


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block: tokens (B, N, D) -> (B, N, D)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        d = cfg.hidden_size
        self.norm1 = AdaLayerNormZero(d, cfg.num_embeds_ada_norm, cfg.timestep_freq_shift)
        self.norm1_eps = 1e-6
        self.attn1 = Attention(d, cfg.num_attention_heads, cfg.attention_head_dim, bias=cfg.attention_bias)
        self.norm3 = LayerNorm(d, cfg.norm_eps, cfg.norm_elementwise_affine)
        self.ff = FeedForward(d, cfg.activation_fn)

    def execute(self, x: jt.Var, t: jt.Var, y: jt.Var) -> jt.Var:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(t, y)
        h = ops.layernorm_modulate(x, shift_msa, scale_msa, eps=self.norm1_eps)
        x = ops.gated_residual(x, gate_msa, self.attn1(h))
        h = self.norm3.modulate(x, shift_mlp, scale_mlp)
        return ops.gated_residual(x, gate_mlp, self.ff(h))


class DiT(nn.Module):
    """Class-conditional DiT: (B, C, H, W) latents, (B,) timesteps, (B,) labels -> (B, C_out, H, W).

    Label `num_embeds_ada_norm` is the null class (classifier-free guidance).
    """

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.config = cfg
        d = cfg.hidden_size
        self.pos_embed = PatchEmbed(cfg.sample_size, cfg.patch_size, cfg.in_channels, d)
        self.transformer_blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.num_layers)])
        self.norm_out = LayerNorm(d, 1e-6, elementwise_affine=False)
        self.proj_out_1 = nn.Linear(d, 2 * d)
        self.proj_out_2 = nn.Linear(d, cfg.patch_size ** 2 * cfg.output_channels)

    def execute(self, x: jt.Var, t: jt.Var, y: jt.Var) -> jt.Var:
        _, _, h, w = x.shape
        p = self.config.patch_size
        # Drop labels once for all blocks (diffusers drops them independently in each block).
        y = self.transformer_blocks[0].norm1.emb.class_embedder.drop(y)
        tokens = self.pos_embed(x)                                     # (B, N, D)
        for block in self.transformer_blocks:
            tokens = block(tokens, t, y)
        cond = self.transformer_blocks[0].norm1.emb(t, y)             # final layer uses block 0's
        shift, scale = jt.chunk(self.proj_out_1(nn.silu(cond)), 2, dim=1)
        tokens = self.norm_out.modulate(tokens, shift, scale)
        tokens = self.proj_out_2(tokens)                               # (B, N, p*p*C_out)
        return unpatchify(tokens, (h // p, w // p), p, self.config.output_channels)


# ---- the original facebookresearch/DiT checkpoint layout -------------------------------

def _block_map(i: int) -> dict[str, str]:
    """Original key -> diffusers key for block i (qkv is split separately)."""
    o, n = f"blocks.{i}.", f"transformer_blocks.{i}."
    return {o + "attn.proj.weight": n + "attn1.to_out.0.weight", o + "attn.proj.bias": n + "attn1.to_out.0.bias",
            o + "mlp.fc1.weight": n + "ff.net.0.proj.weight", o + "mlp.fc1.bias": n + "ff.net.0.proj.bias",
            o + "mlp.fc2.weight": n + "ff.net.2.weight", o + "mlp.fc2.bias": n + "ff.net.2.bias",
            o + "adaLN_modulation.1.weight": n + "norm1.linear.weight",
            o + "adaLN_modulation.1.bias": n + "norm1.linear.bias"}


_EMBEDDERS = {"t_embedder.mlp.0.weight": "norm1.emb.timestep_embedder.linear_1.weight",
              "t_embedder.mlp.0.bias": "norm1.emb.timestep_embedder.linear_1.bias",
              "t_embedder.mlp.2.weight": "norm1.emb.timestep_embedder.linear_2.weight",
              "t_embedder.mlp.2.bias": "norm1.emb.timestep_embedder.linear_2.bias",
              "y_embedder.embedding_table.weight": "norm1.emb.class_embedder.embedding_table.weight"}
_GLOBAL = {"x_embedder.proj.weight": "pos_embed.proj.weight", "x_embedder.proj.bias": "pos_embed.proj.bias",
           "final_layer.adaLN_modulation.1.weight": "proj_out_1.weight",
           "final_layer.adaLN_modulation.1.bias": "proj_out_1.bias",
           "final_layer.linear.weight": "proj_out_2.weight", "final_layer.linear.bias": "proj_out_2.bias"}


def original_depth(sd: dict[str, np.ndarray]) -> int:
    return 1 + max((int(k.split(".")[1]) for k in sd if k.startswith("blocks.")), default=-1)


def original_to_diffusers(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """facebookresearch/DiT state dict -> diffusers DiTTransformer2DModel names.

    The single t/y embedder is copied into every block; qkv is split into to_q/k/v; the
    fixed `pos_embed` buffer is dropped (recomputed). Unknown keys are kept so the loader
    reports them.
    """
    depth = original_depth(sd)
    out: dict[str, np.ndarray] = {}
    used = {"pos_embed"}
    for k, v in _GLOBAL.items():
        if k in sd:
            out[v] = sd[k]
            used.add(k)
    for i in range(depth):
        for k, v in _block_map(i).items():
            if k in sd:
                out[v] = sd[k]
                used.add(k)
        for k, v in _EMBEDDERS.items():
            if k in sd:
                out[f"transformer_blocks.{i}.{v}"] = sd[k]
                used.add(k)
        for kind in ("weight", "bias"):
            key = f"blocks.{i}.attn.qkv.{kind}"
            if key in sd:
                q, k_, v_ = np.split(sd[key], 3, axis=0)
                for name, part in zip(("to_q", "to_k", "to_v"), (q, k_, v_)):
                    out[f"transformer_blocks.{i}.attn1.{name}.{kind}"] = part
                used.add(key)
    for k, v in sd.items():
        if k not in used:
            out[k] = v
    return out


def diffusers_to_original(sd: dict[str, np.ndarray], grid_size: int) -> dict[str, np.ndarray]:
    """diffusers names -> facebookresearch/DiT layout (block 0's embedder is the shared one),
    with the fixed (1, grid_size**2, D) `pos_embed` table the original keeps in its checkpoint.

    Raises JVideoError when the blocks' embedders differ (the original layout has only one).
    """
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks."))
    out = {k: sd[v] for k, v in _GLOBAL.items()}
    hidden = sd["pos_embed.proj.weight"].shape[0]
    out["pos_embed"] = sincos_2d(hidden, (grid_size, grid_size), grid_size)[None]
    for k, v in _EMBEDDERS.items():
        first = sd[f"transformer_blocks.0.{v}"]
        for i in range(1, depth):
            if not np.array_equal(first, sd[f"transformer_blocks.{i}.{v}"]):
                raise JVideoError(f"block {i}'s {v} differs from block 0's: the original DiT layout "
                                  "has one shared embedder, keep the diffusers layout")
        out[k] = first
    for i in range(depth):
        for k, v in _block_map(i).items():
            out[k] = sd[v]
        for kind in ("weight", "bias"):
            parts = [sd[f"transformer_blocks.{i}.attn1.{n}.{kind}"] for n in ("to_q", "to_k", "to_v")]
            out[f"blocks.{i}.attn.qkv.{kind}"] = np.concatenate(parts, axis=0)
    return out


HEADS_BY_HIDDEN = {384: 6, 768: 12, 1024: 16, 1152: 16}


def config_from_original(sd: dict[str, np.ndarray], num_heads: int | None = None) -> DiTConfig:
    """Infer a DiTConfig from an original DiT state dict (head count from the paper's sizes)."""
    try:
        w = sd["x_embedder.proj.weight"]
        hidden, in_ch, patch = w.shape[0], w.shape[1], w.shape[2]
        out_ch = sd["final_layer.linear.weight"].shape[0] // (patch * patch)
        classes = sd["y_embedder.embedding_table.weight"].shape[0] - 1
    except KeyError as err:
        raise JVideoError(f"not an original DiT checkpoint: missing {err.args[0]}") from None
    if num_heads is None:
        if hidden not in HEADS_BY_HIDDEN:
            raise JVideoError(f"cannot infer the head count for hidden size {hidden}: pass num_attention_heads")
        num_heads = HEADS_BY_HIDDEN[hidden]
    grid = int(round(sd["pos_embed"].shape[1] ** 0.5)) if "pos_embed" in sd else 32 // patch
    return DiTConfig(num_attention_heads=num_heads, attention_head_dim=hidden // num_heads, in_channels=in_ch,
                     out_channels=out_ch, num_layers=original_depth(sd), sample_size=grid * patch,
                     patch_size=patch, num_embeds_ada_norm=classes, norm_eps=1e-6, timestep_freq_shift=0.0)
