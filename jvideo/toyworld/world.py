"""The toy world's vocabulary: colours, shapes, patterns, backgrounds, motions, cameras, lighting,
and the fixed cast of named characters.

Everything here is plain data. The renderer draws from it, the captioner names it, and the
detector reads it back, so the three agree by construction.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Object colours (day-light sRGB). Chosen far apart from each other and from every background
# so that a lit, noisy, blurred object still names to the right colour.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "green": (60, 205, 70),
    "blue": (30, 60, 240),
    "yellow": (245, 225, 40),
    "white": (245, 245, 245),
    "purple": (150, 55, 200),
    "orange": (250, 135, 25),
}
COLOUR_NAMES = tuple(COLOURS)

SHAPES = ("circle", "square", "triangle", "star")
PATTERNS = ("solid", "stripes", "dots", "ring", "split")
SIZES = ("small", "big")
SIZE_FACTOR = {"small": 0.85, "big": 1.0}

# Backgrounds are row-separable at low frequency (colour depends on the row, texture is fine
# grained), which lets the detector estimate the background under a still object.
BACKGROUNDS = ("sky", "grass", "night", "sand", "sea", "room")
MOTIONS = ("left", "right", "up", "down", "still", "jump", "spin", "grow")
CAMERAS = ("wide", "medium", "close-up")
# Object unit radius as a fraction of the frame height, per camera.
CAMERA_SCALE = {"wide": 0.12, "medium": 0.17, "close-up": 0.24}
LIGHTINGS = ("day", "sunset", "night")
# A lighting is a per-channel gain and offset on the whole frame: out = gain * rgb + offset.
# Mild enough to keep every object colour nameable once the detector undoes it.
LIGHTING_TINT: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "day": ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
    "sunset": ((1.0, 0.8, 0.62), (22.0, 8.0, 0.0)),
    "night": ((0.52, 0.58, 0.8), (0.0, 4.0, 22.0)),
}
# The night background is only ever seen at night.
ALLOWED_LIGHTINGS = {bg: (("night",) if bg == "night" else LIGHTINGS) for bg in BACKGROUNDS}


@dataclass(frozen=True)
class Look:
    """Everything that fixes how an object looks: its identity."""

    shape: str
    primary: str
    secondary: str
    pattern: str
    size: str

    def __post_init__(self) -> None:
        for value, allowed, what in ((self.shape, SHAPES, "shape"), (self.primary, COLOUR_NAMES, "colour"),
                                     (self.secondary, COLOUR_NAMES, "colour"),
                                     (self.pattern, PATTERNS, "pattern"), (self.size, SIZES, "size")):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
        if self.primary == self.secondary:
            raise ValueError("primary and secondary colours must differ")

    def rotation_symmetric(self) -> bool:
        """True when spinning would be invisible (a solid or ringed circle)."""
        return self.shape == "circle" and self.pattern in ("solid", "ring")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Character:
    """A named recurring character. Its name says nothing about its look."""

    name: str
    look: Look


# The fixed cast. Looks overlap on purpose (two stars, two purple characters, ...) so that the
# name alone, without a reference, cannot pin a character's full look down from its shape or
# colour, and none of them uses a colour/shape pair held out of training (see captions.py).
CAST: tuple[Character, ...] = (
    Character("Mira", Look("star", "purple", "yellow", "stripes", "big")),
    Character("Tomo", Look("square", "orange", "blue", "dots", "big")),
    Character("Pip", Look("circle", "yellow", "red", "split", "small")),
    Character("Zara", Look("triangle", "green", "white", "ring", "big")),
    Character("Bo", Look("circle", "blue", "white", "stripes", "big")),
    Character("Luna", Look("star", "white", "purple", "dots", "small")),
    Character("Kit", Look("square", "red", "yellow", "ring", "small")),
    Character("Rex", Look("triangle", "purple", "orange", "split", "big")),
)
CAST_BY_NAME = {c.name.lower(): c for c in CAST}

# Extra names for random one-off characters, so a trainer can teach "copy the reference's look"
# on identities the fixed cast never shows.
EXTRA_NAMES = (
    "Ada", "Ben", "Cleo", "Dax", "Eli", "Fay", "Gus", "Hana", "Ivo", "Juno", "Kai", "Lea",
    "Milo", "Nia", "Otto", "Pia", "Quin", "Rosa", "Sami", "Teo", "Uma", "Vic", "Wren", "Yara",
)


def character(name: str) -> Character:
    """The cast member called `name` (case-insensitive)."""
    try:
        return CAST_BY_NAME[name.lower()]
    except KeyError:
        raise KeyError(f"no character named {name!r}; the cast is {', '.join(c.name for c in CAST)}") from None


def random_look(rng: np.random.Generator, shape: str | None = None, primary: str | None = None) -> Look:
    """A uniformly random look (optionally with a fixed shape and/or primary colour)."""
    shape = shape or str(rng.choice(SHAPES))
    primary = primary or str(rng.choice(COLOUR_NAMES))
    secondary = str(rng.choice([c for c in COLOUR_NAMES if c != primary]))
    return Look(shape, primary, secondary, str(rng.choice(PATTERNS)), str(rng.choice(SIZES)))


def random_character(rng: np.random.Generator) -> Character:
    """A one-off character: a name from EXTRA_NAMES and a random look."""
    return Character(str(rng.choice(EXTRA_NAMES)), random_look(rng))
