"""The bad-input corpus of the reliability suite, and the harness that runs one CLI case.

Media are made small with ffmpeg's lavfi sources (a "huge" video is a header that claims a huge
picture, or 8000x8000 for one frame). A case runs `cli.main(argv)` in this process, so several
hundred cases cost seconds: stdout/stderr are captured, a SIGALRM deadline turns a hang into a
failure, and the folder the case writes into is checked for partial outputs afterwards.
"""
from __future__ import annotations

import contextlib
import io
import os
import random
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import cli

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
# What a partial write looks like: our own temporary names (mkstemp/.tmp) and ffmpeg's.
TEMP_PATTERNS = (re.compile(r"\.tmp"), re.compile(r"^\.[^/]*\.[A-Za-z0-9_]{8}$"))
ERROR_LINE = re.compile(r"^jvideo( [\w-]+)*: error: \S")


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


def lavfi_video(out: Path, size: str = "160x120", seconds: float = 1.5, rate: int = 12,
                source: str = "testsrc2", extra: tuple[str, ...] = (), codec: tuple[str, ...] | None = None) -> Path:
    codec = codec or ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
    sep = "" if source.endswith(":") else "="
    ffmpeg("-f", "lavfi", "-i", f"{source}{sep}s={size}:r={rate}:d={seconds}", *extra, *codec, str(out))
    return out


def build_media(folder: Path) -> dict[str, Path]:
    """Odd-but-valid and broken videos, each with a short caption sidecar. Returns name -> path.

    Keys starting with "ok_" are videos a footage library must accept; "bad_" ones it must skip.
    """
    folder.mkdir(parents=True, exist_ok=True)
    m: dict[str, Path] = {}
    good = lavfi_video(folder / "good.mp4")
    m["ok_good"] = good
    m["ok_odd_size"] = lavfi_video(folder / "odd_size.mkv", extra=("-vf", "scale=161:97"),
                                   codec=("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p"))
    # Variable frame rate: frame times stretch as the clip goes on.
    m["ok_vfr"] = lavfi_video(folder / "vfr.mp4", seconds=2, extra=("-vf", "setpts='N*N/(40*TB)'", "-fps_mode", "vfr"))
    # Rotation metadata (phone footage): only a stream copy keeps it in ffmpeg 5.1.
    ffmpeg("-i", str(good), "-c", "copy", "-metadata:s:v", "rotate=90", str(folder / "rotated.mp4"))
    m["ok_rotated"] = folder / "rotated.mp4"
    m["ok_mpeg4_avi"] = lavfi_video(folder / "mpeg4.avi", codec=("-c:v", "mpeg4"))
    m["ok_vp9_webm"] = lavfi_video(folder / "vp9.webm", seconds=1, codec=("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"))
    m["ok_one_frame"] = lavfi_video(folder / "one_frame.mp4", seconds=0.05, rate=24)
    m["ok_huge_8000"] = lavfi_video(folder / "huge_8000.mp4", size="8000x8000", seconds=0.04, rate=25,
                                    source="color=c=blue:",
                                    codec=("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                                           "-x264-params", "level=6.2"))
    m["ok_tiny_2x2"] = lavfi_video(folder / "tiny.mp4", size="2x2", seconds=1)
    m["ok_black"] = lavfi_video(folder / "black.mov", source="color=c=black:", seconds=1)
    data = good.read_bytes()
    (folder / "zero.mp4").write_bytes(b"")
    m["bad_zero_bytes"] = folder / "zero.mp4"
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    m["bad_truncated"] = folder / "truncated.mp4"
    (folder / "header_only.mp4").write_bytes(data[:64])
    m["bad_header_only"] = folder / "header_only.mp4"
    (folder / "text.mp4").write_text("this is not a video\n" * 50)
    m["bad_text_as_video"] = folder / "text.mp4"
    (folder / "random.mkv").write_bytes(random.Random(1).randbytes(20000))
    m["bad_random_bytes"] = folder / "random.mkv"
    png = folder / "picture.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48", "-frames:v", "1", str(png))
    shutil.copy(png, folder / "picture.mov")
    m["ok_still_image_as_mov"] = folder / "picture.mov"
    ffmpeg("-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", str(folder / "audio_only.mp4"))
    m["bad_no_video_stream"] = folder / "audio_only.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=d=1", "-f", "lavfi", "-i", "testsrc2=s=64x48:d=1", "-map", "0:a",
           "-map", "1:v", "-c:v", "mjpeg", "-disposition:v", "attached_pic", "-c:a", "aac",
           str(folder / "cover_art_only.mp4"))
    m["bad_cover_art_only"] = folder / "cover_art_only.mp4"
    # A y4m header claiming a 16000x16000 picture (about ffmpeg's own limit) and no frame data.
    (folder / "claims_huge.mkv").write_bytes(b"YUV4MPEG2 W16000 H16000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\0" * 4096)
    m["bad_claims_huge"] = folder / "claims_huge.mkv"
    (folder / "y4m_zero_size.mkv").write_bytes(b"YUV4MPEG2 W0 H0 F25:1 Ip A1:1 C420jpeg\nFRAME\n")
    m["bad_claims_zero_size"] = folder / "y4m_zero_size.mkv"
    odd = data[:]
    (folder / "flipped_bits.mp4").write_bytes(bytes(b ^ 0xFF if i % 97 == 0 and i > 2000 else b for i, b in enumerate(odd)))
    m["odd_flipped_bits"] = folder / "flipped_bits.mp4"   # may decode partly: either outcome is fine
    return m


ODD_NAMES = [
    "with space.mp4", "it's quoted.mp4", 'double"quote.mp4', "co:lon.mp4", "back\\slash.mp4",
    "ünïcødé 映像 фильм.mp4", "-leading-dash.mp4", "--help.mp4", "concat:a.mp4", "http:x.mp4",
    "semi;colon.mp4", "dollar$HOME.mp4", "new\nline.mp4", "tab\there.mp4", "pct%{pts}.mp4",
    "brackets[0].mp4", "emoji 🎬.mp4", ".hidden.mp4", "a" * 200 + ".mp4", "UPPER.MP4",
]


# -- running one case --------------------------------------------------------------------------
class Hang(BaseException):
    """Raised by the SIGALRM deadline (BaseException: no `except Exception` swallows it)."""


@dataclass
class Outcome:
    argv: list[str]
    code: int | None
    stdout: str
    stderr: str
    hung: bool = False
    crashed: str = ""                # an exception that escaped cli.main
    problems: list[str] = field(default_factory=list)


def run_cli(argv: list[str], timeout: float = 60.0) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    if os.environ.get("JVIDEO_FUZZ_TRACE"):      # a log of every case, for debugging a slow run
        with open(os.environ["JVIDEO_FUZZ_TRACE"], "a") as f:
            f.write(repr([str(a) for a in argv]) + "\n")

    def alarm(signum, frame):  # noqa: ARG001
        raise Hang()

    # Commands install handlers (index: SIGTERM -> KeyboardInterrupt); keep them per case.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    code, hung, crashed = None, False, ""
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main([str(a) for a in argv])
            except SystemExit as exc:       # argparse
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except Hang:
        hung = True
    except Exception as exc:  # noqa: BLE001 - the point: anything that escapes is a finding
        import traceback
        crashed = "".join(traceback.format_exception(exc))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    return Outcome([str(a) for a in argv], code, out.getvalue(), err.getvalue(), hung, crashed)


def temp_leftovers(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        for name in files + dirs:
            if any(p.search(name) for p in TEMP_PATTERNS):
                found.append(Path(root) / name)
    return found


def check(outcome: Outcome, expect: str, workdir: Path | None = None, outputs: tuple[Path, ...] = ()) -> Outcome:
    """Fill `outcome.problems`. expect: "error" (non-zero exit, exactly one error line), "ok"
    (exit 0) or "either" (odd input: one of the two, each done properly)."""
    p = outcome.problems
    if outcome.hung:
        p.append("hang")
    if outcome.crashed:
        p.append("crash: " + outcome.crashed.strip().splitlines()[-1])
    if "Traceback (most recent call last)" in outcome.stderr + outcome.stdout:
        p.append("traceback in output")
    if outcome.hung or outcome.crashed:
        return outcome
    lines = [ln for ln in outcome.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ERROR_LINE.match(ln) or ": error:" in ln]
    failed = outcome.code not in (0, None)
    if expect == "error" and not failed:
        p.append(f"expected an error, got exit {outcome.code}")
    if expect == "ok" and failed:
        p.append(f"expected success, got exit {outcome.code}: {lines[-1] if lines else ''}")
    if failed:
        if len(errors) != 1:
            p.append(f"{len(errors)} error lines (want 1): {lines[-3:]}")
        elif not ERROR_LINE.match(errors[0]):
            p.append(f"error line not in the 'jvideo CMD: error: ...' form: {errors[0]!r}")
        for out in outputs:                      # a failed run leaves no (partial) output behind
            if out.exists():
                p.append(f"failed run left {out.name}")
    if workdir is not None:
        p.extend(f"temporary file left: {t}" for t in temp_leftovers(workdir))
    return outcome
