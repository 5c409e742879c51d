"""Footage library: storage and search, cut detection, shot features, sidecar text."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from montage import features, shots, video
from montage.errors import MontageError
from montage.indexer import IndexConfig, analyse_video
from montage.library import Library, Shot, tokens
from montage.sidecar import SidecarReader, filename_words, parse_srt

pytestmark = pytest.mark.skipif(video.shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def encode(out: Path, *inputs_and_filters: str) -> Path:
    ffmpeg(*inputs_and_filters, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out))
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Small synthetic clips (320x240, 25 fps) with known content."""
    d = tmp_path_factory.mktemp("clips")
    lav = lambda spec: ["-f", "lavfi", "-i", spec]  # noqa: E731
    return {
        # three segments: cuts at 2.0 s and 4.0 s
        "three": encode(d / "three.mp4", *lav("testsrc=s=320x240:r=25:d=2"), *lav("smptebars=s=320x240:r=25:d=2"),
                        *lav("color=c=0x2050a0:s=320x240:r=25:d=2"),
                        "-filter_complex", "[0][1][2]concat=n=3:v=1[v]", "-map", "[v]"),
        "still": encode(d / "still.mp4", *lav("testsrc=s=320x240:r=25:d=2")),
        "pan": encode(d / "pan.mp4", *lav("testsrc=s=640x240:r=25:d=2"), "-vf", "crop=320:240:x='t*60':y=0"),
        "zoom": encode(d / "zoom.mp4", *lav("testsrc=s=640x480:r=25:d=2"), "-vf",
                       "zoompan=z='1+on*0.01':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d=1:s=320x240:fps=25"),
        "dark": encode(d / "dark.mp4", *lav("testsrc=s=320x240:r=25:d=2"), "-vf", "eq=brightness=-0.6"),
        "blur": encode(d / "blur.mp4", *lav("testsrc=s=320x240:r=25:d=2"), "-vf", "boxblur=6"),
        "fade": encode(d / "fade.mp4", *lav("testsrc=s=320x240:r=25:d=3"), *lav("smptebars=s=320x240:r=25:d=3"),
                       "-filter_complex", "[0][1]xfade=transition=fadeblack:duration=1:offset=2"),
    }


def _features(path: Path) -> list[features.ShotFeatures]:
    an = analyse_video(path, IndexConfig())
    arrays = an.stats.arrays()
    return [features.shot_features(an.stats, arrays, a, b) for a, b in an.ranges]


# -- cut detection and features --------------------------------------------------------------
def test_cuts_of_three_known_segments(clips):
    an = analyse_video(clips["three"], IndexConfig(sample_fps=4.0))
    assert len(an.times) == 3
    interval = 1 / 4.0
    for (_, end), (start, _), true_cut in zip(an.times[:-1], an.times[1:], (2.0, 4.0)):
        assert true_cut - 2 * interval <= end <= true_cut <= start <= true_cut + 2 * interval
    assert an.times[0][0] == 0.0 and an.times[-1][1] == pytest.approx(6.0, abs=0.05)


def test_single_shot_and_steady_pan_are_not_cut(clips):
    assert len(analyse_video(clips["still"], IndexConfig()).times) == 1
    assert len(analyse_video(clips["pan"], IndexConfig()).times) == 1


def test_fade_through_black_splits_and_black_belongs_to_no_shot(clips):
    an = analyse_video(clips["fade"], IndexConfig())
    assert len(an.times) == 2
    (a0, a1), (b0, b1) = an.times
    # the fade runs 2.0-3.0 s (black at 2.5 s): the cut lies inside it
    assert 1.75 <= a1 <= b0 <= 3.25


def test_adaptive_threshold_ignores_uniformly_busy_footage():
    rng = np.random.default_rng(0)
    n = 40
    hist = np.abs(rng.normal(1, 0.3, (n, 512))).astype(np.float32)
    hist /= hist.sum(1, keepdims=True)
    change = np.full(n, 0.1, np.float32)
    ranges = shots.detect_cuts(hist, change, np.full(n, 0.5, np.float32), 4.0)
    hist[20:] = np.eye(512, dtype=np.float32)[7]  # from frame 20 on, another picture: one cut
    ranges_cut = shots.detect_cuts(hist, change, np.full(n, 0.5, np.float32), 4.0)
    assert len(ranges) == 1
    assert [r[0] for r in ranges_cut] == [0, 20]


def test_a_single_sampled_frame_is_one_shot_without_numpy_warnings():
    """A one-frame video (or a still image) samples once: one shot, and no mean of an empty slice."""
    import warnings
    hist = np.full((1, 512), 1 / 512, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert shots.detect_cuts(hist, np.zeros(1, np.float32), np.full(1, 0.5, np.float32), 4.0) == [(0, 1)]


def test_features_are_sane(clips):
    still, = _features(clips["still"])
    dark, = _features(clips["dark"])
    blur, = _features(clips["blur"])
    pan, = _features(clips["pan"])
    zoom, = _features(clips["zoom"])
    assert dark.brightness < 0.5 * still.brightness and dark.lab[0] < still.lab[0] - 20
    assert blur.sharpness < 0.5 * still.sharpness
    assert still.camera == "static" and pan.camera == "pan" and zoom.camera == "zoom"
    assert pan.motion > still.motion
    for f in (still, dark, blur, pan, zoom):
        assert 0 <= f.brightness <= 1 and 0 <= f.sharpness <= 1 and 0 <= f.motion <= 1


def test_lab_of_pure_colours():
    lab = features.rgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]], np.uint8))
    assert lab[0] == pytest.approx([100, 0, 0], abs=0.5)
    assert lab[1] == pytest.approx([0, 0, 0], abs=0.5)
    assert lab[2] == pytest.approx([53.2, 80.1, 67.2], abs=0.5)


def test_probe_rejects_non_video(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"this is not a video\n" * 300)
    with pytest.raises(MontageError, match="not a readable video"):
        video.probe(bad)


# -- sidecar text ----------------------------------------------------------------------------
def test_sidecar_precedence(tmp_path):
    root = tmp_path / "footage"
    sub = root / "a" / "b"
    sub.mkdir(parents=True)
    names = ["j.mp4", "t.mp4", "c.mp4", "beach_Sunset-02.mp4"]
    for n in names:
        (sub / n).write_bytes(b"")
    (sub / "j.json").write_text(json.dumps({"caption": "from json", "tags": ["x", "y"]}))
    (sub / "j.txt").write_text("from txt")                      # loses to json
    (sub / "t.txt").write_text("from\n txt ")
    (root / "library.csv").write_text(
        "path,caption,tags\n"
        "a/b/j.mp4,from csv j,y;z\n"
        "a/b/t.mp4,from csv t,\n"
        "a/b/c.mp4,from csv c,\"p, q\"\n")
    (sub / "c.srt").write_text("1\n00:00:01,000 --> 00:00:02,500\nHello <i>there</i>\n\n"
                               "2\n00:00:05,000 --> 00:00:06,000\nlater line\n")
    r = SidecarReader(root)
    j, t, c, f = (r.read(sub / n) for n in names)
    assert (j.caption, j.caption_from, j.tags) == ("from json", "json", ["x", "y", "z"])
    assert (t.caption, t.caption_from) == ("from txt", "txt")
    assert (c.caption, c.caption_from, c.tags) == ("from csv c", "csv", ["p", "q"])
    assert (f.caption, f.caption_from) == ("beach sunset", "filename")
    assert c.text_for(0.0, 1.5) == "from csv c. p, q. Hello there"
    assert c.text_for(3.0, 4.0) == "from csv c. p, q"
    assert c.transcript(4.0, 10.0) == "later line"


def test_bad_sidecar_json_is_a_warning(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"")
    (tmp_path / "v.json").write_text("{not json")
    ct = SidecarReader(tmp_path).read(tmp_path / "v.mp4")
    assert ct.caption == ""                        # and no one-letter file-name words
    assert ct.warnings and "v.json" in ct.warnings[0]


def test_srt_and_filename_parsing():
    cues = parse_srt("\ufeff1\r\n00:00:00.500 --> 00:00:01,000\r\nA\r\n\r\nbroken\n\n3\n00:01:00,000 --> 00:01:02,000\nB\n")
    assert [(c.start, c.end, c.text) for c in cues] == [(0.5, 1.0, "A"), (60.0, 62.0, "B")]
    assert filename_words("IMG_1234 CityTraffic.mov") == "city traffic"


# -- the library itself ----------------------------------------------------------------------
def _shot(i: int, text: str) -> Shot:
    return Shot(id=-1, source=f"/footage/{i}.mp4", start=0.0, end=2.0 + i, fps=25.0, width=320,
                height=240, thumbnail="", lab=(50.0, 0.0, 0.0), brightness=0.5, sharpness=0.5,
                motion=0.1, camera="static", text=text, tags=[f"t{i}"])


TEXTS = ["a dog running along the beach", "heavy traffic in a city at night",
         "snow falling on a pine forest", "a chef chopping vegetables in a kitchen"]


@pytest.fixture(scope="module")
def small_library(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lib") / "lib"
    lib = Library.create(folder)
    ids = lib.add_shots([_shot(i, t) for i, t in enumerate(TEXTS)], lib.embedder.embed(TEXTS))
    lib.close()
    return folder, ids


def test_search_ranks_the_matching_caption_first(small_library):
    folder, ids = small_library
    with Library.open(folder) as lib:
        for query, want in [("puppy playing by the sea", 0), ("cars on busy streets after dark", 1),
                            ("winter woods", 2), ("someone cooking food", 3)]:
            hits = lib.search(query, k=4)
            assert hits[0][0].id == ids[want], (query, [(s.text, sc) for s, sc in hits])
            assert hits[0][1] > hits[1][1]


def test_library_reads_back_what_was_written(small_library):
    folder, ids = small_library
    with Library.open(folder) as lib:
        assert [s.text for s in lib.shots()] == TEXTS
        s = lib.get(ids[2])
        assert (s.source, s.end, s.tags, s.lab, s.duration) == ("/footage/2.mp4", 4.0, ["t2"], (50.0, 0.0, 0.0), 4.0)
        e = lib.embeddings([ids[3], ids[0]])
        assert e.shape == (2, 384) and e.dtype == np.float32
        assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
        assert np.allclose(e[1], lib.embeddings()[0])
        scores, got = lib.search_vectors(e, k=6)
        assert scores.shape == (2, 6) and list(got[:, 0]) == [ids[3], ids[0]]
        assert (got[:, 4:] == -1).all()          # only 4 shots
        assert lib.keyword_match(["dogs", "the Kitchen"]) == {ids[0], ids[3]}
        assert lib.keyword_match(["of the"]) == set()
        with pytest.raises(MontageError, match="no shot"):
            lib.get(99999)


def test_stale_or_missing_faiss_file_is_rebuilt(small_library, tmp_path):
    import shutil
    folder, ids = small_library
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "shots.faiss").unlink()
    with Library.open(copy) as lib:
        assert lib.search("winter woods", 1)[0][0].id == ids[2]
    assert (copy / "shots.faiss").is_file()       # written back on close
    (copy / "shots.faiss").write_bytes(b"garbage")
    with Library.open(copy) as lib:
        assert lib.index().ntotal == 4


def test_missing_and_corrupt_library_are_one_line_errors(tmp_path):
    with pytest.raises(MontageError, match="does not exist"):
        Library.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MontageError, match="not a jvideo library"):
        Library.open(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "library.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(MontageError, match="corrupt"):
        Library.open(tmp_path / "bad")


def test_lock_names_the_holder(tmp_path):
    a = Library.create(tmp_path / "lib")
    b = Library.open(tmp_path / "lib")
    with a.lock():
        with pytest.raises(MontageError, match=f"in use by pid {os.getpid()}"):
            with b.lock():
                pass
    with b.lock():                                # released
        pass
    a.close()
    b.close()


def test_embedder_disk_cache(tmp_path):
    from montage.embedding import TextEmbedder
    e1 = TextEmbedder(cache_dir=tmp_path)
    v1 = e1.embed(["a red kite", "a red kite", "blue sea"])
    assert v1.shape == (3, 384) and np.allclose(v1[0], v1[1]) and e1.model_calls == 2
    e2 = TextEmbedder(cache_dir=tmp_path)
    v2 = e2.embed(["blue sea"])
    assert e2.model_calls == 0 and np.allclose(v2[0], v1[2])


def test_tokens_stem_both_sides():
    assert tokens("The dogs were Running!") == tokens("dog runn")
