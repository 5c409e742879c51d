"""`jvideo film`: a script becomes a film.

Stages (each timed, long ones with a progress bar):
1. script   - parse Fountain / plain text (film.script): scenes, cast, units
2. cast     - every character's reference image: loaded, or generated once from its description
3. timing   - unit durations: the voice (espeak-ng, one voice per speaker) or reading speed
4. retrieve - plan against the footage library (montage's optimiser); note what it lacks
5. generate - shots the library lacks, from the video diffusion model with the character's
              reference; cached in a shot library keyed by prompt, seed, identity, checkpoint
6. plan     - plan again with the generated shots pinned to their units
7. render   - montage's renderer: title cards, picture, dialogue subtitles, narration
8. report   - plan JSON with provenance, SRT, storyboard PNG, HTML report

Generation is optional at every level: `--generate never`, no checkpoint or a generator that
fails all give a film from the library alone, with the units that lacked footage listed.
Jittor and the model are imported only when a shot is generated.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from jvideo.generation.presets import IDENTITY_HOLD
from jvideo.toyworld.captions import with_camera

from .errors import FilmError
from .script import CastMember, Script, ScriptUnit, read_script

# A generated shot's id in the combined shot table: kept apart from library ids.
GENERATED_ID_BASE = 1 << 40
# Below this relevance (cosine + keyword bonus, the planner's score) of a unit's best library
# shot, the library is said to lack the shot: `jvideo bench film-threshold` measured 0.87 as the
# best separation on the toy world (README, "Film").
GENERATE_BELOW = 0.87
# Shot size asked for a character's generated shot whose text states none (README, Film): the
# closest, where the look is most legible (demo, 2026-12-06: Mira 4 of 8 shots read right
# against 0 of 8 at "medium", Tomo 7 against 4).
CHARACTER_FRAMING = "close-up"
GENERATED_FPS = 8
CACHE_SUFFIX = ".film-cache"


@dataclass
class FilmRequest:
    script: Path
    out: Path
    library: Path | None = None
    generate: str = "auto"                # auto | never | always
    checkpoint: Path | None = None        # None: the shipped tiny checkpoint
    shot_cache: Path | None = None        # None: $JVIDEO_CACHE/shots
    aspect: str = "16:9"
    size: tuple[int, int] | None = None
    pace: str = "normal"
    transition: str = "cut"
    narrate: bool = False
    subtitles: bool = True                # burn dialogue into the picture (the SRT is always written)
    threshold: float = GENERATE_BELOW
    seed: int = 0
    steps: int = 25
    cfg: float = 4.0
    hold: float = IDENTITY_HOLD           # a character's cut-out held for this share of the steps
    fps: float = 24.0
    workers: int = 2
    progress: bool = False

    def __post_init__(self) -> None:
        if self.generate not in ("auto", "never", "always"):
            raise FilmError(f"unknown --generate {self.generate!r} (use auto, never or always)")
        if not 0.0 <= self.threshold <= 1.0:
            raise FilmError("--threshold must be between 0 and 1")
        if self.library is None and self.generate == "never":
            raise FilmError("nothing to make the film from: no --library and --generate never")
        # The generator checks these too, but only once it runs; a film made from the library
        # alone should not accept what a later generating run would refuse.
        if not 1 <= self.steps <= 1000:
            raise FilmError("--steps must be between 1 and 1000")
        if not 0.0 <= self.cfg <= 50.0:
            raise FilmError("--cfg must be between 0 and 50")
        if not 0.0 <= self.hold <= 1.0:
            raise FilmError("--hold must be between 0 and 1")
        if not -2**31 < self.seed < 2**31:
            raise FilmError("--seed must fit in 32 bits")


@dataclass
class Provenance:
    """Where one unit's picture comes from, for the plan JSON and the report."""
    unit: int
    kind: str                       # title | action | dialogue
    text: str
    visual: str
    speaker: str | None
    characters: list[str]
    source: str = "retrieved"       # retrieved | generated | title | missing
    reason: str = ""
    library_relevance: float = 0.0   # best library candidate (before generation)
    seed: int | None = None
    identity: str | None = None     # the character whose reference conditioned the shot
    shot_key: str | None = None
    prompt: str | None = None       # what the generator was asked (the visual, framed)


@dataclass
class FilmResult:
    outputs: dict[str, Path]
    provenance: list[Provenance]
    warnings: list[str]
    seconds: dict[str, float]
    duration: float
    generated: int
    reused_generated: int


# -- small pieces ------------------------------------------------------------------------------
def _default_cache() -> Path:
    return Path(os.environ.get("JVIDEO_CACHE", Path.home() / ".cache" / "jvideo")) / "shots"


def _check_output(out: Path) -> None:
    """An .mp4 that montage's own check says can be written."""
    from montage.montage_cli import check_output
    if out.suffix.lower() != ".mp4":
        raise FilmError(f"--out must end in .mp4 (got {out.name})")
    check_output(out)


def shot_seed(base: int, visual: str, identity: str | None) -> int:
    """A shot's seed from what it shows: the same script gives the same shots in any order,
    in any process (MPI ranks) and on any re-run."""
    h = hashlib.sha1(f"{base}\0{visual}\0{identity or ''}".encode("utf-8")).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checkpoint_digest(folder: Path) -> str:
    """Identity of a checkpoint: hashes of its weights and configs (a retrained model is a new key)."""
    h = hashlib.sha1()
    for p in sorted(folder.rglob("*")):
        if p.suffix in (".safetensors", ".json") and p.parent.name != "state":
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(file_digest(p).encode())
    return h.hexdigest()[:16]


def _is_main() -> bool:
    """Rank 0 under mpirun, or the only process; read from Open MPI's environment, so a film
    made without the generator never imports Jittor."""
    from jvideo.distributed import env_world
    return env_world().is_main


class _Stages:
    """Wall time per stage, for the closing summary: `with stages("render"): ...`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


# -- the generator, loaded on first use ----------------------------------------------------------
class LazyGenerator:
    """Loads the checkpoint the first time a shot is needed; remembers why it could not."""

    def __init__(self, checkpoint: Path | None):
        self.checkpoint = checkpoint
        self._gen = None
        self.error: str | None = None
        self.digest = ""

    @property
    def folder(self) -> Path:
        if self.checkpoint is not None:
            return Path(self.checkpoint)
        from jvideo.generation.presets import SHIPPED_CHECKPOINT
        return SHIPPED_CHECKPOINT

    @property
    def composite(self) -> bool | None:
        """Whether held shots get their cut-out laid over them (Generator.composite); None
        before the checkpoint is loaded."""
        return None if self._gen is None else bool(self._gen.composite)

    def get(self):
        if self._gen is None and self.error is None:
            try:
                from jvideo.generation.sample import Generator
                self._gen = Generator.load(self.folder)
                self.digest = checkpoint_digest(self.folder)
            except Exception as err:  # any failure to load means: no generator, stated fallback
                self.error = " ".join(str(err).split()) or type(err).__name__
        return self._gen


# -- cast ----------------------------------------------------------------------------------------
def load_reference_image(member: CastMember, size: int) -> np.ndarray:
    """A declared reference image -> (size, size, 3) uint8; FilmError when it does not load."""
    from PIL import Image
    path = member.reference
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise FilmError(f"reference image of {member.name} not found: {path}") from None
    except Exception as err:  # PIL raises many types for broken files
        raise FilmError(f"reference image of {member.name} does not load: {path} ({type(err).__name__})") from None
    side = min(rgb.size)
    left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
    rgb = rgb.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def resolve_cast(script: Script, needed: set[str], generator: LazyGenerator | None, req: FilmRequest,
                 cache: Path, warnings: list[str]) -> dict[str, np.ndarray]:
    """Reference image (size, size, 3) per character name (lower-case) that has one.

    An image reference must load (FilmError otherwise, unless a description can stand in); a
    description is generated once (middle frame of a generated close-up) and saved in the
    cache, so the same description gives the same reference in every film.
    """
    gen = generator.get() if generator is not None else None
    size = gen.preset.size if gen is not None else 64    # references are made at the model's size
    refs: dict[str, np.ndarray] = {}
    for name in sorted(needed):
        member = script.member(name)
        if member is None or not member.declared:
            continue
        if member.reference is not None:
            try:
                refs[name.lower()] = load_reference_image(member, size)
                continue
            except FilmError:
                if not member.description:
                    raise
                warnings.append(f"reference image of {member.name} does not load ({member.reference}): "
                                "using its description instead")
        if gen is None:
            why = generator.error if generator is not None and generator.error else "generation is off"
            warnings.append(f"{member.name} is only described and no generator is available ({why}): "
                            "the library's shots of them are used as they are")
            continue
        refs[name.lower()] = _described_reference(gen, generator.digest, member, req, cache)
    return refs


def _described_reference(gen, digest: str, member: CastMember, req: FilmRequest, cache: Path) -> np.ndarray:
    """A reference generated from the description (the middle frame of a close-up), cached by
    prompt, seed and checkpoint digest."""
    from PIL import Image
    prompt = f"{member.description}, close-up, still"
    seed = shot_seed(req.seed, prompt, None)
    key = hashlib.sha1(f"ref\0{prompt}\0{seed}\0{digest}".encode()).hexdigest()[:16]
    path = cache / "references" / f"{key}.png"
    if path.is_file():
        return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)
    frames = gen.generate(prompt, None, seed=seed, steps=req.steps, cfg=req.cfg)
    ref = frames[len(frames) // 2]
    path.parent.mkdir(parents=True, exist_ok=True)
    from jvideo.generation.state import atomic_write
    atomic_write(path, lambda tmp: Image.fromarray(ref).save(tmp, format="PNG"))
    member.reference = path
    return ref


# -- units -------------------------------------------------------------------------------------
def montage_units(script: Script):
    """Script units -> montage units: the planner retrieves by what a picture shows (`visual`)."""
    from montage.text import Unit
    out = []
    for i, u in enumerate(script.units):
        if u.kind == "title":
            out.append(Unit(text=u.text, kind="title", meta={"script_unit": i}))
        else:
            out.append(Unit(text=u.visual, kind="text", meta={"script_unit": i}))
    return out


def subtitle_of(u: ScriptUnit) -> str:
    """Dialogue is subtitled with its speaker; action is picture only."""
    return f"{u.speaker}: {u.text}" if u.kind == "dialogue" else ""


VOICE_PITCHES = (35, 62, 48, 75, 28, 55, 68, 40)


def time_units(script: Script, units: list, req: FilmRequest, cache: Path) -> dict[int, Path]:
    """Set each unit's duration; with narration return {unit index: WAV}.

    Narration speaks action with the narrator's voice and each speaker's lines with a voice of
    their own (espeak-ng pitch), so who speaks is heard as well as read."""
    from montage.narration import Voice, speak_units
    from montage.text import reading_seconds
    spoken: dict[int, Path] = {}
    if not req.narrate:
        for u, su in zip(units, script.units):
            if u.kind == "text":
                u.duration = reading_seconds(su.text)
        return spoken
    speakers = sorted({su.speaker for su in script.units if su.kind == "dialogue"})
    voices = {None: Voice()}
    voices.update({s: Voice(pitch=VOICE_PITCHES[k % len(VOICE_PITCHES)], speed=150) for k, s in enumerate(speakers)})
    for who, voice in voices.items():
        idx = [i for i, su in enumerate(script.units) if su.kind != "title" and su.speaker == who]
        if not idx:
            continue
        clips = speak_units([script.units[i].text for i in idx], cache / "voice", voice, progress=req.progress)
        for i, (wav, secs) in zip(idx, clips):
            units[i].duration = secs + voice.pause
            spoken[i] = wav
    return spoken


# -- shot tables ----------------------------------------------------------------------------------
@dataclass
class ShotPool:
    shots: list
    vectors: np.ndarray


def library_pool(library: Path | None) -> ShotPool:
    from montage.library import Library
    if library is None:
        return ShotPool([], np.zeros((0, 384), np.float32))
    if not (Path(library) / "library.sqlite").is_file():
        raise FilmError(f"{library} is not a footage library (make one with: jvideo index FOLDER --library {library})")
    with Library.open(library) as lib:
        return ShotPool(lib.shots(), lib.embeddings())


def combined_table(pool: ShotPool, generated: dict[int, object], gen_vectors: dict[int, np.ndarray]):
    """Library shots plus generated shots (whose ids start at GENERATED_ID_BASE, apart from the
    library's); gen_vectors: unit index -> (D,) embedding of that unit's generated shot."""
    from montage.plan import ShotTable
    shots = list(pool.shots)
    vecs = [pool.vectors] if len(pool.shots) else []
    for unit_index in sorted(generated):
        shots.append(generated[unit_index])
        vecs.append(gen_vectors[unit_index][None])
    vectors = np.concatenate(vecs) if vecs else np.zeros((0, 384), np.float32)
    return ShotTable.from_shots(shots, vectors)


def best_library_match(candidates, pool: ShotPool, characters: list[str]) -> tuple[float, bool]:
    """(best relevance, whether a top candidate shows every named character).

    Relevance is the planner's (cosine + keyword bonus), the score `jvideo bench film-threshold`
    calibrates. A character is seen in a shot when the shot's text names them: the library's
    own words are the only evidence of who is in a shot."""
    if not candidates:
        return 0.0, not characters
    text_of = {s.id: s.text.lower() for s in pool.shots}
    best = max(c[1] for c in candidates)
    if not characters:
        return best, True
    shows = any(all(n.lower() in text_of.get(c[0], "") for n in characters) for c in candidates[:8])
    return best, shows


# -- generation ----------------------------------------------------------------------------------
def generated_shot(frames: np.ndarray, mp4: Path, text: str, shot_id: int, tags: list[str]):
    """A montage Shot for a generated clip, with features measured on its frames."""
    from montage import features as feat
    from montage.library import Shot
    analyzer = feat.FrameAnalyzer(GENERATED_FPS)
    analyzer.add(frames)
    stats = analyzer.stats
    f = feat.shot_features(stats, stats.arrays(), 0, len(stats))
    thumb = mp4.with_suffix(".jpg")
    if not thumb.is_file():
        from PIL import Image
        from montage.files import scratch_path
        tmp = scratch_path(thumb, ".jpg")   # MPI ranks write it at once
        Image.fromarray(frames[len(frames) // 2]).resize((256, 256)).save(tmp, "JPEG", quality=90)
        os.replace(tmp, thumb)
    t, h, w, _ = frames.shape
    return Shot(id=shot_id, source=str(mp4), start=0.0, end=t / GENERATED_FPS, fps=GENERATED_FPS,
                width=w * 4, height=h * 4, thumbnail=str(thumb), lab=f.lab, brightness=f.brightness,
                sharpness=f.sharpness, motion=f.motion, camera=f.camera, text=text, tags=tags,
                generated=True)


def generate_missing(todo: list[Provenance], refs: dict[str, np.ndarray], gen: LazyGenerator,
                     req: FilmRequest, cache: Path, stages: _Stages) -> tuple[dict[int, object], int]:
    """Generate (or take from the cache) one shot per unit in `todo`.

    Returns ({unit index: Shot}, shots taken from the cache). The cache key is the prompt, the
    seed, the identity reference's bytes, the checkpoint's digest and the sampling settings
    (steps, guidance, hold, the held look's inversion); files are written
    atomically, so an interrupted run keeps every finished shot."""
    from jvideo.generation.media import write_mp4
    g = gen.get()
    videos = cache / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    jobs = []
    for p in todo:
        ref_name = next((c.lower() for c in p.characters if c.lower() in refs), None)
        ref = refs.get(ref_name) if ref_name else None
        p.identity = next((c for c in p.characters if c.lower() == ref_name), None)
        p.seed = shot_seed(req.seed, p.visual, p.identity)
        # A character's shot is framed where the look is legible, unless its text says otherwise:
        # the layout planner would draw an unsaid size at random, a third of them wide.
        p.prompt = with_camera(p.visual, CHARACTER_FRAMING) if ref is not None else p.visual
        ref_digest = hashlib.sha1(ref.tobytes()).hexdigest() if ref is not None else "none"
        # The held look's inversion and compositing too: a shot cached by an older sampler is made again.
        inversion = f"{g.inversion}{g.settle}{g.composite}" if g is not None and ref is not None else ""
        # And the pull towards the stated look (classifier guidance), where the checkpoint has one.
        look = f"{g.look_scale}" if g is not None and g.guides_look else ""
        raw = (f"{p.prompt}\0{p.seed}\0{ref_digest}\0{gen.digest}\0{req.steps}\0{req.cfg}\0{req.hold}"
               f"\0{inversion}\0{look}")
        p.shot_key = hashlib.sha1(raw.encode("utf-8")).hexdigest()[:20]
        jobs.append((p, ref, videos / f"{p.shot_key}.mp4"))
    missing = [(p, ref, mp4) for p, ref, mp4 in jobs if not (mp4.is_file() and mp4.with_suffix(".npy").is_file())]
    fresh: dict[int, np.ndarray] = {}
    if missing:
        with stages("generate"):
            frames = sample_shots(g, [p.prompt for p, _, _ in missing], [r for _, r, _ in missing],
                                  [p.seed for p, _, _ in missing], req)
            from jvideo.generation.state import atomic_write, save_npy
            for (p, _, mp4), f in zip(missing, frames):
                atomic_write(mp4.with_suffix(".npy"), lambda tmp, a=f: save_npy(tmp, a))
                write_mp4(f, mp4, fps=GENERATED_FPS)
                fresh[p.unit] = f
    shots = {}
    for k, (p, _, mp4) in enumerate(jobs):
        frames = fresh[p.unit] if p.unit in fresh else np.load(mp4.with_suffix(".npy"), allow_pickle=False)
        tags = ["generated"] + ([p.identity] if p.identity else [])
        shots[p.unit] = generated_shot(frames, mp4, p.visual, GENERATED_ID_BASE + k, tags)
    return shots, len(jobs) - len(missing)


# -- several processes (mpirun) ----------------------------------------------------------------------
# Rank 0 runs the whole pipeline; the other ranks only help generate. Rank 0 decides what to
# generate and sends the jobs (prompts, seeds, reference pixels), so the other ranks need neither
# the script, the library nor the shot cache: only the checkpoint, at the same path.
class _JobChannel:
    """Rank 0 sends the generation jobs exactly once per film: with the shots to generate, or
    empty at the end (no generation, or an error) so that no rank waits forever."""

    def __init__(self) -> None:
        self.sent = not _distributed()

    def send(self, prompts: list[str], references: list, seeds: list[int]) -> None:
        if self.sent:
            return
        self.sent = True
        from jvideo import distributed as dist
        dist.broadcast_json({"prompts": prompts, "seeds": [int(x) for x in seeds],
                             "has_reference": [r is not None for r in references]})
        refs = [r for r in references if r is not None]
        dist.broadcast_array(np.stack(refs) if refs else np.zeros((0, 1, 1, 3), np.uint8))


_CHANNEL: _JobChannel | None = None


def _distributed() -> bool:
    from jvideo.distributed import env_world
    return env_world().distributed


def sample_shots(generator, prompts: list[str], references: list, seeds: list[int], req: FilmRequest) -> list:
    """Generate shots (T, H, W, 3) uint8 - under mpirun with every rank's help."""
    from jvideo import distributed as dist
    from jvideo.generation.batch import generate_shots
    if _CHANNEL is not None:
        _CHANNEL.send(prompts, references, seeds)
        dist.fail_together(None)          # rank 0's generator is loaded; the helpers say theirs
    return generate_shots(generator, prompts, references, seeds, steps=req.steps, cfg=req.cfg,
                          progress=req.progress, hold=req.hold)


def help_generate(req: FilmRequest) -> None:
    """A rank other than 0: receive rank 0's jobs, generate its share, stop."""
    from jvideo import distributed as dist
    from jvideo.generation.batch import generate_shots
    jobs = dist.broadcast_json(None)
    pixels = dist.broadcast_array(None)
    if not jobs["prompts"]:
        return
    refs, it = [], iter(pixels)
    for has in jobs["has_reference"]:
        refs.append(next(it) if has else None)
    gen = LazyGenerator(req.checkpoint)
    dist.fail_together(None if gen.get() is not None else f"rank {dist.world().rank}: {gen.error}")
    generate_shots(gen.get(), jobs["prompts"], refs, jobs["seeds"], steps=req.steps, cfg=req.cfg, progress=False,
                   hold=req.hold)


def register_generated(cache: Path, shots: list, vectors: np.ndarray) -> int:
    """Add generated shots (N) with their text embeddings (N, D) to the shot cache's library
    when not yet listed (marked generated), so `jvideo search --library CACHE` finds them and
    another film can retrieve them."""
    from montage.library import Library
    with Library.create(cache) as lib:
        known = {s.source for s in lib.shots()}
        new = [k for k, s in enumerate(shots) if s.source not in known]
        if new:
            lib.add_shots([replace(shots[k], id=-1, file_id=None) for k in new], vectors[new])
    return len(new)


def units_to_generate(prov: list[Provenance], first, pool: ShotPool, req: FilmRequest) -> list[Provenance]:
    """The units the library lacks, each with the reason (also kept for the others).

    first: the plan against the library alone (its candidates per unit)."""
    todo = []
    for p, pu in zip(prov, first.units):
        if p.kind == "title":
            continue
        best, shows = best_library_match(pu.candidates, pool, p.characters)
        p.library_relevance = best
        if req.generate == "always":
            p.reason = "--generate always"
        elif best < req.threshold:
            p.reason = f"best library match {best:.2f} < threshold {req.threshold:.2f}"
        elif not shows:
            p.reason = f"no library shot shows {', '.join(p.characters)}"
        else:
            p.reason = f"library match {best:.2f}"
            continue
        todo.append(p)
    return todo


def render_config(req: FilmRequest):
    from montage.render import RenderConfig
    rcfg = RenderConfig.for_aspect(req.aspect, fps=req.fps, transition=req.transition,
                                   subtitles=req.subtitles, workers=req.workers, progress=req.progress)
    if req.size:
        rcfg.width, rcfg.height = req.size
        rcfg.__post_init__()
    return rcfg


# -- the whole pipeline -----------------------------------------------------------------------
def make_film(req: FilmRequest) -> FilmResult | None:
    """Run every stage (module docstring); FilmError / MontageError are one-line user errors.
    Under mpirun, ranks other than 0 only help generate and return None."""
    global _CHANNEL
    if _distributed():
        if not _is_main():
            help_generate(req)
            return None
        _CHANNEL = _JobChannel()
        try:
            return _make_film(req)
        finally:
            _CHANNEL.send([], [], [])     # a no-op when the jobs went out already
            _CHANNEL = None
    return _make_film(req)


def _make_film(req: FilmRequest) -> FilmResult:
    from montage.embedding import TextEmbedder
    from montage.plan import PlanConfig, plan
    from montage.render import render_film

    stages = _Stages()
    out = Path(req.out).expanduser().absolute()
    _check_output(out)
    work = out.with_name(out.stem + CACHE_SUFFIX)
    shot_cache = Path(req.shot_cache) if req.shot_cache else _default_cache()
    try:
        (work / "segments").mkdir(parents=True, exist_ok=True)
        shot_cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FilmError(f"cannot write {err.filename}: {err.strerror}") from None

    with stages("script"):
        script = read_script(req.script)
        warnings = list(script.warnings)
        rcfg = render_config(req)
        pcfg = PlanConfig(pace=req.pace, fps=req.fps, fallback="title")
    units = montage_units(script)
    prov = [Provenance(unit=i, kind=su.kind, text=su.text, visual=su.visual, speaker=su.speaker,
                       characters=list(su.characters), source="title" if su.kind == "title" else "retrieved")
            for i, su in enumerate(script.units)]

    with stages("timing"):
        spoken = time_units(script, units, req, work)

    with stages("retrieve"):
        pool = library_pool(req.library)
        embedder = TextEmbedder(cache_dir=work)
        unit_vecs = embedder.embed([u.text for u in units])
        first = plan(units, combined_table(pool, {}, {}), unit_vecs, pcfg)

    todo = units_to_generate(prov, first, pool, req)
    generator = LazyGenerator(req.checkpoint) if req.generate != "never" else None
    generated: dict[int, object] = {}
    cached = 0
    if todo and generator is not None:
        with stages("cast"):
            needed = {c for p in todo for c in p.characters}
            refs = resolve_cast(script, needed, generator, req, shot_cache, warnings)
        if generator.get() is None:
            warnings.append(f"no generator ({generator.error}): {len(todo)} units lacking footage "
                            "use the library's best shot or a title card")
        else:
            generated, cached = generate_missing(todo, refs, generator, req, shot_cache, stages)
            # A generated shot's text is its unit's picture text: the unit's embedding is its own.
            register_generated(shot_cache, list(generated.values()), unit_vecs[list(generated)])
    for p in todo:
        if p.unit in generated:
            p.source = "generated"
        else:
            p.source = "retrieved" if len(pool.shots) else "missing"
            p.reason += " (not generated: " + ("--generate never" if generator is None else
                                                generator.error or "generation failed") + ")"

    with stages("plan"):
        for i, shot in generated.items():
            units[i].pin = shot.id
        table = combined_table(pool, generated, {i: unit_vecs[i] for i in generated})
        final = plan(units, table, unit_vecs, replace(pcfg, fallback="best" if len(table) else "title"))
        for pu, su, p in zip(final.units, script.units, prov):
            pu.caption = subtitle_of(su)
            if p.kind != "title" and all(s.kind == "title" for s in pu.shots):
                p.source = "missing"

    narration = None
    with stages("render"):
        if spoken:
            from montage.narration import build_track
            track = [(spoken[i], pu.start) for i, pu in enumerate(final.units) if i in spoken]
            narration = build_track(track, final.duration, work / "narration.wav")
        render_film(final, out, rcfg, work / "segments", narration)

    with stages("report"):
        from .report import write_outputs
        thumbs = {s.id: s.thumbnail for s in list(pool.shots) + list(generated.values())}
        outputs = write_outputs(out, script, final, prov, warnings, req, generator, rcfg, stages.seconds,
                                thumbs)
    return FilmResult(outputs=outputs, provenance=prov, warnings=warnings, seconds=stages.seconds,
                      duration=final.duration, generated=len(generated) - cached, reused_generated=cached)
