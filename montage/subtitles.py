"""Subtitles: the sidecar SRT, and the images burned into the picture.

Burned-in text never passes through an ffmpeg filter string or a subtitle markup parser: each
caption is drawn with Pillow into a transparent PNG that ffmpeg overlays, so text such as
`[x];drawtext=...`, `{\\fs80}` or `<b>` shows literally and cannot inject filters or styling.
"""
from __future__ import annotations

import os
import re
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from .errors import MontageError
from .files import scratch_path
from .plan import Plan, write_text_atomic

MAX_LINE_CHARS = 42
MAX_LINES = 2
FONT_CANDIDATES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                   "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
                   "/usr/share/fonts/TTF/DejaVuSans.ttf")


@dataclass
class Cue:
    start: float
    end: float
    text: str       # may hold '\n' between lines


def timestamp(t: float) -> str:
    """Seconds -> SRT 'HH:MM:SS,mmm'."""
    ms = int(round(max(0.0, t) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def parse_timestamp(s: str) -> float:
    h, m, rest = s.strip().split(":")
    sec, ms = rest.split(",")
    return int(h) * 3600 + int(m) * 60 + int(sec) + int(ms) / 1000


def clean(text: str) -> str:
    """One line of plain text: whitespace collapsed, an SRT arrow defused."""
    return " ".join(text.split()).replace("-->", "->")


def split_caption(text: str, width: int = MAX_LINE_CHARS, lines: int = MAX_LINES) -> list[str]:
    """Break text into caption pages of at most `lines` lines of `width` characters."""
    wrapped = textwrap.wrap(clean(text), width=width, break_long_words=True) or [""]
    return ["\n".join(wrapped[i:i + lines]) for i in range(0, len(wrapped), lines)]


def cues_from_plan(plan: Plan) -> list[Cue]:
    """One cue per caption page of each narrated unit; a long unit's pages share its time in
    proportion to their length."""
    cues = []
    for u in plan.units:
        if not u.subtitle:
            continue
        pages = split_caption(u.subtitle)
        total = sum(len(p) for p in pages) or 1
        t = u.start
        for p in pages:
            d = (u.end - u.start) * len(p) / total
            cues.append(Cue(t, t + d, p))
            t += d
    return cues


def srt_text(cues: Sequence[Cue]) -> str:
    return "".join(f"{i}\n{timestamp(c.start)} --> {timestamp(c.end)}\n{c.text}\n\n"
                   for i, c in enumerate(cues, 1))


def write_srt(cues: Sequence[Cue], path: Path) -> Path:
    write_text_atomic(Path(path), srt_text(cues))
    return Path(path)


_SRT_BLOCK = re.compile(r"(\d+)\s*\n(\S+)\s*-->\s*(\S+)\s*\n(.*?)(?:\n\s*\n|\Z)", re.S)


def read_srt(path: Path) -> list[Cue]:
    """Parse an SRT file (for tests and re-import)."""
    text = Path(path).read_text(encoding="utf-8")
    return [Cue(parse_timestamp(a), parse_timestamp(b), body.strip())
            for _, a, b, body in _SRT_BLOCK.findall(text)]


# -- images ----------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def font(size: int):
    from PIL import ImageFont
    for path in FONT_CANDIDATES:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    try:
        return ImageFont.load_default(size)
    except TypeError:  # old Pillow
        return ImageFont.load_default()


def _wrap_pixels(draw, text: str, fnt, max_width: int) -> list[str]:
    lines: list[str] = []
    for word in clean(text).split(" "):
        if lines and draw.textlength(f"{lines[-1]} {word}", font=fnt) <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def caption_png(text: str, width: int, height: int, path: Path) -> Path:
    """A transparent caption strip for a (width x height) film: `text` in white with a black
    outline, wrapped to 90% of the width. Only the strip is stored (ffmpeg overlays it at the
    bottom), so overlaying costs little per frame."""
    from PIL import Image, ImageDraw
    size = max(12, height // 20)
    fnt = font(size)
    probe_draw = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    lines = _wrap_pixels(probe_draw, text, fnt, int(width * 0.9))
    line_h = int(size * 1.25)
    margin = int(height * 0.06)
    strip_h = min(height, line_h * len(lines) + margin + size // 2) // 2 * 2
    img = Image.new("RGBA", (width, strip_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    y = strip_h - margin - line_h * len(lines)
    for line in lines:
        w = draw.textlength(line, font=fnt)
        draw.text(((width - w) / 2, y), line, font=fnt, fill=(255, 255, 255, 255),
                  stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0, 255))
        y += line_h
    _save_png(img, path)
    return Path(path)


def title_png(text: str, width: int, height: int, path: Path, note: str = "") -> Path:
    """An opaque title card: `text` centred, large, on a dark background; `note` small below."""
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (width, height), (16, 18, 24))
    draw = ImageDraw.Draw(img)
    size = max(14, height // 11)
    fnt = font(size)
    lines = _wrap_pixels(draw, text, fnt, int(width * 0.85))
    while len(lines) * size * 1.3 > height * 0.8 and size > 10:
        size = int(size * 0.85)
        fnt = font(size)
        lines = _wrap_pixels(draw, text, fnt, int(width * 0.85))
    line_h = int(size * 1.3)
    y = (height - line_h * len(lines)) / 2
    for line in lines:
        w = draw.textlength(line, font=fnt)
        draw.text(((width - w) / 2, y), line, font=fnt, fill=(235, 235, 235))
        y += line_h
    if note:
        small = font(max(10, height // 30))
        w = draw.textlength(note, font=small)
        draw.text(((width - w) / 2, height * 0.88), note, font=small, fill=(150, 150, 150))
    _save_png(img, path)
    return Path(path)


def _save_png(img, path: Path) -> None:
    path = Path(path)
    tmp = scratch_path(path, ".png")
    try:
        img.save(tmp, format="PNG")
        os.replace(tmp, path)
    except OSError as err:
        raise MontageError(f"cannot write {path}: {err.strerror}") from err
    finally:
        if tmp.exists():
            tmp.unlink()
