"""Toy world renderer, captions and dataset API."""
import json

from dataclasses import replace

import numpy as np
import pytest

from jvideo import toyworld as tw
from jvideo.toyworld.captions import LIGHT_PHRASES, MOTION_PHRASES, PLACE_PHRASES, WALK_PHRASES


def test_render_is_deterministic_and_shaped():
    p = tw.sample_params(np.random.default_rng(3))
    a, b = tw.render_clip(p), tw.render_clip(p)
    assert a.shape == (16, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    q = tw.sample_params(np.random.default_rng(3))
    assert q == p  # same seed, same ground truth
    assert np.array_equal(tw.render_clip(tw.ClipParams.from_dict(json.loads(json.dumps(p.to_dict())))), a)


def test_sizes_and_frames_are_configurable():
    p = tw.sample_params(np.random.default_rng(0), frames=5, size=(48, 80), motion="right")
    clip = tw.render_clip(p)
    assert clip.shape == (5, 48, 80, 3)
    assert len(p.track.cx) == 5 and p.track.cx[-1] > p.track.cx[0]


def test_parameter_coverage_and_track_in_frame():
    rng = np.random.default_rng(1)
    seen = {k: set() for k in ("shape", "primary", "pattern", "size", "background", "motion", "camera", "lighting")}
    for _ in range(400):
        p = tw.sample_params(rng)
        for k in ("shape", "primary", "pattern", "size"):
            seen[k].add(getattr(p.look, k))
        for k in ("background", "motion", "camera", "lighting"):
            seen[k].add(getattr(p, k))
        t = p.track
        r = np.asarray(t.radius)
        assert (np.asarray(t.cx) >= r - 1e-6).all() and (np.asarray(t.cx) <= p.width - r + 1e-6).all()
        assert (np.asarray(t.cy) >= r - 1e-6).all() and (np.asarray(t.cy) <= p.height - r + 1e-6).all()
        if p.motion == "spin":
            assert not p.look.rotation_symmetric()
        if p.background == "night":
            assert p.lighting == "night"
    assert seen["shape"] == set(tw.SHAPES) and seen["primary"] == set(tw.COLOUR_NAMES)
    assert seen["pattern"] == set(tw.PATTERNS) and seen["size"] == set(tw.SIZES)
    assert seen["background"] == set(tw.BACKGROUNDS) and seen["motion"] == set(tw.MOTIONS)
    assert seen["camera"] == set(tw.CAMERAS) and seen["lighting"] == set(tw.LIGHTINGS)


def test_motion_tracks_move_the_right_way():
    rng = np.random.default_rng(2)
    look = tw.Look("square", "red", "blue", "stripes", "big")
    t = {m: tw.sample_params(rng, look=look, motion=m).track for m in tw.MOTIONS}
    assert t["right"].cx[-1] - t["right"].cx[0] > 20 and t["left"].cx[-1] - t["left"].cx[0] < -20
    assert t["down"].cy[-1] - t["down"].cy[0] > 20 and t["up"].cy[-1] - t["up"].cy[0] < -20
    assert min(t["jump"].cy) < t["jump"].cy[0] - 10 and abs(t["jump"].cy[-1] - t["jump"].cy[0]) < 1
    assert abs(t["spin"].angle[-1] - t["spin"].angle[0]) > 5
    assert t["grow"].radius[-1] > 1.8 * t["grow"].radius[0]
    assert len(set(t["still"].cx)) == 1 and len(set(t["still"].radius)) == 1


def test_lighting_tints_but_keeps_the_object_colour():
    rng = np.random.default_rng(4)
    look = tw.Look("square", "red", "blue", "solid", "big")
    for lighting in tw.LIGHTINGS:
        p = tw.sample_params(rng, look=look, motion="still", camera="close-up", background="sky", lighting=lighting)
        f = tw.render_clip(p, frame_ids=[0])[0].astype(int)
        c = f[int(p.track.cy[0]), int(p.track.cx[0])]
        assert c[0] > c[1] + 60 and c[0] > c[2] + 40, (lighting, c)  # still clearly red


def test_bad_values_are_rejected():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        tw.Look("hexagon", "red", "blue", "solid", "big")
    with pytest.raises(ValueError):
        tw.Look("circle", "red", "red", "solid", "big")
    with pytest.raises(ValueError):
        tw.sample_params(rng, look=tw.Look("circle", "red", "blue", "solid", "big"), motion="spin")
    with pytest.raises(ValueError):
        tw.sample_params(rng, background="night", lighting="day")
    with pytest.raises(ValueError):
        tw.sample_params(rng, frames=1)


def _anonymous_caption_ok(p, text, split):
    def any_phrase(table):
        train, held = table
        return any(ph in text for ph in train + (held if split == "heldout" else []))
    assert p.look.primary in text and p.look.shape in text, text
    assert any_phrase(MOTION_PHRASES[p.motion]), text
    assert any_phrase(PLACE_PHRASES[p.background]), text


def test_captions_mention_the_attributes():
    rng = np.random.default_rng(5)
    for split in tw.SPLITS:
        for _ in range(300):
            p = tw.sample_clip_params(rng, split, p_character=0.3)
            text = tw.caption(p, rng, split)
            if p.name is None:
                _anonymous_caption_ok(p, text, split)
            else:
                assert p.name in text
                # the name stands for the look: the caption says nothing about it
                assert not any(c in text.split() for c in tw.COLOUR_NAMES), text
                assert not any(s in text.split() for s in tw.SHAPES), text
                walk = WALK_PHRASES.get(p.motion)
                assert (walk and walk in text) or any(ph in text for ph in sum(MOTION_PHRASES[p.motion], [])), text
            if "{light}" in text:
                raise AssertionError(text)
            words = set(text.lower().replace(",", " ").replace(":", " ").split())
            assert words <= tw.vocabulary(), words - tw.vocabulary()


def test_heldout_prompts_are_disjoint_from_training_and_combos_are_held_out():
    rng = np.random.default_rng(6)
    train, held = set(), set()
    held_combo = 0
    for _ in range(3000):
        p = tw.sample_clip_params(rng, "train", p_character=0.3)
        assert not tw.is_heldout_combo(p)
        train.add(tw.caption(p, rng, "train"))
    for _ in range(1500):
        p = tw.sample_clip_params(rng, "heldout", p_character=0.3)
        held_combo += tw.is_heldout_combo(p)
        held.add(tw.caption(p, rng, "heldout"))
    assert not train & held
    assert 0.3 < held_combo / 1500 < 0.8  # about half forced onto held-out combinations
    # held-out sentences start like no training sentence does
    assert not {t.split()[0] for t in held if t.split()[0] in ("there", "we", "look:")} & {t.split()[0] for t in train}


def test_lighting_phrases_only_for_matching_lighting():
    rng = np.random.default_rng(7)
    for _ in range(200):
        p = tw.sample_clip_params(rng, "train")
        text = tw.caption(p, rng, "train")
        for lighting, (phrases, _) in LIGHT_PHRASES.items():
            if lighting != p.lighting:
                assert not any(ph in text for ph in phrases if ph not in ("at night",) or p.background != "night"), text


def test_sample_batch_with_references():
    rng = np.random.default_rng(8)
    b = tw.sample_batch(rng, 4, split="train", p_character=1.0, references=True)
    assert b.frames.shape == (4, 16, 64, 64, 3) and b.references.shape == (4, 64, 64, 3)
    assert all(p.name in {c.name for c in tw.CAST} for p in b.params)
    assert len(b.captions) == 4 and all(p.name in c for p, c in zip(b.params, b.captions))
    assert not any(np.array_equal(b.references[i], b.frames[i, j]) for i in range(4) for j in range(16))


def test_sample_batch_with_a_motion_subset():
    """motions=...: every clip moves one of those ways, and its caption says so; spin refused."""
    rng = np.random.default_rng(3)
    b = tw.sample_batch(rng, 12, split="train", motions=("left", "down"))
    assert {p.motion for p in b.params} == {"left", "down"}
    for p, text in zip(b.params, b.captions):
        assert any(phrase in text for phrase in MOTION_PHRASES[p.motion][0] + list(WALK_PHRASES.values()))
    with pytest.raises(ValueError, match="spin"):
        tw.sample_batch(rng, 2, motions=("spin",))


def test_cast_is_fixed_and_named():
    names = [c.name for c in tw.CAST]
    assert len(names) == 8 and len(set(names)) == 8
    assert len({c.look for c in tw.CAST}) == 8
    assert tw.character("mira").name == "Mira"
    assert not any(c.name is None for c in tw.CAST)
    with pytest.raises(KeyError):
        tw.character("nobody")
    for c in tw.CAST:  # the cast never uses a colour/shape pair held out of training
        assert (c.look.primary, c.look.shape) not in tw.HELDOUT_COLOUR_SHAPE


def test_object_crop_centres_and_enlarges_the_object():
    """A reference cut around its object: the detector finds it over a larger area, near the
    frame's centre; an image without an object comes back unchanged."""
    rng = np.random.default_rng(3)
    for character in tw.CAST[:4]:
        ref = tw.reference_frame(rng, character.look, 64)
        crop = tw.object_crop(ref)
        assert crop.shape == ref.shape and crop.dtype == np.uint8
        before, after = tw.detect(ref[None]), tw.detect(crop[None])
        assert after.areas[0] >= 1.5 * before.areas[0]
        assert np.abs(after.centroids[0] - 32).max() <= 8
    empty = np.full((64, 64, 3), 90, np.uint8)
    assert np.array_equal(tw.object_crop(empty), empty)


def test_read_caption_gives_back_what_the_caption_states():
    """read_caption inverts caption on both splits: the motion always, the camera and the size
    exactly when a phrase states them, nothing else."""
    from jvideo.toyworld.captions import CAMERA_PHRASES, read_caption
    rng = np.random.default_rng(8)
    stated = {"camera": 0, "size": 0}
    for split in tw.SPLITS:
        for _ in range(400):
            p = tw.sample_clip_params(rng, split, p_character=0.3)
            text = tw.caption(p, rng, split)
            said = read_caption(text)
            assert said["motion"] == p.motion, text
            camera_phrases = sum(CAMERA_PHRASES[p.camera], [])
            if any(ph in text for ph in camera_phrases):
                stated["camera"] += 1
                assert said["camera"] == p.camera, text
            else:
                assert "camera" not in said, text
            if p.look.size in text.split():
                stated["size"] += 1
                assert said["size"] == p.look.size, text
            else:
                assert "size" not in said, text
    assert min(stated.values()) > 50
    assert read_caption("Mira on the grass") == {} and read_caption("") == {}
    assert read_caption("a red square grows larger, tight close-up") == {"motion": "grow", "camera": "close-up"}


def test_read_look_gives_back_the_stated_look():
    """read_look inverts caption's object phrase on both splits: an anonymous object's shape and
    primary colour (never a pattern's colour), nothing for a named character."""
    from jvideo.toyworld.captions import read_look
    rng = np.random.default_rng(9)
    named = 0
    for split in tw.SPLITS:
        for _ in range(400):
            p = tw.sample_clip_params(rng, split, p_character=0.3)
            text = tw.caption(p, rng, split)
            named += p.name is not None
            assert read_look(text) == ({} if p.name else {"shape": p.look.shape, "colour": p.look.primary}), text
    assert 100 < named < 700
    assert read_look("a star with red dots") == {"shape": "star"}
    assert read_look("something blue under the stars") == {"colour": "blue"} and read_look("") == {}


def test_shape_cover_is_the_rendered_silhouette():
    """shape_cover is where the renderer draws the object: at the renderer's sampling, the pixels
    a rendered object changes from the same frame without it are those the cover marks, for each
    shape, turned (spin; a plain circle cannot)."""
    from jvideo.toyworld.render import SUPERSAMPLE, render_clip, shape_cover
    for shape in tw.SHAPES:
        p = tw.sample_params(np.random.default_rng(5), look=tw.Look(shape, "white", "red", "solid", "big"),
                             motion="still" if shape == "circle" else "spin")
        cover = shape_cover(shape, p.track, p.height, p.width, [0, 7], ss=SUPERSAMPLE)
        frames = render_clip(p, [0, 7]).astype(np.float32)
        plate = render_clip(replace(p, track=replace(p.track, cx=[-999.0] * 16)), [0, 7]).astype(np.float32)
        changed = np.abs(frames - plate).max(-1) > 3
        assert cover.sum() > 100 and (changed == (cover > 0.05)).mean() > 0.99, shape


def test_track_cover_is_the_object_mask():
    p = tw.sample_params(np.random.default_rng(4), motion="left")
    from jvideo.toyworld.render import object_mask, track_cover
    assert np.array_equal(object_mask(p, 4), track_cover(p.track, p.height, p.width, 4))
    assert np.array_equal(object_mask(p, 1, [0, 5]), track_cover(p.track, p.height, p.width, 1, [0, 5]))


def test_with_camera_states_a_size_only_where_none_is_said():
    from jvideo.toyworld.captions import read_caption, with_camera
    framed = with_camera("Mira jumps on the sand", "medium")
    assert read_caption(framed)["camera"] == "medium" and framed.startswith("Mira jumps on the sand")
    assert with_camera("wide shot of Mira that jumps on the sand", "close-up") == "wide shot of Mira that jumps on the sand"
