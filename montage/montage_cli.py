"""`jvideo montage TEXT_FILE --library LIB --out film.mp4`: cut a film to a text (Write-a-video).

Pipeline: text -> units -> durations (espeak-ng voice or reading speed) -> cascaded retrieval ->
optimisation (montage.plan) -> segments rendered through the cache next to the output
(montage.render) -> MP4 + SRT + plan JSON + OTIO/EDL timelines + storyboard PNG.

Next to `film.mp4` lives `film.montage-cache/` with the previous plan, spoken units and rendered
segments: re-running after editing the text re-plans from the first changed unit and renders only
the segments that changed. The library is only read.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MontageError

CACHE_SUFFIX = ".montage-cache"


@dataclass
class MontageRequest:
    text_file: Path
    library: Path
    out: Path
    aspect: str = "16:9"
    pace: str = "normal"
    movement: str | None = None
    transition: str = "cut"
    narrate: bool = False
    subtitles: bool = False
    plan_json: Path | None = None
    fps: float = 24.0
    fit: str = "crop"
    fallback: str = "best"
    workers: int = 2
    size: tuple[int, int] | None = None      # overrides the aspect's default size (tests)
    progress: bool = False
    plan_only: bool = False                  # plan, timelines, SRT and storyboard; no MP4


@dataclass
class MontageResult:
    plan: object
    outputs: dict[str, Path]
    rendered: int
    reused: int
    replanned_from: int
    seconds: dict[str, float] = field(default_factory=dict)


def check_output(out: Path) -> None:
    """Fail early, in one line, when the film cannot be written (montage and film)."""
    if out.is_dir():
        raise MontageError(f"cannot write {out}: it is a folder")
    parent = out.parent
    if not parent.is_dir():
        raise MontageError(f"cannot write {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise MontageError(f"cannot write {out}: permission denied")


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise MontageError(f"text file {path} does not exist")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise MontageError(f"text file {path} is not UTF-8 text") from None


def make_montage(req: MontageRequest) -> MontageResult:
    """Run the whole pipeline. Raises MontageError (one line) on bad input."""
    from .embedding import TextEmbedder
    from .library import Library
    from .narration import Voice, build_track, speak_units
    from .plan import Plan, PlanConfig, ShotTable, plan
    from .render import RenderConfig, render_film
    from .storyboard import write_storyboard
    from .subtitles import cues_from_plan, write_srt
    from .text import reading_seconds, split_units
    from .timeline import write_edl, write_otio

    times: dict[str, float] = {}
    t = time.perf_counter()
    out = Path(req.out).expanduser().absolute()
    check_output(out)
    if req.plan_json is not None:
        check_output(Path(req.plan_json).expanduser().absolute())
    rcfg = RenderConfig.for_aspect(req.aspect, fps=req.fps, fit=req.fit, transition=req.transition,
                                   subtitles=req.subtitles, workers=req.workers, progress=req.progress)
    if req.size:
        rcfg.width, rcfg.height = req.size
        rcfg.__post_init__()
    if not req.plan_only:
        from kernels.resources import check_memory
        check_memory(rcfg.memory_estimate(), f"rendering a {rcfg.width}x{rcfg.height} film "
                     f"with {rcfg.workers} worker(s)")
    pcfg = PlanConfig(pace=req.pace, movement=req.movement, fps=req.fps, fallback=req.fallback)
    units = split_units(_read_text(Path(req.text_file)))

    with Library.open(req.library) as lib:
        shots = lib.shots()
        vectors = lib.embeddings()
    times["library"] = time.perf_counter() - t

    cache = out.with_name(out.stem + CACHE_SUFFIX)
    try:
        (cache / "segments").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MontageError(f"cannot write {cache}: {err.strerror}") from err

    # Durations: the voice when narrating, else reading speed.
    t = time.perf_counter()
    narrated = [u for u in units if u.kind == "text"]
    voice = Voice()
    spoken = {}
    if req.narrate:
        clips = speak_units([u.text for u in narrated], cache / "voice", voice, progress=req.progress)
        for u, (wav, secs) in zip(narrated, clips):
            u.duration = secs + voice.pause
            spoken[id(u)] = wav
    else:
        for u in narrated:
            u.duration = reading_seconds(u.text)
    times["narration"] = time.perf_counter() - t

    # Plan (incrementally against the previous run's plan when settings and library match).
    t = time.perf_counter()
    embedder = TextEmbedder(cache_dir=cache)
    unit_vecs = embedder.embed([u.text for u in units])
    table = ShotTable.from_shots(shots, vectors)
    previous = None
    if (cache / "plan.json").is_file():
        try:
            previous = Plan.load(cache / "plan.json")
        except MontageError:
            previous = None  # a damaged cache only costs a full re-plan
    the_plan = plan(units, table, unit_vecs, pcfg, previous)
    times["plan"] = time.perf_counter() - t

    # Render.
    t = time.perf_counter()
    narration, result = None, None
    if req.narrate:
        track = [(spoken[id(u)], pu.start) for u, pu in zip(units, the_plan.units) if id(u) in spoken]
        narration = build_track(track, the_plan.duration, cache / "narration.wav")
    if not req.plan_only:
        result = render_film(the_plan, out, rcfg, cache / "segments", narration)
    times["render"] = time.perf_counter() - t

    # Sidecars.
    t = time.perf_counter()
    stem = out.with_suffix("")
    outputs = {"film": out, "srt": Path(f"{stem}.srt"), "otio": Path(f"{stem}.otio"),
               "edl": Path(f"{stem}.edl"), "storyboard": Path(f"{stem}.storyboard.png"),
               "plan": Path(req.plan_json).expanduser().absolute() if req.plan_json
               else Path(f"{stem}.plan.json")}
    write_srt(cues_from_plan(the_plan), outputs["srt"])
    fade = rcfg.crossfade if rcfg.transition == "crossfade" else 0.0
    write_otio(the_plan, outputs["otio"], narration=str(narration) if narration else None, crossfade=fade)
    write_edl(the_plan, outputs["edl"], crossfade=fade)
    write_storyboard(the_plan, outputs["storyboard"], aspect=(rcfg.width, rcfg.height))
    the_plan.save(outputs["plan"])
    the_plan.save(cache / "plan.json")
    times["sidecars"] = time.perf_counter() - t
    if req.plan_only:
        del outputs["film"]
    return MontageResult(plan=the_plan, outputs=outputs, rendered=len(result.rendered) if result else 0,
                         reused=result.reused if result else 0, replanned_from=the_plan.replanned_from,
                         seconds=times)


# -- CLI -------------------------------------------------------------------------------------
def size_arg(text: str) -> tuple[int, int]:
    """argparse type of --size (film, montage and studio): 'WxH' -> (W, H)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 854x480, not {text!r}") from None
    return w, h


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "montage", help="cut a film from a footage library to a text (Write-a-video)",
        description="Cut a film to TEXT_FILE from shots of LIB: units of text get shots by "
                    "cascaded retrieval and optimisation; writes the MP4 and, beside it, .srt, "
                    ".plan.json, .otio, .edl and .storyboard.png. Re-running after an edit of the "
                    "text re-plans from the first changed sentence and renders only changed shots.")
    p.add_argument("text_file", type=Path, help="plain text or Markdown")
    p.add_argument("--library", type=Path, required=True, help="library folder (jvideo index)")
    p.add_argument("--out", type=Path, required=True, help="film to write (.mp4)")
    p.add_argument("--aspect", choices=["16:9", "9:16", "1:1"], default="16:9",
                   help="854x480, 480x854 or 480x480 (default 16:9)")
    p.add_argument("--size", type=size_arg, default=None, help="film size WxH, overrides --aspect's")
    p.add_argument("--pace", choices=["slow", "normal", "fast"], default="normal",
                   help="shot length idiom (about 6, 4 or 2.2 s per shot)")
    p.add_argument("--movement", choices=["less", "more"], default=None,
                   help="prefer calm or lively shots")
    p.add_argument("--transition", choices=["cut", "crossfade"], default="cut")
    p.add_argument("--fit", choices=["crop", "pad"], default="crop",
                   help="fill the frame (crop) or letterbox (pad)")
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--narrate", action="store_true", help="speak the text (espeak-ng); shots follow the voice")
    p.add_argument("--subtitles", action="store_true", help="burn captions into the picture (SRT is always written)")
    p.add_argument("--fallback", choices=["best", "title"], default="best",
                   help="for a unit with no good match: the best available shot or a title card")
    p.add_argument("--plan-json", type=Path, default=None, help="where to write the plan (default OUT.plan.json)")
    p.add_argument("--plan-only", action="store_true",
                   help="write the plan, SRT, timelines and storyboard but render no MP4")
    p.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                   help="segments encoded at once")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    req = MontageRequest(text_file=args.text_file, library=args.library, out=args.out,
                         aspect=args.aspect, pace=args.pace, movement=args.movement,
                         transition=args.transition, narrate=args.narrate, subtitles=args.subtitles,
                         plan_json=args.plan_json, fps=args.fps, fit=args.fit, fallback=args.fallback,
                         workers=args.workers, size=args.size, progress=sys.stderr.isatty(),
                         plan_only=args.plan_only)
    res = make_montage(req)
    p = res.plan
    n_slots = sum(len(u.shots) for u in p.units)
    if res.replanned_from >= len(p.units):
        how = "text unchanged: previous plan kept"
    elif res.replanned_from:
        how = f"re-planned from unit {res.replanned_from + 1}"
    else:
        how = "planned"
    target = res.outputs.get("film", "(plan only)")
    print(f"film: {target}  {p.duration:.2f} s, {len(p.units)} units, {n_slots} shots "
          f"({how}, solver {p.solver}, {res.seconds['plan']:.2f} s)")
    if "film" in res.outputs:
        print(f"segments: {res.rendered} rendered, {res.reused} reused from the cache "
              f"({res.seconds['render']:.1f} s)")
    for u in p.units:
        if u.note:
            print(f"  unit {u.index + 1}: {u.note}")
    print("also: " + ", ".join(str(res.outputs[k]) for k in ("srt", "plan", "otio", "edl", "storyboard")))
    return 0
