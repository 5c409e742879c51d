"""Parity of the Jittor VAE, DiT and Latte with diffusers (same weights, same numpy inputs),
with the fused-kernel switch on and off; loading errors; save/load round trips."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from jvideo import models  # noqa: E402
from jvideo.errors import JVideoError  # noqa: E402
from kernels import ops  # noqa: E402
from kernels import runtime  # noqa: E402

from _model_refs import TINY_DIT, make_dit, make_latte, make_vae, max_err  # noqa: E402

jt = runtime.import_jittor()
TOL = 1e-4
FUSED = [pytest.param(True, id="fused"), pytest.param(False, id="reference")]


@pytest.fixture(scope="module")
def dit_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dit")
    ref = make_dit(folder)
    return ref, models.from_pretrained(folder), folder


@pytest.fixture(scope="module")
def latte_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("latte")
    ref = make_latte(folder)
    return ref, models.from_pretrained(folder), folder


@pytest.fixture(scope="module")
def vae_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vae")
    ref = make_vae(folder)
    return ref, models.from_pretrained(folder), folder


def dit_inputs(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((2, 4, 8, 8)).astype(np.float32), np.array([3, 917]), np.array([1, 10]))


def run_dit(model, x, t, y):
    return model(jt.array(x), jt.array(t), jt.array(y)).numpy()


@pytest.mark.parametrize("fused", FUSED)
def test_dit_matches_diffusers(dit_pair, fused):
    ref, model, _ = dit_pair
    x, t, y = dit_inputs()
    with torch.no_grad():
        want = ref(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(y)).sample.numpy()
    with ops.use_fused(fused):
        got = run_dit(model, x, t, y)
    assert got.shape == (2, 8, 8, 8)
    assert max_err(got, want) <= TOL


@pytest.mark.parametrize("fused", FUSED)
def test_dit_original_checkpoint_layout(dit_pair, tmp_path, fused):
    """The facebookresearch/DiT .pt layout (fused qkv, one t/y embedder, freq shift 0)."""
    ref, model, _ = dit_pair
    sd = models.dit.diffusers_to_original(models.loading.state_dict_numpy(model), grid_size=4)
    assert "blocks.0.attn.qkv.weight" in sd and "t_embedder.mlp.0.weight" in sd
    pt = tmp_path / "DiT-tiny.pt"
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, pt)
    loaded = models.from_pretrained(pt, num_attention_heads=TINY_DIT["num_attention_heads"])
    assert loaded.config.timestep_freq_shift == 0.0 and loaded.config.num_layers == 2
    # The original DiT is diffusers' architecture with timestep frequencies / half (shift 0).
    for block in ref.transformer_blocks:
        block.norm1.emb.time_proj.downscale_freq_shift = 0
    try:
        x, t, y = dit_inputs(1)
        with torch.no_grad():
            want = ref(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(y)).sample.numpy()
    finally:
        for block in ref.transformer_blocks:
            block.norm1.emb.time_proj.downscale_freq_shift = 1
    with ops.use_fused(fused):
        assert max_err(run_dit(loaded, x, t, y), want) <= TOL


@pytest.mark.parametrize("fused", FUSED)
def test_latte_matches_diffusers_with_text(latte_pair, fused):
    ref, model, _ = latte_pair
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 3, 8, 8)).astype(np.float32)
    t = np.array([5, 640])
    text = rng.standard_normal((2, 5, 12)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(text)).sample.numpy()
    with ops.use_fused(fused):
        got = model(jt.array(x), jt.array(t), jt.array(text)).numpy()
    assert got.shape == (2, 8, 3, 8, 8)
    assert max_err(got, want) <= TOL
    # the text matters: other captions give another output
    with ops.use_fused(fused):
        other = model(jt.array(x), jt.array(t), jt.array(text[::-1].copy())).numpy()
    assert max_err(other, got) > 1e-3


@pytest.mark.parametrize("fused", FUSED)
def test_vae_encode_decode_match_diffusers(vae_pair, fused):
    ref, model, _ = vae_pair
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (2, 3, 16, 16)).astype(np.float32)
    z = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    with torch.no_grad():
        post = ref.encode(torch.from_numpy(x)).latent_dist
        want_dec = ref.decode(torch.from_numpy(z)).sample.numpy()
    with ops.use_fused(fused):
        got = model.encode(jt.array(x))
        got_dec = model.decode(jt.array(z)).numpy()
    assert max_err(got.mean.numpy(), post.mean.numpy()) <= TOL
    assert max_err(got.logvar.numpy(), post.logvar.numpy()) <= TOL
    assert max_err(got_dec, want_dec) <= TOL
    assert model.scaling_factor == ref.config.scaling_factor


def test_vae_video_is_batch_folded_frames(vae_pair):
    _, model, _ = vae_pair
    rng = np.random.default_rng(4)
    video = rng.uniform(-1, 1, (1, 3, 2, 16, 16)).astype(np.float32)
    latents = model.encode(jt.array(video)).mode().numpy()            # (1, 4, 2, 8, 8)
    assert latents.shape == (1, 4, 2, 8, 8)
    frame1 = model.encode(jt.array(video[:, :, 1])).mode().numpy()
    assert max_err(latents[:, :, 1], frame1) <= 1e-5
    assert model.decode(jt.array(latents)).shape == (1, 3, 2, 16, 16)


def test_vae_temporal_compression_preset():
    cfg = models.AutoencoderKLConfig(block_out_channels=(8,), norm_num_groups=4, temporal_compression=2)
    vae = models.AutoencoderKL(cfg)
    video = jt.array(np.random.default_rng(5).uniform(-1, 1, (1, 3, 4, 8, 8)).astype(np.float32))
    z = vae.encode(video).mode()
    assert tuple(z.shape) == (1, 4, 2, 8, 8)
    assert tuple(vae.decode(z).shape) == (1, 3, 4, 8, 8)
    with pytest.raises(JVideoError, match="not divisible"):
        vae.encode(video[:, :, :3])


def test_missing_tensor_fails_with_one_line(dit_pair, tmp_path):
    from safetensors.numpy import load_file, save_file
    _, _, folder = dit_pair
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((folder / "config.json").read_text())
    sd = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    del sd["transformer_blocks.1.attn1.to_k.weight"]
    sd["proj_out_2.bias"] = np.zeros(7, np.float32)
    save_file(sd, str(bad / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(JVideoError) as err:
        models.from_pretrained(bad)
    msg = str(err.value)
    assert "\n" not in msg
    assert "missing 1: transformer_blocks.1.attn1.to_k.weight" in msg
    assert "proj_out_2.bias (file (7,), model (32,))" in msg


def test_convert_cli_errors_and_converts(dit_pair, tmp_path, capsys):
    import cli
    _, model, folder = dit_pair
    rc = cli.main(["convert", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc != 0 and err.count("\n") == 1 and "Traceback" not in err and "no such" in err
    bad = tmp_path / "badcfg"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    assert cli.main(["convert", str(bad), "--out", str(tmp_path / "o")]) != 0
    assert "not supported" in capsys.readouterr().err
    # a real conversion: original DiT .pt -> diffusers folder that diffusers itself loads
    sd = models.dit.diffusers_to_original(models.loading.state_dict_numpy(model), grid_size=4)
    pt = tmp_path / "tiny.pt"
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, pt)
    out = tmp_path / "converted"
    assert cli.main(["convert", str(pt), "--out", str(out), "--num-heads", "2"]) == 0
    assert json.loads((out / "config.json").read_text())["_class_name"] == "DiTTransformer2DModel"


def test_save_load_round_trip(dit_pair, tmp_path):
    """Ours -> save_pretrained -> ours and diffusers load it; outputs unchanged."""
    from diffusers import DiTTransformer2DModel
    ref, model, _ = dit_pair
    out = models.save_pretrained(model, tmp_path / "saved")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    again = models.from_pretrained(out)
    x, t, y = dit_inputs(5)
    first = run_dit(model, x, t, y)
    assert max_err(run_dit(again, x, t, y), first) == 0.0
    theirs = DiTTransformer2DModel.from_pretrained(out).eval()
    with torch.no_grad():
        want = theirs(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(y)).sample.numpy()
    assert max_err(first, want) <= TOL


def test_pipeline_folder_and_bad_files_are_one_line_errors(tmp_path):
    (tmp_path / "pipe" / "vae").mkdir(parents=True)
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    (tmp_path / "pipe" / "vae" / "config.json").write_text("{}")
    with pytest.raises(JVideoError, match="pipeline folder.*vae"):
        models.from_pretrained(tmp_path / "pipe")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(JVideoError, match="weights-only"):
        models.from_pretrained(junk)


def test_bin_weights_load_weights_only(dit_pair, tmp_path):
    """A diffusers folder saved as .bin (torch pickle) is read with weights_only=True."""
    ref, model, _ = dit_pair
    ref.save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert (tmp_path / "bin" / "diffusion_pytorch_model.bin").exists()
    loaded = models.from_pretrained(tmp_path / "bin")
    ours = models.loading.state_dict_numpy(model)
    for k, v in models.loading.state_dict_numpy(loaded).items():
        assert np.array_equal(v, ours[k]), k


def test_latte_text_mask_ignores_padding(latte_pair):
    """Padded caption tokens under a zero mask change nothing: same as the unpadded caption."""
    _, model, _ = latte_pair
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 4, 3, 8, 8)).astype(np.float32)
    t = np.array([300])
    text = rng.standard_normal((1, 3, 12)).astype(np.float32)
    padded = np.concatenate([text, 50 * rng.standard_normal((1, 2, 12)).astype(np.float32)], axis=1)
    mask = np.array([[1, 1, 1, 0, 0]], np.float32)
    want = model(jt.array(x), jt.array(t), jt.array(text)).numpy()
    got = model(jt.array(x), jt.array(t), jt.array(padded), jt.array(mask)).numpy()
    assert max_err(got, want) <= 1e-4


def test_latte_reference_tokens(latte_pair, tmp_path):
    """jvideo's identity extension: the reference latent's tokens change a row that has one; a
    row whose reference mask is 0 gives exactly what the model gives without a reference; the
    extra weight survives save/load (and a diffusers config never turns it on)."""
    _, model, folder = latte_pair
    assert not model.config.reference_tokens and not hasattr(model, "reference_embedding")
    cfg = models.LatteConfig.from_dict({**json.loads((folder / "config.json").read_text()), "reference_tokens": True})
    ours = models.Latte(cfg)
    ours.reference_embedding.update(jt.array(np.full((1, 1, cfg.hidden_size), 0.3, np.float32)))
    rng = np.random.default_rng(7)
    x = jt.array(rng.standard_normal((2, 4, 3, 8, 8)).astype(np.float32))
    t, text = jt.array(np.array([300, 40])), jt.array(rng.standard_normal((2, 3, 12)).astype(np.float32))
    ref = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    keep = jt.array(np.array([1.0, 0.0], np.float32))
    a = ours(x, t, text, reference=jt.array(ref), reference_mask=keep).numpy()
    b = ours(x, t, text, reference=jt.array(ref + 3.0), reference_mask=keep).numpy()
    plain = ours(x, t, text).numpy()
    assert max_err(a[0], b[0]) > 1e-2           # the reference is read
    assert max_err(a[1], b[1]) == 0.0           # ... but not where it is masked out
    assert max_err(a[1], plain[1]) <= 1e-4      # a masked reference = no reference
    again = models.from_pretrained(models.save_pretrained(ours, tmp_path / "ref"))
    assert max_err(again(x, t, text, reference=jt.array(ref), reference_mask=keep).numpy(), a) == 0.0


def test_latte_pooled_conditioning(latte_pair, tmp_path):
    """jvideo's adaLN extension: with its projections zeroed the model equals the plain one
    (the pooled path only adds); the pooled caption ignores masked padding; a row whose
    reference mask is 0 gives what the model gives without a reference; save/load keeps it."""
    _, model, folder = latte_pair
    raw = json.loads((folder / "config.json").read_text())
    assert not model.config.pooled_conditioning and not hasattr(model, "pooled_caption_projection")
    ours = models.Latte(models.LatteConfig.from_dict({**raw, "reference_tokens": True, "pooled_conditioning": True}))
    ours.load_state_dict(model.state_dict())
    rng = np.random.default_rng(8)
    x = jt.array(rng.standard_normal((2, 4, 3, 8, 8)).astype(np.float32))
    t = jt.array(np.array([300, 40]))
    text = rng.standard_normal((2, 3, 12)).astype(np.float32)
    plain = model(x, t, jt.array(text)).numpy()
    last = ours.pooled_caption_projection.linear_2
    saved = last.weight.numpy(), last.bias.numpy()
    last.weight.update(jt.zeros(last.weight.shape))
    last.bias.update(jt.zeros(last.bias.shape))
    assert max_err(ours(x, t, jt.array(text)).numpy(), plain) <= 1e-5
    last.weight.update(jt.array(saved[0]))
    last.bias.update(jt.array(saved[1]))
    pooled = ours(x, t, jt.array(text)).numpy()
    assert max_err(pooled, plain) > 1e-2                       # the pooled caption is read
    padded = np.concatenate([text, 50 * rng.standard_normal((2, 2, 12)).astype(np.float32)], axis=1)
    mask = jt.array(np.array([[1, 1, 1, 0, 0]] * 2, np.float32))
    assert max_err(ours(x, t, jt.array(padded), mask).numpy(), pooled) <= 1e-4
    ref = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    keep = jt.array(np.array([1.0, 0.0], np.float32))
    a = ours(x, t, jt.array(text), reference=jt.array(ref), reference_mask=keep).numpy()
    b = ours(x, t, jt.array(text), reference=jt.array(ref + 3.0), reference_mask=keep).numpy()
    assert max_err(a[0], b[0]) > 1e-2 and max_err(a[1], b[1]) == 0.0
    assert max_err(a[1], pooled[1]) <= 1e-4
    again = models.from_pretrained(models.save_pretrained(ours, tmp_path / "pooled"))
    assert max_err(again(x, t, jt.array(text), reference=jt.array(ref), reference_mask=keep).numpy(), a) == 0.0


def test_dit_label_dropout_is_shared_by_all_blocks(dit_pair):
    """Training-time label dropout happens once per sample, so with p=1 every block (and the
    final layer) sees the null class: the output equals eval mode with null labels."""
    _, model, _ = dit_pair
    x, t, y = dit_inputs(7)
    emb = model.transformer_blocks[0].norm1.emb.class_embedder
    want = run_dit(model, x, t, np.full_like(y, emb.num_classes))
    model.train()
    old, emb.dropout_prob = emb.dropout_prob, 1.0
    try:
        got = run_dit(model, x, t, y)
    finally:
        emb.dropout_prob = old
        model.eval()
    assert max_err(got, want) <= 1e-6


def test_latte_gradients_match_torch(latte_pair):
    """Training needs the backward pass too: parameter gradients of a fixed linear loss
    equal PyTorch autograd's (fused kernels on, as in training)."""
    ref, model, _ = latte_pair
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 4, 3, 8, 8)).astype(np.float32)
    t, text = np.array([420]), rng.standard_normal((1, 5, 12)).astype(np.float32)
    weights = rng.standard_normal((1, 8, 3, 8, 8)).astype(np.float32)
    names = ["transformer_blocks.0.attn1.to_q.weight", "temporal_transformer_blocks.1.ff.net.0.proj.bias",
             "transformer_blocks.1.scale_shift_table", "caption_projection.linear_1.weight",
             "adaln_single.emb.timestep_embedder.linear_1.weight", "pos_embed.proj.weight"]
    loss = (ref(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(text)).sample
            * torch.from_numpy(weights)).sum()
    ref.zero_grad()
    loss.backward()
    params = dict(ref.named_parameters())
    sd = model.state_dict()
    model.train()   # Jittor's eval() stops parameter gradients; train() restores them
    try:
        with ops.use_fused(True):
            ours = (model(jt.array(x), jt.array(t), jt.array(text)) * jt.array(weights)).sum()
            grads = [g.numpy() for g in jt.grad(ours, [sd[n] for n in names])]
    finally:
        model.eval()
    for name, g in zip(names, grads):
        want = params[name].grad.numpy()
        assert max_err(g, want) <= 1e-3 * max(1.0, float(np.abs(want).max())), name


def test_latte_temporal_cross_attention(latte_pair, tmp_path):
    """jvideo's extension: temporal blocks cross-attend too. With their cross-attention output
    zeroed the model equals the plain one; with the spatial blocks' zeroed instead the text still
    changes the output (read on the time lines); masked padding changes nothing; save/load."""
    _, model, folder = latte_pair
    raw = json.loads((folder / "config.json").read_text())
    assert all(block.attn2 is None for block in model.temporal_transformer_blocks)
    ours = models.Latte(models.LatteConfig.from_dict({**raw, "temporal_cross_attention": True}))
    ours.load_state_dict(model.state_dict())
    rng = np.random.default_rng(9)
    x = jt.array(rng.standard_normal((2, 4, 3, 8, 8)).astype(np.float32))
    t = jt.array(np.array([300, 40]))
    text = rng.standard_normal((2, 3, 12)).astype(np.float32)
    other = jt.array(rng.standard_normal((2, 3, 12)).astype(np.float32))

    def zero_out(blocks) -> list:
        saved = [(b.attn2.to_out[0].weight.numpy(), b.attn2.to_out[0].bias.numpy()) for b in blocks]
        for b in blocks:
            b.attn2.to_out[0].weight.update(jt.zeros(b.attn2.to_out[0].weight.shape))
            b.attn2.to_out[0].bias.update(jt.zeros(b.attn2.to_out[0].bias.shape))
        return saved

    def restore(blocks, saved) -> None:
        for b, (w, bias) in zip(blocks, saved):
            b.attn2.to_out[0].weight.update(jt.array(w))
            b.attn2.to_out[0].bias.update(jt.array(bias))

    saved = zero_out(ours.temporal_transformer_blocks)
    assert max_err(ours(x, t, jt.array(text)).numpy(), model(x, t, jt.array(text)).numpy()) <= 1e-5
    restore(ours.temporal_transformer_blocks, saved)
    full = ours(x, t, jt.array(text)).numpy()
    padded = np.concatenate([text, 50 * rng.standard_normal((2, 2, 12)).astype(np.float32)], axis=1)
    mask = jt.array(np.array([[1, 1, 1, 0, 0]] * 2, np.float32))
    assert max_err(ours(x, t, jt.array(padded), mask).numpy(), full) <= 1e-4
    zero_out(ours.transformer_blocks)
    assert max_err(ours(x, t, jt.array(text)).numpy(), ours(x, t, other).numpy()) > 1e-3
    again = models.from_pretrained(models.save_pretrained(ours, tmp_path / "temporal"))
    assert max_err(again(x, t, jt.array(text)).numpy(), ours(x, t, jt.array(text)).numpy()) == 0.0


def test_latte_cross_attention_reads_each_clip_once(latte_pair):
    """A block's cross-attention on a clip's G rows at once equals diffusers' way, the context
    repeated per row (padding masked), and one clip's context never reaches another's rows."""
    from jvideo.models.latte import repeat_rows
    _, model, _ = latte_pair
    block = model.transformer_blocks[0]
    rng = np.random.default_rng(4)
    d = model.config.hidden_size
    x = jt.array(rng.standard_normal((2 * 3, 5, d)).astype(np.float32))          # 2 clips x 3 frames
    context = jt.array(rng.standard_normal((2, 4, model.config.cross_attention_dim)).astype(np.float32))
    mask = jt.array(np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.float32))
    per_clip = block.cross_attention(x, context, mask).numpy()
    per_row = block.attn2(x, repeat_rows(context, 3), repeat_rows(mask, 3)).numpy()
    assert max_err(per_clip, per_row) <= 1e-5
    other = context.numpy().copy()
    other[1] += 5.0
    changed = block.cross_attention(x, jt.array(other), mask).numpy()
    assert max_err(changed[:3], per_clip[:3]) == 0.0 and max_err(changed[3:], per_clip[3:]) > 1e-3


def extended_latte(latte_pair, extension: str, seed: int):
    """The pair's plain Latte and the same weights built with jvideo's `extension` turned on, with
    an rng and inputs x (2 clips of 3 frames), t and text drawn from it: (model, ours, rng, x, t, text)."""
    _, model, folder = latte_pair
    raw = json.loads((folder / "config.json").read_text())
    ours = models.Latte(models.LatteConfig.from_dict({**raw, extension: True}))
    ours.load_state_dict(model.state_dict())
    rng = np.random.default_rng(seed)
    x = jt.array(rng.standard_normal((2, 4, 3, 8, 8)).astype(np.float32))
    t = jt.array(np.array([300, 40]))
    text = jt.array(rng.standard_normal((2, 3, 12)).astype(np.float32))
    return model, ours, rng, x, t, text


def test_latte_frame_modulation(latte_pair, tmp_path):
    """jvideo's extension: with its frame vectors at their zero start the model equals the plain
    one; once they differ the output changes, image mode (frames as independent images) ignores
    them; save/load."""
    model, ours, rng, x, t, text = extended_latte(latte_pair, "frame_modulation", 11)
    assert np.all(ours.frame_embedding.numpy() == 0)
    plain = model(x, t, text).numpy()
    assert max_err(ours(x, t, text).numpy(), plain) <= 1e-5
    d = ours.config.hidden_size
    ours.frame_embedding.update(jt.array(rng.standard_normal((ours.config.video_length, d)).astype(np.float32)))
    assert max_err(ours(x, t, text).numpy(), plain) > 1e-3
    assert max_err(ours(x, t, text, enable_temporal=False).numpy(),
                   model(x, t, text, enable_temporal=False).numpy()) <= 1e-5
    again = models.from_pretrained(models.save_pretrained(ours, tmp_path / "frames"))
    assert max_err(again(x, t, text).numpy(), ours(x, t, text).numpy()) == 0.0


def test_latte_block_modulation(latte_pair, tmp_path):
    """jvideo's extension: with its zero-initialised per-block maps the model equals the plain
    one; once a block's map is learnt the output changes, and differently at two timesteps than
    a constant offset would (it reads the timestep); save/load."""
    model, ours, rng, x, t, text = extended_latte(latte_pair, "block_modulation", 13)
    plain = model(x, t, text).numpy()
    assert max_err(ours(x, t, text).numpy(), plain) <= 1e-5
    for blocks in (ours.transformer_blocks, ours.temporal_transformer_blocks):
        linear = blocks[0].block_modulation
        linear.weight.update(jt.array(rng.standard_normal(linear.weight.shape).astype(np.float32) * 0.05))
    learnt = ours(x, t, text).numpy()
    assert max_err(learnt, plain) > 1e-3
    # The same clip at another timestep: the per-block map moves the output by a different amount.
    t_other = jt.array(np.array([900, 900]))
    assert abs(max_err(ours(x, t_other, text).numpy(), model(x, t_other, text).numpy())
               - max_err(learnt, plain)) > 1e-4
    again = models.from_pretrained(models.save_pretrained(ours, tmp_path / "blocks"))
    assert max_err(again(x, t, text).numpy(), learnt) == 0.0


def test_latte_layout_conditioning(latte_pair, tmp_path):
    """jvideo's extension: with its zero-initialised layout embedding the model equals the plain
    one whatever the layout; once the embedding is learnt the layout changes the output, only in
    the frames whose layout differs; save/load."""
    model, ours, rng, x, t, text = extended_latte(latte_pair, "layout_conditioning", 12)
    layout = rng.random((2, 2, 3, 8, 8)).astype(np.float32)
    plain = model(x, t, text).numpy()
    assert max_err(ours(x, t, text, layout=jt.array(layout)).numpy(), plain) <= 1e-5
    weight = ours.layout_embed.weight
    weight.update(jt.array(rng.standard_normal(weight.shape).astype(np.float32)))
    with_layout = ours(x, t, text, layout=jt.array(layout)).numpy()
    assert max_err(with_layout, plain) > 1e-3
    other = layout.copy()
    other[1] = 0.0     # the second clip loses its layout: the first clip's output must not move
    changed = ours(x, t, text, layout=jt.array(other)).numpy()
    assert max_err(changed[0], with_layout[0]) <= 1e-5 and max_err(changed[1], with_layout[1]) > 1e-3
    again = models.from_pretrained(models.save_pretrained(ours, tmp_path / "layout"))
    assert max_err(again(x, t, text, layout=jt.array(layout)).numpy(), with_layout) == 0.0
