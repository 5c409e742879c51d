"""Tiny diffusers references with random weights (every layer, zero-initialised ones too),
shared by the model and scheduler tests."""
from __future__ import annotations

import numpy as np

TINY_DIT = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2,
                sample_size=8, patch_size=2, num_embeds_ada_norm=10, norm_eps=1e-6)
TINY_LATTE = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2,
                  cross_attention_dim=16, attention_bias=True, sample_size=8, patch_size=2,
                  activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
                  norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=12, video_length=3)
TINY_VAE = dict(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, latent_channels=4,
                layers_per_block=1, sample_size=16)


def randomise(model, seed: int = 0, std: float = 0.2):
    """Every parameter random (norm-layer weights around 1) so no layer is trivially zero."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    norm_weights = {id(m.weight) for m in model.modules()
                    if isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)) and m.weight is not None}
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std + (1.0 if id(p) in norm_weights else 0.0))
    return model.eval()


def make_dit(folder, seed: int = 0):
    from diffusers import DiTTransformer2DModel
    ref = randomise(DiTTransformer2DModel(**TINY_DIT), seed)
    # a converted original DiT has one t/y embedder copied into every block
    for block in ref.transformer_blocks[1:]:
        block.norm1.emb.load_state_dict(ref.transformer_blocks[0].norm1.emb.state_dict())
    ref.save_pretrained(folder)
    return ref


def make_latte(folder, seed: int = 1):
    from diffusers import LatteTransformer3DModel
    ref = randomise(LatteTransformer3DModel(**TINY_LATTE), seed)
    ref.save_pretrained(folder)
    return ref


def make_vae(folder, seed: int = 2):
    from diffusers import AutoencoderKL
    ref = randomise(AutoencoderKL(**TINY_VAE), seed)
    ref.save_pretrained(folder)
    return ref


def max_err(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())
