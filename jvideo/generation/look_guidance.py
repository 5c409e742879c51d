"""Classifier guidance towards the look a prompt states (its shape and primary colour).

Classifier guidance as in Dhariwal & Nichol (2021): a classifier trained on noised latents
gives, at each sampling step, the gradient of log p(look | x_t) with respect to x_t, and the
step's noise estimate is moved against it, eps' = eps - s * sqrt(1 - a) * grad; for a
v-predicting DiT that is v' = v - s * sqrt(1 - a) / sqrt(a) * grad. The classifier
(jvideo.models.LookClassifier) reads only the latent cells around where the layout plans the
subject in each frame (generation/layout.py), resampled to a fixed crop, so the guidance acts on
the subject and leaves the scene to the DiT.

Why: the tiny DiT follows the caption's colour in about 0.8 of held-out prompts and draws a
blob of it, not the stated shape (README, "Generation", items 26-31): it averages the shapes the
caption allows. The look words are read by the toy world's rule-based reader
(toyworld.read_look), as the layout planner reads the motion; a prompt that states no look (a
character's name) gets no guidance, so the text-only identity baseline is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jvideo.toyworld.captions import read_look
from kernels import runtime

from .layout import plan_track

jt = runtime.import_jittor()

# Side of the crop around the subject, in its radii: its extent (two radii) and a margin, about
# what toyworld.object_crop keeps of a reference.
CROP_SIDE = 2.6


def crop_weights(cx: np.ndarray, cy: np.ndarray, radius: np.ndarray, crop: int, grid: int,
                 cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear resampling of a square of CROP_SIDE radii about each centre (pixels; (F,) each)
    to crop x crop points of a grid x grid latent (cell pixels a cell): row weights (F, crop,
    grid) and column weights (F, crop, grid), zero outside the grid. The crop of a latent z (c,
    grid, grid) is then wy @ z @ wx.T."""
    u = (np.arange(crop) + 0.5) / crop - 0.5                                   # (crop,) in [-0.5, 0.5)

    def weights(centre: np.ndarray) -> np.ndarray:
        pos = (centre[:, None] + u[None] * CROP_SIDE * radius[:, None]) / cell - 0.5   # (F, crop) in cells
        left = np.floor(pos)
        frac = pos - left
        cells = np.arange(grid)[None, None]
        return ((cells == left[..., None]) * (1 - frac)[..., None]
                + (cells == left[..., None] + 1) * frac[..., None]).astype(np.float32)

    return weights(np.asarray(cy, np.float64)), weights(np.asarray(cx, np.float64))


def crop_latents(x, wy, wx):
    """Latent frames x (N, c, h, w), weights (N, k, h) and (N, k, w) -> crops (N, c, k, k);
    numpy in, numpy out; Jittor in, Jittor out (differentiable in x)."""
    if isinstance(x, np.ndarray):
        return np.einsum("nky,ncyx,nlx->nckl", wy, x, wx)
    return jt.matmul(jt.matmul(jt.array(wy)[:, None], x), jt.array(wx.transpose(0, 2, 1))[:, None])


@dataclass
class LookTargets:
    """What the prompts state, per generated frame (B * T rows, frame-major within a prompt):
    one-hot shape (B*T, S) and colour (B*T, C) (all zero where unstated) and the crop weights
    of each frame's planned subject."""
    shape: np.ndarray
    colour: np.ndarray
    wy: np.ndarray
    wx: np.ndarray


def stated_targets(config, prompts: list[str], seeds: list[int], frames: int, size: int,
                   cell: int) -> LookTargets | None:
    """The look each prompt states, on its planned track (the layout's: same prompt and seed);
    None when no prompt states a shape or a colour."""
    b = len(prompts)
    shape = np.zeros((b, frames, len(config.shapes)), np.float32)
    colour = np.zeros((b, frames, len(config.colours)), np.float32)
    wy, wx = [], []
    for i, (prompt, seed) in enumerate(zip(prompts, seeds)):
        if not prompt.strip():   # states nothing and has no plan: zero targets and weights
            rows = np.zeros((frames, config.crop, size // cell), np.float32)
            wy.append(rows), wx.append(rows)
            continue
        said = read_look(prompt)
        if said.get("shape") in config.shapes:
            shape[i, :, config.shapes.index(said["shape"])] = 1
        if said.get("colour") in config.colours:
            colour[i, :, config.colours.index(said["colour"])] = 1
        track = plan_track(prompt, seed, frames, size, size)
        y, x = crop_weights(np.asarray(track.cx), np.asarray(track.cy), np.asarray(track.radius), config.crop,
                            size // cell, cell)
        wy.append(y), wx.append(x)
    if not (shape.any() or colour.any()):
        return None
    return LookTargets(shape.reshape(b * frames, -1), colour.reshape(b * frames, -1),
                       np.concatenate(wy), np.concatenate(wx))


def look_gradient(classifier, x, signal: float, targets: LookTargets) -> np.ndarray:
    """x (B, c, T, h, w) noised latents at sqrt(alpha-bar) = signal -> the gradient of the
    stated looks' summed log-probabilities over every frame, (B, c, T, h, w) float32."""
    from jittor import nn
    b, c, frames, h, w = x.shape
    with jt.enable_grad():
        var = jt.array(x.numpy())
        crops = crop_latents(var.transpose(0, 2, 1, 3, 4).reshape((b * frames, c, h, w)), targets.wy, targets.wx)
        shape, colour = classifier(crops, jt.array(np.full(b * frames, signal, np.float32)))
        log_p = ((nn.log_softmax(shape, dim=1) * jt.array(targets.shape)).sum()
                 + (nn.log_softmax(colour, dim=1) * jt.array(targets.colour)).sum())
        return jt.grad(log_p, var).numpy()


def training_crops(latents: np.ndarray, params: list, rows: np.ndarray, frame: np.ndarray, signal: np.ndarray,
                   noise: np.ndarray, crop: int, cell: int) -> np.ndarray:
    """Noised crops (n, c, crop, crop) about the true subject of training clips `rows` (latents
    (N, c, T, h, w), their ClipParams), frames `frame`, at sqrt(alpha-bar) `signal` (n,) with
    `noise` (n, c, h, w)."""
    def pose(name: str) -> np.ndarray:
        return np.array([getattr(params[r].track, name)[f] for r, f in zip(rows, frame)])

    wy, wx = crop_weights(pose("cx"), pose("cy"), pose("radius"), crop, latents.shape[-1], cell)
    x0 = latents[rows, :, frame]                                             # (n, c, h, w)
    xt = signal[:, None, None, None] * x0 + np.sqrt(1.0 - signal ** 2)[:, None, None, None] * noise
    return crop_latents(xt, wy, wx).astype(np.float32)
