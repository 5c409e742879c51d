"""ffprobe probing and low-resolution frame decoding through an ffmpeg pipe.

Frames for analysis are decoded once, scaled down and sampled at a few frames per second by
ffmpeg itself, so Python never sees a full-resolution frame.
"""
from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from kernels.resources import ResourceError, check_memory

from .errors import MontageError
from .files import file_arg

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi"})


@dataclass
class VideoInfo:
    """What ffprobe says about a video file."""
    path: str
    duration: float      # seconds
    fps: float
    width: int
    height: int
    codec: str
    has_audio: bool
    start_time: float = 0.0


def executable(name: str) -> str:
    """Path of ffmpeg/ffprobe, or a MontageError that says how to get it."""
    exe = shutil.which(name)
    if exe is None:
        raise MontageError(f"{name} not found; install ffmpeg (run 'make setup')")
    return exe


def _ratio(text: str | None) -> float:
    if not text or text in ("0/0", "N/A"):
        return 0.0
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den) if float(den) else 0.0
    return float(text)


def probe(path: str | Path, timeout: float = 30.0) -> VideoInfo:
    """Probe one file. Raises MontageError (one line) if it is not a readable video."""
    path = str(path)
    cmd = [executable("ffprobe"), "-v", "error", "-print_format", "json", "-show_format",
           "-show_streams", file_arg(path)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MontageError(f"ffprobe timed out on {path}") from None
    if out.returncode != 0:
        msg = (out.stderr.strip().splitlines() or ["unreadable"])[-1]
        raise MontageError(f"not a readable video: {path}: {msg}")
    try:
        meta = json.loads(out.stdout or "{}")
    except json.JSONDecodeError:
        raise MontageError(f"not a readable video: {path}: ffprobe gave no metadata") from None
    streams = meta.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not s.get("disposition", {}).get("attached_pic")), None)
    if video is None:
        raise MontageError(f"no video stream in {path}")
    fmt = meta.get("format", {})
    duration = _ratio(video.get("duration")) or _ratio(fmt.get("duration"))
    fps = _ratio(video.get("avg_frame_rate")) or _ratio(video.get("r_frame_rate"))
    if fps <= 0 or fps > 1000:
        fps = _ratio(video.get("r_frame_rate")) or 25.0
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise MontageError(f"video stream of {path} has no frame size")
    # Rotated phone footage: report the displayed size.
    rotation = 0
    for side in video.get("side_data_list", []) or []:
        rotation = int(side.get("rotation", 0) or 0) or rotation
    rotation = rotation or int(video.get("tags", {}).get("rotate", 0) or 0)
    if abs(rotation) % 180 == 90:
        width, height = height, width
    return VideoInfo(path=path, duration=float(duration), fps=float(fps), width=width, height=height,
                     codec=str(video.get("codec_name", "")),
                     has_audio=any(s.get("codec_type") == "audio" for s in streams),
                     start_time=_ratio(fmt.get("start_time")))


MIN_ANALYSIS_SIDE = 32   # the camera-motion FFTs split frames into quadrants of halves


def analysis_size(info: VideoInfo, width: int) -> tuple[int, int]:
    """Even (w, h) no wider than `width`, keeping the aspect ratio; a tiny or very thin video
    is scaled up to at least MIN_ANALYSIS_SIDE on each side (a 2x2 clip crashed the FFTs)."""
    w = max(MIN_ANALYSIS_SIDE, min(width, info.width))
    w -= w % 2
    h = max(MIN_ANALYSIS_SIDE, int(round(info.height * w / info.width / 2)) * 2)
    return w, h


def decode_frames(info: VideoInfo, sample_fps: float, width: int = 160, threads: int = 0,
                  batch: int = 16, timeout: float | None = None, fast: bool = True,
                  _keep_last: bool = False) -> Iterator[np.ndarray]:
    """Decode `info.path` at `sample_fps`, scaled to `width` px wide, as RGB.

    Yields batches (B, H, W, 3) uint8; frame i of the stream is at time i / sample_fps.
    `fast` lets the decoder skip B-frames (nothing references them) and the deblocking filter:
    for a few frames a second at 160 px this halves decoding time; a sample then comes from
    the nearest I/P-frame (a frame or two off). Raises MontageError if ffmpeg fails before
    giving any frame.
    """
    # The decoder holds full-size frames (up to 16 references plus one per thread) whatever
    # the analysis width: a file claiming a huge picture is refused before ffmpeg allocates.
    try:
        check_memory(info.width * info.height * 1.5 * (18 + max(threads, 2)),
                     f"decoding a {info.width}x{info.height} video")
    except ResourceError as err:
        raise MontageError(str(err)) from None
    w, h = analysis_size(info, width)
    # eof_action=pass only on the retry below: it can add a sample at the end of a clip.
    vf = f"fps={sample_fps:g}:round=near{':eof_action=pass' if _keep_last else ''},scale={w}:{h}:flags=area"
    skip = ["-skip_frame", "bidir", "-skip_loop_filter", "all"] if fast else []
    cmd = [executable("ffmpeg"), "-nostdin", "-v", "error", "-threads", str(threads), *skip,
           "-i", file_arg(info.path), "-map", "0:v:0", "-an", "-sn", "-vf", vf,
           "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    frame_bytes = w * h * 3
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # A reader thread drains the pipe while the caller analyses the previous batch, so ffmpeg
    # never waits on a full pipe: decoding and analysis use both cores.
    chunks: queue.Queue = queue.Queue(maxsize=4)
    errors: list[bytes] = []

    def pump() -> None:
        try:
            while True:
                buf = _read_exactly(proc.stdout, frame_bytes * batch)
                chunks.put(buf)
                if len(buf) < frame_bytes * batch:
                    break
        finally:
            chunks.put(None)

    def drain_stderr() -> None:
        errors.append(proc.stderr.read())

    reader = threading.Thread(target=pump, daemon=True)
    err_reader = threading.Thread(target=drain_stderr, daemon=True)
    reader.start()
    err_reader.start()
    produced = 0
    try:
        while (buf := chunks.get()) is not None:
            n = len(buf) // frame_bytes
            if n:
                produced += n
                yield np.frombuffer(buf[: n * frame_bytes], dtype=np.uint8).reshape(n, h, w, 3)
        rc = proc.wait(timeout=timeout)
        err_reader.join()
        if produced == 0 and rc == 0 and not _keep_last:
            # A clip shorter than half a sampling interval (one frame, a still) gives no sample
            # with round=near: take its frame(s) as they come.
            yield from decode_frames(info, sample_fps, width, threads, batch, timeout, fast, _keep_last=True)
            return
        if produced == 0:
            err = b"".join(errors).decode(errors="replace").strip()
            msg = (err.splitlines() or [f"ffmpeg exited with {rc}"])[-1]
            raise MontageError(f"cannot decode {info.path}: {msg}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        while reader.is_alive():          # unblock a reader stuck on a full queue
            try:
                chunks.get_nowait()
            except queue.Empty:
                reader.join(0.05)
        proc.stdout.close()
        proc.stderr.close()


def _read_exactly(stream, n: int) -> bytes:
    """Read n bytes, or fewer only at the end of the stream."""
    parts, got = [], 0
    while got < n:
        part = stream.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_frames(info: VideoInfo, sample_fps: float, width: int = 160, threads: int = 0) -> np.ndarray:
    """All sampled frames at once: (T, H, W, 3) uint8."""
    batches = list(decode_frames(info, sample_fps, width, threads))
    return np.concatenate(batches) if batches else np.zeros((0, 2, 2, 3), np.uint8)
