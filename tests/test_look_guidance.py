"""Classifier guidance towards the stated look (generation/look_guidance.py): the crop around the
planned subject, what a prompt states, the gradient's direction, and the look classifier's
training stage on the `test` preset."""
import json
from dataclasses import replace

import numpy as np
import pytest

import cli


def test_the_crop_is_centred_on_the_subject_and_scales_with_it():
    from kernels import runtime
    from jvideo.generation.look_guidance import crop_latents, crop_weights
    jt = runtime.import_jittor()
    grid, cell, crop = 16, 4, 8
    z = np.zeros((1, 2, grid, grid), np.float32)
    z[0, :, 5, 9] = 1.0                                 # a bump at cell (row 5, column 9): pixel (38, 22)
    wy, wx = crop_weights(np.array([38.0]), np.array([22.0]), np.array([6.0]), crop, grid, cell)
    assert wy.shape == wx.shape == (1, crop, grid)
    assert np.allclose(wy.sum(-1), 1) and np.allclose(wx.sum(-1), 1)   # inside the grid: a partition of unity
    out = crop_latents(z, wy, wx)
    row, col = np.unravel_index(out[0, 0].argmax(), (crop, crop))
    assert abs(row - (crop - 1) / 2) <= 1 and abs(col - (crop - 1) / 2) <= 1
    assert np.allclose(out, crop_latents(jt.array(z), wy, wx).numpy(), atol=1e-6)
    # Twice the radius: the same bump covers half as many crop cells a side.
    wide = crop_latents(z, *crop_weights(np.array([38.0]), np.array([22.0]), np.array([12.0]), crop, grid, cell))
    assert (wide[0, 0] > 0.1).sum() < (out[0, 0] > 0.1).sum()
    # Off the grid: zero weights, not a clamped edge.
    far = crop_weights(np.array([200.0]), np.array([22.0]), np.array([6.0]), crop, grid, cell)[1]
    assert not far.any()


def test_only_a_stated_look_is_a_target():
    from jvideo.generation.look_guidance import stated_targets
    from jvideo.generation.world_model import look_config
    from jvideo.generation.presets import get_preset
    config = look_config(get_preset("tiny-v21"))
    targets = stated_targets(config, ["a red star moves left on the grass", "Mira jumps on the sand", ""],
                             [1, 2, 3], 4, 64, 4)
    assert targets.shape.shape == (12, 4) and targets.colour.shape == (12, 7)
    assert (targets.shape[:4].argmax(1) == config.shapes.index("star")).all() and targets.shape[:4].sum() == 4
    assert (targets.colour[:4].argmax(1) == config.colours.index("red")).all()
    assert not targets.shape[4:].any() and not targets.colour[4:].any()   # a name and nothing state no look
    assert stated_targets(config, ["Mira jumps on the sand"], [2], 4, 64, 4) is None


def test_the_gradient_raises_the_stated_looks_probability():
    from kernels import runtime
    from jittor import nn
    from jvideo.generation.look_guidance import look_gradient, stated_targets
    from jvideo.generation.world_model import build_look_classifier, look_config
    from jvideo.generation.presets import get_preset
    jt = runtime.import_jittor()
    preset = get_preset("tiny-v21")
    classifier = build_look_classifier(preset)
    prompt = "a blue triangle moves right on the sand, close-up"
    targets = stated_targets(look_config(preset), [prompt], [0], 4, 64, 4)
    x = np.random.default_rng(0).standard_normal((1, 6, 4, 16, 16)).astype(np.float32)

    def log_p(x):
        from jvideo.generation.look_guidance import crop_latents
        crops = crop_latents(x[0].transpose(1, 0, 2, 3), targets.wy, targets.wx).astype(np.float32)
        with jt.no_grad():
            shape, colour = classifier(jt.array(crops), jt.array(np.full(4, 0.5, np.float32)))
        return float((nn.log_softmax(shape, 1).numpy() * targets.shape).sum()
                     + (nn.log_softmax(colour, 1).numpy() * targets.colour).sum())

    g = look_gradient(classifier, jt.array(x), 0.5, targets)
    assert g.shape == x.shape and np.abs(g).max() > 0
    assert log_p(x + 1e-2 * g / np.abs(g).max()) > log_p(x) > log_p(x - 1e-2 * g / np.abs(g).max())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("look") / "base"
    assert cli.main(["train", "--preset", "test", "--steps", "2", "--out", str(out)]) == 0
    return out


def test_look_stage_trains_resumes_and_guides_only_stated_looks(checkpoint, tmp_path, monkeypatch):
    """LookPreset.steps: a stage after the DiT writes OUT/look, resumes like the others, and a
    checkpoint with it pulls a shot that states a look (and only such a shot) towards it."""
    from jvideo.generation import presets
    from jvideo.generation.sample import Generator
    base = presets.PRESETS["test"]
    monkeypatch.setitem(presets.PRESETS, "test", replace(base, dit=replace(base.dit, layout=True),
                                                         look=replace(base.look, steps=2, batch=8)))
    out = tmp_path / "guided"
    assert cli.main(["train", "--preset", "test", "--steps", "2", "--vae-from", str(checkpoint), "--out", str(out)]) == 0
    assert (out / "look" / "config.json").is_file() and (out / "loss.png").is_file()
    assert json.loads((out / "state" / "look.json").read_text())["step"] == 2
    assert cli.main(["train", "--preset", "test", "--steps", "3", "--resume", "--out", str(out)]) == 0
    assert json.loads((out / "state" / "look.json").read_text())["step"] == 3
    gen = Generator.load(out)
    assert gen.look is not None and gen.guides_look and gen.preset.look.steps == 3
    stated, named = "a red circle moves left on the grass", "Mira moves left on the grass"
    guided = [gen.generate(p, seed=1, steps=3) for p in (stated, named)]
    gen.look_scale = 0.0
    assert not gen.guides_look
    plain = [gen.generate(p, seed=1, steps=3) for p in (stated, named)]
    assert not np.array_equal(guided[0], plain[0]) and np.array_equal(guided[1], plain[1])
    # A checkpoint without a look/ folder (every one before tiny-v21) samples as before; one whose
    # preset trains a classifier but lacks it is refused in one line, not sampled unguided.
    assert Generator.load(checkpoint).look is None
    import shutil
    from jvideo.errors import JVideoError
    from jvideo.models import LookClassifier, save_pretrained
    save_pretrained(LookClassifier(replace(gen.look.config, in_channels=4)), out / "look")
    with pytest.raises(JVideoError, match="reads 4 latent channels"):   # would fail mid-sampling
        Generator.load(out)
    shutil.rmtree(out / "look")
    assert cli.main(["generate", stated, "--checkpoint", str(out), "--out", str(tmp_path / "s.mp4")]) == 2
