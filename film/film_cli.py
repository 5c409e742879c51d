"""`jvideo film SCRIPT --out film.mp4 [--library LIB] [--generate auto|never|always] ...`"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from montage.montage_cli import size_arg

from jvideo.generation.presets import IDENTITY_HOLD

from .pipeline import GENERATE_BELOW, FilmRequest, make_film


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "film", help="make a film from a script: library shots where they fit, generated shots where not",
        description="Turn a Fountain screenplay or a plain-text / Markdown script into a film. Each "
                    "unit gets a shot from the footage library; where the library has nothing close "
                    "enough (or lacks a character), the video diffusion model generates one, "
                    "conditioned on the character's reference image. Declare the cast in the script: "
                    "[[cast Mira: mira.png]] or [[cast Tomo: a blue square with yellow dots]]. "
                    "Writes the MP4 and, beside it, .srt, .plan.json (with provenance), .otio, .edl, "
                    ".storyboard.png and .report.html.")
    p.add_argument("script", type=Path, help="Fountain (.fountain), Markdown or plain text")
    p.add_argument("--out", type=Path, required=True, help="film to write (.mp4)")
    p.add_argument("--library", type=Path, default=None, help="footage library (jvideo index)")
    p.add_argument("--generate", choices=["auto", "never", "always"], default="auto",
                   help="auto: generate the shots the library lacks (default); never: library only; "
                        "always: generate every shot")
    p.add_argument("--checkpoint", type=Path, default=None, help="generator checkpoint (default: the shipped tiny one)")
    p.add_argument("--shot-cache", type=Path, default=None,
                   help="library of generated shots, reused across films (default $JVIDEO_CACHE/shots)")
    p.add_argument("--threshold", type=float, default=GENERATE_BELOW,
                   help=f"generate when the best library match's relevance is below this (default {GENERATE_BELOW})")
    p.add_argument("--aspect", choices=["16:9", "9:16", "1:1"], default="16:9")
    p.add_argument("--size", type=size_arg, default=None, help="film size WxH, overrides --aspect's")
    p.add_argument("--pace", choices=["slow", "normal", "fast"], default="normal")
    p.add_argument("--transition", choices=["cut", "crossfade"], default="cut")
    p.add_argument("--narrate", action="store_true",
                   help="speak action (narrator) and dialogue (a voice per character) with espeak-ng")
    p.add_argument("--no-burn", action="store_true", help="do not burn dialogue subtitles into the picture")
    p.add_argument("--seed", type=int, default=0, help="base seed of generated shots")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps per generated shot")
    p.add_argument("--cfg", type=float, default=4.0, help="classifier-free guidance scale")
    p.add_argument("--hold", type=float, default=IDENTITY_HOLD,
                   help="share of the steps a character's reference cut-out is held on its planned track "
                        f"(reference inpainting; 0: the learnt reference path alone; default {IDENTITY_HOLD})")
    p.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                   help="segments encoded at once")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    req = FilmRequest(script=args.script, out=args.out, library=args.library, generate=args.generate,
                      checkpoint=args.checkpoint, shot_cache=args.shot_cache, aspect=args.aspect,
                      size=args.size, pace=args.pace, transition=args.transition, narrate=args.narrate,
                      subtitles=not args.no_burn, threshold=args.threshold, seed=args.seed,
                      steps=args.steps, cfg=args.cfg, hold=args.hold, workers=args.workers,
                      progress=sys.stderr.isatty())
    res = make_film(req)
    if res is None:                      # an MPI rank other than 0: it helped generate
        return 0
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    counts = {k: sum(p.source == k for p in res.provenance) for k in ("retrieved", "generated", "title", "missing")}
    print(f"film: {res.outputs['film']}  {res.duration:.1f} s, {len(res.provenance)} units: "
          f"{counts['retrieved']} retrieved, {counts['generated']} generated "
          f"({res.reused_generated} from the shot cache), {counts['title']} title cards, "
          f"{counts['missing']} without footage")
    for p in res.provenance:
        if p.source == "missing" or "not generated" in p.reason:
            print(f"  unit {p.unit + 1} lacked footage: {p.text[:60]!r} ({p.reason})")
    print("stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in res.seconds.items()))
    print("also: " + ", ".join(str(res.outputs[k]) for k in ("srt", "plan", "storyboard", "report", "otio", "edl")))
    return 0
