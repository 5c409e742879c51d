"""Decoder inversion: latents that the VAE's decoder turns back into given frames more faithfully
than the encoder's mean does.

The encoder is amortised (one pass, trained for the average frame), and this small one rounds
off what a look is made of (a star's points, a ring, dots, a second colour). The decoder can draw
more of it than the encoder asks for: a few Adam steps on the latent against the decoder's
reconstruction error bring it back (README, "Generation", item 25). Sampling uses it where it
holds known frames, the pasted identity reference (generation/inpaint.py), twice: on the pasted
frames before the second pass, and on the held cells after it, among the cells the DiT drew
around them. No weight changes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import runtime

jt = runtime.import_jittor()


@dataclass(frozen=True)
class Inversion:
    """Adam on the latent; steps 0 keeps the start. 8 steps: nearly what 15 give (18 against 19 of
    24 held identity shots, 2026-12-06) at half the time (about 0.3 s a step for 16 frames on the
    2-core machine)."""
    steps: int = 8
    lr: float = 0.12
    # Reconstruction weight 1 + object_weight on the pixels that matter (the pasted subject).
    object_weight: float = 4.0
    beta1: float = 0.9
    beta2: float = 0.999


def invert(vae, frames, weight: np.ndarray | None = None, config: Inversion = Inversion(), start=None,
           free: np.ndarray | None = None):
    """frames (N, 3, H, W) in [-1, 1], weight (N, H, W) in [0, 1] or None -> latents (N, c, h, w),
    unscaled (what vae.decode takes), lowering the weighted L1 + L2 error of their decoding from
    `start` (N, c, h, w; None: the encoder's mean). With `free` (N, 1, h, w) in [0, 1] only those
    cells move, in proportion. Deterministic: no noise is drawn."""
    if start is None:
        with jt.no_grad():
            start = vae.encode(frames).mode()
    z = start
    if config.steps <= 0:
        return z
    free = None if free is None else free.astype(np.float32)
    w = np.ones(frames.shape[:1] + frames.shape[2:], np.float32) if weight is None else weight.astype(np.float32)
    w = jt.array((1.0 + config.object_weight * w)[:, None] / (1.0 + config.object_weight * w).mean())
    # Adam's moments in numpy: the latents are small, and Jittor would compile a kernel for each
    # step's bias-correction constants.
    z = z.numpy()
    m, v = np.zeros_like(z), np.zeros_like(z)
    with jt.enable_grad():
        for step in range(1, config.steps + 1):
            var = jt.array(z)
            err = vae.decode(var) - frames
            g = jt.grad(((err * err + err.abs()) * w).mean(), var).numpy()
            m = config.beta1 * m + (1 - config.beta1) * g
            v = config.beta2 * v + (1 - config.beta2) * g * g
            m_hat = m / (1 - config.beta1 ** step)
            v_hat = v / (1 - config.beta2 ** step)
            update = config.lr * m_hat / (np.sqrt(v_hat) + 1e-8)
            z = z - (update if free is None else update * free)
    return jt.array(z.astype(np.float32))
