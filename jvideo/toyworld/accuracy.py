"""Measure the detector against rendered ground truth, optionally degraded like generated frames
(Gaussian noise, Gaussian blur). `jvideo toyworld detector-accuracy` prints these figures."""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .detector import Detection, detect
from .render import ClipParams, render_clip, sample_params

ATTRIBUTES = ("background", "lighting", "primary", "secondary", "shape", "pattern", "camera", "motion")


def gaussian_blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (T, H, W, 3) over H and W (float32 out)."""
    x = frames.astype(np.float32)
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (r, r)
        p = np.pad(x, pad, mode="edge")
        n = x.shape[axis]
        x = sum(w * np.take(p, np.arange(i, i + n), axis=axis) for i, w in enumerate(k))
    return x


def degrade(frames: np.ndarray, rng: np.random.Generator, noise: float = 0.0, blur: float = 0.0) -> np.ndarray:
    """Blur with sigma `blur` pixels, add Gaussian noise of std `noise` (0-255 scale): uint8."""
    x = gaussian_blur(frames, blur)
    if noise > 0:
        x = x + rng.normal(0.0, noise, size=x.shape)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def truth(params: ClipParams) -> dict:
    look = params.look
    return {"background": params.background, "lighting": params.lighting, "primary": look.primary,
            "secondary": None if look.pattern == "solid" else look.secondary, "shape": look.shape,
            "pattern": look.pattern, "camera": params.camera, "motion": params.motion}


def read(det: Detection) -> dict:
    return {a: getattr(det, a) for a in ATTRIBUTES}


def measure(n: int = 300, seed: int = 0, noise: float = 0.0, blur: float = 0.0, size: int = 64,
            frames: int = 16, progress: bool = False) -> dict:
    """Accuracy per attribute over `n` random clips (all lighting / camera / motion variation).

    Returns {"accuracy": {attr: float}, "n": n, "errors": {attr: {(truth, read): count}}}."""
    rng = np.random.default_rng(seed)
    hits: dict[str, int] = defaultdict(int)
    errors: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    it = range(n)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f"detector noise={noise} blur={blur}", unit="clip")
    for _ in it:
        p = sample_params(rng, frames=frames, size=size)
        clip = degrade(render_clip(p), rng, noise, blur) if (noise or blur) else render_clip(p)
        got, want = read(detect(clip)), truth(p)
        for a in ATTRIBUTES:
            if got[a] == want[a]:
                hits[a] += 1
            else:
                errors[a][(want[a], got[a])] += 1
    return {"n": n, "accuracy": {a: hits[a] / n for a in ATTRIBUTES},
            "errors": {a: dict(e) for a, e in errors.items()}}


def identity_ceiling(shots_per_character: int = 12, seed: int = 0, noise: float = 0.0, blur: float = 0.0,
                     size: int = 64, cameras: tuple[str, ...] = ("medium", "close-up")) -> dict:
    """How often the detector reads a cast member's full look (shape, colours, pattern) right
    on rendered shots with random motions, places and lighting: the best identity-consistency
    score a generator could get with this instrument. {"overall": float, name: float}."""
    from .world import CAST
    rng = np.random.default_rng(seed)
    out, hits = {}, 0
    for c in CAST:
        ok = 0
        for _ in range(shots_per_character):
            p = sample_params(rng, look=c.look, name=c.name, camera=str(rng.choice(cameras)), size=size)
            clip = render_clip(p)
            if noise or blur:
                clip = degrade(clip, rng, noise, blur)
            ok += detect(clip).matches(c.look)
        out[c.name] = ok / shots_per_character
        hits += ok
    out["overall"] = hits / (shots_per_character * len(CAST))
    return out
