"""Text-to-shot sampling: DDIM with classifier-free guidance and an optional identity reference."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernels import runtime

from .conditioning import TextConditioner, reference_kwargs, reference_latents, tensor_to_frames
from .limits import MAX_PROMPT_CHARS, check_request, checkpoint_preset  # noqa: F401 - MAX_PROMPT_CHARS re-exported
from .presets import Preset
from .world_model import diffusion_schedule

jt = runtime.import_jittor()



@dataclass
class Generator:
    """A trained checkpoint folder loaded for sampling (see train.py for the layout)."""
    preset: Preset
    vae: object
    dit: object
    text: TextConditioner

    @classmethod
    def load(cls, folder: str | Path) -> "Generator":
        from jvideo.models import from_pretrained
        folder = Path(folder)
        preset = checkpoint_preset(folder)
        vae = from_pretrained(folder / "vae")
        vae.scaling_factor = vae.config.scaling_factor
        dit = from_pretrained(folder / "dit")
        return cls(preset, vae, dit, TextConditioner(preset.text_tokens))

    def check_request(self, prompt: str, frames: int, steps: int, cfg: float) -> None:
        check_request(self.preset, prompt, frames, steps, cfg)

    def generate(self, prompt: str, reference: np.ndarray | None = None, seed: int = 0, frames: int | None = None,
                 steps: int = 25, cfg: float = 4.0) -> np.ndarray:
        """-> frames (T, H, W, 3) uint8. The same arguments give the same frames."""
        return self.generate_batch([prompt], None if reference is None else reference[None], [seed],
                                   frames, steps, cfg)[0]

    def generate_batch(self, prompts: list[str], references: np.ndarray | None, seeds: list[int],
                       frames: int | None = None, steps: int = 25, cfg: float = 4.0) -> np.ndarray:
        """prompts (B,), references (B, H, W, 3) uint8 or None -> (B, T, H, W, 3) uint8.

        Classifier-free guidance on the text: the unconditional branch keeps the reference and
        drops the caption, so guidance strengthens what the text says without losing identity.
        """
        frames = frames or self.preset.frames
        for p in prompts:
            self.check_request(p, frames, steps, cfg)
        b = len(prompts)
        schedule = diffusion_schedule(self.preset)
        c, s = self.preset.vae.latent_channels, self.preset.latent_size
        noise = np.stack([np.random.default_rng(seed).standard_normal((c, frames, s, s)) for seed in seeds])
        x = jt.array(noise.astype(np.float32))
        with jt.no_grad():
            keep = np.ones(b, bool)
            ref = reference_latents(self.vae, references, keep, batch=b)           # (B, c, 1, s, s)
            emb, mask = self.text.encode(list(prompts) + [""] * b)
            ref2 = jt.concat([ref, ref], dim=0)
            has_ref = np.full(2 * b, references is not None, np.float32)
            ref_tokens = reference_kwargs(self.dit, ref2, has_ref)
            for t in schedule.set_timesteps(steps):
                x_in = jt.concat([x, x], dim=0)
                tt = jt.array(np.full(2 * b, float(t), np.float32))
                out = self.dit(jt.concat([ref2, x_in], dim=2), tt, emb, mask, **ref_tokens)[:, :, 1:]
                cond, uncond = out[:b], out[b:]
                guided = uncond + cfg * (cond - uncond)
                x = schedule.step(guided, int(t), x)
            video = self.vae.decode(x / self.vae.scaling_factor)
            jt.sync_all()
        return tensor_to_frames(video)

