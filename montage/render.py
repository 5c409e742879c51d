"""Assembly with ffmpeg: a plan -> an H.264/AAC MP4, through a content-keyed render cache.

Each slot of the plan becomes one *segment*: trimmed from its source (or drawn as a title card),
scaled and cropped/padded to the film's size, at the film's frame rate, with its caption burned
in; segments are cached under a key of everything that shapes their pixels (source file identity,
in point, frame count, size, fps, fit, caption, encoder settings). The film is the concatenation
(stream copy for cuts, an xfade chain for crossfades) plus one audio track (narration, loudness
normalised, or silence). Editing one sentence therefore re-renders only that sentence's segments.

Safety: source paths go to ffmpeg as `file:` arguments (no protocol or option parsing of names with
colons, quotes or leading dashes); every file ffmpeg reads from a filter or list lives in the cache
with a hex name, so no user text is ever part of a filter graph.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import MontageError
from .files import file_arg, fsync_file, scratch_path
from .plan import Plan, PlannedShot
from .subtitles import caption_png, title_png

RENDER_VERSION = 3
ASPECTS = {"16:9": (854, 480), "9:16": (480, 854), "1:1": (480, 480)}


@dataclass
class RenderConfig:
    """How the film is drawn and encoded."""
    width: int = 854
    height: int = 480
    fps: float = 24.0
    fit: str = "crop"              # crop (fill the frame) | pad (letterbox)
    transition: str = "cut"        # cut | crossfade
    crossfade: float = 0.5         # seconds
    subtitles: bool = False        # burn captions into the picture
    crf: int = 23
    preset: str = "veryfast"
    workers: int = 2               # segments encoded at once
    threads: int = 1               # ffmpeg threads per segment
    audio_rate: int = 48000
    loudness: float = -16.0        # LUFS target of loudnorm
    progress: bool = False

    def __post_init__(self) -> None:
        if self.fit not in ("crop", "pad"):
            raise MontageError(f"unknown fit {self.fit!r} (use crop or pad)")
        if self.transition not in ("cut", "crossfade"):
            raise MontageError(f"unknown transition {self.transition!r} (use cut or crossfade)")
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise MontageError(f"bad film size {self.width}x{self.height} (even numbers >= 16)")
        if not 0 < self.fps <= 240:            # NaN fails this too
            raise MontageError(f"--fps must be in (0, 240], got {self.fps:g}")
        if not 1 <= self.workers <= 64:
            raise MontageError(f"--workers must be from 1 to 64, got {self.workers}")

    @classmethod
    def for_aspect(cls, aspect: str, **kw) -> "RenderConfig":
        if aspect not in ASPECTS:
            raise MontageError(f"unknown aspect {aspect!r} (use {', '.join(ASPECTS)})")
        w, h = ASPECTS[aspect]
        return cls(width=w, height=h, **kw)

    def memory_estimate(self) -> int:
        """Peak bytes of a render: per segment encoded at once, x264 keeps ~30 frames (lookahead,
        references, threads) in YUV 4:2:0, and the caption image is drawn in RGBA."""
        pixels = self.width * self.height
        return max(1, self.workers) * (30 * pixels * 3 // 2 + 2 * pixels * 4)

    def fade_frames(self) -> int:
        return int(round(self.crossfade * self.fps)) if self.transition == "crossfade" else 0


@dataclass
class Segment:
    """One slot as ffmpeg renders it: `frames` frames of a shot (from `in_point`) or a title."""
    kind: str                     # shot | title
    frames: int
    source: str | None = None
    in_point: float = 0.0
    length: float = 0.0           # seconds read from the source; later frames repeat the last
    caption: str = ""             # burned in when RenderConfig.subtitles
    title: str = ""
    note: str = ""
    source_id: str = ""           # size and mtime of the source: a changed file re-renders

    def key(self, cfg: RenderConfig) -> str:
        d = {"v": RENDER_VERSION, "seg": asdict(self), "w": cfg.width, "h": cfg.height,
             "fps": cfg.fps, "fit": cfg.fit, "crf": cfg.crf, "preset": cfg.preset,
             "subs": cfg.subtitles}
        if not cfg.subtitles:
            d["seg"]["caption"] = ""
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode("utf-8")).hexdigest()[:20]


@dataclass
class RenderResult:
    path: Path
    segments: int
    rendered: list[str] = field(default_factory=list)   # keys rendered this run
    reused: int = 0
    seconds: float = 0.0
    duration: float = 0.0


# -- ffmpeg ------------------------------------------------------------------------------------
def ffmpeg_bin() -> str:
    exe = shutil.which("ffmpeg")
    if not exe:
        raise MontageError("ffmpeg is not installed (apt-get install ffmpeg)")
    return exe


def run_ffmpeg(args: Sequence[str], what: str, cwd: Path | None = None) -> None:
    """Run ffmpeg; a failure becomes one MontageError line with ffmpeg's last message."""
    cmd = [ffmpeg_bin(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise MontageError(f"ffmpeg failed on {what}: {lines[-1] if lines else 'exit ' + str(proc.returncode)}")


def probe(path: str | os.PathLike) -> dict:
    """ffprobe JSON (format + streams) of a media file."""
    exe = shutil.which("ffprobe")
    if not exe:
        raise MontageError("ffprobe is not installed (apt-get install ffmpeg)")
    proc = subprocess.run([exe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
                           file_arg(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise MontageError(f"cannot read {path}: {proc.stderr.strip().splitlines()[-1:] or 'ffprobe failed'}")
    return json.loads(proc.stdout)


def _fps_arg(fps: float) -> str:
    return str(int(fps)) if float(fps).is_integer() else f"{fps:.6f}"


def _timescale(fps: float) -> int:
    return 90000 if float(fps).is_integer() and 90000 % int(fps) == 0 else int(round(fps * 1000))


def _source_id(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        raise MontageError(f"source video {path} is missing (re-index the library)") from None
    return f"{st.st_size}:{st.st_mtime_ns}"


# -- segments ----------------------------------------------------------------------------------
def segments_for(plan: Plan, cfg: RenderConfig) -> list[Segment]:
    """The plan's slots as segments; frame counts follow the plan's frame-aligned times. With
    crossfades every segment but the last carries the fade's frames as a tail."""
    fps = cfg.fps
    slots: list[tuple[PlannedShot, str]] = [(s, u.subtitle) for u in plan.units for s in u.shots]
    fade = cfg.fade_frames()
    out = []
    ids: dict[str, str] = {}
    for i, (s, caption) in enumerate(slots):
        frames = int(round(s.end * fps)) - int(round(s.start * fps))
        if i < len(slots) - 1:
            frames += fade
        if s.kind == "title":
            out.append(Segment(kind="title", frames=frames, title=s.title, caption=""))
        else:
            if s.source not in ids:
                ids[s.source] = _source_id(s.source)
            out.append(Segment(kind="shot", frames=frames, source=s.source,
                               in_point=round(s.in_point, 3),
                               length=round(max(s.out_point - s.in_point, 1.0 / fps), 3),
                               caption=caption, source_id=ids[s.source]))
    return out


def _video_filter(cfg: RenderConfig, hold: float) -> str:
    w, h = cfg.width, cfg.height
    if cfg.fit == "crop":
        fit = f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h}"
    else:
        fit = (f"scale={w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2,"
               f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=black")
    # Freeze the last frame when the source runs out (short shot, crossfade tail).
    return f"fps={_fps_arg(cfg.fps)},{fit},setsar=1,tpad=stop_mode=clone:stop_duration={hold:.3f}"


def render_segment(seg: Segment, cfg: RenderConfig, cache_dir: Path) -> tuple[Path, bool]:
    """Render one segment into the cache (atomic). Returns (path, rendered_now)."""
    key = seg.key(cfg)
    path = cache_dir / f"seg-{key}.mp4"
    if path.is_file() and path.stat().st_size > 0:
        return path, False
    tmp = scratch_path(path, ".mp4")
    seconds = seg.frames / cfg.fps
    args: list[str] = []
    if seg.kind == "title":
        card = cache_dir / f"title-{key}.png"
        title_png(seg.title, cfg.width, cfg.height, card, seg.note)
        args += ["-loop", "1", "-framerate", _fps_arg(cfg.fps), "-i", file_arg(card)]
        chain = "[0:v]setsar=1,format=yuv420p[v]"
    else:
        # Read only the planned piece: a short shot holds its last frame instead of running on
        # into whatever follows it in the source.
        args += ["-ss", f"{seg.in_point:.3f}", "-t", f"{seg.length:.3f}", "-i", file_arg(seg.source)]
        chain = f"[0:v]{_video_filter(cfg, seconds + 1.0)}[base]"
        if cfg.subtitles and seg.caption:
            cap = cache_dir / f"caption-{key}.png"
            caption_png(seg.caption, cfg.width, cfg.height, cap)
            args += ["-loop", "1", "-framerate", _fps_arg(cfg.fps), "-i", file_arg(cap)]
            chain += ";[base][1:v]overlay=x=0:y=main_h-overlay_h:shortest=0,format=yuv420p[v]"
        else:
            chain += ";[base]format=yuv420p[v]"
    args += ["-filter_complex", chain, "-map", "[v]", "-frames:v", str(seg.frames), "-an",
             "-c:v", "libx264", "-preset", cfg.preset, "-crf", str(cfg.crf), "-pix_fmt", "yuv420p",
             "-r", _fps_arg(cfg.fps), "-g", str(int(round(cfg.fps * 2))),
             "-video_track_timescale", str(_timescale(cfg.fps)), "-threads", str(cfg.threads),
             "-f", "mp4", file_arg(tmp)]
    try:
        what = "a title card" if seg.kind == "title" else f"{seg.source} at {seg.in_point:.2f}s"
        run_ffmpeg(args, what)
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path, True


def render_segments(segments: Sequence[Segment], cfg: RenderConfig, cache_dir: Path
                    ) -> tuple[list[Path], list[str]]:
    """Render (or reuse) all segments, `cfg.workers` at a time. Returns paths and the keys
    rendered now."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    bar = None
    if cfg.progress:
        from tqdm import tqdm
        bar = tqdm(total=len(segments), desc="render", unit="shot", leave=False)

    def one(seg: Segment) -> tuple[Path, bool]:
        r = render_segment(seg, cfg, cache_dir)
        if bar is not None:
            bar.update(1)
        return r

    try:
        with ThreadPoolExecutor(max_workers=max(1, cfg.workers)) as pool:
            results = list(pool.map(one, segments))
    finally:
        if bar is not None:
            bar.close()
    return [p for p, _ in results], [seg.key(cfg) for seg, (_, new) in zip(segments, results) if new]


# -- the film ----------------------------------------------------------------------------------
def render_film(plan: Plan, out: str | os.PathLike, cfg: RenderConfig, cache_dir: Path,
                narration: Path | None = None) -> RenderResult:
    """Render `plan` to the MP4 `out` (written atomically).

    narration: a WAV of the whole film's voice (montage.narration.build_track) or None for a
    silent AAC track. cache_dir: the segment cache (kept between runs).
    """
    t0 = time.perf_counter()
    if abs(cfg.fps - plan.fps) > 1e-6:
        raise MontageError(f"the plan is timed at {plan.fps} fps but the render asks for {cfg.fps}")
    out = Path(out)
    cache_dir = Path(cache_dir)
    segments = segments_for(plan, cfg)
    if not segments:
        raise MontageError("the plan has no shots to render")
    sweep_stale_temps(cache_dir)
    sweep_stale_temps(out.parent, prefix=f".{out.name}.")
    paths, rendered = render_segments(segments, cfg, cache_dir)
    total_frames = int(round(plan.duration * cfg.fps))
    total = total_frames / cfg.fps
    tmp = scratch_path(out, ".mp4")
    fd, list_file = tempfile.mkstemp(prefix=f".concat.{os.getpid()}.", suffix=".tmp.txt", dir=cache_dir)
    scratch = [tmp, Path(list_file)]
    try:
        with os.fdopen(fd, "w") as f:   # names are ours (hex), relative to the list's folder
            f.writelines(f"file '{p.name}'\n" for p in paths)
        if narration is not None:
            audio_in = ["-i", file_arg(narration)]
            audio_filter = [f"{loudnorm_filter(narration, cfg.loudness)},aresample={cfg.audio_rate},apad"]
        else:
            audio_in = ["-f", "lavfi", "-i", f"anullsrc=r={cfg.audio_rate}:cl=stereo"]
            audio_filter = []
        if cfg.transition == "cut" or len(paths) == 1:
            args = ["-f", "concat", "-safe", "0", "-i", file_arg(list_file), *audio_in,
                    "-map", "0:v", "-map", "1:a", "-c:v", "copy"]
            if audio_filter:
                args += ["-af", audio_filter[0]]
        else:
            xargs, script = _crossfade_args(plan, paths, cfg, cache_dir)
            scratch.append(script)
            args = xargs + audio_in
            n = len(paths)
            args += ["-map", "[v]", "-map", f"{n}:a", "-c:v", "libx264", "-preset", cfg.preset,
                     "-crf", str(cfg.crf), "-pix_fmt", "yuv420p", "-r", _fps_arg(cfg.fps)]
            if audio_filter:
                args += ["-af", audio_filter[0]]
        args += ["-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", str(cfg.audio_rate),
                 "-t", f"{total:.6f}", "-movflags", "+faststart", "-f", "mp4", file_arg(tmp)]
        try:
            run_ffmpeg(args, f"assembling {out.name}")
            fsync_file(tmp)
            os.replace(tmp, out)
        except OSError as err:
            raise MontageError(f"cannot write {out}: {err.strerror}") from err
    finally:
        for p in scratch:
            if p.exists():
                p.unlink()
    prune_cache(cache_dir, {seg.key(cfg) for seg in segments})
    return RenderResult(path=out, segments=len(segments), rendered=rendered,
                        reused=len(segments) - len(rendered), seconds=time.perf_counter() - t0,
                        duration=total)


def loudnorm_filter(audio: Path, target: float = -16.0) -> str:
    """Two-pass EBU R128 normalisation: measure `audio` (fast, audio only), then a linear
    loudnorm with the measured values. Falls back to one-pass loudnorm if measuring fails."""
    base = f"loudnorm=I={target}:TP=-1.5:LRA=11"
    proc = subprocess.run([ffmpeg_bin(), "-hide_banner", "-nostdin", "-i", file_arg(audio), "-af",
                           base + ":print_format=json", "-f", "null", "-"], capture_output=True, text=True)
    try:
        m = json.loads(proc.stderr[proc.stderr.rindex("{"):proc.stderr.rindex("}") + 1])
        vals = {k: float(m[k]) for k in ("input_i", "input_tp", "input_lra", "input_thresh", "target_offset")}
    except (ValueError, KeyError):
        return base
    if not all(np.isfinite(v) for v in vals.values()):  # silence measures -inf
        return base
    return (f"{base}:measured_I={vals['input_i']:.2f}:measured_TP={vals['input_tp']:.2f}:"
            f"measured_LRA={vals['input_lra']:.2f}:measured_thresh={vals['input_thresh']:.2f}:"
            f"offset={vals['target_offset']:.2f}:linear=true")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_temps(folder: Path, prefix: str = ".") -> int:
    """Remove temporary files (`.NAME.PID....tmp.*`) that a killed render left behind: a
    SIGKILL gives no chance to clean up, so the next run does it. Files of live processes
    (another render at the same time) are kept. Returns files removed."""
    removed = 0
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    for p in entries:
        name = p.name
        if not (name.startswith(prefix) and ".tmp." in name and p.is_file()):
            continue
        pids = [int(part) for part in name[len(prefix):].split(".") if part.isdigit()]
        if pids and not _pid_alive(pids[0]):
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def prune_cache(cache_dir: Path, keep: set[str], max_bytes: int = 2 << 30) -> int:
    """Drop cached segments the current film does not use, oldest first, until they take at
    most `max_bytes` (recent ones stay, so undoing an edit is still cheap). Returns files removed."""
    files = []
    for p in cache_dir.iterdir():
        name = p.name
        if not (name.startswith(("seg-", "title-", "caption-")) and p.is_file()):
            continue
        key = name.split("-", 1)[1].split(".", 1)[0]
        if key not in keep:
            st = p.stat()
            files.append((st.st_mtime, st.st_size, p))
    files.sort()
    total = sum(size for _, size, _ in files)
    removed = 0
    for _, size, p in files:
        if total <= max_bytes:
            break
        p.unlink(missing_ok=True)
        total -= size
        removed += 1
    return removed


def _crossfade_args(plan: Plan, paths: list[Path], cfg: RenderConfig,
                    cache_dir: Path) -> tuple[list[str], Path]:
    """Inputs and an xfade chain: slot k fades in over [start_k, start_k + fade]; each segment
    but the last carries `fade` extra frames, so the film keeps the plan's length."""
    fade = cfg.fade_frames() / cfg.fps
    starts = [s.start for s in plan.slots()]
    args: list[str] = []
    for p in paths:
        args += ["-i", file_arg(p)]
    parts, last = [], "0:v"
    for k in range(1, len(paths)):
        label = f"x{k}"
        parts.append(f"[{last}][{k}:v]xfade=transition=fade:duration={fade:.4f}:"
                     f"offset={starts[k]:.4f}[{label}]")
        last = label
    parts[-1] = parts[-1].rsplit("[", 1)[0] + "[v]"
    fd, script = tempfile.mkstemp(prefix=f".xfade.{os.getpid()}.", suffix=".tmp.txt", dir=cache_dir)
    with os.fdopen(fd, "w") as f:
        f.write(";\n".join(parts))
    return args + ["-filter_complex_script", file_arg(script)], Path(script)
