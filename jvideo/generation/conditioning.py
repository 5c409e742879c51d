"""What the DiT is conditioned on: text tokens and the identity reference latent."""
from __future__ import annotations

import numpy as np

from kernels import runtime

jt = runtime.import_jittor()


def frames_to_tensor(frames: np.ndarray, video: bool = False):
    """uint8 frames -> float in [-1, 1], channels first.

    (N, H, W, 3) -> (N, 3, H, W); with video=True (B, T, H, W, 3) -> (B, 3, T, H, W).
    """
    x = frames.astype(np.float32) / 127.5 - 1.0
    x = x.transpose(0, 4, 1, 2, 3) if video else x.transpose(0, 3, 1, 2)
    return jt.array(np.ascontiguousarray(x))


def tensor_to_frames(x) -> np.ndarray:
    """(B, 3, T, H, W) in [-1, 1] -> (B, T, H, W, 3) uint8."""
    a = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    a = np.clip((a.transpose(0, 2, 3, 4, 1) + 1.0) * 127.5 + 0.5, 0, 255)
    return a.astype(np.uint8)


def reference_latents(vae, references: np.ndarray | None, keep: np.ndarray, batch: int | None = None,
                      crop: bool = False):
    """Identity references (B, H, W, 3) uint8 -> scaled latents (B, c, 1, h, w).

    Rows where `keep` is False (or all rows when references is None) are zeros: "no reference",
    the text-only mode the model also learns. With `crop` (DiTPreset.reference_crop) each
    reference is first centred on its object (toyworld.object_crop), in training and sampling.
    """
    if references is None:
        c = vae.config.latent_channels
        size = vae.config.sample_size // 2 ** (len(vae.config.block_out_channels) - 1)
        return jt.zeros((batch or len(keep), c, 1, size, size))
    if crop:
        from jvideo.toyworld import object_crop
        references = np.stack([object_crop(image) for image in references])
    z = vae.encode(frames_to_tensor(references)).mode() * vae.scaling_factor   # (B, c, h, w)
    z = z * jt.array(keep.astype(np.float32)).reshape((-1, 1, 1, 1))
    return z.unsqueeze(2)


def reference_kwargs(dit, ref, keep: np.ndarray) -> dict:
    """The DiT's reference-token inputs for reference latents (B, c, 1, h, w) and keep (B,) 0/1:
    none for a DiT without reference tokens."""
    if not dit.config.reference_tokens:
        return {}
    return {"reference": ref[:, :, 0], "reference_mask": jt.array(np.asarray(keep, np.float32))}


def layout_kwargs(dit, layout: np.ndarray | None, batch: int, frames: int, grid: int) -> dict:
    """The DiT's layout input for layouts (B, C, T, h, w) of the generated frames (C: the DiT's
    layout_channels; None: no layout for any row): a zero layout joins at temporal position 0,
    the reference's. Nothing for a DiT without layout conditioning."""
    if not dit.config.layout_conditioning:
        return {}
    if layout is None:
        layout = np.zeros((batch, dit.config.layout_channels, frames, grid, grid), np.float32)
    padded = np.concatenate([np.zeros_like(layout[:, :, :1]), layout], axis=2)
    return {"layout": jt.array(np.ascontiguousarray(padded, dtype=np.float32))}


class TextConditioner:
    """Captions -> MiniLM token embeddings (B, L, 384) and a key mask (B, L), L = max_tokens;
    with `word_tokens` (Preset.word_tokens) L = 2 * max_tokens: the encoder's output states, then
    its input layer's vectors of the same tokens."""

    def __init__(self, max_tokens: int, encoder=None, word_tokens: bool = False):
        from jvideo.models.text_encoder import TextEncoder
        self.max_tokens = max_tokens
        self.encoder = encoder or TextEncoder()
        self.word_tokens = word_tokens

    def encode(self, texts: list[str]):
        emb, mask = self.encoder.embed_tokens(texts, max_length=self.max_tokens)
        if self.word_tokens:
            words, _ = self.encoder.embed_tokens(texts, max_length=self.max_tokens, layer=0)
            emb, mask = np.concatenate([emb, words], axis=1), np.concatenate([mask, mask], axis=1)
        return jt.array(emb.astype(np.float32)), jt.array(mask.astype(np.float32))
