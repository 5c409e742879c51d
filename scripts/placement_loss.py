"""The t = 900 loss comparison of README "Generation", items 20-21 (a one-off measurement).

    .venv/bin/python scripts/placement_loss.py CHECKPOINT [RENDERS]

On the evaluation's 64 probe clips: the object-weighted MSE (weight 1 + 4 on object cells, as
the tiny recipes train) of the DiT's clean-latent estimate at t = 900 and 600, next to that of
estimates that know each clip's attributes but not its track: the mean latents of RENDERS (8)
re-renders with fresh tracks ("placed"), their frame average ("smeared") and half of them in the
opposite direction ("direction-blind").
"""
import sys

import numpy as np

from jvideo.generation.evaluate import OPPOSITE, clean_estimate, encode_clips, probe_clips, rerendered
from jvideo.generation.sample import Generator
from jvideo.generation.train import object_weights


def main(checkpoint: str, renders: int = 8) -> None:
    gen = Generator.load(checkpoint)
    p = gen.preset
    clips = probe_clips(gen, 64, 0)
    truth = clips.latents.numpy()
    rng = np.random.default_rng(99)

    def mean_latents(motion_of) -> np.ndarray:
        total = np.zeros_like(truth)
        for _ in range(renders):
            total += encode_clips(gen, rerendered(gen, clips, rng, motion_of))
        return total / renders

    placed = mean_latents(lambda q: q.motion)
    opposite = mean_latents(lambda q: OPPOSITE[q.motion])
    weights = object_weights(clips.params, p.size // p.latent_size, 4.0)[:, None]

    def loss(estimate: np.ndarray) -> float:
        return float(((estimate - truth) ** 2 * weights).mean() / weights.mean())

    model = {t0: loss(clean_estimate(gen, clips, 0, t0)) for t0 in (900, 600)}
    smeared = placed.mean(axis=2, keepdims=True).repeat(truth.shape[2], axis=2)
    print(f"{checkpoint}: model t=900 {model[900]:.3f}, t=600 {model[600]:.3f}; attributes placed "
          f"{loss(placed):.3f}, smeared {loss(smeared):.3f}, direction-blind {loss((placed + opposite) / 2):.3f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8)
