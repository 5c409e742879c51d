"""Captions in several phrasings, with a train / held-out split for evaluation.

A caption is a template filled with phrases for the object, its motion, the place, and maybe the
camera and the lighting. The held-out split differs from training in two ways:
- phrasing: held-out templates (sentence shapes never used in training) and held-out synonyms;
- combinations: some colour+shape pairs (anonymous objects) and motion+background pairs never
  occur in training clips.
Every held-out caption comes from a held-out template, and no train template can produce the
same string (each held-out template starts with words no train template starts with), so the two
sets of prompts are disjoint; tests check it on thousands of samples.
"""
from __future__ import annotations

import re

import numpy as np

from .render import ClipParams
from .world import CAST, COLOUR_NAMES, EXTRA_NAMES, PATTERNS, SHAPES, SIZES, Look

SPLITS = ("train", "heldout")

HELDOUT_COLOUR_SHAPE = frozenset({("red", "triangle"), ("orange", "circle"), ("green", "star"),
                                  ("yellow", "square"), ("blue", "triangle")})
HELDOUT_MOTION_BACKGROUND = frozenset({("jump", "sea"), ("spin", "room"), ("up", "sand"),
                                       ("left", "night"), ("grow", "grass")})

# Phrases: (train phrases, extra held-out-only phrases).
MOTION_PHRASES = {
    "left": (["moves left", "moves to the left", "slides to the left", "goes left"], ["drifts leftward"]),
    "right": (["moves right", "moves to the right", "slides to the right", "goes right"], ["drifts rightward"]),
    "up": (["moves up", "rises", "goes up", "floats up"], ["climbs upward"]),
    "down": (["moves down", "sinks", "falls", "goes down"], ["drops downward"]),
    "still": (["stays still", "rests", "does not move", "waits"], ["stands motionless"]),
    "jump": (["jumps", "hops", "jumps up and lands", "leaps"], ["bounces"]),
    "spin": (["spins", "turns around", "rotates", "spins in place"], ["twirls"]),
    "grow": (["grows", "gets bigger", "grows larger", "expands"], ["swells"]),
}
WALK_PHRASES = {"left": "walks to the left", "right": "walks to the right"}  # characters only
PLACE_PHRASES = {
    "sky": (["in the sky", "across the sky", "in a clear sky"], ["high in the air"]),
    "grass": (["on the grass", "in a grassy field", "on the lawn"], ["over the meadow"]),
    "night": (["in the night sky", "across a night sky", "under the stars"], ["in the starry dark"]),
    "sand": (["on the sand", "on a sandy beach", "in the desert"], ["on the dunes"]),
    "sea": (["by the sea", "over the sea", "above the waves"], ["over the ocean"]),
    "room": (["in a room", "indoors", "in the living room"], ["inside a house"]),
}
CAMERA_PHRASES = {
    "wide": (["wide shot", "distant view"], ["long shot"]),
    "medium": (["medium shot", "mid-distance view"], ["mid shot"]),
    "close-up": (["close-up", "close view"], ["tight close-up"]),
}
LIGHT_PHRASES = {
    "day": (["in daylight", "during the day"], ["by day"]),
    "sunset": (["at sunset", "in the evening glow"], ["at dusk"]),
    "night": (["at night", "in the dark of night"], ["after dark"]),
}
PATTERN_PHRASES = {"stripes": "with {c} stripes", "dots": "with {c} dots", "ring": "with a {c} ring",
                   "split": "with a {c} bottom"}

# Templates: slots obj, verb, place, camera, light. Held-out ones start with words ("there is",
# "we see", a lighting phrase + comma, "look:") that no train template starts with.
TRAIN_TEMPLATES = (
    "{obj} {verb} {place}",
    "{place}, {obj} {verb}",
    "{camera} of {obj} that {verb} {place}",
    "{obj} {verb} {place} {light}",
    "{camera}: {obj} {verb} {place} {light}",
)
HELDOUT_TEMPLATES = (
    "there is {obj} {place}, and it {verb}",
    "we see {obj} {place} as it {verb}",
    "{light}, {obj} {verb} {place}",
    "look: {obj} {verb} {place}, {camera}",
)


def is_heldout_combo(params: ClipParams) -> bool:
    """True when the clip shows a combination that training never shows."""
    anon_pair = params.name is None and (params.look.primary, params.look.shape) in HELDOUT_COLOUR_SHAPE
    return anon_pair or (params.motion, params.background) in HELDOUT_MOTION_BACKGROUND


def _pick(rng: np.random.Generator, phrases: tuple[list[str], list[str]], split: str) -> str:
    options = phrases[0] + (phrases[1] if split == "heldout" else [])
    return str(options[rng.integers(len(options))])


def object_phrase(look: Look, name: str | None, rng: np.random.Generator) -> str:
    """A name for a character (its look is left unsaid), else an attribute description."""
    if name is not None:
        return name
    words = ["a"]
    if rng.random() < 0.5:
        words.append(look.size)
    if look.pattern == "solid" and rng.random() < 0.5:
        words.append("plain")
    words += [look.primary, look.shape]
    if look.pattern != "solid" and rng.random() < 0.6:
        words.append(PATTERN_PHRASES[look.pattern].format(c=look.secondary))
    if words[1][0] in "aeiou":
        words[0] = "an"
    return " ".join(words)


def caption(params: ClipParams, rng: np.random.Generator, split: str = "train") -> str:
    """One caption for `params`, phrased from the given split's templates and synonyms."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected train or heldout")
    templates = TRAIN_TEMPLATES if split == "train" else HELDOUT_TEMPLATES
    template = str(templates[rng.integers(len(templates))])
    verb = _pick(rng, MOTION_PHRASES[params.motion], split)
    if params.name is not None and params.motion in WALK_PHRASES and rng.random() < 0.5:
        verb = WALK_PHRASES[params.motion]
    text = template.format(obj=object_phrase(params.look, params.name, rng), verb=verb,
                           place=_pick(rng, PLACE_PHRASES[params.background], split),
                           camera=_pick(rng, CAMERA_PHRASES[params.camera], split),
                           light=_pick(rng, LIGHT_PHRASES[params.lighting], split))
    return text


def read_look(text: str) -> dict[str, str]:
    """The subject's look a caption states, read back: {"shape": ..., "colour": ...} (the
    primary colour), each key only where stated. A named character's caption states neither.

    The primary colour is the colour word right before the shape word ("a small orange star with
    a white ring"); with no shape word, the first colour word outside a "with ..." phrase.
    """
    words = re.findall(r"[a-z\-]+", text.lower())
    out: dict[str, str] = {}
    at = next((i for i, w in enumerate(words) if w in SHAPES), None)
    if at is not None:
        out["shape"] = words[at]
        if at > 0 and words[at - 1] in COLOUR_NAMES:
            out["colour"] = words[at - 1]
            return out
    after_with = False
    for w in words:
        if w == "with":
            after_with = True
        elif w in COLOUR_NAMES and not after_with:
            out["colour"] = w
            break
        elif w not in ("a", "an"):
            after_with = False
    return out


def with_camera(text: str, camera: str) -> str:
    """`text` with a shot size stated (the held-out phrase of `camera`) where it states none."""
    return text if "camera" in read_caption(text) else f"{text}, {CAMERA_PHRASES[camera][1][0]}"


def tags(params: ClipParams) -> list[str]:
    """Search tags for a clip: every ground-truth attribute as a word."""
    look = params.look
    out = [params.name.lower()] if params.name else []
    out += [look.shape, look.primary, f"{look.secondary} {look.pattern}" if look.pattern != "solid" else "solid",
            look.size, params.motion, params.background, params.camera, params.lighting]
    return list(dict.fromkeys(out))  # night background + night lighting: one "night"


def vocabulary() -> set[str]:
    """Every word any caption of either split can contain (lower case)."""
    texts = [t for table in (MOTION_PHRASES, PLACE_PHRASES, CAMERA_PHRASES, LIGHT_PHRASES)
             for train, held in table.values() for t in train + held]
    texts += list(WALK_PHRASES.values()) + list(PATTERN_PHRASES.values()) + list(TRAIN_TEMPLATES)
    texts += list(HELDOUT_TEMPLATES) + [c.name for c in CAST] + list(EXTRA_NAMES)
    texts += list(COLOUR_NAMES) + list(SHAPES) + list(SIZES) + list(PATTERNS) + ["a", "an", "plain"]
    words = set()
    for t in texts:
        words.update(w for w in re.findall(r"[a-z\-]+", re.sub(r"\{[a-z]+\}", " ", t.lower())) if w)
    return words


def read_caption(text: str) -> dict[str, str]:
    """What a caption says of motion, camera and size, read back from the phrase tables of either
    split: {"motion": ..., "camera": ..., "size": ...}, each key only where the text states it.

    The longest matching phrase wins ("jumps up and lands" is a jump, "grows larger" a grow); a
    word counts only whole ("rests" is not in "arrests").
    """
    text = " ".join(re.findall(r"[a-z\-]+", text.lower()))
    out: dict[str, str] = {}
    motions = {m: train + held + ([WALK_PHRASES[m]] if m in WALK_PHRASES else [])
               for m, (train, held) in MOTION_PHRASES.items()}
    cameras = {c: train + held for c, (train, held) in CAMERA_PHRASES.items()}
    sizes = {s: [s] for s in SIZES}
    for key, table in (("motion", motions), ("camera", cameras), ("size", sizes)):
        found = [(len(phrase), value) for value, phrases in table.items() for phrase in phrases
                 if re.search(rf"(?<![a-z\-]){re.escape(phrase)}(?![a-z\-])", text)]
        if found:
            out[key] = max(found)[1]
    return out
