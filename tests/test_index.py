"""`jvideo index` / `jvideo search`: incremental runs, bad files, interruption, the CLI."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cli
from montage import indexer
from montage.embedding import TextEmbedder
from montage.errors import MontageError
from montage.indexer import index_folder
from montage.library import Library
from _library_state import files_done

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

CAPTIONS = {
    "beach.mp4": "waves rolling onto a sandy beach",
    "city.mp4": "cars driving through a busy city street",
    "forest.mov": "sunlight through the trees of a quiet forest",
}


def encode(out: Path, source: str, seconds: float = 2.0) -> Path:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"{source}=s=320x240:r=25:d={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bank")
    return {"testsrc": encode(d / "a.mp4", "testsrc"), "bars": encode(d / "b.mp4", "smptebars"),
            "testsrc2": encode(d / "c.mp4", "testsrc2"), "rgb": encode(d / "d.mp4", "rgbtestsrc")}


def make_footage(folder: Path, bank: dict[str, Path]) -> Path:
    """Nested footage with captions in JSON sidecars, plus a symlink loop."""
    (folder / "nested" / "deeper").mkdir(parents=True)
    places = {"beach.mp4": folder, "city.mp4": folder / "nested", "forest.mov": folder / "nested" / "deeper"}
    for (name, where), src in zip(places.items(), ("testsrc", "bars", "testsrc2")):
        shutil.copy(bank[src], where / name)
        (where / name).with_suffix(".json").write_text(json.dumps({"caption": CAPTIONS[name]}))
    os.symlink(folder, folder / "nested" / "loop")
    return folder


def run(folder: Path, lib: Path, warnings: list | None = None):
    return index_folder(folder, lib, progress=False, warn=(warnings if warnings is not None else []).append)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, bank) -> tuple[Path, Path, object]:
    """Footage indexed once, read by several tests: (footage, library, report)."""
    d = tmp_path_factory.mktemp("indexed")
    folder = make_footage(d / "footage", bank)
    return folder, d / "lib", run(folder, d / "lib")


def test_index_then_search_ranks_the_caption_first(indexed):
    folder, lib_dir, report = indexed
    assert len(report.indexed) == 3 and not report.failed            # the loop is not followed twice
    with Library.open(lib_dir) as lib:
        shots = lib.shots()
        assert len(shots) == 3 and all(Path(s.thumbnail).is_file() for s in shots)
        assert {s.camera for s in shots} <= {"static", "pan", "zoom"}
        top, score = lib.search("the sea washing up on the sand", k=3)[0]
        assert top.source.endswith("beach.mp4") and score > 0.4
        assert lib.search("trees in the woods", k=1)[0][0].source.endswith("forest.mov")


def test_reindex_is_incremental(tmp_path, bank, monkeypatch):
    folder = make_footage(tmp_path / "footage", bank)
    lib_dir = tmp_path / "lib"
    run(folder, lib_dir)
    with Library.open(lib_dir) as lib:
        before = {s.source: s.id for s in lib.shots()}

    def no_decoding(*a, **k):
        raise AssertionError("an unchanged file was decoded again")

    with monkeypatch.context() as m:
        m.setattr(indexer, "analyse_video", no_decoding)
        again = run(folder, lib_dir)
        assert again.skipped == 3 and not again.indexed
        os.utime(folder / "beach.mp4", (time.time() + 10, time.time() + 10))  # touched, same bytes
        touched = run(folder, lib_dir)
        assert touched.skipped == 3 and not touched.indexed
        # only the caption changed: shots re-described and re-embedded, video not decoded
        (folder / "beach.json").write_text(json.dumps({"caption": "a red double-decker bus"}))
        retext = run(folder, lib_dir)
        assert retext.retexted == [str(folder / "beach.mp4")]

    city = folder / "nested" / "city.mp4"
    shutil.copy(bank["rgb"], city)                                     # content changed
    changed = run(folder, lib_dir)
    assert changed.indexed == [str(city)] and changed.skipped == 2
    with Library.open(lib_dir) as lib:
        after = {s.source: s.id for s in lib.shots()}
        assert len(lib) == 3                                           # old city shots removed
        forest = str(folder / "nested" / "deeper" / "forest.mov")
        assert after[forest] == before[forest]
        assert after[str(city)] != before[str(city)]
        assert lib.search("london bus", k=1)[0][0].source.endswith("beach.mp4")
        thumbs = {Path(s.thumbnail).name for s in lib.shots()}
        assert {p.name for p in lib.thumbs_dir.glob("*.jpg")} == thumbs  # no orphans
    (folder / "nested" / "deeper" / "forest.mov").unlink()
    gone = run(folder, lib_dir)
    assert gone.removed == [str(folder / "nested" / "deeper" / "forest.mov")]
    with Library.open(lib_dir) as lib:
        assert len(lib) == 2 and lib.index().ntotal == 2


def test_corrupt_and_empty_files_are_skipped_and_listed(tmp_path, bank, capsys):
    folder = make_footage(tmp_path / "footage", bank)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "corrupt.mkv").write_bytes(random.Random(0).randbytes(20000))
    half = folder / "truncated.mp4"
    half.write_bytes(bank["testsrc2"].read_bytes()[:3000])
    rc = cli.main(["index", str(folder), "--library", str(tmp_path / "lib"), "-q"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "indexed 3 file(s)" in out and "3 file(s) skipped" in out
    for name in ("empty.mp4", "corrupt.mkv", "truncated.mp4"):
        assert str(folder / name) in out
        assert any(line.startswith("warning: skipping") and name in line for line in err.splitlines())
    assert "Traceback" not in err
    with Library.open(tmp_path / "lib") as lib:
        failed = {Path(f.path).name: f.error for f in lib.failed_files()}
        assert set(failed) == {"empty.mp4", "corrupt.mkv", "truncated.mp4"}
        assert len(lib) == 3
    rc = cli.main(["index", str(folder), "--library", str(tmp_path / "lib"), "-q"])
    out, _ = capsys.readouterr()
    assert rc == 0 and "3 unchanged file(s) failed before" in out


def test_cli_errors_are_one_line(tmp_path, capsys):
    missing = tmp_path / "nolib"
    assert cli.main(["search", "dogs", "--library", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and "Traceback" not in err
    assert cli.main(["index", str(tmp_path / "nofolder"), "--library", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    (tmp_path / "nothing").mkdir()
    assert cli.main(["index", str(tmp_path / "nothing"), "--library", str(missing)]) == 2
    assert "no video files" in capsys.readouterr().err and not missing.exists()


def test_cli_search_prints_ranked_shots(indexed, capsys):
    _, lib_dir, _ = indexed
    assert cli.main(["search", "busy traffic downtown", "--library", str(lib_dir), "-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "1" and "city.mp4" in lines[0]
    assert float(lines[0].split()[1]) >= float(lines[1].split()[1])
    assert cli.main(["search", "busy traffic", "--library", str(lib_dir), "-k", "1", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)
    assert hit["source"].endswith("city.mp4") and hit["camera"] in ("static", "pan", "zoom")


def test_a_second_writer_is_refused(tmp_path, bank):
    folder = make_footage(tmp_path / "footage", bank)
    holder = Library.create(tmp_path / "lib")
    with holder.lock():
        with pytest.raises(MontageError, match=r"library .* is in use by pid \d+"):
            run(folder, tmp_path / "lib")
    holder.close()


def test_killed_index_leaves_a_library_that_opens_and_resumes(tmp_path, bank):
    folder = tmp_path / "many"
    folder.mkdir()
    sources = list(bank.values())
    n = 8
    captions = [f"test footage number {i}" for i in range(n)]
    for i in range(n):
        shutil.copy(sources[i % len(sources)], folder / f"clip_{i:02d}.mp4")
        (folder / f"clip_{i:02d}.txt").write_text(captions[i])
    lib_dir = tmp_path / "lib"
    # Captions embedded beforehand into the library's own cache: the child never loads torch,
    # so it reaches the files quickly (and the cache is exercised across processes).
    TextEmbedder(cache_dir=lib_dir / "cache").embed(captions)
    proc = subprocess.Popen([sys.executable, "-m", "cli", "index", str(folder), "--library", str(lib_dir), "-q"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.time() + 180
    try:
        while proc.poll() is None and time.time() < deadline and files_done(lib_dir) < 1:
            time.sleep(0.005)
    finally:
        proc.kill()                                   # SIGKILL: no chance to clean up
        proc.wait()
    done = files_done(lib_dir)
    assert 1 <= done < n, f"could not catch the run in the middle ({done} of {n} done)"
    with Library.open(lib_dir) as lib:                # opens; faiss (maybe stale) is rebuilt
        assert len(lib) == done
        assert lib.index().ntotal == done
        assert lib.search("test pattern", k=1)
    report = run(folder, lib_dir)
    assert report.skipped == done and len(report.indexed) == n - done and not report.failed
    with Library.open(lib_dir) as lib:
        assert len(lib) == n and lib.index().ntotal == n
        assert not (lib_dir / "library.lock").exists() or (lib_dir / "library.lock").read_text() == ""


def test_odd_file_names(tmp_path, bank):
    folder = tmp_path / "odd footage"
    folder.mkdir()
    name = "we:ird 'quoted' \"name\" ü [1].mp4"
    shutil.copy(bank["bars"], folder / name)
    (folder / name).with_suffix(".txt").write_text("colour bars on a test card")
    report = run(folder, tmp_path / "lib")
    assert report.indexed == [str(folder / name)] and not report.failed
    with Library.open(tmp_path / "lib") as lib:
        shot, = lib.shots()
        assert shot.source == str(folder / name) and shot.text.startswith("colour bars")


def test_thumbnails_written_at_once_by_many_threads(tmp_path):
    """Copies of one video share a content key, so decode threads can write the same thumbnail
    together (seen once in CI: a shared temporary name was renamed away under the other
    writer). Every write must land and leave no temporary behind."""
    import numpy as np
    from concurrent.futures import ThreadPoolExecutor
    frame = np.full((24, 32, 3), 128, np.uint8)
    out = tmp_path / "k_0000.jpg"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: indexer._write_jpeg(frame, out), range(400)))
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["k_0000.jpg"]


def test_identical_copies_index_side_by_side(tmp_path, bank):
    folder = tmp_path / "footage"
    folder.mkdir()
    for i in range(4):
        shutil.copy(bank["testsrc"], folder / f"copy{i}.mp4")
    report = index_folder(folder, tmp_path / "lib", indexer.IndexConfig(workers=4), progress=False,
                          warn=[].append)
    assert not report.failed and len(report.indexed) == 4
    with Library.open(tmp_path / "lib") as lib:
        assert len({s.thumbnail for s in lib.file_shots(str(folder / "copy0.mp4"))}) >= 1
        assert all(Path(s.thumbnail).is_file() for f in folder.iterdir() for s in lib.file_shots(str(f)))
