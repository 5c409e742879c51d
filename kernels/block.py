"""A DiT block (adaLN-Zero) written on kernels.ops, and the same block in PyTorch.

Used by the kernel benchmark to time a whole block, forward and forward+backward, with the
fused kernels, the reference path (same code, switch off), PyTorch eager and torch.compile.
Both sides get the same weights (numpy), so their outputs can be compared too.

    c -> SiLU -> Linear(C, 6C) -> shift1, scale1, gate1, shift2, scale2, gate2
    x = x + gate1 * Proj(Attn(LN(x) * (1 + scale1) + shift1))
    x = x + gate2 * FC2(GELU_tanh(FC1(LN(x) * (1 + scale2) + shift2)))
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import ops, runtime

jt = runtime.import_jittor()


@dataclass
class BlockConfig:
    hidden: int = 384
    heads: int = 6
    mlp_ratio: int = 4


def init_weights(cfg: BlockConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights, (out, in) layout like torch.nn.Linear. adaLN is not zero here, so every
    branch contributes to the output (with zero gates the comparison would be trivial)."""
    rng = np.random.default_rng(seed)
    C, Hm = cfg.hidden, cfg.hidden * cfg.mlp_ratio

    def lin(o, i):
        return (rng.standard_normal((o, i)) / np.sqrt(i)).astype("float32"), \
            (rng.standard_normal(o) * 0.02).astype("float32")

    w = {}
    w["ada_w"], w["ada_b"] = lin(6 * C, C)
    w["qkv_w"], w["qkv_b"] = lin(3 * C, C)
    w["proj_w"], w["proj_b"] = lin(C, C)
    w["fc1_w"], w["fc1_b"] = lin(Hm, C)
    w["fc2_w"], w["fc2_b"] = lin(C, Hm)
    return w


class JittorDiTBlock:
    """x (B, N, C), c (B, C) -> (B, N, C), built from kernels.ops (fused or reference by switch)."""

    def __init__(self, cfg: BlockConfig, weights: dict[str, np.ndarray]):
        self.cfg = cfg
        # store W^T so the matmuls are (rows, in) @ (in, out)
        self.p = {k: jt.array(v.T.copy() if v.ndim == 2 else v) for k, v in weights.items()}

    def parameters(self) -> list:
        return list(self.p.values())

    def _linear(self, x2, name):
        return jt.matmul(x2, self.p[name + "_w"]) + self.p[name + "_b"]

    def __call__(self, x, c):
        B, N, C = x.shape
        H = self.cfg.heads
        D = C // H
        p = self.p
        mod = jt.matmul(c * jt.sigmoid(c), p["ada_w"]) + p["ada_b"]          # (B, 6C)
        sh1, sc1, g1, sh2, sc2, g2 = [mod[:, i * C:(i + 1) * C] for i in range(6)]
        h = ops.layernorm_modulate(x, sh1, sc1).reshape(B * N, C)
        qkv = self._linear(h, "qkv").reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4)
        a = ops.attention(qkv[0], qkv[1], qkv[2])                          # (B, H, N, D)
        a = self._linear(a.permute(0, 2, 1, 3).reshape(B * N, C), "proj").reshape(B, N, C)
        x, h = ops.gated_residual_layernorm_modulate(x, g1, a, sh2, sc2)  # one pass over x
        h = h.reshape(B * N, C)
        h = ops.bias_gelu(jt.matmul(h, p["fc1_w"]), p["fc1_b"])
        h = self._linear(h, "fc2").reshape(B, N, C)
        return ops.gated_residual(x, g2, h)


def torch_block(cfg: BlockConfig, weights: dict[str, np.ndarray]):
    """The same block as a torch.nn.Module (eager PyTorch, standard functional ops)."""
    import torch
    import torch.nn.functional as F

    class TorchDiTBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.tensor(v)) for k, v in weights.items()})

        def forward(self, x, c):
            B, N, C = x.shape
            H = cfg.heads
            p = self.p
            mod = F.linear(F.silu(c), p["ada_w"], p["ada_b"])
            sh1, sc1, g1, sh2, sc2, g2 = mod.chunk(6, dim=1)
            h = F.layer_norm(x, (C,), eps=1e-6) * (1 + sc1[:, None]) + sh1[:, None]
            qkv = F.linear(h, p["qkv_w"], p["qkv_b"]).reshape(B, N, 3, H, C // H).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
            a = F.linear(a.transpose(1, 2).reshape(B, N, C), p["proj_w"], p["proj_b"])
            x = x + g1[:, None] * a
            h = F.layer_norm(x, (C,), eps=1e-6) * (1 + sc2[:, None]) + sh2[:, None]
            h = F.gelu(F.linear(h, p["fc1_w"], p["fc1_b"]), approximate="tanh")
            return x + g2[:, None] * F.linear(h, p["fc2_w"], p["fc2_b"])

    return TorchDiTBlock()
