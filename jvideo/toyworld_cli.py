"""`jvideo toyworld ...`: demo footage library, contact sheet, detector accuracy, detect a clip.

Heavy imports happen inside `run`, so registering the command costs nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import JVideoError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("toyworld", help="the procedural toy world: demo footage, samples, detector")
    sub = p.add_subparsers(dest="toyworld_command", metavar="ACTION")

    lib = sub.add_parser("library", help="write N toy-world MP4 clips with caption sidecars (for 'jvideo index')")
    lib.add_argument("out", help="output folder (created if missing)")
    lib.add_argument("--clips", type=int, required=True, help="number of clips")
    lib.add_argument("--seed", type=int, default=0)
    lib.add_argument("--size", type=int, default=128, help="frame size in pixels (even; default 128)")
    lib.add_argument("--fps", type=int, default=16)
    lib.add_argument("--seconds", type=float, nargs=2, default=(4.0, 6.0), metavar=("MIN", "MAX"),
                     help="clip length range in seconds (default 4 6)")

    smp = sub.add_parser("sample", help="write a contact sheet PNG of random clips with their captions")
    smp.add_argument("out", help="output PNG")
    smp.add_argument("--n", type=int, default=8, help="number of clips (rows)")
    smp.add_argument("--seed", type=int, default=0)
    smp.add_argument("--split", choices=("train", "heldout"), default="train")
    smp.add_argument("--size", type=int, default=96)

    acc = sub.add_parser("detector-accuracy", help="measure the attribute detector on rendered clips")
    acc.add_argument("--n", type=int, default=300, help="clips per condition")
    acc.add_argument("--seed", type=int, default=0)
    acc.add_argument("--noise", type=float, nargs="*", default=[0.0, 6.0],
                     help="Gaussian noise std (0-255) per condition")
    acc.add_argument("--blur", type=float, nargs="*", default=[0.0, 0.7],
                     help="Gaussian blur sigma (pixels) per condition, paired with --noise")
    acc.add_argument("--size", type=int, default=64)
    acc.add_argument("--json", help="also write the figures to this JSON file")

    ref = sub.add_parser("reference", help="write a reference image (PNG) of a cast character, for film scripts")
    ref.add_argument("name", help="a cast character: Mira, Tomo, Pip, Zara, Bo, Luna, Kit or Rex")
    ref.add_argument("--out", required=True, help="output PNG")
    ref.add_argument("--seed", type=int, default=0)
    ref.add_argument("--size", type=int, default=128)

    det = sub.add_parser("detect", help="read a clip (MP4 or .npy frames) back into toy-world attributes")
    det.add_argument("clip", help="video file or .npy array (T, H, W, 3) uint8")
    det.add_argument("--size", type=int, default=64, help="decode videos at this square size")
    p.set_defaults(func=run, _toyworld_parser=p)


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "toyworld_command", None)
    if action is None:
        args._toyworld_parser.print_help()
        return 2
    return {"library": _library, "sample": _sample, "detector-accuracy": _accuracy, "detect": _detect,
            "reference": _reference}[action](args)


def _reference(args) -> int:
    import numpy as np
    from PIL import Image

    from jvideo.generation.state import atomic_write
    from .toyworld.dataset import reference_frame
    from .toyworld.world import character
    try:
        look = character(args.name).look
    except KeyError as err:
        raise JVideoError(str(err.args[0])) from None
    if not 16 <= args.size <= 1024:
        raise JVideoError("--size must be between 16 and 1024")
    frame = reference_frame(np.random.default_rng(args.seed), look, args.size)
    atomic_write(Path(args.out), lambda tmp: Image.fromarray(frame).save(tmp, format="PNG"))
    print(f"wrote {args.out} ({args.name}: {look.size} {look.primary} {look.shape}, "
          f"{look.secondary} {look.pattern})")
    return 0


def _library(args) -> int:
    from .toyworld.library import write_library
    paths = write_library(args.out, args.clips, seed=args.seed, size=args.size, fps=args.fps,
                          seconds=(args.seconds[0], args.seconds[1]))
    print(f"wrote {len(paths)} clips with sidecars to {args.out}")
    return 0


def _sample(args) -> int:
    from .toyworld.library import write_contact_sheet
    path = write_contact_sheet(args.out, n=args.n, seed=args.seed, split=args.split, size=args.size)
    print(f"wrote {path}")
    return 0


def _accuracy(args) -> int:
    from .toyworld.accuracy import ATTRIBUTES, identity_ceiling, measure
    if args.n < 1:
        raise JVideoError(f"--n must be at least 1 (got {args.n})")
    if len(args.noise) != len(args.blur):
        raise JVideoError("give as many --blur values as --noise values (one condition each)")
    results = []
    for noise, blur in zip(args.noise, args.blur):
        r = measure(n=args.n, seed=args.seed, noise=noise, blur=blur, size=args.size, progress=True)
        ident = identity_ceiling(shots_per_character=max(1, args.n // 16), seed=args.seed, noise=noise,
                                 blur=blur, size=args.size)
        results.append({"noise": noise, "blur": blur, "n": args.n, "accuracy": r["accuracy"],
                        "cast_look_read_back": ident})
    head = f"{'condition':22s}" + "".join(f"{a:>11s}" for a in ATTRIBUTES) + "  cast look"
    print(f"detector accuracy on {args.n} rendered {args.size}x{args.size} clips per condition (seed {args.seed})")
    print(head)
    for r in results:
        cond = f"noise {r['noise']:g}, blur {r['blur']:g}"
        print(f"{cond:22s}" + "".join(f"{r['accuracy'][a]:11.3f}" for a in ATTRIBUTES)
              + f"{r['cast_look_read_back']['overall']:11.3f}")
    print("cast look: share of cast shots (medium/close-up, random place, motion, lighting) whose "
          "full look (shape, colours, pattern) is read back")
    if args.json:
        from .toyworld.library import atomic_write_json
        atomic_write_json(Path(args.json), {"seed": args.seed, "size": args.size, "results": results})
    return 0


def _read_clip(path: Path, size: int):
    import subprocess

    import numpy as np
    if not path.exists():
        raise JVideoError(f"no such file: {path}")
    if path.suffix == ".npy":
        try:
            frames = np.load(path, allow_pickle=False)   # a user file: never unpickle
        except (ValueError, OSError) as err:
            raise JVideoError(f"cannot read {path}: {err}") from None
        return frames
    from .toyworld.library import _ffmpeg
    cmd = [_ffmpeg(), "-loglevel", "error", "-i", str(path), "-vf", f"scale={size}:{size}:flags=area",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        raise JVideoError(f"cannot decode {path} with ffmpeg")
    return np.frombuffer(proc.stdout, np.uint8).reshape(-1, size, size, 3)


def _detect(args) -> int:
    from .toyworld.detector import detect
    frames = _read_clip(Path(args.clip), args.size)
    try:
        d = detect(frames)
    except ValueError as err:
        raise JVideoError(str(err)) from None
    out = {k: v for k, v in vars(d).items() if k not in ("centroids", "areas", "masks", "features")}
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0
