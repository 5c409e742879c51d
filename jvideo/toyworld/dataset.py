"""Training and evaluation batches: clips, captions, ground truth, identity references.

`sample_batch(rng, n, split=...)` is what a trainer calls. With `references=True` each clip comes
with a reference image of the same object (same look) in another pose, place and lighting: the
identity condition. The clip's caption names a cast character without stating its look, so only
the reference can fix it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .captions import (HELDOUT_COLOUR_SHAPE, HELDOUT_MOTION_BACKGROUND, SPLITS, caption,
                       is_heldout_combo)
from .render import ClipParams, render_clip, sample_params
from .world import ALLOWED_LIGHTINGS, BACKGROUNDS, CAST, Character, Look, random_character, random_look


@dataclass
class Batch:
    """frames (N, T, H, W, 3) uint8; references (N, H, W, 3) uint8 or None."""

    frames: np.ndarray
    captions: list[str]
    params: list[ClipParams]
    references: np.ndarray | None = None


def _subject(rng: np.random.Generator, p_character: float, p_random_character: float,
             cast: tuple[Character, ...]) -> tuple[Look | None, str | None]:
    r = rng.random()
    if r < p_character:
        c = cast[rng.integers(len(cast))]
        return c.look, c.name
    if r < p_character + p_random_character:
        c = random_character(rng)
        return c.look, c.name
    return None, None


def sample_clip_params(rng: np.random.Generator, split: str = "train", *, frames: int = 16,
                       size: int | tuple[int, int] = 64, p_character: float = 0.3,
                       p_random_character: float = 0.0, cast: tuple[Character, ...] = CAST,
                       **fixed) -> ClipParams:
    """Parameters of one clip of `split`: train clips avoid every held-out combination; half the
    held-out clips are forced onto one (the others differ from training by phrasing only)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected train or heldout")
    look, name = _subject(rng, p_character, p_random_character, cast)
    if split == "heldout" and rng.random() < 0.5 and not fixed:
        if name is None and rng.random() < 0.5:
            primary, shape = sorted(HELDOUT_COLOUR_SHAPE)[rng.integers(len(HELDOUT_COLOUR_SHAPE))]
            look = random_look(rng, shape=shape, primary=primary)
        else:
            motion, background = sorted(HELDOUT_MOTION_BACKGROUND)[rng.integers(len(HELDOUT_MOTION_BACKGROUND))]
            if not (motion == "spin" and look is not None and look.rotation_symmetric()):
                fixed = {"motion": motion, "background": background}
            while motion == "spin" and name is None and (look is None or look.rotation_symmetric()):
                look = random_look(rng)
    for _ in range(1000):
        params = sample_params(rng, look=look, name=name, frames=frames, size=size, **fixed)
        if split == "heldout" or not is_heldout_combo(params):
            return params
    raise ValueError(f"cannot draw a training clip with {fixed}: every choice is held out")


def reference_frame(rng: np.random.Generator, look: Look, size: int | tuple[int, int] = 64,
                    avoid: ClipParams | None = None) -> np.ndarray:
    """One frame (H, W, 3) uint8 of an object with `look` in a random pose, place and lighting
    (a different background and lighting from `avoid` where the world allows)."""
    backgrounds = [b for b in BACKGROUNDS if avoid is None or b != avoid.background]
    background = str(rng.choice(backgrounds))
    lightings = [l for l in ALLOWED_LIGHTINGS[background] if avoid is None or l != avoid.lighting]
    lighting = str(rng.choice(lightings or ALLOWED_LIGHTINGS[background]))
    motion = str(rng.choice(["left", "right", "up", "down", "still", "jump"]))
    params = sample_params(rng, look=look, background=background, lighting=lighting, motion=motion,
                           camera=str(rng.choice(["medium", "close-up"])), frames=8, size=size)
    params.track.angle = [a + float(rng.uniform(-0.6, 0.6)) for a in params.track.angle]
    return render_clip(params, frame_ids=[int(rng.integers(params.frames))])[0]


def sample_batch(rng: np.random.Generator, n: int, split: str = "train", *, frames: int = 16,
                 size: int | tuple[int, int] = 64, p_character: float = 0.3, p_random_character: float = 0.0,
                 references: bool = False, motions: tuple[str, ...] = ()) -> Batch:
    """`n` clips of `split` with captions, ground truth and (optionally) identity references;
    with `motions` every clip's motion is drawn from those alone (spin never, see below)."""
    if "spin" in motions:   # a drawn look may be a circle, which cannot visibly spin
        raise ValueError("motions cannot include spin: the look is drawn after the motion")

    def fixed() -> dict:
        return {"motion": str(rng.choice(motions))} if motions else {}

    params = [sample_clip_params(rng, split, frames=frames, size=size, p_character=p_character,
                                 p_random_character=p_random_character, **fixed()) for _ in range(n)]
    clips = np.stack([render_clip(p) for p in params])
    texts = [caption(p, rng, split) for p in params]
    refs = np.stack([reference_frame(rng, p.look, size, avoid=p) for p in params]) if references else None
    return Batch(clips, texts, params, refs)
