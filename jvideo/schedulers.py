"""Diffusion schedules: DDPM noising for training and a DDIM sampler equal to diffusers'.

`NoiseSchedule` holds betas / alphas_cumprod exactly as diffusers builds them (float32);
`add_noise` and `velocity` give training inputs and v-targets. `DDIMScheduler` reproduces
diffusers' DDIMScheduler (timestep spacing linspace/leading/trailing, steps_offset,
set_alpha_to_one, clip_sample, epsilon / sample / v_prediction, eta with given noise).
Arrays may be numpy or Jittor Vars: coefficients are float32 scalars, the arithmetic is
whatever the inputs' library does.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Sequence

import numpy as np

from jvideo.errors import JVideoError


@dataclass
class ScheduleConfig:
    """Field names are diffusers' scheduler_config.json keys (unknown keys are ignored)."""
    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    trained_betas: tuple | None = None
    clip_sample: bool = True
    clip_sample_range: float = 1.0
    set_alpha_to_one: bool = True
    steps_offset: int = 0
    prediction_type: str = "epsilon"
    timestep_spacing: str = "leading"
    rescale_betas_zero_snr: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScheduleConfig":
        if d.get("thresholding"):
            raise JVideoError("scheduler: dynamic thresholding is not supported")
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return {"_class_name": "DDIMScheduler", **asdict(self)}


def _cosine_betas(n: int, max_beta: float = 0.999) -> np.ndarray:
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.array([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)],
                    dtype=np.float32)


def _rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Shift/scale sqrt(alphas_cumprod) so the last step has zero SNR (Lin et al. 2023)."""
    sqrt_ac = np.sqrt(np.cumprod(1.0 - betas.astype(np.float32), dtype=np.float32))
    first, last = sqrt_ac[0].copy(), sqrt_ac[-1].copy()
    sqrt_ac = (sqrt_ac - last) * first / (first - last)
    ac = sqrt_ac ** 2
    alphas = np.concatenate([ac[:1], ac[1:] / ac[:-1]])
    return (1 - alphas).astype(np.float32)


def make_betas(cfg: ScheduleConfig) -> np.ndarray:
    n = cfg.num_train_timesteps
    if cfg.trained_betas is not None:
        betas = np.asarray(cfg.trained_betas, dtype=np.float32)
    elif cfg.beta_schedule == "linear":
        betas = np.linspace(cfg.beta_start, cfg.beta_end, n, dtype=np.float64).astype(np.float32)
    elif cfg.beta_schedule == "scaled_linear":
        betas = (np.linspace(cfg.beta_start ** 0.5, cfg.beta_end ** 0.5, n, dtype=np.float64)
                 .astype(np.float32) ** 2)
    elif cfg.beta_schedule == "squaredcos_cap_v2":
        betas = _cosine_betas(n)
    else:
        raise JVideoError(f"beta_schedule {cfg.beta_schedule!r} is not supported "
                          "(linear, scaled_linear, squaredcos_cap_v2)")
    return _rescale_zero_terminal_snr(betas) if cfg.rescale_betas_zero_snr else betas


def _expand(coef: np.ndarray, like: Any) -> Any:
    """Per-sample coefficients (B,) -> (B, 1, ..., 1) in `like`'s library."""
    coef = coef.astype(np.float32).reshape((-1,) + (1,) * (len(like.shape) - 1))
    if isinstance(like, np.ndarray):
        return coef
    import jittor as jt
    return jt.array(coef)


class NoiseSchedule:
    """The forward (noising) process: q(x_t | x_0) = N(sqrt(a_t) x_0, (1 - a_t) I)."""

    def __init__(self, config: ScheduleConfig | None = None, **kwargs: Any):
        self.config = config or ScheduleConfig(**kwargs)
        self.betas = make_betas(self.config)
        self.alphas = (1.0 - self.betas).astype(np.float32)
        self.alphas_cumprod = np.cumprod(self.alphas, dtype=np.float32)
        self.num_train_timesteps = self.config.num_train_timesteps

    def _coefs(self, t: Any) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(t.numpy() if hasattr(t, "numpy") else t).astype(np.int64).reshape(-1)
        ac = self.alphas_cumprod[t]
        return np.sqrt(ac).astype(np.float32), np.sqrt(1 - ac).astype(np.float32)

    def add_noise(self, x0: Any, noise: Any, t: Any) -> Any:
        """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise; x0, noise (B, ...), t (B,) ints."""
        a, s = self._coefs(t)
        return _expand(a, x0) * x0 + _expand(s, x0) * noise

    def velocity(self, x0: Any, noise: Any, t: Any) -> Any:
        """v-prediction target: sqrt(a_t) noise - sqrt(1 - a_t) x0."""
        a, s = self._coefs(t)
        return _expand(a, x0) * noise - _expand(s, x0) * x0

    def original_from_velocity(self, xt: Any, v: Any, t: Any) -> Any:
        """The x0 a v-prediction implies: sqrt(a_t) x_t - sqrt(1 - a_t) v (inverts velocity)."""
        a, s = self._coefs(t)
        return _expand(a, xt) * xt - _expand(s, xt) * v

    def sample_timesteps(self, batch: int, rng: np.random.Generator, power: float = 0.0) -> np.ndarray:
        """`batch` training timesteps in [0, T) with density proportional to t ** power (0: uniform,
        rng.integers as always; 1: a ramp, twice as many at the noisiest step as on average)."""
        if not power:
            return rng.integers(0, self.num_train_timesteps, size=batch)
        u = rng.random(batch)
        t = (self.num_train_timesteps * u ** (1.0 / (1.0 + power))).astype(np.int64)
        return np.minimum(t, self.num_train_timesteps - 1)


class DDIMScheduler(NoiseSchedule):
    """DDIM sampling (Song et al. 2021) with diffusers' DDIMScheduler maths.

        sched = DDIMScheduler(beta_schedule="linear", clip_sample=False)
        sched.set_timesteps(50)
        for t in sched.timesteps:
            x = sched.step(model(x, t), t, x)
    """

    def __init__(self, config: ScheduleConfig | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        cfg = self.config
        if cfg.prediction_type not in ("epsilon", "sample", "v_prediction"):
            raise JVideoError(f"prediction_type {cfg.prediction_type!r} is not supported")
        self.final_alpha_cumprod = np.float32(1.0) if cfg.set_alpha_to_one else self.alphas_cumprod[0]
        self.num_inference_steps: int | None = None
        self.timesteps = np.arange(cfg.num_train_timesteps)[::-1].copy()

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> "DDIMScheduler":
        return cls(ScheduleConfig.from_dict(d))

    def set_timesteps(self, num_inference_steps: int) -> np.ndarray:
        n, cfg = num_inference_steps, self.config
        if not 0 < n <= cfg.num_train_timesteps:
            raise JVideoError(f"num_inference_steps must be in 1..{cfg.num_train_timesteps}, got {n}")
        self.num_inference_steps = n
        if cfg.timestep_spacing == "linspace":
            ts = np.linspace(0, cfg.num_train_timesteps - 1, n).round()[::-1].copy().astype(np.int64)
        elif cfg.timestep_spacing == "leading":
            ratio = cfg.num_train_timesteps // n
            ts = (np.arange(0, n) * ratio).round()[::-1].copy().astype(np.int64) + cfg.steps_offset
        elif cfg.timestep_spacing == "trailing":
            ratio = cfg.num_train_timesteps / n
            ts = np.round(np.arange(cfg.num_train_timesteps, 0, -ratio)).astype(np.int64) - 1
        else:
            raise JVideoError(f"timestep_spacing {cfg.timestep_spacing!r} is not supported")
        self.timesteps = ts
        return ts

    def previous_alpha_cumprod(self, timestep: int) -> np.float32:
        """Cumulative alpha of the level a step from `timestep` lands on (1 or alphas_cumprod[0]
        past the last step, per set_alpha_to_one)."""
        prev_t = int(timestep) - self.config.num_train_timesteps // self.num_inference_steps
        return self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod

    def step(self, model_output: Any, timestep: int, sample: Any, eta: float = 0.0,
             variance_noise: Any = None) -> Any:
        """x_t -> x_{t-1}. Returns the previous sample; `self.pred_original_sample` keeps x0."""
        if self.num_inference_steps is None:
            raise JVideoError("call set_timesteps before step")
        cfg = self.config
        t = int(timestep)
        a_t = self.alphas_cumprod[t]
        a_prev = self.previous_alpha_cumprod(t)
        b_t = np.float32(1) - a_t
        sa, sb = float(np.sqrt(a_t)), float(np.sqrt(b_t))
        if cfg.prediction_type == "epsilon":
            x0 = (sample - sb * model_output) / sa
            eps = model_output
        elif cfg.prediction_type == "sample":
            x0 = model_output
            eps = (sample - sa * x0) / sb
        else:  # v_prediction
            x0 = sa * sample - sb * model_output
            eps = sa * model_output + sb * sample
        if cfg.clip_sample:   # eps stays the model's (diffusers' use_clipped_model_output=False)
            x0 = x0.clip(-cfg.clip_sample_range, cfg.clip_sample_range) if isinstance(x0, np.ndarray) \
                else x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
        variance = (np.float32(1) - a_prev) / b_t * (np.float32(1) - a_t / a_prev)
        std = np.float32(eta) * np.sqrt(variance)
        # With a zero-terminal-SNR schedule and eta = 1 the first step's radicand is 0 and can
        # round below it (diffusers' formula then gives NaN).
        direction = float(np.sqrt(max(np.float32(1) - a_prev - std ** 2, np.float32(0)))) * eps
        prev = float(np.sqrt(a_prev)) * x0 + direction
        if eta > 0:
            if variance_noise is None:
                raise JVideoError("eta > 0 needs variance_noise (pass the noise explicitly)")
            prev = prev + float(std) * variance_noise
        self.pred_original_sample = x0
        return prev


def classifier_free_guidance(cond: Any, uncond: Any, scale: float) -> Any:
    """uncond + scale * (cond - uncond)."""
    return uncond + scale * (cond - uncond)


def ddim_sample(model_fn: Callable[[Any, int], Any], noise: Any, scheduler: DDIMScheduler,
                num_steps: int, eta: float = 0.0, progress: bool = False,
                noise_fn: Callable[[int], Any] | None = None) -> Any:
    """Run the DDIM loop from `noise`: model_fn(x, t) -> prediction (same shape as x).

    With eta > 0, noise_fn(step_index) supplies the per-step variance noise.
    """
    timesteps: Sequence[int] = scheduler.set_timesteps(num_steps)
    x = noise
    it = timesteps
    if progress:
        from tqdm import tqdm
        it = tqdm(timesteps, desc="ddim", unit="step")
    for i, t in enumerate(it):
        x = scheduler.step(model_fn(x, int(t)), int(t), x, eta=eta,
                           variance_noise=noise_fn(i) if (eta > 0 and noise_fn) else None)
    return x
