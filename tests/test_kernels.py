"""Fused kernels: forward and gradients against PyTorch and the reference path; the switch.

Shapes are small, odd, and not multiples of the kernels' tiles (16 lanes, 32 x 64 attention
tiles). jt.code ops read shapes at run time, so each op compiles once for all shapes here.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kernels import runtime

jt = runtime.import_jittor()
from kernels import ops  # noqa: E402

RNG = np.random.default_rng(1234)


def arr(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype("float32")


def run_jittor(fn, inputs, gout, fused):
    """Forward and input gradients of sum(fn(inputs) * gout) through one path."""
    xs = [jt.array(a) for a in inputs]
    with ops.use_fused(fused):
        y = fn(*xs)
    grads = jt.grad((y * jt.array(gout)).sum(), xs)
    return y.numpy(), [g.numpy() for g in grads]


def run_torch(fn, inputs, gout):
    xs = [torch.tensor(a, requires_grad=True) for a in inputs]
    y = fn(*xs)
    (y * torch.tensor(gout)).sum().backward()
    return y.detach().numpy(), [x.grad.numpy() for x in xs]


def assert_close(got, want, what, rtol=2e-5, atol=2e-5):
    # tolerance relative to the tensor's scale: sums over C elements carry fp32 rounding
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    assert err <= atol * scale + rtol * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


C = 37  # odd, not a multiple of 16
CASES = {
    "layer_norm": (lambda x, w, b: ops.layer_norm(x, w, b),
                   lambda x, w, b: F.layer_norm(x, (C,), w, b, eps=1e-5),
                   lambda: [arr(2, 5, C, scale=3.0) + 2.0, arr(C), arr(C)]),
    "layernorm_modulate": (lambda x, sh, sc: ops.layernorm_modulate(x, sh, sc),
                           lambda x, sh, sc: F.layer_norm(x, (C,), eps=1e-6) * (1 + sc[:, None]) + sh[:, None],
                           lambda: [arr(3, 7, C), arr(3, C), arr(3, C)]),
    "rms_norm": (lambda x, w: ops.rms_norm(x, w),
                 lambda x, w: F.rms_norm(x, (C,), w, eps=1e-6),
                 lambda: [arr(2, 3, 5, C), arr(C)]),
    "bias_gelu": (lambda x, b: ops.bias_gelu(x, b),
                  lambda x, b: F.gelu(x + b, approximate="tanh"),
                  lambda: [arr(3, 5, C, scale=4.0), arr(C)]),
    "gated_residual": (lambda x, g, y: ops.gated_residual(x, g, y),
                       lambda x, g, y: x + g[:, None] * y,
                       lambda: [arr(2, 9, C), arr(2, C), arr(2, 9, C)]),
    "gated_residual_layernorm_modulate": (
        lambda x, g, y, sh, sc: jt.concat(list(ops.gated_residual_layernorm_modulate(x, g, y, sh, sc)), -1),
        lambda x, g, y, sh, sc: torch.cat([x + g[:, None] * y, F.layer_norm(x + g[:, None] * y, (C,), eps=1e-6)
                                           * (1 + sc[:, None]) + sh[:, None]], -1),
        lambda: [arr(2, 9, C), arr(2, C), arr(2, 9, C), arr(2, C), arr(2, C)]),
    "attention": (lambda q, k, v: ops.attention(q, k, v),
                  lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
                  lambda: [arr(2, 3, 45, 20, scale=2.0), arr(2, 3, 70, 20, scale=2.0), arr(2, 3, 70, 20)]),
    "group_norm": (lambda x, w, b: ops.group_norm(x, 4, w, b, silu=True),
                   lambda x, w, b: F.silu(F.group_norm(x, 4, w, b, eps=1e-6)),
                   lambda: [arr(2, 8, 3, 5, 7, scale=2.0) + 1.0, arr(8), arr(8)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fused_matches_torch_and_reference(name):
    jfn, tfn, make = CASES[name]
    inputs = make()
    gout = arr(*tfn(*map(torch.tensor, inputs)).shape)
    want, want_g = run_torch(tfn, inputs, gout)
    fused, fused_g = run_jittor(jfn, inputs, gout, fused=True)
    assert ops.last_path(name) == "fused"
    ref, ref_g = run_jittor(jfn, inputs, gout, fused=False)
    assert ops.last_path(name) == "reference"
    assert_close(fused, want, f"{name} forward vs torch")
    assert_close(ref, want, f"{name} reference forward vs torch")
    assert_close(fused, ref, f"{name} forward vs reference")
    for i, (g, gt, gr) in enumerate(zip(fused_g, want_g, ref_g)):
        assert_close(g, gt, f"{name} grad {i} vs torch", rtol=1e-4)
        assert_close(g, gr, f"{name} grad {i} vs reference", rtol=1e-4)


def test_attention_extreme_scores_and_tiny_shapes():
    """Large logits (online softmax must rescale), a single query, keys < one tile, explicit scale;
    lengths either side of each tile size the forward picks (16 / 32 rows, 32 / 64 / 128 keys)."""
    for (L, S, D), scale in (((1, 3, 5), 0.7), ((33, 129, 16), 8.0), ((16, 17, 24), 3.0), ((17, 16, 24), 3.0),
                             ((16, 33, 8), 3.0), ((17, 64, 8), 3.0), ((16, 65, 8), 3.0), ((40, 32, 8), 3.0)):
        q, k, v = arr(1, 2, L, D, scale=3.0), arr(1, 2, S, D, scale=3.0), arr(1, 2, S, D)
        gout = arr(1, 2, L, D)
        want, want_g = run_torch(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=scale),
                                 [q, k, v], gout)
        got, got_g = run_jittor(lambda q, k, v: ops.attention(q, k, v, scale=scale), [q, k, v], gout, True)
        assert_close(got, want, f"attention {L}x{S}x{D} forward", rtol=1e-4)
        for g, gt in zip(got_g, want_g):
            assert_close(g, gt, f"attention {L}x{S}x{D} grad", rtol=3e-4)


@pytest.mark.parametrize("shape,groups", [((2, 32, 9), 8), ((1, 64, 4, 6), 32), ((1, 16, 2, 3, 5), 4)])
def test_group_norm_vae_shapes(shape, groups):
    """3-D, 4-D (VAE image) and 5-D (video) inputs, no SiLU, default weight/bias."""
    x = arr(*shape, scale=2.0)
    got = ops.group_norm(jt.array(x), groups).numpy()
    want = F.group_norm(torch.tensor(x), groups, eps=1e-6).numpy()
    assert_close(got, want, f"group_norm {shape}")


def test_layer_norm_without_affine_and_large_mean():
    """A large common offset: a one-pass E[x^2]-E[x]^2 variance would lose all precision here."""
    x = arr(4, 6, 130) + 300.0
    got = ops.layer_norm(jt.array(x)).numpy()
    want = F.layer_norm(torch.tensor(x), (130,)).numpy()
    assert_close(got, want, "layer_norm offset 300", atol=2e-4)
    with ops.use_fused(False):
        ref = ops.layer_norm(jt.array(x)).numpy()
    assert_close(ref, want, "reference layer_norm offset 300", atol=2e-4)


def test_bias_gelu_saturates_cleanly():
    """Far tails of GELU: exp clamping must give exact 0 / identity, never inf or nan."""
    x = np.array([[-200.0, -30.0, -5.0, 0.0, 1e-4, 5.0, 30.0, 200.0]], dtype="float32")
    b = np.zeros(8, dtype="float32")
    got = ops.bias_gelu(jt.array(x), jt.array(b)).numpy()
    want = F.gelu(torch.tensor(x), approximate="tanh").numpy()
    assert np.isfinite(got).all()
    assert_close(got, want, "bias_gelu tails")


def test_switch_changes_path_and_restores():
    x = jt.array(arr(2, 3, C))
    assert ops.fused_enabled()
    ops.layer_norm(x)
    assert ops.last_path("layer_norm") == "fused"
    with ops.use_fused(False):
        assert not ops.fused_enabled()
        ops.layer_norm(x)
        assert ops.last_path("layer_norm") == "reference"
        with ops.use_fused(True):
            ops.layer_norm(x)
            assert ops.last_path("layer_norm") == "fused"
        assert not ops.fused_enabled()
    assert ops.fused_enabled()
    with pytest.raises(RuntimeError):
        with ops.use_fused(False):
            raise RuntimeError("boom")
    assert ops.fused_enabled()
    ops.set_fused(False)
    try:
        ops.rms_norm(x)
        assert ops.last_path("rms_norm") == "reference"
    finally:
        ops.set_fused(True)


def test_bad_shapes_raise_clear_errors():
    x = jt.array(arr(2, 3, C))
    with pytest.raises(ValueError, match="layernorm_modulate"):
        ops.layernorm_modulate(x, jt.array(arr(3, C)), jt.array(arr(3, C)))
    with pytest.raises(ValueError, match="divisible"):
        ops.group_norm(jt.array(arr(1, 6, 4)), 4)
    with pytest.raises(ValueError, match="attention"):
        ops.attention(jt.array(arr(1, 2, 3, 4)), jt.array(arr(1, 2, 5, 8)), jt.array(arr(1, 2, 5, 8)))
