"""What a generation job may ask for: request ranges and peak-memory estimates, checked
before Jittor is even imported (a bad request is refused in a second, not after a model load).

A checkpoint's preset.json (which a user may bring) or a preset sets every buffer size:
frames, frame size, channels, batch, dataset cache. The estimates count the big float32
tensors and multiply by the number alive at once; they aim to be right within a factor of
about two, which is enough to refuse a job that cannot fit rather than let the OS kill it.
"""
from __future__ import annotations

from pathlib import Path

from jvideo.errors import JVideoError
from kernels.resources import check_memory

from .presets import Preset
from .state import read_json

F32 = 4
MAX_PROMPT_CHARS = 1000


def check_request(preset: Preset, prompt: str, frames: int, steps: int, cfg: float, ref_cfg: float = 1.0,
                  hold: float = 0.0, look_scale: float = 0.0) -> None:
    """One JVideoError line for a request this checkpoint cannot serve."""
    if not prompt or not prompt.strip():
        raise JVideoError("the prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise JVideoError(f"the prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
    if not 1 <= frames <= preset.frames:
        raise JVideoError(f"--frames must be between 1 and {preset.frames} for this checkpoint")
    if not 1 <= steps <= preset.timesteps:
        raise JVideoError(f"--steps must be between 1 and {preset.timesteps}")
    if not 0.0 <= cfg <= 50.0:
        raise JVideoError("--cfg must be between 0 and 50")
    if not 0.0 <= ref_cfg <= 50.0:
        raise JVideoError("--ref-cfg must be between 0 and 50")
    if not 0.0 <= hold <= 1.0:
        raise JVideoError("--hold must be between 0 and 1")
    if not 0.0 <= look_scale <= 100.0:
        raise JVideoError("--look-scale must be between 0 and 100")


def _vae_activation_bytes(preset: Preset, images: int) -> int:
    """Decoder at full resolution: the widest block's feature maps, ~8 alive (conv in/out,
    norm, skip, Jittor's graph)."""
    return 8 * images * max(preset.vae.channels) * preset.size ** 2 * F32


def _dit_activation_bytes(preset: Preset, batch: int, frames: int) -> int:
    """Token activations (~16 per block pair alive) plus spatial and temporal attention scores."""
    p = preset.dit
    d = p.heads * p.head_dim
    n = (preset.latent_size // max(1, p.patch)) ** 2         # tokens per frame
    t = frames + 1                                           # + the reference position
    tokens = 16 * batch * t * n * d * F32
    spatial = batch * t * p.heads * n * n * F32
    temporal = batch * n * p.heads * t * t * F32
    return tokens + 2 * (spatial + temporal)


def _parameter_bytes(preset: Preset) -> int:
    p, v = preset.dit, preset.vae
    d = p.heads * p.head_dim
    dit = p.layers * 2 * 12 * d * d + 384 * d
    vae = sum(9 * c * c for c in v.channels) * (4 * v.layers_per_block + 4)
    return (dit + vae) * F32


def sampling_bytes(preset: Preset, frames: int | None = None, batch: int = 1) -> int:
    frames = frames or preset.frames
    # Classifier-free guidance runs the DiT on 2x the batch; weights are held twice while
    # they are read (numpy, then Jittor).
    return (_dit_activation_bytes(preset, 2 * batch, frames) + _vae_activation_bytes(preset, batch * frames)
            + 2 * _parameter_bytes(preset))


def training_bytes(preset: Preset) -> int:
    """The larger of the two stages, plus the DiT's cached dataset (latents + references)."""
    # Backward keeps the forward activations and adds as much again; AdamW: weights, grads, 2 moments.
    vae = 2 * _vae_activation_bytes(preset, max(1, preset.vae.batch // 4) * 4)
    dit = 2 * _dit_activation_bytes(preset, preset.dit.batch, preset.frames)
    c, s = preset.vae.latent_channels, preset.latent_size
    dataset = preset.dit.dataset_clips * c * (preset.frames + 1) * s * s * F32
    return max(vae, dit + dataset) + 4 * _parameter_bytes(preset)


def checkpoint_preset(folder: str | Path) -> Preset:
    """The preset of a jvideo checkpoint folder, checked, without loading any weights."""
    folder = Path(folder)
    if not folder.is_dir():
        raise JVideoError(f"{folder}: checkpoint folder not found")
    for part in ("preset.json", "vae/config.json", "dit/config.json"):
        if not (folder / part).is_file():
            raise JVideoError(f"{folder}: not a jvideo checkpoint (missing {part})")
    preset = Preset.from_dict(read_json(folder / "preset.json"))
    # Without it the shots would silently lose the guidance towards the stated look.
    if preset.look.steps and not (folder / "look" / "config.json").is_file():
        raise JVideoError(f"{folder}: its preset trains a look classifier, but look/config.json is missing "
                          "(a run not finished: continue it with jvideo train --resume)")
    return preset


def check_sampling(preset: Preset, frames: int | None, what: str) -> None:
    f = frames or preset.frames
    check_memory(sampling_bytes(preset, f), f"{what} ({f} frames of {preset.size}x{preset.size})")


def check_training(preset: Preset) -> None:
    check_memory(training_bytes(preset), f"training preset {preset.name!r} ({preset.frames} frames of "
                 f"{preset.size}x{preset.size}, batch {preset.dit.batch}, {preset.dit.dataset_clips} cached clips)")
