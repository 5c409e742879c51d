"""ffmpeg assembly: exact durations, streams, render cache, odd file names, literal captions,
crossfades, narration track, SRT, timelines and storyboard (tiny lavfi clips, 160x90)."""
import json
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from montage.errors import MontageError
from montage.narration import Voice, build_track, speak_units
from montage.plan import PlanConfig, ShotTable, plan
from montage.render import RenderConfig, probe, render_film
from montage.storyboard import write_storyboard
from montage.subtitles import cues_from_plan, read_srt, split_caption, timestamp, write_srt
from montage.text import Unit
from montage.timeline import to_edl, to_otio
from montage.bench import SynthShot

W, H, FPS = 160, 90, 24.0
COLOURS = ["red", "lime", "blue", "yellow"]


FakeShot = SynthShot  # the benchmark's minimal shot record serves the tests too


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Four 3-second clips of solid colours, with names ffmpeg could misread."""
    folder = tmp_path_factory.mktemp("src") / "odd dir: 'q'"
    folder.mkdir()
    paths = []
    for i, c in enumerate(COLOURS):
        p = folder / f"-clip {i} [x];'{c}': ünï.mp4"
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"color=c={c}:s=200x120:r=25:d=3", "-c:v", "libx264", "-preset", "ultrafast",
                        "-pix_fmt", "yuv420p", "file:" + str(p)], check=True)
        paths.append(p)
    return paths


def make_plan(clips, texts, durations, cfg=None):
    shots = [FakeShot(i + 1, str(p), 0.0, 3.0, (50.0, 0.0, 0.0), 0.5, 0.6, 0.1, "static", f"clip {i}")
             for i, p in enumerate(clips)]
    v = np.eye(len(shots), 8, dtype=np.float32)
    table = ShotTable.from_shots(shots, v)
    units = [Unit(text=t, duration=d) for t, d in zip(texts, durations)]
    uv = np.eye(len(shots), 8, dtype=np.float32)[: len(units)]
    return plan(units, table, uv, cfg or PlanConfig(pace="slow", fps=FPS))


def frame_colour(path, t):
    out = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-ss", str(t), "-i",
                          "file:" + str(path), "-frames:v", "1", "-vf", "scale=8:8", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "pipe:1"], capture_output=True, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, 3)[:40].mean(0)  # top rows: no caption


def test_film_streams_duration_and_order(clips, tmp_path):
    p = make_plan(clips, ["red text", "green text", "blue text"], [1.5, 1.25, 2.0])
    out = tmp_path / "film.mp4"
    res = render_film(p, out, RenderConfig(width=W, height=H, fps=FPS), tmp_path / "cache")
    info = probe(out)
    streams = {s["codec_type"]: s for s in info["streams"]}
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    assert (streams["video"]["width"], streams["video"]["height"]) == (W, H)
    assert int(streams["video"]["nb_frames"]) == round(4.75 * FPS)
    assert abs(float(info["format"]["duration"]) - 4.75) <= 1 / FPS + 0.03
    assert res.segments == 3 and len(res.rendered) == 3
    # Shots appear in the text's order: red, then green, then blue.
    for t, ch in ((0.7, 0), (2.1, 1), (3.8, 2)):
        rgb = frame_colour(out, t)
        assert rgb.argmax() == ch, (t, rgb)
    assert not list(tmp_path.glob(".*tmp*"))


def test_render_cache_rerenders_only_the_edited_segment(clips, tmp_path):
    cfg = RenderConfig(width=W, height=H, fps=FPS, subtitles=True)
    p1 = make_plan(clips, ["one", "two", "three"], [1.0, 1.0, 1.0])
    r1 = render_film(p1, tmp_path / "a.mp4", cfg, tmp_path / "cache")
    assert len(r1.rendered) == 3
    p2 = make_plan(clips, ["one", "two, edited", "three"], [1.0, 1.0, 1.0])
    r2 = render_film(p2, tmp_path / "a.mp4", cfg, tmp_path / "cache")
    assert len(r2.rendered) == 1 and r2.reused == 2   # only the caption of unit 2 changed
    r3 = render_film(p2, tmp_path / "a.mp4", cfg, tmp_path / "cache")
    assert r3.rendered == [] and r3.reused == 3


def test_filter_syntax_in_captions_is_literal(clips, tmp_path):
    nasty = "it's [x];drawtext=text='pwn':fontsize=99 {\\fs80} <b>bold</b> %{pts} \\N a:b"
    p = make_plan(clips, [nasty], [1.5])
    out = tmp_path / "caption's: [odd] film.mp4"
    render_film(p, out, RenderConfig(width=W, height=H, fps=FPS, subtitles=True), tmp_path / "c d")
    assert out.is_file() and probe(out)["format"]["duration"]
    write_srt(cues_from_plan(p), tmp_path / "x.srt")
    cues = read_srt(tmp_path / "x.srt")
    assert " ".join(c.text.replace("\n", " ") for c in cues) == nasty


def test_crossfade_keeps_the_timeline(clips, tmp_path):
    p = make_plan(clips, ["a", "b", "c"], [1.5, 1.5, 1.5])
    out = tmp_path / "x.mp4"
    render_film(p, out, RenderConfig(width=W, height=H, fps=FPS, transition="crossfade", crossfade=0.5),
                tmp_path / "cache")
    v = [s for s in probe(out)["streams"] if s["codec_type"] == "video"][0]
    assert abs(int(v["nb_frames"]) - round(4.5 * FPS)) <= 1
    mid = frame_colour(out, 1.75)  # half-way through the red -> green fade
    assert mid[0] > 60 and mid[1] > 60


def test_pad_and_title_card(clips, tmp_path):
    shots = [FakeShot(1, str(clips[0]), 0.0, 3.0, (50.0, 0, 0), 0.5, 0.6, 0.1, "static", "x")]
    table = ShotTable.from_shots(shots, np.eye(1, 8, dtype=np.float32))
    units = [Unit(text="Part one", kind="title"), Unit(text="x", duration=1.0)]
    p = plan(units, table, np.eye(2, 8, dtype=np.float32), PlanConfig(fps=FPS, title_seconds=1.0))
    out = tmp_path / "t.mp4"
    render_film(p, out, RenderConfig(width=90, height=160, fps=FPS, fit="pad"), tmp_path / "cache")
    v = [s for s in probe(out)["streams"] if s["codec_type"] == "video"][0]
    assert (v["width"], v["height"]) == (90, 160) and int(v["nb_frames"]) == 48
    assert frame_colour(out, 0.5).max() < 40       # dark title card at the top
    write_storyboard(p, tmp_path / "sb.png", aspect=(90, 160))
    from PIL import Image
    assert Image.open(tmp_path / "sb.png").size[0] > 100


def test_narration_track_follows_units(tmp_path):
    voice = Voice()
    clips = speak_units(["Hello there.", "-rf is spoken, not parsed; quotes ' and \" too."],
                        tmp_path / "voice", voice)
    assert all(s > 0.5 for _, s in clips)
    starts = [0.0, clips[0][1] + voice.pause]
    total = starts[1] + clips[1][1] + voice.pause
    track = build_track([(p, s) for (p, _), s in zip(clips, starts)], total, tmp_path / "n.wav")
    with wave.open(str(track)) as w:
        sr = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    assert abs(len(data) / sr - total) < 1e-3
    # Silence in the pause between the units, speech right after the second start.
    gap = data[int((starts[1] - voice.pause / 2) * sr): int((starts[1] - 0.05) * sr)]
    assert np.abs(gap).max() < 300
    assert np.abs(data[int(starts[1] * sr): int((starts[1] + 0.6) * sr)]).max() > 1000
    assert probe(track)["streams"][0]["codec_type"] == "audio"


def test_srt_otio_edl(clips):
    p = make_plan(clips, ["The first sentence is rather long and has to be split over more than "
                          "one caption page.", "Second."], [4.0, 1.0])
    cues = cues_from_plan(p)
    assert cues[0].start == 0.0 and cues[-1].end == pytest.approx(p.duration)
    assert all(len(line) <= 42 for c in cues for line in c.text.split("\n"))
    assert timestamp(3661.5) == "01:01:01,500"
    assert split_caption("x " * 60)[0].count("\n") == 1
    otio = to_otio(p, "film")
    clips_ = otio["tracks"]["children"][0]["children"]
    assert [c["OTIO_SCHEMA"] for c in clips_] == ["Clip.2"] * len(p.slots())
    total = sum(c["source_range"]["duration"]["value"] for c in clips_)
    assert total == round(p.duration * FPS)
    json.dumps(otio)
    edl = to_edl(p, "film")
    events = [ln for ln in edl.splitlines() if ln[:3].isdigit()]
    assert len(events) == len(p.slots()) and events[0].split()[-1] == events[1].split()[-2]
    dissolves = [ln for ln in to_edl(p, "film", crossfade=0.5).splitlines() if " D    012 " in ln]
    assert len(dissolves) == len(p.slots()) - 1


def test_missing_source_and_unwritable_output(clips, tmp_path):
    p = make_plan(clips, ["a"], [1.0])
    p.units[0].shots[0].source = str(tmp_path / "gone.mp4")
    with pytest.raises(MontageError, match="missing"):
        render_film(p, tmp_path / "x.mp4", RenderConfig(width=W, height=H, fps=FPS), tmp_path / "c")
    p = make_plan(clips, ["a"], [1.0])
    with pytest.raises(MontageError):
        render_film(p, tmp_path / "no such dir" / "x.mp4", RenderConfig(width=W, height=H, fps=FPS),
                    tmp_path / "c")
    assert not (tmp_path / "x.mp4").exists()


def test_otio_opens_in_opentimelineio(clips, tmp_path):
    otio = pytest.importorskip("opentimelineio")  # a test dependency (pyproject [test])
    from montage.timeline import write_otio
    p = make_plan(clips, ["one", "two", "three"], [1.5, 1.0, 2.0])
    write_otio(p, tmp_path / "cut.otio", crossfade=0.5)
    t = otio.adapters.read_from_file(str(tmp_path / "cut.otio"))
    track = t.video_tracks()[0]
    items = [c for c in track if isinstance(c, otio.schema.Clip)]
    assert len(items) == 3
    assert t.duration().value == round(p.duration * FPS)
    assert items[1].media_reference.target_url == Path(p.slots()[1].source).resolve().as_uri()
    assert items[0].source_range.start_time.value == round(p.slots()[0].in_point * FPS)


def test_prune_cache_keeps_current_and_recent(tmp_path):
    import os
    import time
    from montage.render import prune_cache
    for i, key in enumerate(["aaa", "bbb", "ccc"]):
        p = tmp_path / f"seg-{key}.mp4"
        p.write_bytes(b"x" * 100)
        os.utime(p, (time.time() - 100 + i, time.time() - 100 + i))
    (tmp_path / "plan.json").write_text("{}")
    assert prune_cache(tmp_path, keep={"aaa"}, max_bytes=100) == 1     # bbb (oldest unused) goes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json", "seg-aaa.mp4", "seg-ccc.mp4"]


def test_short_shot_holds_its_last_frame(tmp_path):
    src = tmp_path / "two shots.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=red:s=160x90:r=24:d=2", "-f", "lavfi", "-i", "color=c=blue:s=160x90:r=24:d=2",
                    "-filter_complex", "[0][1]concat=n=2:v=1[v]", "-map", "[v]", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(src)], check=True)
    shots = [FakeShot(1, str(src), 0.0, 2.0, (50.0, 0, 0), 0.5, 0.6, 0.1, "static", "red shot")]
    table = ShotTable.from_shots(shots, np.eye(1, 8, dtype=np.float32))
    p = plan([Unit(text="x", duration=3.0)], table, np.eye(1, 8, dtype=np.float32), PlanConfig(fps=FPS))
    assert p.slots()[0].hold == pytest.approx(1.0)
    out = tmp_path / "held.mp4"
    render_film(p, out, RenderConfig(width=W, height=H, fps=FPS), tmp_path / "cache")
    assert frame_colour(out, 2.6).argmax() == 0          # still red: the blue shot never shows
