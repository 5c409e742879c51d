"""Build the toy-world VAE, video DiT and noise schedule from a preset."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from jvideo.models import (AutoencoderKL, AutoencoderKLConfig, Latte, LatteConfig, LookClassifier,
                           LookClassifierConfig, zero_layer)
from jvideo.toyworld.world import COLOUR_NAMES, SHAPES

from .layout import layout_channels
from .presets import Preset


def vae_config(preset: Preset) -> AutoencoderKLConfig:
    p = preset.vae
    n = len(p.channels)
    return AutoencoderKLConfig(down_block_types=("DownEncoderBlock2D",) * n,
                               up_block_types=("UpDecoderBlock2D",) * n,
                               block_out_channels=tuple(p.channels), layers_per_block=p.layers_per_block,
                               latent_channels=p.latent_channels, norm_num_groups=p.norm_groups,
                               sample_size=preset.size, scaling_factor=1.0,
                               mid_block_add_attention=p.mid_attention)


def dit_config(preset: Preset) -> LatteConfig:
    """frames + 1 temporal positions: position 0 holds the identity reference latent."""
    p = preset.dit
    d = p.heads * p.head_dim
    return LatteConfig(num_attention_heads=p.heads, attention_head_dim=p.head_dim,
                       in_channels=preset.vae.latent_channels, out_channels=preset.vae.latent_channels,
                       num_layers=p.layers, cross_attention_dim=d, attention_bias=True,
                       sample_size=preset.latent_size, patch_size=p.patch, activation_fn="gelu-approximate",
                       num_embeds_ada_norm=preset.timesteps, norm_elementwise_affine=False, norm_eps=1e-6,
                       caption_channels=384, video_length=preset.frames + 1,
                       reference_tokens=p.reference_tokens, pooled_conditioning=p.pooled_conditioning,
                       temporal_cross_attention=p.temporal_cross_attention,
                       frame_modulation=p.frame_modulation, layout_conditioning=p.layout,
                       block_modulation=p.block_modulation,
                       layout_channels=layout_channels(preset.vae.latent_channels, p.reference_paste,
                                                       preset.size // preset.latent_size if p.layout_look else 0))


def look_config(preset: Preset) -> LookClassifierConfig:
    """The look classifier of classifier guidance (LookPreset): the toy world's shapes and colours."""
    return LookClassifierConfig(in_channels=preset.vae.latent_channels, crop=preset.look.crop,
                                width=preset.look.width, hidden=preset.look.hidden, shapes=SHAPES,
                                colours=COLOUR_NAMES)


def build_look_classifier(preset: Preset) -> LookClassifier:
    return LookClassifier(look_config(preset))


def build_vae(preset: Preset) -> AutoencoderKL:
    return AutoencoderKL(vae_config(preset))


def build_dit(preset: Preset) -> Latte:
    return Latte(dit_config(preset))


def init_for_training(dit: Latte) -> Latte:
    """Zero the output projection so the untrained DiT predicts 0 (the adaLN-Zero idea):
    training starts from a stable identity-like map instead of random outputs."""
    zero_layer(dit.proj_out)
    return dit


def init_vae_for_training(vae: AutoencoderKL, logvar: float) -> AutoencoderKL:
    """Start the posterior's log-variance at `logvar` everywhere (its rows of quant_conv zeroed,
    bias = logvar). From the default (about 0, unit noise on latents of unit scale) the 1e-6 KL
    leaves the noise there for thousands of steps, and the decoder learns to blur small objects
    under it; a small start keeps the latent detailed, the KL still bounds it."""
    import jittor as jt
    if vae.quant_conv is None:
        return vae
    lc = vae.config.latent_channels
    w, b = vae.quant_conv.weight.numpy(), vae.quant_conv.bias.numpy()
    w[lc:], b[lc:] = 0.0, logvar
    vae.quant_conv.weight.update(jt.array(w))
    vae.quant_conv.bias.update(jt.array(b))
    return vae


def diffusion_schedule(preset: Preset):
    """v-prediction on a zero-terminal-SNR linear schedule with trailing DDIM steps: the last
    training step is pure noise, so sampling starts exactly where training did, and few steps
    (25) suffice."""
    from jvideo.schedulers import DDIMScheduler
    return DDIMScheduler(num_train_timesteps=preset.timesteps, beta_schedule="linear",
                         rescale_betas_zero_snr=True, prediction_type="v_prediction",
                         timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=False)


def clip_noise(normal: Callable[[tuple[int, ...]], Any], shape: Sequence[int], shared: float) -> Any:
    """Gaussian noise of `shape` (..., c, T, h, w) whose T frames share a fraction `shared` of
    each element's variance (PYoCo's mixed noise); every element keeps unit variance.

    `normal(shape)` draws standard normals: numpy's `rng.standard_normal` or `jt.randn`. With
    shared = 0 it is one plain draw (no extra one), so seeds keep their old shots.
    Shared noise leaves frame-to-frame differences less noisy than the frames themselves, so a
    moving object stands out of the noise at higher noise levels than in independent noise.
    """
    own = normal(tuple(shape))
    if not shared:
        return own
    common = normal(tuple(shape[:-3]) + (1,) + tuple(shape[-2:]))
    return own * (1.0 - shared) ** 0.5 + common * shared ** 0.5
