"""Demo footage: a folder of toy-world MP4 clips with caption sidecars, and a contact sheet.

`write_library` writes, per clip, `NAME.mp4` (H.264, yuv420p) and `NAME.json`
{"caption": ..., "tags": [...]}, which `jvideo index` reads, plus one `toyworld_groundtruth.json`
with every clip's full parameters. Every file is written to a temporary name in the same folder
and moved into place, so an interrupted run never leaves a half-written clip under its real name.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ..errors import JVideoError
from .captions import caption, tags
from .dataset import sample_clip_params
from .render import ClipParams, render_clip, sample_params
from .world import CAST

GROUNDTRUTH_NAME = "toyworld_groundtruth.json"
FONT_PATHS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
              "/usr/share/fonts/dejavu/DejaVuSans.ttf")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise JVideoError("ffmpeg not found; install it (e.g. apt-get install ffmpeg) or run 'jvideo doctor'")
    return exe


def encode_mp4(frames: np.ndarray, path: Path, fps: int) -> None:
    """Encode frames (T, H, W, 3) uint8 (H, W even) to H.264 `path`, atomically."""
    t, h, w, _ = frames.shape
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    cmd = [_ffmpeg(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", str(fps), "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
           "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", str(tmp)]
    try:
        proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
        if proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip().splitlines()
            raise JVideoError(f"ffmpeg failed writing {path.name}: {msg[-1] if msg else proc.returncode}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _clip_name(i: int, p: ClipParams) -> str:
    who = p.name.lower() if p.name else f"{p.look.primary}_{p.look.shape}"
    return f"toy_{i:04d}_{who}_{p.motion}_{p.background}"


def library_params(rng: np.random.Generator, n: int, size: int, fps: int,
                   seconds: tuple[float, float]) -> list[ClipParams]:
    """Half the clips star the cast (each member in turn, so all recur), half are anonymous."""
    out = []
    for i in range(n):
        frames = int(round(rng.uniform(*seconds) * fps))
        if i % 2 == 0:
            c = CAST[(i // 2) % len(CAST)]
            p = sample_params(rng, look=c.look, name=c.name, frames=frames, size=size)
        else:
            p = sample_clip_params(rng, "train", frames=frames, size=size, p_character=0.0)
        out.append(p)
    return out


def write_library(out: str | Path, clips: int, seed: int = 0, size: int = 128, fps: int = 16,
                  seconds: tuple[float, float] = (4.0, 6.0), progress: bool = True) -> list[Path]:
    """Write `clips` MP4s with sidecars and a ground-truth file into folder `out`; returns the
    MP4 paths. Sizes must be even (H.264 4:2:0)."""
    if not 1 <= clips <= 100_000:
        raise JVideoError(f"--clips must be from 1 to 100000 (got {clips})")
    if size < 32 or size % 2 or size > 1024:
        raise JVideoError(f"--size must be an even number of pixels from 32 to 1024 (got {size})")
    if not 1 <= fps <= 60:
        raise JVideoError(f"--fps must be from 1 to 60 (got {fps})")
    if not 0.5 <= seconds[0] <= seconds[1] <= 60:
        raise JVideoError(f"clip length must be from 0.5 to 60 seconds (got {seconds[0]}-{seconds[1]})")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise JVideoError(f"{folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    _ffmpeg()
    rng = np.random.default_rng(seed)
    params = library_params(rng, clips, size, fps, seconds)
    truth, paths = {}, []
    items = enumerate(params)
    if progress:
        from tqdm import tqdm
        items = tqdm(items, total=clips, desc="toyworld library", unit="clip")
    for i, p in items:
        name = _clip_name(i, p)
        text = caption(p, rng, "train")
        path = folder / f"{name}.mp4"
        encode_mp4(render_clip(p), path, fps)
        atomic_write_json(folder / f"{name}.json", {"caption": text, "tags": tags(p)})
        truth[name] = {"file": path.name, "caption": text, "fps": fps, "duration": p.frames / fps,
                       "params": p.to_dict()}
        paths.append(path)
    atomic_write_json(folder / GROUNDTRUTH_NAME, {"seed": seed, "clips": truth})
    return paths


def _font(size: int):
    from PIL import ImageFont
    for f in FONT_PATHS:
        if os.path.exists(f):
            return ImageFont.truetype(f, size)
    return ImageFont.load_default()


def _wrap(text: str, width_chars: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width_chars:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def contact_sheet(n: int = 8, seed: int = 0, split: str = "train", size: int = 96,
                  frames_per_clip: int = 4):
    """A PIL image: one row per random clip (evenly spaced frames) with its caption below."""
    from PIL import Image, ImageDraw
    if not 1 <= n <= 64:
        raise JVideoError(f"--n must be from 1 to 64 (got {n})")
    if not 32 <= size <= 512:
        raise JVideoError(f"--size must be from 32 to 512 (got {size})")
    rng = np.random.default_rng(seed)
    font = _font(max(10, size // 8))
    pad, text_h = 6, 2 * (max(10, size // 8) + 4)
    width = frames_per_clip * (size + pad) + pad
    sheet = Image.new("RGB", (width, n * (size + text_h + pad) + pad), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    for row in range(n):
        p = sample_clip_params(rng, split, size=size, p_character=0.3)
        clip = render_clip(p, frame_ids=list(np.linspace(0, p.frames - 1, frames_per_clip).round().astype(int)))
        y = pad + row * (size + text_h + pad)
        for j, frame in enumerate(clip):
            sheet.paste(Image.fromarray(frame), (pad + j * (size + pad), y))
        text = caption(p, rng, split)
        for k, line in enumerate(_wrap(text, max(20, width // max(6, size // 14)))[:2]):
            draw.text((pad, y + size + 2 + k * (text_h // 2)), line, fill=(235, 235, 235), font=font)
    return sheet


def write_contact_sheet(path: str | Path, **kwargs) -> Path:
    """Render `contact_sheet(**kwargs)` to a PNG at `path`, atomically."""
    import io
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise JVideoError(f"the contact sheet is a PNG: give a path ending in .png (got {path.name})")
    if not path.parent.exists():
        raise JVideoError(f"folder {path.parent} does not exist")
    buf = io.BytesIO()
    contact_sheet(**kwargs).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
