"""`jvideo index`: walk a folder of videos into a library, incrementally.

Per file: probe (ffprobe) -> decode low-resolution frames at a few fps through an ffmpeg pipe
-> per-frame statistics -> shot boundaries -> per-shot features, thumbnail and text -> MiniLM
embeddings -> one SQLite transaction. A killed run loses at most the file it was working on;
the next run skips every file already committed whose size, mtime (or content hash) and
sidecar text are unchanged.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import features as feat
from . import video
from .errors import MontageError
from .files import scratch_path
from .library import Library, Shot
from .shots import CutConfig, detect_cuts, to_times
from .sidecar import ClipText, SidecarReader

HASH_BLOCK = 1 << 20


@dataclass
class IndexConfig:
    sample_fps: float = 4.0        # frames analysed per second of video
    width: int = 160               # analysis (and thumbnail) width in pixels
    threads: int = 1               # ffmpeg threads per file (measured on the shared 2-core
                                   # machine: 0.56 s with one vs 1.09 s with ffmpeg's auto)
    workers: int = 2               # files decoded at once
    fast_decode: bool = True       # skip B-frames and deblocking (see video.decode_frames)
    save_every_s: float = 30.0     # write shots.faiss at least this often
    cut: CutConfig = field(default_factory=CutConfig)


@dataclass
class IndexReport:
    """What one run did."""
    found: int = 0
    indexed: list[str] = field(default_factory=list)
    retexted: list[str] = field(default_factory=list)   # video unchanged, sidecar text changed
    skipped: int = 0                                     # unchanged
    failed: list[tuple[str, str]] = field(default_factory=list)   # (path, reason), this run
    removed: list[str] = field(default_factory=list)     # gone from disk
    still_failed: list[tuple[str, str]] = field(default_factory=list)  # failed before, unchanged
    shots: int = 0                                       # shots written this run
    video_seconds: float = 0.0                           # seconds of video decoded this run
    wall_s: float = 0.0
    interrupted: bool = False

    @property
    def realtime_factor(self) -> float:
        return self.video_seconds / self.wall_s if self.wall_s > 0 else 0.0


# -- finding files ---------------------------------------------------------------------------
def resolve_path(path: str | Path) -> Path:
    """Path.resolve(), with a symbolic-link loop as one MontageError line (Python 3.11 raises
    RuntimeError for it; later versions OSError)."""
    try:
        return Path(path).expanduser().resolve()
    except (RuntimeError, OSError) as err:
        raise MontageError(f"{path}: symbolic link loop ({err.__class__.__name__})") from None


def find_videos(folder: str | Path, exclude: Path | None = None) -> list[Path]:
    """Video files under `folder` (nested, following links but never around a loop), sorted."""
    root = resolve_path(folder)
    if not root.exists():
        raise MontageError(f"folder {root} does not exist")
    if not os.access(root, os.R_OK):
        raise MontageError(f"folder {root} is not readable")
    if root.is_file():
        return [root] if root.suffix.lower() in video.VIDEO_EXTENSIONS else []
    seen: set[tuple[int, int]] = set()
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:                      # a symlink loop or a second way in
            dirnames[:] = []
            continue
        seen.add(key)
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (exclude is None or (here / d).resolve() != exclude))
        for name in filenames:
            if Path(name).suffix.lower() in video.VIDEO_EXTENSIONS and not name.startswith("."):
                out.append(Path(os.path.abspath(here / name)))
    return sorted(set(out))


def content_hash(path: str | Path, size: int) -> str:
    """BLAKE2b of the size and three 1 MiB blocks (start, middle, end): detects edits without
    reading whole multi-GB files."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        for offset in sorted({0, max(0, size // 2 - HASH_BLOCK // 2), max(0, size - HASH_BLOCK)}):
            f.seek(offset)
            h.update(f.read(HASH_BLOCK))
    return h.hexdigest()


def text_signature(text: ClipText) -> str:
    data = [text.caption, text.tags, [(c.start, c.end, c.text) for c in text.cues]]
    return hashlib.sha1(json.dumps(data).encode("utf-8")).hexdigest()[:16]


# -- analysing one video ---------------------------------------------------------------------
@dataclass
class Analysis:
    info: video.VideoInfo
    stats: feat.FrameStats
    ranges: list[tuple[int, int]]          # sampled-frame ranges of the shots
    times: list[tuple[float, float]]       # the same in seconds (kept inside the cuts)


def analyse_video(path: str | Path, cfg: IndexConfig, info: video.VideoInfo | None = None,
                  cancel: threading.Event | None = None) -> Analysis:
    """Probe (unless `info` is given), decode and cut one video. MontageError if unreadable
    or if `cancel` is set while it runs."""
    info = info or video.probe(path)
    analyzer = feat.FrameAnalyzer(cfg.sample_fps)
    for batch in video.decode_frames(info, cfg.sample_fps, cfg.width, cfg.threads,
                                     fast=cfg.fast_decode):
        if cancel is not None and cancel.is_set():
            raise MontageError(f"cancelled: {path}")
        analyzer.add(batch)
    stats = analyzer.stats
    if stats is None or len(stats) == 0:
        raise MontageError(f"cannot decode {path}: no frames")
    a = stats.arrays()
    ranges = detect_cuts(a["hist"], a["change"], a["brightness"], cfg.sample_fps, cfg.cut)
    duration = info.duration if info.duration > 0 else len(stats) / cfg.sample_fps
    frame_s = 1.0 / info.fps if info.fps > 0 else 0.04
    # With B-frames skipped a sample may come from up to two frames away (x264's usual runs).
    slack = (2.0 if cfg.fast_decode else 0.5) * frame_s
    times = to_times(ranges, len(stats), cfg.sample_fps, duration, slack=slack, frame_s=frame_s)
    kept = [(r, t) for r, t in zip(ranges, times) if t[1] > t[0]]
    return Analysis(info, stats, [r for r, _ in kept], [t for _, t in kept])


def _write_jpeg(rgb: np.ndarray, out: Path) -> None:
    from PIL import Image
    # Two copies of one video share a content key, so two decode threads may write the same
    # thumbnail at once: each needs its own temporary name.
    tmp = scratch_path(out, ".jpg")
    Image.fromarray(rgb).save(tmp, "JPEG", quality=85)
    os.replace(tmp, out)


def build_shots(an: Analysis, text: ClipText, thumbs_dir: Path, key: str) -> list[Shot]:
    """Shot records of one analysed video (ids are set when the library stores them)."""
    arrays = an.stats.arrays()
    shots = []
    for k, ((a, b), (start, end)) in enumerate(zip(an.ranges, an.times)):
        f = feat.shot_features(an.stats, arrays, a, b)
        thumb = thumbs_dir / f"{key}_{k:04d}.jpg"
        frame = feat.thumbnail_frame(an.stats, a, b)
        if frame is not None:
            _write_jpeg(frame, thumb)
        shots.append(Shot(id=-1, source=an.info.path, start=start, end=end, fps=an.info.fps,
                          width=an.info.width, height=an.info.height, thumbnail=str(thumb),
                          lab=f.lab, brightness=f.brightness, sharpness=f.sharpness,
                          motion=f.motion, camera=f.camera, text=text.text_for(start, end),
                          tags=list(text.tags), has_audio=an.info.has_audio))
    return shots


# -- the run ---------------------------------------------------------------------------------
def _warn(msg: str) -> None:
    from tqdm import tqdm
    tqdm.write(f"warning: {msg}", file=sys.stderr)   # above the progress bar, not through it


def index_folder(folder: str | Path, library: str | Path, cfg: IndexConfig | None = None,
                 progress: bool = True, warn: Callable[[str], None] = _warn) -> IndexReport:
    """Index every video under `folder` into the library at `library` (created if missing)."""
    cfg = cfg or IndexConfig()
    t0 = time.perf_counter()
    root = resolve_path(folder)
    lib_dir = resolve_path(library)
    files = find_videos(root, exclude=lib_dir)
    if not files and not (lib_dir / "library.sqlite").is_file():
        raise MontageError(f"no video files ({', '.join(sorted(video.VIDEO_EXTENSIONS))}) under {root}")
    lib = Library.create(lib_dir)
    report = IndexReport()
    try:
        with lib.lock():
            _sweep_temporaries(lib)
            try:
                _run(lib, root, files, cfg, report, progress, warn)
            finally:
                lib.save_index()            # while still holding the lock
    except KeyboardInterrupt:
        report.interrupted = True
        raise
    finally:
        lib.close()
        report.wall_s = time.perf_counter() - t0
    return report


def _sweep_temporaries(lib: Library) -> None:
    """Remove what a killed indexer left half-written (thumbnail and faiss temporaries).
    Called with the writer lock held, so no live process owns them."""
    for folder, pattern in ((lib.thumbs_dir, ".*.tmp.jpg"), (lib.folder, ".shots.*.faiss.tmp")):
        for p in folder.glob(pattern) if folder.is_dir() else []:
            p.unlink(missing_ok=True)


def _run(lib: Library, root: Path, files: list[Path], cfg: IndexConfig, report: IndexReport,
         progress: bool, warn: Callable[[str], None]) -> None:
    from tqdm import tqdm

    report.found = len(files)
    reader = SidecarReader(root if root.is_dir() else root.parent)
    present = {str(p) for p in files}
    for rec in lib.file_records():               # files that were deleted since the last run
        p = Path(rec.path)
        if (p == root or root in p.parents) and rec.path not in present and not p.exists():
            old_thumbs = [s.thumbnail for s in lib.file_shots(rec.path)]
            lib.remove_file(rec.path)
            lib.drop_unused_thumbnails(old_thumbs)
            report.removed.append(rec.path)
    # Pass 1 (cheap: stat, sidecars, a sampled hash when size or mtime moved) settles the
    # unchanged and re-captioned files. Pass 2 decodes the rest, `cfg.workers` files at a
    # time in threads (ffmpeg and numpy run outside the GIL), while this thread embeds and
    # commits finished files in order, one transaction each.
    jobs = [job for path in files if (job := _triage(lib, path, reader, report, warn)) is not None]
    last_save = time.perf_counter()
    bar = tqdm(total=len(jobs), unit="file", desc="indexing", disable=not progress or not jobs,
               file=sys.stderr, dynamic_ncols=True)
    cancel = threading.Event()
    pool = ThreadPoolExecutor(max_workers=max(1, cfg.workers), thread_name_prefix="decode")
    pending: list[Future] = []
    try:
        queued = iter(jobs)
        for job in jobs:
            while len(pending) < max(1, cfg.workers) and (nxt := next(queued, None)) is not None:
                pending.append(pool.submit(_decode_job, nxt, cfg, lib.thumbs_dir, cancel))
            bar.set_postfix_str(job.path.name[-40:], refresh=False)
            _commit(lib, job, pending.pop(0), report, warn)
            bar.update(1)
            if time.perf_counter() - last_save > cfg.save_every_s:
                lib.save_index()
                last_save = time.perf_counter()
    finally:
        cancel.set()                      # an interrupted run stops the decoders at once
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    for w in reader.warnings:
        warn(w)


@dataclass
class _Job:
    """A file that has to be (re-)decoded."""
    path: Path
    st: os.stat_result
    rec: object            # library.FileRecord or None
    chash: str
    text: ClipText
    sig: str


def _fail(lib: Library, job: _Job, reason: str, report: IndexReport, warn: Callable[[str], None]) -> None:
    spath = str(job.path)
    old_thumbs = [s.thumbnail for s in lib.file_shots(spath)] if job.rec is not None else []
    lib.replace_file(spath, job.st.st_size, job.st.st_mtime, job.chash, "failed", error=reason,
                     text_sig=job.sig, indexed_at=time.time())
    lib.drop_unused_thumbnails(old_thumbs)
    report.failed.append((spath, reason))
    warn(f"skipping {spath}: {reason}")


def _triage(lib: Library, path: Path, reader: SidecarReader, report: IndexReport,
            warn: Callable[[str], None]) -> _Job | None:
    """Settle a file that needs no decoding (unchanged, touched, re-captioned, unreadable);
    else return the job of decoding it."""
    spath = str(path)
    try:
        st = path.stat()
    except OSError as err:
        report.failed.append((spath, err.strerror or str(err)))
        warn(f"skipping {spath}: {err.strerror}")
        return None
    rec = lib.file_record(spath)
    text = reader.read(path)
    for w in text.warnings:
        warn(f"{spath}: {w}")
    sig = text_signature(text)
    if rec is not None and rec.size == st.st_size and rec.mtime == st.st_mtime and rec.text_sig == sig:
        report.skipped += 1
        if rec.status == "failed":
            report.still_failed.append((spath, rec.error))
        return None
    try:
        chash = content_hash(path, st.st_size) if st.st_size > 0 else ""
    except OSError as err:
        _fail(lib, _Job(path, st, rec, "", text, sig), err.strerror or str(err), report, warn)
        return None
    if rec is not None and rec.size == st.st_size and rec.hash == chash and chash:
        if rec.text_sig == sig or rec.status == "failed":   # touched, not changed
            lib.touch_file(spath, st.st_size, st.st_mtime)
            report.skipped += 1
            if rec.status == "failed":
                report.still_failed.append((spath, rec.error))
            return None
        _retext(lib, spath, rec, st, chash, text, sig)     # only the sidecar text changed
        report.retexted.append(spath)
        return None
    return _Job(path, st, rec, chash, text, sig)


def _decode_job(job: _Job, cfg: IndexConfig, thumbs_dir: Path, cancel: threading.Event):
    """Worker thread: probe, decode, cut, describe and thumbnail one file.
    Returns (Analysis, shots) or the MontageError that made it fail."""
    try:
        if job.st.st_size == 0:
            raise MontageError("empty file (0 bytes)")
        an = analyse_video(job.path, cfg, cancel=cancel)
        return an, build_shots(an, job.text, thumbs_dir, job.chash[:16])
    except MontageError as err:
        return err


def _commit(lib: Library, job: _Job, decoded: Future, report: IndexReport,
            warn: Callable[[str], None]) -> None:
    """Embed and store one decoded file (one transaction), or record why it failed."""
    spath = str(job.path)
    result = decoded.result()
    try:
        if isinstance(result, MontageError):
            raise result
        an, shots = result
        emb = lib.embedder.embed([s.text for s in shots])
    except MontageError as err:
        _fail(lib, job, str(err).replace(spath + ": ", ""), report, warn)
        return
    old_thumbs = [s.thumbnail for s in lib.file_shots(spath)] if job.rec is not None else []
    lib.replace_file(spath, job.st.st_size, job.st.st_mtime, job.chash, "done", shots, emb,
                     duration=an.info.duration, indexed_at=time.time(), text_sig=job.sig)
    lib.drop_unused_thumbnails(old_thumbs)
    report.indexed.append(spath)
    report.shots += len(shots)
    report.video_seconds += an.info.duration


def _retext(lib: Library, spath: str, rec, st, chash: str, text: ClipText, sig: str) -> None:
    shots = lib.file_shots(spath)
    for s in shots:
        s.text, s.tags = text.text_for(s.start, s.end), list(text.tags)
    emb = lib.embedder.embed([s.text for s in shots])
    lib.replace_file(spath, st.st_size, st.st_mtime, chash, rec.status, shots, emb,
                     error=rec.error, duration=rec.duration, indexed_at=time.time(), text_sig=sig)


# -- benchmark -------------------------------------------------------------------------------
def make_benchmark_footage(folder: str | Path, seconds: float = 60.0, clip_s: float = 20.0,
                           size: str = "854x480", fps: int = 30, bframes: bool = True) -> list[Path]:
    """Write H.264 480p test clips (3 shots each, lavfi sources) totalling `seconds`.
    `bframes=False` encodes without B-frames, like many phones: every frame must be decoded."""
    import subprocess

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    third = clip_s / 3
    sources = ["testsrc2", "smptehdbars", "mandelbrot", "testsrc", "rgbtestsrc", "cellauto"]
    for k in range(max(1, int(round(seconds / clip_s)))):
        path = folder / f"bench_{k:03d}{'' if bframes else '_nob'}.mp4"
        out.append(path)
        if path.is_file():
            continue
        srcs = [sources[(k + j) % len(sources)] for j in range(3)]
        args = []
        for s in srcs:
            args += ["-f", "lavfi", "-i", f"{s}=s={size}:r={fps}"]
        chain = ";".join(f"[{j}]trim=duration={third:.3f},setpts=PTS-STARTPTS,format=yuv420p[v{j}]"
                         for j in range(3))
        cmd = [video.executable("ffmpeg"), "-nostdin", "-v", "error", "-y", *args, "-filter_complex",
               f"{chain};[v0][v1][v2]concat=n=3:v=1[v]", "-map", "[v]", "-c:v", "libx264",
               "-preset", "veryfast", "-crf", "23", *([] if bframes else ["-bf", "0"]),
               "-pix_fmt", "yuv420p", str(path)]
        subprocess.run(cmd, check=True)
    return out


def benchmark_index_speed(workdir: str | Path, seconds: float = 60.0, cfg: IndexConfig | None = None,
                          progress: bool = False, bframes: bool = True) -> dict:
    """Index `seconds` of 854x480 30 fps H.264 footage into a fresh library and report how many
    times faster than real time it ran (target: >= 20x on 2 cores). The embedding model is
    loaded before the clock starts (a one-off cost per run, reported separately)."""
    workdir = Path(workdir)
    footage = workdir / ("footage" if bframes else "footage_no_bframes")
    clips = make_benchmark_footage(footage, seconds, bframes=bframes)
    lib_dir = workdir / f"lib_{os.getpid()}_{time.time_ns()}"
    t = time.perf_counter()
    from .embedding import TextEmbedder
    TextEmbedder().embed(["warm up"])               # imports torch and loads MiniLM
    model_load_s = time.perf_counter() - t
    load_before = os.getloadavg()[0]
    cpu0 = _cpu_seconds()
    report = index_folder(footage, lib_dir, cfg, progress=progress, warn=lambda m: None)
    cpu = _cpu_seconds() - cpu0
    with Library.open(lib_dir) as lib:
        n_shots = len(lib)
    shutil.rmtree(lib_dir, ignore_errors=True)
    return {"clips": len(clips), "video_seconds": round(report.video_seconds, 2),
            "wall_s": round(report.wall_s, 3), "realtime_factor": round(report.realtime_factor, 2),
            "cpu_s": round(cpu, 3),          # this process + ffmpeg/ffprobe children, user + sys
            "video_s_per_cpu_s": round(report.video_seconds / cpu, 2) if cpu > 0 else 0.0,
            "load_average": round(load_before, 2), "cores": os.cpu_count(),
            "shots": n_shots, "expected_shots": 3 * len(clips), "model_load_s": round(model_load_s, 2),
            "bframes": bframes,
            "target_realtime_factor": 20.0}


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (ffmpeg)."""
    import resource
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
