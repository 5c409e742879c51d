"""The attribute detector: reads a toy-world clip (rendered or generated) back into attributes.

It is the evaluation instrument of text-to-video generation, so it uses only the frames and the
world's catalogue (palette, background row profiles, lighting tints, unit-shape areas), never
the ground truth. Pipeline, for frames (T, H, W, 3) uint8:

1. background: every background is row-separable at low frequency, so a robust per-row median
   over time and columns estimates it even under a still object; the row profile is matched to
   the catalogue's (background, lighting) profiles;
2. object mask per frame: colour distance from that estimate above an adaptive threshold, closed,
   the main connected component (plus nearby fragments), holes filled;
3. colours: object pixels (eroded mask) are un-lit with the detected lighting and named by the
   nearest palette colour; the most frequent is primary, the next (if frequent enough) secondary;
4. shape: the catalogue shape (same area, best rotation) that overlaps each frame's mask best
   (soft IoU), medians over a few frames;
5. pattern: the patterned template (stripes, dots, ring, split) of the fitted shape, at the
   fitted pose, that best overlaps the secondary-colour pixels (solid when there is none);
6. size: unit radius from the area and the shape's unit area -> camera class (and small/big);
7. motion: centroid track (net displacement, jump excursion), area growth, and frame-to-frame
   change inside the object for spin.
Each attribute gets a confidence in [0, 1] (a margin, not a calibrated probability).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .render import (CIRCLE_R, SQUARE_HALF, STAR_R, STAR_r, TRIANGLE_R, apply_lighting,
                     background_rows, pattern_mask, shape_sdf)
from .world import (ALLOWED_LIGHTINGS, BACKGROUNDS, CAMERA_SCALE, COLOUR_NAMES, COLOURS,
                    LIGHTING_TINT, SIZE_FACTOR)

# Area of each unit shape (object radius 1), to turn a mask area into the object's scale.
UNIT_AREA = {
    "circle": math.pi * CIRCLE_R**2,
    "square": (2 * SQUARE_HALF) ** 2,
    "triangle": 3 * math.sqrt(3) / 4 * TRIANGLE_R**2,
    "star": 5 * STAR_R * STAR_r * math.sin(math.pi / 5),
}
MIN_OBJECT_PX = 12          # smaller masks are noise, not an object
SECONDARY_MIN_SHARE = 0.07  # below this share of core pixels voting for one secondary, it is solid
NAMING_RADIUS = 100.0        # un-lit pixels farther than this from every palette colour are unnamed
IDENTITY_ATTRIBUTES = ("shape", "primary", "secondary", "pattern")
PRIMARY_RADIUS = 55.0       # pixels this near the primary are primary
MIX_MIN, LINE_RADIUS = 0.35, 40.0  # a secondary vote needs >= 35 % of that colour, this near its line
RIM_PX = 0.8                # the mask's radius exceeds the object's by this (measured on renders)


@dataclass
class Detection:
    """What the detector read from one clip. `*_conf` are margins in [0, 1]."""

    found: bool
    background: str
    background_conf: float
    lighting: str
    lighting_conf: float
    primary: str | None = None
    primary_conf: float = 0.0
    secondary: str | None = None  # None for a solid object
    secondary_conf: float = 0.0
    pattern: str | None = None
    pattern_conf: float = 0.0
    shape: str | None = None
    shape_conf: float = 0.0
    camera: str | None = None
    size: str | None = None
    scale: float = 0.0            # unit radius / frame height
    motion: str | None = None
    motion_conf: float = 0.0
    centroids: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (T, 2) x, y; nan if absent
    areas: np.ndarray = field(default_factory=lambda: np.zeros(0))          # (T,) pixels
    masks: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), bool))  # (T, H, W)
    features: dict = field(default_factory=dict)

    def look(self) -> tuple:
        """The identity-defining attributes, for comparing two detections."""
        return (self.shape, self.primary, self.secondary, self.pattern)

    def matches(self, look, attributes: tuple[str, ...] = IDENTITY_ATTRIBUTES) -> bool:
        """True when the detected look agrees with `look` (a world.Look, or another Detection)
        on `attributes`; a solid look has no secondary colour."""
        def value(obj, a):
            if a == "secondary" and getattr(obj, "pattern", None) == "solid":
                return None
            return getattr(obj, a)
        return self.found and all(value(self, a) == value(look, a) for a in attributes)


# ----------------------------------------------------------------------------------------------
# Small image operations on boolean masks (numpy only).

def _shift_or(m: np.ndarray) -> np.ndarray:
    """3x3 dilation of a (..., H, W) bool array."""
    out = m.copy()
    out[..., 1:, :] |= m[..., :-1, :]
    out[..., :-1, :] |= m[..., 1:, :]
    tmp = out.copy()
    out[..., :, 1:] |= tmp[..., :, :-1]
    out[..., :, :-1] |= tmp[..., :, 1:]
    return out


def dilate(m: np.ndarray) -> np.ndarray:
    return _shift_or(m)


def erode(m: np.ndarray) -> np.ndarray:
    return ~_shift_or(~m)


def label(mask: np.ndarray) -> np.ndarray:
    """4-connected component labels of a (H, W) bool mask: 0 outside, else 1 + the flat index of
    the component's first pixel. Min-label propagation with pointer jumping."""
    h, w = mask.shape
    big = h * w
    lab = np.where(mask, np.arange(big).reshape(h, w), big)
    while True:
        m = lab.copy()
        m[1:, :] = np.minimum(m[1:, :], lab[:-1, :])
        m[:-1, :] = np.minimum(m[:-1, :], lab[1:, :])
        m[:, 1:] = np.minimum(m[:, 1:], lab[:, :-1])
        m[:, :-1] = np.minimum(m[:, :-1], lab[:, 1:])
        m = np.where(mask, m, big)
        flat = np.append(m.reshape(-1), big)
        m = np.where(mask, flat[m], big)  # jump to the label's label
        if np.array_equal(m, lab):
            break
        lab = m
    return np.where(mask, lab + 1, 0)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the regions of ~mask not connected to the border (worked on the mask's bbox)."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return mask
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = np.pad(mask[y0:y1, x0:x1], 1)
    bg = label(~crop)
    out = mask.copy()
    out[y0:y1, x0:x1] |= (bg != bg[0, 0])[1:-1, 1:-1]
    return out


def _smooth(frames: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur of (T, H, W, 3) float32 (edges replicated)."""
    def blur(x: np.ndarray, axis: int) -> np.ndarray:
        pad = [(0, 0)] * x.ndim
        pad[axis] = (1, 1)
        p = np.pad(x, pad, mode="edge")
        n = x.shape[axis]
        a, b, c = (np.take(p, np.arange(i, i + n), axis=axis) for i in range(3))
        return (a + 2 * b + c) / 4
    return blur(blur(frames, 1), 2)


# ----------------------------------------------------------------------------------------------
# Background and lighting.

@lru_cache(maxsize=16)
def _templates(height: int) -> tuple[list[tuple[str, str]], np.ndarray]:
    keys, rows = [], []
    for bg in BACKGROUNDS:
        for lighting in ALLOWED_LIGHTINGS[bg]:
            keys.append((bg, lighting))
            rows.append(apply_lighting(background_rows(bg, height), lighting))
    return keys, np.stack(rows)


def estimate_background(smooth: np.ndarray) -> np.ndarray:
    """Per-row background colour (H, 3): median over time and columns, recomputed without the
    pixels that stood out the first time."""
    smooth = smooth[:: max(1, len(smooth) // 8)]  # 8 frames are plenty for a median
    t, h, w, _ = smooth.shape
    rows = np.median(smooth, axis=(0, 2))
    diff = np.linalg.norm(smooth - rows[None, :, None], axis=-1)
    out = dilate(diff > max(30.0, 3 * float(np.median(diff))))
    x = np.where(out[..., None], np.nan, smooth).transpose(1, 0, 2, 3).reshape(h, t * w, 3)
    keep = np.isfinite(x[..., 0]).sum(axis=1) >= 0.25 * t * w
    second = np.nanmedian(np.where(keep[:, None, None], x, 0.0), axis=1)
    return np.where(keep[:, None], second, rows)


def classify_background(rows: np.ndarray) -> tuple[str, float, str, float]:
    """Nearest catalogue (background, lighting) to the row profile: names and margins."""
    keys, tmpl = _templates(rows.shape[0])
    d = np.linalg.norm(tmpl - rows[None], axis=-1)  # (K, H)
    d = np.sort(d, axis=1)[:, : max(1, int(0.85 * rows.shape[0]))].mean(axis=1)  # trim the horizon
    order = np.argsort(d)
    best = keys[order[0]]
    other_bg = next(i for i in order if keys[i][0] != best[0])
    other_light = next((i for i in order if keys[i][0] == best[0] and keys[i][1] != best[1]), None)
    bg_conf = 1 - d[order[0]] / max(d[other_bg], 1e-6)
    light_conf = 1.0 if other_light is None else 1 - d[order[0]] / max(d[other_light], 1e-6)
    return best[0], float(bg_conf), best[1], float(light_conf)


# ----------------------------------------------------------------------------------------------
# Object masks.

def object_masks(smooth: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(T, H, W) bool: the main object of each frame."""
    diff = np.linalg.norm(smooth - rows[None, :, None], axis=-1)
    thr = max(24.0, 4.0 * float(np.median(diff)))
    raw = erode(dilate(diff > thr))  # closing joins fragments split by a low-contrast band
    masks = np.zeros_like(raw)
    for i, m in enumerate(raw):
        lab = label(m)
        ids, counts = np.unique(lab[lab > 0], return_counts=True)
        if len(ids) == 0 or counts.max() < MIN_OBJECT_PX:
            continue
        main = ids[np.argmax(counts)]
        keep = lab == main
        ys, xs = np.nonzero(keep)
        cy, cx, r = ys.mean(), xs.mean(), math.sqrt(counts.max() / math.pi)
        for j, c in zip(ids, counts):  # fragments close to the main blob belong to it
            if j != main and c >= max(6, 0.08 * counts.max()):
                fy, fx = np.nonzero(lab == j)
                if math.hypot(fy.mean() - cy, fx.mean() - cx) < 1.6 * r:
                    keep |= lab == j
        masks[i] = fill_holes(erode(dilate(keep)) | keep)
    return masks


# ----------------------------------------------------------------------------------------------
# Colours and pattern.

# Colours are compared in an opponent space (lightness, red-green, yellow-blue) where a darker
# or blurred shade of a colour stays nearer to it than to its hue neighbours.
_OPPONENT = np.array([[1 / 3, 1, 0.5], [1 / 3, -1, 0.5], [1 / 3, 0, -1]], np.float32)
_PALETTE = np.array([COLOURS[c] for c in COLOUR_NAMES], np.float32) @ _OPPONENT


def _core(mask: np.ndarray) -> np.ndarray:
    """The mask without its anti-aliased, outlined rim (2 px when the object is big enough)."""
    e1 = erode(mask)
    e2 = erode(e1)
    if e2.sum() >= max(8, 0.5 * mask.sum()):
        return e2
    return e1 if e1.sum() >= 8 else mask


def unlit_opponent(rgb: np.ndarray, lighting: str) -> np.ndarray:
    """Pixels (..., 3) with `lighting` undone, in the opponent space of the palette."""
    gain, offset = LIGHTING_TINT[lighting]
    return ((rgb - np.asarray(offset, np.float32)) / np.asarray(gain, np.float32)) @ _OPPONENT


def name_pixels(rgb: np.ndarray, lighting: str) -> np.ndarray:
    """Palette index of each pixel (..., 3) after undoing `lighting`; -1 when none is near."""
    d = np.linalg.norm(unlit_opponent(rgb, lighting)[..., None, :] - _PALETTE, axis=-1)
    idx = np.argmin(d, axis=-1)
    return np.where(np.min(d, axis=-1) <= NAMING_RADIUS, idx, -1)


def secondary_votes(opp: np.ndarray, primary: int) -> np.ndarray:
    """For pixels (N, 3) in opponent space, the palette colour c != primary whose mixing line
    with the primary passes nearest (blur and small features blend the secondary with the
    primary, so a blended pixel still votes for its pure colour); -1 for pixels that look
    primary or fit no line."""
    p = _PALETTE[primary]
    rel = opp - p
    best, best_d = np.full(len(opp), -1), np.full(len(opp), np.inf)
    for c in range(len(_PALETTE)):
        if c == primary:
            continue
        e = _PALETTE[c] - p
        a = np.clip(rel @ e / float(e @ e), MIX_MIN, 1.0)
        d = np.linalg.norm(rel - a[:, None] * e, axis=1)
        better = d < best_d
        best, best_d = np.where(better, c, best), np.where(better, d, best_d)
    primary_like = np.linalg.norm(rel, axis=1) < PRIMARY_RADIUS
    return np.where(primary_like | (best_d > LINE_RADIUS), -1, best)


# ----------------------------------------------------------------------------------------------
# Shape, size, motion.

# Rotations tried per shape, up to its symmetry period.
_ROTATIONS = {"circle": np.zeros(1), "square": np.linspace(0, math.pi / 2, 9, endpoint=False),
              "triangle": np.linspace(0, 2 * math.pi / 3, 12, endpoint=False),
              "star": np.linspace(0, 2 * math.pi / 5, 8, endpoint=False)}


def _frame_grid(mask: np.ndarray, pad: int = 3):
    """Pixel-centre offsets (N,) from the mask's centroid over its padded bbox, and the bbox."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, mask.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, mask.shape[1])
    gy, gx = np.mgrid[y0:y1, x0:x1]
    return gx.reshape(-1) + 0.5 - cx, gy.reshape(-1) + 0.5 - cy, (y0, y1, x0, x1)


def _rotate(px: np.ndarray, py: np.ndarray, angles: np.ndarray, r: float):
    """Unit-shape coords (rotations, N) of pixel offsets, as the renderer maps them."""
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    return (c * px + s * py) / r, (-s * px + c * py) / r


def shape_scores(mask: np.ndarray) -> dict[str, tuple[float, float]] | None:
    """Best soft IoU, and its angle, of one frame's mask with each catalogue shape of the same
    area centred on the mask's centroid, over rotations. None when the mask is too small."""
    area = float(mask.sum())
    if area < 25:
        return None
    px, py, (y0, y1, x0, x1) = _frame_grid(mask)
    m = mask[y0:y1, x0:x1].astype(np.float32).reshape(-1)
    scores = {}
    for shape, angles in _ROTATIONS.items():
        r = math.sqrt(area / UNIT_AREA[shape])
        u, v = _rotate(px, py, angles, r)
        cover = np.clip(shape_sdf(shape, u, v) * r + 0.5, 0.0, 1.0)  # soft pixel coverage
        iou = np.minimum(cover, m).sum(axis=1) / np.maximum(cover, m).sum(axis=1)
        best = int(np.argmax(iou))
        scores[shape] = (float(iou[best]), float(angles[best]))
    return scores


_SUB = np.array([-0.25, 0.25])  # 2x2 sub-pixel samples for pattern templates
PATTERN_TEMPLATES = ("stripes", "dots", "ring", "split")


def pattern_scores(sec: np.ndarray, core: np.ndarray, mask: np.ndarray, shape: str, angle: float,
                   r: float) -> dict[str, float]:
    """Soft IoU, over the core pixels, between the observed secondary-colour pixels and each
    patterned template of the detected shape. The pattern turns with the object, so its angle
    is the shape's best angle plus any multiple of the shape's symmetry period."""
    px, py, (y0, y1, x0, x1) = _frame_grid(mask)
    period = {"circle": 2 * math.pi / 24, "square": math.pi / 2, "triangle": 2 * math.pi / 3,
              "star": 2 * math.pi / 5}[shape]
    angles = angle + period * np.arange(int(round(2 * math.pi / period)))
    o = sec[y0:y1, x0:x1].reshape(-1).astype(np.float32)
    keep = core[y0:y1, x0:x1].reshape(-1)
    out = {}
    for pattern in PATTERN_TEMPLATES:
        cover = 0.0
        for dy in _SUB:
            for dx in _SUB:
                u, v = _rotate(px[keep] + dx, py[keep] + dy, angles, r)
                cover = cover + (pattern_mask(pattern, shape, u, v) & (shape_sdf(shape, u, v) >= 0))
        t = cover / 4.0
        iou = np.minimum(t, o[keep]).sum(axis=1) / np.maximum(np.maximum(t, o[keep]).sum(axis=1), 1e-6)
        out[pattern] = float(iou.max())
    return out


def classify_shape(scores: dict[str, float]) -> tuple[str, float]:
    """The best-fitting shape (scores: median IoU per shape); confidence from the margin over
    the runner-up (0.1 IoU -> 1)."""
    ranked = sorted(scores, key=scores.get, reverse=True)
    return ranked[0], float(min(1.0, (scores[ranked[0]] - scores[ranked[1]]) / 0.1))


def size_class(scale: float) -> tuple[str, str]:
    """Camera from the unit radius / frame height (thresholds at the geometric midpoints between
    neighbouring cameras' size ranges), then small/big within it."""
    cams = sorted(CAMERA_SCALE, key=CAMERA_SCALE.get)
    lo, hi = min(SIZE_FACTOR.values()), max(SIZE_FACTOR.values())
    camera = cams[-1]
    for a, b in zip(cams, cams[1:]):
        if scale < math.sqrt(CAMERA_SCALE[a] * hi * CAMERA_SCALE[b] * lo):
            camera = a
            break
    size = min(SIZE_FACTOR, key=lambda s: abs(math.log(max(scale, 1e-6) / (CAMERA_SCALE[camera] * SIZE_FACTOR[s]))))
    return camera, size


def classify_motion(cents: np.ndarray, areas: np.ndarray, change: float, height: int,
                    width: int) -> tuple[str, float, dict]:
    """Motion from the centroid track (T, 2), the areas (T,) and the in-object change signal."""
    ok = np.isfinite(cents[:, 0])
    c, a = cents[ok], areas[ok]
    if len(c) < 3:
        return "still", 0.0, {}
    k = max(1, min(3, len(c) // 5))  # a short window: long jumps bounce within a fifth of the clip
    start, end = c[:k].mean(axis=0), c[-k:].mean(axis=0)
    dx, dy = (end[0] - start[0]) / width, (end[1] - start[1]) / height
    line = start[1] + (end[1] - start[1]) * np.linspace(0, 1, len(c))
    excursion = float((line - c[:, 1]).max()) / height  # upward is -y
    growth = float(a[-k:].mean() / max(a[:k].mean(), 1.0))
    f = {"dx": dx, "dy": dy, "excursion": excursion, "growth": growth, "change": change}
    if max(abs(dx), abs(dy)) >= 0.15:
        conf = min(1.0, (max(abs(dx), abs(dy)) - 0.15) / 0.15)
        if abs(dx) >= abs(dy):
            return ("right" if dx > 0 else "left"), conf, f
        return ("down" if dy > 0 else "up"), conf, f
    if excursion >= 0.08:
        return "jump", min(1.0, (excursion - 0.08) / 0.08), f
    if growth >= 1.5:
        return "grow", min(1.0, (growth - 1.5) / 0.5), f
    if change >= 0.12:
        return "spin", min(1.0, (change - 0.12) / 0.1), f
    return "still", min(1.0, (0.12 - change) / 0.1), f


def spin_signal(smooth: np.ndarray, masks: np.ndarray, cents: np.ndarray) -> float:
    """Median over consecutive frames of the fraction of the object's core whose membership or
    colour changes once the centroids are aligned: ~0 for a rigid still object, large for a
    spinning one. The colour threshold adapts to the noise seen on the background."""
    vals = []
    for t in range(len(masks) - 1):
        if not (np.isfinite(cents[t, 0]) and np.isfinite(cents[t + 1, 0])):
            continue
        sy, sx = np.rint(cents[t, ::-1] - cents[t + 1, ::-1]).astype(int)
        m2 = np.roll(masks[t + 1], (sy, sx), axis=(0, 1))
        f2 = np.roll(smooth[t + 1], (sy, sx), axis=(0, 1))
        dist = np.linalg.norm(smooth[t] - f2, axis=-1)
        outside = ~(dilate(masks[t]) | dilate(m2))
        tau = max(25.0, 4.0 * float(np.median(dist[outside]))) if outside.any() else 25.0
        core = erode(masks[t]) | erode(m2)
        if core.sum() < 10:
            continue
        changed = (masks[t] != m2) | (dist > tau)
        vals.append(float(changed[core].mean()))
    return float(np.median(vals)) if vals else 0.0


# ----------------------------------------------------------------------------------------------

def detect(frames: np.ndarray) -> Detection:
    """Read a clip back: frames (T, H, W, 3) uint8 (or float in [0, 255])."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape[1:3]) < 16:
        raise ValueError(f"expected frames (T, H, W, 3) of at least 16x16, got {frames.shape}")
    x = frames.astype(np.float32)
    t, h, w, _ = x.shape
    smooth = _smooth(x)
    rows = estimate_background(smooth)
    bg, bg_conf, lighting, light_conf = classify_background(rows)
    det = Detection(False, bg, bg_conf, lighting, light_conf)
    masks = object_masks(smooth, rows)
    areas = masks.sum(axis=(1, 2)).astype(float)
    cents = np.full((t, 2), np.nan)
    for i in np.nonzero(areas >= MIN_OBJECT_PX)[0]:
        ys, xs = np.nonzero(masks[i])
        cents[i] = xs.mean() + 0.5, ys.mean() + 0.5
    det.centroids, det.areas, det.masks = cents, areas, masks
    present = np.nonzero(areas >= MIN_OBJECT_PX)[0]
    if len(present) < max(1, t // 4):  # a single frame (a reference image) is fine
        return det
    det.found = True

    # colours: name the pixels of each mask's core
    names = np.full((t, h, w), -1)
    near = dilate(masks)
    names[near] = name_pixels(x[near], lighting)  # raw pixels: smoothing blends thin patterns
    inner = np.array([_core(m) for m in masks])
    counts = np.bincount(names[inner & (names >= 0)], minlength=len(COLOUR_NAMES)).astype(float)
    total = max(counts.sum(), 1.0)
    order = np.argsort(-counts)
    primary = int(order[0])
    det.primary = COLOUR_NAMES[primary]
    det.primary_conf = float((counts[order[0]] - counts[order[1]]) / total)
    votes = np.full((t, h, w), -1)
    votes[inner] = secondary_votes(unlit_opponent(x[inner], lighting), primary)
    vcounts = np.bincount(votes[votes >= 0], minlength=len(COLOUR_NAMES)).astype(float)
    second = int(np.argmax(vcounts))
    share2 = vcounts[second] / max(float(inner.sum()), 1.0)
    if share2 >= SECONDARY_MIN_SHARE:
        det.secondary = COLOUR_NAMES[second]
        det.secondary_conf = float(min(1.0, (share2 - SECONDARY_MIN_SHARE) / 0.1))
    else:
        det.secondary_conf = float(min(1.0, (SECONDARY_MIN_SHARE - share2) / SECONDARY_MIN_SHARE))

    # shape
    judged = present[np.linspace(0, len(present) - 1, min(len(present), 6)).round().astype(int)]
    fits = {i: shape_scores(masks[i]) for i in judged}
    fits = {i: f for i, f in fits.items() if f is not None}
    if fits:
        med = {k: float(np.median([f[k][0] for f in fits.values()])) for k in UNIT_AREA}
        det.shape, det.shape_conf = classify_shape(med)
        det.features.update({f"iou_{k}": v for k, v in med.items()})
    else:
        det.shape = "circle"

    # pattern: the patterned template that best explains where the secondary colour is
    if det.secondary is None:
        det.pattern, det.pattern_conf = "solid", det.secondary_conf
    else:
        sec = votes == second
        rim = RIM_PX * max(1.0, min(h, w) / 64)
        ps = [pattern_scores(sec[i], inner[i], masks[i], det.shape, fits[i][det.shape][1],
                             max(math.sqrt(areas[i] / UNIT_AREA[det.shape]) - rim, 1.0))
              for i in fits if inner[i].sum() >= 12]
        if ps:
            med = {k: float(np.median([p[k] for p in ps])) for k in PATTERN_TEMPLATES}
            ranked = sorted(med, key=med.get, reverse=True)
            det.pattern = ranked[0]
            det.pattern_conf = float(min(1.0, (med[ranked[0]] - med[ranked[1]]) / 0.1))
            det.features.update({f"pattern_{k}": v for k, v in med.items()})
        else:
            det.pattern, det.pattern_conf = "solid", 0.0

    # size: the median frame's area through the detected shape's unit area, less the rim that
    # the mask adds around the object (outline + anti-aliasing; measured ~0.8 px at 64x64)
    radius = math.sqrt(np.median(areas[present]) / UNIT_AREA[det.shape]) - RIM_PX * max(1.0, min(h, w) / 64)
    det.scale = float(max(radius, 0.5) / min(h, w))
    det.camera, det.size = size_class(det.scale)

    # motion
    change = spin_signal(smooth, masks, cents)
    det.motion, det.motion_conf, mf = classify_motion(cents, areas, change, h, w)
    det.features.update(mf)
    return det


def read_lighting(frames: np.ndarray) -> str:
    """(T, H, W, 3) or (H, W, 3) uint8 -> the nearest catalogue lighting of its background."""
    frames = np.asarray(frames, np.float32)
    smooth = _smooth(frames if frames.ndim == 4 else frames[None])
    return classify_background(estimate_background(smooth))[2]


def object_mask(image: np.ndarray) -> np.ndarray | None:
    """(H, W, 3) uint8 -> (H, W) bool: the image's main object, or None when there is none."""
    smooth = _smooth(image.astype(np.float32)[None])
    mask = object_masks(smooth, estimate_background(smooth))[0]
    return mask if mask.sum() >= MIN_OBJECT_PX else None


def object_crop(image: np.ndarray, margin: float = 0.15, min_side: int = 24) -> np.ndarray:
    """An identity reference (H, W, 3) uint8 -> (H, W, 3) uint8: a square around its detected
    object (the object's extent plus `margin` of it on each side, at least `min_side` pixels)
    scaled up to fill the frame; the image unchanged when no object is found.

    A character covers a fifth of a medium shot or less, so most of a reference's latent cells
    (and reference tokens) describe a background the shot will not have; cropped, most describe
    the look. The detector finds the object, so a user's reference and a training one are cut
    the same way.
    """
    from PIL import Image
    mask = object_mask(image)
    if mask is None:
        return image
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    extent = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    side = int(min(max(round(extent * (1 + 2 * margin)), min_side), h, w))
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    top = int(np.clip(round(cy - side / 2), 0, h - side))
    left = int(np.clip(round(cx - side / 2), 0, w - side))
    crop = np.ascontiguousarray(image[top:top + side, left:left + side])
    return np.asarray(Image.fromarray(crop).resize((w, h), Image.BILINEAR))
