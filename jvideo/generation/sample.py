"""Text-to-shot sampling: DDIM with classifier-free guidance and an optional identity reference."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jvideo.errors import JVideoError
from kernels import runtime

from .conditioning import TextConditioner, layout_kwargs, reference_kwargs, reference_latents, tensor_to_frames
from .layout import plan_layout
from .limits import MAX_PROMPT_CHARS, check_request, checkpoint_preset  # noqa: F401 - MAX_PROMPT_CHARS re-exported
from .presets import Preset
from .world_model import clip_noise, diffusion_schedule, dit_config

jt = runtime.import_jittor()


def check_layout(preset: Preset, config, folder: Path) -> None:
    """preset.json and dit/config.json must agree on the layout input: a DiT without one would
    silently ignore the plan, one with other channels would fail mid-sampling."""
    expected = dit_config(preset)
    if (config.layout_conditioning, config.layout_channels) != (expected.layout_conditioning,
                                                                expected.layout_channels):
        raise JVideoError(f"{folder}: preset.json and dit/config.json disagree on the layout input "
                          f"(preset: {expected.layout_channels if expected.layout_conditioning else 'none'}, "
                          f"DiT: {config.layout_channels if config.layout_conditioning else 'none'})")


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
        check_layout(preset, dit.config, folder)
        return cls(preset, vae, dit, TextConditioner(preset.text_tokens, word_tokens=preset.word_tokens))

    def check_request(self, prompt: str, frames: int, steps: int, cfg: float, ref_cfg: float = 1.0) -> None:
        check_request(self.preset, prompt, frames, steps, cfg, ref_cfg)

    def generate(self, prompt: str, reference: np.ndarray | None = None, seed: int = 0, frames: int | None = None,
                 steps: int = 25, cfg: float = 4.0, ref_cfg: float = 1.0) -> np.ndarray:
        """-> frames (T, H, W, 3) uint8. The same arguments give the same frames."""
        return self.generate_batch([prompt], None if reference is None else reference[None], [seed],
                                   frames, steps, cfg, ref_cfg)[0]

    def layouts(self, prompts: list[str], seeds: list[int], frames: int,
                references: np.ndarray | None = None) -> np.ndarray | None:
        """(B, C, T, h, w) planned layouts of the prompts (generation/layout.py), or None for a
        DiT without layout conditioning. With DiTPreset.reference_paste, references (B, c, h, w)
        (the cropped references' latents, or None) are drawn into the subject's window."""
        if not self.preset.dit.layout:
            return None
        p = self.preset
        paste = p.vae.latent_channels if p.dit.reference_paste else 0
        return np.stack([plan_layout(prompt, seed, frames, p.size, p.size // p.latent_size, paste,
                                     None if references is None else references[i])
                         for i, (prompt, seed) in enumerate(zip(prompts, seeds))])

    def generate_batch(self, prompts: list[str], references: np.ndarray | None, seeds: list[int],
                       frames: int | None = None, steps: int = 25, cfg: float = 4.0,
                       ref_cfg: float = 1.0) -> np.ndarray:
        """prompts (B,), references (B, H, W, 3) uint8 or None -> (B, T, H, W, 3) uint8.

        Classifier-free guidance on the text: the unconditional branch keeps the reference and
        drops the caption, so guidance strengthens what the text says without losing identity.
        With a reference and ref_cfg != 1 a third branch drops the reference and keeps the
        caption, and guidance also pushes away from it (the model learnt both, reference_dropout):
            cond + (cfg - 1)(cond - no_text) + (ref_cfg - 1)(cond - no_reference).
        A layout-conditioned DiT (DiTPreset.layout) gets each prompt's planned layout
        (generation/layout.py, from the prompt and the seed) in every branch.
        """
        frames = frames or self.preset.frames
        for p in prompts:
            self.check_request(p, frames, steps, cfg, ref_cfg)
        b = len(prompts)
        schedule = diffusion_schedule(self.preset)
        c, s = self.preset.vae.latent_channels, self.preset.latent_size
        shared = self.preset.dit.shared_noise
        noise = np.stack([clip_noise(np.random.default_rng(seed).standard_normal, (c, frames, s, s), shared)
                          for seed in seeds])
        x = jt.array(noise.astype(np.float32))
        # Branches: (caption, reference), (no caption, reference)[, (caption, no reference)].
        branches = 3 if references is not None and ref_cfg != 1.0 else 2
        with jt.no_grad():
            ref = reference_latents(self.vae, references, np.ones(b, bool), batch=b,
                                    crop=self.preset.dit.reference_crop)   # (B, c, 1, s, s)
            emb, mask = self.text.encode(list(prompts) + [""] * b + list(prompts) * (branches - 2))
            has_ref = np.repeat(np.array([1, 1, 0][:branches], np.float32) * (references is not None), b)
            refs = jt.concat([ref] * branches, dim=0) * jt.array(has_ref).reshape((-1, 1, 1, 1, 1))
            ref_tokens = reference_kwargs(self.dit, refs, has_ref)
            with_ref = self.layouts(prompts, seeds, frames, None if references is None else ref.numpy()[:, :, 0])
            if with_ref is not None and branches == 3:   # the third branch has no reference
                with_ref = np.concatenate([with_ref, with_ref, self.layouts(prompts, seeds, frames)])
            elif with_ref is not None:
                with_ref = np.concatenate([with_ref] * branches)
            layout = layout_kwargs(self.dit, with_ref, branches * b, frames, s)
            for t in schedule.set_timesteps(steps):
                x_in = jt.concat([x] * branches, dim=0)
                tt = jt.array(np.full(branches * b, float(t), np.float32))
                out = self.dit(jt.concat([refs, x_in], dim=2), tt, emb, mask, **ref_tokens, **layout)[:, :, 1:]
                cond, no_text = out[:b], out[b:2 * b]
                guided = no_text + cfg * (cond - no_text)   # = cond + (cfg - 1)(cond - no_text)
                if branches == 3:
                    guided = guided + (ref_cfg - 1.0) * (cond - out[2 * b:])
                x = schedule.step(guided, int(t), x)
            video = self.vae.decode(x / self.vae.scaling_factor)
            jt.sync_all()
        return tensor_to_frames(video)

