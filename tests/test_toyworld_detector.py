"""The attribute detector against rendered ground truth, clean and degraded.

Thresholds sit below the accuracy measured on 300 clips (`jvideo toyworld detector-accuracy`,
see the README) by about two binomial standard deviations of these small fixed samples.
"""
import numpy as np
import pytest

from jvideo import toyworld as tw
from jvideo.toyworld.accuracy import degrade, identity_ceiling, measure
from jvideo.toyworld.detector import detect, dilate, erode, fill_holes, label


def test_label_and_fill_holes():
    m = np.zeros((9, 9), bool)
    m[1:4, 1:4] = True
    m[6:8, 5:9] = True
    lab = label(m)
    assert len(np.unique(lab[lab > 0])) == 2 and (lab[~m] == 0).all()
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False
    assert fill_holes(ring)[3, 3] and not fill_holes(ring)[0, 0]
    assert erode(dilate(m)).sum() >= m.sum()


def test_reads_a_known_clip():
    rng = np.random.default_rng(0)
    look = tw.Look("star", "purple", "yellow", "split", "big")
    p = tw.sample_params(rng, look=look, background="grass", lighting="sunset", motion="right", camera="close-up")
    d = detect(tw.render_clip(p))
    assert d.found
    assert (d.background, d.lighting, d.primary, d.secondary, d.shape, d.pattern, d.camera, d.motion) == (
        "grass", "sunset", "purple", "yellow", "star", "split", "close-up", "right")
    assert 0 < d.primary_conf <= 1 and d.centroids.shape == (16, 2)
    assert np.all(np.diff(d.centroids[:, 0]) > 0)  # the track moves right every frame
    assert d.masks.shape == (16, 64, 64)
    for t in (0, 15):  # the mask sits on the true object centre, with about its area
        assert d.masks[t, int(p.track.cy[t]), int(p.track.cx[t])]
    assert np.allclose(d.centroids[:, 0], p.track.cx, atol=1.5) and np.allclose(d.centroids[:, 1], p.track.cy, atol=1.5)


def test_empty_scene_finds_nothing():
    p = tw.sample_params(np.random.default_rng(1), background="sand", lighting="day")
    from jvideo.toyworld.render import apply_lighting, render_background
    bg = np.clip(apply_lighting(render_background("sand", 64, 64, 3), "day"), 0, 255).astype(np.uint8)
    d = detect(np.repeat(bg[None], 16, axis=0))
    assert not d.found and d.background == "sand"
    del p


def test_rejects_bad_frames():
    with pytest.raises(ValueError):
        detect(np.zeros((4, 8, 8, 3), np.uint8))


@pytest.mark.parametrize("noise,blur,floors", [
    (0.0, 0.0, {"background": 0.95, "lighting": 0.95, "primary": 0.95, "shape": 0.9, "motion": 0.95,
                "secondary": 0.9, "pattern": 0.85, "camera": 0.75}),
    (6.0, 0.7, {"background": 0.95, "lighting": 0.9, "primary": 0.9, "shape": 0.85, "motion": 0.9,
                "secondary": 0.8, "pattern": 0.75, "camera": 0.7}),
])
def test_accuracy_on_rendered_clips(noise, blur, floors):
    r = measure(n=36, seed=11, noise=noise, blur=blur)
    for attr, floor in floors.items():
        assert r["accuracy"][attr] >= floor, (attr, r["accuracy"][attr], r["errors"].get(attr))


def test_degrade_is_mild_and_seeded():
    clip = tw.render_clip(tw.sample_params(np.random.default_rng(2)))
    a = degrade(clip, np.random.default_rng(0), noise=6, blur=0.7)
    b = degrade(clip, np.random.default_rng(0), noise=6, blur=0.7)
    assert np.array_equal(a, b) and a.dtype == np.uint8
    assert 3 < np.abs(a.astype(int) - clip).mean() < 20


def test_cast_looks_are_read_back_for_identity_scoring():
    r = identity_ceiling(shots_per_character=2, seed=5, noise=6, blur=0.7)
    assert r["overall"] >= 0.85, r
    d = detect(tw.render_clip(tw.sample_params(np.random.default_rng(3), look=tw.character("Mira").look,
                                               camera="close-up")))
    assert d.matches(tw.character("Mira").look) and not d.matches(tw.character("Luna").look)
    rng = np.random.default_rng(4)  # a single reference image is read too
    for name in ("Tomo", "Zara"):
        ref = tw.reference_frame(rng, tw.character(name).look)
        assert detect(ref).matches(tw.character(name).look), name
