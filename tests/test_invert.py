"""Decoder inversion (generation/invert.py) on the shipped checkpoint's VAE."""
import numpy as np
import pytest

from jvideo.generation.presets import SHIPPED_CHECKPOINT


@pytest.fixture(scope="module")
def vae_and_clip():
    from jvideo.generation.conditioning import frames_to_tensor
    from jvideo.models import from_pretrained
    from jvideo.toyworld import CAST, render_clip, sample_params
    from jvideo.toyworld.render import object_mask
    vae = from_pretrained(SHIPPED_CHECKPOINT / "vae")
    vae.eval()
    kit = next(c for c in CAST if c.name == "Kit")   # a ringed square: the ring is what the encoder loses
    params = sample_params(np.random.default_rng(3), look=kit.look, name=kit.name, motion="right",
                           camera="medium", frames=4, size=64)
    return vae, frames_to_tensor(render_clip(params)), object_mask(params).astype(np.float32)


def _error(vae, z, x, mask) -> float:
    """The object's mean absolute reconstruction error."""
    from kernels import runtime
    jt = runtime.import_jittor()
    with jt.no_grad():
        err = np.abs(vae.decode(z).numpy() - x.numpy()).mean(axis=1)   # (N, H, W)
    return float((err * mask).sum() / mask.sum())


def test_zero_steps_is_the_encoders_mean(vae_and_clip):
    from jvideo.generation.invert import Inversion, invert
    vae, x, mask = vae_and_clip
    z = invert(vae, x, mask, Inversion(steps=0))
    np.testing.assert_array_equal(z.numpy(), vae.encode(x).mode().numpy())


def test_inversion_draws_the_object_closer_and_repeats(vae_and_clip):
    from jvideo.generation.invert import Inversion, invert
    vae, x, mask = vae_and_clip
    before = _error(vae, invert(vae, x, mask, Inversion(steps=0)), x, mask)
    z = invert(vae, x, mask)
    after = _error(vae, z, x, mask)
    assert after < 0.95 * before, (before, after)   # measured: 0.127 -> 0.117 in 8 steps
    np.testing.assert_array_equal(z.numpy(), invert(vae, x, mask).numpy())   # no noise drawn


def test_only_free_cells_move(vae_and_clip):
    """With `free`, cells outside it keep their start (the DiT's cells around a held subject)."""
    from jvideo.generation.invert import Inversion, invert
    vae, x, mask = vae_and_clip
    start = vae.encode(x).mode()
    free = np.zeros((x.shape[0], 1) + tuple(start.shape[2:]), np.float32)
    free[:, :, 4:12, 4:12] = 1.0
    z = invert(vae, x, mask, Inversion(steps=4), start=start, free=free).numpy()
    outside = np.broadcast_to(free == 0, z.shape)
    np.testing.assert_array_equal(z[outside], start.numpy()[outside])
    assert np.abs(z - start.numpy())[~outside].max() > 1e-3
