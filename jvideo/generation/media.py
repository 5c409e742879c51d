"""Writing generated shots: an H.264 MP4 through ffmpeg and a PNG strip of frames."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from jvideo.errors import JVideoError

from .state import atomic_write


def write_mp4(frames: np.ndarray, path: Path, fps: int = 8, scale: int = 4) -> Path:
    """frames (T, H, W, 3) uint8 -> an H.264 MP4, upscaled `scale`x (nearest) for viewing."""
    if shutil.which("ffmpeg") is None:
        raise JVideoError("ffmpeg not found (apt-get install ffmpeg)")
    t, h, w, _ = frames.shape
    size = f"{w * scale}x{h * scale}"

    def encode(tmp: str) -> None:
        cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-r", str(fps), "-i", "-", "-vf", f"scale={size}:flags=neighbor", "-c:v", "libx264",
               # x264's thread count (from the CPUs it may use) changes the bitstream; fixed, the
               # same frames give the same file on any machine or MPI rank. Shots are small.
               "-threads", "1", "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", tmp]
        proc = subprocess.run(cmd, input=np.ascontiguousarray(frames, np.uint8).tobytes(),
                              capture_output=True)
        if proc.returncode != 0:
            raise JVideoError(f"ffmpeg failed writing {path}: {proc.stderr.decode(errors='replace').strip()[-200:]}")

    atomic_write(Path(path), encode)
    return Path(path)


def frame_strip(frames: np.ndarray, every: int = 2, scale: int = 2) -> Image.Image:
    """Every `every`-th frame side by side: (T, H, W, 3) -> one image."""
    picked = frames[::every]
    strip = np.concatenate(list(picked), axis=1)
    img = Image.fromarray(strip)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def write_png(img: Image.Image, path: Path) -> Path:
    atomic_write(Path(path), lambda tmp: img.save(tmp, format="PNG"))
    return Path(path)


def load_reference(path: str | Path, size: int) -> np.ndarray:
    """An identity reference image -> (size, size, 3) uint8, centre-cropped to square."""
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise JVideoError(f"{path}: reference image not found") from None
    except Exception as err:  # PIL raises many types for broken files
        raise JVideoError(f"{path}: cannot read the reference image ({type(err).__name__})") from None
    img = img.convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)
