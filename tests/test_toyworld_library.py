"""Demo footage library, contact sheet and the `jvideo toyworld` command."""
import json
import subprocess

import numpy as np
import pytest
from PIL import Image

import cli
from jvideo import toyworld as tw
from jvideo.errors import JVideoError
from jvideo.toyworld.library import GROUNDTRUTH_NAME, write_contact_sheet, write_library


def _probe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name,width,height",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_library_clips_sidecars_and_ground_truth(tmp_path):
    paths = write_library(tmp_path / "lib", clips=3, seed=2, size=64, fps=12, seconds=(1.0, 1.5), progress=False)
    folder = tmp_path / "lib"
    assert len(paths) == 3 and all(p.exists() for p in paths)
    truth = json.loads((folder / GROUNDTRUTH_NAME).read_text())["clips"]
    assert len(truth) == 3
    names = {c.name for c in tw.CAST}
    assert any(t["params"]["name"] in names for t in truth.values())  # the cast recurs in the footage
    for p in paths:
        info = _probe(p)
        stream = info["streams"][0]
        assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 64, 64)
        expected = truth[p.stem]["duration"]
        assert abs(float(info["format"]["duration"]) - expected) < 0.1, (p, expected)
        side = json.loads(p.with_suffix(".json").read_text())
        assert set(side) == {"caption", "tags"} and side["caption"] == truth[p.stem]["caption"]
        params = tw.ClipParams.from_dict(truth[p.stem]["params"])
        assert params.look.primary in side["tags"] and params.motion in side["tags"]
    assert not list(folder.glob("*.part")) and not list(folder.glob(".*"))


def test_library_bad_input(tmp_path):
    with pytest.raises(JVideoError):
        write_library(tmp_path, clips=0, progress=False)
    with pytest.raises(JVideoError):
        write_library(tmp_path, clips=1, size=63, progress=False)
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.main(["toyworld", "library", str(f), "--clips", "1"]) == 2


def test_contact_sheet(tmp_path):
    out = write_contact_sheet(tmp_path / "sheet.png", n=3, seed=1, size=48)
    img = Image.open(out)
    assert img.size[0] == 4 * (48 + 6) + 6 and img.size[1] > 3 * 48
    assert cli.main(["toyworld", "sample", str(tmp_path / "sheet.jpg")]) == 2
    assert cli.main(["toyworld", "sample", str(tmp_path / "nofolder" / "s.png")]) == 2


def test_detect_command_reads_npy(tmp_path, capsys):
    p = tw.sample_params(np.random.default_rng(0), look=tw.Look("square", "red", "white", "solid", "big"),
                         background="sky", lighting="day", motion="left", camera="close-up")
    np.save(tmp_path / "clip.npy", tw.render_clip(p))
    assert cli.main(["toyworld", "detect", str(tmp_path / "clip.npy")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["primary"], out["shape"], out["motion"], out["background"]) == ("red", "square", "left", "sky")
    assert cli.main(["toyworld", "detect", str(tmp_path / "missing.mp4")]) == 2
