"""A storyboard contact sheet: one cell per cut (a frame from the middle of the chosen piece,
its time, score and the text it illustrates), written as one PNG."""
from __future__ import annotations

import io
import math
import subprocess
import tempfile
from pathlib import Path

from .errors import MontageError
from .plan import Plan, PlannedShot
from .files import file_arg
from .render import ffmpeg_bin
from .subtitles import _save_png, _wrap_pixels, font, title_png


def grab_frame(source: str, t: float, width: int, height: int):
    """One frame of `source` at `t` seconds, cropped to width x height, as a PIL image (or None)."""
    from PIL import Image
    vf = f"scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height}"
    proc = subprocess.run([ffmpeg_bin(), "-hide_banner", "-nostdin", "-loglevel", "error",
                           "-ss", f"{max(0.0, t):.3f}", "-i", file_arg(source), "-frames:v", "1",
                           "-vf", vf, "-f", "image2pipe", "-c:v", "png", "pipe:1"],
                          capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        return None
    return Image.open(io.BytesIO(proc.stdout)).convert("RGB")


def _fit(draw, text: str, fnt, width: int) -> str:
    """`text` cut (with an ellipsis) to at most `width` pixels."""
    if draw.textlength(text, font=fnt) <= width:
        return text
    while text and draw.textlength(text + "…", font=fnt) > width:
        text = text[:-1]
    return text + "…"


def _mmss(t: float) -> str:
    m, s = divmod(t, 60)
    return f"{int(m)}:{s:04.1f}"


def write_storyboard(plan: Plan, path: Path, aspect: tuple[int, int] = (16, 9),
                     columns: int = 4, cell_width: int = 240) -> Path:
    """Write the contact sheet PNG (atomic). aspect: the film's width:height."""
    from PIL import Image, ImageDraw
    slots: list[tuple[int, str, PlannedShot]] = [(u.index, u.text, s) for u in plan.units for s in u.shots]
    if not slots:
        raise MontageError("the plan has no shots for a storyboard")
    cw = cell_width
    ch = int(round(cw * aspect[1] / aspect[0])) // 2 * 2
    text_h = 64
    pad = 8
    cols = min(columns, len(slots))
    rows = math.ceil(len(slots) / cols)
    sheet = Image.new("RGB", (cols * (cw + pad) + pad, rows * (ch + text_h + pad) + pad), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    small = font(11)
    # Scratch title cards live in the system's temp folder: a kill -9 must not leave them
    # beside the user's film (nothing of ours would know to remove them).
    with tempfile.TemporaryDirectory(prefix="jvideo-storyboard-") as scratch:
        for k, (unit, text, s) in enumerate(slots):
            x = pad + (k % cols) * (cw + pad)
            y = pad + (k // cols) * (ch + text_h + pad)
            if s.kind == "title":
                card = title_png(s.title, cw, ch, Path(scratch) / f"t{k}.png")
                img = Image.open(card).convert("RGB")
            else:
                img = grab_frame(s.source, (s.in_point + s.out_point) / 2, cw, ch)
                if img is None:
                    img = Image.new("RGB", (cw, ch), (90, 0, 0))
            sheet.paste(img, (x, y))
            head = f"#{k + 1}  {_mmss(s.start)}-{_mmss(s.end)}"
            if s.kind == "shot":
                head += f"  score {s.score:.2f}  {Path(s.source).name}"
            # Each line is cut to the cell's width so neighbouring captions never overlap.
            draw.text((x, y + ch + 2), _fit(draw, head, small, cw), font=small, fill=(40, 40, 40))
            lines = _wrap_pixels(draw, f"{unit + 1}. {text}", small, cw)[:3]
            for j, line in enumerate(lines):
                draw.text((x, y + ch + 16 + 14 * j), line, font=small, fill=(80, 80, 80))
    _save_png(sheet, Path(path))
    return Path(path)

