"""The clip renderer: a parametric object moving over a procedural background.

`sample_params` draws a `ClipParams` (the full ground truth, per-frame track included) and
`render_clip` turns it into frames (T, H, W, 3) uint8. Objects are anti-aliased by supersampling
only their bounding box, so a 16-frame 64x64 clip renders in a few milliseconds. Rendering is a
pure function of the parameters (the texture seed is one of them), hence deterministic.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .world import (ALLOWED_LIGHTINGS, BACKGROUNDS, CAMERA_SCALE, CAMERAS, COLOURS, LIGHTING_TINT,
                    LIGHTINGS, MOTIONS, SIZE_FACTOR, Look, random_look)

# Unit-shape geometry (object radius 1 = the camera's scale). All shapes fit the unit circle.
CIRCLE_R = 0.92
SQUARE_HALF = 0.75
TRIANGLE_R = 1.05          # circumradius; the centroid is the origin, a vertex points up
STAR_R, STAR_r = 1.05, 0.45
GROW_RANGE = (0.62, 1.25)  # scale at the first and last frame of "grow"
SUPERSAMPLE = 4


@dataclass
class Track:
    """Per-frame object pose in pixels: centre (x right, y down), unit radius, angle (radians)."""

    cx: list[float]
    cy: list[float]
    radius: list[float]
    angle: list[float]


@dataclass
class ClipParams:
    """Full ground truth of one clip. `name` is None for an anonymous object."""

    look: Look
    name: str | None
    background: str
    motion: str
    camera: str
    lighting: str
    frames: int = 16
    height: int = 64
    width: int = 64
    seed: int = 0
    track: Track = field(default=None)  # type: ignore[assignment]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["look"] = self.look.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ClipParams":
        d = dict(d)
        d["look"] = Look(**d["look"])
        d["track"] = Track(**d["track"]) if d.get("track") else None
        return cls(**d)


def _check(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
    return value


def make_track(rng: np.random.Generator, motion: str, size: str, camera: str, frames: int,
               height: int, width: int) -> Track:
    """Draw a trajectory for `motion` of an object of `size` (a Look's); positions are clamped
    so the object stays in frame."""
    s = np.linspace(0.0, 1.0, frames)
    base_r = CAMERA_SCALE[camera] * SIZE_FACTOR[size] * min(height, width)
    scale = np.ones(frames)
    x0, y0 = rng.uniform(0.4, 0.6), rng.uniform(0.42, 0.62)
    x, y = np.full(frames, x0), np.full(frames, y0)
    angle = np.full(frames, rng.uniform(-0.25, 0.25))
    travel = (rng.uniform(0.27, 0.31), rng.uniform(0.69, 0.73))
    if motion in ("left", "right"):
        a, b = travel if motion == "right" else travel[::-1]
        x = a + (b - a) * s
    elif motion in ("up", "down"):
        a, b = travel if motion == "down" else travel[::-1]
        y = a + (b - a) * s
    elif motion == "jump":
        bounces = max(1, round(frames / 24))
        y0 = rng.uniform(0.64, 0.7)
        y = y0 - rng.uniform(0.24, 0.3) * np.abs(np.sin(math.pi * bounces * s))
    elif motion == "spin":
        turns = max(1, round(frames / 24)) * rng.choice([-1.0, 1.0])
        angle = angle[0] + 2 * math.pi * turns * s * (15 / 16 if frames <= 24 else 1.0)
    elif motion == "grow":
        scale = GROW_RANGE[0] + (GROW_RANGE[1] - GROW_RANGE[0]) * s
    radius = base_r * scale
    cx = np.clip(x * width, radius, width - radius)
    cy = np.clip(y * height, radius, height - radius)
    return Track([float(v) for v in cx], [float(v) for v in cy], [float(v) for v in radius],
                 [float(v) for v in angle])


def sample_params(rng: np.random.Generator, *, look: Look | None = None, name: str | None = None,
                  background: str | None = None, motion: str | None = None, camera: str | None = None,
                  lighting: str | None = None, frames: int = 16, size: int | tuple[int, int] = 64) -> ClipParams:
    """Random clip parameters; any attribute given is kept fixed. `size` is H or (H, W)."""
    height, width = (size, size) if isinstance(size, int) else size
    if frames < 2 or height < 16 or width < 16:
        raise ValueError(f"clips need at least 2 frames and 16x16 pixels (got {frames} frames, {height}x{width})")
    look = look or random_look(rng)
    background = _check(background or str(rng.choice(BACKGROUNDS)), BACKGROUNDS, "background")
    if motion is None:
        choices = [m for m in MOTIONS if not (m == "spin" and look.rotation_symmetric())]
        motion = str(rng.choice(choices))
    _check(motion, MOTIONS, "motion")
    if motion == "spin" and look.rotation_symmetric():
        raise ValueError(f"a {look.pattern} circle cannot visibly spin")
    camera = _check(camera or str(rng.choice(CAMERAS)), CAMERAS, "camera")
    lighting = lighting or str(rng.choice(ALLOWED_LIGHTINGS[background]))
    _check(lighting, LIGHTINGS, "lighting")
    if lighting not in ALLOWED_LIGHTINGS[background]:
        raise ValueError(f"the {background} background is only shown at {ALLOWED_LIGHTINGS[background][0]}")
    seed = int(rng.integers(0, 2**31 - 1))
    track = make_track(np.random.default_rng(seed), motion, look.size, camera, frames, height, width)
    return ClipParams(look, name, background, motion, camera, lighting, frames, height, width, seed, track)


# ----------------------------------------------------------------------------------------------
# Backgrounds (day colours, float32 H x W x 3); the lighting tint is applied to the whole frame.

def _ramp(n: int, top, bottom) -> np.ndarray:
    t = np.linspace(0.0, 1.0, max(n, 1))[:, None]
    return (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)


def _horizon(height: int, sky_top, sky_bottom, ground_top, ground_bottom, frac: float) -> np.ndarray:
    h = int(round(frac * height))
    return np.concatenate([_ramp(h, sky_top, sky_bottom), _ramp(height - h, ground_top, ground_bottom)])


def background_rows(name: str, height: int, jitter: float = 0.0) -> np.ndarray:
    """Low-frequency colour of each row of background `name`: (H, 3) float32, day light."""
    y = np.arange(height, dtype=np.float32)
    if name == "sky":
        return _ramp(height, (70, 130, 220), (150, 200, 245))
    if name == "night":
        return _ramp(height, (8, 12, 40), (28, 32, 75))
    if name == "grass":
        return _horizon(height, (120, 175, 235), (165, 210, 245), (45, 110, 35), (30, 80, 25), 0.32 + jitter)
    if name == "sand":
        rows = _horizon(height, (150, 195, 235), (185, 215, 240), (230, 205, 145), (205, 175, 115), 0.30 + jitter)
        h = int(round((0.30 + jitter) * height))
        rows[h:] += 7.0 * np.sin(2 * np.pi * y[h:, None] / max(height / 9, 3))
        return rows
    if name == "sea":
        h = int(round((0.38 + jitter) * height))
        rows = _horizon(height, (140, 190, 235), (180, 210, 240), (30, 105, 165), (15, 60, 120), 0.38 + jitter)
        period = max(height // 8, 4)
        waves = ((y - h) % period < max(height // 64, 1)) & (y > h + 1)
        rows[waves] += 28.0
        return rows
    if name == "room":
        h = int(round((0.62 + jitter) * height))
        rows = np.concatenate([_ramp(h, (210, 190, 155), (195, 175, 140)),
                               _ramp(height - h, (140, 95, 60), (115, 75, 45))])
        planks = ((y - h) % max(height // 8, 4) == 0) & (y > h)
        rows[planks] -= 22.0
        rows[h:h + max(height // 32, 1)] = (90, 60, 40)  # skirting board
        return rows
    raise ValueError(f"unknown background {name!r}; expected one of {', '.join(BACKGROUNDS)}")


def render_background(name: str, height: int, width: int, seed: int) -> np.ndarray:
    """Background `name` in day light with a seeded fine texture: (H, W, 3) float32."""
    rng = np.random.default_rng(seed ^ 0x5EED)
    jitter = float(rng.uniform(-0.02, 0.02))
    img = np.repeat(background_rows(name, height, jitter)[:, None, :], width, axis=1)
    amp = {"grass": 7.0, "sand": 5.0, "room": 3.0}.get(name, 2.0)
    img += rng.normal(0.0, amp, size=(height, width, 1)).astype(np.float32)
    if name == "night":  # sparse single-pixel stars
        stars = rng.random((height, width)) < 0.006
        img[stars] = (200, 200, 225)
    return img


def apply_lighting(img: np.ndarray, lighting: str) -> np.ndarray:
    gain, offset = LIGHTING_TINT[lighting]
    return img * np.asarray(gain, np.float32) + np.asarray(offset, np.float32)


# ----------------------------------------------------------------------------------------------
# Objects: signed distance to the unit shape (positive inside), pattern masks in unit coords.

_TRI_NORMALS = np.array([[math.cos(a), math.sin(a)] for a in (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6)],
                        np.float32)
_STAR_A = np.array([STAR_R, 0.0], np.float32)
_STAR_B = np.array([STAR_r * math.cos(math.pi / 5), STAR_r * math.sin(math.pi / 5)], np.float32)
# Pattern features shrink with the shape so that they stay inside thin shapes.
_PATTERN_SCALE = {"circle": 1.0, "square": 0.9, "triangle": 0.72, "star": 0.62}
_DOTS = np.array([(-0.42, -0.36), (0.4, -0.3), (0.0, 0.1), (-0.4, 0.44), (0.42, 0.46)], np.float32)


def shape_sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance to the boundary of the unit `shape` (u right, v down)."""
    if shape == "circle":
        return CIRCLE_R - np.hypot(u, v)
    if shape == "square":
        return SQUARE_HALF - np.maximum(np.abs(u), np.abs(v))
    if shape == "triangle":  # three half-planes, apex up (towards -v)
        d = u[..., None] * _TRI_NORMALS[:, 0] + v[..., None] * _TRI_NORMALS[:, 1]
        return TRIANGLE_R / 2 - d.max(axis=-1)
    if shape == "star":  # fold the angle into one half-arm, then distance to its edge line
        rho = np.hypot(u, v)
        a = np.mod(np.arctan2(v, u) + math.pi / 2, 2 * math.pi / 5)  # 0 at a tip
        a = np.minimum(a, 2 * math.pi / 5 - a)
        px, py = rho * np.cos(a), rho * np.sin(a)
        e = _STAR_B - _STAR_A
        cross = e[0] * (py - _STAR_A[1]) - e[1] * (px - _STAR_A[0])
        return cross / float(np.hypot(*e))
    raise ValueError(f"unknown shape {shape!r}")


def pattern_mask(pattern: str, shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """True where the secondary colour shows (unit coords, rotating with the object)."""
    k = _PATTERN_SCALE[shape]
    if pattern == "solid":
        return np.zeros(u.shape, bool)
    if pattern == "stripes":
        phase = np.mod(v / (0.6 * k), 1.0)
        return np.abs(phase - 0.5) < 0.2
    if pattern == "dots":
        d = np.hypot(u[..., None] - k * _DOTS[:, 0], v[..., None] - k * _DOTS[:, 1])
        return (d < 0.19 * k).any(axis=-1)
    if pattern == "ring":
        rho = np.hypot(u, v) / k
        return (rho > 0.36) & (rho < 0.58)
    if pattern == "split":
        return v > 0.2
    raise ValueError(f"unknown pattern {pattern!r}")


def _object_samples(cx: float, cy: float, radius: float, angle: float, height: int, width: int,
                    ss: int):
    """The pixel box an object at this pose can touch, (y0, y1, x0, x1), and its ss x ss sample
    points per pixel in the object's unit coordinates, u and v (h * ss, w * ss); None when the
    box is off the frame."""
    reach = radius * 1.08 + 1
    x0, x1 = max(int(cx - reach), 0), min(int(math.ceil(cx + reach)), width)
    y0, y1 = max(int(cy - reach), 0), min(int(math.ceil(cy + reach)), height)
    if x1 <= x0 or y1 <= y0:
        return None
    sub = (np.arange(ss, dtype=np.float32) + 0.5) / ss
    xs = ((np.arange(x0, x1, dtype=np.float32)[:, None] + sub).reshape(-1) - cx) / radius
    ys = ((np.arange(y0, y1, dtype=np.float32)[:, None] + sub).reshape(-1) - cy) / radius
    c, s = math.cos(angle), math.sin(angle)
    u = c * xs[None, :] + s * ys[:, None]  # sample points rotated by -angle
    v = -s * xs[None, :] + c * ys[:, None]
    return (y0, y1, x0, x1), u, v


def _coverage(m: np.ndarray, ss: int) -> np.ndarray:
    """(h * ss, w * ss) bool samples -> (h, w) float32: the fraction of each pixel's samples in m."""
    h, w = m.shape[0] // ss, m.shape[1] // ss
    return m.reshape(h, ss, w, ss).sum(axis=3, dtype=np.float32).sum(axis=1) / (ss * ss)


def _draw_object(canvas: np.ndarray, look: Look, cx: float, cy: float, radius: float, angle: float,
                 ss: int, outline_px: float, palette: np.ndarray) -> None:
    """Composite one anti-aliased object onto `canvas` (H, W, 3) float32 in place.

    `palette` (3, 3) holds the lit primary, secondary and outline colours; each pixel averages
    ss x ss samples, each classed as outside / primary / secondary / outline.
    """
    found = _object_samples(cx, cy, radius, angle, canvas.shape[0], canvas.shape[1], ss)
    if found is None:
        return
    (y0, y1, x0, x1), u, v = found
    sdf = shape_sdf(look.shape, u, v)
    inside = sdf >= 0
    outline = inside & (sdf < outline_px / radius)
    second = pattern_mask(look.pattern, look.shape, u, v) & inside & ~outline
    alpha, a2, a3 = _coverage(inside, ss), _coverage(second, ss), _coverage(outline, ss)
    a1 = alpha - a2 - a3
    region = canvas[y0:y1, x0:x1]
    region *= (1 - alpha)[..., None]
    region += a1[..., None] * palette[0] + a2[..., None] * palette[1] + a3[..., None] * palette[2]


def shape_cover(shape: str, track: Track, height: int, width: int, frame_ids: list[int] | None = None,
                ss: int = 2) -> np.ndarray:
    """The silhouette of `shape` on `track`: (T, height, width) float32, the fraction of each
    pixel inside the shape (outline included), from ss x ss samples a pixel."""
    ids = range(len(track.cx)) if frame_ids is None else frame_ids
    out = np.zeros((len(ids), height, width), np.float32)
    for i, f in enumerate(ids):
        found = _object_samples(track.cx[f], track.cy[f], track.radius[f], track.angle[f], height, width, ss)
        if found is not None:
            (y0, y1, x0, x1), u, v = found
            out[i, y0:y1, x0:x1] = _coverage(shape_sdf(shape, u, v) >= 0, ss)
    return out


def render_clip(params: ClipParams, frame_ids: list[int] | None = None) -> np.ndarray:
    """Render `params` to frames (T, H, W, 3) uint8 (only `frame_ids` when given)."""
    p = params
    # Lighting is affine, so lighting the background and the palette once equals lighting
    # every composited frame.
    bg = apply_lighting(render_background(p.background, p.height, p.width, p.seed), p.lighting)
    primary = np.asarray(COLOURS[p.look.primary], np.float32)
    palette = apply_lighting(np.stack([primary, np.asarray(COLOURS[p.look.secondary], np.float32),
                                       primary * 0.3]), p.lighting)
    ss = SUPERSAMPLE if min(p.height, p.width) <= 96 else 3
    outline_px = max(1.0, min(p.height, p.width) / 64)
    ids = range(p.frames) if frame_ids is None else frame_ids
    out = np.empty((len(ids), p.height, p.width, 3), np.uint8)
    t = p.track
    for i, f in enumerate(ids):
        canvas = bg.copy()
        _draw_object(canvas, p.look, t.cx[f], t.cy[f], t.radius[f], t.angle[f], ss, outline_px, palette)
        out[i] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return out


def object_mask(params: ClipParams, cell: int = 1, frame_ids: list[int] | None = None) -> np.ndarray:
    """Where the object is: (T, H // cell, W // cell) float32 in [0, 1] (see track_cover)."""
    return track_cover(params.track, params.height, params.width, cell, frame_ids)


def track_cover(track: Track, height: int, width: int, cell: int = 1,
                frame_ids: list[int] | None = None) -> np.ndarray:
    """Where an object on `track` is: (T, height // cell, width // cell) float32 in [0, 1].

    A disc slightly larger than the shape's circumcircle, so outline and anti-aliased edges
    count. With cell > 1 each value is the fraction of that cell the disc covers (at least
    0.25 where it touches at all): the weight map of a latent grid.
    """
    h, w = height, width
    ids = range(len(track.cx)) if frame_ids is None else frame_ids
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    out = np.empty((len(ids), h // cell, w // cell), np.float32)
    for i, f in enumerate(ids):
        disc = ((xs - track.cx[f]) ** 2 + (ys - track.cy[f]) ** 2 <= (track.radius[f] * 1.1 + 1.0) ** 2)
        cover = disc[: h // cell * cell, : w // cell * cell].reshape(h // cell, cell, w // cell, cell).mean((1, 3))
        out[i] = np.where(cover > 0, np.maximum(cover, 0.25), 0.0) if cell > 1 else cover
    return out


def make_clip(rng: np.random.Generator, **kwargs) -> tuple[np.ndarray, ClipParams]:
    """Draw parameters (`sample_params` keywords) and render them: (frames (T, H, W, 3), params)."""
    params = sample_params(rng, **kwargs)
    return render_clip(params), params
