"""Interruptions (issue #9): a real Ctrl-C (SIGINT to the process group) or SIGKILL at a random
moment of `jvideo index`, `jvideo train` and a montage render leaves no corrupt library,
checkpoint or film and no temporary file once the next run is done, and that next run
resumes. Also: two writers of one library or one training folder are refused in one line.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _badinputs import check, lavfi_video, run_cli, temp_leftovers
from _library_state import files_done

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
RNG = random.Random()          # a random moment each run; the seed is printed on failure
SEED = int(os.environ.get("JVIDEO_INTERRUPT_SEED", random.randrange(1 << 30)))
RNG.seed(SEED)


def spawn(argv: list) -> subprocess.Popen:
    """`jvideo ARGV` in its own process group, as a shell runs a job."""
    return subprocess.Popen([sys.executable, "-m", "cli", *map(str, argv)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


def wait_for(pred, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def interrupt(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    """Send `sig` to the job's process group (Ctrl-C reaches ffmpeg children too); wait."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"seed {SEED}: the job did not stop within 90 s of signal {sig}")
    return proc.returncode, err


def assert_stopped_cleanly(rc: int, err: str, sig: int) -> None:
    assert "Traceback" not in err, f"seed {SEED}: {err[-2000:]}"
    if sig == signal.SIGKILL:
        assert rc in (-signal.SIGKILL, 0)
    else:
        assert rc in (130, 0), f"seed {SEED}: exit {rc}: {err[-500:]}"
        if rc == 130:
            assert err.strip().splitlines()[-1] == "jvideo: interrupted"


# -- index ---------------------------------------------------------------------------------------


def _library_consistent(lib: Path) -> int:
    from montage.library import Library
    con = sqlite3.connect(lib / "library.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    with Library.open(lib) as handle:
        assert handle.index().ntotal == len(handle)
        for shot in handle.shots():
            assert Path(shot.thumbnail).is_file() if shot.thumbnail else True
        return len(handle)


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("footage")
    sources = ["testsrc2", "smptebars", "rgbtestsrc", "testsrc"]
    for i in range(10):
        lavfi_video(folder / f"clip_{i:02d}.mp4", size="320x240", seconds=3 + i % 3, rate=25, source=sources[i % 4])
        (folder / f"clip_{i:02d}.txt").write_text(f"test footage number {i}")
    return folder


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_interrupted_index_resumes(tmp_path, footage, sig):
    lib = tmp_path / "lib"
    from montage.embedding import TextEmbedder
    # Captions embedded beforehand into the library's cache: the child reaches the files fast.
    TextEmbedder(cache_dir=lib / "cache").embed([f"test footage number {i}" for i in range(10)])
    proc = spawn(["index", footage, "--library", lib, "-q"])
    try:
        assert wait_for(lambda: files_done(lib) >= 1, proc, 180), f"seed {SEED}: no file indexed in time"
        # A second writer meanwhile: refused in one line, naming the holder.
        second = check(run_cli(["index", footage, "--library", lib, "-q"]), "error")
        assert not second.problems and "in use by pid" in second.stderr, second.stderr
        time.sleep(RNG.uniform(0.0, 0.6))
    finally:
        rc, err = interrupt(proc, sig)
    assert_stopped_cleanly(rc, err, sig)
    done = _library_consistent(lib)
    if sig != signal.SIGKILL:
        assert not temp_leftovers(lib), temp_leftovers(lib)
    else:   # what a kill -9 at a worse moment leaves: the next run must sweep it
        (lib / "thumbs").mkdir(exist_ok=True)
        (lib / "thumbs" / ".clip_00-3.tmp.jpg").write_bytes(b"\xff\xd8 half a jpeg")
        (lib / ".shots.k2j4h5g6.faiss.tmp").write_bytes(b"half an index")
    out = check(run_cli(["index", footage, "--library", lib, "-q"]), "ok", lib)
    assert not out.problems, out.problems
    assert _library_consistent(lib) >= done and files_done(lib) == 10
    assert not temp_leftovers(lib)


# -- train ---------------------------------------------------------------------------------------
def _checkpoint_readable(out: Path) -> None:
    """Every file a training run wrote parses: JSON loads, safetensors open, no temporaries."""
    from safetensors.numpy import load_file
    for p in out.rglob("*"):
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".safetensors":
            load_file(str(p))


def _no_temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if p.name != ".lock"]


@pytest.mark.slow
def test_interrupted_training_resumes(tmp_path):
    """Ctrl-C during the first stage, kill -9 during the resumed run, then a resume that
    finishes: every saved file stays readable and the run completes its steps."""
    out = tmp_path / "run"
    proc = spawn(["train", "--preset", "test", "--out", out])
    try:
        assert wait_for(lambda: (out / "state" / "vae.json").exists(), proc, 300), f"seed {SEED}: no checkpoint in time"
        second = check(run_cli(["train", "--preset", "test", "--out", out]), "error")
        assert not second.problems and "in use by another training run" in second.stderr, second.stderr
        time.sleep(RNG.uniform(0.0, 0.5))       # the DiT stage (encode + 3 steps) is still ahead
    finally:
        rc, err = interrupt(proc, signal.SIGINT)
    assert_stopped_cleanly(rc, err, signal.SIGINT)
    assert rc == 130, f"seed {SEED}: the run ended before Ctrl-C reached it"
    _checkpoint_readable(out)
    assert not _no_temporaries(out), _no_temporaries(out)

    proc = spawn(["train", "--preset", "test", "--out", out, "--resume"])
    try:
        wait_for(lambda: False, proc, RNG.uniform(5.0, 30.0))      # a random moment of the resumed run
    finally:
        rc, err = interrupt(proc, signal.SIGKILL)
    assert_stopped_cleanly(rc, err, signal.SIGKILL)
    _checkpoint_readable(out)

    # What a kill -9 inside a write leaves (atomic_write's temporary beside its target):
    (out / "vae" / ".diffusion_pytorch_model.safetensors.k2j4h5g6").write_bytes(b"half a file")
    resumed = subprocess.run([sys.executable, "-m", "cli", "train", "--preset", "test", "--out", str(out),
                              "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert resumed.returncode == 0, f"seed {SEED}: {resumed.stderr[-2000:]}"
    _checkpoint_readable(out)
    for stage in ("vae", "dit"):
        state = json.loads((out / "state" / f"{stage}.json").read_text())
        assert state["done"] and state["step"] == 3
    assert not list(out.rglob(".*")), "temporary or lock files left after the resumed run"


# -- montage render ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_library(tmp_path_factory, footage) -> Path:
    lib = tmp_path_factory.mktemp("mlib") / "lib"
    out = check(run_cli(["index", footage, "--library", lib, "-q"]), "ok")
    assert not out.problems, out.problems
    return lib


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_interrupted_render_leaves_no_partial_film(tmp_path, small_library, sig):
    text = tmp_path / "story.md"
    text.write_text(" ".join(f"Test footage number {i} is shown here for a while." for i in range(8)))
    film = tmp_path / "film.mp4"
    argv = ["montage", text, "--library", small_library, "--out", film, "--size", "320x180", "--workers", "1",
            "--subtitles"]
    proc = spawn(argv)
    segments = tmp_path / "film.montage-cache" / "segments"
    try:
        assert wait_for(lambda: segments.is_dir() and any(segments.glob("seg-*.mp4")), proc, 180), \
            f"seed {SEED}: no segment rendered in time"
        time.sleep(RNG.uniform(0.0, 1.5))
    finally:
        rc, err = interrupt(proc, sig)
    assert_stopped_cleanly(rc, err, sig)
    if rc != 0 and film.exists():
        # The signal came after the film was finished (an idle machine renders fast; the
        # sidecars were being written): then it must be whole, decodable to its last frame.
        decode = subprocess.run(["ffmpeg", "-v", "error", "-i", str(film), "-f", "null", "-"],
                                capture_output=True, text=True)
        assert decode.returncode == 0 and not decode.stderr.strip(), "an interrupted render left a partial film"
    if sig != signal.SIGKILL:
        assert not temp_leftovers(tmp_path), temp_leftovers(tmp_path)
    for seg in segments.glob("seg-*.mp4"):      # every cached segment is a whole file
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                                str(seg)], capture_output=True, text=True)
        assert probe.returncode == 0 and float(probe.stdout) > 0, seg
    if sig == signal.SIGKILL:   # what a kill -9 inside ffmpeg's write leaves, by a dead pid
        dead = subprocess.Popen(["true"])
        dead.wait()
        (tmp_path / f".film.mp4.{dead.pid}.tmp.mp4").write_bytes(b"half a film")
        segments.mkdir(parents=True, exist_ok=True)
        (segments / f".seg-0123456789abcdef0123.{dead.pid}.140.tmp.mp4").write_bytes(b"half a segment")
    again = check(run_cli(argv), "ok", tmp_path)
    assert not again.problems, again.problems
    assert "reused from the cache" in again.stdout
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                            str(film)], capture_output=True, text=True, check=True)
    plan = json.loads((tmp_path / "film.plan.json").read_text())
    assert abs(float(probe.stdout) - plan["duration"]) < 0.2
    assert not temp_leftovers(tmp_path), temp_leftovers(tmp_path)
