"""A noise-aware classifier of a subject's look in latent space, for classifier guidance.

As the noisy-image classifiers of Dhariwal & Nichol's classifier guidance (ADM), it reads a
noised latent and its noise level; unlike them it reads only a crop: the latent cells around
where the subject is planned to be, resampled to a fixed grid (generation/look_guidance.py), so
that a wide shot's small subject and a close-up's large one look alike to it. Two heads: the
subject's shape and its primary colour.
"""
from __future__ import annotations

from dataclasses import dataclass

from kernels import runtime as _runtime

jt = _runtime.import_jittor()
from jittor import nn  # noqa: E402

from .config import ModelConfig  # noqa: E402


@dataclass
class LookClassifierConfig(ModelConfig):
    CLASS_NAME = "JVideoLookClassifier"
    in_channels: int = 6          # the VAE's latent channels
    crop: int = 8                 # side of the resampled crop, cells (even)
    width: int = 32               # channels of the first two convolutions (then twice that)
    hidden: int = 128
    shapes: tuple[str, ...] = ("circle", "square", "triangle", "star")
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow", "white", "purple", "orange")

    def validate(self, raw) -> None:
        if self.crop < 2 or self.crop % 2:
            raise ValueError(f"crop must be even and at least 2, not {self.crop}")


class LookClassifier(nn.Module):
    """(crops (B, c, k, k), sqrt(alpha-bar) (B,)) -> (shape logits (B, S), colour logits (B, C))."""

    def __init__(self, config: LookClassifierConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.conv1 = nn.Conv2d(config.in_channels + 2, w, 3, padding=1)
        self.conv2 = nn.Conv2d(w, w, 3, padding=1)
        self.conv3 = nn.Conv2d(w, 2 * w, 3, padding=1)
        self.conv4 = nn.Conv2d(2 * w, 2 * w, 3, padding=1)
        self.fc = nn.Linear(2 * w * (config.crop // 2) ** 2, config.hidden)
        self.shape_head = nn.Linear(config.hidden, len(config.shapes))
        self.colour_head = nn.Linear(config.hidden, len(config.colours))

    def execute(self, crops, signal):
        """signal: sqrt(alpha-bar) of each crop's noise level; the noise's share sqrt(1 - a) is
        given beside it, both as constant planes."""
        b, k = crops.shape[0], self.config.crop
        signal = signal.reshape((b, 1, 1, 1))
        level = jt.concat([signal, (1.0 - signal * signal).maximum(0.0).sqrt()], dim=1).broadcast((b, 2, k, k))
        h = nn.silu(self.conv2(nn.silu(self.conv1(jt.concat([crops, level], dim=1)))))
        h = nn.pool(h, 2, "mean", stride=2)
        h = nn.silu(self.conv4(nn.silu(self.conv3(h))))
        h = nn.silu(_dense(self.fc, h))                                   # (b, hidden, 1, 1)
        return _dense(self.shape_head, h).reshape((b, -1)), _dense(self.colour_head, h).reshape((b, -1))


def _dense(layer, h):
    """A Linear layer on h (b, c, k, k) flattened, computed as a k x k convolution of its weight:
    the same product, but oneDNN's matrix product splits a long sum over threads (measured: the
    fc layer's outputs differ by 3e-6 between 1 and 2 threads), so a shot would depend on how
    many processes share the machine, and its convolution does not."""
    kernel = layer.weight.reshape((layer.weight.shape[0], h.shape[1], h.shape[2], h.shape[3]))
    return nn.conv2d(h, kernel, layer.bias)
