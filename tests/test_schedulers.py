"""DDPM/DDIM maths vs diffusers' schedulers, and a 10-step DDIM loop with the same model."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from jvideo.errors import JVideoError  # noqa: E402
from jvideo.schedulers import DDIMScheduler, NoiseSchedule, classifier_free_guidance, ddim_sample  # noqa: E402
from kernels import ops  # noqa: E402

from _model_refs import make_dit, max_err  # noqa: E402

SCHEDULES = [dict(beta_schedule="linear"), dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
             dict(beta_schedule="squaredcos_cap_v2"), dict(beta_schedule="linear", rescale_betas_zero_snr=True)]


@pytest.mark.parametrize("kw", SCHEDULES, ids=lambda kw: kw["beta_schedule"] + ("-zsnr" if len(kw) == 2 else ""))
def test_alphas_cumprod_match(kw):
    theirs = diffusers.DDIMScheduler(**kw).alphas_cumprod.numpy()
    ours = NoiseSchedule(**kw).alphas_cumprod
    assert ours.dtype == np.float32 and max_err(ours, theirs) <= 1e-6


@pytest.mark.parametrize("spacing,offset", [("leading", 1), ("leading", 0), ("trailing", 0), ("linspace", 0)])
def test_timesteps_match(spacing, offset):
    theirs = diffusers.DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
    theirs.set_timesteps(17)
    ours = DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
    assert np.array_equal(ours.set_timesteps(17), theirs.timesteps.numpy())


def test_add_noise_and_velocity_match():
    rng = np.random.default_rng(0)
    x0, noise = rng.standard_normal((2, 3, 4, 5)).astype(np.float32), rng.standard_normal((4, 3, 4, 5)).astype(np.float32)[:2]
    t = np.array([10, 990])
    theirs = diffusers.DDPMScheduler()
    ours = NoiseSchedule()
    want = theirs.add_noise(torch.from_numpy(x0), torch.from_numpy(noise), torch.from_numpy(t)).numpy()
    assert max_err(ours.add_noise(x0, noise, t), want) <= 1e-5
    want_v = theirs.get_velocity(torch.from_numpy(x0), torch.from_numpy(noise), torch.from_numpy(t)).numpy()
    assert max_err(ours.velocity(x0, noise, t), want_v) <= 1e-5
    # the x0 a velocity implies is the x0 it came from
    xt = ours.add_noise(x0, noise, t)
    assert max_err(ours.original_from_velocity(xt, ours.velocity(x0, noise, t), t), x0) <= 1e-5


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("set_alpha_to_one,clip", [(True, False), (False, True)])
def test_single_steps_match(prediction_type, set_alpha_to_one, clip):
    kw = dict(prediction_type=prediction_type, set_alpha_to_one=set_alpha_to_one, clip_sample=clip)
    theirs, ours = diffusers.DDIMScheduler(**kw), DDIMScheduler(**kw)
    theirs.set_timesteps(10)
    ours.set_timesteps(10)
    rng = np.random.default_rng(1)
    for t in ours.timesteps[[0, 5, 9]]:
        out, x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32), rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
        want = theirs.step(torch.from_numpy(out), int(t), torch.from_numpy(x)).prev_sample.numpy()
        assert max_err(ours.step(out, int(t), x), want) <= 1e-5


def test_eta_needs_explicit_noise_and_matches():
    theirs, ours = diffusers.DDIMScheduler(clip_sample=False), DDIMScheduler(clip_sample=False)
    theirs.set_timesteps(5)
    ours.set_timesteps(5)
    rng = np.random.default_rng(2)
    out, x, z = (rng.standard_normal((1, 4, 2, 2)).astype(np.float32) for _ in range(3))
    t = int(ours.timesteps[1])
    want = theirs.step(torch.from_numpy(out), t, torch.from_numpy(x), eta=0.5,
                       variance_noise=torch.from_numpy(z)).prev_sample.numpy()
    assert max_err(ours.step(out, t, x, eta=0.5, variance_noise=z), want) <= 1e-5
    with pytest.raises(JVideoError):
        ours.step(out, t, x, eta=0.5)


def test_full_stochasticity_from_pure_noise_stays_finite():
    """eta = 1 with a zero-terminal-SNR schedule (v-prediction, trailing steps): the first step's
    deterministic share is 1 - a_prev - std^2 = 0 exactly in theory, and can round below zero."""
    ours = DDIMScheduler(beta_schedule="linear", rescale_betas_zero_snr=True, prediction_type="v_prediction",
                         timestep_spacing="trailing", clip_sample=False)
    ours.set_timesteps(25)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 4, 4)).astype(np.float32)
    for t in ours.timesteps:
        out, z = (rng.standard_normal(x.shape).astype(np.float32) for _ in range(2))
        x = ours.step(out, int(t), x, eta=1.0, variance_noise=z)
        assert np.isfinite(x).all(), f"step {t}"


@pytest.mark.parametrize("fused", [pytest.param(True, id="fused"), pytest.param(False, id="reference")])
def test_ten_step_ddim_loop_matches_diffusers(tmp_path_factory, fused):
    """Same DiT weights, same initial noise, classifier-free guidance: ours (Jittor) vs
    diffusers' DDIMScheduler + DiTTransformer2DModel (PyTorch) after 10 steps."""
    from jvideo import models
    from kernels import runtime
    jt = runtime.import_jittor()
    folder = tmp_path_factory.mktemp("ddim-dit")
    ref = make_dit(folder)
    model = models.from_pretrained(folder)
    noise = np.random.default_rng(3).standard_normal((2, 4, 8, 8)).astype(np.float32)
    labels, null = np.array([1, 7]), np.array([10, 10])
    # x0 clipped to [-1, 1] (diffusers' default): without it an untrained model's x0 = x / sqrt(a_t)
    # grows to hundreds and float32 rounding alone exceeds 1e-3 absolute.
    scale, kw = 3.0, dict(clip_sample=True, steps_offset=1)

    def ours_fn(x, t):
        xx = jt.concat([x, x], dim=0)
        out = model(xx, jt.array(np.full(4, t)), jt.array(np.concatenate([labels, null])))[:, :4]
        return classifier_free_guidance(out[:2], out[2:], scale)

    with ops.use_fused(fused):
        got = ddim_sample(ours_fn, jt.array(noise), DDIMScheduler(**kw), 10).numpy()

    sched = diffusers.DDIMScheduler(**kw)
    sched.set_timesteps(10)
    x = torch.from_numpy(noise)
    with torch.no_grad():
        for t in sched.timesteps:
            out = ref(torch.cat([x, x]), torch.full((4,), int(t)),
                      torch.from_numpy(np.concatenate([labels, null]))).sample[:, :4]
            eps = out[2:] + scale * (out[:2] - out[2:])
            x = sched.step(eps, t, x).prev_sample
    want = x.numpy()
    assert np.mean(np.abs(want) < 0.99) > 0.5        # most values are not saturated by the clip
    assert max_err(got, want) <= 1e-3
