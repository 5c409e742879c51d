"""Text-to-shot sampling: DDIM with classifier-free guidance, classifier guidance towards the stated
look, and an optional identity reference."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from jvideo.errors import JVideoError
from kernels import runtime

from .conditioning import (TextConditioner, frames_to_tensor, layout_kwargs, reference_kwargs, reference_latents,
                           tensor_to_frames)
from .inpaint import Layer, clean_plate, cut_out, latent_mask, layer_along_track
from .invert import Inversion, invert
from .layout import plan_layout, plan_track
from .limits import MAX_PROMPT_CHARS, check_request, checkpoint_preset  # noqa: F401 - MAX_PROMPT_CHARS re-exported
from .look_guidance import LookTargets, look_gradient, stated_targets
from .presets import LOOK_SCALE, Preset
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
class Conditioning:
    """The DiT's inputs besides x and t for every guidance branch, stacked on the batch axis:
    (caption, reference), (no caption, reference)[, (caption, no reference)]."""
    branches: int
    refs: object            # (branches * B, c, 1, s, s) reference latents, zero where none
    emb: object             # (branches * B, L, 384) caption tokens
    mask: object            # (branches * B, L) their key mask
    kwargs: dict            # reference tokens and layout, where the DiT takes them
    look: LookTargets | None = None   # the stated looks classifier guidance pulls towards


@dataclass
class Paste:
    """One row's reference laid along its planned track over the first pass's clean plate: the
    pasted frames (T, H, W, 3) uint8 that the held latents are inverted from, what is held
    (T, H, W) float32 (the cut-out and the plate's disc) and the cut-out's layer (None where
    nothing was pasted)."""
    frames: np.ndarray
    held: np.ndarray
    layer: Layer | None


@dataclass
class Generator:
    """A trained checkpoint folder loaded for sampling (see train.py for the layout)."""
    preset: Preset
    vae: object
    dit: object
    text: TextConditioner
    # How the pasted reference frames become the latents the second pass holds (generation/
    # invert.py), and how the held cells are settled among the DiT's after it. The settling is
    # what keeps the look; 4 steps on the pasted frames kept as many held shots as 8 (README,
    # item 27).
    inversion: Inversion = field(default_factory=lambda: Inversion(steps=4))
    settle: Inversion = field(default_factory=Inversion)
    # DDIM steps of a held shot's first pass, which only gives the paste its clean plate and its
    # lighting (the second pass redraws every cell it does not hold; item 27).
    plate_steps: int = 8
    # A shot held to the end gets the cut-out laid over its decoded frames too (a compositor's
    # "over", inpaint.Layer): the VAE rounds off thin rings, dots and a star's points, which the
    # held latents cannot keep (README, items 24-29 and 32). False: the frames as decoded.
    composite: bool = True
    # The look classifier (checkpoint's look/, LookPreset) and the scale of classifier guidance
    # towards the look a prompt states (generation/look_guidance.py); None or 0: none.
    look: object | None = None
    look_scale: float = LOOK_SCALE

    @classmethod
    def load(cls, folder: str | Path) -> "Generator":
        from jvideo.models import from_pretrained
        folder = Path(folder)
        preset = checkpoint_preset(folder)
        vae = from_pretrained(folder / "vae")
        vae.scaling_factor = vae.config.scaling_factor
        dit = from_pretrained(folder / "dit")
        check_layout(preset, dit.config, folder)
        look = from_pretrained(folder / "look") if (folder / "look").is_dir() else None
        if look is not None:
            if look.config.in_channels != preset.vae.latent_channels:   # else it would fail mid-sampling
                raise JVideoError(f"{folder}: look/ reads {look.config.in_channels} latent channels, the VAE "
                                  f"has {preset.vae.latent_channels}")
            look.eval()
        return cls(preset, vae, dit, TextConditioner(preset.text_tokens, word_tokens=preset.word_tokens), look=look)

    @property
    def guides_look(self) -> bool:
        """Whether sampling pulls towards the stated look: a classifier, a scale and a layout
        (the classifier reads the cells where the layout plans the subject)."""
        return self.look is not None and self.look_scale > 0 and self.preset.dit.layout

    @property
    def applied_look_scale(self) -> float:
        """The scale sampling pulls towards the stated look with: look_scale, or 0 where it does
        not guide (what a report of the settings should say)."""
        return self.look_scale if self.guides_look else 0.0

    def check_request(self, prompt: str, frames: int, steps: int, cfg: float, ref_cfg: float = 1.0,
                      hold: float = 0.0) -> None:
        check_request(self.preset, prompt, frames, steps, cfg, ref_cfg, hold, self.look_scale)

    def generate(self, prompt: str, reference: np.ndarray | None = None, seed: int = 0, frames: int | None = None,
                 steps: int = 25, cfg: float = 4.0, ref_cfg: float = 1.0, hold: float = 0.0) -> np.ndarray:
        """-> frames (T, H, W, 3) uint8. The same arguments give the same frames."""
        return self.generate_batch([prompt], None if reference is None else reference[None], [seed],
                                   frames, steps, cfg, ref_cfg, hold)[0]

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
                                     None if references is None else references[i], p.dit.layout_look)
                         for i, (prompt, seed) in enumerate(zip(prompts, seeds))])

    def generate_batch(self, prompts: list[str], references: np.ndarray | None, seeds: list[int],
                       frames: int | None = None, steps: int = 25, cfg: float = 4.0,
                       ref_cfg: float = 1.0, hold: float = 0.0) -> np.ndarray:
        """prompts (B,), references (B, H, W, 3) uint8 or None -> (B, T, H, W, 3) uint8: the
        decoded frames of sample_batch, with each held cut-out laid over them where
        Generator.composite is on."""
        return self.composited(*self.sample_batch(prompts, references, seeds, frames, steps, cfg, ref_cfg, hold))

    def composited(self, video: np.ndarray, layers: list[Layer | None]) -> np.ndarray:
        """sample_batch's decoded frames (B, T, H, W, 3) with each row's layer laid over them,
        where there is one and Generator.composite is on."""
        if not self.composite:
            return video
        return np.stack([layer.over(row) if self.lays(layer) else row for row, layer in zip(video, layers)])

    def lays(self, layer: Layer | None) -> bool:
        """Whether composited() lays `layer` over its row: there is one and composite is on."""
        return self.composite and layer is not None

    def sample_batch(self, prompts: list[str], references: np.ndarray | None, seeds: list[int],
                     frames: int | None = None, steps: int = 25, cfg: float = 4.0,
                     ref_cfg: float = 1.0, hold: float = 0.0) -> tuple[np.ndarray, list[Layer | None]]:
        """prompts (B,), references (B, H, W, 3) uint8 or None -> (decoded frames (B, T, H, W, 3)
        uint8, per row the cut-out's layer along its track where the shot was held to the end,
        else None).

        Classifier-free guidance on the text: the unconditional branch keeps the reference and
        drops the caption, so guidance strengthens what the text says without losing identity.
        With a reference and ref_cfg != 1 a third branch drops the reference and keeps the
        caption, and guidance also pushes away from it (the model learnt both, reference_dropout):
            cond + (cfg - 1)(cond - no_text) + (ref_cfg - 1)(cond - no_reference).
        A layout-conditioned DiT (DiTPreset.layout) gets each prompt's planned layout
        (generation/layout.py, from the prompt and the seed) in every branch. With references,
        a layout and hold > 0, a second pass holds each reference's cut-out on the planned track
        for that fraction of the steps (generation/inpaint.py); the first pass, which then only
        gives the paste its plate, takes min(steps, plate_steps) steps.
        """
        frames = frames or self.preset.frames
        for p in prompts:
            self.check_request(p, frames, steps, cfg, ref_cfg, hold)
        c, s = self.preset.vae.latent_channels, self.preset.latent_size
        shared = self.preset.dit.shared_noise
        noise = np.stack([clip_noise(np.random.default_rng(seed).standard_normal, (c, frames, s, s), shared)
                          for seed in seeds]).astype(np.float32)
        holding = references is not None and hold > 0 and self.preset.dit.layout
        layers: list[Layer | None] = [None] * len(prompts)
        with jt.no_grad():
            condition = self._condition(prompts, references, seeds, frames, ref_cfg)
            x = self._denoise(noise, condition, min(steps, self.plate_steps) if holding else steps, cfg, ref_cfg)
            video = tensor_to_frames(self.vae.decode(x / self.vae.scaling_factor))
            if holding:
                known, mask, pastes = self._pasted(video, references, prompts, seeds, frames)
                x = self._denoise(noise, condition, steps, cfg, ref_cfg, known, mask, hold, seeds)
                if round(hold * steps) >= steps:   # held to the end: the held cells are the paste's
                    x = self._settled(x, pastes, mask)
                    layers = [paste.layer for paste in pastes]
                video = tensor_to_frames(self.vae.decode(x / self.vae.scaling_factor))
            jt.sync_all()
        return video, layers

    def _condition(self, prompts: list[str], references: np.ndarray | None, seeds: list[int], frames: int,
                   ref_cfg: float) -> Conditioning:
        """What every guidance branch of `prompts` is conditioned on (see Conditioning)."""
        b, s = len(prompts), self.preset.latent_size
        branches = 3 if references is not None and ref_cfg != 1.0 else 2
        ref = reference_latents(self.vae, references, np.ones(b, bool), batch=b,
                                crop=self.preset.dit.reference_crop)   # (B, c, 1, s, s)
        emb, mask = self.text.encode(list(prompts) + [""] * b + list(prompts) * (branches - 2))
        has_ref = np.repeat(np.array([1, 1, 0][:branches], np.float32) * (references is not None), b)
        refs = jt.concat([ref] * branches, dim=0) * jt.array(has_ref).reshape((-1, 1, 1, 1, 1))
        with_ref = self.layouts(prompts, seeds, frames, None if references is None else ref.numpy()[:, :, 0])
        if with_ref is not None and branches == 3:   # the third branch has no reference
            with_ref = np.concatenate([with_ref, with_ref, self.layouts(prompts, seeds, frames)])
        elif with_ref is not None:
            with_ref = np.concatenate([with_ref] * branches)
        look = (stated_targets(self.look.config, prompts, seeds, frames, self.preset.size,
                               self.preset.size // s) if self.guides_look else None)
        return Conditioning(branches, refs, emb, mask, {**reference_kwargs(self.dit, refs, has_ref),
                                                        **layout_kwargs(self.dit, with_ref, branches * b, frames, s)},
                            look)

    def _denoise(self, noise: np.ndarray, condition: Conditioning, steps: int, cfg: float, ref_cfg: float,
                 known: np.ndarray | None = None, mask: np.ndarray | None = None, hold: float = 0.0,
                 seeds: list[int] | None = None):
        """DDIM from noise (B, c, T, s, s) -> latents (B, c, T, s, s). With known latents and a
        mask (B, 1, T, s, s), after each of the first round(hold * steps) steps the masked cells
        are set to `known` noised to the new step's level (fresh noise drawn from the seeds)."""
        schedule = diffusion_schedule(self.preset)
        b, branches = len(noise), condition.branches
        x = jt.array(noise)
        timesteps = schedule.set_timesteps(steps)
        held = round(hold * steps) if known is not None else 0
        rngs = [np.random.default_rng([seed, 11]) for seed in seeds or []]
        for i, t in enumerate(timesteps):
            x_in = jt.concat([x] * branches, dim=0)
            tt = jt.array(np.full(branches * b, float(t), np.float32))
            out = self.dit(jt.concat([condition.refs, x_in], dim=2), tt, condition.emb, condition.mask,
                           **condition.kwargs)[:, :, 1:]
            cond, no_text = out[:b], out[b:2 * b]
            guided = no_text + cfg * (cond - no_text)   # = cond + (cfg - 1)(cond - no_text)
            if branches == 3:
                guided = guided + (ref_cfg - 1.0) * (cond - out[2 * b:])
            if condition.look is not None and int(t) < self.preset.look.max_t:
                # Classifier guidance: eps - s sqrt(1 - a) grad log p(look | x) is, for v,
                # v - s sqrt(1 - a) / sqrt(a) grad.
                a = float(schedule.alphas_cumprod[int(t)])
                gradient = look_gradient(self.look, x, float(np.sqrt(a)), condition.look)
                guided = guided - jt.array((self.look_scale * np.sqrt((1.0 - a) / a) * gradient).astype(np.float32))
            x = schedule.step(guided, int(t), x)
            if i < held:
                a = float(schedule.previous_alpha_cumprod(int(t)))
                fresh = np.stack([r.standard_normal(known.shape[1:]) for r in rngs]).astype(np.float32)
                noised = np.sqrt(a) * known + np.sqrt(1.0 - a) * fresh
                keep = np.broadcast_to(1.0 - mask, known.shape).astype(np.float32)
                x = jt.array(mask * noised) + jt.array(keep) * x
        return x

    def _pasted(self, video: np.ndarray, references: np.ndarray, prompts: list[str], seeds: list[int],
                frames: int) -> tuple[np.ndarray, np.ndarray, list[Paste]]:
        """First-pass frames (B, T, H, W, 3) with each reference's cut-out pasted on its prompt's
        planned track, over a clean plate -> (known latents (B, c, T, s, s): the pasted frames
        inverted through the decoder (generation/invert.py), mask (B, 1, T, s, s) over the
        plate's disc and the cut-out, and each row's Paste); a reference with no detectable
        object leaves its row unmasked."""
        p = self.preset
        cell = p.size // p.latent_size
        known, masks, pastes = [], [], []
        for row, reference, prompt, seed in zip(video, references, prompts, seeds):
            cut = cut_out(reference)
            if cut is None or not prompt.strip():
                paste = Paste(row, np.zeros(row.shape[:3], np.float32), None)
            else:
                track = plan_track(prompt, seed, frames, p.size, p.size)
                plate, _ = clean_plate(row, track)
                layer = layer_along_track(cut, track, plate)
                paste = Paste(layer.over(plate), np.maximum(layer.alpha, layer.disc), layer)
            # Nothing pasted: the row is unmasked and its latents unused, so no inversion is spent on it.
            inversion = self.inversion if paste.held.any() else replace(self.inversion, steps=0)
            z = invert(self.vae, frames_to_tensor(paste.frames), paste.held, inversion) * self.vae.scaling_factor
            known.append(z.numpy().transpose(1, 0, 2, 3))                                 # (c, T, s, s)
            masks.append(latent_mask(paste.held, cell)[None])
            pastes.append(paste)
        return np.stack(known).astype(np.float32), np.stack(masks).astype(np.float32), pastes

    def _settled(self, x, pastes: list[Paste], mask: np.ndarray):
        """Final latents (B, c, T, s, s) whose held cells are inverted once more, now among the
        cells the DiT drew around them, so that their decoding shows the pasted subject."""
        out = []
        for i, paste in enumerate(pastes):
            if not mask[i].any():
                out.append(x[i])
                continue
            z = x[i].transpose(1, 0, 2, 3) / self.vae.scaling_factor                     # (T, c, s, s)
            free = mask[i].transpose(1, 0, 2, 3)                                          # (T, 1, s, s)
            z = invert(self.vae, frames_to_tensor(paste.frames), paste.held, self.settle, start=z, free=free)
            out.append(z.transpose(1, 0, 2, 3) * self.vae.scaling_factor)
        return jt.stack(out)


