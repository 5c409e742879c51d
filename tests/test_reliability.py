"""Bad-input suite (issue #9): generated bad inputs over every command, run in this process.

Every case asserts: no traceback, no hang, exit code non-zero with exactly one
`jvideo CMD: error: ...` line where the input is bad (success where it is odd but valid), and
no partial output or temporary file left behind. The last test prints the counts
(`pytest tests/test_reliability.py -s`); the README's Reliability section quotes them.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import string
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from hypothesis import HealthCheck, given, settings

import cli
from hypothesis import strategies as st

from _badinputs import ODD_NAMES, build_media, check, run_cli, temp_leftovers

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

COUNTS: Counter = Counter()          # group -> cases run
FINDINGS: dict[str, list[str]] = {}  # group -> problems (every test asserts its own are empty)
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def case(group: str, argv: list, expect: str, workdir: Path | None = None, outputs: tuple = (),
         timeout: float = 60.0):
    """Run one CLI case, record it, and return its outcome."""
    out = check(run_cli(argv, timeout=timeout), expect, workdir, tuple(Path(o) for o in outputs))
    COUNTS[group] += 1
    if out.problems:
        FINDINGS.setdefault(group, []).append(f"{out.argv}: {'; '.join(out.problems)}")
    return out


def assert_clean(group: str) -> None:
    problems = FINDINGS.get(group, [])
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:20])


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    return build_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="module")
def library(tmp_path_factory, media) -> Path:
    """A small library of the good clips, with captions (what montage and search read)."""
    d = tmp_path_factory.mktemp("footage")
    captions = {"ok_good": "a colourful test pattern with a moving clock",
                "ok_vfr": "a test card that slows down", "ok_black": "a dark night sky",
                "ok_mpeg4_avi": "waves on a sandy beach at noon"}
    for key, text in captions.items():
        src = media[key]
        shutil.copy(src, d / src.name)
        (d / src.name).with_suffix(".txt").write_text(text)
    lib = tmp_path_factory.mktemp("lib") / "lib"
    out = case("setup", ["index", d, "--library", lib, "-q"], "ok")
    assert not out.problems, out.problems
    return lib


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("script") / "story.md"
    p.write_text("A colourful test pattern. Waves on the beach. The night sky.\n")
    return p


# -- wrong flags and out-of-range numbers, for every command -------------------------------------
NOT_NUMBERS = st.sampled_from(["", "abc", "1e", "--", "0x10", "1,5", "½", "nan", "inf", "-inf", "NaN",
                               "1e999", "1" * 5000])
NEG_INTS = st.integers(max_value=0).map(str)
BAD_FLAGS = st.text(alphabet=string.ascii_letters + "-_", min_size=1, max_size=12).map(lambda s: "--zz" + s)


def _bad_option_cases(ctx: dict) -> list[tuple[str, list[str], list, st.SearchStrategy]]:
    """(group, argv before the option, option, strategy of bad values) for each command."""
    folder, lib, text, out = ctx["folder"], ctx["lib"], ctx["text"], ctx["out"]
    ck = ctx["checkpoint"]
    nan = st.sampled_from(["nan", "inf", "-inf", "NaN", "1e999"])
    # allow_subnormal=False: once a test has imported Jittor, its compiled code has set
    # flush-to-zero in this process and hypothesis refuses to draw subnormal floats.
    return [
        ("index", ["index", folder, "--library", lib, "-q"], "--fps",
         st.one_of(st.floats(max_value=0, allow_subnormal=False).map(repr), st.floats(min_value=60.5, max_value=1e30, allow_subnormal=False).map(repr), nan, NOT_NUMBERS)),
        ("index", ["index", folder, "--library", lib, "-q"], "--width",
         st.one_of(st.integers(max_value=31).map(str), NOT_NUMBERS)),
        ("search", ["search", "clock", "--library", lib], "-k", st.one_of(NEG_INTS, NOT_NUMBERS)),
        ("montage", ["montage", text, "--library", lib, "--out", out], "--fps",
         st.one_of(st.floats(max_value=0, allow_subnormal=False).map(repr), st.floats(min_value=241, max_value=1e300, allow_subnormal=False).map(repr), nan, NOT_NUMBERS)),
        ("montage", ["montage", text, "--library", lib, "--out", out], "--size",
         st.one_of(st.sampled_from(["0x0", "-2x4", "7x9", "16x15", "100000x100000", "axb", "1x2x3", "x", "854",
                                    "854*480", "854x", "99999999999x2", "1e3x2"]),
                   st.tuples(st.integers(-10, 15), st.integers(-10, 4000)).map(lambda t: f"{t[0]}x{t[1]}"))),
        ("montage", ["montage", text, "--library", lib, "--out", out], "--workers",
         st.one_of(NEG_INTS, st.integers(min_value=65, max_value=10**9).map(str), NOT_NUMBERS)),
        ("montage", ["montage", text, "--library", lib, "--out", out], "--aspect",
         st.sampled_from(["4:3", "16/9", "", "0:0", "-1:1", "16:9 ", "wide"])),
        ("toyworld", ["toyworld", "library", ctx["tw_out"], "--clips", "1"], "--size",
         st.one_of(st.integers(max_value=31).map(str), st.integers(1025, 10**9).map(str),
                   st.integers(33, 1023).filter(lambda v: v % 2).map(str), NOT_NUMBERS)),
        ("toyworld", ["toyworld", "library", ctx["tw_out"], "--size", "32"], "--clips",
         st.one_of(NEG_INTS, NOT_NUMBERS)),
        ("toyworld", ["toyworld", "library", ctx["tw_out"], "--clips", "1", "--size", "32"], "--fps",
         st.one_of(NEG_INTS, st.integers(61, 10**6).map(str), NOT_NUMBERS)),
        ("toyworld", ["toyworld", "sample", ctx["tw_png"]], "--n", st.one_of(NEG_INTS, NOT_NUMBERS)),
        ("toyworld", ["toyworld", "detector-accuracy"], "--n", st.one_of(NEG_INTS, NOT_NUMBERS)),
        ("generate", ["generate", "a red ball", "--out", ctx["gen_out"]], "--frames",
         st.one_of(st.integers(max_value=-1).map(str), st.integers(17, 10**9).map(str), NOT_NUMBERS)),
        ("generate", ["generate", "a red ball", "--out", ctx["gen_out"]], "--steps",
         st.one_of(NEG_INTS, st.integers(1001, 10**12).map(str), NOT_NUMBERS)),
        ("generate", ["generate", "a red ball", "--out", ctx["gen_out"]], "--cfg",
         st.one_of(st.floats(max_value=-1e-6, allow_subnormal=False).map(repr), st.floats(min_value=50.001, max_value=1e300, allow_subnormal=False).map(repr), nan)),
        ("generate", ["generate", "a red ball", "--identity", ctx["ref_png"], "--out", ctx["gen_out"]], "--ref-cfg",
         st.one_of(st.floats(max_value=-1e-6, allow_subnormal=False).map(repr), st.floats(min_value=50.001, max_value=1e300, allow_subnormal=False).map(repr), nan)),
        ("generate", ["generate", "a red ball", "--out", ctx["gen_out"]], "--look-scale",
         st.one_of(st.floats(max_value=-1e-6, allow_subnormal=False).map(repr), st.floats(min_value=100.001, max_value=1e300, allow_subnormal=False).map(repr), nan)),
        ("generate", ["generate", "a red ball", "--out", ctx["gen_out"]], "--checkpoint",
         st.sampled_from([str(ctx["tmp"] / "nope"), str(text), str(ctx["tmp"]), "", "-"])),
        ("train", ["train", "--out", ctx["train_out"]], "--preset",
         st.text(min_size=0, max_size=10).filter(lambda s: s not in ("tiny", "small", "test") and not s.startswith("-"))),
        ("train", ["train", "--out", ctx["train_out"], "--preset", "test"], "--steps", st.one_of(NEG_INTS, NOT_NUMBERS)),
        ("eval", ["eval", "generation", "--checkpoint", ck], "--n", st.one_of(NEG_INTS, NOT_NUMBERS)),
        ("eval", ["eval", "generation", "--checkpoint", ck], "--identity-shots",
         st.one_of(NEG_INTS, st.integers(1001, 10**9).map(str), NOT_NUMBERS)),
        ("eval", ["eval", "generation", "--checkpoint", ck], "--steps", st.one_of(NEG_INTS, st.integers(1001, 10**9).map(str))),
        ("convert", ["convert", ctx["tmp"] / "no-such.pt", "--out", ctx["tmp"] / "conv"], "--num-heads",
         st.one_of(NEG_INTS, NOT_NUMBERS)),
    ]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, library, script, media) -> dict:
    tmp = tmp_path_factory.mktemp("args")
    folder = tmp / "footage"
    folder.mkdir()
    shutil.copy(media["ok_good"], folder / "good.mp4")
    from jvideo.generation.presets import CHECKPOINT_DIR
    ref_png = tmp / "ref.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(ref_png)
    return {"tmp": tmp, "folder": folder, "lib": library, "text": script, "out": tmp / "film.mp4",
            "tw_out": tmp / "toy", "tw_png": tmp / "sheet.png", "gen_out": tmp / "gen.mp4",
            "train_out": tmp / "train", "checkpoint": CHECKPOINT_DIR / "tiny", "ref_png": ref_png}


def test_bad_option_values(ctx):
    """Each numeric/choice option of each command with generated out-of-range or non-numeric values."""
    for group, prefix, option, values in _bad_option_cases(ctx):
        @settings(max_examples=8, **SETTINGS)
        @given(value=values)
        def one(value):
            argv = [*prefix, f"{option}={value}"]   # '=' form: values starting with '-' stay values
            case("options:" + group, argv, "error", ctx["tmp"],
                 outputs=(ctx["out"], ctx["gen_out"], ctx["tw_png"], ctx["train_out"], ctx["tw_out"]))
        one()
    problems = [p for g, v in FINDINGS.items() if g.startswith("options:") for p in v]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:30])


COMMANDS = ["doctor", "index", "search", "montage", "toyworld", "convert", "train", "generate", "eval", "bench",
            "film", "studio"]


def test_unknown_flags_and_missing_arguments(ctx):
    """Unknown flags on every command, and every command with its required arguments missing."""
    @settings(max_examples=20, **SETTINGS)
    @given(cmd=st.sampled_from(COMMANDS), flag=BAD_FLAGS)
    def unknown(cmd, flag):
        case("flags", [cmd, flag], "error")
    unknown()
    for argv in (["index"], ["index", ctx["folder"]], ["search"], ["search", "x"], ["montage", ctx["text"]],
                 ["montage", ctx["text"], "--library", ctx["lib"]], ["convert"], ["convert", "x"],
                 ["generate"], ["generate", "x"], ["train"], ["eval"], ["bench"], ["bench", "nothing"],
                 ["toyworld", "library", ctx["tw_out"]], ["toyworld", "nothing"], ["nothing"],
                 ["montage", ctx["text"], "--library", ctx["lib"], "--out", ctx["out"], "--pace", "warp"],
                 ["index", ctx["folder"], "--library", ctx["lib"], "--fps"],
                 ["toyworld", "library", ctx["tw_out"], "--clips", "1", "--seconds", "5", "1"],
                 ["toyworld", "library", ctx["tw_out"], "--clips", "1", "--seconds", "-1", "2"],
                 ["toyworld", "detector-accuracy", "--n", "2", "--noise", "1", "2", "--blur", "1"],
                 *[["bench", target, "--zzbogus"] for target in sorted(cli._available_bench_targets())]):
        case("flags", argv, "error", ctx["tmp"], outputs=(ctx["out"], ctx["tw_out"]))
    assert_clean("flags")


# -- footage: broken, odd and oddly named files --------------------------------------------------
def _library_ok(lib: Path) -> None:
    """The library opens and its tables agree with the faiss index."""
    from montage.library import Library
    with Library.open(lib) as handle:
        assert handle.index().ntotal == len(handle)
        con = sqlite3.connect(lib / "library.sqlite")
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        con.close()


def test_index_broken_and_odd_videos(tmp_path, media):
    """Each file alone (bad: one error line; odd but valid: indexed) and inside a folder next to
    a good clip (the folder indexes; the bad file is listed as skipped)."""
    for key, path in media.items():
        work = tmp_path / key
        work.mkdir()
        bad = key.startswith("bad_")
        expect = "error" if bad else ("ok" if key.startswith("ok_") else "either")
        lib1 = work / "lib1"
        out = case("index:file", ["index", path, "--library", lib1, "-q"], expect, work)
        if bad and out.code == 2:
            assert "skipping" not in out.stdout
        if (lib1 / "library.sqlite").exists():
            _library_ok(lib1)
        folder = work / "footage"
        folder.mkdir()
        shutil.copy(path, folder / path.name)
        shutil.copy(media["ok_good"], folder / "zz_good.mp4")
        lib2 = work / "lib2"
        out = case("index:folder", ["index", folder, "--library", lib2, "-q"], "ok", work)
        if bad:
            assert "skipped" in out.stdout, (key, out.stdout)
        _library_ok(lib2)
    assert_clean("index:file")
    assert_clean("index:folder")


def test_index_odd_file_names(tmp_path, media):
    for i, name in enumerate(ODD_NAMES):
        work = tmp_path / f"n{i}"
        (work / "footage").mkdir(parents=True)
        target = work / "footage" / name
        shutil.copy(media["ok_good"], target)
        hidden = name.startswith(".")                 # dot-files are skipped, as dot-folders are
        out = case("index:names", ["index", work / "footage", "--library", work / "lib", "-q"],
                   "error" if hidden else "ok", work)
        if not out.problems and not hidden:
            from montage.library import Library
            with Library.open(work / "lib") as lib:
                assert {s.source for s in lib.shots()} == {str(target)}
        # The odd name passed directly (a leading dash needs './' or '--', as for any tool).
        arg = str(target) if not name.startswith("-") else f"./{target.relative_to(Path.cwd())}" \
            if target.is_relative_to(Path.cwd()) else str(target)
        case("index:names", ["index", arg, "--library", work / "lib2", "-q"], "ok", work)
    assert_clean("index:names")


SIDECARS: dict[str, bytes] = {
    "json_deep": b"[" * 100000, "json_binary": bytes(range(256)), "json_list": b"[]", "json_string": b'"x"',
    "json_wrong_types": b'{"caption": 5, "tags": {"a": 1}}', "json_huge_caption": b'{"caption": "' + b"w " * 500000 + b'"}',
    "txt_binary": bytes(range(256)) * 4, "txt_1mb": b"waves " * 200000, "txt_latin1": "caf\u00e9 plage".encode("latin-1"),
    "srt_malformed": b"1\n00:00:99,000 --> banana\nhello\n\n-5\n\n", "srt_binary": os.urandom(2000),
    "csv_malformed": b'path,caption,tags\n"unterminated,\x00,\n,,,,,\n', "csv_html": b"path,caption\nclip.mp4,<script>x</script>\n",
}


def test_index_bad_sidecars(tmp_path, media):
    """Caption sidecars that are broken, binary, huge or nested: the video still indexes."""
    for name, data in SIDECARS.items():
        work = tmp_path / name
        (work / "footage").mkdir(parents=True)
        shutil.copy(media["ok_good"], work / "footage" / "clip.mp4")
        kind = name.split("_", 1)[0]
        target = work / "footage" / ("library.csv" if kind == "csv" else f"clip.{kind}")
        target.write_bytes(data)
        case("index:sidecars", ["index", work / "footage", "--library", work / "lib", "-q"], "ok", work, timeout=120)
    assert_clean("index:sidecars")


def test_index_bad_folders_and_libraries(tmp_path, media, library):
    work = tmp_path
    (work / "empty").mkdir()
    loop = work / "loop"
    loop.mkdir()
    os.symlink(loop, loop / "self")
    os.symlink(work / "a-link", work / "b-link")
    os.symlink(work / "b-link", work / "a-link")         # a loop of two dangling links
    (work / "file-as-lib").write_text("x")
    (work / "footage").mkdir()
    shutil.copy(media["ok_good"], work / "footage" / "good.mp4")
    os.symlink(work / "footage" / "good.mp4", work / "footage" / "dup.mp4")
    corrupt = work / "corrupt-lib"
    corrupt.mkdir()
    (corrupt / "library.sqlite").write_bytes(b"SQLite format 3\0" + os.urandom(3000))
    garbage = work / "garbage-lib"
    garbage.mkdir()
    (garbage / "library.sqlite").write_bytes(os.urandom(5000))
    for argv, expect in (
            (["index", work / "missing", "--library", work / "l1"], "error"),
            (["index", work / "empty", "--library", work / "l2"], "error"),
            (["index", loop, "--library", work / "l3"], "error"),
            (["index", work / "a-link", "--library", work / "l4"], "error"),
            (["index", work / "footage", "--library", work / "file-as-lib"], "error"),
            (["index", work / "footage", "--library", corrupt], "error"),
            (["index", work / "footage", "--library", garbage], "error"),
            (["index", work / "footage", "--library", work / "footage"], "either"),
            (["index", work / "footage", "--library", work / "footage" / "good.mp4"], "error"),
            (["search", "clock", "--library", work / "missing"], "error"),
            (["search", "clock", "--library", work / "empty"], "error"),
            (["search", "clock", "--library", corrupt], "error"),
            (["search", "clock", "--library", garbage], "error"),
            (["search", "clock", "--library", work / "file-as-lib"], "error"),
            (["search", "", "--library", library], "error"),
            (["search", "   \n\t", "--library", library], "error"),
            (["montage", work / "missing.md", "--library", library, "--out", work / "f.mp4"], "error"),
            (["montage", loop, "--library", library, "--out", work / "f.mp4"], "error"),
            (["montage", work / "a-link", "--library", library, "--out", work / "f.mp4"], "error"),
    ):
        case("index:places", argv, expect, None, outputs=(work / "f.mp4",))
    assert_clean("index:places")


@settings(max_examples=30, **SETTINGS)
@given(query=st.text(min_size=0, max_size=300))
def test_search_any_text(library, query):
    """Any text (control characters, other scripts, lone surrogates excluded by st.text) is a
    query or one error line."""
    case("search", ["search", query, "--library", library, "-k", "3"], "either")
    assert_clean("search")


def test_search_huge_k(library):
    """-k beyond the library's size lists every shot, at once (faiss sized its result to k)."""
    for k in ("1000000000", "100000000000000000000", str(2**63)):
        out = case("search", ["search", "clock", "--library", library, "-k", k, "--json"], "ok", timeout=30)
        if not out.problems:
            assert len(out.stdout.splitlines()) == 4          # the fixture library's 4 clips
    assert_clean("search")


# -- scripts: empty, binary, huge, other languages, HTML, ffmpeg filter syntax --------------------
FIXED_SCRIPTS: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "error"),
    "whitespace": (b"  \n\n\t \r\n", "error"),
    "only_headings": (b"# Title\n\n## Another\n", "error"),
    "only_punctuation": (b"... !!! ??? ;;; ---\n", "error"),
    "binary": (bytes(range(256)) * 8, "error"),
    "nul_bytes": (b"A dog\0 runs\0 on the beach.\0", "either"),
    "latin1": ("Caf\u00e9 au lait sur la plage.".encode("latin-1"), "error"),
    "utf16_bom": ("A dog runs on the beach.".encode("utf-16"), "either"),
    "utf8_bom": ("\ufeffA dog runs on the beach.".encode("utf-8"), "ok"),
    "chinese": ("海浪拍打着沙滩。夜空中有星星。".encode(), "ok"),
    "arabic_rtl": ("الأمواج على الشاطئ. \u202eالسماء ليلا.".encode(), "ok"),
    "emoji_zwj": ("🌊🏖️ waves 👨‍👩‍👧 family.".encode(), "ok"),
    "combining": ("Ẇ̵̨a̸v̷e̴s̶ ̸o̵n̷ ̶t̸h̵e̸ ̷b̴e̵a̶c̷h̸.".encode(), "ok"),
    "html": (b"<script>alert(1)</script><b>Waves</b> on the <i>beach</i>. <img src=x onerror=alert(2)>", "ok"),
    "ffmpeg_filters": (b"'; drawtext=text=x:fontfile=/etc/passwd [in] ; movie=/etc/passwd %{pts} \\: ,split", "ok"),
    "path_traversal": (b"# ../../../../tmp/evil\n\nWrite ../../etc/passwd now. ..\\..\\win.ini", "ok"),
    "format_strings": (b"%s %n %x {0} {__class__} $(rm -rf /) `id` ${HOME}", "ok"),
    "one_long_line": (b"waves " * 20000, "either"),    # 834 clauses: more than the library's shots
    "long_word": (b"a" * 100000, "ok"),
    "many_newlines": (b"\n" * 50000 + b"Waves on the beach.", "ok"),
    "control_chars": (bytes(range(1, 32)) + b"Waves on the beach." + b"\x7f\x1b[31m red", "either"),
    "markdown_junk": (b"* * *\n- [ ](x)\n> > >\n```\ncode\n```\n| a | b |\n|---|---|\n[]()", "either"),
    "lone_surrogate_escape": (b"Waves \xed\xa0\x80 on the beach.", "error"),
}


def _plan_only(text_file: Path, library: Path, out: Path, expect: str, group: str = "montage:scripts"):
    outputs = (out, out.with_suffix(".srt"), out.with_suffix(".plan.json"), out.with_suffix(".otio"))
    return case(group, ["montage", text_file, "--library", library, "--out", out, "--plan-only"], expect,
                out.parent, outputs=outputs, timeout=120)


def test_montage_scripts(tmp_path, library):
    for name, (data, expect) in FIXED_SCRIPTS.items():
        work = tmp_path / name
        work.mkdir()
        (work / "script.md").write_bytes(data)
        out = _plan_only(work / "script.md", library, work / "film.mp4", expect)
        if out.code == 0:
            plan = json.loads((work / "film.plan.json").read_text())
            assert plan["units"], name
            # Nothing was written outside the work folder (names come from --out, not the text).
            assert {p.name for p in work.iterdir()} <= {"script.md", "film.srt", "film.plan.json", "film.otio",
                                                         "film.edl", "film.storyboard.png", "film.montage-cache"}
    (tmp_path / "big").mkdir()
    sentence = "Waves roll onto the sandy beach under a bright sky. "
    (tmp_path / "big" / "script.md").write_text(sentence * (1_000_000 // len(sentence)))  # 1 MB
    _plan_only(tmp_path / "big" / "script.md", library, tmp_path / "big" / "film.mp4", "error")
    os.mkfifo(tmp_path / "fifo.md")                       # reading it would block forever
    _plan_only(tmp_path / "fifo.md", library, tmp_path / "fifo-film.mp4", "error")
    _plan_only(tmp_path, library, tmp_path / "dir-film.mp4", "error")     # a folder as the script
    assert_clean("montage:scripts")


@settings(max_examples=25, **SETTINGS)
@given(data=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(lambda s: s.encode("utf-8", "surrogatepass"))))
def test_montage_generated_scripts(tmp_path_factory, library, data):
    work = tmp_path_factory.mktemp("gen")
    (work / "s.txt").write_bytes(data)
    _plan_only(work / "s.txt", library, work / "film.mp4", "either", "montage:generated")
    assert_clean("montage:generated")


def test_montage_output_places(tmp_path, library, script):
    work = tmp_path
    (work / "adir.mp4").mkdir()
    (work / "file").write_text("x")
    for argv in (["--out", work / "missing" / "f.mp4"], ["--out", work / "adir.mp4"],
                 ["--out", work / "file" / "f.mp4"], ["--out", work / "f.mp4", "--plan-json", work / "missing" / "p.json"],
                 ["--out", work / "f.mp4", "--plan-json", work / "adir.mp4"]):
        case("montage:outputs", ["montage", script, "--library", library, "--plan-only", *argv], "error",
             work, outputs=(work / "f.mp4", work / "f.srt"))
    for name in ("with space.mp4", "-dash.mp4", "co:lon.mp4", "ünï 映像.mp4", "q'uote\".mp4", "../up.mp4"):
        sub = work / "outs" / "inner"
        sub.mkdir(parents=True, exist_ok=True)
        target = sub / name
        out = case("montage:outputs", ["montage", script, "--library", library, "--plan-only", f"--out={target}"],
                   "ok", work)
        if not out.problems:
            assert target.resolve().with_suffix(".plan.json").is_file()
    assert_clean("montage:outputs")


INJECTION = ("'; drawtext=text=x:fontfile=/etc/passwd ; movie=/etc/passwd [x]; %{pts} %{localtime} "
             "\\:\\' ,split[a][b];[a]nullsink")


def test_render_text_never_reaches_a_filter(tmp_path, library):
    """Captions are drawn as images: filter syntax, expansions and '../' in the text render as
    plain text (the SRT keeps it verbatim), and nothing is written outside the output folder."""
    work = tmp_path / "work"
    work.mkdir()
    text = work / "story.md"
    text.write_text(f"# ../../../escape {INJECTION}\n\nA colourful test pattern {INJECTION}.\n\n"
                    "Waves ../../../../tmp/x on the beach.\n", encoding="utf-8")
    out = work / "film.mp4"
    before = set(tmp_path.iterdir())
    res = case("render", ["montage", text, "--library", library, "--out", out, "--subtitles",
                          "--size", "128x72", "--fps", "12", "--workers", "1"], "ok", work, timeout=240)
    assert not res.problems, res.problems
    assert set(tmp_path.iterdir()) == before                   # only inside work/
    srt = (work / "film.srt").read_text(encoding="utf-8")
    assert "%{pts}" in srt and "fontfile=/etc/passwd" in srt
    plan = json.loads((work / "film.plan.json").read_text())
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                                       "-show_streams", str(out)], capture_output=True, text=True, check=True).stdout)
    assert abs(float(probe["format"]["duration"]) - plan["duration"]) < 0.2
    assert {s["codec_type"] for s in probe["streams"]} == {"video", "audio"}
    assert not temp_leftovers(work)
    assert_clean("render")


# -- untrusted files: checkpoints, arrays, images ------------------------------------------------
class Evil:
    """Unpickling this runs code: writes a marker file. Nothing of ours may ever run it."""
    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_pickle(path: Path, marker: Path, wrap=lambda x: x) -> Path:
    import pickle
    Evil.marker = str(marker)
    with open(path, "wb") as f:
        pickle.dump(wrap(Evil()), f)
    return path


def _evil_torch(path: Path, marker: Path) -> Path:
    import torch
    Evil.marker = str(marker)
    torch.save({"pos_embed": torch.zeros(1), "evil": Evil()}, str(path))
    return path


def test_untrusted_checkpoints_are_never_unpickled(tmp_path, media):
    """Pickle-bearing .pt/.bin/.pkl/.npy files, garbage safetensors and configs: refused, and the
    marker the pickle would write never appears."""
    marker = tmp_path / "PWNED"
    ck = tmp_path / "ck"
    ck.mkdir()
    _evil_torch(ck / "model.pt", marker)
    _evil_pickle(ck / "plain.pkl", marker)
    _evil_pickle(ck / "plain.pt", marker)
    folder = ck / "diffusers"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "DiTTransformer2DModel"}))
    _evil_torch(folder / "diffusion_pytorch_model.bin", marker)
    sfolder = ck / "bad-safetensors"
    sfolder.mkdir()
    (sfolder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    (sfolder / "diffusion_pytorch_model.safetensors").write_bytes(b"\xff" * 8 + b"{junk")
    hdr = ck / "huge-header"
    hdr.mkdir()
    (hdr / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    (hdr / "diffusion_pytorch_model.safetensors").write_bytes((2**62).to_bytes(8, "little") + b"{}")
    import numpy as np
    obj_npy = ck / "frames.npy"
    np.save(obj_npy, np.array([Evil()], dtype=object), allow_pickle=True)
    ok_dir = tmp_path / "out"
    for argv in (["convert", ck / "model.pt", "--out", ok_dir / "a"],
                 ["convert", ck / "plain.pt", "--out", ok_dir / "b"],
                 ["convert", ck / "plain.pkl", "--out", ok_dir / "c"],
                 ["convert", folder, "--out", ok_dir / "d"],
                 ["convert", sfolder, "--out", ok_dir / "e"],
                 ["convert", hdr, "--out", ok_dir / "f"],
                 ["toyworld", "detect", obj_npy],
                 ["generate", "a ball", "--checkpoint", ck, "--out", tmp_path / "g.mp4"],
                 ["eval", "generation", "--checkpoint", ck]):
        case("untrusted", argv, "error", tmp_path, outputs=tuple(ok_dir / x for x in "abcdef") + (tmp_path / "g.mp4",))
    assert not marker.exists(), "a pickle was executed"
    assert not ok_dir.exists() or not any(ok_dir.rglob("*.safetensors"))
    assert_clean("untrusted")


def _copy_checkpoint(dst: Path) -> Path:
    from jvideo.generation.presets import CHECKPOINT_DIR
    shutil.copytree(CHECKPOINT_DIR / "tiny", dst)
    return dst


PRESET_MUTATIONS = [
    ("size", 100000), ("frames", 10**7), ("frames", 0), ("size", -64), ("size", "64"), ("frames", 1.5),
    ("timesteps", None), ("text_tokens", True), ("vae", []), ("dit", "x"), ("unknown_key", 1),
    ("vae.channels", [16, -1]), ("vae.channels", []), ("dit.heads", 0), ("dit.batch", float("nan")),
    ("dit.image_until", 2.0), ("dit.image_until", 0), ("word_tokens", "yes"), ("dit.reference_tokens", 1),
    ("dit.motions", ["sideways"]), ("dit.motions", ["spin"]), ("dit.motions", "left"),
    ("dit.shared_noise", 1.0), ("dit.shared_noise", -0.5), ("dit.timestep_power", -1.0),
    ("dit.layout_dropout", 1.5), ("dit.layout", "yes"), ("dit.layout", True), ("dit.reference_paste", True),
    ("dit.layout_look", True),
]


def test_corrupt_checkpoints(tmp_path):
    """A copied shipped checkpoint with one part broken at a time: one line each, before any
    weights load (the memory estimate refuses huge presets)."""
    base = _copy_checkpoint(tmp_path / "base")
    gen_out = tmp_path / "g.mp4"
    for i, (key, value) in enumerate(PRESET_MUTATIONS):
        ck = tmp_path / f"p{i}"
        shutil.copytree(base, ck)
        preset = json.loads((ck / "preset.json").read_text())
        node, leaf = (preset, key) if "." not in key else (preset[key.split(".")[0]], key.split(".")[1])
        node[leaf] = value
        (ck / "preset.json").write_text(json.dumps(preset))
        out = case("checkpoints", ["generate", "a ball", "--checkpoint", ck, "--out", gen_out, "--steps", "1"],
                   "error", tmp_path, outputs=(gen_out,))
        if key == "size" and value == 100000:
            assert "needs about" in out.stderr, out.stderr
    for i, (part, data) in enumerate([("preset.json", b""), ("preset.json", b"\xff\xfe\x00"), ("preset.json", b"[1,2]"),
                                      ("preset.json", b"{" * 100000), ("preset.json", b"[" * 100000),
                                      ("vae/config.json", b"null"), ("vae/config.json", b"[" * 100000),
                                      ("dit/config.json", b'{"num_layers": -1}'),
                                      ("vae/diffusion_pytorch_model.safetensors", b""),
                                      ("dit/diffusion_pytorch_model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{}")]):
        ck = tmp_path / f"c{i}"
        shutil.copytree(base, ck)
        (ck / part).write_bytes(data)
        case("checkpoints", ["generate", "a ball", "--checkpoint", ck, "--out", gen_out, "--steps", "1"],
             "error", tmp_path, outputs=(gen_out,))
    for prompt in ("", "   ", "x" * 1001):
        case("checkpoints", ["generate", prompt, "--out", gen_out], "error", tmp_path, outputs=(gen_out,))
    for out_arg in (tmp_path / "g.avi", tmp_path / "missing" / "g.mp4", tmp_path):
        case("checkpoints", ["generate", "a ball", "--out", out_arg], "error", tmp_path)
    assert_clean("checkpoints")


def test_bad_identity_and_detect_inputs(tmp_path, media):
    from PIL import Image
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)              # 400 Mpx: PIL's decompression-bomb guard
    files = {"zero.png": b"", "text.png": b"not an image", "trunc.png": bomb.read_bytes()[:100]}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    gen_out = tmp_path / "g.mp4"
    for ref in ("zero.png", "text.png", "trunc.png", "bomb.png", "missing.png"):
        case("identity", ["generate", "a ball", "--identity", tmp_path / ref, "--out", gen_out, "--steps", "1"],
             "error", tmp_path, outputs=(gen_out,))
    import numpy as np
    arrays = {"wrong_dims.npy": np.zeros((4, 4), np.uint8), "floats.npy": np.full((2, 8, 8, 3), np.nan),
              "empty.npy": np.zeros((0, 8, 8, 3), np.uint8), "one_channel.npy": np.zeros((2, 8, 8, 1), np.uint8)}
    for name, arr in arrays.items():
        np.save(tmp_path / name, arr)
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "floats.npy").read_bytes()[:90])
    for name in [*arrays, "trunc.npy", "zero.png"]:
        case("detect", ["toyworld", "detect", tmp_path / name], "error")
    for key in ("bad_zero_bytes", "bad_text_as_video", "bad_no_video_stream", "bad_truncated"):
        case("detect", ["toyworld", "detect", media[key]], "error")
    case("detect", ["toyworld", "detect", media["ok_good"]], "ok")
    assert_clean("identity")
    assert_clean("detect")


def test_studio_bad_arguments_and_projects(tmp_path, library):
    """Everything the studio refuses is refused before it serves (else the case would hang)."""
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    (tmp_path / "file").write_text("x")
    projects = {"empty.json": b"", "binary.json": bytes(range(256)), "list.json": b"[]",
                "wrong_version.json": b'{"version": 999}', "latin1.json": "{\"script\": \"caf\u00e9\"}".encode("latin-1"),
                "script_not_text.json": b'{"version": 1, "script": 5}', "deep.json": b"[" * 100000}
    for name, data in projects.items():
        (tmp_path / name).write_bytes(data)
    cases = [["--port", "-1"], ["--port", "65536"], ["--port=abc"], ["--port", str(busy.getsockname()[1])],
             ["--library", tmp_path / "missing"], ["--library", tmp_path / "file"], ["--size", "0x0"],
             ["--size", "axb"], ["--size", "100000x100000"], ["--host", "no such host.invalid"],
             *[["--project", tmp_path / name] for name in projects], ["--project", tmp_path / "missing" / "p.json"]]
    try:
        for extra in cases:
            case("studio", ["studio", "--library", library, "--port", "0", *extra], "error", tmp_path, timeout=20)
    finally:
        busy.close()
    assert_clean("studio")


# -- resource limits -----------------------------------------------------------------------------
def test_jobs_that_cannot_fit_are_refused_with_the_estimate(tmp_path, library, script, media):
    out = case("limits", ["montage", script, "--library", library, "--out", tmp_path / "f.mp4",
                          "--size", "100000x100000"], "error", tmp_path, outputs=(tmp_path / "f.mp4",))
    assert "needs about" in out.stderr and "available" in out.stderr
    # Training presets are named, so the check is exercised on a preset scaled past any machine.
    from jvideo.generation.limits import check_training, training_bytes
    from jvideo.generation.presets import PRESETS, Preset
    from kernels.resources import ResourceError
    big = Preset.from_dict({**PRESETS["small"].to_dict(), "name": "huge", "size": 4096, "frames": 256})
    assert training_bytes(big) > 10**13
    with pytest.raises(ResourceError, match=r"needs about .* TiB"):
        check_training(big)
    check_training(PRESETS["test"])
    # ffprobe itself caps a picture near 16000x16000 (~8 GB to decode: fits here); a container
    # can claim more, and decoding is refused before ffmpeg starts.
    from montage.errors import MontageError
    from montage.video import VideoInfo, decode_frames
    info = VideoInfo(path=str(media["ok_good"]), duration=1.0, fps=25.0, width=400_000, height=400_000,
                     codec="h264", has_audio=False)
    with pytest.raises(MontageError, match=r"decoding a 400000x400000 video needs about .* available"):
        next(decode_frames(info, 4.0))
    assert_clean("limits")


# -- the counts ----------------------------------------------------------------------------------
def summary() -> str:
    """The tally by group and in total (printed at the end of the session by conftest.py)."""
    counted = {g: n for g, n in COUNTS.items() if g != "setup"}
    found = [p for v in FINDINGS.values() for p in v]
    lines = [f"  {g:22s} {n:4d}" for g, n in sorted(counted.items())]
    return ("bad-input cases by group:\n" + "\n".join(lines) + "\n"
            f"bad inputs: {sum(counted.values())} cases, {len(found)} problems "
            f"({sum('traceback' in p or 'crash' in p for p in found)} tracebacks, "
            f"{sum('hang' in p for p in found)} hangs, {sum('left' in p for p in found)} partial outputs)")


def test_zz_counts():
    """With the whole file run: at least 200 generated bad inputs, and no problem anywhere."""
    print("\n" + summary())
    if len([g for g in COUNTS if g != "setup"]) >= 10:      # the whole file ran
        assert sum(n for g, n in COUNTS.items() if g != "setup") >= 200
    assert not any(FINDINGS.values())
