"""`jvideo montage` end to end on a small labelled library (real MiniLM, faiss library, ffmpeg,
espeak-ng): the right shots, in order, no repeats, timing that follows the voice, incremental
re-render after an edit, and bad input as one line with a non-zero exit."""
import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import cli
from montage.errors import MontageError
from montage.library import Library, Shot
from montage.montage_cli import MontageRequest, make_montage
from montage.narration import Voice, speak_units
from montage.render import probe
from montage.subtitles import read_srt

FPS = 24.0
SIZE = ["--size", "160x90"]
# (colour, caption of the clip, a paraphrase used in the story)
LABELLED = [
    ("red", "a red sports car drives along a coastal highway",
     "A scarlet convertible speeds down the road by the sea."),
    ("orange", "waves crash against rocky cliffs at sunset",
     "The ocean pounds the cliffs as the sun goes down."),
    ("yellow", "a chef chops vegetables in a busy kitchen",
     "In the restaurant kitchen, a cook slices carrots and onions."),
    ("green", "children play football in a park", "Kids are kicking a ball around on the grass."),
    ("white", "snow falls on a quiet mountain village",
     "The little alpine town is covered by falling snow."),
    ("brown", "a cat sleeps on a sunny windowsill", "A kitten naps in the warm light by the window."),
    ("skyblue", "an airplane takes off from a runway", "A jet lifts off the airport runway."),
    ("purple", "people walk through a crowded city market at night",
     "Crowds stroll past the stalls of an evening bazaar downtown."),
    ("gray", "a scientist looks through a microscope in a laboratory",
     "A researcher examines samples under a microscope."),
    ("olive", "horses gallop across a green meadow", "Wild horses run through the field."),
]
DISTRACTORS = ["an empty office with rows of desks", "a close-up of a spinning bicycle wheel"]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A library of 12 one-shot clips (10 labelled + 2 distractors) built through the library API
    with real MiniLM embeddings of their captions."""
    root = tmp_path_factory.mktemp("labelled")
    footage = root / "footage"
    footage.mkdir()
    captions = [c for _, c, _ in LABELLED] + DISTRACTORS
    colours = [c for c, _, _ in LABELLED] + ["black", "pink"]
    shots = []
    rng = np.random.default_rng(0)
    for i, (colour, caption) in enumerate(zip(colours, captions)):
        path = footage / f"clip {i:02d}.mp4"
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=s=160x90:r=24:d=4,drawbox=c={colour}@0.7:t=fill", "-c:v", "libx264",
                        "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
        shots.append(Shot(id=0, source=str(path), start=0.0, end=4.0, fps=24.0, width=160, height=90,
                          thumbnail="", lab=tuple(rng.uniform([30, -20, -20], [70, 20, 20])),
                          brightness=0.5, sharpness=0.6, motion=float(rng.uniform(0.05, 0.4)),
                          camera="static", text=caption, tags=[]))
    lib = Library.create(root / "lib")
    lib.add_shots(shots, lib.embedder.embed(captions))
    lib.close()
    return root / "lib"


def story(texts, title="A day in many places"):
    return f"# {title}\n\n" + " ".join(texts[:4]) + "\n\n" + "\n".join(f"- {t}" for t in texts[4:]) + "\n"


def tree_digest(folder: Path) -> str:
    h = hashlib.sha1()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_montage_end_to_end_with_narration(library, tmp_path, capsys):
    texts = [p for _, _, p in LABELLED]
    (tmp_path / "my story: 'draft' ü.md").write_text(story(texts), encoding="utf-8")
    out = tmp_path / "out dir, 'q'" / "film: ü.mp4"
    out.parent.mkdir()
    before = tree_digest(library)
    rc = cli.main(["montage", str(tmp_path / "my story: 'draft' ü.md"), "--library", str(library),
                   "--out", str(out), "--narrate", "--subtitles", "--pace", "slow",
                   "--plan-json", str(tmp_path / "plan.json"), *SIZE])
    assert rc == 0, capsys.readouterr().err
    assert tree_digest(library) == before               # the library is only read
    plan = json.loads((tmp_path / "plan.json").read_text())
    units = [u for u in plan["units"] if u["kind"] == "text"]
    assert plan["units"][0]["kind"] == "title"
    assert [u["text"] for u in units] == texts
    # Quality: the labelled shot for >= 80% of units; no shot twice; order follows the text.
    captions = {str(Path(library).parent / "footage" / f"clip {i:02d}.mp4"): i for i in range(12)}
    chosen = [captions[u["shots"][0]["source"]] for u in units]
    assert sum(c == i for i, c in enumerate(chosen)) >= 0.8 * len(units), chosen
    ids = [s["shot_id"] for u in plan["units"] for s in u["shots"] if s["kind"] == "shot"]
    assert len(ids) == len(set(ids))
    starts = [u["start"] for u in plan["units"]]
    assert starts == sorted(starts)
    for u in plan["units"]:
        assert u["shots"][0]["start"] == u["start"] and u["shots"][-1]["end"] == u["end"]
        for s in u["shots"]:
            assert {"source", "in", "out", "score", "costs"} <= s.keys()
    # Timing follows the voice: each unit starts where the spoken text before it ended (+pause),
    # within one frame.
    voice = Voice()
    spoken = speak_units(texts, out.with_name(out.stem + ".montage-cache") / "voice", voice)
    t = plan["config"]["title_seconds"]
    for u, (_, secs) in zip(units, spoken):
        assert abs(u["start"] - t) <= 1 / FPS
        t += secs + voice.pause
    assert abs(plan["duration"] - t) <= 1 / FPS
    # The film: H.264 + AAC, the plan's length, narration audible.
    info = probe(out)
    kinds = {s["codec_type"]: s for s in info["streams"]}
    assert kinds["video"]["codec_name"] == "h264" and kinds["audio"]["codec_name"] == "aac"
    assert abs(float(info["format"]["duration"]) - plan["duration"]) <= 1 / FPS + 0.03
    assert int(kinds["video"]["nb_frames"]) == round(plan["duration"] * FPS)
    # Loudness normalised (EBU R128, target -16 LUFS).
    meter = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", "file:" + str(out), "-map", "0:a",
                            "-af", "ebur128", "-f", "null", "-"], capture_output=True, text=True).stderr
    lufs = float(meter.rsplit("I:", 1)[1].split("LUFS")[0])
    assert abs(lufs - (-16.0)) <= 1.5, lufs
    cues = read_srt(out.with_suffix(".srt"))
    assert abs(cues[0].start - units[0]["start"]) < 1e-3
    assert " ".join(c.text.replace("\n", " ") for c in cues) == " ".join(texts)
    for ext in (".otio", ".edl", ".storyboard.png"):
        assert out.with_suffix(ext).is_file() if ext != ".storyboard.png" else \
            Path(f"{out.with_suffix('')}.storyboard.png").is_file()
    otio = json.loads(out.with_suffix(".otio").read_text())
    assert otio["OTIO_SCHEMA"] == "Timeline.1" and len(otio["tracks"]["children"]) == 2
    assert not [p for p in out.parent.iterdir() if ".tmp" in p.name]


def test_edit_one_sentence_rerenders_only_its_segment(library, tmp_path):
    texts = [p for _, _, p in LABELLED[:6]]
    src = tmp_path / "story.md"
    src.write_text(story(texts), encoding="utf-8")
    req = MontageRequest(text_file=src, library=library, out=tmp_path / "film.mp4", pace="slow",
                         size=(160, 90), subtitles=True)
    first = make_montage(req)
    assert first.rendered == len(first.plan.slots()) and first.replanned_from == 0
    texts[3] = "Boys and girls chase a football across the park lawn."
    src.write_text(story(texts), encoding="utf-8")
    second = make_montage(req)
    assert second.replanned_from == 4                  # the title + units 1-3 are kept
    assert second.rendered == 1 and second.reused == len(second.plan.slots()) - 1
    edited = second.plan.units[4]
    assert Path(edited.shots[0].source).name == "clip 03.mp4"
    third = make_montage(req)                          # nothing changed: nothing to do
    assert third.rendered == 0 and third.replanned_from == len(third.plan.units)


def test_unit_without_candidates_is_said_in_the_plan(library, tmp_path):
    src = tmp_path / "s.txt"
    src.write_text("Quantum chromodynamics lattice gauge renormalisation. "
                   "A scarlet convertible speeds down the road by the sea.", encoding="utf-8")
    res = make_montage(MontageRequest(text_file=src, library=library, out=tmp_path / "f.mp4",
                                      size=(160, 90), fallback="title"))
    u0, u1 = res.plan.units
    assert u0.shots[0].kind == "title" and "no good match" in u0.note
    assert u1.shots[0].kind == "shot" and u1.note == ""


def run_cli(argv, capsys):
    rc = cli.main(argv)
    err = capsys.readouterr().err
    return rc, err


@pytest.mark.parametrize("case", ["empty", "missing_text", "missing_lib", "corrupt_lib", "no_dir",
                                  "out_is_dir", "binary_text"])
def test_bad_input_is_one_line(case, library, tmp_path, capsys):
    text = tmp_path / "t.md"
    text.write_text("A kitten naps in the warm light by the window.", encoding="utf-8")
    lib, out = str(library), tmp_path / "film.mp4"
    if case == "empty":
        text.write_text("# Just a heading\n\n   \n", encoding="utf-8")
    elif case == "missing_text":
        text = tmp_path / "nope.md"
    elif case == "missing_lib":
        lib = str(tmp_path / "no lib")
    elif case == "corrupt_lib":
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "library.sqlite").write_bytes(b"this is not sqlite" * 100)
        lib = str(tmp_path / "bad")
    elif case == "no_dir":
        out = tmp_path / "missing folder" / "film.mp4"
    elif case == "out_is_dir":
        out = tmp_path
    elif case == "binary_text":
        text.write_bytes(b"\xff\xfe\x00bad")
    before = tree_digest(library)
    rc, err = run_cli(["montage", str(text), "--library", lib, "--out", str(out), *SIZE], capsys)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("jvideo montage: error:") and "Traceback" not in err
    assert not (tmp_path / "film.mp4").exists()
    assert tree_digest(library) == before


def test_bad_options_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["montage", "x.md", "--library", "l", "--out", "o.mp4", "--pace", "warp"])
    assert e.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    from montage.render import RenderConfig
    with pytest.raises(MontageError, match="bad film size"):
        RenderConfig(width=161, height=90)
    with pytest.raises(SystemExit) as e:
        cli.main(["montage", str(tmp_path / "x.md"), "--library", "l", "--out", "o.mp4", "--size", "12x"])
    assert e.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_empty_library_gives_title_cards_and_says_so(tmp_path):
    Library.create(tmp_path / "empty lib").close()
    src = tmp_path / "s.txt"
    src.write_text("Nothing to show here. Still nothing.", encoding="utf-8")
    res = make_montage(MontageRequest(text_file=src, library=tmp_path / "empty lib",
                                      out=tmp_path / "f.mp4", size=(160, 90)))
    assert all(s.kind == "title" for s in res.plan.slots())
    assert all("no footage" in u.note for u in res.plan.units)
    assert probe(tmp_path / "f.mp4")["format"]["duration"]


def test_index_then_montage_through_the_cli(tmp_path, capsys):
    """Part A's indexer builds the library from clips with sidecar captions; the montage uses it."""
    footage = tmp_path / "footage"
    footage.mkdir()
    for name, colour, caption in (("boat", "navy", "a fisherman casts his net from a small boat"),
                                  ("snow", "white", "snow falls on a quiet mountain village"),
                                  ("cat", "brown", "a cat sleeps on a sunny windowsill")):
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=s=160x90:r=24:d=3,drawbox=c={colour}@0.7:t=fill", "-c:v", "libx264",
                        "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(footage / f"{name}.mp4")],
                       check=True)
        (footage / f"{name}.txt").write_text(caption, encoding="utf-8")
    assert cli.main(["index", str(footage), "--library", str(tmp_path / "lib"), "--quiet"]) == 0
    (tmp_path / "t.txt").write_text("A kitten dozes in the sun by the window. "
                                    "From his little boat, the fisherman throws out his net.",
                                    encoding="utf-8")
    out = tmp_path / "f.mp4"
    assert cli.main(["montage", str(tmp_path / "t.txt"), "--library", str(tmp_path / "lib"),
                     "--out", str(out), *SIZE]) == 0
    plan = json.loads(out.with_suffix(".plan.json").read_text())
    assert [Path(u["shots"][0]["source"]).name for u in plan["units"]] == ["cat.mp4", "boat.mp4"]
    assert "film:" in capsys.readouterr().out


def test_plan_only_writes_no_film(library, tmp_path, capsys):
    (tmp_path / "t.txt").write_text("Wild horses run through the field.", encoding="utf-8")
    out = tmp_path / "f.mp4"
    rc = cli.main(["montage", str(tmp_path / "t.txt"), "--library", str(library), "--out", str(out),
                   "--plan-only", *SIZE])
    assert rc == 0 and "(plan only)" in capsys.readouterr().out
    assert not out.exists() and out.with_suffix(".plan.json").is_file() and out.with_suffix(".edl").is_file()
