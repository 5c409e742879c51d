"""Jittor models numerically equal to their diffusers references.

    from jvideo.models import from_pretrained
    vae = from_pretrained("sd-vae-ft-ema")            # AutoencoderKL folder
    dit = from_pretrained("DiT-XL-2-256/transformer")  # DiTTransformer2DModel folder
    dit = from_pretrained("DiT-XL-2-256x256.pt")       # original facebookresearch/DiT checkpoint
    latte = from_pretrained("Latte-1", subfolder="transformer")

Untrained presets: Latte(latte_config("jvideo-small")), AutoencoderKL(small_vae_config()),
DiT(dit_config("DiT-S/2")).
"""
from .dit import DiT, DiTConfig, dit_config
from .latte import LATTE_PRESETS, Latte, LatteConfig, latte_config, zero_layer
from .look_classifier import LookClassifier, LookClassifierConfig
from .loading import build, from_pretrained, load_state_dict, save_pretrained
from .vae import AutoencoderKL, AutoencoderKLConfig, DiagonalGaussian, sd_vae_config, small_vae_config

__all__ = ["AutoencoderKL", "AutoencoderKLConfig", "DiagonalGaussian", "DiT", "DiTConfig", "Latte",
           "LatteConfig", "LookClassifier", "LookClassifierConfig", "build", "dit_config", "from_pretrained", "latte_config", "load_state_dict",
           "save_pretrained", "sd_vae_config", "small_vae_config", "zero_layer", "LATTE_PRESETS"]
