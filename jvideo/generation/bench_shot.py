"""`jvideo bench shot`: how long `jvideo generate` takes to sample one shot, each way it can,
measured side by side in one run (interleaved, so a busy machine slows every arm alike).

    jvideo bench shot [--checkpoint DIR] [--frames 16] [--steps 25] [--repeat 4] [--warmup 1] [--json F]

Arms: a text-only shot; a shot with an identity reference held on the planned track (the
default sampling: first pass at `plate_steps`, decoder inversion, generation/inpaint.py); and
the held shot as sampled before 2026-12-07 (first pass at the full steps, 8 inversion steps on
the pasted frames), whose ratio to the default is what README item 27 saves; with a look
classifier (tiny-v21), a shot whose prompt states a look with and without classifier guidance
towards it (README item 35). The target is
issue 4's: one 16-frame 64x64 shot with 25 steps within 10 s on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from jvideo.bench import machine, time_interleaved

from .state import write_json

TARGET_S = 10.0
PROMPT = "Pip moves to the right across the grass, medium shot"
# A prompt that states a look, for the arms with and without classifier guidance towards it.
LOOK_PROMPT = "a red star moves to the right across the grass, medium shot"


def parse_args(argv: list[str]) -> argparse.Namespace:
    from jvideo.generation.presets import SHIPPED_CHECKPOINT
    p = argparse.ArgumentParser(prog="jvideo bench shot", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT, help="checkpoint folder (default: the shipped one)")
    p.add_argument("--frames", type=int, default=None, help="frames a shot (default: the checkpoint's)")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps (default 25)")
    p.add_argument("--repeat", type=int, default=4, help="timed shots per arm (default 4)")
    p.add_argument("--warmup", type=int, default=1, help="untimed shots per arm first (Jittor compiles here)")
    p.add_argument("--json", type=Path, default=None, help="write the results here (atomically)")
    args = p.parse_args(argv)
    for name in ("steps", "repeat"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.frames is not None and args.frames < 1:
        p.error("--frames must be >= 1")
    if args.json is not None and not args.json.parent.is_dir():
        p.error(f"--json: no folder {args.json.parent}")
    return args


def arms(gen, frames: int, steps: int) -> dict:
    """name -> a function sampling one shot that way (the shot's seed changes each call, as a
    film's shots do; the work a shot takes does not depend on it)."""
    from jvideo.generation.invert import Inversion
    from jvideo.toyworld import character, reference_frame
    reference = reference_frame(np.random.default_rng(3), character("Pip").look, gen.preset.size)
    before = replace(gen, plate_steps=steps, inversion=Inversion(steps=8))
    seeds = iter(range(10 ** 6))
    out = {"text only": lambda: gen.generate(PROMPT, None, seed=next(seeds), frames=frames, steps=steps)}
    if gen.preset.dit.layout:   # a held reference needs a planned track
        out["held reference (default)"] = lambda: gen.generate(PROMPT, reference, seed=next(seeds), frames=frames,
                                                               steps=steps, hold=1.0)
        out["held reference, before 2026-12-07"] = lambda: before.generate(PROMPT, reference, seed=next(seeds),
                                                                           frames=frames, steps=steps, hold=1.0)
    if gen.guides_look:   # a checkpoint with a look classifier
        plain = replace(gen, look_scale=0.0)
        out["stated look, guided (default)"] = lambda: gen.generate(LOOK_PROMPT, None, seed=next(seeds),
                                                                    frames=frames, steps=steps)
        out["stated look, unguided"] = lambda: plain.generate(LOOK_PROMPT, None, seed=next(seeds), frames=frames,
                                                              steps=steps)
    return out


def run(args: argparse.Namespace) -> dict:
    from jvideo.generation.sample import Generator
    gen = Generator.load(args.checkpoint)
    frames = args.frames or gen.preset.frames
    gen.check_request(PROMPT, frames, args.steps, 4.0)
    timed = time_interleaved(arms(gen, frames, args.steps), args.warmup, args.repeat)
    return {"checkpoint": str(args.checkpoint), "frames": frames, "size": gen.preset.size, "steps": args.steps,
            "repeat": args.repeat, "target_s": TARGET_S,
            "arms": {name: {"median_s": r["median_ms"] / 1e3, "min_s": r["min_ms"] / 1e3,
                            "peak_rss_mb": r["peak_rss_mb"]} for name, r in timed.items()}}


def format_table(res: dict) -> str:
    text_only = res["arms"]["text only"]["median_s"]
    lines = [f"{res['frames']} frames {res['size']}x{res['size']}, {res['steps']} steps, "
             f"median of {res['repeat']} (target {res['target_s']:g} s)",
             f"{'arm':36s} {'median s':>9s} {'min s':>7s} {'x text only':>12s} {'target':>7s}"]
    for name, r in res["arms"].items():
        lines.append(f"{name:36s} {r['median_s']:9.2f} {r['min_s']:7.2f} {r['median_s'] / text_only:12.2f} "
                     f"{'met' if r['median_s'] <= res['target_s'] else 'missed':>7s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(argv or []))
    res = run(args)
    res["machine"] = machine()
    print(format_table(res))
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
