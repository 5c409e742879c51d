"""Latte video DiT = diffusers' LatteTransformer3DModel, in Jittor.

Video latents (B, C, T, H, W) are patchified per frame into tokens (B*T, N, D). Each layer
is a spatial block (self-attention over the N patches of a frame, cross-attention on the
projected text, MLP) followed by a temporal block (self-attention over the T frames of a
patch position, MLP); tokens are rearranged (b t) n d <-> (b n) t d between them. A fixed
1-D sin-cos temporal embedding is added once, before the first temporal block. Conditioning
is PixArt's adaLN-single: one timestep MLP gives 6*D values, each block adds its own
`scale_shift_table` (6, D).

With `reference_tokens` (jvideo's identity conditioning, not in diffusers) a reference image's
latent is patchified by the same patch embedding, tagged with a learnt `reference_embedding`
and appended to the projected caption tokens: every spatial token can read the character's
look in one cross-attention hop, wherever the character stands in the reference.

With `pooled_conditioning` (also jvideo's) the caption's masked mean, and the reference
tokens' mean where there is one, are projected and added to the timestep embedding, so every
block's adaLN modulation carries them: DiT (Peebles & Xie) found adaLN conditioning learns
far faster than cross-attention alone, which matters on a CPU budget.

With `temporal_cross_attention` (also jvideo's) the temporal blocks cross-attend to the same
context as the spatial ones: a patch position's time line then reads "moves left" in one hop,
where without it the direction reaches the temporal blocks only through the tokens the spatial
blocks wrote (and the pooled adaLN).

With `frame_modulation` (also jvideo's) a learnt vector per temporal position (zero at the
start, so the model starts as the plain one) is added to the adaLN embedding of every frame's
spatial blocks and of the final layer. Through the adaLN MLP's nonlinearity each frame then gets
its own scale, shift and gate as a function of timestep, pooled caption and frame index
together: "frame 12 of a clip that moves left" can select different channels from frame 2,
where the plain model modulates every frame alike and must find the frame in the tokens.

With `layout_conditioning` (also jvideo's) each frame also takes a layout (B, layout_channels, T,
H, W) on the latent grid: where the subject is (channel 0), whether a layout is given at all
(channel 1), and optionally more (jvideo.generation.layout draws the identity reference there).
Its patches are embedded by a convolution of the patch's size, zero at the start as ControlNet's
zero convolutions are, and added to the frame's tokens, so the model starts as the plain one and
learns to draw the subject where the layout puts it (jvideo.generation.layout).

With `block_modulation` (also jvideo's) every block also gets its own linear map of the embedded
timestep (and pooled conditioning) to its 6 modulation vectors, added to the shared one: DiT's
adaLN-Zero, per block, on top of PixArt's adaLN-single. Under adaLN-single all blocks share the
one timestep-dependent modulation (a block adds only a constant table), so a small network has
little room to behave differently at different noise levels. Zero at the start, so the model
starts as the plain one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import runtime as _runtime

jt = _runtime.import_jittor()
from jittor import nn  # noqa: E402

from kernels import ops  # noqa: E402

from .attention import Attention  # noqa: E402
from .config import ModelConfig, require  # noqa: E402
from .embeddings import AdaLayerNormSingle, CaptionProjection, PatchEmbed, sincos_1d, unpatchify  # noqa: E402
from .mlp import FeedForward  # noqa: E402
from .norms import LayerNorm  # noqa: E402


@dataclass
class LatteConfig(ModelConfig):
    CLASS_NAME = "LatteTransformer3DModel"
    num_attention_heads: int = 16
    attention_head_dim: int = 88
    in_channels: int = 4
    out_channels: int | None = None
    num_layers: int = 1
    cross_attention_dim: int | None = None
    attention_bias: bool = False
    sample_size: int = 64
    patch_size: int = 2
    activation_fn: str = "geglu"
    num_embeds_ada_norm: int | None = None
    norm_type: str = "ada_norm_single"
    norm_elementwise_affine: bool = True
    norm_eps: float = 1e-5
    caption_channels: int = 384
    video_length: int = 16
    # jvideo's identity extension (absent from diffusers' configs, so off for their checkpoints):
    # the reference image's latent patches join the caption tokens as cross-attention context.
    reference_tokens: bool = False
    # jvideo's extension: pooled caption (and reference) added to the adaLN timestep embedding.
    pooled_conditioning: bool = False
    # jvideo's extension: temporal blocks cross-attend to the caption (and reference) too.
    temporal_cross_attention: bool = False
    # jvideo's extension: a learnt per-frame vector joins the adaLN embedding of the spatial
    # blocks and the final layer, so their modulation depends on (timestep, caption, frame).
    frame_modulation: bool = False
    # jvideo's extension: a per-frame subject layout embedded into the tokens (2 channels: where,
    # and whether given; more with a reference drawn into it, see jvideo.generation.layout).
    layout_conditioning: bool = False
    layout_channels: int = 2
    # jvideo's extension: a per-block adaLN-Zero modulation beside adaLN-single's shared one.
    block_modulation: bool = False

    def validate(self, raw: dict) -> None:
        require(raw, "norm_type", ("ada_norm_single",), "LatteTransformer3DModel")
        require(raw, "dropout", (0, 0.0), "LatteTransformer3DModel")

    @property
    def hidden_size(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def output_channels(self) -> int:
        return self.out_channels or self.in_channels


LATTE_PRESETS = {
    # the published Latte-1 transformer (T5 4096-d captions, 16 frames of 64x64x4 latents)
    "Latte-1": dict(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
                    cross_attention_dim=1152, attention_bias=True, sample_size=64, patch_size=2,
                    activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_elementwise_affine=False,
                    norm_eps=1e-6, caption_channels=4096, video_length=16),
    # jvideo's own small model: MiniLM 384-d captions, trainable on a CPU
    "jvideo-small": dict(num_attention_heads=6, attention_head_dim=64, in_channels=4, out_channels=4, num_layers=6,
                         cross_attention_dim=384, attention_bias=True, sample_size=32, patch_size=2,
                         activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_elementwise_affine=False,
                         norm_eps=1e-6, caption_channels=384, video_length=16),
}


def zero_layer(layer: nn.Module) -> nn.Module:
    """Set a Linear or Conv layer's weight and bias to zero in place (the layer then adds
    nothing: a new input or path starts the model as it was); returns the layer."""
    layer.weight.update(jt.zeros(layer.weight.shape))
    layer.bias.update(jt.zeros(layer.bias.shape))
    return layer


def latte_config(name: str = "Latte-1", **overrides) -> LatteConfig:
    """A named preset (LATTE_PRESETS) with optional field overrides."""
    if name not in LATTE_PRESETS:
        raise ValueError(f"unknown Latte preset {name!r} (one of {', '.join(LATTE_PRESETS)})")
    return LatteConfig(**{**LATTE_PRESETS[name], **overrides})


class LatteBlock(nn.Module):
    """adaLN-single transformer block on tokens (B', L, D); spatial blocks (and, with
    temporal_cross_attention, temporal ones) also cross-attend.

    `t6` (B', 6D) is the shared timestep modulation; context (B', S, D) the projected text.
    With block_modulation, `emb` (B', D) (the activated timestep embedding) also goes through the
    block's own zero-initialised linear map to 6D, added to t6.
    """

    def __init__(self, cfg: LatteConfig, cross_attention: bool):
        super().__init__()
        d = cfg.hidden_size
        self.hidden = d
        self.norm1 = LayerNorm(d, cfg.norm_eps, cfg.norm_elementwise_affine)
        self.attn1 = Attention(d, cfg.num_attention_heads, cfg.attention_head_dim, bias=cfg.attention_bias)
        self.norm2 = LayerNorm(d, cfg.norm_eps, cfg.norm_elementwise_affine)
        self.attn2 = (Attention(d, cfg.num_attention_heads, cfg.attention_head_dim,
                                cross_attention_dim=cfg.cross_attention_dim, bias=cfg.attention_bias)
                      if cross_attention else None)
        self.ff = FeedForward(d, cfg.activation_fn)
        self.scale_shift_table = jt.randn((6, d)) / d ** 0.5
        # zero: the block starts as adaLN-single's
        self.block_modulation = zero_layer(nn.Linear(d, 6 * d)) if cfg.block_modulation else None

    def execute(self, x: jt.Var, t6: jt.Var, context: jt.Var | None = None,
                context_mask: jt.Var | None = None, emb: jt.Var | None = None) -> jt.Var:
        """x (B*G, L, D): G rows (frames or patch positions) per clip; t6 (B*G, 6D);
        context (B, S, D) and context_mask (B, S): one per clip, not per row; emb (B*G, D),
        the activated timestep embedding, for block_modulation."""
        b = x.shape[0]
        if self.block_modulation is not None:
            t6 = t6 + self.block_modulation(emb)
        mod = self.scale_shift_table.unsqueeze(0) + t6.reshape((b, 6, self.hidden))   # (B', 6, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (mod[:, i] for i in range(6))
        x = ops.gated_residual(x, gate_msa, self.attn1(self.norm1.modulate(x, shift_msa, scale_msa)))
        if self.attn2 is not None:
            x = x + self.cross_attention(x, context, context_mask)
        return ops.gated_residual(x, gate_mlp, self.ff(self.norm2.modulate(x, shift_mlp, scale_mlp)))

    def cross_attention(self, x: jt.Var, context: jt.Var, context_mask: jt.Var | None) -> jt.Var:
        """(B*G, L, D) -> (B*G, L, D). A query's cross-attention reads only its clip's context,
        so a clip's G*L queries go in as one row: the same numbers as repeating the context per
        frame (diffusers' way), with its keys and values projected once per clip instead of G
        times. PixArt: no norm before cross-attention."""
        rows, length, d = x.shape
        clips = context.shape[0]
        out = self.attn2(x.reshape((clips, rows // clips * length, d)), context, context_mask)
        return out.reshape((rows, length, d))


def repeat_rows(x: jt.Var, times: int) -> jt.Var:
    """(B, ...) -> (B*times, ...), each row repeated `times` times in place (repeat_interleave)."""
    shape = tuple(x.shape)
    x = x.unsqueeze(1).broadcast((shape[0], times) + shape[1:])
    return x.reshape((shape[0] * times,) + shape[1:])


class Latte(nn.Module):
    """Text-conditioned video DiT.

    execute(x (B, C, T, H, W), t (B,), text (B, S, caption_channels), text_mask (B, S) or None)
    -> (B, C_out, T, H, W); optionally an identity reference latent (B, C, H, W) and its (B,)
    mask. With enable_temporal=False every frame is treated as an image.
    """

    def __init__(self, cfg: LatteConfig):
        super().__init__()
        self.config = cfg
        d = cfg.hidden_size
        self.pos_embed = PatchEmbed(cfg.sample_size, cfg.patch_size, cfg.in_channels, d,
                                    interpolation_scale=max(cfg.sample_size // 64, 1))
        self.transformer_blocks = nn.ModuleList([LatteBlock(cfg, cross_attention=cfg.cross_attention_dim is not None)
                                                 for _ in range(cfg.num_layers)])
        if cfg.temporal_cross_attention and cfg.cross_attention_dim is None:
            raise ValueError("temporal_cross_attention needs cross_attention_dim")
        self.temporal_transformer_blocks = nn.ModuleList([LatteBlock(cfg, cross_attention=cfg.temporal_cross_attention)
                                                          for _ in range(cfg.num_layers)])
        self.norm_out = LayerNorm(d, 1e-6, elementwise_affine=False)
        self.scale_shift_table = jt.randn((2, d)) / d ** 0.5
        self.proj_out = nn.Linear(d, cfg.patch_size ** 2 * cfg.output_channels)
        self.adaln_single = AdaLayerNormSingle(d)
        self.caption_projection = CaptionProjection(cfg.caption_channels, d)
        if cfg.reference_tokens:
            self.reference_embedding = jt.zeros((1, 1, d))
        if cfg.pooled_conditioning:
            self.pooled_caption_projection = CaptionProjection(cfg.caption_channels, d)
            if cfg.reference_tokens:
                self.pooled_reference_projection = nn.Linear(d, d)
        if cfg.frame_modulation:
            self.frame_embedding = jt.zeros((cfg.video_length, d))
        if cfg.layout_conditioning:
            self.layout_embed = zero_layer(nn.Conv2d(cfg.layout_channels, d, cfg.patch_size, stride=cfg.patch_size))
        temp = sincos_1d(d, np.arange(cfg.video_length)).astype(np.float32)
        self._temp_pos_embed = jt.array(temp[None]).stop_grad()        # (1, video_length, D)

    def reference_tokens(self, reference: jt.Var) -> jt.Var:
        """reference latent (B, C, H, W) -> its tagged patch tokens (B, N, D)."""
        if not self.config.reference_tokens:
            raise ValueError("this Latte was built without reference_tokens")
        return self.pos_embed(reference) + self.reference_embedding

    def reference_context(self, text: jt.Var, text_mask: jt.Var | None, refs: jt.Var,
                          reference_mask: jt.Var) -> tuple[jt.Var, jt.Var]:
        """Caption tokens (B, S, D) and the reference tokens (B, N, D) as one context.

        reference_mask (B,) is 1 where the row has a reference, 0 where it has none (its tokens
        are then masked out: text-only generation).
        """
        b = text.shape[0]
        context = jt.concat([self.caption_projection(text), refs], dim=1)
        text_mask = jt.ones((b, text.shape[1])) if text_mask is None else text_mask
        ref_mask = reference_mask.float32().reshape((b, 1)).broadcast((b, refs.shape[1]))
        return context, jt.concat([text_mask.float32(), ref_mask], dim=1)

    def pooled_embedding(self, text: jt.Var, text_mask: jt.Var | None, refs: jt.Var | None,
                         reference_mask: jt.Var | None) -> jt.Var:
        """(B, D) added to the timestep embedding: masked mean caption, plus mean reference."""
        b, s = text.shape[0], text.shape[1]
        weights = jt.ones((b, s)) if text_mask is None else text_mask.float32()
        weights = weights / weights.sum(dim=1, keepdims=True).maximum(1.0)
        pooled = self.pooled_caption_projection((text * weights.unsqueeze(2)).sum(dim=1, keepdims=True))[:, 0]
        if refs is not None:
            keep = reference_mask.float32().reshape((b, 1))
            pooled = pooled + self.pooled_reference_projection(refs.mean(dim=1)) * keep
        return pooled

    def frame_modulation(self, t: jt.Var, extra: jt.Var | None, frames: int) -> tuple[jt.Var, jt.Var]:
        """Per-frame adaLN: t (B,), extra (B, D) or None -> modulation (B*T, 6D) and the
        embedding (B*T, D), frame f's row carrying frame_embedding[f]."""
        b, d = t.shape[0], self.config.hidden_size
        per_frame = self.frame_embedding[:frames].unsqueeze(0).broadcast((b, frames, d)).reshape((b * frames, d))
        if extra is not None:
            per_frame = per_frame + repeat_rows(extra, frames)
        return self.adaln_single(repeat_rows(t, frames), per_frame)

    def layout_tokens(self, layout: jt.Var) -> jt.Var:
        """layout (B, layout_channels, T, H, W) -> (B*T, N, D), added to the frames' tokens."""
        if not self.config.layout_conditioning:
            raise ValueError("this Latte was built without layout_conditioning")
        b, c, frames, h, w = layout.shape
        frames_first = layout.permute(0, 2, 1, 3, 4).reshape((b * frames, c, h, w))
        out = self.layout_embed(frames_first)                          # (B*T, D, H/p, W/p)
        return out.reshape((b * frames, out.shape[1], -1)).transpose((0, 2, 1))

    def execute(self, x: jt.Var, t: jt.Var, text: jt.Var, text_mask: jt.Var | None = None,
                enable_temporal: bool = True, reference: jt.Var | None = None,
                reference_mask: jt.Var | None = None, layout: jt.Var | None = None) -> jt.Var:
        """reference (B, C, H, W) and reference_mask (B,): see reference_context; layout
        (B, layout_channels, T, H, W), aligned with x's frames: see layout_tokens."""
        b, _, frames, h, w = x.shape
        p, d = self.config.patch_size, self.config.hidden_size
        if enable_temporal and frames > self.config.video_length:
            raise ValueError(f"{frames} frames but the model's temporal table has {self.config.video_length}")
        x = x.permute(0, 2, 1, 3, 4).reshape((b * frames, x.shape[1], h, w))
        tokens = self.pos_embed(x)                                    # (B*T, N, D)
        if layout is not None:
            tokens = tokens + self.layout_tokens(layout)
        n = tokens.shape[1]
        refs = self.reference_tokens(reference) if reference is not None else None   # (B, N, D)
        extra = (self.pooled_embedding(text, text_mask, refs, reference_mask)
                 if self.config.pooled_conditioning else None)
        t6, t_emb = self.adaln_single(t, extra)                       # (B, 6D), (B, D)
        if refs is not None:
            context, text_mask = self.reference_context(text, text_mask, refs, reference_mask)
        else:
            context = self.caption_projection(text)
        time_context, time_mask = (context, text_mask) if self.config.temporal_cross_attention else (None, None)
        if self.config.frame_modulation and enable_temporal:
            t6_spatial, t_emb_frames = self.frame_modulation(t, extra, frames)   # (B*T, 6D), (B*T, D)
        else:
            t6_spatial, t_emb_frames = repeat_rows(t6, frames), repeat_rows(t_emb, frames)
        t6_temporal = repeat_rows(t6, n)
        # Per-block modulation reads the same activated embedding adaLN-single's linear reads.
        emb_spatial, emb_temporal = ((nn.silu(t_emb_frames), repeat_rows(nn.silu(t_emb), n))
                                     if self.config.block_modulation else (None, None))
        for i, (spatial, temporal) in enumerate(zip(self.transformer_blocks, self.temporal_transformer_blocks)):
            tokens = spatial(tokens, t6_spatial, context, text_mask, emb_spatial)
            if not enable_temporal:
                continue
            tokens = tokens.reshape((b, frames, n, d)).permute(0, 2, 1, 3).reshape((b * n, frames, d))
            if i == 0 and frames > 1:
                tokens = tokens + self._temp_pos_embed[:, :frames]
            tokens = temporal(tokens, t6_temporal, time_context, time_mask, emb_temporal)
            tokens = tokens.reshape((b, n, frames, d)).permute(0, 2, 1, 3).reshape((b * frames, n, d))
        mod = self.scale_shift_table.unsqueeze(0) + t_emb_frames.unsqueeze(1)   # (B*T, 2, D)
        tokens = self.norm_out.modulate(tokens, mod[:, 0], mod[:, 1])
        out = unpatchify(self.proj_out(tokens), (h // p, w // p), p, self.config.output_channels)
        return out.reshape((b, frames) + tuple(out.shape[1:])).permute(0, 2, 1, 3, 4)
