"""Layout conditioning: where the subject is in each frame, planned from the prompt.

A two-stage text-to-video design, as in LLM-grounded video diffusion (Lian et al. 2023) and
Boximator (Wang et al. 2024): a planner turns the prompt into a per-frame object layout, and the
DiT, trained with the true layouts of its clips, draws the subject there. Here the planner is
rule-based: it reads the motion, camera and size the prompt states (toyworld.read_caption),
draws what it leaves unsaid from the shot's seed, and lays out a track with the toy world's
motion model. The DiT then never has to decide at high noise where the object is in frame k (the
skill README item 19 found missing); it draws the look the text and the reference give at the
place the layout gives.

A layout is (2, T, h, w) on the latent grid: channel 0 the object's cover of each cell, channel
1 ones ("a layout is given"); all zeros means no layout (an empty prompt, layout dropout).
With the reference pasted (DiTPreset.reference_paste) 1 + c channels follow: the window around
the subject where a reference is drawn, and the identity reference's cropped latent drawn into
that window, scaled to the subject's size in each frame (zeros without a reference). Copying a
look then becomes a local task, the same cells in and out, where through attention the DiT must
find the look in the reference and move it across the frame and down in scale.

With the stated look (DiTPreset.layout_look) cell * cell + 3 channels come last: the silhouette
of the shape the prompt states, at pixel resolution folded into the latent cell (channel
i * cell + j: pixel (i, j) of each cell, its cover by the shape), and the stated primary colour
(RGB in [0, 1]) times each cell's cover; zeros for what the prompt leaves unsaid (a character's
name states no look). A semantic layout, as Make-A-Scene's segmentation map or a ControlNet mask:
the planner says "a red star here, turned so", the DiT still draws it, its outline, pattern,
lighting and the scene around it.
"""
from __future__ import annotations

import numpy as np

from jvideo.toyworld.captions import read_caption, read_look
from jvideo.toyworld.render import Track, make_track, shape_cover, track_cover
from jvideo.toyworld.world import CAMERAS, COLOURS, SIZES

# Side of the window a reference is drawn into, in object radii: object_crop keeps the object's
# extent (up to two radii) plus 15% on each side.
PASTE_SIDE = 2.6


def layout_channels(latent_channels: int, paste: bool, look_cell: int = 0) -> int:
    """Channels of a layout: cover and presence, plus window and reference latent when pasted,
    plus silhouette and colour when the stated look is drawn (look_cell: pixels a latent cell)."""
    return 2 + (1 + latent_channels if paste else 0) + (look_cell * look_cell + 3 if look_cell else 0)


def look_channels(silhouette: np.ndarray, rgb: np.ndarray, cell: int,
                  cover: np.ndarray | None = None) -> np.ndarray:
    """silhouette (B, F, H, W) in [0, 1] (zeros: no shape stated) and colour rgb (B, 3) in
    [0, 1] (zeros: none stated) -> (B, cell * cell + 3, F, H / cell, W / cell) float32: the
    silhouette folded into the latent cells, then the colour times each cell's cover (the
    silhouette's, or `cover` (B, F, H / cell, W / cell) where given)."""
    b, f, h, w = silhouette.shape
    g = silhouette.reshape((b, f, h // cell, cell, w // cell, cell))
    folded = g.transpose((0, 3, 5, 1, 2, 4)).reshape((b, cell * cell, f, h // cell, w // cell))
    painted = rgb[:, :, None, None, None] * (g.mean(axis=(3, 5)) if cover is None else cover)[:, None]
    return np.concatenate([folded, painted], axis=1).astype(np.float32)


def colour_rgb(name: str | None) -> np.ndarray:
    """A toy-world colour's RGB in [0, 1], (3,) float32; zeros for None (no colour stated)."""
    return np.zeros(3, np.float32) if name is None else np.asarray(COLOURS[name], np.float32) / 255


def stated_look(prompt: str, track: Track, size: int, cell: int) -> np.ndarray:
    """(cell * cell + 3, T, size / cell, size / cell): the look `prompt` states (shape, primary
    colour; toyworld.read_look) drawn on `track` (look_channels); a colour with no shape is
    painted over the track's disc."""
    said = read_look(prompt)
    if "shape" in said:
        silhouette, cover = shape_cover(said["shape"], track, size, size), None
    else:
        silhouette = np.zeros((len(track.cx), size, size), np.float32)
        cover = track_cover(track, size, size, cell)[None]
    return look_channels(silhouette[None], colour_rgb(said.get("colour"))[None], cell, cover)[0]


def plan_track(prompt: str, seed: int, frames: int, height: int, width: int) -> Track:
    """The subject's track for `prompt`: stated motion (else still), camera and size (else drawn
    from `seed`), start and cross position drawn from `seed`."""
    said = read_caption(prompt)
    rng = np.random.default_rng([seed, 7])   # apart from the noise's stream of the same seed
    camera = said.get("camera") or str(rng.choice(CAMERAS))
    size = said.get("size") or str(rng.choice(SIZES))
    return make_track(rng, said.get("motion", "still"), size, camera, frames, height, width)


def plan_layout(prompt: str, seed: int, frames: int, size: int, cell: int,
                paste: int = 0, reference: np.ndarray | None = None, look: bool = False) -> np.ndarray:
    """(C, frames, size // cell, size // cell) float32: the planned layout of `prompt` on the
    latent grid (cell pixels per latent cell); zeros for an empty prompt. C = 2; with `paste`
    latent channels 1 + paste more: the subject's window and `reference` (paste, s, s), a cropped
    reference's latent, drawn into it (zeros without a reference); with `look`, cell * cell + 3
    more: the look the prompt states (stated_look)."""
    grid = size // cell
    channels = layout_channels(paste, bool(paste), cell if look else 0)
    if not prompt.strip():
        return np.zeros((channels, frames, grid, grid), np.float32)
    track = plan_track(prompt, seed, frames, size, size)
    parts = [layout_from_cover(track_cover(track, size, size, cell)[None], np.ones(1, np.float32))[0]]
    if paste:
        parts.append(reference_window(reference, track, cell, grid, list(range(frames)), paste))
    if look:
        parts.append(stated_look(prompt, track, size, cell))
    return np.concatenate(parts)


def reference_window(reference: np.ndarray | None, track: Track, cell: int, grid: int,
                     frame_ids: list[int], channels: int) -> np.ndarray:
    """An object-centred image (channels, s, s) (a cropped reference's latent; None: no
    reference) drawn into each listed frame's window around the subject on the latent grid:
    (1 + channels, F, grid, grid) float32, the window mask and then the drawing, all zero
    without a reference. The window is a square of PASTE_SIDE radii about the track's centre;
    bilinear sampling, zero outside."""
    if reference is None:
        return np.zeros((1 + channels, len(frame_ids), grid, grid), np.float32)
    c, s = reference.shape[0], reference.shape[-1]
    centres = (np.arange(grid, dtype=np.float32) + 0.5) * cell            # cell centres in pixels
    drawn = np.zeros((c, len(frame_ids), grid, grid), np.float32)
    window = np.zeros((len(frame_ids), grid, grid), np.float32)
    for i, f in enumerate(frame_ids):
        side = PASTE_SIDE * track.radius[f]
        u = (centres - track.cx[f]) / side + 0.5                          # (grid,) window columns in [0, 1)
        v = (centres - track.cy[f]) / side + 0.5                          # (grid,) window rows
        cols, rows = u * s - 0.5, v * s - 0.5
        c0, r0 = np.floor(cols).astype(int), np.floor(rows).astype(int)
        fc, fr = (cols - c0)[None, None, :], (rows - r0)[None, :, None]
        cl, cr = np.clip(c0, 0, s - 1), np.clip(c0 + 1, 0, s - 1)
        rt, rb = np.clip(r0, 0, s - 1), np.clip(r0 + 1, 0, s - 1)
        top = reference[:, rt][:, :, cl] * (1 - fc) + reference[:, rt][:, :, cr] * fc    # (c, grid, grid)
        bottom = reference[:, rb][:, :, cl] * (1 - fc) + reference[:, rb][:, :, cr] * fc
        mask = (((v >= 0) & (v < 1))[:, None] & ((u >= 0) & (u < 1))[None, :]).astype(np.float32)
        drawn[:, i] = (top * (1 - fr) + bottom * fr) * mask
        window[i] = mask
    return np.concatenate([window[None], drawn])


def layout_from_cover(cover: np.ndarray, present: np.ndarray) -> np.ndarray:
    """cover (B, T, h, w) and present (B,) 0/1 -> layouts (B, 2, T, h, w) float32; rows with
    present 0 are all zeros."""
    keep = present.astype(np.float32).reshape((-1, 1, 1, 1))
    return np.stack([cover * keep, np.broadcast_to(keep, cover.shape)], axis=1).astype(np.float32)
