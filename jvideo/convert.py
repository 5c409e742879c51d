"""`jvideo convert SRC --out DST`: any supported checkpoint -> a diffusers folder (safetensors).

SRC: a diffusers model folder (.safetensors or .bin weights), a pipeline folder with
--subfolder, or an original facebookresearch/DiT .pt. Every tensor is checked on the way.
"""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("convert", help="convert a diffusers folder (.bin/.safetensors) or an original "
                              "DiT .pt into a checked diffusers safetensors folder")
    p.add_argument("src", help="diffusers model folder, pipeline folder (with --subfolder) or DiT .pt")
    p.add_argument("--out", required=True, help="output folder (config.json + safetensors)")
    p.add_argument("--subfolder", default=None, help="component of a pipeline folder, e.g. transformer or vae")
    p.add_argument("--num-heads", type=int, default=None,
                   help="attention heads of an original DiT .pt whose width is not a paper size")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jvideo.errors import JVideoError
    from jvideo.models import from_pretrained, save_pretrained

    src, out = Path(args.src), Path(args.out)
    if not src.exists():
        raise JVideoError(f"{src}: no such file or folder")
    if out.exists() and not out.is_dir():
        raise JVideoError(f"{out}: exists and is not a folder")
    is_pt = src.suffix in (".pt", ".pth")
    overrides = {"num_attention_heads": args.num_heads} if (args.num_heads and is_pt) else {}
    model = from_pretrained(src, subfolder=args.subfolder, **overrides)
    save_pretrained(model, out)
    n = sum(int(v.numel()) for v in model.state_dict().values())
    print(f"wrote {out} ({model.config.CLASS_NAME}, {n / 1e6:.2f}M parameters)")
    return 0
