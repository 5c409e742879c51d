"""`jvideo eval generation`: does the model follow the text and keep a character's look?

Everything is judged by the toy world's detector (jvideo.toyworld.detector), which is itself
tested on rendered ground truth first.

* Text accuracy per attribute on held-out prompts (phrasings and combinations unseen in
  training): colour and shape (for prompts that state them), background, motion.
* Identity consistency: for each cast character, shots with different actions and places,
  generated with a reference image of the character and without one (text only: the name says
  nothing of the look, so this baseline should sit near chance). Medium and close-up shots,
  where a look is legible: a prompt that leaves the size unsaid gets it stated (`with_camera`), as a
  layout model would otherwise plan a wide shot for a third of them. A shot matches when the
  detected shape, primary colour and secondary colour equal the reference's; each attribute is
  also reported on its own. Where a held shot's cut-out is laid over its frames
  (Generator.composite), the same shots are also judged as the VAE decoded them
  (`identity_decoded`): what the DiT and the VAE keep of the look, apart from the compositing.
* Temporal smoothness: mean absolute frame-to-frame change of generated clips next to that of
  rendered clips with the same parameters.
* Direction probe: on fresh clips moving left, right, up or down, the DiT's v-prediction error
  on the object's latent cells with the true caption, with the opposite direction's caption and
  with none (same noise). A model that uses the motion word errs more with the opposite one; the
  gap to no caption shows how much the caption as a whole is used.
* Placement probe: on the same clips with their true caption, the DiT's clean-latent estimate
  at a low, a middle and a high noise level; each frame's object map (the frame minus its spatial
  median, projected on the clip's object colour in latent space) is compared by cosine with the
  true map of the same frame, with the true map averaged over the clip's frames, and with the
  true map of the mirrored frame (T-1-k). A model that places the object frame by frame scores
  highest on the first; one that predicts the object smeared along its path, on the second.
  At t = 900 the noisy frames hold almost nothing of the clip (signal-to-noise 1e-4), so the
  figures to compare with are those of estimates that know the clip's attributes but not its
  track: the same clips re-rendered with fresh tracks, in the same direction and half in the
  opposite one (`placement_references`).
  A layout-conditioned DiT (DiTPreset.layout) gets in both probes the layout planned from each
  caption, as sampling would plan it (none for the empty caption): its direction probe then asks
  whether it follows the planned direction, and the attribute reference is what a perfectly
  followed plan gives (the plan knows the direction, not the clip's own track).
* The VAE's ceiling: the same detector on VAE reconstructions of rendered clips (medium and
  close-up), and the cast's whole look on reconstructions of rendered cast clips. No sample can
  show an object better than the VAE decodes it, so when this is low the VAE, not the DiT,
  limits colour, shape and identity.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from jvideo.toyworld.captions import caption, with_camera
from jvideo.toyworld.dataset import reference_frame, sample_clip_params
from jvideo.toyworld.detector import detect
from jvideo.toyworld.render import render_clip, sample_params
from jvideo.toyworld.world import CAST, COLOUR_NAMES, SHAPES

MOVING = ("left", "right", "up", "down", "jump")
LOOK_ATTRIBUTES = ("shape", "primary", "secondary")   # pattern is judged less reliably
DIRECTIONAL = ("left", "right", "up", "down", "still")


@dataclass
class EvalReport:
    n_text: int
    text_accuracy: dict[str, float]
    n_identity: int
    identity_with_reference: float
    identity_text_only: float
    identity_chance: float
    identity_by_attribute: dict[str, dict[str, float]]
    smoothness_generated: float
    smoothness_rendered: float
    vae_ceiling: dict[str, float]
    direction_probe: dict[str, dict[str, float]]
    placement_probe: dict[str, dict[str, float]]
    placement_references: dict[str, dict[str, float]]
    seconds: float
    identity_hold: float = 0.0          # --hold of the shots made with a reference
    # The same shots with a reference as the VAE decoded them, before the held cut-out is laid
    # over them (Generator.composite): what the model and its VAE keep of the look.
    identity_decoded: float = float("nan")
    identity_composited: int = 0        # of n_identity shots, those whose cut-out was laid over them
    # Scale of classifier guidance towards the stated look the shots were sampled with (0: none).
    look_scale: float = 0.0
    samples: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def frame_change(frames: np.ndarray) -> float:
    """Mean |frame[t+1] - frame[t]| in [0, 1]."""
    f = frames.astype(np.float32) / 255.0
    return float(np.abs(np.diff(f, axis=0)).mean())


def _progress(items, desc: str, unit: str, total: int | None = None):
    """A tqdm bar on stderr: an evaluation samples for minutes."""
    from tqdm import tqdm
    return tqdm(items, desc=desc, total=total, unit=unit, dynamic_ncols=True, leave=False)


def text_trials(gen, n: int, seed: int, steps: int, cfg: float) -> tuple[dict[str, float], list[dict], list[float], list[float]]:
    rng = np.random.default_rng(seed)
    hits: dict[str, list[bool]] = {"colour": [], "shape": [], "background": [], "motion": []}
    samples, smooth_gen, smooth_ref = [], [], []
    for i in _progress(range(n), "held-out prompts", "shot"):
        params = sample_clip_params(rng, "heldout", frames=gen.preset.frames, size=gen.preset.size, p_character=0.0)
        prompt = caption(params, rng, "heldout")
        frames = gen.generate(prompt, None, seed=seed * 1000 + i, steps=steps, cfg=cfg)
        det = detect(frames)
        hits["colour"].append(det.primary == params.look.primary)
        hits["shape"].append(det.shape == params.look.shape)
        hits["background"].append(det.background == params.background)
        if params.motion in DIRECTIONAL:
            hits["motion"].append(det.motion == params.motion)
        smooth_gen.append(frame_change(frames))
        smooth_ref.append(frame_change(render_clip(params)))
        samples.append({"prompt": prompt, "frames": frames, "detected": det.look() + (det.background, det.motion)})
    return {k: float(np.mean(v)) if v else float("nan") for k, v in hits.items()}, samples, smooth_gen, smooth_ref


@dataclass
class IdentityTrials:
    """Fractions of identity shots whose detected (shape, primary, secondary) is the character's."""
    with_reference: float       # as generate gives them
    decoded: float              # the same shots as decoded, before a held cut-out is laid over them
    text_only: float
    shots: int
    composited: int             # shots whose cut-out was laid over them (Generator.composite)
    by_attribute: dict[str, dict[str, float]]
    samples: list[dict]


def identity_trials(gen, shots_per_character: int, seed: int, steps: int, cfg: float,
                    ref_cfg: float = 1.0, hold: float = 0.0) -> IdentityTrials:
    """Each cast member in `shots_per_character` medium and close-up shots, with its reference
    and text only (the same seeds)."""
    rng = np.random.default_rng(seed + 1)
    with_ref, decoded, text_only, samples, composited = [], [], [], [], 0
    # Each look attribute on its own too: a partly learnt identity (the right colour, a
    # blob for a shape) shows here before the whole look matches.
    per_attr = {a: {"with_reference": [], "text_only": []} for a in LOOK_ATTRIBUTES}
    with _progress(None, "identity shots", "pair", total=len(CAST) * shots_per_character) as bar:
        for c in CAST:
            ref = reference_frame(rng, c.look, gen.preset.size)
            for k in range(shots_per_character):
                # Medium and close-up shots: the detector reads a look reliably there (wide shots
                # of small objects lose shape and pattern under blur).
                params = sample_params(rng, look=c.look, name=c.name, motion=str(rng.choice(MOVING)),
                                       camera=str(rng.choice(["medium", "close-up"])),
                                       frames=gen.preset.frames, size=gen.preset.size)
                # the size stated: unstated, a layout model plans a third of them wide
                prompt = with_camera(caption(params, rng, "heldout"), params.camera)
                shot_seed = seed * 7919 + k
                video, layers = gen.sample_batch([prompt], ref[None], [shot_seed], steps=steps, cfg=cfg,
                                                 ref_cfg=ref_cfg, hold=hold)
                raw, a = video[0], gen.composited(video, layers)[0]
                b = gen.generate(prompt, None, seed=shot_seed, steps=steps, cfg=cfg)
                da, db = detect(a), detect(b)
                with_ref.append(da.matches(c.look, LOOK_ATTRIBUTES))
                laid = gen.lays(layers[0])
                decoded.append(detect(raw).matches(c.look, LOOK_ATTRIBUTES) if laid else with_ref[-1])
                composited += laid
                text_only.append(db.matches(c.look, LOOK_ATTRIBUTES))
                for attr in LOOK_ATTRIBUTES:
                    per_attr[attr]["with_reference"].append(da.matches(c.look, (attr,)))
                    per_attr[attr]["text_only"].append(db.matches(c.look, (attr,)))
                samples.append({"prompt": prompt + " [+ref]", "frames": a, "reference": ref})
                bar.update()
    by_attribute = {a: {k: float(np.mean(v)) for k, v in d.items()} for a, d in per_attr.items()}
    return IdentityTrials(float(np.mean(with_ref)), float(np.mean(decoded)), float(np.mean(text_only)),
                          len(with_ref), composited, by_attribute, samples)


def chance_of_look() -> float:
    """Probability that a random (shape, primary, secondary) guess matches: the baseline's floor."""
    n_colours = len(COLOUR_NAMES)
    return 1.0 / (len(SHAPES) * n_colours * (n_colours - 1))


def vae_ceiling(gen, n: int, seed: int) -> dict[str, float]:
    """Detector accuracy (colour, shape) on VAE reconstructions of `n` rendered medium and
    close-up clips, next to the same on the rendered clips themselves; and the whole look
    (shape, primary, secondary: "look") of the cast, moving, in n // 8 clips per member (at
    least 1): the most an identity shot can show through this VAE; "look_inverted" the same
    through the decoder from latents inverted as a held shot's cells are at the end (gen.settle,
    the longer of its two inversions)."""
    from kernels import runtime

    from jvideo.toyworld.render import object_mask

    from .conditioning import frames_to_tensor, tensor_to_frames
    from .invert import invert
    jt = runtime.import_jittor()
    rng = np.random.default_rng(seed + 7)
    size = gen.preset.size

    def decoded(z) -> np.ndarray:
        with jt.no_grad():
            return tensor_to_frames(gen.vae.decode(z)[None].transpose(0, 2, 1, 3, 4))[0]

    def roundtrip(clip: np.ndarray) -> np.ndarray:
        with jt.no_grad():
            return decoded(gen.vae.encode(frames_to_tensor(clip)).mode())

    hits = {k + tag: [] for k in ("colour", "shape", "look") for tag in ("", "_rendered")}
    hits["look_inverted"] = []
    for _ in range(n):
        params = sample_clip_params(rng, "train", frames=4, size=size, p_character=0.0,
                                    camera=str(rng.choice(["medium", "close-up"])))
        clip = render_clip(params)
        for tag, frames in (("", roundtrip(clip)), ("_rendered", clip)):
            det = detect(frames)
            hits["colour" + tag].append(det.primary == params.look.primary)
            hits["shape" + tag].append(det.shape == params.look.shape)
    for member in CAST:
        for _ in range(max(1, n // 8)):
            params = sample_params(rng, look=member.look, name=member.name, motion=str(rng.choice(MOVING)),
                                   camera=str(rng.choice(["medium", "close-up"])), frames=8, size=size)
            clip = render_clip(params)
            inverted = decoded(invert(gen.vae, frames_to_tensor(clip), object_mask(params), gen.settle))
            for tag, frames in (("", roundtrip(clip)), ("_rendered", clip), ("_inverted", inverted)):
                hits["look" + tag].append(detect(frames).matches(member.look, LOOK_ATTRIBUTES))
    return {k: float(np.mean(v)) for k, v in hits.items()}


OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


@dataclass
class ProbeClips:
    """The probes' clips: parameters, scaled latents (n, c, T, h, w), true captions, and the
    placement probe's object colours (n, c) and true object maps (n, T, h, w)."""
    params: list
    latents: object
    captions: list[str]
    colours: np.ndarray
    maps: np.ndarray


def encode_clips(gen, params: list, batch: int = 16) -> np.ndarray:
    """Clip parameters -> their rendered clips' scaled VAE latents (n, c, T, h, w), `batch` clips
    at a time (bounds the encoder's memory)."""
    from kernels import runtime

    from .conditioning import frames_to_tensor
    jt = runtime.import_jittor()
    out = []
    for i in range(0, len(params), batch):
        with jt.no_grad():
            z = gen.vae.encode(frames_to_tensor(np.stack([render_clip(q) for q in params[i:i + batch]]),
                                                video=True)).mode()
            out.append((z * gen.vae.scaling_factor).numpy())
    return np.concatenate(out)


def probe_clips(gen, n: int, seed: int) -> ProbeClips:
    """`n` fresh clips moving left, right, up and down in turn, rendered and encoded once for
    all the probes."""
    from kernels import runtime
    jt = runtime.import_jittor()
    p = gen.preset
    rng = np.random.default_rng(seed + 11)
    params = [sample_params(rng, motion=list(OPPOSITE)[i % 4], frames=p.frames, size=p.size) for i in range(n)]
    captions = [caption(q, np.random.default_rng(i), "train") for i, q in enumerate(params)]
    latents = encode_clips(gen, params)
    colours = object_colours(latents)
    return ProbeClips(params, jt.array(latents), captions, colours, object_maps(latents, colours))


def probe_noise(gen, shape, seed: int, t0: int):
    """The probes' noise at timestep t0: the same for every model, in its preset's form."""
    from kernels import runtime

    from .world_model import clip_noise
    jt = runtime.import_jittor()
    rng = np.random.default_rng([seed, t0])
    return jt.array(clip_noise(rng.standard_normal, shape, gen.preset.dit.shared_noise).astype(np.float32))


def direction_probe(gen, clips: ProbeClips, seed: int,
                    timesteps: tuple[int, ...] = (400, 700, 900, 990)) -> dict[str, dict[str, float]]:
    """{"t=400": {"true": e, "opposite": e, "no_caption": e}, ...}: object-cell v-prediction
    error (weighted MSE, object cells only) of the probe clips, without a reference."""
    from dataclasses import replace

    from kernels import runtime

    from .train import object_weights, v_loss
    from .world_model import diffusion_schedule
    jt = runtime.import_jittor()
    p = gen.preset
    params, x0, n = clips.params, clips.latents, len(clips.params)
    reference = jt.zeros((n, x0.shape[1], 1) + tuple(x0.shape[3:]))
    keep = np.zeros(n, np.float32)
    weights = jt.array(object_weights(params, p.size // p.latent_size, 1e6)[:, None])   # ~object cells only
    captions = {"true": clips.captions,
                "opposite": [caption(replace(q, motion=OPPOSITE[q.motion]), np.random.default_rng(i), "train")
                             for i, q in enumerate(params)],
                "no_caption": [""] * n}
    encoded = {name: gen.text.encode(caps) for name, caps in captions.items()}    # (emb, mask) each
    layouts = {name: probe_layouts(gen, caps) for name, caps in captions.items()}
    schedule = diffusion_schedule(p)
    out: dict[str, dict[str, float]] = {}
    for t0 in timesteps:
        noise = probe_noise(gen, x0.shape, seed, t0)
        t = np.full(n, t0)
        with jt.no_grad():
            out[f"t={t0}"] = {name: float(v_loss(gen.dit, schedule, x0, noise, t, reference, keep, emb, mask,
                                                 weights, layouts[name]).item())
                              for name, (emb, mask) in encoded.items()}
    return out


def probe_layouts(gen, captions: list[str]) -> np.ndarray | None:
    """A layout-conditioned DiT's layouts for the probes: each caption's plan (the i-th from seed
    i, as sampling would make it), none for an empty caption; None for other DiTs."""
    return gen.layouts(captions, list(range(len(captions))), gen.preset.frames)


def off_background(latents: np.ndarray) -> np.ndarray:
    """(n, c, T, h, w) -> the same, each frame minus its spatial median (its background)."""
    return latents - np.median(latents, axis=(3, 4), keepdims=True)


def object_maps(latents: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """latents (n, c, T, h, w), colours (n, c) unit vectors -> (n, T, h, w): each frame off its
    background, projected on its clip's object colour."""
    return np.einsum("nc,ncthw->nthw", colours, off_background(latents))


def object_colours(latents: np.ndarray) -> np.ndarray:
    """(n, c, T, h, w) true latents -> (n, c): the mean offset from the background of each
    clip's 5% most distinct cells (its object), as a unit vector."""
    centred = off_background(latents)
    size = np.abs(centred).sum(axis=1, keepdims=True)
    top = size >= np.quantile(size, 0.95, axis=(2, 3, 4), keepdims=True)
    colour = (centred * top).sum(axis=(2, 3, 4)) / top.sum(axis=(2, 3, 4))
    return colour / np.maximum(np.linalg.norm(colour, axis=1, keepdims=True), 1e-9)


def map_cosines(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Object maps (n, T, h, w) -> mean cosine of each predicted frame with the true frame, the
    true clip average and the true mirrored frame (T-1-k)."""
    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
        return float(np.mean((a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)))
    frames = truth.shape[1]
    average = truth.mean(axis=1)
    return {"true_frame": float(np.mean([cosine(predicted[:, k], truth[:, k]) for k in range(frames)])),
            "clip_average": float(np.mean([cosine(predicted[:, k], average) for k in range(frames)])),
            "mirrored_frame": float(np.mean([cosine(predicted[:, k], truth[:, frames - 1 - k]) for k in range(frames)]))}


def placement_probe(gen, clips: ProbeClips, seed: int,
                    timesteps: tuple[int, ...] = (300, 600, 900)) -> dict[str, dict[str, float]]:
    """{"t=300": {"true_frame": c, "clip_average": c, "mirrored_frame": c}, ...}: where the DiT's
    clean-latent estimate puts the object, frame by frame (module docstring), on the probe clips
    with their true captions, without a reference."""
    return {f"t={t0}": map_cosines(object_maps(clean_estimate(gen, clips, seed, t0), clips.colours), clips.maps)
            for t0 in timesteps}


def clean_estimate(gen, clips: ProbeClips, seed: int, t0: int) -> np.ndarray:
    """The DiT's clean-latent estimate (n, c, T, h, w) of the probe clips noised to t0 with the
    probes' noise, under their true captions, without a reference."""
    from kernels import runtime

    from .conditioning import layout_kwargs, reference_kwargs
    from .world_model import diffusion_schedule
    jt = runtime.import_jittor()
    x0, n = clips.latents, len(clips.params)
    emb, mask = gen.text.encode(clips.captions)
    reference = jt.zeros((n, x0.shape[1], 1) + tuple(x0.shape[3:]))
    schedule = diffusion_schedule(gen.preset)
    t = np.full(n, t0)
    xt = schedule.add_noise(x0, probe_noise(gen, x0.shape, seed, t0), t)
    layout = layout_kwargs(gen.dit, probe_layouts(gen, clips.captions), n, x0.shape[2], x0.shape[-1])
    with jt.no_grad():
        v = gen.dit(jt.concat([reference, xt], dim=2), jt.array(t.astype(np.float32)), emb, mask,
                    **reference_kwargs(gen.dit, reference, np.zeros(n, np.float32)), **layout)[:, :, 1:]
    return schedule.original_from_velocity(xt, v, t).numpy()


def rerendered(gen, clips: ProbeClips, rng: np.random.Generator, motion_of) -> list:
    """The probe clips' parameters with the same look, background, camera and lighting, the
    motion `motion_of(params)` and fresh tracks."""
    p = gen.preset
    return [sample_params(rng, look=q.look, name=q.name, background=q.background, motion=motion_of(q),
                          camera=q.camera, lighting=q.lighting, frames=p.frames, size=p.size)
            for q in clips.params]


def placement_references(gen, clips: ProbeClips, seed: int, renders: int = 4) -> dict[str, dict[str, float]]:
    """The placement probe's cosines for estimates that know the clip's attributes and nothing of
    its own track, about the best a denoiser can do when the noise hides the frames (t = 900; an
    upper bound, as captions do not always state the camera, lighting or pattern): each probe
    clip re-rendered `renders` times with its look, background, camera, lighting and motion and
    fresh tracks, object maps averaged ("attributes"); half of them with the opposite motion
    ("direction_blind"); and the truth itself ("truth")."""
    rng = np.random.default_rng(seed + 13)

    def average_maps(motion_of) -> np.ndarray:
        total = np.zeros_like(clips.maps)
        for _ in range(renders):
            total += object_maps(encode_clips(gen, rerendered(gen, clips, rng, motion_of)), clips.colours)
        return total / renders

    same = average_maps(lambda q: q.motion)
    blind = (same + average_maps(lambda q: OPPOSITE[q.motion])) / 2
    return {"truth": map_cosines(clips.maps, clips.maps), "attributes": map_cosines(same, clips.maps),
            "direction_blind": map_cosines(blind, clips.maps)}


def evaluate(gen, n: int = 64, seed: int = 0, steps: int = 25, cfg: float = 4.0,
             shots_per_character: int | None = None, ref_cfg: float = 1.0, hold: float = 0.0) -> EvalReport:
    """Every figure of the module docstring; `ref_cfg` (reference guidance) only changes the
    identity shots made with a reference."""
    start = time.time()
    text_acc, text_samples, smooth_gen, smooth_ref = text_trials(gen, n, seed, steps, cfg)
    per_char = shots_per_character or max(1, n // (4 * len(CAST)))
    ident = identity_trials(gen, per_char, seed, steps, cfg, ref_cfg, hold)
    with _progress(None, "VAE ceiling and probes", "stage", total=4) as bar:
        ceiling = vae_ceiling(gen, max(8, n // 2), seed)
        clips = probe_clips(gen, n, seed)
        bar.update()
        probe = direction_probe(gen, clips, seed)
        bar.update()
        placement = placement_probe(gen, clips, seed)
        bar.update()
        references = placement_references(gen, clips, seed)
        bar.update()
    return EvalReport(n, text_acc, ident.shots, ident.with_reference, ident.text_only, chance_of_look(),
                      ident.by_attribute, float(np.mean(smooth_gen)), float(np.mean(smooth_ref)), ceiling, probe,
                      placement, references, time.time() - start, hold, ident.decoded, ident.composited,
                      gen.applied_look_scale, text_samples[:8] + ident.samples[:8])


def contact_sheet(samples: list[dict], path, frames_shown: int = 6) -> None:
    """One row per sample: (reference,) frames, and the prompt under it."""
    from PIL import Image, ImageDraw

    from .media import write_png
    if not samples:
        return
    h, w = samples[0]["frames"].shape[1:3]
    scale = 2
    cell_w, cell_h = w * scale, h * scale
    cols = frames_shown + 1
    sheet = Image.new("RGB", (cols * cell_w, len(samples) * (cell_h + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, s in enumerate(samples):
        y = r * (cell_h + 14)
        if "reference" in s:
            sheet.paste(Image.fromarray(s["reference"]).resize((cell_w, cell_h), Image.NEAREST), (0, y))
        idx = np.linspace(0, len(s["frames"]) - 1, frames_shown).round().astype(int)
        for c, t in enumerate(idx):
            sheet.paste(Image.fromarray(s["frames"][t]).resize((cell_w, cell_h), Image.NEAREST), ((c + 1) * cell_w, y))
        draw.text((2, y + cell_h), s["prompt"][:110], fill="black")
    write_png(sheet, path)
