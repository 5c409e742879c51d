"""Exponential moving average of a model's weights: the weights a DiT samples with.

A diffusion model's raw weights at any one step carry that step's gradient noise, and the samples
show it; DiT and Latte sample from an average of the recent weights instead. Training keeps
updating the raw weights; the average follows them, and is what a checkpoint's model folder holds.
"""
from __future__ import annotations

import numpy as np

from jvideo.models.loading import vars_numpy
from kernels import runtime

jt = runtime.import_jittor()


def ema_decay(decay: float, step: int) -> float:
    """The decay used after optimizer step `step` (from 0): `decay`, but smaller early on
    ((1 + step) / (10 + step)), so that the first average is not mostly the initial weights."""
    return min(decay, (1.0 + step) / (10.0 + step))


class WeightAverage:
    """Running average of every weight in `model.state_dict()`, kept beside the model."""

    def __init__(self, model, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"an average's decay is in (0, 1), not {decay!r}")
        self.decay = decay
        self.weights = dict(model.state_dict())                             # name -> live Var
        self.average = {k: v.clone().stop_grad() for k, v in self.weights.items()}
        jt.sync(list(self.average.values()))

    def update(self, step: int) -> None:
        """Fold the model's current weights in, after optimizer step `step`."""
        d = ema_decay(self.decay, step)
        for name, avg in self.average.items():
            avg.update(avg * d + self.weights[name].detach() * (1.0 - d))
        jt.sync(list(self.average.values()))   # run now: left lazy, each step would chain onto the last

    def state_dict_numpy(self) -> dict[str, np.ndarray]:
        return vars_numpy(self.average)

    def load(self, weights: dict[str, np.ndarray]) -> None:
        """Set the average from saved arrays (same names and shapes as the model's)."""
        for name, avg in self.average.items():
            avg.update(jt.array(np.ascontiguousarray(weights[name], dtype=np.float32)))
        jt.sync(list(self.average.values()))
