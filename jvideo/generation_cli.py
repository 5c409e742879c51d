"""`jvideo train` and `jvideo generate`."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

from jvideo.errors import JVideoError
from jvideo.generation.presets import IDENTITY_HOLD, LOOK_SCALE, SHIPPED_CHECKPOINT


def run_train(args: argparse.Namespace) -> int:
    from jvideo.generation.limits import check_training
    from jvideo.generation.presets import get_preset
    if args.steps is not None and args.steps < 1:
        raise JVideoError(f"--steps must be at least 1 (got {args.steps})")
    check_training(get_preset(args.preset))        # before Jittor loads: refuse in a second
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise JVideoError(f"--out {out}: exists and is not a folder")
    from jvideo.generation.state import folder_lock, sweep_temporary_files
    writer = os.environ.get("OMPI_COMM_WORLD_RANK", "0") == "0"   # rank 0 alone writes OUT
    with folder_lock(out, "training run") if writer else contextlib.nullcontext():
        if writer:
            sweep_temporary_files(out)             # left by a run that was killed
        from jvideo.generation.train import train
        results = train(args.preset, out, steps=args.steps, resume=args.resume, vae_from=args.vae_from,
                        dit_from=args.dit_from)
    from jvideo import distributed as dist
    if not dist.is_main():
        return 0  # under mpirun rank 0 reports for all
    for r in results:
        if r.reused_from:
            print(f"{r.stage}: reused from {r.reused_from} (not trained in this run)")
            continue
        print(f"{r.stage}: {r.steps} steps, final loss {r.final_loss:.4f}, {r.seconds / 60:.1f} min this run")
    print(f"checkpoint: {args.out}  (loss curves: {Path(args.out) / 'loss.png'})")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    if args.prompts is not None or args.out_dir is not None:
        return run_generate_batch(args)
    if args.prompt is None or args.out is None:
        raise JVideoError("give a PROMPT and --out FILE.mp4, or --prompts FILE and --out-dir DIR")
    from jvideo.generation.limits import check_request, check_sampling, checkpoint_preset
    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise JVideoError(f"--out must end in .mp4 (got {out.name})")
    if not out.parent.exists():
        raise JVideoError(f"{out.parent}: output folder does not exist")
    preset = checkpoint_preset(args.checkpoint)
    check_request(preset, args.prompt, args.frames or preset.frames, args.steps, args.cfg, args.ref_cfg, args.hold,
                  args.look_scale)
    check_sampling(preset, args.frames, "generating with this checkpoint")
    from jvideo.generation.media import frame_strip, load_reference, write_mp4, write_png
    from jvideo.generation.sample import Generator
    gen = Generator.load(args.checkpoint)
    gen.composite = not args.no_composite
    gen.look_scale = args.look_scale
    reference = load_reference(args.identity, gen.preset.size) if args.identity else None
    if reference is not None and args.hold > 0 and not gen.preset.dit.layout:
        print(f"note: --hold needs a layout checkpoint; {gen.preset.name} samples with the learnt reference "
              "path alone", file=sys.stderr)
    start = time.time()
    frames = gen.generate(args.prompt, reference, seed=args.seed, frames=args.frames, steps=args.steps, cfg=args.cfg,
                          ref_cfg=args.ref_cfg, hold=args.hold)
    seconds = time.time() - start
    write_mp4(frames, out)
    strip = out.with_suffix(".png")
    write_png(frame_strip(frames), strip)
    print(f"wrote {out} and {strip} ({len(frames)} frames, {args.steps} steps, {seconds:.1f} s)")
    return 0


def run_generate_batch(args: argparse.Namespace) -> int:
    """`--prompts FILE --out-dir DIR`: one shot per line; under mpirun shots are split over ranks."""
    if args.prompt is not None or args.out is not None:
        raise JVideoError("--prompts/--out-dir replace PROMPT and --out; give one form only")
    if args.prompts is None or args.out_dir is None:
        raise JVideoError("--prompts FILE and --out-dir DIR go together")
    from jvideo.generation.batch import run_prompts_file
    summary = run_prompts_file(args.checkpoint, Path(args.prompts), Path(args.out_dir), identity=args.identity,
                               seed=args.seed, frames=args.frames, steps=args.steps, cfg=args.cfg,
                               ref_cfg=args.ref_cfg, hold=args.hold, composite=not args.no_composite,
                               look_scale=args.look_scale)
    from jvideo import distributed as dist
    if dist.is_main():
        ranks = f" on {summary['ranks']} ranks" if summary["ranks"] > 1 else ""
        n = summary["shots"]
        print(f"wrote {n} shot{'s' if n != 1 else ''} to {summary['out_dir']}{ranks} "
              f"({summary['seconds']:.1f} s; list in shots.json)")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import json
    from jvideo.generation.limits import check_request, check_sampling, checkpoint_preset
    if args.what != "generation":
        raise JVideoError(f"unknown evaluation {args.what!r} (available: generation)")
    if args.n < 1:
        raise JVideoError("--n must be at least 1")
    if args.identity_shots is not None and not 1 <= args.identity_shots <= 1000:
        raise JVideoError("--identity-shots must be between 1 and 1000")
    preset = checkpoint_preset(args.checkpoint)
    check_request(preset, "held-out prompts", preset.frames, args.steps, args.cfg, args.ref_cfg, args.hold,
                  args.look_scale)
    check_sampling(preset, None, "evaluating this checkpoint")
    from jvideo.generation.evaluate import contact_sheet, evaluate
    from jvideo.generation.sample import Generator
    from jvideo.generation.state import write_json
    gen = Generator.load(args.checkpoint)
    gen.composite = not args.no_composite
    gen.look_scale = args.look_scale
    report = evaluate(gen, n=args.n, seed=args.seed, steps=args.steps, cfg=args.cfg, ref_cfg=args.ref_cfg,
                      shots_per_character=args.identity_shots, hold=args.hold)
    data = report.to_dict()
    samples = data.pop("samples")
    print(json.dumps(data, indent=2))
    if args.json:
        write_json(Path(args.json), data)
    if args.sheet:
        contact_sheet(report.samples, Path(args.sheet))
    return 0


REF_CFG_HELP = ("reference guidance with --identity: above 1 also steers away from the shot the text alone "
                "would give (one more model pass a step); 1: off")
HOLD_HELP = ("with --identity: fraction of the steps the reference's cut-out is held on the planned track in a "
             "second pass (reference inpainting, layout checkpoints only); 0: off, the learnt reference path alone")
COMPOSITE_HELP = ("with --identity and --hold 1: leave the held cut-out in the frames as the VAE decodes them, "
                  "instead of laying it over them (the VAE rounds off thin rings, dots and points)")

LOOK_HELP = ("scale of classifier guidance towards the shape and colour the prompt states, for checkpoints "
             "with a look classifier (tiny-v21); 0: off")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the VAE and video DiT on the toy world")
    p.add_argument("--preset", default="tiny-v21",
                   help="tiny-v21 (tiny-v19 and a look classifier for classifier guidance towards the stated shape "
                        "and colour; 2-core CPU, under 90 min; the shipped default), tiny-v19 (tiny-v15 with "
                        "per-block timestep modulation), tiny (first recipe; shipped too), tiny-v15 (tiny-v11 told where the "
                        "subject is in each frame: a layout planned from the prompt), "
                        "tiny-v11 (tiny-v10 at twice the learning rate), tiny-v2 (object-weighted losses), "
                        "tiny-v3 (4x VAE, reference tokens), tiny-v4 (tiny-v3 + pooled adaLN conditioning), "
                        "tiny-v5 (tiny-v4 + joint image-video training), "
                        "tiny-v6 (tiny-v5 with image steps in the first half only), tiny-v7 (tiny-v5 on 6000 "
                        "clips instead of 2000), tiny-v8 (tiny-v5 with patch 2: 64 finer tokens a frame, a quarter of "
                        "the batch), tiny-v9 (tiny-v5 with references cropped to their object), tiny-v10 (tiny-v9 sampling "
                        "from an EMA of its weights), tiny-v12 (tiny-v11 whose cross-attention also reads MiniLM's "
                        "input-layer word vectors), tiny-v13 (tiny-v12 whose temporal blocks cross-attend too), "
                        "tiny-v14 (tiny-v11 whose spatial blocks are modulated per frame), tiny-motion (a "
                        "diagnostic: tiny-v14 on moving clips only; also -shared, -highnoise), tiny-paste (a diagnostic: "
                        "tiny-v15 with the reference drawn into the subject's window), tiny-v16 (tiny-v15 fine-tuned with the "
                        "stated look, shape silhouette and colour, in the layout: use --dit-from), "
                        "tiny-v17 (the same look channels, tiny-v15's recipe from scratch), tiny-v18 (tiny-v15 "
                        "with its VAE decoder fine-tuned, its DiT kept: use --dit-from), tiny-v20 (tiny-v19 trained 4000 steps more: use "
                        "--dit-from), small (bigger machines), test")
    p.add_argument("--steps", type=int, default=None, help="override the steps of every stage")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--vae-from", default=None, metavar="CHECKPOINT",
                   help="take the finished VAE of this checkpoint (same VAE preset) and train only the DiT")
    p.add_argument("--dit-from", default=None, metavar="CHECKPOINT",
                   help="fine-tune this checkpoint's DiT (built like the preset's, but for added layout "
                        "channels) on its own VAE: a new run starts from its weights")
    p.add_argument("--out", required=True, help="checkpoint folder")
    p.set_defaults(func=run_train)

    g = sub.add_parser("generate", help="generate a shot from text (optionally with an identity reference)")
    g.add_argument("prompt", nargs="?", default=None, help="the shot's text (or use --prompts)")
    g.add_argument("--prompts", default=None,
                   help="text file, one prompt per line: one shot each (seed = --seed + line index; "
                        "under mpirun the shots are divided across ranks)")
    g.add_argument("--out-dir", default=None, help="folder for --prompts: shot-LLLL.mp4/.png per line + shots.json")
    g.add_argument("--identity", default=None, help="reference image of the character (PNG/JPEG)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--frames", type=int, default=None, help="frames to generate (default: the checkpoint's)")
    g.add_argument("--steps", type=int, default=25, help="DDIM steps")
    g.add_argument("--cfg", type=float, default=4.0, help="classifier-free guidance scale")
    g.add_argument("--ref-cfg", type=float, default=1.0, help=REF_CFG_HELP)
    g.add_argument("--hold", type=float, default=IDENTITY_HOLD, help=HOLD_HELP)
    g.add_argument("--no-composite", action="store_true", help=COMPOSITE_HELP)
    g.add_argument("--look-scale", type=float, default=LOOK_SCALE, help=LOOK_HELP)
    g.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT), help="checkpoint folder (default: the shipped tiny-v21)")
    g.add_argument("--out", default=None, help="output .mp4 (a .png strip is written beside it)")
    g.set_defaults(func=run_generate)

    e = sub.add_parser("eval", help="evaluate generation: text accuracy, identity consistency, smoothness")
    e.add_argument("what", choices=["generation"])
    e.add_argument("--n", type=int, default=64, help="held-out prompts")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--steps", type=int, default=25)
    e.add_argument("--cfg", type=float, default=4.0)
    e.add_argument("--ref-cfg", type=float, default=1.0, help=REF_CFG_HELP)
    e.add_argument("--hold", type=float, default=IDENTITY_HOLD, help=HOLD_HELP)
    e.add_argument("--no-composite", action="store_true", help=COMPOSITE_HELP)
    e.add_argument("--look-scale", type=float, default=LOOK_SCALE, help=LOOK_HELP)
    e.add_argument("--identity-shots", type=int, default=None, metavar="K",
                   help="identity shots per cast member, each with and without the reference "
                        "(default: n / 32, at least 1)")
    e.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT))
    e.add_argument("--json", default=None, help="write the figures to this JSON file")
    e.add_argument("--sheet", default=None, help="write a contact sheet PNG of samples")
    e.set_defaults(func=run_eval)
