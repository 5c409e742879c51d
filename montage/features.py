"""Per-frame measurements of sampled low-resolution frames, and per-shot features from them.

The indexer streams frames through `FrameAnalyzer` in batches and keeps only compact per-frame
numbers (a colour histogram, mean Lab, brightness, sharpness, the change from the previous
frame and the camera motion between the two), so a long video never sits in memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HIST_BITS = 3                 # 8 levels per channel -> 512-bin joint RGB histogram
SHARPNESS_SCALE = 150.0       # variance of Laplacian (0..255 gray, analysis size) giving 0.5
MOTION_SCALE = 0.04           # mean absolute frame change (0..1) giving motion 0.5
PAN_RATE = 0.03               # fraction of the frame width per second that counts as a pan
ZOOM_RATE = 0.03              # relative scale change per second that counts as a zoom
MIN_PEAK = 0.04               # phase-correlation peak below this carries no information


def _srgb_to_linear_lut() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


_LINEAR = _srgb_to_linear_lut()
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]], dtype=np.float32)
_WHITE = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 (..., 3) -> CIE L*a*b* (D65) float32 (..., 3)."""
    xyz = _LINEAR[rgb] @ _RGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                     200.0 * (f[..., 1] - f[..., 2])], axis=-1).astype(np.float32)


def gray(frames: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, H, W) float32 luma in 0..255 (Rec. 601)."""
    f = frames.astype(np.float32)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def histograms(frames: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, 512) float32 joint RGB histograms that sum to 1."""
    b = frames.shape[0]
    q = (frames >> (8 - HIST_BITS)).astype(np.int32)
    levels = 1 << HIST_BITS
    idx = (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]
    idx = idx.reshape(b, -1) + (np.arange(b, dtype=np.int32) * levels ** 3)[:, None]
    h = np.bincount(idx.ravel(), minlength=b * levels ** 3).reshape(b, -1).astype(np.float32)
    return h / np.maximum(h.sum(axis=1, keepdims=True), 1.0)


def laplacian_variance(g: np.ndarray) -> np.ndarray:
    """(B, H, W) luma -> (B,) variance of the 4-neighbour Laplacian (a focus measure)."""
    lap = (4.0 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1]
           - g[:, 1:-1, :-2] - g[:, 1:-1, 2:])
    return lap.reshape(len(g), -1).var(axis=1)


def _hann(h: int, w: int) -> np.ndarray:
    return np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)


def _spectra(g: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(..., H, W) luma blocks -> windowed, mean-removed 2-D spectra (..., H, W//2+1)."""
    g = g - g.mean(axis=(-2, -1), keepdims=True)
    return np.fft.rfft2(g * window).astype(np.complex64)


def phase_shifts(fa: np.ndarray, fb: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase correlation of spectra fa -> fb, batched over leading axes.

    Returns dy, dx (translation moving a onto b, parabolic sub-pixel fit) and the correlation
    peak (0..1; low where there is no texture to lock onto), each of the leading shape.
    """
    cross = fb * np.conj(fa)
    cross /= np.maximum(np.abs(cross), 1e-6)
    r = np.fft.irfft2(cross, s=shape, axes=(-2, -1))
    h, w = shape
    lead = r.shape[:-2]
    flat = r.reshape(-1, h, w)
    k = np.argmax(flat.reshape(len(flat), -1), axis=1)
    iy, ix = np.divmod(k, w)
    n = np.arange(len(flat))
    c0 = flat[n, iy, ix]

    def refine(cm: np.ndarray, cp: np.ndarray) -> np.ndarray:
        den = cm - 2 * c0 + cp
        return np.where(np.abs(den) > 1e-9, 0.5 * (cm - cp) / np.where(den == 0, 1, den), 0.0)

    dy = iy + refine(flat[n, (iy - 1) % h, ix], flat[n, (iy + 1) % h, ix])
    dx = ix + refine(flat[n, iy, (ix - 1) % w], flat[n, iy, (ix + 1) % w])
    dy = np.where(dy > h / 2, dy - h, dy)
    dx = np.where(dx > w / 2, dx - w, dx)
    return dy.reshape(lead), dx.reshape(lead), c0.reshape(lead)


def _half(g: np.ndarray) -> np.ndarray:
    """(B, H, W) -> (B, H//2, W//2) by 2x2 averaging."""
    b, h, w = g.shape
    g = g[:, : h - h % 2, : w - w % 2]
    return g.reshape(b, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


def _quadrants(g: np.ndarray) -> np.ndarray:
    """(B, H, W) -> (B, 4, H//2, W//2) corner blocks: TL, TR, BL, BR."""
    h, w = g.shape[-2:]
    bh, bw = h // 2, w // 2
    return np.stack([g[:, y0:y0 + bh, x0:x0 + bw] for y0 in (0, h - bh) for x0 in (0, w - bw)], axis=1)


def camera_steps(full_a: np.ndarray, full_b: np.ndarray, quad_a: np.ndarray, quad_b: np.ndarray,
                 shape: tuple[int, int]) -> np.ndarray:
    """Camera motion between P pairs of frames from their spectra (see `_spectra`).

    Translation from phase correlation of whole frames; scale from the four quadrant shifts,
    fitting v = t + s * (c - centre). Returns (P, 3): tx, ty in pixels and the relative scale
    change s per frame; zeros where the picture carries no texture.
    """
    h, w = shape
    bh, bw = h // 2, w // 2
    dy, dx, peak = phase_shifts(full_a, full_b, shape)
    qy, qx, qpeak = phase_shifts(quad_a, quad_b, (bh, bw))            # (P, 4)
    cx = np.array([bw / 2 - w / 2, w / 2 - bw / 2] * 2)               # block centres from the middle
    cy = np.array([bh / 2 - h / 2] * 2 + [h / 2 - bh / 2] * 2)
    ok = qpeak >= MIN_PEAK
    cnt = ok.sum(axis=1)
    mx = np.where(ok, qx, 0).sum(1) / np.maximum(cnt, 1)
    my = np.where(ok, qy, 0).sum(1) / np.maximum(cnt, 1)
    num = (np.where(ok, (qx - mx[:, None]) * cx + (qy - my[:, None]) * cy, 0)).sum(1)
    den = np.where(ok, cx * cx + cy * cy, 0).sum(1)
    scale = np.where(cnt >= 3, num / np.maximum(den, 1e-9), 0.0)
    good = peak >= MIN_PEAK
    return np.stack([np.where(good, dx, 0.0), np.where(good, dy, 0.0), np.where(good, scale, 0.0)],
                    axis=1).astype(np.float32)


@dataclass
class FrameStats:
    """Per-sampled-frame numbers of one video. Arrays have length T (pair arrays: entry i is
    between frame i-1 and i; entry 0 is 0)."""
    sample_fps: float
    width: int
    height: int
    hist: list[np.ndarray] = field(default_factory=list)       # (512,) each
    lab: list[np.ndarray] = field(default_factory=list)        # (3,)
    brightness: list[float] = field(default_factory=list)      # 0..1
    lapvar: list[float] = field(default_factory=list)
    change: list[float] = field(default_factory=list)          # mean |gray diff| 0..1
    cam: list[tuple[float, float, float]] = field(default_factory=list)  # tx, ty, s
    thumbs: dict[int, np.ndarray] = field(default_factory=dict)  # frame index -> RGB frame

    def __len__(self) -> int:
        return len(self.brightness)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"hist": np.asarray(self.hist, np.float32).reshape(len(self), -1),
                "lab": np.asarray(self.lab, np.float32).reshape(len(self), 3),
                "brightness": np.asarray(self.brightness, np.float32),
                "lapvar": np.asarray(self.lapvar, np.float32),
                "change": np.asarray(self.change, np.float32),
                "cam": np.asarray(self.cam, np.float32).reshape(len(self), 3)}


class FrameAnalyzer:
    """Feed RGB batches (B, H, W, 3) uint8 in stream order; read `stats` at the end.
    Keeps one thumbnail frame per `thumb_every` frames for shot thumbnails."""

    def __init__(self, sample_fps: float, thumb_every: int | None = None):
        self.sample_fps = sample_fps
        self.thumb_every = thumb_every or max(1, int(round(sample_fps / 2)))
        self.stats: FrameStats | None = None
        self._prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # last frame's luma, spectra
        self._window: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, frames: np.ndarray) -> None:
        b, h, w, _ = frames.shape
        if self.stats is None:
            self.stats = FrameStats(self.sample_fps, w, h)
            hc, wc = h // 2, w // 2
            self._window = (_hann(hc, wc), _hann(hc // 2, wc // 2))  # frame, quadrants
        st = self.stats
        first = len(st)
        g = gray(frames)
        # Colour statistics from every 2nd (histogram) or 4th (mean Lab) pixel: thousands of
        # samples either way, at a quarter or a sixteenth of the cost.
        st.hist.extend(histograms(frames[:, ::2, ::2]))
        st.lab.extend(rgb_to_lab(frames[:, ::4, ::4]).reshape(b, -1, 3).mean(axis=1))
        st.brightness.extend((g.reshape(b, -1).mean(axis=1) / 255.0).tolist())
        st.lapvar.extend(laplacian_variance(g).tolist())
        gc = _half(g)                                           # camera motion at half size: 4x cheaper
        full = _spectra(gc, self._window[0])                    # (B, H/2, W/4+1)
        quad = _spectra(_quadrants(gc), self._window[1])        # (B, 4, ...)
        if self._prev is None:                                  # the very first frame
            prev_g, prev_full, prev_quad = g[:1], full[:1], quad[:1]
        else:
            prev_g, prev_full, prev_quad = self._prev
        ga = np.concatenate([prev_g, g[:-1]])
        change = np.abs(g - ga).reshape(b, -1).mean(axis=1) / 255.0
        cam = camera_steps(np.concatenate([prev_full, full[:-1]]), full,
                           np.concatenate([prev_quad, quad[:-1]]), quad, gc.shape[1:])
        cam[:, :2] *= 2.0                                       # back to analysis pixels
        if self._prev is None:
            change[0], cam[0] = 0.0, 0.0
        st.change.extend(change.tolist())
        st.cam.extend(map(tuple, cam.tolist()))
        for i in range(b):
            if (first + i) % self.thumb_every == 0:
                st.thumbs[first + i] = frames[i].copy()
        self._prev = (g[-1:].copy(), full[-1:].copy(), quad[-1:].copy())


@dataclass
class ShotFeatures:
    """What the montage planner needs to know about how a shot looks."""
    lab: tuple[float, float, float]
    brightness: float
    sharpness: float
    motion: float
    camera: str
    pan_rate: float = 0.0     # frame widths per second
    zoom_rate: float = 0.0    # relative scale change per second


def squash(x: float, half: float) -> float:
    """0..inf -> 0..1, half -> 0.5."""
    return float(x / (x + half)) if x > 0 else 0.0


def classify_camera(cam: np.ndarray, sample_fps: float, width: int) -> tuple[str, float, float]:
    """Camera motion of a shot from its per-pair (tx, ty, s), (P, 3). Returns the label and
    the pan and zoom rates per second (medians over pairs, robust to a moving subject)."""
    if len(cam) == 0:
        return "static", 0.0, 0.0
    t = np.median(cam[:, :2], axis=0)
    pan = float(np.hypot(*t)) * sample_fps / max(width, 1)
    zoom = abs(float(np.median(cam[:, 2]))) * sample_fps
    if zoom >= ZOOM_RATE and zoom >= pan:
        return "zoom", pan, zoom
    if pan >= PAN_RATE:
        return "pan", pan, zoom
    return "static", pan, zoom


def shot_features(stats: FrameStats, arrays: dict[str, np.ndarray], a: int, b: int) -> ShotFeatures:
    """Features of sampled frames [a, b) of a video."""
    lab = arrays["lab"][a:b].mean(axis=0)
    bright = float(arrays["brightness"][a:b].mean())
    sharp = squash(float(np.median(arrays["lapvar"][a:b])), SHARPNESS_SCALE)
    pairs = slice(a + 1, b)          # changes inside the shot, not across its first cut
    change = arrays["change"][pairs]
    motion = squash(float(change.mean()) if len(change) else 0.0, MOTION_SCALE)
    camera, pan, zoom = classify_camera(arrays["cam"][pairs], stats.sample_fps, stats.width)
    return ShotFeatures(lab=(float(lab[0]), float(lab[1]), float(lab[2])), brightness=bright,
                        sharpness=sharp, motion=motion, camera=camera, pan_rate=pan, zoom_rate=zoom)


def thumbnail_frame(stats: FrameStats, a: int, b: int) -> np.ndarray | None:
    """The kept frame nearest the middle of [a, b)."""
    if not stats.thumbs:
        return None
    mid = (a + b - 1) / 2
    inside = [i for i in stats.thumbs if a <= i < b] or list(stats.thumbs)
    return stats.thumbs[min(inside, key=lambda i: abs(i - mid))]
