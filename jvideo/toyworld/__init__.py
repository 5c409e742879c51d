"""The toy world: procedural clips with captions and full ground truth, and a detector that reads
clips (rendered or generated) back. Pure numpy + Pillow; never imports Jittor.

    from jvideo.toyworld import sample_batch, render_clip, sample_params, detect
    batch = sample_batch(np.random.default_rng(0), 8, split="train", references=True)
"""
from .captions import (HELDOUT_COLOUR_SHAPE, HELDOUT_MOTION_BACKGROUND, HELDOUT_TEMPLATES, SPLITS,
                       TRAIN_TEMPLATES, caption, is_heldout_combo, tags, vocabulary)
from .dataset import Batch, reference_frame, sample_batch, sample_clip_params
from .detector import Detection, detect, object_crop, object_mask, read_lighting
from .render import ClipParams, Track, make_clip, render_clip, sample_params
from .world import (BACKGROUNDS, CAMERAS, CAST, COLOUR_NAMES, COLOURS, LIGHTINGS, MOTIONS, PATTERNS,
                    SHAPES, SIZES, Character, Look, character, random_character, random_look)

__all__ = [
    "BACKGROUNDS", "CAMERAS", "CAST", "COLOUR_NAMES", "COLOURS", "LIGHTINGS", "MOTIONS", "PATTERNS",
    "SHAPES", "SIZES", "SPLITS", "HELDOUT_COLOUR_SHAPE", "HELDOUT_MOTION_BACKGROUND",
    "HELDOUT_TEMPLATES", "TRAIN_TEMPLATES", "Batch", "Character", "ClipParams", "Look", "Track",
    "Detection", "caption", "character", "detect", "make_clip", "object_crop", "object_mask", "read_lighting", "is_heldout_combo", "random_character", "random_look", "reference_frame",
    "render_clip", "sample_batch", "sample_clip_params", "sample_params", "tags", "vocabulary",
]
