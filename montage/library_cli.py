"""`jvideo index` and `jvideo search`: build a footage library and query it.

Nothing heavy is imported at module level; `search` on a library whose query texts are cached
never loads torch.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "index", help="index a folder of videos into a footage library (incremental)",
        description="Walk FOLDER (nested) for mp4/mov/mkv/webm/avi files, cut them into shots, "
                    "describe each shot (colour, brightness, sharpness, motion, camera move, "
                    "sidecar text) and store it with a MiniLM embedding in LIB. Unchanged files "
                    "are skipped; an interrupted run resumes.")
    p.add_argument("folder", help="folder of videos (or one video file)")
    p.add_argument("--library", "-l", required=True, metavar="LIB", help="library folder (created if missing)")
    p.add_argument("--fps", type=float, default=4.0, help="frames analysed per second of video (default 4)")
    p.add_argument("--width", type=int, default=160, help="analysis width in pixels (default 160)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run_index)

    s = subparsers.add_parser("search", help="search a footage library by meaning",
                              description="Rank the library's shots by the cosine similarity of "
                                          "their text to TEXT (MiniLM embeddings, faiss).")
    s.add_argument("text", help="what to look for")
    s.add_argument("--library", "-l", required=True, metavar="LIB", help="library folder")
    s.add_argument("-k", type=int, default=10, help="how many shots (default 10)")
    s.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    s.set_defaults(func=run_search)


def _terminate_as_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def run_index(args: argparse.Namespace) -> int:
    from .errors import MontageError
    from .indexer import IndexConfig, index_folder

    if args.fps <= 0 or args.fps > 60:
        raise MontageError(f"--fps must be in (0, 60], got {args.fps:g}")
    if args.width < 32:
        raise MontageError(f"--width must be at least 32, got {args.width}")
    # `kill` (SIGTERM) stops like Ctrl-C: the file in progress is dropped, the rest is saved.
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    cfg = IndexConfig(sample_fps=args.fps, width=args.width)
    # One file named on the command line is the whole job: if it cannot be indexed that is
    # an error (one line, exit 2), not a warning plus a listing as for a folder.
    single = os.path.isfile(args.folder)
    held: list[str] = []
    try:
        report = index_folder(args.folder, args.library, cfg, progress=not args.quiet,
                              **({"warn": held.append} if single else {}))
    finally:
        # In-process callers (tests, a long-lived app) keep their own handler; processes
        # forked later (Jittor's compile pool) must not inherit this one.
        signal.signal(signal.SIGTERM, previous)
    if single:
        for path, reason in report.failed + report.still_failed:
            raise MontageError(f"cannot index {path}: {reason}")
        for msg in held:
            print(f"warning: {msg}", file=sys.stderr)
    parts = [f"indexed {len(report.indexed)} file(s), {report.shots} shot(s), "
             f"{report.video_seconds:.1f} s of video in {report.wall_s:.1f} s"]
    if report.video_seconds:
        parts.append(f"{report.realtime_factor:.1f}x real time")
    parts.append(f"{report.skipped} unchanged")
    if report.retexted:
        parts.append(f"{len(report.retexted)} re-captioned")
    if report.removed:
        parts.append(f"{len(report.removed)} removed (gone from disk)")
    print("; ".join(parts))
    if report.failed:
        print(f"{len(report.failed)} file(s) skipped (stored as failed; fix them and re-run):")
        for path, reason in report.failed:
            print(f"  {path}: {reason}")
    if report.still_failed:
        print(f"{len(report.still_failed)} unchanged file(s) failed before and were not retried:")
        for path, reason in report.still_failed:
            print(f"  {path}: {reason}")
    return 0


def _clock(t: float) -> str:
    m, s = divmod(max(0.0, t), 60.0)
    return f"{int(m):02d}:{s:06.3f}"


def run_search(args: argparse.Namespace) -> int:
    from .errors import MontageError
    from .library import Library, shot_to_dict

    if args.k <= 0:
        raise MontageError(f"-k must be positive, got {args.k}")
    if not args.text.strip():
        raise MontageError("empty search text")
    with Library.open(args.library) as lib:
        if len(lib) == 0:
            raise MontageError(f"library {lib.folder} has no shots; run 'jvideo index FOLDER --library {lib.folder}'")
        hits = lib.search(args.text, args.k)
    for rank, (shot, score) in enumerate(hits, 1):
        if args.json:
            print(json.dumps({"rank": rank, "score": round(score, 4), **shot_to_dict(shot)}))
        else:
            text = " ".join(shot.text.split())
            text = text if len(text) <= 70 else text[:67] + "..."
            print(f"{rank:3d}  {score:6.3f}  {shot.source}  {_clock(shot.start)}-{_clock(shot.end)}  {text}")
    sys.stdout.flush()
    return 0
