"""`jvideo train`: the VAE, then the video DiT, on the toy world.

Layout of the output folder (each part written atomically):
    OUT/preset.json                 the preset used (a resumed run must match it)
    OUT/vae/                        AutoencoderKL (config.json + safetensors); with a decoder
                                    stage (VAEPreset.decoder_steps) its fine-tuned decoder
    OUT/decoder/                    the decoder stage's checkpoint (the whole VAE), if any
    OUT/dit/                        Latte video DiT (config.json + safetensors); with an EMA
                                    (DiTPreset.ema) the averaged weights, which sampling uses
    OUT/look/                       the look classifier of classifier guidance (LookPreset.steps > 0)
    OUT/state/{stage}.json          step, losses, latent scale; {stage}.moments.safetensors: AdamW;
                                    {stage}.raw.safetensors: the raw weights, when OUT/{stage} holds an EMA
    OUT/loss.png                    loss curves
A stage resumes from OUT/state when `resume=True`; a finished stage is skipped.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from jvideo import distributed as dist
from jvideo.errors import JVideoError
from jvideo.models.loading import load_state_dict, state_dict_numpy
from kernels import runtime

from . import state as st
from .conditioning import TextConditioner, frames_to_tensor, layout_kwargs, reference_kwargs, reference_latents
from .layout import colour_rgb, layout_from_cover, look_channels, reference_window
from .ema import WeightAverage
from .presets import Preset, get_preset
from .look_guidance import training_crops
from .world_model import (build_dit, build_look_classifier, build_vae, clip_noise, diffusion_schedule,
                          init_for_training, dit_config, init_vae_for_training, vae_config)

jt = runtime.import_jittor()


@dataclass
class StageResult:
    stage: str
    steps: int
    seconds: float
    final_loss: float
    reused_from: str | None = None   # a stage taken from another checkpoint (--vae-from)


def _progress(total: int, initial: int, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, disable=not dist.is_main())


def _mean_tail(losses: list[float], n: int = 50) -> float:
    return float(np.mean(losses[-n:])) if losses else float("nan")


def learning_rate(base: float, step: int, steps: int, warmup: int = 50, floor: float = 0.1) -> float:
    """Linear warm-up, then a cosine decay to `floor` * base at the last step (the usual
    schedule: large steps early, small ones to settle the weights at the end)."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return base * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * min(1.0, progress))))


def load_weights(model, folder: Path):
    """Copy the weights saved in `folder` (save_pretrained's layout) into `model`; returns the
    saved model as loaded (its config too)."""
    from jvideo.models import from_pretrained
    saved = from_pretrained(folder)
    load_state_dict(model, state_dict_numpy(saved), str(folder))
    return saved


class Stage:
    """One training stage with its own AdamW, checkpointing and resume."""

    def __init__(self, name: str, out: Path, model, lr: float, steps: int, every: int, schedule: str = "constant",
                 ema: float = 0.0, parameters: list | None = None):
        if schedule not in ("constant", "cosine"):
            raise JVideoError(f"unknown learning-rate schedule {schedule!r} (constant or cosine)")
        self.name, self.out, self.model, self.steps, self.every = name, out, model, steps, every
        # `parameters`: the ones this stage trains (default: all of the model's)
        self.optimizer = jt.optim.AdamW(parameters or model.parameters(), lr=lr, weight_decay=0.0)
        self.base_lr, self.schedule = lr, schedule
        self.step = 0
        self.losses: list[float] = []
        self.extra: dict = {}
        # With an average, OUT/name holds it (what sampling loads) and the raw weights live in state/.
        self.average = WeightAverage(model, ema) if ema else None

    @property
    def state_path(self) -> Path:
        return self.out / "state" / f"{self.name}.json"

    def resume(self) -> None:
        # Rank 0 reads the checkpoint and sends it to the others: only rank 0 needs OUT.
        data = dist.run_on_main(self._load)
        if data is None:
            return
        dist.broadcast_module(self.model)
        if self.average is not None:
            dist.broadcast_vars(list(self.average.average.values()))
        dist.broadcast_vars([v for g in self.optimizer.param_groups for name in ("m", "values") for v in g.get(name, [])])
        self.optimizer.n_step = data["optimizer_steps"]
        self.step, self.losses, self.extra = data["step"], data["losses"], data.get("extra", {})

    def _load(self) -> dict | None:
        if not self.state_path.exists():
            return None
        data = st.read_json(self.state_path)
        if self.average is None:
            load_weights(self.model, self.out / self.name)
        else:
            raw = self.state_path.with_suffix(".raw.safetensors")
            if not raw.exists():
                raise JVideoError(f"{self.out} was trained without a weight average; resume it with the preset it "
                                  "was started with, or start a new --out")
            self.average.load(state_dict_numpy(load_weights(self.model, self.out / self.name)))
            load_state_dict(self.model, st.load_moments(raw), str(raw))
        st.load_optimizer_moments(self.optimizer, st.load_moments(self.state_path.with_suffix(".moments.safetensors")))
        return data

    def save(self) -> None:
        """Rank 0 writes; the state is the same for any number of ranks (global loss, steps)."""
        if not dist.is_main():
            return
        from jvideo.models import save_pretrained
        if self.average is None:
            save_pretrained(self.model, self.out / self.name)
        else:
            save_pretrained(self.model, self.out / self.name, weights=self.average.state_dict_numpy())
            st.save_moments(self.state_path.with_suffix(".raw.safetensors"), state_dict_numpy(self.model))
        st.save_moments(self.state_path.with_suffix(".moments.safetensors"), st.optimizer_moments(self.optimizer))
        st.write_json(self.state_path, {"step": self.step, "optimizer_steps": self.optimizer.n_step,
                                        "losses": self.losses, "extra": self.extra,
                                        "done": self.step >= self.steps})

    def run(self, loss_fn) -> StageResult:
        start = time.time()
        dist.broadcast_module(self.model)  # every rank starts from rank 0's weights
        self.model.train()
        with _progress(self.steps, self.step, self.name) as bar:
            while self.step < self.steps:
                runtime.raise_if_interrupted()
                if self.schedule == "cosine":
                    self.optimizer.lr = learning_rate(self.base_lr, self.step, self.steps)
                loss = loss_fn(self.step)
                self.optimizer.step(loss)  # under MPI, Jittor's optimizer averages the gradients
                if self.average is not None:
                    self.average.update(self.step)
                if dist.world().distributed:
                    # Run the step's gradient all-reduces now, on every rank: left lazy, they would
                    # run whenever a rank next reads a weight (rank 0 saving), out of step with the
                    # collectives of the other ranks (MPI_ERR_TRUNCATE, or a hang).
                    jt.sync_all()
                value = dist.all_mean(float(loss.item()))  # the global batch's loss, on every rank
                if not np.isfinite(value):
                    raise JVideoError(f"{self.name}: loss became {value} at step {self.step}; lower the learning rate")
                self.losses.append(value)
                self.step += 1
                bar.set_postfix(loss=f"{_mean_tail(self.losses, 20):.4f}")
                bar.update(1)
                if self.step % self.every == 0 or self.step == self.steps:
                    self.save()
        self.model.eval()
        return StageResult(self.name, self.step, time.time() - start, _mean_tail(self.losses))


def frame_batch(preset: Preset, rng: np.random.Generator, object_weight: float):
    """A VAE step's frames: batch // 4 clips of 4 frames -> (frames (N, 3, H, W) in [-1, 1],
    pixel loss weights (N, 1, H, W): 1 + object_weight on the object)."""
    from jvideo.toyworld.dataset import sample_batch
    batch = sample_batch(rng, max(1, preset.vae.batch // 4), frames=4, size=preset.size)
    x = frames_to_tensor(batch.frames.reshape((-1,) + batch.frames.shape[2:]))
    weight = object_weights(batch.params, 1, object_weight)                        # (clips, T, H, W)
    return x, jt.array(weight.reshape((-1, 1) + weight.shape[2:]))


def train_vae(preset: Preset, out: Path, resume: bool, rng: np.random.Generator) -> tuple[object, StageResult]:
    """Per-frame AutoencoderKL: reconstruction (MSE + L1) + a small KL term."""
    p = preset.vae
    if p.colour_anchor and p.latent_channels < 3:
        raise JVideoError("colour_anchor needs at least 3 latent channels")
    cell = preset.size // preset.latent_size
    vae = build_vae(preset)
    if p.init_logvar is not None:
        init_vae_for_training(vae, p.init_logvar)
    stage = Stage("vae", out, vae, p.lr, p.steps, preset.checkpoint_every, preset.lr_schedule)
    if resume:
        stage.resume()
    if "reused_from" in stage.extra:
        stage.steps = stage.step   # another checkpoint's VAE (adopt_vae): never trained here

    def loss_fn(step: int):
        x, weight = frame_batch(preset, rng, p.object_weight)
        posterior = vae.encode(x)
        recon = vae.decode(posterior.sample())
        err = recon - x
        loss = weighted_mean(err * err + err.abs(), weight) + p.kl_weight * posterior.kl().mean()
        if p.colour_anchor:
            loss = loss + p.colour_anchor * ((posterior.mean[:, :3] - average_pool(x, cell)) ** 2).mean()
        return loss

    result = stage.run(loss_fn)
    result.reused_from = stage.extra.get("reused_from")
    if "latent_std" not in stage.extra:
        # Rank 0's measure on every rank: the latents' scale must be the same everywhere.
        stage.extra["latent_std"] = dist.broadcast_json(measure_latent_std(vae, preset, rng))
        stage.save()
    vae.scaling_factor = 1.0 / stage.extra["latent_std"]
    vae.config.scaling_factor = vae.scaling_factor
    stage.save()
    return vae, result


def train_decoder(preset: Preset, vae, out: Path, resume: bool, rng: np.random.Generator) -> StageResult:
    """The VAE's decoder (and post_quant_conv) alone, on the frozen encoder's latents
    (VAEPreset.decoder_steps); when done the fine-tuned VAE is also written as OUT/vae, what
    sampling loads. The encoder, and so the DiT's latent space and scale, do not change."""
    from jvideo.models import save_pretrained
    p = preset.vae
    trained = list(vae.decoder.parameters())
    if vae.post_quant_conv is not None:
        trained += list(vae.post_quant_conv.parameters())
    stage = Stage("decoder", out, vae, p.decoder_lr, p.decoder_steps, preset.checkpoint_every, "cosine",
                  parameters=trained)
    if resume:
        stage.resume()

    def loss_fn(step: int):
        x, weight = frame_batch(preset, rng, p.decoder_object_weight)
        with jt.no_grad():
            z = vae.encode(x).sample()
        err = vae.decode(z.stop_grad()) - x
        return weighted_mean(err * err + err.abs(), weight)

    result = stage.run(loss_fn)
    if dist.is_main():
        save_pretrained(vae, out / "vae")
    return result


def average_pool(x, cell: int):
    """(N, C, H, W) -> (N, C, H/cell, W/cell): mean over cell x cell blocks."""
    n, c, h, w = x.shape
    return x.reshape((n, c, h // cell, cell, w // cell, cell)).mean(dims=(3, 5))


def object_cover(params: list, cell: int) -> np.ndarray:
    """The object's cover of each latent cell from the clips' ground truth: (N, T, H/cell,
    W/cell) float32 in [0, 1]."""
    from jvideo.toyworld.render import object_mask
    return np.stack([object_mask(q, cell) for q in params])


def object_weights(params: list, cell: int, object_weight: float) -> np.ndarray:
    """Loss weights 1 + object_weight * (object cover): (N, T, H/cell, W/cell) float32."""
    return 1.0 + object_weight * object_cover(params, cell)


def weighted_mean(values, weight):
    """Mean of `values` under `weight` (broadcast over channels), normalised by the weights so
    the loss keeps its scale whatever the object's size."""
    return (values * weight).mean() / weight.mean()


def v_loss(dit, schedule, x0, noise, t: np.ndarray, ref, keep: np.ndarray, emb, mask, weights,
           layout: np.ndarray | None = None):
    """The DiT's weighted v-prediction MSE on clean latents x0 (B, c, T, h, w) noised to steps t
    (B,), with reference latents ref (B, c, 1, h, w) as the clean frame 0 (keep (B,): which rows
    have one), weights (B, 1, T, h, w) and, for a layout-conditioned DiT, layouts (B, C, T, h, w)
    of the frames (C: its layout_channels; None: none); the reference frame is not scored."""
    xt = schedule.add_noise(x0, noise, t)
    b, _, frames, grid = x0.shape[0], x0.shape[1], x0.shape[2], x0.shape[-1]
    pred = dit(jt.concat([ref, xt], dim=2), jt.array(t.astype(np.float32)), emb, mask,
               **reference_kwargs(dit, ref, keep), **layout_kwargs(dit, layout, b, frames, grid))
    err = pred[:, :, 1:] - schedule.velocity(x0, noise, t)
    return weighted_mean(err * err, weights)


def measure_latent_std(vae, preset: Preset, rng: np.random.Generator) -> float:
    """Std of the VAE's latent means on fresh clips: the DiT trains on latents / std."""
    from jvideo.toyworld.dataset import sample_batch
    batch = sample_batch(rng, 8, frames=4, size=preset.size)
    with jt.no_grad():
        z = vae.encode(frames_to_tensor(batch.frames.reshape((-1,) + batch.frames.shape[2:]))).mode()
    return float(z.numpy().std())


def encode_dataset(vae, preset: Preset, out: Path) -> dict:
    """Render `dataset_clips` training clips with identity references and encode them once.

    Returns {"latents": (N, c, T, h, w), "references": (N, c, 1, h, w), "params": [ClipParams]},
    latents already multiplied by the VAE's scaling factor. Cached in OUT/data (a motion subset:
    OUT/data-<motions>; numpy .npy + JSON, read without pickle) so a resumed run does not encode
    again. Clips come in chunks of 16, chunk k drawn from its own seed: under mpirun each rank
    encodes a block of chunks and all ranks get the whole set, the same for any number of ranks;
    rank 0 reads and writes the cache. For the same reason a cache of another size is reused
    chunk by chunk: a run with more clips encodes only the chunks the cache lacks (its whole
    chunks are the first ones of the set).
    """
    import json

    from tqdm import tqdm

    from jvideo.toyworld.dataset import sample_batch
    from jvideo.toyworld.render import ClipParams
    p = preset.dit
    # Clips of a motion subset are another dataset: their own folder, never mixed with the full one.
    folder = out / ("data" if not p.motions else "data-" + "-".join(p.motions))
    meta = folder / "params.json"
    # Cropped references are another encoding of the same clips: their own file, so that a
    # cache copied from an uncropped run is re-encoded rather than mistaken for cropped.
    files = {"latents": "latents.npy", "references": "references_crop.npy" if p.reference_crop else "references.npy"}
    chunk = 16
    cache: dict = {}

    def read_cache() -> int:
        """Clips of the cache that are this run's first clips (0: none)."""
        if not (meta.exists() and all((folder / f).exists() for f in files.values())):
            return 0
        params = st.read_json(meta)
        latents = np.load(folder / files["latents"], allow_pickle=False)
        references = np.load(folder / files["references"], allow_pickle=False)
        if not len(params) == len(latents) == len(references):
            return 0
        cache.update(params=params, latents=latents, references=references)
        if len(params) == p.dataset_clips:
            return len(params)
        return chunk * min(len(params) // chunk, p.dataset_clips // chunk)

    reused = dist.run_on_main(read_cache)
    old = {"latents": [], "references": [], "params": []}
    if reused:   # every rank gets the reused clips (rank 0 read them)
        for name in ("latents", "references"):
            old[name] = [dist.broadcast_array(cache[name][:reused] if name in cache else None)]
        old["params"] = [ClipParams.from_dict(d) for d in dist.broadcast_json(cache.get("params", [])[:reused])]
    if reused == p.dataset_clips:
        return {"latents": old["latents"][0], "references": old["references"][0], "params": old["params"]}
    first_chunk = reused // chunk
    first, last = (first_chunk + b for b in dist.bounds(-(-p.dataset_clips // chunk) - first_chunk))
    c, s = preset.vae.latent_channels, preset.latent_size
    lat = [np.zeros((0, c, preset.frames, s, s), np.float32)]
    ref = [np.zeros((0, c, 1, s, s), np.float32)]
    params = []
    mine = min(p.dataset_clips, last * chunk) - first * chunk
    with tqdm(total=mine, desc="encode clips", unit="clip", dynamic_ncols=True, disable=not dist.is_main()) as bar:
        for k in range(first, last):
            n = min(chunk, p.dataset_clips - k * chunk)
            batch = sample_batch(np.random.default_rng([preset.seed, 1, k]), n, frames=preset.frames, size=preset.size,
                                 p_character=0.0, p_random_character=p.p_named, references=True,
                                 motions=p.motions)
            with jt.no_grad():
                z = vae.encode(frames_to_tensor(batch.frames, video=True)).mode() * vae.scaling_factor
                r = reference_latents(vae, batch.references, np.ones(n, bool), crop=p.reference_crop)
                lat.append(z.numpy())
                ref.append(r.numpy())
            params += batch.params
            bar.update(n)
    # The reused chunks, then every rank's block in rank order (exact copies), on every rank.
    data = {"latents": np.concatenate(old["latents"] + dist.all_gather(np.concatenate(lat))),
            "references": np.concatenate(old["references"] + dist.all_gather(np.concatenate(ref))),
            "params": old["params"] + [ClipParams.from_dict(d) for part in dist.all_gather_bytes(
                json.dumps([x.to_dict() for x in params]).encode()) for d in json.loads(part)]}

    def write_cache() -> None:
        for name in ("latents", "references"):
            st.atomic_write(folder / files[name], lambda tmp, a=data[name]: st.save_npy(tmp, a))
        st.write_json(meta, [x.to_dict() for x in data["params"]])

    dist.run_on_main(write_cache)
    return data


def train_dit(preset: Preset, vae, out: Path, resume: bool, rng: np.random.Generator,
              start_from: Path | None = None) -> StageResult:
    """Video DiT on latents; reference latent as a clean frame 0; loss on generated frames only.
    With `start_from` (a checkpoint) a new run starts from that checkpoint's DiT (fine-tuning)."""
    from jvideo.toyworld.captions import caption
    p = preset.dit
    if p.steps == 0:
        return keep_dit(preset, out, start_from)
    data = encode_dataset(vae, preset, out)
    cell = preset.size // preset.latent_size
    # (N, 1, T, h, w): the object's cover of each latent cell; cells it touches weigh more in
    # the loss (DiTPreset.object_weight), and layout-conditioned DiTs are told it (DiTPreset.layout).
    data["cover"] = object_cover(data["params"], cell)[:, None]
    data["weights"] = 1.0 + p.object_weight * data["cover"]
    if p.layout_look:
        data["silhouette"], data["rgb"] = stated_looks(data["params"])
    dit = init_for_training(build_dit(preset))
    started = start_from is not None and not (out / "state" / "dit.json").exists()
    if started:
        start_dit_from(dit, preset, start_from)
    schedule = diffusion_schedule(preset)
    text = TextConditioner(preset.text_tokens, word_tokens=preset.word_tokens)
    stage = Stage("dit", out, dit, p.lr, p.steps, preset.checkpoint_every, preset.lr_schedule, ema=p.ema)
    if started:
        stage.extra["started_from"] = str(start_from)   # saved with every checkpoint of the stage
    if resume:
        stage.resume()

    def loss_fn(step: int):
        images = p.is_image_step(step)
        n = p.image_batch if images else p.batch
        idx = rng.integers(0, len(data["params"]), size=n)
        captions = [("" if rng.random() < p.text_dropout else caption(data["params"][i], rng, "train")) for i in idx]
        keep = (rng.random(n) >= p.reference_dropout).astype(np.float32)
        if images:   # one random frame of each clip: (n, c, 1, h, w) and (n, 1, 1, h, w)
            frame = rng.integers(0, data["latents"].shape[2], size=n)
            latents, weights, cover = (data[k][idx, :, frame][:, :, None] for k in ("latents", "weights", "cover"))
        else:        # whole clips: (n, c, T, h, w) and (n, 1, T, h, w)
            latents, weights, cover = data["latents"][idx], data["weights"][idx], data["cover"][idx]
        x0 = jt.array(np.ascontiguousarray(latents))
        ref = jt.array(data["references"][idx] * keep[:, None, None, None, None])
        emb, mask = text.encode(captions)
        # The denoiser decides where the object is in each frame at high noise (timestep_power).
        t = schedule.sample_timesteps(n, rng, p.timestep_power)
        noise = clip_noise(jt.randn, x0.shape, p.shared_noise)
        # The true layout, dropped for some rows (drawn only for layout presets: the others keep
        # their random stream, so their recipes reproduce).
        present = rng.random(n) >= p.layout_dropout if p.layout else None
        layout = layout_from_cover(cover[:, 0], present) if p.layout else None
        if p.reference_paste:   # the row's reference drawn into its true window, where both are given
            frame_ids = [[int(f)] for f in frame] if images else [list(range(latents.shape[2]))] * n
            layout = np.concatenate([layout, pasted_references(data, idx, keep * present, frame_ids, cell)], axis=1)
        if p.layout_look:   # the look the row's caption states, on its true track
            silhouette = data["silhouette"][idx, frame][:, None] if images else data["silhouette"][idx]
            look = look_channels(silhouette.astype(np.float32) / 255, data["rgb"][idx], cell)
            layout = np.concatenate([layout, look * present[:, None, None, None, None]], axis=1)
        return v_loss(dit, schedule, x0, noise, t, ref, keep, emb, mask,
                      jt.array(np.ascontiguousarray(weights)), layout)

    return stage.run(loss_fn)


def train_look(preset: Preset, vae, out: Path, resume: bool, rng: np.random.Generator) -> StageResult:
    """The look classifier (LookPreset) on the DiT's encoded clips: each step a batch of random
    frames' subject crops, noised to random levels below max_t, and the cross-entropy of their
    shape and primary colour."""
    from jittor import nn

    from jvideo.toyworld.world import COLOUR_NAMES, SHAPES
    p = preset.look
    data = encode_dataset(vae, preset, out)   # the DiT stage's cache: read, not encoded again
    shapes = np.array([SHAPES.index(q.look.shape) for q in data["params"]])
    colours = np.array([COLOUR_NAMES.index(q.look.primary) for q in data["params"]])
    alphas = np.asarray(diffusion_schedule(preset).alphas_cumprod, np.float64)
    cell = preset.size // preset.latent_size
    stage = Stage("look", out, build_look_classifier(preset), p.lr, p.steps, preset.checkpoint_every,
                  preset.lr_schedule)
    if resume:
        stage.resume()

    def loss_fn(step: int):
        rows = rng.integers(0, len(data["params"]), size=p.batch)
        frame = rng.integers(0, data["latents"].shape[2], size=p.batch)
        signal = np.sqrt(alphas[rng.integers(0, p.max_t, size=p.batch)])
        noise = rng.standard_normal((p.batch,) + data["latents"].shape[1:2] + data["latents"].shape[3:])
        crops = training_crops(data["latents"], data["params"], rows, frame, signal, noise, p.crop, cell)
        shape, colour = stage.model(jt.array(crops), jt.array(signal.astype(np.float32)))
        return nn.cross_entropy_loss(shape, jt.array(shapes[rows])) + nn.cross_entropy_loss(colour, jt.array(colours[rows]))

    return stage.run(loss_fn)


def keep_dit(preset: Preset, out: Path, start_from: Path) -> StageResult:
    """A DiT stage of no steps: `start_from`'s DiT as this run's, saved once (a recipe that
    changes only the decoder, VAEPreset.decoder_steps)."""
    if not dist.is_main():   # rank 0 alone reads and writes OUT, and reports
        return StageResult("dit", 0, 0.0, float("nan"))
    state = out / "state" / "dit.json"
    if not state.exists():
        if start_from is None:   # a resumed run stopped before it saved the DiT
            raise JVideoError(f"{out}: the {preset.name} preset keeps another checkpoint's DiT; "
                              "resume with --dit-from CHECKPOINT")
        dit = build_dit(preset)
        start_dit_from(dit, preset, start_from)
        stage = Stage("dit", out, dit, preset.dit.lr, 0, preset.checkpoint_every, ema=preset.dit.ema)
        stage.extra["started_from"] = str(start_from)
        stage.save()
    return StageResult("dit", 0, 0.0, float("nan"), reused_from=st.read_json(state)["extra"]["started_from"])


def stated_looks(params: list) -> tuple[np.ndarray, np.ndarray]:
    """What the clips' captions state of their look, drawn on their true tracks: silhouettes
    (N, T, H, W) uint8 (the shape's cover of each pixel, 0-255) and primary colours (N, 3) in
    [0, 1]; zeros for named characters, whose captions state no look (toyworld.caption)."""
    from jvideo.toyworld.render import shape_cover
    q = params[0]
    silhouettes = np.zeros((len(params), q.frames, q.height, q.width), np.uint8)
    rgb = np.zeros((len(params), 3), np.float32)
    for i, q in enumerate(params):
        if q.name is None:
            silhouettes[i] = np.rint(shape_cover(q.look.shape, q.track, q.height, q.width) * 255)
            rgb[i] = colour_rgb(q.look.primary)
    return silhouettes, rgb


def pasted_references(data: dict, idx: np.ndarray, given: np.ndarray, frame_ids: list[list[int]],
                      cell: int) -> np.ndarray:
    """Window and drawn reference channels (n, 1 + c, F, h, w) of training rows `idx`: each
    row's cropped reference latent drawn along its clip's true track in frames `frame_ids[i]`,
    zeros where `given` (n,) is 0."""
    refs = data["references"][idx][:, :, 0]                                  # (n, c, h, w)
    grid, c = refs.shape[-1], refs.shape[1]
    return np.stack([reference_window(refs[i] if given[i] else None, data["params"][row].track, cell, grid,
                                      frame_ids[i], c) for i, row in enumerate(idx)])


def start_dit_from(dit, preset: Preset, checkpoint: Path) -> None:
    """Load `checkpoint`'s DiT (the weights it samples with) into `dit` to fine-tune it. The two
    must be built alike but for layout channels this preset adds (layout_look): their rows of
    the layout embedding start at zero, so the loaded DiT starts out drawing what it drew.
    train() has checked that `checkpoint` holds preset.json, vae/ and dit/."""
    from jvideo.models import from_pretrained
    theirs = Preset.from_dict(st.read_json(checkpoint / "preset.json"))
    mine, old = dit_config(preset), dit_config(theirs)
    if replace(old, layout_channels=mine.layout_channels) != mine or old.layout_channels > mine.layout_channels:
        raise JVideoError(f"--dit-from {checkpoint}: its DiT ({theirs.name}) is not built like the {preset.name} "
                          "preset's (beyond added layout channels); it cannot be fine-tuned into it")
    weights = state_dict_numpy(from_pretrained(checkpoint / "dit"))
    if "layout_embed.weight" in weights:
        kernel = weights["layout_embed.weight"]              # (D, C_old, p, p) -> (D, C_new, p, p)
        grown = np.zeros((kernel.shape[0], mine.layout_channels) + kernel.shape[2:], np.float32)
        grown[:, :kernel.shape[1]] = kernel
        weights["layout_embed.weight"] = grown
    load_state_dict(dit, weights, str(checkpoint / "dit"))


def adopt_vae(preset: Preset, out: Path, checkpoint: Path) -> None:
    """Make `checkpoint`'s finished VAE this run's VAE stage (saved as done, fresh AdamW
    moments, no losses), so that only the DiT trains: a DiT recipe can be tried without
    retraining a VAE it does not change. The VAE settings and frame size must be the preset's."""
    saved = checkpoint / "preset.json"
    if not saved.is_file() or not (checkpoint / "vae").is_dir():
        raise JVideoError(f"--vae-from {checkpoint}: not a jvideo training checkpoint (no preset.json and vae/)")
    theirs = Preset.from_dict(st.read_json(saved))
    if vae_config(theirs) != vae_config(preset):
        raise JVideoError(f"--vae-from {checkpoint}: its VAE ({theirs.name}) is not built like the {preset.name} "
                          "preset's (channels, latent channels, frame size); it cannot be reused")
    vae = build_vae(preset)
    reused = load_weights(vae, checkpoint / "vae")
    stage = Stage("vae", out, vae, preset.vae.lr, preset.vae.steps, preset.checkpoint_every)
    stage.step = preset.vae.steps
    stage.extra = {"latent_std": 1.0 / float(reused.config.scaling_factor), "reused_from": str(checkpoint)}
    vae.scaling_factor = vae.config.scaling_factor = reused.config.scaling_factor
    stage.save()


def plot_losses(out: Path, preset: Preset) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    stages = [s for s in ("vae", "decoder", "dit", "look")
              if (s != "decoder" or preset.vae.decoder_steps) and (s != "look" or preset.look.steps)]
    fig, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.5))
    for ax, stage in zip(axes, stages):
        path = out / "state" / f"{stage}.json"
        if not path.exists():
            ax.set_visible(False)
            continue
        data = st.read_json(path)
        losses = np.asarray(data["losses"])
        if not len(losses):   # a reused VAE (adopt_vae) or DiT (keep_dit) has no losses of its own here
            extra = data.get("extra", {})
            ax.text(0.5, 0.5, f"reused from\n{extra.get('reused_from') or extra.get('started_from', '?')}",
                    ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"{stage}")
            ax.set_axis_off()
            continue
        # Joint image-video training: single-frame steps have their own (higher) loss level.
        image = np.array([stage == "dit" and preset.dit.is_image_step(s) for s in range(len(losses))], bool)
        kinds = [("clip steps", losses[~image]), ("image steps", losses[image])] if image.any() else [("per step", losses)]
        for label, part in kinds:
            k = max(1, len(part) // 100)
            smooth = np.convolve(part, np.ones(k) / k, mode="valid")
            line, = ax.plot(np.linspace(0, len(losses), len(part)), part, alpha=0.3, label=label)
            ax.plot(np.linspace(0, len(losses), len(part))[k - 1:], smooth, color=line.get_color(),
                    label=f"{label}, mean of {k}")
        ax.set_yscale("log")
        ax.set_title(f"{stage} loss")
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    target = out / "loss.png"
    st.atomic_write(target, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return target


def per_rank_preset(preset: Preset, ranks: int) -> Preset:
    """The preset each of `ranks` data-parallel processes trains with: the batches divided by
    `ranks`, so that the global batch (all ranks' samples, whose gradients Jittor's optimizer
    averages) stays the preset's."""
    local = copy.deepcopy(preset)
    for name, stage in (("vae", local.vae), ("dit", local.dit)):
        if stage.batch % ranks:
            raise JVideoError(f"the {preset.name} preset's {name} batch ({stage.batch}) cannot be split over "
                              f"{ranks} processes; use a number of processes that divides it")
        stage.batch //= ranks
    if local.dit.image_batch % ranks:
        raise JVideoError(f"the {preset.name} preset's image batch ({preset.dit.image_batch}) cannot be split over "
                          f"{ranks} processes; use a number of processes that divides it")
    local.dit.image_batch //= ranks
    if local.look.batch % ranks:
        raise JVideoError(f"the {preset.name} preset's look classifier batch ({preset.look.batch}) cannot be split "
                          f"over {ranks} processes; use a number of processes that divides it")
    local.look.batch //= ranks
    # The VAE step draws whole clips of 4 frames (batch // 4 of them, at least one).
    if ranks > 1 and preset.vae.batch >= 4 and (preset.vae.batch // 4) % ranks:
        raise JVideoError(f"the {preset.name} preset's VAE batch of {preset.vae.batch // 4} clips cannot be split "
                          f"over {ranks} processes; use a number of processes that divides it")
    return local


def train(preset_name: str, out: Path, steps: int | None = None, resume: bool = False,
          vae_from: Path | None = None, dit_from: Path | None = None) -> list[StageResult]:
    """Train the preset's stages in order: VAE, decoder (VAEPreset.decoder_steps), DiT, look
    classifier (LookPreset.steps); `steps` overrides every stage's step count. With `vae_from` (a
    checkpoint with the same VAE preset) its VAE is taken as the finished first stage; with
    `dit_from` its VAE too, and the DiT stage fine-tunes its DiT (start_dit_from).

    Under mpirun (data parallel) each rank draws its own samples, batch / ranks per step, and
    Jittor's optimizer averages the gradients, so a step sees the preset's global batch. Rank 0
    alone reads and writes OUT; what it saves does not depend on the number of ranks, so a run
    can be resumed with another number.
    """
    world = dist.world()
    if dit_from is not None:
        if vae_from is not None and Path(vae_from) != Path(dit_from):
            raise JVideoError("--dit-from fine-tunes a DiT on its own VAE's latents: give no other --vae-from")
        if not all((Path(dit_from) / part).exists() for part in ("preset.json", "vae", "dit")):
            raise JVideoError(f"--dit-from {dit_from}: not a jvideo training checkpoint (no preset.json, vae/ and dit/)")
        vae_from = dit_from
    preset = copy.deepcopy(get_preset(preset_name))
    if steps is not None:
        if steps < 1:
            raise JVideoError("--steps must be at least 1")
        preset.vae.steps = preset.dit.steps = steps
        preset.vae.decoder_steps = steps if preset.vae.decoder_steps else 0
        preset.look.steps = steps if preset.look.steps else 0
    if preset.dit.steps == 0 and dit_from is None and not resume:
        raise JVideoError(f"the {preset.name} preset trains no DiT: give --dit-from CHECKPOINT, whose DiT it keeps")
    local = per_rank_preset(preset, world.size)
    out = Path(out)

    def prepare() -> int:
        saved = out / "preset.json"
        if resume and saved.exists():
            previous = st.read_json(saved)
            if previous["name"] != preset.name:
                raise JVideoError(f"{out} holds a '{previous['name']}' run; resume it with --preset {previous['name']}")
        elif not resume and (out / "state").exists():
            raise JVideoError(f"{out} already holds a training run: pass --resume to continue it, or pick a new --out")
        st.write_json(saved, preset.to_dict())   # the global preset, whatever the number of ranks
        if vae_from is not None and not (out / "state" / "vae.json").exists():
            adopt_vae(preset, out, Path(vae_from))
        dit_state = out / "state" / "dit.json"
        return len(st.read_json(dit_state)["losses"]) if resume and dit_state.exists() else 0

    seed = preset.seed + dist.run_on_main(prepare)
    # Rank 0 draws what a one-process run draws; every other rank its own stream.
    rng = np.random.default_rng(seed if world.rank == 0 else [seed, world.rank])
    jt.set_global_seed(preset.seed)   # Jittor adds 2591 * rank: each rank its own noise
    vae, vae_result = train_vae(local, out, resume or vae_from is not None, rng)
    results = [vae_result]
    if local.vae.decoder_steps:
        results.append(train_decoder(local, vae, out, resume, rng))
    results.append(train_dit(local, vae, out, resume, rng, None if dit_from is None else Path(dit_from)))
    if local.look.steps:
        results.append(train_look(local, vae, out, resume, rng))
    if world.is_main:
        plot_losses(out, preset)
    dist.barrier()
    return results
