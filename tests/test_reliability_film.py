"""Bad-input suite for `jvideo film` (issue #9): the script parser under generated Fountain-ish
text and bytes, the command's one-line refusals, and a film whose script is HTML and ffmpeg
filter syntax (the HTML report escapes it, the render draws it as text).

Counts go into the same tally as tests/test_reliability.py when both run in one session.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

film_script = pytest.importorskip("film.script")
from film.errors import FilmError  # noqa: E402

from _badinputs import build_media, lavfi_video  # noqa: E402
from test_reliability import SETTINGS, assert_clean, case  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

FRAGMENTS = ["INT. HOUSE - DAY", "EXT. BEACH - NIGHT", ".FORCED", "INT/EXT", "/*", "*/", "[[", "]]",
             "[[cast ANNA: anna.png]]", "[[cast : x]]", "[[cast BOB: a tall man]]", "ANNA", "BOB (V.O.)", "@mcgregor",
             "(quietly)", "> THE END <", ">", "CUT TO:", "=== ", "Title: x", "Author:", "~la la", "!ACTION",
             "**bold** _u_", "<script>alert(1)</script>", "'; drawtext=text=x:fontfile=/etc/passwd", "%{pts}",
             "../../etc/passwd", "Waves roll onto the beach.", "Anna walks in.", "\t", " ", "\\", "^", "#", "# Act",
             "= synopsis", "映像", "مرحبا", "🎬", "\u202e", "\r"]
FOUNTAINISH = st.lists(st.sampled_from(FRAGMENTS), min_size=0, max_size=30).map(
    lambda parts: "".join(p + ("\n" if i % 3 else "\n\n") for i, p in enumerate(parts)))


def _parse_ok_or_one_line(text: str) -> None:
    try:
        film_script.parse_script(text, base=Path("/nonexistent"))
    except FilmError as err:
        assert "\n" not in str(err).strip(), str(err)


@settings(max_examples=120, **SETTINGS)
@given(text=st.one_of(FOUNTAINISH, st.text(max_size=300)))
def test_script_parser_fuzz(text):
    """Generated Fountain-ish and random text: a Script or one FilmError line, nothing else."""
    from test_reliability import COUNTS
    COUNTS["film:parser"] += 1
    _parse_ok_or_one_line(text)


@pytest.fixture(scope="module")
def film_library(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("film_footage")
    for i, (src, text) in enumerate([("testsrc2", "waves roll onto the sandy beach"),
                                     ("smptebars", "a woman walks into a quiet house"),
                                     ("rgbtestsrc", "the night sky over the city")]):
        lavfi_video(d / f"clip{i}.mp4", size="160x120", seconds=4, source=src)
        (d / f"clip{i}.txt").write_text(text)
    lib = tmp_path_factory.mktemp("film_lib") / "lib"
    out = case("setup", ["index", d, "--library", lib, "-q"], "ok")
    assert not out.problems, out.problems
    return lib


BAD_SCRIPTS = {
    "empty.fountain": b"", "blank.txt": b"  \n\n\t\n", "binary.fountain": bytes(range(256)),
    "latin1.txt": "Caf\u00e9 sur la plage.".encode("latin-1"), "boneyard.fountain": b"INT. HOUSE - DAY\n\n/* never closed\n",
    "note.fountain": b"INT. HOUSE - DAY\n\n[[ never closed\n", "castnote.fountain": b"[[cast : nobody]]\n\nINT. A - DAY\n\nAnna walks.\n",
    "twice.fountain": b"[[cast ANNA: a.png]]\n[[cast ANNA: b.png]]\n\nINT. A - DAY\n\nAnna walks.\n",
    "headings_only.fountain": b"INT. HOUSE - DAY\n\nEXT. BEACH - NIGHT\n", "title_only.fountain": b"Title: Nothing\nAuthor: Nobody\n",
    "too_big.txt": b"Waves roll. " * 200_000,
}


def test_film_refuses_bad_scripts_and_options(tmp_path, film_library):
    out = tmp_path / "film.mp4"
    outputs = (out, out.with_suffix(".srt"), tmp_path / "film.report.html")
    for name, data in BAD_SCRIPTS.items():
        (tmp_path / name).write_bytes(data)
        case("film", ["film", tmp_path / name, "--library", film_library, "--out", out, "--generate", "never"],
             "error", tmp_path, outputs=outputs, timeout=120)
    os.mkfifo(tmp_path / "fifo.fountain")
    good = tmp_path / "good.txt"
    good.write_text("Waves roll onto the beach.\n")
    base = ["film", good, "--library", film_library, "--out", out, "--generate", "never"]
    for argv in (["film", tmp_path / "fifo.fountain", "--library", film_library, "--out", out],
                 ["film", tmp_path, "--library", film_library, "--out", out],
                 ["film", tmp_path / "missing.fountain", "--library", film_library, "--out", out],
                 ["film", good, "--out", out, "--generate", "never"],
                 ["film", good, "--library", tmp_path, "--out", out, "--generate", "never"],
                 [*base[:4], tmp_path / "film.avi"], [*base[:4], tmp_path / "missing" / "f.mp4"], [*base[:4], tmp_path],
                 [*base, "--threshold", "2"], [*base, "--threshold=-1"], [*base, "--threshold", "nan"],
                 [*base, "--size", "0x0"], [*base, "--size", "100000x100000"], [*base, "--workers", "0"],
                 [*base, "--generate", "sometimes"], [*base, "--steps", "0"], [*base, "--cfg", "-1"]):
        case("film", argv, "error", tmp_path, outputs=outputs, timeout=120)
    assert_clean("film")


def test_film_report_escapes_script_text(tmp_path, film_library):
    """A script of HTML and filter syntax: the film renders, the report shows it escaped."""
    script = tmp_path / "evil.fountain"
    script.write_text("Title: <script>alert('title')</script>\n\n"
                      "INT. <img src=x onerror=alert(1)> HOUSE - NIGHT\n\n"
                      "Waves roll onto the sandy beach <script>alert(2)</script>.\n\n"
                      "ANNA\n'; drawtext=text=x:fontfile=/etc/passwd %{pts} </textarea>\n\n"
                      "A woman walks into a quiet house ../../../../tmp/escape.\n", encoding="utf-8")
    out = tmp_path / "film.mp4"
    before = set(tmp_path.parent.iterdir())
    res = case("film", ["film", script, "--library", film_library, "--out", out, "--generate", "never",
                        "--size", "128x72", "--workers", "1"], "ok", tmp_path, timeout=300)
    assert not res.problems, res.problems
    assert set(tmp_path.parent.iterdir()) == before
    reports = list(tmp_path.glob("*.html"))
    assert reports, list(tmp_path.iterdir())
    html = reports[0].read_text(encoding="utf-8")
    for raw in ("<script>alert", "<img src=x", "</textarea>"):
        assert raw not in html, raw
    assert "&lt;script&gt;" in html
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format", str(out)],
                                      capture_output=True, text=True, check=True).stdout)
    assert float(probe["format"]["duration"]) > 0
    assert_clean("film")
