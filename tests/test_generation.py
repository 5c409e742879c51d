"""Generation pipeline end to end on the `test` preset: train, resume, sample, bad input.

The test preset is tiny (4 frames of 32x32, a 1-layer DiT) so that the whole pipeline runs in
seconds once Jittor has compiled it; the real figures come from the tiny preset (README).
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "ckpt"
    assert cli.main(["train", "--preset", "test", "--steps", "2", "--out", str(out)]) == 0
    return out


def test_training_writes_an_atomic_resumable_checkpoint(checkpoint):
    for part in ("preset.json", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
                 "dit/config.json", "dit/diffusion_pytorch_model.safetensors",
                 "state/vae.json", "state/dit.json", "state/dit.moments.safetensors", "loss.png"):
        assert (checkpoint / part).exists(), part
    state = json.loads((checkpoint / "state" / "dit.json").read_text())
    assert state["step"] == 2 and len(state["losses"]) == 2 and all(np.isfinite(state["losses"]))
    assert not list(checkpoint.rglob(".*.tmp*")) and not [p for p in checkpoint.rglob(".*") if p.is_file()]


def test_resume_continues_from_the_saved_step(checkpoint, tmp_path):
    import shutil
    copy = tmp_path / "ckpt"
    shutil.copytree(checkpoint, copy)
    before = json.loads((copy / "state" / "dit.json").read_text())["losses"]
    assert cli.main(["train", "--preset", "test", "--steps", "3", "--resume", "--out", str(copy)]) == 0
    after = json.loads((copy / "state" / "dit.json").read_text())
    assert after["step"] == 3 and after["losses"][:2] == before


def test_vae_from_reuses_a_finished_vae_and_trains_only_the_dit(checkpoint, tmp_path, capsys):
    from safetensors.numpy import load_file
    from jvideo.generation.presets import SHIPPED_CHECKPOINT
    out = tmp_path / "dit-only"
    assert cli.main(["train", "--preset", "test", "--steps", "2", "--vae-from", str(checkpoint), "--out", str(out)]) == 0
    assert f"vae: reused from {checkpoint}" in capsys.readouterr().out
    weights = "vae/diffusion_pytorch_model.safetensors"
    ours, theirs = load_file(str(out / weights)), load_file(str(checkpoint / weights))
    assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    vae_state = json.loads((out / "state" / "vae.json").read_text())
    assert vae_state["done"] and vae_state["losses"] == [] and vae_state["extra"]["reused_from"] == str(checkpoint)
    assert json.loads((out / "state" / "dit.json").read_text())["step"] == 2 and (out / "loss.png").exists()
    # --resume continues such a run like any other (the VAE stays the reused one).
    assert cli.main(["train", "--preset", "test", "--steps", "3", "--resume", "--out", str(out)]) == 0
    assert np.array_equal(load_file(str(out / weights))["quant_conv.weight"], theirs["quant_conv.weight"])
    capsys.readouterr()
    # A VAE built otherwise (the shipped 64x64 one under the 32x32 test preset) is refused.
    assert cli.main(["train", "--preset", "test", "--vae-from", str(SHIPPED_CHECKPOINT), "--out",
                     str(tmp_path / "other")]) == 2
    assert "cannot be reused" in capsys.readouterr().err
    assert cli.main(["train", "--preset", "test", "--vae-from", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not a jvideo training checkpoint" in capsys.readouterr().err


def test_training_refuses_to_overwrite_a_run(checkpoint, capsys):
    assert cli.main(["train", "--preset", "test", "--steps", "2", "--out", str(checkpoint)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_same_seed_same_shot_and_reference_changes_it(checkpoint, tmp_path):
    from jvideo.generation.sample import Generator
    gen = Generator.load(checkpoint)
    a = gen.generate("a red circle moves right on the grass", seed=3, steps=2)
    b = gen.generate("a red circle moves right on the grass", seed=3, steps=2)
    c = gen.generate("a red circle moves right on the grass", seed=4, steps=2)
    assert a.shape == (4, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    ref = np.zeros((32, 32, 3), np.uint8)
    ref[8:24, 8:24] = (220, 35, 35)
    d = gen.generate("a red circle moves right on the grass", reference=ref, seed=3, steps=2)
    assert not np.array_equal(a, d)


def test_generate_command_writes_mp4_and_strip(checkpoint, tmp_path, capsys):
    ref = tmp_path / "ref.png"
    Image.fromarray(np.full((40, 50, 3), 200, np.uint8)).save(ref)
    out = tmp_path / "shot.mp4"
    rc = cli.main(["generate", "Mira jumps on the sand", "--identity", str(ref), "--seed", "1", "--steps", "2",
                   "--no-composite", "--checkpoint", str(checkpoint), "--out", str(out)])
    assert rc == 0
    assert "--hold needs a layout checkpoint" in capsys.readouterr().err   # the test preset has no layout
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=nb_read_frames,width", "-of", "json", str(out)], capture_output=True, text=True)
    stream = json.loads(probe.stdout)["streams"][0]
    assert int(stream["nb_read_frames"]) == 4 and int(stream["width"]) == 128
    assert out.with_suffix(".png").exists()


@pytest.mark.parametrize("args, message", [
    (["", "--steps", "2"], "prompt is empty"),
    (["x" * 1001, "--steps", "2"], "at most 1000"),
    (["a red circle", "--frames", "99"], "--frames must be"),
    (["a red circle", "--identity", "NOFILE.png"], "reference image not found"),
    (["a red circle", "--hold", "1.5"], "--hold must be between 0 and 1"),
])
def test_generate_bad_input_is_one_line(checkpoint, tmp_path, capsys, args, message):
    rc = cli.main(["generate", *args, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_missing_and_corrupt_checkpoints_are_one_line_errors(checkpoint, tmp_path):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    weights = broken / "dit" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    for ckpt in (tmp_path / "nothing-here", broken):
        proc = subprocess.run([sys.executable, "-m", "cli", "generate", "a red circle", "--checkpoint", str(ckpt),
                               "--out", str(tmp_path / "o.mp4")], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.mp4").exists()


def test_vae_training_starts_from_a_small_posterior_noise():
    """init_logvar: the untrained posterior's std is exp(logvar / 2) everywhere, whatever the input."""
    from jvideo.generation.presets import get_preset
    from jvideo.generation.world_model import build_vae, init_vae_for_training
    from kernels import runtime
    jt = runtime.import_jittor()
    vae = init_vae_for_training(build_vae(get_preset("test")), -8.0)
    x = jt.array(np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32))
    std = vae.encode(x).std.numpy()
    assert np.allclose(std, np.exp(-4.0), rtol=1e-5)


def test_colour_anchor_pools_the_frame_to_the_latent_grid():
    from jvideo.generation.train import average_pool
    from kernels import runtime
    jt = runtime.import_jittor()
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = x.reshape(2, 3, 2, 4, 2, 4).mean(axis=(3, 5))
    assert np.allclose(average_pool(jt.array(x), 4).numpy(), want, atol=1e-6)


def test_image_steps_alternate_until_the_presets_fraction_of_training():
    from jvideo.generation.presets import get_preset
    v5, v6 = get_preset("tiny-v5").dit, get_preset("tiny-v6").dit
    assert [s for s in range(v5.steps) if v5.is_image_step(s)] == list(range(1, 5000, 2))
    assert [s for s in range(v6.steps) if v6.is_image_step(s)] == list(range(1, 2500, 2))
    assert not any(get_preset("tiny-v4").dit.is_image_step(s) for s in range(100))


def test_a_larger_dataset_encodes_only_the_chunks_its_cache_lacks(checkpoint, tmp_path):
    """Chunk k of the training clips comes from its own seed, so a run with more clips reuses the
    whole chunks of a smaller cache (a marked chunk stays marked) and re-draws a partial last one."""
    from dataclasses import replace

    import jvideo.generation.state as st
    from jvideo.generation.presets import get_preset
    from jvideo.generation.sample import Generator
    from jvideo.generation.train import encode_dataset
    vae = Generator.load(checkpoint).vae
    base = get_preset("test")
    sized = lambda n: replace(base, dit=replace(base.dit, dataset_clips=n))   # noqa: E731
    small = encode_dataset(vae, sized(20), tmp_path / "grown")                # chunks of 16 and 4
    assert small["latents"].shape[0] == len(small["params"]) == 20
    marked = small["latents"].copy()
    marked[:16] += 100.0   # a mark only reuse keeps
    np.save(tmp_path / "grown" / "data" / "latents.npy", marked)
    grown = encode_dataset(vae, sized(40), tmp_path / "grown")
    fresh = encode_dataset(vae, sized(40), tmp_path / "fresh")
    assert grown["latents"].shape == fresh["latents"].shape and len(grown["params"]) == 40
    assert np.array_equal(grown["latents"][:16], marked[:16])
    assert np.allclose(grown["latents"][16:], fresh["latents"][16:], atol=1e-5)
    assert np.allclose(grown["references"], fresh["references"], atol=1e-5)
    assert [p.to_dict() for p in grown["params"]] == [p.to_dict() for p in fresh["params"]]
    # The grown set is the new cache; a smaller run takes its first whole chunks.
    assert len(st.read_json(tmp_path / "grown" / "data" / "params.json")) == 40
    again = encode_dataset(vae, sized(32), tmp_path / "grown")
    assert np.array_equal(again["latents"], grown["latents"][:32])


def test_cropped_references_have_their_own_cache(checkpoint, tmp_path):
    """reference_crop: the same clips, references encoded from their object crops, cached apart
    from an uncropped run's (a copied uncropped cache is re-encoded, not taken for crops)."""
    from dataclasses import replace

    from jvideo.generation.presets import get_preset
    from jvideo.generation.sample import Generator
    from jvideo.generation.train import encode_dataset
    vae = Generator.load(checkpoint).vae
    base = get_preset("test")
    plain = encode_dataset(vae, base, tmp_path)
    cropped = encode_dataset(vae, replace(base, dit=replace(base.dit, reference_crop=True)), tmp_path)
    data = tmp_path / "data"
    assert (data / "references.npy").exists() and (data / "references_crop.npy").exists()
    assert np.allclose(cropped["latents"], plain["latents"], atol=1e-5)
    assert cropped["references"].shape == plain["references"].shape
    assert not np.allclose(cropped["references"], plain["references"], atol=1e-3)


def test_a_cropping_checkpoint_samples_from_the_object_crop(checkpoint):
    """With reference_crop the generator cuts the reference itself: the same shot as an
    uncropping generator given the crop."""
    from dataclasses import replace

    from jvideo import toyworld as tw
    from jvideo.generation.sample import Generator
    gen = Generator.load(checkpoint)
    size = gen.preset.size
    ref = tw.reference_frame(np.random.default_rng(2), tw.CAST[0].look, size)
    assert not np.array_equal(tw.object_crop(ref), ref)
    given_crop = gen.generate("Mira jumps on the grass", tw.object_crop(ref), seed=4, steps=2)
    # The reference matters to this model, so equal shots below mean the crop was made.
    assert not np.array_equal(gen.generate("Mira jumps on the grass", ref, seed=4, steps=2), given_crop)
    gen.preset = replace(gen.preset, dit=replace(gen.preset.dit, reference_crop=True))
    assert np.array_equal(gen.generate("Mira jumps on the grass", ref, seed=4, steps=2), given_crop)


def test_reference_guidance_adds_a_branch_without_the_reference(checkpoint):
    """ref_cfg: cond + (cfg - 1)(cond - no_text) + (ref_cfg - 1)(cond - no_reference), checked
    against the three branches run by hand for a one-step shot; 1 (the default) is off."""
    from jvideo.generation.conditioning import reference_kwargs, reference_latents, tensor_to_frames
    from jvideo.generation.sample import Generator
    from jvideo.generation.world_model import diffusion_schedule
    from kernels import runtime
    jt = runtime.import_jittor()
    gen = Generator.load(checkpoint)
    prompt, seed, cfg, ref_cfg = "Mira jumps on the grass", 5, 3.0, 2.5
    ref = np.zeros((32, 32, 3), np.uint8)
    ref[8:24, 8:24] = (40, 200, 60)
    shot = gen.generate(prompt, ref, seed=seed, steps=1, cfg=cfg, ref_cfg=ref_cfg)
    assert np.array_equal(gen.generate(prompt, ref, seed=seed, steps=1, cfg=cfg),
                          gen.generate(prompt, ref, seed=seed, steps=1, cfg=cfg, ref_cfg=1.0))
    assert not np.array_equal(shot, gen.generate(prompt, ref, seed=seed, steps=1, cfg=cfg))
    # Without a reference there is nothing to guide by: the scale changes nothing.
    assert np.array_equal(gen.generate(prompt, None, seed=seed, steps=1, cfg=cfg, ref_cfg=ref_cfg),
                          gen.generate(prompt, None, seed=seed, steps=1, cfg=cfg))
    schedule = diffusion_schedule(gen.preset)
    c, s, frames = gen.preset.vae.latent_channels, gen.preset.latent_size, gen.preset.frames
    x = jt.array(np.random.default_rng(seed).standard_normal((1, c, frames, s, s)).astype(np.float32))
    (t,) = schedule.set_timesteps(1)
    with jt.no_grad():
        z = reference_latents(gen.vae, ref[None], np.ones(1, bool))

        def branch(text: str, keep: float):
            emb, mask = gen.text.encode([text])
            r = z * keep
            out = gen.dit(jt.concat([r, x], dim=2), jt.array(np.full(1, float(t), np.float32)), emb, mask,
                          **reference_kwargs(gen.dit, r, np.full(1, keep, np.float32)))
            return out[:, :, 1:].numpy()
        cond, no_text, no_ref = branch(prompt, 1.0), branch("", 1.0), branch(prompt, 0.0)
        guided = cond + (cfg - 1) * (cond - no_text) + (ref_cfg - 1) * (cond - no_ref)
        x1 = schedule.step(jt.array(guided.astype(np.float32)), int(t), x)
        want = tensor_to_frames(gen.vae.decode(x1 / gen.vae.scaling_factor))[0]
    assert np.abs(want.astype(int) - shot.astype(int)).max() <= 1


def test_word_tokens_append_the_input_layer_to_the_context(checkpoint, tmp_path, monkeypatch):
    """Preset.word_tokens: the context is the output states then the input-layer vectors of the
    same tokens (twice the keys, the mask repeated); such a run trains and samples."""
    from dataclasses import replace

    from jvideo.generation import presets
    from jvideo.generation.conditioning import TextConditioner
    from jvideo.generation.sample import Generator
    texts = ["a red circle moves left", ""]
    plain, plain_mask = (v.numpy() for v in TextConditioner(8).encode(texts))
    both, both_mask = (v.numpy() for v in TextConditioner(8, word_tokens=True).encode(texts))
    assert both.shape == (2, 16, 384) and np.array_equal(both[:, :8], plain)
    assert np.array_equal(both_mask, np.concatenate([plain_mask, plain_mask], axis=1))
    assert not np.allclose(both[:, 8:], plain, atol=1e-2)
    base = presets.PRESETS["test"]
    monkeypatch.setitem(presets.PRESETS, "test", replace(base, word_tokens=True))
    out = tmp_path / "words"
    assert cli.main(["train", "--preset", "test", "--steps", "2", "--vae-from", str(checkpoint), "--out", str(out)]) == 0
    gen = Generator.load(out)
    assert gen.preset.word_tokens and gen.text.word_tokens
    shot = gen.generate("a red circle moves left on the grass", seed=1, steps=2)
    assert shot.shape == (4, 32, 32, 3)


def trained_with_dit_option(checkpoint, out, monkeypatch, option: str):
    """The `test` preset with DiTPreset `option` on, trained 2 steps on `checkpoint`'s VAE into
    `out` through the CLI; its Generator, checked to have the option and to sample a shot."""
    from dataclasses import replace

    from jvideo.generation import presets
    from jvideo.generation.sample import Generator
    base = presets.PRESETS["test"]
    monkeypatch.setitem(presets.PRESETS, "test", replace(base, dit=replace(base.dit, **{option: True})))
    assert cli.main(["train", "--preset", "test", "--steps", "2", "--vae-from", str(checkpoint), "--out", str(out)]) == 0
    gen = Generator.load(out)
    assert getattr(gen.dit.config, option)
    shot = gen.generate("a red circle moves left on the grass", seed=1, steps=2)
    assert shot.shape == (4, 32, 32, 3)
    return gen


def test_frame_modulation_trains_and_samples(checkpoint, tmp_path, monkeypatch):
    """DiTPreset.frame_modulation: the frame vectors start at zero, training moves them, and
    the run's checkpoint samples."""
    gen = trained_with_dit_option(checkpoint, tmp_path / "frames", monkeypatch, "frame_modulation")
    learnt = gen.dit.frame_embedding.numpy()
    assert learnt.shape == (gen.preset.frames + 1, gen.dit.config.hidden_size) and np.abs(learnt).max() > 0


def test_block_modulation_trains_and_samples(checkpoint, tmp_path, monkeypatch):
    """DiTPreset.block_modulation: each block's map starts at zero, training moves it, and the
    run's checkpoint samples."""
    gen = trained_with_dit_option(checkpoint, tmp_path / "blocks", monkeypatch, "block_modulation")
    for blocks in (gen.dit.transformer_blocks, gen.dit.temporal_transformer_blocks):
        assert all(np.abs(block.block_modulation.weight.numpy()).max() > 0 for block in blocks)


def test_planned_layout_follows_the_prompt():
    """plan_layout: the subject's cover travels the stated way (right: its centre's column rises,
    up: its row falls), stays put when the prompt says still or nothing, is bigger in a close-up
    than in a wide shot, is the same for the same seed and varies with it; an empty prompt has
    no layout; channel 1 marks a given layout."""
    from jvideo.generation.layout import layout_from_cover, plan_layout

    def centre(layout: np.ndarray) -> np.ndarray:   # (T, 2) row, column of the cover's mass
        cover = layout[0]
        rows, cols = np.mgrid[0:cover.shape[1], 0:cover.shape[2]]
        mass = cover.sum(axis=(1, 2))
        return np.stack([(cover * rows).sum(axis=(1, 2)) / mass, (cover * cols).sum(axis=(1, 2)) / mass], 1)

    right = plan_layout("a red circle moves to the right on the grass", 3, 16, 64, 4)
    assert right.shape == (2, 16, 16, 16) and np.all(right[1] == 1) and right[0].max() == 1
    path = centre(right)
    assert path[-1, 1] - path[0, 1] > 5 and abs(path[-1, 0] - path[0, 0]) < 0.5
    up = centre(plan_layout("we see Mira as it climbs upward", 3, 16, 64, 4))
    assert up[0, 0] - up[-1, 0] > 5
    for still in ("a blue star rests in a room", "Mira on the sand"):
        assert np.ptp(centre(plan_layout(still, 3, 16, 64, 4)), axis=0).max() < 1e-6
    close = plan_layout("close-up of a big red circle that rests on the grass", 1, 16, 64, 4)[0].sum()
    wide = plan_layout("wide shot of a big red circle that rests on the grass", 1, 16, 64, 4)[0].sum()
    assert close > 2.5 * wide
    assert np.array_equal(plan_layout("Mira jumps", 5, 16, 64, 4), plan_layout("Mira jumps", 5, 16, 64, 4))
    assert not np.array_equal(plan_layout("Mira jumps", 5, 16, 64, 4), plan_layout("Mira jumps", 6, 16, 64, 4))
    assert not plan_layout("  ", 5, 16, 64, 4).any()
    cover = np.random.default_rng(0).random((2, 3, 4, 4)).astype(np.float32)
    layouts = layout_from_cover(cover, np.array([1, 0]))
    assert np.array_equal(layouts[0, 0], cover[0]) and np.all(layouts[0, 1] == 1) and not layouts[1].any()


def test_reference_is_drawn_into_the_subjects_window():
    """reference_window / plan_layout(paste=c): the cropped reference's latent lands in a window
    centred on the subject's cover in every frame, scaled with its radius; without a reference
    the window and the drawing are zero, and an empty prompt gives zeros of the same shape."""
    from jvideo.generation.layout import layout_channels, plan_layout
    reference = np.zeros((6, 16, 16), np.float32)
    reference[:, 4:12, 4:12] = 1.0                  # an object in the middle of the crop
    wide = plan_layout("wide shot of Mira, who moves to the right on the grass", 2, 16, 64, 4, 6, reference)
    close = plan_layout("close-up of Mira, who moves to the right on the grass", 2, 16, 64, 4, 6, reference)
    assert wide.shape == (layout_channels(6, True), 16, 16, 16) == (9, 16, 16, 16)
    rows, cols = np.mgrid[0:16, 0:16]
    for f in (0, 8, 15):
        cover, window, drawn = wide[0, f], wide[2, f], wide[3, f]
        centre = (cover * cols).sum() / cover.sum(), (cover * rows).sum() / cover.sum()
        assert abs((drawn * cols).sum() / drawn.sum() - centre[0]) < 0.6
        assert abs((drawn * rows).sum() / drawn.sum() - centre[1]) < 0.6
        assert np.all(drawn[window == 0] == 0) and window.sum() > 0
    assert close[3, 0].sum() > 2.5 * wide[3, 0].sum()
    bare = plan_layout("wide shot of Mira, who moves to the right on the grass", 2, 16, 64, 4, 6, None)
    assert np.array_equal(bare[:2], wide[:2]) and not bare[2:].any()
    assert plan_layout("", 2, 16, 64, 4, 6, reference).shape == wide.shape
    assert not plan_layout("", 2, 16, 64, 4, 6, reference).any()


def test_layout_conditioning_trains_and_samples_from_the_plan(checkpoint, tmp_path, monkeypatch):
    """DiTPreset.layout: the run trains its layout embedding (zero at the start) and samples each
    shot under the layout planned from its prompt and seed (without the plan the same seed gives
    another shot). layout_look, fine-tuned from it (--dit-from): starts as the loaded DiT with
    zero weights on the added channels, trains on clip and image steps, keeps the options in
    preset.json; a stated look changes the plan, a name does not state one. A DiT built
    otherwise is refused in one line."""
    from dataclasses import replace

    from jvideo.errors import JVideoError
    from jvideo.generation import presets
    from jvideo.generation.sample import Generator
    from jvideo.generation.train import start_dit_from
    from jvideo.generation.world_model import build_dit
    base = presets.PRESETS["test"]
    monkeypatch.setitem(presets.PRESETS, "test", replace(base, dit=replace(base.dit, layout=True)))
    out = tmp_path / "layout"
    assert cli.main(["train", "--preset", "test", "--steps", "2", "--vae-from", str(checkpoint), "--out", str(out)]) == 0
    gen = Generator.load(out)
    assert gen.preset.dit.layout and gen.dit.config.layout_conditioning
    assert np.abs(gen.dit.layout_embed.weight.numpy()).max() > 0
    prompt = "a red circle moves left on the grass"
    planned = gen.generate(prompt, seed=1, steps=2)
    assert planned.shape == (4, 32, 32, 3) and np.array_equal(planned, gen.generate(prompt, seed=1, steps=2))
    monkeypatch.setattr(gen, "layouts", lambda prompts, seeds, frames, references=None: None)
    assert not np.array_equal(planned, gen.generate(prompt, seed=1, steps=2))

    look = replace(base, dit=replace(base.dit, layout=True, layout_look=True))
    monkeypatch.setitem(presets.PRESETS, "test", look)
    started = build_dit(look)
    start_dit_from(started, look, out)
    kernel, loaded = started.layout_embed.weight.numpy(), gen.dit.layout_embed.weight.numpy()
    assert np.array_equal(kernel[:, :2], loaded) and not kernel[:, 2:].any()
    assert np.array_equal(started.proj_out.weight.numpy(), gen.dit.proj_out.weight.numpy())
    with pytest.raises(JVideoError, match="not built like"):
        start_dit_from(build_dit(look), look, checkpoint)
    assert cli.main(["train", "--preset", "test", "--dit-from", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2
    tuned = tmp_path / "look"
    assert cli.main(["train", "--preset", "test", "--steps", "2", "--dit-from", str(out), "--out", str(tuned)]) == 0
    assert json.loads((tuned / "state" / "dit.json").read_text())["extra"]["started_from"] == str(out)
    gen = Generator.load(tuned)
    cell = base.size // base.latent_size
    assert gen.preset.dit.layout_look and gen.dit.config.layout_channels == 2 + cell * cell + 3
    assert gen.generate(prompt, seed=1, steps=2).shape == (4, 32, 32, 3)
    red, blue = (gen.layouts([f"a {c} circle moves left on the grass"], [1], 4)[0] for c in ("red", "blue"))
    assert np.array_equal(red[:2 + cell * cell], blue[:2 + cell * cell]) and red[-3].max() > blue[-3].max()
    assert not gen.layouts(["Mira moves left on the grass"], [1], 4)[0, 2:].any()


def test_decoder_stage_fine_tunes_the_decoder_alone_and_keeps_the_dit(checkpoint, tmp_path, monkeypatch, capsys):
    """VAEPreset.decoder_steps with a DiT of 0 steps (tiny-v18's recipe on the test preset): the
    encoder and the DiT are the --dit-from checkpoint's to the bit, the decoder has moved and
    OUT/vae holds it, samples come out, --resume keeps everything; a DiT of 0 steps without
    --dit-from is refused in one line."""
    from dataclasses import replace

    from safetensors.numpy import load_file

    from jvideo.generation import presets
    from jvideo.generation.sample import Generator
    base = presets.PRESETS["test"]
    monkeypatch.setitem(presets.PRESETS, "test", replace(base, vae=replace(base.vae, decoder_steps=2),
                                                         dit=replace(base.dit, steps=0)))
    out = tmp_path / "decoder"
    assert cli.main(["train", "--preset", "test", "--dit-from", str(checkpoint), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "decoder: 2 steps" in printed and f"dit: reused from {checkpoint}" in printed

    def weights(folder, part):
        return load_file(str(folder / part / "diffusion_pytorch_model.safetensors"))

    ours, theirs = weights(out, "vae"), weights(checkpoint, "vae")
    assert ours.keys() == theirs.keys()
    kept = [k for k in ours if not k.startswith(("decoder.", "post_quant_conv."))]
    assert kept and all(np.array_equal(ours[k], theirs[k]) for k in kept)
    assert any(not np.array_equal(ours[k], theirs[k]) for k in ours if k.startswith("decoder."))
    dit = weights(out, "dit")
    assert all(np.array_equal(dit[k], v) for k, v in weights(checkpoint, "dit").items())
    assert json.loads((out / "state" / "decoder.json").read_text())["step"] == 2 and (out / "loss.png").exists()
    assert Generator.load(out).generate("a red circle moves left on the grass", seed=1, steps=2).shape == (4, 32, 32, 3)
    assert cli.main(["train", "--preset", "test", "--resume", "--out", str(out)]) == 0
    assert f"dit: reused from {checkpoint}" in capsys.readouterr().out
    assert all(np.array_equal(weights(out, "vae")[k], v) for k, v in ours.items())
    capsys.readouterr()
    assert cli.main(["train", "--preset", "test", "--out", str(tmp_path / "no-dit")]) == 2
    assert "--dit-from" in capsys.readouterr().err


def test_stated_look_is_drawn_on_the_track():
    """plan_layout(look=True): the stated shape's silhouette, folded into the latent cells,
    unfolds to shape_cover on the planned track, and the detector reads that silhouette as the
    shape; the colour channels are the stated colour over each cell's cover; a colour alone is
    painted over the track's disc; a name states nothing. Training's stated_looks draws the
    same for a clip's own look (anonymous clips only)."""
    from jvideo.generation.layout import look_channels, plan_layout, plan_track
    from jvideo.generation.train import stated_looks
    from jvideo.toyworld import detect
    from jvideo.toyworld.render import sample_params, shape_cover, track_cover
    from jvideo.toyworld.world import COLOURS
    prompt = "close-up of a purple star that spins on the sand"
    layout = plan_layout(prompt, 2, 16, 64, 4, look=True)
    assert layout.shape == (2 + 16 + 3, 16, 16, 16)
    track = plan_track(prompt, 2, 16, 64, 64)
    silhouette = shape_cover("star", track, 64, 64)
    unfolded = layout[2:18].reshape(4, 4, 16, 16, 16).transpose(2, 3, 0, 4, 1).reshape(16, 64, 64)
    assert np.array_equal(unfolded, silhouette)
    painted = (silhouette[..., None] * 255).astype(np.uint8).repeat(3, -1) // 2 + 60
    assert detect(painted).shape == "star"
    cover = silhouette.reshape(16, 16, 4, 16, 4).mean(axis=(2, 4))
    assert np.allclose(layout[18:], np.asarray(COLOURS["purple"])[:, None, None, None] / 255 * cover[None])
    only_colour = plan_layout("something red rests on the sand", 2, 16, 64, 4, look=True)
    disc = track_cover(plan_track("something red rests on the sand", 2, 16, 64, 64), 64, 64, 4)
    assert not only_colour[2:18].any() and np.allclose(only_colour[18], COLOURS["red"][0] / 255 * disc)
    assert not plan_layout("Mira spins on the sand", 2, 16, 64, 4, look=True)[2:].any()
    clips = [sample_params(np.random.default_rng(3)), sample_params(np.random.default_rng(3), name="Mira")]
    silhouettes, rgb = stated_looks(clips)
    assert np.abs(silhouettes[0] / 255 - shape_cover(clips[0].look.shape, clips[0].track, 64, 64)).max() <= 0.5 / 255
    assert not silhouettes[1].any() and not rgb[1].any()
    drawn = look_channels(silhouettes.astype(np.float32) / 255, rgb, 4)
    assert drawn.shape == (2, 19, 16, 16, 16) and not drawn[1].any() and drawn[0, -3:].max() > 0


def test_reference_paste_trains_and_samples(checkpoint, tmp_path, monkeypatch):
    """DiTPreset.reference_paste: the layout embedding takes 3 + c channels, the run trains and
    samples with and without a reference (and with reference guidance, whose third branch has
    none); the drawn reference changes the shot."""
    from dataclasses import replace

    from jvideo.generation import presets
    from jvideo.generation.sample import Generator
    from jvideo.toyworld import sample_batch
    base = presets.PRESETS["test"]
    monkeypatch.setitem(presets.PRESETS, "test", replace(base, dit=replace(base.dit, layout=True, reference_crop=True,
                                                                            reference_paste=True)))
    out = tmp_path / "paste"
    assert cli.main(["train", "--preset", "test", "--steps", "2", "--vae-from", str(checkpoint), "--out", str(out)]) == 0
    gen = Generator.load(out)
    assert gen.dit.config.layout_channels == 3 + base.vae.latent_channels
    reference = sample_batch(np.random.default_rng(1), 1, frames=4, size=32, references=True).references[0]
    prompt = "Mira moves right on the grass"
    shot = gen.generate(prompt, reference, seed=1, steps=2)
    assert shot.shape == (4, 32, 32, 3) and gen.generate(prompt, reference, seed=1, steps=2, ref_cfg=2.0).shape == shot.shape
    gen.dit.layout_embed.weight.update(gen.dit.layout_embed.weight * 0 + 0.05)   # a visibly used drawing
    assert not np.array_equal(gen.generate(prompt, reference, seed=1, steps=2), gen.generate(prompt, None, seed=1, steps=2))


def test_motion_subset_trains_on_its_own_dataset(checkpoint, tmp_path, monkeypatch):
    """DiTPreset.motions: the training clips all move those ways and are cached apart from a
    full dataset (OUT/data-left-right), so neither run can read the other's clips."""
    from dataclasses import replace

    from jvideo.generation import presets
    base = presets.PRESETS["test"]
    monkeypatch.setitem(presets.PRESETS, "test", replace(base, dit=replace(base.dit, motions=("left", "right"))))
    out = tmp_path / "moving"
    assert cli.main(["train", "--preset", "test", "--steps", "2", "--vae-from", str(checkpoint), "--out", str(out)]) == 0
    params = json.loads((out / "data-left-right" / "params.json").read_text())
    assert len(params) == base.dit.dataset_clips and {p["motion"] for p in params} <= {"left", "right"}
    assert not (out / "data").exists()
    saved = json.loads((out / "preset.json").read_text())
    assert presets.Preset.from_dict(saved).dit.motions == ("left", "right")


def test_clip_noise_shares_a_fraction_of_its_variance_across_frames():
    """clip_noise: unit variance, correlation `shared` between two frames of a clip and none
    between clips; shared = 0 is the plain draw of the same generator (old seeds, old shots)."""
    from jvideo.generation.world_model import clip_noise
    noise = clip_noise(np.random.default_rng(0).standard_normal, (4000, 2, 6, 2, 2), 0.5)
    assert abs(noise.var() - 1) < 0.03
    same_clip = np.corrcoef(noise[:, 0, 1, 0, 0], noise[:, 0, 4, 0, 0])[0, 1]
    other_cell = np.corrcoef(noise[:, 0, 1, 0, 0], noise[:, 0, 4, 1, 0])[0, 1]
    assert abs(same_clip - 0.5) < 0.05 and abs(other_cell) < 0.05
    plain = clip_noise(np.random.default_rng(3).standard_normal, (2, 6, 2, 2), 0.0)
    assert np.array_equal(plain, np.random.default_rng(3).standard_normal((2, 6, 2, 2)))


def test_training_timesteps_lean_to_high_noise():
    """sample_timesteps: power 0 draws exactly as before (rng.integers); power 1 is a ramp
    (mean 2/3 of the range, 3/4 of the draws in the upper half); every step stays in [0, T)."""
    from jvideo.schedulers import NoiseSchedule
    schedule = NoiseSchedule(num_train_timesteps=1000)
    assert np.array_equal(schedule.sample_timesteps(50, np.random.default_rng(5)),
                          np.random.default_rng(5).integers(0, 1000, size=50))
    t = schedule.sample_timesteps(40000, np.random.default_rng(5), 1.0)
    assert t.min() >= 0 and t.max() <= 999 and t.dtype.kind == "i"
    assert abs(t.mean() / 1000 - 2 / 3) < 0.01 and abs((t >= 500).mean() - 0.75) < 0.01


def test_shared_noise_trains_and_samples_with_it(checkpoint, tmp_path, monkeypatch):
    """DiTPreset.shared_noise: the run trains, its preset.json keeps the fraction, and its
    sampler starts from frames that share noise (same seed, another shot than without)."""
    from dataclasses import replace

    from jvideo.generation import presets
    from jvideo.generation.sample import Generator
    base = presets.PRESETS["test"]
    monkeypatch.setitem(presets.PRESETS, "test", replace(base, dit=replace(base.dit, shared_noise=0.5,
                                                                            timestep_power=1.0)))
    out = tmp_path / "shared"
    assert cli.main(["train", "--preset", "test", "--steps", "2", "--vae-from", str(checkpoint), "--out", str(out)]) == 0
    gen = Generator.load(out)
    assert gen.preset.dit.shared_noise == 0.5 and gen.preset.dit.timestep_power == 1.0
    prompt = "a red circle moves left on the grass"
    shared = gen.generate(prompt, seed=1, steps=2)
    gen.preset = replace(gen.preset, dit=replace(gen.preset.dit, shared_noise=0.0))
    independent = gen.generate(prompt, seed=1, steps=2)
    assert shared.shape == independent.shape == (4, 32, 32, 3)
    assert not np.array_equal(shared, independent)


def test_weight_average_follows_the_recurrence():
    """avg <- d avg + (1 - d) w after every step, d = min(decay, (1 + step) / (10 + step))."""
    from jittor import nn
    from jvideo.generation.ema import WeightAverage, ema_decay
    model = nn.Linear(3, 2)
    start = model.weight.numpy().copy()
    average = WeightAverage(model, 0.9)
    expected = start
    for step, value in enumerate([1.0, -2.0, 5.0]):
        model.weight.update(model.weight * 0 + value)
        average.update(step)
        d = ema_decay(0.9, step)
        expected = d * expected + (1 - d) * value
    assert ema_decay(0.9, 0) == 0.1 and ema_decay(0.9, 1000) == 0.9
    assert np.allclose(average.state_dict_numpy()["weight"], expected, atol=1e-6)
    assert not np.allclose(expected, model.weight.numpy())


def test_an_averaging_run_samples_from_the_average_and_resumes_both(checkpoint, tmp_path, monkeypatch, capsys):
    """DiTPreset.ema: OUT/dit holds the average, state/ the raw weights, which train exactly as
    without an average; --resume continues both."""
    from dataclasses import replace

    from safetensors.numpy import load_file
    from jvideo.generation import presets
    from jvideo.generation.ema import ema_decay
    base = presets.PRESETS["test"]

    def run(ema: float, out: Path, steps: int, resume: bool = False) -> int:
        monkeypatch.setitem(presets.PRESETS, "test", replace(base, dit=replace(base.dit, ema=ema)))
        args = ["train", "--preset", "test", "--steps", str(steps), "--vae-from", str(checkpoint), "--out", str(out)]
        return cli.main(args + (["--resume"] if resume else []))

    dit = "dit/diffusion_pytorch_model.safetensors"
    assert run(0.0, tmp_path / "plain", 2) == 0 and run(0.5, tmp_path / "avg", 2) == 0
    plain, average = load_file(str(tmp_path / "plain" / dit)), load_file(str(tmp_path / "avg" / dit))
    raw = load_file(str(tmp_path / "avg" / "state" / "dit.raw.safetensors"))
    assert all(np.allclose(raw[k], plain[k], atol=1e-6) for k in plain)
    assert not all(np.allclose(average[k], raw[k], atol=1e-4) for k in raw)
    assert run(0.0, tmp_path / "plain", 3, resume=True) == 0 and run(0.5, tmp_path / "avg", 3, resume=True) == 0
    plain3, average3 = load_file(str(tmp_path / "plain" / dit)), load_file(str(tmp_path / "avg" / dit))
    raw3 = load_file(str(tmp_path / "avg" / "state" / "dit.raw.safetensors"))
    d = ema_decay(0.5, 2)
    assert all(np.allclose(raw3[k], plain3[k], atol=1e-6) for k in plain3)
    assert all(np.allclose(average3[k], d * average[k] + (1 - d) * raw3[k], atol=1e-5) for k in raw3)
    # A run started without an average cannot be resumed with one.
    capsys.readouterr()
    assert run(0.5, tmp_path / "plain", 4, resume=True) == 2
    assert "trained without a weight average" in capsys.readouterr().err
