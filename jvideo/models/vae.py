"""AutoencoderKL (the SD VAE used per frame by DiT, Latte and Open-Sora 1.x), in Jittor.

Names and numerics follow diffusers' AutoencoderKL: Encoder/Decoder of ResnetBlock2D,
asymmetric-pad stride-2 Downsample, nearest x2 Upsample, a mid block with one spatial
self-attention, GroupNorm eps 1e-6, quant_conv/post_quant_conv, a diagonal Gaussian.

Video goes through frame by frame, batch-folded: (B, C, T, H, W) <-> (B*T, C, H, W).
`temporal_compression` > 1 (our presets only; diffusers checkpoints leave it at 1) adds a
learned stage over time on the latent moments: f consecutive frames -> 1 latent frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import runtime as _runtime

jt = _runtime.import_jittor()
from jittor import nn  # noqa: E402

from jvideo.errors import JVideoError  # noqa: E402

from .attention import SpatialSelfAttention  # noqa: E402
from .config import ModelConfig  # noqa: E402
from .norms import GroupNorm  # noqa: E402


@dataclass
class AutoencoderKLConfig(ModelConfig):
    CLASS_NAME = "AutoencoderKL"
    in_channels: int = 3
    out_channels: int = 3
    down_block_types: tuple = ("DownEncoderBlock2D",)
    up_block_types: tuple = ("UpDecoderBlock2D",)
    block_out_channels: tuple = (64,)
    layers_per_block: int = 1
    act_fn: str = "silu"
    latent_channels: int = 4
    norm_num_groups: int = 32
    sample_size: int = 32
    scaling_factor: float = 0.18215
    shift_factor: float | None = None
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True
    temporal_compression: int = 1   # jvideo only: frames per latent frame

    def validate(self, raw: dict) -> None:
        bad = [t for t in self.down_block_types if t != "DownEncoderBlock2D"]
        bad += [t for t in self.up_block_types if t != "UpDecoderBlock2D"]
        if bad or self.act_fn != "silu":
            raise JVideoError(f"AutoencoderKL: unsupported block/activation {bad or self.act_fn} "
                              "(supported: DownEncoderBlock2D, UpDecoderBlock2D, silu)")
        if raw.get("latents_mean") is not None:
            raise JVideoError("AutoencoderKL: latents_mean/latents_std normalisation is not supported")


def sd_vae_config(**overrides) -> AutoencoderKLConfig:
    """The Stable Diffusion VAE (sd-vae-ft-ema / -mse): 8x down, 4 latent channels."""
    kw = dict(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              block_out_channels=(128, 256, 512, 512), layers_per_block=2, sample_size=256)
    kw.update(overrides)
    return AutoencoderKLConfig(**kw)


def small_vae_config(**overrides) -> AutoencoderKLConfig:
    """jvideo's small video VAE: 4x spatial down, 4 latent channels, 2 frames per latent frame."""
    kw = dict(down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
              block_out_channels=(32, 64, 128), layers_per_block=1, norm_num_groups=16, sample_size=128,
              temporal_compression=2)
    kw.update(overrides)
    return AutoencoderKLConfig(**kw)


class ResnetBlock2D(nn.Module):
    """GroupNorm-SiLU-conv twice plus a (1x1 conv) shortcut: (N, Cin, H, W) -> (N, Cout, H, W)."""

    def __init__(self, cin: int, cout: int, groups: int, eps: float = 1e-6):
        super().__init__()
        self.norm1 = GroupNorm(groups, cin, eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = GroupNorm(groups, cout, eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def execute(self, x: jt.Var) -> jt.Var:
        h = self.conv1(self.norm1(x, silu=True))
        h = self.conv2(self.norm2(h, silu=True))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Downsample2D(nn.Module):
    """Stride-2 3x3 conv after padding right/bottom by one: (N, C, H, W) -> (N, C, H/2, W/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def execute(self, x: jt.Var) -> jt.Var:
        return self.conv(nn.pad(x, (0, 1, 0, 1)))


class Upsample2D(nn.Module):
    """Nearest x2 then 3x3 conv: (N, C, H, W) -> (N, C, 2H, 2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def execute(self, x: jt.Var) -> jt.Var:
        n, c, h, w = x.shape
        x = x.reshape((n, c, h, 1, w, 1)).broadcast((n, c, h, 2, w, 2)).reshape((n, c, 2 * h, 2 * w))
        return self.conv(x)


class DownEncoderBlock2D(nn.Module):
    def __init__(self, cin: int, cout: int, layers: int, groups: int, downsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if i == 0 else cout, cout, groups) for i in range(layers)])
        self.downsamplers = nn.ModuleList([Downsample2D(cout)]) if downsample else None

    def execute(self, x: jt.Var) -> jt.Var:
        for r in self.resnets:
            x = r(x)
        return self.downsamplers[0](x) if self.downsamplers is not None else x


class UpDecoderBlock2D(nn.Module):
    def __init__(self, cin: int, cout: int, layers: int, groups: int, upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if i == 0 else cout, cout, groups) for i in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if upsample else None

    def execute(self, x: jt.Var) -> jt.Var:
        for r in self.resnets:
            x = r(x)
        return self.upsamplers[0](x) if self.upsamplers is not None else x


class MidBlock2D(nn.Module):
    """resnet -> spatial self-attention -> resnet at the lowest resolution."""

    def __init__(self, channels: int, groups: int, attention: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, groups) for _ in range(2)])
        self.attentions = nn.ModuleList([SpatialSelfAttention(channels, groups)]) if attention else None

    def execute(self, x: jt.Var) -> jt.Var:
        x = self.resnets[0](x)
        if self.attentions is not None:
            x = self.attentions[0](x)
        return self.resnets[1](x)


class Encoder(nn.Module):
    """(N, 3, H, W) image -> (N, 2*latent, H/f, W/f) moments (mean, logvar)."""

    def __init__(self, cfg: AutoencoderKLConfig):
        super().__init__()
        ch, g = cfg.block_out_channels, cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([
            DownEncoderBlock2D(ch[max(i - 1, 0)], ch[i], cfg.layers_per_block, g, downsample=i < len(ch) - 1)
            for i in range(len(ch))])
        self.mid_block = MidBlock2D(ch[-1], g, cfg.mid_block_add_attention)
        self.conv_norm_out = GroupNorm(g, ch[-1])
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg.latent_channels, 3, padding=1)

    def execute(self, x: jt.Var) -> jt.Var:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(self.conv_norm_out(x, silu=True))


class Decoder(nn.Module):
    """(N, latent, h, w) -> (N, 3, h*f, w*f) image."""

    def __init__(self, cfg: AutoencoderKLConfig):
        super().__init__()
        ch, g = list(reversed(cfg.block_out_channels)), cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch[0], 3, padding=1)
        self.mid_block = MidBlock2D(ch[0], g, cfg.mid_block_add_attention)
        self.up_blocks = nn.ModuleList([
            UpDecoderBlock2D(ch[max(i - 1, 0)], ch[i], cfg.layers_per_block + 1, g, upsample=i < len(ch) - 1)
            for i in range(len(ch))])
        self.conv_norm_out = GroupNorm(g, ch[-1])
        self.conv_out = nn.Conv2d(ch[-1], cfg.out_channels, 3, padding=1)

    def execute(self, z: jt.Var) -> jt.Var:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(self.conv_norm_out(x, silu=True))


class DiagonalGaussian:
    """A Gaussian per latent element from moments (N, 2C, ...): mean, logvar (clamped), std."""

    def __init__(self, moments: jt.Var):
        self.mean, logvar = jt.chunk(moments, 2, dim=1)
        self.logvar = jt.clamp(logvar, -30.0, 20.0)
        self.std = jt.exp(0.5 * self.logvar)
        self.var = jt.exp(self.logvar)

    def sample(self, noise: jt.Var | np.ndarray | None = None) -> jt.Var:
        """mean + std * noise; noise defaults to jt.randn (pass numpy for reproducibility)."""
        if noise is None:
            noise = jt.randn(self.mean.shape)
        elif isinstance(noise, np.ndarray):
            noise = jt.array(noise.astype(np.float32))
        return self.mean + self.std * noise

    def mode(self) -> jt.Var:
        return self.mean

    def kl(self) -> jt.Var:
        """KL to the standard normal, summed over all but the batch dim: (N,)."""
        kl = 0.5 * (self.mean.sqr() + self.var - 1.0 - self.logvar)
        return kl.reshape((kl.shape[0], -1)).sum(dim=1)


class TemporalCompression(nn.Module):
    """f latent frames <-> 1: a learned linear map over (f x channels) per latent pixel.

    down: (B, C, T, h, w) -> (B, C, T/f, h, w); up: (B, c, T/f, h, w) -> (B, c, T, h, w).
    Initialised to frame averaging / repetition, so an untrained stage is a sensible start.
    """

    def __init__(self, moment_channels: int, latent_channels: int, factor: int):
        super().__init__()
        self.factor = factor
        eye = np.eye(moment_channels, dtype=np.float32)
        self.down_weight = jt.array(np.concatenate([eye / factor] * factor, axis=1))   # (C, f*C)
        self.down_bias = jt.zeros((moment_channels,))
        eye = np.eye(latent_channels, dtype=np.float32)
        self.up_weight = jt.array(np.concatenate([eye] * factor, axis=0))              # (f*c, c)
        self.up_bias = jt.zeros((latent_channels * factor,))

    def down(self, x: jt.Var) -> jt.Var:
        b, c, t, h, w = x.shape
        f = self.factor
        if t % f:
            raise JVideoError(f"{t} frames are not divisible by the VAE's temporal compression {f}")
        x = x.reshape((b, c, t // f, f, h, w)).permute(0, 2, 4, 5, 3, 1).reshape((b, t // f, h, w, f * c))
        x = nn.matmul_transpose(x, self.down_weight) + self.down_bias               # (b, t/f, h, w, c)
        return x.permute(0, 4, 1, 2, 3)

    def up(self, z: jt.Var) -> jt.Var:
        b, c, t, h, w = z.shape
        f = self.factor
        z = nn.matmul_transpose(z.permute(0, 2, 3, 4, 1), self.up_weight) + self.up_bias   # (b, t, h, w, f*c)
        z = z.reshape((b, t, h, w, f, c)).permute(0, 5, 1, 4, 2, 3)
        return z.reshape((b, c, t * f, h, w))


def fold_frames(x: jt.Var) -> jt.Var:
    """(B, C, T, H, W) -> (B*T, C, H, W)."""
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape((b * t, c, h, w))


def unfold_frames(x: jt.Var, batch: int) -> jt.Var:
    """(B*T, C, H, W) -> (B, C, T, H, W)."""
    bt, c, h, w = x.shape
    return x.reshape((batch, bt // batch, c, h, w)).permute(0, 2, 1, 3, 4)


class AutoencoderKL(nn.Module):
    """encode: images (N, 3, H, W) or videos (B, 3, T, H, W) in [-1, 1] -> DiagonalGaussian;
    decode: latents (N, c, h, w) or (B, c, T', h, w) -> images/videos. Multiply samples by
    `scaling_factor` before diffusion and divide before decoding.
    """

    def __init__(self, cfg: AutoencoderKLConfig):
        super().__init__()
        self.config = cfg
        self.scaling_factor = cfg.scaling_factor
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        lc = cfg.latent_channels
        self.quant_conv = nn.Conv2d(2 * lc, 2 * lc, 1) if cfg.use_quant_conv else None
        self.post_quant_conv = nn.Conv2d(lc, lc, 1) if cfg.use_post_quant_conv else None
        self.temporal = (TemporalCompression(2 * lc, lc, cfg.temporal_compression)
                         if cfg.temporal_compression > 1 else None)

    def encode(self, x: jt.Var) -> DiagonalGaussian:
        video = x.ndim == 5
        b = x.shape[0]
        h = self.encoder(fold_frames(x) if video else x)
        if self.quant_conv is not None:
            h = self.quant_conv(h)
        if video:
            h = unfold_frames(h, b)
            if self.temporal is not None:
                h = self.temporal.down(h)
        return DiagonalGaussian(h)

    def decode(self, z: jt.Var) -> jt.Var:
        video = z.ndim == 5
        b = z.shape[0]
        if video:
            if self.temporal is not None:
                z = self.temporal.up(z)
            z = fold_frames(z)
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        x = self.decoder(z)
        return unfold_frames(x, b) if video else x

    def execute(self, x: jt.Var, sample_posterior: bool = False) -> jt.Var:
        posterior = self.encode(x)
        return self.decode(posterior.sample() if sample_posterior else posterior.mode())
