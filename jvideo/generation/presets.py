"""Training and sampling presets: configuration as data."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from jvideo.errors import JVideoError


# Checkpoints shipped with the package: one folder per preset (jvideo train's layout).
CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
# The one every command uses by default (generate, eval, film, studio, bench).
SHIPPED_CHECKPOINT = CHECKPOINT_DIR / "tiny-v21"
# Fraction of the sampling steps an identity reference's cut-out is held on the planned track
# (`--hold`, generation/inpaint.py; README, "Generation", item 24).
IDENTITY_HOLD = 1.0
# Scale of classifier guidance towards the look a prompt states, for checkpoints with a look
# classifier (`--look-scale`, generation/look_guidance.py; README, "Generation", item 35).
LOOK_SCALE = 10.0


@dataclass
class VAEPreset:
    """AutoencoderKL for 64x64 frames: len(channels)-1 halvings (4 blocks -> 8x, 8x8 latents).

    8x with 8 latent channels keeps the DiT's token count small (16 per frame at patch 2),
    which is what makes CPU training and 10-second sampling possible; thin channels at full
    resolution keep the per-frame encoder cheap.
    """
    channels: tuple[int, ...] = (16, 32, 64, 64)
    latent_channels: int = 8
    layers_per_block: int = 1
    norm_groups: int = 8
    mid_attention: bool = False
    steps: int = 1500
    batch: int = 16
    lr: float = 1e-3
    kl_weight: float = 1e-6
    # Reconstruction weight on object pixels is 1 + object_weight: the object covers 4-18% of a
    # frame, and an unweighted loss spends the VAE's capacity on the background (the shipped
    # tiny VAE, trained unweighted, turns a green object orange: README, "Generation").
    object_weight: float = 0.0
    # Initial posterior log-variance (None: the layer's default init, about 0). See
    # world_model.init_vae_for_training.
    init_logvar: float | None = None
    # Weight of an MSE tying the first 3 latent channels' means to the frame average-pooled to
    # the latent grid. Unanchored, a small latent spends its channels on the backgrounds' fine
    # noise texture and collapses object colours (measured: green and purple objects decode
    # grey after 2500 steps); anchored, every cell carries its colour and the rest the detail.
    colour_anchor: float = 0.0
    # After the VAE stage (trained here or taken with --vae-from / --dit-from): the decoder alone
    # fine-tuned on the frozen encoder's latents, as Stability's ft-MSE decoder was for Stable
    # Diffusion. The latent space stays the one the DiT learnt, so a trained DiT keeps working,
    # while the decoder draws small patterned objects more faithfully (a heavier object weight:
    # the background is already decoded well). 0: no decoder stage.
    decoder_steps: int = 0
    decoder_lr: float = 2e-4
    decoder_object_weight: float = 16.0


@dataclass
class DiTPreset:
    """Latte-style video DiT on the VAE latents."""
    heads: int = 6
    head_dim: int = 32
    layers: int = 4            # pairs of (spatial, temporal) blocks
    patch: int = 2
    steps: int = 1500
    batch: int = 8
    lr: float = 5e-4
    text_dropout: float = 0.1      # classifier-free guidance: caption replaced by ""
    reference_dropout: float = 0.3  # trains text-only generation too (the baseline)
    # Loss weight on latent cells the object touches is 1 + object_weight (same reason as the
    # VAE's): colour, shape, motion and identity all live in those few cells.
    object_weight: float = 0.0
    # Fraction of clips of named one-off characters with random looks: a name never fixes a
    # look in training, so identity can only come from the reference (the cast stays unseen).
    p_named: float = 0.6
    # Identity reference also as cross-attention tokens (LatteConfig.reference_tokens), besides
    # the clean reference latent at temporal position 0 that every preset uses.
    reference_tokens: bool = False
    # Identity references cut to a square around their object and scaled to fill the frame
    # (toyworld.object_crop), in training and sampling alike: uncropped, most of a reference
    # describes a background the shot will not have.
    reference_crop: bool = False
    # Caption (and reference) pooled into the adaLN embedding (LatteConfig.pooled_conditioning).
    pooled_conditioning: bool = False
    # Joint image-video training (as Latte does): every `image_every`-th step trains on
    # `image_batch` single frames (each with its clip's reference at position 0) instead of
    # `batch` clips. 32 frames cost about what 8 clips do (measured on 2 cores: 0.64 against
    # 0.67 s a step; per token a frame costs twice a clip, small temporal attentions and more
    # captions to encode), so the spatial blocks, the text and the reference tokens see 4x more
    # looks per step; motion still comes from the clip steps. 0: clips only.
    image_every: int = 0
    image_batch: int = 0
    # Image steps only in the first `image_until` of training, clip steps only after it:
    # appearance is learnt early at the high learning rate, and the last (low learning rate)
    # steps are all clips, which settle temporal consistency (tiny-v5, image steps to the end,
    # flickers twice as much as tiny-v4). 1.0: image steps throughout.
    image_until: float = 1.0
    # Clips rendered and encoded once before DiT training (latents and references cached in
    # memory): the DiT step then costs only the DiT, not rendering and the VAE encoder.
    dataset_clips: int = 2000
    # Temporal blocks cross-attend to the caption and reference too (LatteConfig.
    # temporal_cross_attention): each patch position's time line reads the motion words directly.
    temporal_cross_attention: bool = False
    # A learnt per-frame vector in the spatial blocks' adaLN embedding (LatteConfig.
    # frame_modulation): each frame's modulation is a function of timestep, caption and frame.
    frame_modulation: bool = False
    # Training clips drawn with these motions only (toyworld MOTIONS, not spin); empty: all.
    # A diagnostic (tiny-motion): can the DiT learn direction when the data is all about it?
    motions: tuple[str, ...] = ()
    # Fraction of the noise's variance shared by all frames of a clip (world_model.clip_noise),
    # in training, sampling and the probes alike; 0: independent frames.
    shared_noise: float = 0.0
    # Training timesteps drawn with density ~ t ** timestep_power (NoiseSchedule.sample_timesteps):
    # more of the high-noise steps, where each frame's object placement is decided; 0: uniform.
    timestep_power: float = 0.0
    # Decay of an exponential moving average of the weights (ema.WeightAverage), which the
    # checkpoint then holds and sampling uses, as DiT and Latte sample; 0: no average, the raw
    # weights. At 0.999 it spans about the last 1,000 steps.
    ema: float = 0.0
    # Layout conditioning (LatteConfig.layout_conditioning, generation/layout.py): the DiT is
    # told where the subject is in each frame, the true cover in training, a track planned from
    # the prompt in sampling; `layout_dropout` of the training rows go without, so the model
    # also generates unplanned.
    layout: bool = False
    layout_dropout: float = 0.2
    # With a layout, the identity reference's cropped latent is also drawn into the subject's
    # window in each frame (generation/layout.py): copying a look becomes a local task.
    reference_paste: bool = False
    # With a layout, the look the prompt states is drawn on the planned track too: the stated
    # shape's silhouette at pixel resolution and the stated primary colour (generation/layout.py).
    # In training, the clip's own look where its caption states it (anonymous objects).
    layout_look: bool = False
    # Every block gets its own timestep-dependent modulation (LatteConfig.block_modulation,
    # DiT's adaLN-Zero per block) beside adaLN-single's shared one: room to act differently at
    # different noise levels, which a model trained on all of them lacked (README item 30).
    block_modulation: bool = False

    def is_image_step(self, step: int) -> bool:
        """Whether training step `step` (from 0) is an image step: the last of every image_every,
        before `image_until` of the steps."""
        return (bool(self.image_every) and step < self.image_until * self.steps
                and step % self.image_every == self.image_every - 1)


@dataclass
class LookPreset:
    """The look classifier for classifier guidance (generation/look_guidance.py), trained after
    the DiT on the DiT's encoded clips: crops of their true subject, noised at random levels,
    labelled with its shape and primary colour. steps 0: no classifier (and no guidance)."""
    steps: int = 0
    batch: int = 128
    lr: float = 1e-3
    # Cells a side of the resampled crop. A prototype with 12 and the crop jittered about the
    # true subject (as the DiT does not draw it exactly where planned) guided no better on 32
    # prompts (README, item 35).
    crop: int = 8
    # LookClassifierConfig.width and .hidden: small enough that the shipped checkpoint stays under
    # the 30 MB (0.8 MB beside the DiT's 26.2 and the VAE's 2.6).
    width: int = 32
    hidden: int = 128
    # Noise levels trained (t below max_t) and guided: above about t = 800 no look can be read
    # from the latent (the classifier is at chance there), so its gradient would only be noise.
    max_t: int = 900


@dataclass
class Preset:
    name: str
    frames: int = 16
    size: int = 64
    text_tokens: int = 24          # MiniLM tokens kept for cross-attention
    # Cross-attention also reads MiniLM's input-layer vectors of those tokens (word plus
    # position, TextEncoder.embed_tokens(layer=0)) after its output states: there "left" and
    # "right" differ as much as two colours do, in the output states 4x less (README, item 14);
    # measured in tiny-v12, it did not make the DiT use the direction (item 15).
    word_tokens: bool = False
    timesteps: int = 1000
    vae: VAEPreset = field(default_factory=VAEPreset)
    dit: DiTPreset = field(default_factory=DiTPreset)
    look: LookPreset = field(default_factory=LookPreset)
    checkpoint_every: int = 100
    seed: int = 0
    lr_schedule: str = "constant"   # or "cosine": warm-up, then decay to a tenth at the last step

    @property
    def latent_size(self) -> int:
        return self.size // 2 ** (len(self.vae.channels) - 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preset":
        """A preset read from a checkpoint's preset.json (user data): wrong keys or values are
        one JVideoError line, not a TypeError deep in model building."""
        try:
            d = dict(d)
            vae = VAEPreset(**_tuples(d.pop("vae")))
            dit = DiTPreset(**_tuples(d.pop("dit")))
            look = LookPreset(**d.pop("look", {}))   # absent from runs before the look classifier
            preset = cls(vae=vae, dit=dit, look=look, **d)
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            raise JVideoError(f"preset.json does not describe a jvideo preset ({err})") from None
        for part in (preset, vae, dit, look):
            _check_fields(part)
        if look.crop % 2:
            raise JVideoError(f"preset.json: the look classifier's crop must be even, not {look.crop!r}")
        if dit.image_every and not dit.image_batch:
            raise JVideoError("preset.json: image_every needs an image_batch")
        if dit.ema >= 1:
            raise JVideoError(f"preset.json: ema is a decay below 1, not {dit.ema!r}")
        if dit.reference_paste and not (dit.layout and dit.reference_crop):
            raise JVideoError("preset.json: reference_paste needs layout and reference_crop")
        if dit.layout_look and not dit.layout:
            raise JVideoError("preset.json: layout_look needs layout")
        if dit.layout_dropout > 1:
            raise JVideoError(f"preset.json: layout_dropout is a fraction, not {dit.layout_dropout!r}")
        if dit.shared_noise >= 1:
            raise JVideoError(f"preset.json: shared_noise is a fraction below 1, not {dit.shared_noise!r}")
        if dit.image_until > 1:
            raise JVideoError(f"preset.json: image_until is a fraction of the steps, not {dit.image_until!r}")
        return preset


def _tuples(values: dict) -> dict:
    """JSON lists back to the tuples the dataclasses hold (channels, motions)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


_MAY_BE_ZERO = {"seed", "text_dropout", "reference_dropout", "p_named", "kl_weight", "object_weight",
                "colour_anchor", "image_every", "image_batch", "ema",
                "shared_noise", "timestep_power", "layout_dropout",
                "decoder_steps", "steps"}   # a DiT of 0 steps is another checkpoint's, kept (keep_dit)


def _check_fields(obj) -> None:
    """Every number has its default's type and is finite and positive (sizes, counts, rates;
    a few may be 0); channel lists hold positive ints."""
    import math
    from dataclasses import fields
    for f in fields(obj):
        value, default = getattr(obj, f.name), f.default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and (isinstance(value, int) or not isinstance(default, int))
                  and math.isfinite(value) and (value > 0 or (value == 0 and f.name in _MAY_BE_ZERO)))
        elif f.name == "init_logvar":   # may be negative, or None
            ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                   and math.isfinite(value))
        elif f.name == "channels":
            ok = bool(value) and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in value)
        elif f.name == "motions":
            from jvideo.toyworld.world import MOTIONS
            ok = isinstance(value, tuple) and all(m in MOTIONS and m != "spin" for m in value)
        else:
            continue
        if not ok:
            raise JVideoError(f"preset.json: bad value {value!r} for {f.name}")


# tiny-v3 (84 min on the 2-core machine; its checkpoint, superseded by tiny-v5, is in the git
# history; tiny-v5 shares its VAE): a 4x VAE (16x16x6 latents, colour
# anchored: an object keeps its colour and outline) under a patch-4 DiT (still 16 tokens per
# frame) that also sees the identity reference as cross-attention tokens.
_TINY_V3 = Preset("tiny-v3", vae=VAEPreset(channels=(16, 32, 64), latent_channels=6, steps=4000, object_weight=4.0,
                                           init_logvar=-8.0, colour_anchor=1.0),
                  dit=DiTPreset(patch=4, steps=5000, object_weight=4.0, reference_tokens=True), lr_schedule="cosine")
# Each recipe after tiny-v3 is the one before with one change (README, "Generation").
_TINY_V4 = replace(_TINY_V3, name="tiny-v4", dit=replace(_TINY_V3.dit, pooled_conditioning=True))
_TINY_V5 = replace(_TINY_V4, name="tiny-v5", dit=replace(_TINY_V4.dit, image_every=2, image_batch=32))
_TINY_V9 = replace(_TINY_V5, name="tiny-v9", dit=replace(_TINY_V5.dit, reference_crop=True))
_TINY_V10 = replace(_TINY_V9, name="tiny-v10", dit=replace(_TINY_V9.dit, ema=0.999))
_TINY_V11 = replace(_TINY_V10, name="tiny-v11", dit=replace(_TINY_V10.dit, lr=1e-3))
_TINY_V12 = replace(_TINY_V11, name="tiny-v12", word_tokens=True)
_TINY_V15 = replace(_TINY_V11, name="tiny-v15", dit=replace(_TINY_V11.dit, layout=True))
# Fine-tuned from tiny-v15's weights (jvideo train --dit-from), not trained from scratch: 800
# steps at a third of the rate, with a shorter weight average (about the last 200 steps).
_TINY_V16 = replace(_TINY_V15, name="tiny-v16",
                    dit=replace(_TINY_V15.dit, layout_look=True, steps=800, lr=3e-4, ema=0.995))
# tiny-v15's recipe from scratch (5000 steps at 1e-3, weight average 0.999) with the stated look
# in the layout: what tiny-v16's 800-step fine-tune could not test.
_TINY_V17 = replace(_TINY_V15, name="tiny-v17", dit=replace(_TINY_V15.dit, layout_look=True))
# tiny-v15's VAE decoder fine-tuned on its frozen encoder's latents (VAEPreset.decoder_steps),
# tiny-v15's DiT kept as it is (0 DiT steps: --dit-from gives it).
_TINY_V18 = replace(_TINY_V15, name="tiny-v18", vae=replace(_TINY_V15.vae, decoder_steps=2000),
                    dit=replace(_TINY_V15.dit, steps=0))
# tiny-v15 with per-block timestep modulation (DiTPreset.block_modulation), from scratch.
_TINY_V19 = replace(_TINY_V15, name="tiny-v19", dit=replace(_TINY_V15.dit, block_modulation=True))
# tiny-v19 trained longer: fine-tuned from its weights (jvideo train --dit-from runs/tiny-v19)
# for 4000 more steps, a warm restart of the cosine rate at half tiny-v19's peak.
_TINY_V20 = replace(_TINY_V19, name="tiny-v20", dit=replace(_TINY_V19.dit, steps=4000, lr=5e-4))
# tiny-v19 with a look classifier for classifier guidance (LookPreset), trained after its DiT.
_TINY_V21 = replace(_TINY_V19, name="tiny-v21", look=LookPreset(steps=3000))
_TINY_MOTION = replace(_TINY_V11, name="tiny-motion",
                       dit=replace(_TINY_V11.dit, frame_modulation=True, motions=("left", "right", "up", "down"),
                                   image_every=0, image_batch=0, steps=2500))

PRESETS = {
    # Trains on a 2-core CPU: see the README for the measured time and losses.
    "tiny": Preset("tiny"),
    # Object-weighted VAE and DiT losses and a cosine learning rate; 2000 + 2400 steps took
    # 58.5 min on the shared 2-core machine (its checkpoint, superseded by tiny-v3, is in the git
    # history; README, "Generation").
    "tiny-v2": Preset("tiny-v2", vae=VAEPreset(steps=2000, object_weight=4.0),
                      dit=DiTPreset(steps=2400, object_weight=4.0), lr_schedule="cosine"),
    "tiny-v3": _TINY_V3,
    # tiny-v3 with one change: the caption (and reference) pooled into every block's adaLN.
    "tiny-v4": _TINY_V4,
    # tiny-v4 with joint image-video training: every other step is 32 single frames (its VAE is
    # tiny-v3's, and every later recipe's).
    "tiny-v5": _TINY_V5,
    # tiny-v5 with its image steps in the first half only: the last 2500 steps are all clips.
    "tiny-v6": replace(_TINY_V5, name="tiny-v6", dit=replace(_TINY_V5.dit, image_until=0.5)),
    # tiny-v5 with 3x the training clips (6000), fewer passes over each: no measurable gain
    # (README, "Generation").
    "tiny-v7": replace(_TINY_V5, name="tiny-v7", dit=replace(_TINY_V5.dit, dataset_clips=6000)),
    # tiny-v5 with finer tokens at the same step time: patch 2 (64 tokens a frame, 8x8 pixels
    # each, against 16 of 16x16) with a quarter of the batch (2 clips, 8 single frames).
    "tiny-v8": replace(_TINY_V5, name="tiny-v8", dit=replace(_TINY_V5.dit, patch=2, batch=2, image_batch=8)),
    # tiny-v5 with identity references cut around their object (DiTPreset.reference_crop).
    "tiny-v9": _TINY_V9,
    # tiny-v9 sampling from an exponential moving average of its weights (DiTPreset.ema); the
    # raw weights train exactly as tiny-v9's.
    "tiny-v10": _TINY_V10,
    # tiny-v10 at twice the learning rate (1e-3, cosine to 1e-4); the default before tiny-v15
    # (its checkpoint is in the git history, its VAE is tiny-v15's).
    "tiny-v11": _TINY_V11,
    # tiny-v11 whose cross-attention also reads the caption's word vectors (Preset.word_tokens).
    "tiny-v12": _TINY_V12,
    # tiny-v12 whose temporal blocks cross-attend too (DiTPreset.temporal_cross_attention). A step
    # costs 1.3 s instead of 0.8 here, so it takes 3000 steps: about tiny-v12's DiT time.
    "tiny-v13": replace(_TINY_V12, name="tiny-v13", dit=replace(_TINY_V12.dit, temporal_cross_attention=True,
                                                                steps=3000)),
    # tiny-v11 whose spatial blocks are modulated per frame (DiTPreset.frame_modulation).
    "tiny-v14": replace(_TINY_V11, name="tiny-v14", dit=replace(_TINY_V11.dit, frame_modulation=True)),
    # A diagnostic, not a recipe: tiny-v14 on clips that all move left, right, up or down, clip
    # steps only, 2500 steps (README, "Generation", item 17).
    "tiny-motion": _TINY_MOTION,
    # Diagnostics on tiny-motion's data and steps, one change each (README, "Generation", item 21):
    # half of each noise element's variance shared by the clip's frames (DiTPreset.shared_noise),
    "tiny-motion-shared": replace(_TINY_MOTION, name="tiny-motion-shared",
                                  dit=replace(_TINY_MOTION.dit, shared_noise=0.5)),
    # and training timesteps on a ramp towards high noise (DiTPreset.timestep_power).
    "tiny-motion-highnoise": replace(_TINY_MOTION, name="tiny-motion-highnoise",
                                     dit=replace(_TINY_MOTION.dit, timestep_power=1.0)),
    # tiny-v11 told where the subject is in each frame (DiTPreset.layout): the true cover in
    # training, a track planned from the prompt in sampling (README, "Generation", item 22).
    # The shipped default before tiny-v19 (its checkpoint is in the git history; its VAE is tiny-v19's).
    "tiny-v15": _TINY_V15,
    # tiny-v15 with the stated look in the layout (DiTPreset.layout_look): the planner draws the
    # stated shape's silhouette and colour on the track; fine-tuned from tiny-v15 with
    # --dit-from (README, "Generation", item 26).
    "tiny-v16": _TINY_V16,
    # tiny-v15 with layout_look, trained from scratch: the run item 26 of the README calls for.
    "tiny-v17": _TINY_V17,
    # tiny-v15 with its decoder fine-tuned (VAEPreset.decoder_steps) and its DiT as it is:
    # jvideo train --preset tiny-v18 --dit-from jvideo/checkpoints/tiny-v15 (README, item 29).
    "tiny-v18": _TINY_V18,
    # tiny-v15 with per-block timestep modulation (DiTPreset.block_modulation). VAE and DiT trained
    # from scratch in one 76.6-minute run (README, "Generation", item 34), the shipped default until
    # tiny-v21; the first run took tiny-v15's VAE (--vae-from, item 31).
    "tiny-v19": _TINY_V19,
    # tiny-v19 fine-tuned 4000 more steps from its own weights (--dit-from; README, item 33).
    "tiny-v20": _TINY_V20,
    # tiny-v19 and a look classifier for classifier guidance: the shipped default (README, item 35).
    "tiny-v21": _TINY_V21,
    # A diagnostic: tiny-v15 with the reference drawn into the subject's window
    # (DiTPreset.reference_paste), 3000 steps (README, "Generation", item 23).
    "tiny-paste": replace(_TINY_V15, name="tiny-paste", dit=replace(_TINY_V15.dit, reference_paste=True, steps=3000)),
    # For bigger machines (a GPU or many cores): wider, deeper, longer.
    "small": Preset("small", vae=VAEPreset(channels=(64, 128, 128), layers_per_block=2, norm_groups=16,
                                           mid_attention=True, steps=20000, batch=32),
                    dit=DiTPreset(heads=6, head_dim=64, layers=6, steps=100000, batch=32, lr=2e-4,
                                  dataset_clips=50000, ema=0.9999)),
    # For tests: seconds per step.
    "test": Preset("test", frames=4, size=32, text_tokens=8,
                   vae=VAEPreset(channels=(8, 16), norm_groups=4, steps=3, batch=2, init_logvar=-8.0,
                                 colour_anchor=1.0),
                   dit=DiTPreset(heads=2, head_dim=8, layers=1, steps=3, batch=2, dataset_clips=4,
                                 reference_tokens=True, pooled_conditioning=True, image_every=2, image_batch=4),
                   checkpoint_every=2),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise JVideoError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return PRESETS[name]
