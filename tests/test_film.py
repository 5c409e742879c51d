"""`jvideo film`: script parsing, and whole films from a real toy-world library (real index,
MiniLM, faiss, ffmpeg, espeak-ng) with the shipped checkpoint generating what the library lacks."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import cli
from film.errors import FilmError
from film.pipeline import FilmRequest, shot_seed
from film.script import parse_script, read_script

REFS = Path(__file__).resolve().parents[1] / "examples" / "film" / "refs"
SIZE = ["--size", "160x90"]
FAST = ["--steps", "4"]     # a few DDIM steps: these tests check the pipeline, not the picture
# The shared film is also looked at (a recurring character's look in every shot), so it is
# sampled as `jvideo film` samples by default: at 4 steps tiny-v19's DiT (tiny-v21's too) draws
# the night room's wall as a coarse texture that the detector reads into Mira's outline (README,
# Generation, item 34).
PICTURE: list[str] = []

SCRIPT = """Title: Two Friends

[[cast Mira: {refs}/mira.png]]
[[cast Tomo: {refs}/tomo.png]]

EXT. SANDY BEACH - DAY

Mira jumps on the sand.

TOMO
(laughing)
You fly like a <b>bird</b> & more!

/* a note to self that is never filmed */

INT. ROOM - NIGHT

Tomo moves to the left inside the room.

MIRA
Good night, Tomo.
"""


# -- parsing ---------------------------------------------------------------------------------------
def test_fountain_elements():
    s = parse_script(SCRIPT.format(refs=REFS), base=Path("."))
    assert s.format == "fountain" and s.title == "Two Friends"
    kinds = [(u.kind, u.text) for u in s.units]
    assert kinds[0] == ("title", "Two Friends")
    assert ("title", "EXT. SANDY BEACH - DAY") in kinds and ("title", "INT. ROOM - NIGHT") in kinds
    dialogue = [u for u in s.units if u.kind == "dialogue"]
    assert [(u.speaker, u.text) for u in dialogue] == [("Tomo", "You fly like a <b>bird</b> & more!"),
                                                       ("Mira", "Good night, Tomo.")]
    assert dialogue[1].characters == ["Mira"]          # the speaker is on screen, not who is named
    action = [u for u in s.units if u.kind == "action"]
    assert [u.text for u in action] == ["Mira jumps on the sand.", "Tomo moves to the left inside the room."]
    assert action[0].characters == ["Mira"]
    assert s.scenes[1].place == "sandy beach" and s.scenes[1].time == "by day"
    assert s.scenes[2].place == "room" and s.scenes[2].time == "at night"
    assert "never filmed" not in " ".join(u.text for u in s.units)
    assert s.member("mira").reference == REFS / "mira.png"


def test_plain_and_markdown_scripts():
    s = parse_script("# Morning\n\nMira hops on the grass. Then a red square rises.\n\n## Night\n\nA star spins.",
                     fountain=None)
    assert s.format == "text"
    assert [(u.kind, u.text) for u in s.units] == [
        ("title", "Morning"), ("action", "Mira hops on the grass."), ("action", "Then a red square rises."),
        ("title", "Night"), ("action", "A star spins.")]


def test_transitions_centred_text_and_described_cast():
    s = parse_script("[[cast Bo: a big blue circle with white stripes]]\n\nEXT. SEA - DAY\n\nBo rests.\n\n"
                     "DISSOLVE TO:\n\nEXT. GRASS - DAY\n\nBo jumps.\n\n> THE END <\n")
    assert s.member("bo").description == "a big blue circle with white stripes"
    units = [u for u in s.units if u.kind == "action"]
    assert units[0].transition == "cut" and units[1].transition == "cut"
    heading = [u for u in s.units if u.text == "EXT. GRASS - DAY"][0]
    assert heading.transition == "dissolve"
    assert s.units[-1].kind == "title" and s.units[-1].text == "THE END"


@pytest.mark.parametrize("text, message", [
    ("INT. ROOM - DAY\n\n/* never closed\n\nMira jumps.", "boneyard '/*' on line 3 is never closed"),
    ("INT. ROOM - DAY\n\nMira [[jumps.\n", "note '[[' on line 3 is never closed"),
    ("[[cast : mira.png]]\n\nINT. ROOM - DAY\n\nMira jumps.", "malformed cast note on line 1"),
    ("[[cast Mira: a.png]]\n[[cast mira: b.png]]\n\nINT. ROOM - DAY\n\nMira jumps.", "declared twice"),
    ("INT. ROOM - DAY\n\nEXT. SEA - DAY\n", "no action or dialogue"),
    ("", "no action or dialogue"),
])
def test_malformed_scripts_are_one_line(text, message):
    with pytest.raises(FilmError, match=message.replace("[", r"\[").replace("*", r"\*")):
        parse_script(text, fountain=True)


def test_warnings_for_empty_scene_and_undeclared_speaker():
    s = parse_script("EXT. SEA - DAY\n\nINT. ROOM - NIGHT\n\nZARA\nHello.\n")
    assert any("EXT. SEA - DAY" in w and "empty" in w for w in s.warnings)
    assert any("Zara speaks" in w and "not in the cast" in w for w in s.warnings)


def test_unreadable_script_files(tmp_path):
    binary = tmp_path / "x.fountain"
    binary.write_bytes(b"\x00\x01\x02 INT. ROOM")
    with pytest.raises(FilmError, match="binary"):
        read_script(binary)
    latin = tmp_path / "y.txt"
    latin.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(FilmError, match="not UTF-8"):
        read_script(latin)
    with pytest.raises(FilmError, match="does not exist"):
        read_script(tmp_path / "missing.fountain")


def test_seeds_depend_on_the_shot_not_its_position():
    assert shot_seed(0, "Mira jumps", "Mira") == shot_seed(0, "Mira jumps", "Mira")
    assert shot_seed(0, "Mira jumps", "Mira") != shot_seed(1, "Mira jumps", "Mira")
    assert shot_seed(0, "Mira jumps", "Mira") != shot_seed(0, "Mira jumps", None)


def test_request_checks():
    with pytest.raises(FilmError, match="nothing to make the film from"):
        FilmRequest(script=Path("s"), out=Path("o.mp4"), library=None, generate="never")
    with pytest.raises(FilmError, match="unknown --generate"):
        FilmRequest(script=Path("s"), out=Path("o.mp4"), generate="sometimes")
    with pytest.raises(FilmError, match="--steps"):
        FilmRequest(script=Path("s"), out=Path("o.mp4"), generate="never", library=Path("l"), steps=0)
    with pytest.raises(FilmError, match="--cfg"):
        FilmRequest(script=Path("s"), out=Path("o.mp4"), cfg=-1.0)


# -- whole films -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_library(tmp_path_factory):
    """Six toy-world clips (Mira and Tomo among them) indexed by the real indexer."""
    from jvideo.toyworld.library import write_library
    from montage.indexer import index_folder
    root = tmp_path_factory.mktemp("toylib")
    write_library(root / "footage", clips=6, seed=1, size=64, fps=12, seconds=(1.0, 1.5), progress=False)
    index_folder(root / "footage", root / "lib", progress=False, warn=lambda m: None)
    return root / "lib"


def run_cli(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def ffprobe(path: Path) -> dict:
    proc = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def narrated_film(toy_library, tmp_path_factory):
    """One narrated film with the library and the generator; several tests read it."""
    root = tmp_path_factory.mktemp("film")
    script = root / "two.fountain"
    script.write_text(SCRIPT.format(refs=REFS))
    out = root / "film.mp4"
    code = cli.main(["film", str(script), "--library", str(toy_library), "--out", str(out), "--narrate",
                     "--shot-cache", str(root / "shots"), *SIZE, *PICTURE])
    assert code == 0
    return out


def test_film_streams_duration_and_subtitles(narrated_film):
    info = ffprobe(narrated_film)
    kinds = sorted(s["codec_type"] for s in info["streams"])
    assert kinds == ["audio", "subtitle", "video"]        # the dialogue as a soft track too
    plan = json.loads(narrated_film.with_suffix(".plan.json").read_text())
    assert abs(float(info["format"]["duration"]) - plan["film"]["duration"]) < 0.2
    srt = narrated_film.with_suffix(".srt").read_text()
    assert "Tomo: You fly like a <b>bird</b> & more!" in srt and "Mira: Good night, Tomo." in srt
    assert "Mira jumps on the sand" not in srt        # action is picture, not subtitles
    track = subprocess.run(["ffmpeg", "-v", "error", "-i", str(narrated_film), "-map", "0:s", "-f", "srt", "-"],
                           capture_output=True, text=True, check=True).stdout
    assert "Mira: Good night, Tomo." in track


def test_film_provenance(narrated_film):
    data = json.loads(narrated_film.with_suffix(".plan.json").read_text())["film"]
    units = data["units"]
    assert {u["source"] for u in units} <= {"retrieved", "generated", "title", "missing"}
    generated = [u for u in units if u["source"] == "generated"]
    assert generated, "the tiny library lacks these shots: some must be generated"
    for u in generated:
        assert isinstance(u["seed"], int) and u["shot_key"] and u["reason"]
        if u["characters"]:
            assert u["identity"] == u["characters"][0]
    assert data["generation"]["available"] and data["generation"]["checkpoint_digest"]
    assert data["generation"]["composite"] is True   # held cut-outs laid over the decoded frames
    assert data["counts"]["title"] == 3


def test_report_escapes_script_text(narrated_film):
    page = narrated_film.with_suffix(".report.html").read_text()
    assert "&lt;b&gt;bird&lt;/b&gt; &amp; more!" in page and "<b>bird</b>" not in page
    assert page.count("<tr>") == 1 + len(json.loads(narrated_film.with_suffix(".plan.json").read_text())["film"]["units"])
    assert narrated_film.with_suffix(".storyboard.png").stat().st_size > 1000


def test_generated_shots_are_cached_and_reused(narrated_film, toy_library, capsys):
    root = narrated_film.parent
    code, out, _ = run_cli(["film", str(root / "two.fountain"), "--library", str(toy_library),
                            "--out", str(root / "again.mp4"), "--shot-cache", str(root / "shots"),
                            "--narrate", *SIZE, *PICTURE], capsys)
    assert code == 0
    first = json.loads(narrated_film.with_suffix(".plan.json").read_text())["film"]["units"]
    again = json.loads((root / "again.plan.json").read_text())["film"]["units"]
    n = sum(u["source"] == "generated" for u in first)
    assert f"{n} generated ({n} from the shot cache)" in out
    assert [u["shot_key"] for u in first] == [u["shot_key"] for u in again]
    # The shot cache is a real library: the generated shots are searchable, marked as generated.
    from montage.library import Library
    with Library.open(root / "shots") as lib:
        shots = lib.shots()
    assert len(shots) == n and all(s.generated for s in shots)


def test_recurring_character_keeps_its_look(narrated_film):
    """The detector reads Mira's look (shape, colours, pattern) back from every generated shot
    of her, as the reference shows it: her reference held on each shot's planned track and its
    cut-out laid over the decoded frames (README, Generation, item 32)."""
    from jvideo.toyworld.detector import detect
    from jvideo.toyworld.world import character
    units = json.loads(narrated_film.with_suffix(".plan.json").read_text())["film"]["units"]
    shots = [u for u in units if u["source"] == "generated" and u["identity"] == "Mira"]
    assert shots
    cache = narrated_film.parent / "shots" / "videos"
    verdicts = [detect(np.load(cache / f"{u['shot_key']}.npy")).matches(character("Mira").look) for u in shots]
    assert all(verdicts)


def test_film_without_a_library_generates_everything(tmp_path, capsys):
    script = tmp_path / "s.md"
    script.write_text(f"[[cast Mira: {REFS}/mira.png]]\n\n# Alone\n\nMira rests on the grass.\n")
    code, out, err = run_cli(["film", str(script), "--out", str(tmp_path / "f.mp4"),
                              "--shot-cache", str(tmp_path / "shots"), *SIZE, *FAST], capsys)
    assert code == 0, err
    assert "0 retrieved, 1 generated" in out
    assert ffprobe(tmp_path / "f.mp4")["streams"]


def test_film_without_a_generator_uses_the_library_and_says_so(toy_library, tmp_path, capsys):
    script = tmp_path / "s.txt"
    script.write_text("Mira jumps on the sand. Tomo moves to the left.\n")
    code, out, err = run_cli(["film", str(script), "--library", str(toy_library), "--out", str(tmp_path / "f.mp4"),
                              "--checkpoint", str(tmp_path / "no-such-checkpoint"), *SIZE], capsys)
    assert code == 0, err
    assert "0 generated" in out and "lacked footage" in out
    assert "warning: no generator" in err and "checkpoint folder not found" in err
    units = json.loads((tmp_path / "f.plan.json").read_text())["film"]["units"]
    assert all("not generated" in u["reason"] for u in units if u["source"] == "retrieved"
               and "threshold" in u["reason"])


@pytest.mark.parametrize("case", ["missing_reference", "bad_reference", "not_mp4", "no_source"])
def test_bad_film_input_is_one_line(case, toy_library, tmp_path, capsys):
    script = tmp_path / "s.fountain"
    ref = tmp_path / "broken.png"
    ref.write_bytes(b"not a png at all")
    body = {"missing_reference": f"[[cast Mira: {tmp_path}/none.png]]\n\nMira jumps.\n",
            "bad_reference": f"[[cast Mira: {ref}]]\n\nMira jumps.\n"}.get(case, "Mira jumps.\n")
    script.write_text(body)
    argv = ["film", str(script), "--out", str(tmp_path / ("f.mov" if case == "not_mp4" else "f.mp4")), *SIZE, *FAST]
    argv += ["--generate", "never"] if case == "no_source" else ["--library", str(toy_library), "--generate", "always"]
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    expected = {"missing_reference": "reference image of Mira not found",
                "bad_reference": "reference image of Mira does not load",
                "not_mp4": "must end in .mp4", "no_source": "nothing to make the film from"}[case]
    assert expected in err


@pytest.mark.skipif(__import__("shutil").which("mpirun") is None, reason="needs Open MPI's mpirun")
def test_film_under_mpirun_equals_one_process(tmp_path):
    """Two ranks share the shots to generate and rank 0 assembles: the same shots, byte for
    byte, and the same film as one process."""
    import os
    import sys
    script = tmp_path / "s.fountain"
    script.write_text(f"[[cast Mira: {REFS}/mira.png]]\n\nEXT. SEA - DAY\n\nMira jumps over the waves.\n\n"
                      "MIRA\nHello there.\n\nA red square rises.\n")
    common = ["film", str(script), "--generate", "always", *SIZE, *FAST]
    jvideo = [sys.executable, "-m", "cli"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", *jvideo, *common,
                    "--out", str(tmp_path / "two.mp4"), "--shot-cache", str(tmp_path / "two")],
                   check=True, capture_output=True, env=env, timeout=600)
    subprocess.run([*jvideo, *common, "--out", str(tmp_path / "one.mp4"), "--shot-cache", str(tmp_path / "one")],
                   check=True, capture_output=True, env=env, timeout=600)
    shots = sorted(p.name for p in (tmp_path / "one" / "videos").glob("*.npy"))
    assert len(shots) == 3 and shots == sorted(p.name for p in (tmp_path / "two" / "videos").glob("*.npy"))
    for name in shots:
        assert (tmp_path / "one" / "videos" / name).read_bytes() == (tmp_path / "two" / "videos" / name).read_bytes()
    assert (tmp_path / "one.mp4").read_bytes() == (tmp_path / "two.mp4").read_bytes()


@pytest.mark.skipif(__import__("shutil").which("mpirun") is None, reason="needs Open MPI's mpirun")
def test_film_error_under_mpirun_ends_every_rank(tmp_path):
    """Rank 0 fails on the script; the helper ranks are released instead of waiting for jobs."""
    import os
    import sys
    (tmp_path / "empty.txt").write_text("\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", sys.executable, "-m",
                           "cli", "film", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "f.mp4"),
                           "--generate", "always"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    assert "the script has no action or dialogue to film" in proc.stdout + proc.stderr


def test_described_character_gets_one_generated_reference(tmp_path, capsys):
    """A character declared by description: one reference is generated, cached and used for
    every shot of that character."""
    script = tmp_path / "s.fountain"
    script.write_text("[[cast Bo: a big blue circle with white stripes]]\n\nEXT. SEA - DAY\n\n"
                      "Bo rests on the sand.\n\nBo jumps over the waves.\n")
    argv = ["film", str(script), "--out", str(tmp_path / "f.mp4"), "--shot-cache", str(tmp_path / "shots"),
            *SIZE, *FAST]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    refs = list((tmp_path / "shots" / "references").glob("*.png"))
    assert len(refs) == 1
    units = json.loads((tmp_path / "f.plan.json").read_text())["film"]["units"]
    assert [u["identity"] for u in units if u["source"] == "generated"] == ["Bo", "Bo"]
    code, out, err = run_cli(argv, capsys)           # the second film reuses reference and shots
    assert code == 0 and "2 generated (2 from the shot cache)" in out
    assert list((tmp_path / "shots" / "references").glob("*.png")) == refs


def test_film_request_refuses_a_hold_outside_zero_to_one(tmp_path):
    for hold in (-0.1, 1.5):
        with pytest.raises(FilmError, match="--hold must be between 0 and 1"):
            FilmRequest(script=tmp_path / "s.txt", out=tmp_path / "f.mp4", hold=hold)
    assert FilmRequest(script=tmp_path / "s.txt", out=tmp_path / "f.mp4").hold == 1.0   # held by default
