"""Identity by reference inpainting: the character's cut-out held in place while the DiT samples.

The learnt identity path (reference tokens, README items 9-23) gets a character's primary colour
right in a quarter to a third of the shots and its whole look almost never. This sampling-time
path does not rely on the DiT having learnt to copy a look. It is a spatial form of the masked
conditioning of VDT and RePaint: some latent cells are known, the DiT completes the rest.

1. Sample the shot as usual (text, layout, reference tokens), at Generator.plate_steps steps:
   the first pass; only its background is used.
2. Cut the character out of the reference (the detector's object mask), scale and turn it to the
   planned track's pose in every frame and paste it over the first pass's decoded frames.
3. Encode the pasted frames: the known latent z, and the pasted alpha pooled to the latent grid:
   the mask m.
4. Sample again from the same noise; after each of the first `hold` fraction of the steps the
   cells under the character are set to z noised to that step's level, m x_known + (1 - m) x.
   The DiT draws the background, the edges and the light around a look it is given; after
   `hold` it finishes the subject itself (hold 1: the cells end as z, the paste as encoded).
5. Held to the end, the decoded frames get the cut-out laid over them (Layer.over, as a
   compositor lays a plate's element back over a render; Generator.composite), on a clean
   plate of the subject's disc: the small VAE rounds off a thin ring, dots or a star's points
   that the held latents carried, and leaves a halo around them.

Works only where a layout plans the subject's track (DiTPreset.layout); costs a second pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jvideo.toyworld import object_mask, read_lighting
from jvideo.toyworld.render import Track, apply_lighting
from jvideo.toyworld.world import LIGHTING_TINT


@dataclass
class Cutout:
    """A reference's object: rgb (H, W, 3) and alpha (H, W) float32, its centre (x, y) in
    pixels, its radius (the farthest object pixel from the centre) and the reference's lighting."""
    rgb: np.ndarray
    alpha: np.ndarray
    centre: tuple[float, float]
    radius: float
    lighting: str


def regrade(rgb: np.ndarray, source: str, target: str) -> np.ndarray:
    """Pixels (..., 3) float lit by `source` -> lit by `target`: the world's lightings are a
    per-channel gain and offset on the whole frame (world.LIGHTING_TINT), so a cut-out is
    un-lit and lit again, as a colourist matches a plate to the shot's grade."""
    gain, offset = (np.asarray(v, np.float32) for v in LIGHTING_TINT[source])
    return apply_lighting((rgb - offset) / gain, target)


def cut_out(reference: np.ndarray) -> Cutout | None:
    """(H, W, 3) uint8 -> the reference's main object with a softened edge, or None when the
    detector finds no object in it."""
    mask = object_mask(reference)
    if mask is None:
        return None
    ys, xs = np.nonzero(mask)
    cy, cx = float(ys.mean()) + 0.5, float(xs.mean()) + 0.5     # centroid: the shapes' own centre
    radius = float(np.sqrt((ys + 0.5 - cy) ** 2 + (xs + 0.5 - cx) ** 2).max()) + 0.5
    alpha = mask.astype(np.float32)
    padded = np.pad(alpha, 1, mode="edge")                       # 3x3 box: one anti-aliased pixel
    alpha = sum(padded[i:i + alpha.shape[0], j:j + alpha.shape[1]] for i in range(3) for j in range(3)) / 9
    alpha = np.maximum(alpha, mask * 0.999)                      # soften outwards only
    return Cutout(reference.astype(np.float32), alpha.astype(np.float32), (cx, cy), radius,
                  read_lighting(reference))


@dataclass
class Layer:
    """A cut-out laid along a track: premultiplied rgb (T, H, W, 3) float32, alpha (T, H, W),
    the subject's disc (T, H, W) bool, where the frames under it are cleared to a plate first,
    and the lighting it is graded to (None: the reference's own, not regraded)."""
    rgb: np.ndarray
    alpha: np.ndarray
    disc: np.ndarray
    lighting: str | None
    cut: Cutout
    track: Track

    def over(self, frames: np.ndarray) -> np.ndarray:
        """frames (T, H, W, 3) uint8 -> the layer composited (Porter-Duff over) on a clean plate
        of them, uint8. Whatever was drawn in the subject's disc goes first: a decoded blob wider
        than the cut-out would otherwise stay between a star's points and around a thin outline,
        a halo that reads as part of the shape. A regraded layer is graded again where the
        plate's light is not the one it was graded to (a first pass read as sunset, a second
        drawn by day: the character would keep the sunset's tint)."""
        plate = fill_rows(frames, self.disc)
        layer = self
        if self.lighting is not None and read_lighting(plate) != self.lighting:
            layer = layer_along_track(self.cut, self.track, plate)
        a = layer.alpha[..., None]
        return np.clip(layer.rgb + (1 - a) * plate + 0.5, 0, 255).astype(np.uint8)


def layer_along_track(cut: Cutout, track: Track, frames: np.ndarray, relight: bool = True) -> Layer:
    """The cut-out scaled to the track's radius, turned by its angle relative to frame 0 and
    centred on it in each of frames' (T, H, W, 3) frames; with `relight`, regraded from the
    reference's lighting to the frames' own. Premultiplied by alpha (so the reference's
    background does not bleed into the edge) and area-averaged before a shrink (so stripes and
    dots do not alias)."""
    t, h, w, _ = frames.shape
    lighting = read_lighting(frames) if relight else None
    rgb = regrade(cut.rgb, cut.lighting, lighting) if relight else cut.rgb
    premultiplied = np.concatenate([np.clip(rgb, 0, 255) * cut.alpha[..., None], cut.alpha[..., None]], axis=-1)
    layer = Layer(np.empty((t, h, w, 3), np.float32), np.empty((t, h, w), np.float32), subject_discs(track, h, w),
                  lighting, cut, track)
    for f in range(t):
        warped = _warp(premultiplied, cut.centre, cut.radius / max(track.radius[f], 1e-3),
                       track.angle[f] - track.angle[0], (track.cx[f], track.cy[f]), (h, w))
        layer.alpha[f] = np.clip(warped[..., 3], 0.0, 1.0)
        layer.rgb[f] = warped[..., :3]
    return layer


def _warp(image: np.ndarray, centre: tuple[float, float], scale: float, turn: float,
          target: tuple[float, float], size: tuple[int, int]) -> np.ndarray:
    """image (H0, W0, C) float32 -> (h, w, C): the point `centre` of the image moved to `target`,
    shrunk `scale` times (reference pixels per output pixel) and turned by `turn` radians."""
    from PIL import Image
    h0, w0 = image.shape[:2]
    shrink = max(1, int(scale))               # area-average whole factors first: no aliasing
    if shrink > 1:
        w1, h1 = max(1, round(w0 / shrink)), max(1, round(h0 / shrink))
        planes = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c])).resize((w1, h1), Image.BOX))
                  for c in range(image.shape[-1])]
        image = np.stack(planes, axis=-1)
        centre = (centre[0] * w1 / w0, centre[1] * h1 / h0)
        scale = scale * w1 / w0
    cos, sin = np.cos(turn) * scale, np.sin(turn) * scale
    # output (x, y) -> input: centre + R(-turn) scale ((x, y) - target), pixel centres at +0.5
    dx, dy = 0.5 - target[0], 0.5 - target[1]
    coeffs = (cos, sin, centre[0] - 0.5 + cos * dx + sin * dy,
              -sin, cos, centre[1] - 0.5 - sin * dx + cos * dy)
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c])).transform(
        (size[1], size[0]), Image.AFFINE, coeffs, Image.BILINEAR), np.float32) for c in range(image.shape[-1])]
    return np.stack(planes, axis=-1)


def subject_discs(track: Track, h: int, w: int, margin: float = 1.3) -> np.ndarray:
    """(T, H, W) bool: in each frame the disc around the planned subject, margin x its radius
    plus 1.5 pixels, wide enough for any shape the subject may be drawn as."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    cx, cy, r = (np.asarray(v)[:, None, None] for v in (track.cx, track.cy, track.radius))
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= (r * margin + 1.5) ** 2


def fill_rows(frames: np.ndarray, discs: np.ndarray) -> np.ndarray:
    """frames (T, H, W, 3) uint8 -> the same with each frame's disc (T, H, W) bool filled with
    each row's median outside it: the world's backgrounds vary by row, so that is its plate."""
    out = frames.copy()
    for f in range(len(frames)):
        if not discs[f].any():
            continue
        outside = np.where(discs[f][..., None], np.nan, frames[f].astype(np.float32))
        rows = np.nanmedian(outside, axis=1)                                   # (H, 3)
        rows = np.where(np.isnan(rows), np.nanmedian(outside, axis=(0, 1)), rows)
        out[f] = np.where(discs[f][..., None], np.clip(rows[:, None] + 0.5, 0, 255).astype(np.uint8), frames[f])
    return out


def clean_plate(frames: np.ndarray, track: Track, margin: float = 1.3) -> tuple[np.ndarray, np.ndarray]:
    """frames (T, H, W, 3) uint8 -> (frames with the subject's disc filled with each row's median
    outside it (T, H, W, 3) uint8, the disc (T, H, W) float32). The first pass drew a blob
    where the layout put the subject; a cut-out pasted over it would leave the blob's rim as
    part of the shape."""
    t, h, w, _ = frames.shape
    discs = subject_discs(track, h, w, margin)
    return fill_rows(frames, discs), discs.astype(np.float32)


def latent_mask(alpha: np.ndarray, cell: int) -> np.ndarray:
    """alpha (T, H, W) -> (T, H // cell, W // cell) float32 in [0, 1]: twice each latent cell's
    covered fraction, capped at 1, so a cell half under the character counts as known."""
    t, h, w = alpha.shape
    pooled = alpha[:, :h // cell * cell, :w // cell * cell].reshape(t, h // cell, cell, w // cell, cell).mean((2, 4))
    return np.minimum(1.0, 2.0 * pooled).astype(np.float32)
