"""`jvideo studio`: the JSON API on a real toy-world library (real MiniLM, faiss library, ffmpeg
renders), bad input answered as one JSON line with a 4xx status, the project file, and the whole
app end to end in Debian's headless Chromium driven by Selenium."""
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import cli
from montage.errors import MontageError
from montage.render import probe
from studio.app import create_app
from studio.browser import chromium
from studio.engine import Studio, StudioConfig
from studio.server import hosts_for
from studio.session import MAX_SCRIPT_CHARS, Session

ROOT = Path(__file__).resolve().parents[1]
SIZE = (160, 90)
STORY = ("Mira grows above the waves by the sea. A purple star spins under the night sky. "
         "A red circle grows in the sky.")


@pytest.fixture(scope="module")
def toy_library(tmp_path_factory):
    """Eight toy-world clips (captions in sidecars) indexed with `jvideo index`."""
    root = tmp_path_factory.mktemp("studio_lib")
    footage, lib = root / "footage", root / "lib"
    assert cli.main(["toyworld", "library", str(footage), "--clips", "8", "--seed", "1", "--size", "96",
                     "--fps", "12", "--seconds", "2", "3"]) == 0
    assert cli.main(["index", str(footage), "--library", str(lib), "--quiet"]) == 0
    return lib


@pytest.fixture
def studio(toy_library, tmp_path):
    s = Studio(StudioConfig(project=tmp_path / "story.json", library=toy_library, size=SIZE,
                            render_delay=0.1))
    yield s
    s.close()


@pytest.fixture
def client(studio):
    return create_app(studio).test_client()


def post(client, path, data, status=200):
    r = client.post(path, json=data)
    assert r.status_code == status, (r.status_code, r.get_json())
    return r.get_json()


def test_script_plans_storyboard_with_thumbnails(client, studio):
    sb = post(client, "/api/script", {"script": "# Toy world\n\n" + STORY})
    kinds = [u["kind"] for u in sb["units"]]
    assert kinds == ["title", "text", "text", "text"]
    mira = sb["units"][1]
    assert mira["shots"][0]["source"].startswith("toy_0000_mira") and mira["match"] == "good"
    assert mira["shots"][0]["source_kind"] == "retrieved" and 0 < mira["shots"][0]["score"] <= 1.2
    assert 1 < len(mira["candidates"]) <= studio.cfg.candidates_shown
    r = client.get(mira["shots"][0]["thumb"])
    assert r.status_code == 200 and r.data[:2] == b"\xff\xd8"          # a JPEG from the library
    ids = [s["shot_id"] for u in sb["units"] for s in u["shots"] if s["kind"] == "shot"]
    assert len(ids) == len(set(ids))
    assert client.get("/api/storyboard").get_json()["units"] == sb["units"]
    page = client.get("/")
    assert page.status_code == 200 and b"studio.js" in page.data
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_edit_replans_only_from_the_changed_unit(client):
    base = post(client, "/api/script", {"script": STORY})
    edited = post(client, "/api/script", {"script": STORY.replace("A red circle grows in the sky.",
                                                                  "A green triangle waits in a room.")})
    assert edited["replanned_from"] == 2
    assert [u["shots"] for u in edited["units"][:2]] == [u["shots"] for u in base["units"][:2]]
    assert [u["changed"] for u in edited["units"]] == [False, False, True]
    added = post(client, "/api/script", {"script": STORY + " Tomo walks to the right in a room."})
    assert len(added["units"]) == 4 and added["units"][3]["changed"]
    # Inserting at the top re-solves everything, but only units whose shots moved are marked.
    top = post(client, "/api/script", {"script": "Pip bounces on the grass. " + STORY})
    assert top["replanned_from"] == 0 and top["units"][0]["changed"]
    assert [u["changed"] for u in top["units"][1:]] == [False, False, False]


def test_pin_survives_replans_and_moves(client, studio, tmp_path):
    sb = post(client, "/api/script", {"script": STORY})
    star = sb["units"][1]
    other = next(c["shot_id"] for c in star["candidates"] if c["shot_id"] != star["shots"][0]["shot_id"])
    sb = post(client, "/api/pin", {"unit": 1, "text": star["text"], "shot_id": other})
    assert sb["units"][1]["pinned"] == other and sb["units"][1]["match"] == "pinned"
    assert [s["shot_id"] for s in sb["units"][1]["shots"]] == [other]
    # A new first sentence moves the pinned one down; an edit after it re-plans; the pin stays.
    sb = post(client, "/api/script", {"script": "Tomo walks to the right in a room. " + STORY})
    moved = next(u for u in sb["units"] if u["text"] == star["text"])
    assert moved["index"] == 2 and moved["pinned"] == other and moved["shots"][0]["shot_id"] == other
    saved = json.loads((tmp_path / "story.json").read_text())
    assert saved["pins"] == {star["text"]: other}
    sb = post(client, "/api/pin", {"unit": 2, "text": star["text"], "shot_id": None})
    assert sb["units"][2]["pinned"] is None and sb["units"][2]["match"] != "pinned"


def test_never_use_and_generate_request(client, tmp_path):
    sb = post(client, "/api/script", {"script": STORY})
    mira = sb["units"][0]
    banned = mira["shots"][0]["shot_id"]
    sb = post(client, "/api/never-use", {"shot_id": banned, "never": True})
    used = {s["shot_id"] for u in sb["units"] for s in u["shots"]}
    shown = {c["shot_id"] for u in sb["units"] for c in u["candidates"]}
    assert banned not in used | shown
    hits = client.get("/api/search?q=Mira+above+the+waves").get_json()["results"]
    assert any(h["shot_id"] == banned and h["never_use"] for h in hits)
    # Pinning a banned shot is refused; allowing it again brings it back.
    r = client.post("/api/pin", json={"unit": 0, "text": mira["text"], "shot_id": banned})
    assert r.status_code == 409 and "never use" in r.get_json()["error"]
    sb = post(client, "/api/never-use", {"shot_id": banned, "never": False})
    assert sb["units"][0]["shots"][0]["shot_id"] == banned
    sb = post(client, "/api/generate", {"unit": 1, "text": sb["units"][1]["text"], "generate": True})
    assert sb["units"][1]["generate"] and not sb["units"][0]["generate"]
    assert json.loads((tmp_path / "story.json").read_text())["generate"] == [sb["units"][1]["text"]]


def test_settings_change_the_cut(client):
    post(client, "/api/script", {"script": STORY})
    sb = post(client, "/api/settings", {"pace": "fast", "transition": "crossfade", "aspect": "1:1",
                                        "movement": "less", "subtitles": True})
    assert sb["settings"] == {"pace": "fast", "movement": "less", "transition": "crossfade",
                              "aspect": "1:1", "subtitles": True}
    assert sb["replanned_from"] == 0   # new idioms: the whole script is planned again
    for bad in ({"pace": "warp"}, {"aspect": "4:3"}, {"subtitles": "yes"}, {"colour": "red"}):
        r = client.post("/api/settings", json=bad)
        assert r.status_code == 400 and r.get_json()["error"]


def test_search_library(client):
    out = client.get("/api/search?q=a+purple+star+spinning").get_json()
    assert out["results"][0]["source"].startswith("toy_0001_purple_star")
    assert out["results"][0]["thumb"].startswith("/thumb/")
    for q, status in (("", 400), ("   ", 400), ("x" * 1001, 400)):
        r = client.get("/api/search", query_string={"q": q})
        assert r.status_code == status and "error" in r.get_json()
    assert client.get("/api/search?q=star&k=abc").status_code == 400


def test_background_render_and_export(client, studio):
    post(client, "/api/script", {"script": STORY})
    st = studio.wait_render(120)
    assert st["state"] == "done" and st["current"] and st["done"] == st["total"] == 3
    film = client.get(st["film"])
    assert film.status_code == 200 and film.data[4:8] == b"ftyp"
    part = client.get(st["film"], headers={"Range": "bytes=0-99"})     # the player seeks
    assert part.status_code == 206 and len(part.data) == 100
    # An edit re-renders only its own segment from the render cache.
    segments = {p.name for p in (studio.workdir / "segments").glob("seg-*.mp4")}
    post(client, "/api/script", {"script": STORY.replace("red circle", "green triangle")})
    studio.wait_render(120)
    new = {p.name for p in (studio.workdir / "segments").glob("seg-*.mp4")} - segments
    assert len(new) == 1
    out = post(client, "/api/export", {"formats": ["mp4", "srt", "otio", "edl", "plan"]})
    assert out["pending"] == [] and set(out["files"]) == {"mp4", "srt", "otio", "edl", "plan"}
    exported = studio.workdir / "export"
    info = probe(exported / "story.mp4")
    assert abs(float(info["format"]["duration"]) - studio.plan.duration) < 0.1
    assert "green triangle" in (exported / "story.srt").read_text()
    import opentimelineio as otio
    tl = otio.adapters.read_from_file(str(exported / "story.otio"))
    assert len(list(tl.find_clips())) == 3
    assert json.loads((exported / "story.plan.json").read_text())["units"][2]["text"].startswith("A green")
    r = client.get(out["files"]["edl"])
    assert r.status_code == 200 and b"TITLE" in r.data and r.headers["Content-Disposition"] == "attachment"
    assert post(client, "/api/export", {"formats": ["gif"]}, 400)["error"].startswith("unknown export format")


def test_render_error_is_reported_not_waited_for(tmp_path):
    """A source video gone from disk: the render says so and the MP4 export gives the reason."""
    from montage.library import Library, Shot
    lib = Library.create(tmp_path / "lib")
    shot = Shot(id=0, source=str(tmp_path / "gone.mp4"), start=0.0, end=4.0, fps=24.0, width=160,
                height=90, thumbnail="", lab=(50.0, 0.0, 0.0), brightness=0.5, sharpness=0.5,
                motion=0.1, camera="static", text="a boat in a harbour")
    lib.add_shots([shot], lib.embedder.embed([shot.text]))
    lib.close()
    s = Studio(StudioConfig(project=tmp_path / "p.json", library=tmp_path / "lib", size=SIZE,
                            render_delay=0.05))
    c = create_app(s).test_client()
    try:
        post(c, "/api/script", {"script": "A boat waits in the harbour."})
        st = s.wait_render(60)
        assert st["state"] == "error" and "gone.mp4" in st["message"]
        out = post(c, "/api/export", {"formats": ["mp4", "srt"]})
        assert set(out["files"]) == {"srt"} and out["pending"] == [] and "gone.mp4" in out["errors"]["mp4"]
    finally:
        s.close()


def test_bad_input_is_one_json_line_with_4xx(client, studio, toy_library):
    post(client, "/api/script", {"script": STORY})
    cases = [
        ("/api/script", {"script": "x" * (MAX_SCRIPT_CHARS + 1)}, 413),
        ("/api/script", {"script": 12}, 400),
        ("/api/script", {}, 400),
        ("/api/pin", {"unit": 0, "shot_id": 999999}, 404),
        ("/api/pin", {"unit": 0, "shot_id": "abc"}, 400),
        ("/api/pin", {"unit": 7, "shot_id": 1}, 404),
        ("/api/pin", {"unit": 0, "text": "an older sentence", "shot_id": 1}, 409),
        ("/api/pin", {"unit": 0}, 400),
        ("/api/never-use", {"shot_id": -5}, 404),
        ("/api/never-use", {"shot_id": True}, 404),
        ("/api/generate", {"unit": "first"}, 400),
        ("/api/index", {"folder": "/no/such/folder"}, 400),
        ("/api/index", {"folder": 3}, 400),
        ("/api/export", {"formats": "mp4"}, 400),
    ]
    for path, data, status in cases:
        r = client.post(path, json=data)
        body = r.get_json()
        assert r.status_code == status, (path, data, r.status_code, body)
        assert set(body) == {"error"} and "\n" not in body["error"] and body["error"], body
    # Bodies: not JSON, not an object, too large for any script.
    r = client.post("/api/script", data="script=hello", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415 and r.get_json()["error"]
    assert client.post("/api/script", json=["a list"]).status_code == 400
    big = client.post("/api/script", data=b'{"script": "' + b"x" * (MAX_SCRIPT_CHARS * 5) + b'"}',
                      content_type="application/json")
    assert big.status_code == 413 and big.get_json()["error"].startswith("request too large")
    # Only the library's thumbnails and the project's work folder are served.
    (studio.workdir / "inside.txt").write_text("ok")
    assert client.get("/files/project/inside.txt").status_code == 200
    secret = studio.project.parent / "secret.txt"
    secret.write_text("no")
    os.symlink(secret, studio.workdir / "link.txt")
    for url in ("/files/project/../secret.txt", "/files/project/%2e%2e/secret.txt",
                "/files/project/..%2fsecret.txt", "/files/project/%2e%2e%2fsecret.txt",
                "/files/project//etc/passwd", "/files/project/link.txt", "/files/project/segments",
                "/files/library/../library.sqlite", "/files/library/%2e%2e/library.sqlite",
                "/files/library/..%2f..%2fstory.json", "/static/..%2fapp.py", "/static/../app.py",
                "/thumb/999999", "/thumb/-1"):
        r = client.get(url, follow_redirects=True)    # "//" redirects to the merged path first
        assert r.status_code == 404, (url, r.status_code)
        assert r.data != b"no" and b"SQLite" not in r.data
    thumb = next(toy_library.glob("thumbs/*.jpg")).name
    assert client.get(f"/files/library/{thumb}").status_code == 200


def test_host_and_origin_checks(studio):
    client = create_app(studio, hosts_for("127.0.0.1", 8765)).test_client()
    base = "http://127.0.0.1:8765"
    assert client.get("/api/status", base_url=base).status_code == 200
    assert client.get("/api/status", base_url="http://localhost:8765").status_code == 200
    r = client.get("/api/status", base_url="http://evil.example:8765")    # DNS rebinding
    assert r.status_code == 403 and "not served" in r.get_json()["error"]
    r = client.post("/api/script", json={"script": STORY}, base_url=base,
                    headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = client.post("/api/script", json={"script": STORY}, base_url=base, headers={"Origin": base})
    assert r.status_code == 200


def test_project_saved_atomically_and_reopened(toy_library, tmp_path):
    project = tmp_path / "film.json"
    s = Studio(StudioConfig(project=project, library=toy_library, size=SIZE, render=False))
    c = create_app(s).test_client()
    sb = post(c, "/api/script", {"script": STORY})
    pin = sb["units"][2]["candidates"][1]["shot_id"]
    post(c, "/api/pin", {"unit": 2, "text": sb["units"][2]["text"], "shot_id": pin})
    post(c, "/api/settings", {"pace": "slow"})
    ban = next(c_["shot_id"] for c_ in sb["units"][0]["candidates"] if c_["shot_id"] != pin)
    post(c, "/api/never-use", {"shot_id": ban})
    assert post(c, "/api/save", {})["saved"] == str(project)
    s.close()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # Reopened without --library: the project remembers it, the plan comes back the same.
    s2 = Studio(StudioConfig(project=project, size=SIZE, render=False))
    try:
        assert s2.session.script == STORY and s2.session.settings.pace == "slow"
        assert s2.session.never_use == [ban]
        sb2 = s2.update()
        assert sb2["units"][2]["pinned"] == pin and sb2["units"][2]["shots"][0]["shot_id"] == pin
    finally:
        s2.close()
    # Damaged or foreign project files: one clear line.
    for text, msg in (("{not json", "not valid JSON"), ('{"version": 9}', "not a studio project"),
                      ('{"version": 1, "script": 5}', "not text"),
                      ('{"version": 1, "settings": {"pace": "warp"}}', "unknown pace")):
        project.write_text(text)
        with pytest.raises(MontageError, match=msg):
            Session.load(project)


def test_fountain_script_uses_the_film_parser(client):
    pytest.importorskip("film.script")
    sb = post(client, "/api/script", {"script": "EXT. SEA - DAY\n\nMira grows above the waves.\n\n"
                                                "MIRA\nLook at me!\n"})
    assert [u["kind"] for u in sb["units"]] == ["title", "text", "text"]
    assert sb["units"][2]["text"] == "Look at me!"


def test_generate_a_shot_instead(toy_library, tmp_path):
    """'Generate instead' runs the film pipeline's generator (shipped tiny checkpoint) in a child
    process; the unit is pinned to the new shot, which renders and survives a reopen."""
    pytest.importorskip("film.pipeline")
    from jvideo.generation.presets import SHIPPED_CHECKPOINT
    if not SHIPPED_CHECKPOINT.is_dir():
        pytest.skip("no shipped checkpoint")
    project = tmp_path / "gen.json"
    s = Studio(StudioConfig(project=project, library=toy_library, size=SIZE, render_delay=0.1,
                            generate_steps=4))
    c = create_app(s).test_client()
    try:
        sb = post(c, "/api/script", {"script": STORY})
        text = sb["units"][2]["text"]
        assert post(c, "/api/generate", {"unit": 2, "text": text})["units"][2]["generate"]
        deadline = time.monotonic() + 240
        while (st := c.get("/api/status").get_json()["generate"])["state"] == "running":
            assert time.monotonic() < deadline, st
            time.sleep(0.5)
        assert st["state"] == "done", st
        unit = c.get("/api/storyboard").get_json()["units"][2]
        shot = unit["shots"][0]
        assert unit["generated"] and shot["source_kind"] == "generated" and unit["pinned"] == shot["shot_id"]
        assert shot["shot_id"] >= 1 << 40 and c.get(shot["thumb"]).status_code == 200
        assert s.wait_render(120)["state"] == "done"
        s.close()
        s2 = Studio(StudioConfig(project=project, size=SIZE, render=False))
        try:
            assert s2.update()["units"][2]["shots"][0]["source_kind"] == "generated"
            sb = s2.request_generate(2, False, text)       # undo: back to the library
            assert sb["units"][2]["shots"][0]["source_kind"] == "retrieved"
            assert not sb["units"][2]["generated"] and sb["units"][2]["pinned"] is None
        finally:
            s2.close()
    finally:
        s.close()


def test_without_the_film_pipeline_requests_are_recorded(client, monkeypatch, tmp_path):
    """With film/ not installed (import blocked), Fountain falls back to plain text and 'generate'
    is recorded in the project with a message instead of failing."""
    for name in [m for m in sys.modules if m == "film" or m.startswith("film.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "film", None)
    sb = post(client, "/api/script", {"script": "EXT. SEA - DAY\n\nMira grows above the waves.\n"})
    assert {u["kind"] for u in sb["units"]} == {"text"} and not sb["film_available"]  # no scene title
    last = len(sb["units"]) - 1
    sb = post(client, "/api/generate", {"unit": last, "text": sb["units"][last]["text"]})
    assert sb["units"][last]["generate"] and not sb["units"][last]["generated"]
    st = client.get("/api/status").get_json()["generate"]
    assert st["state"] == "error" and "not installed" in st["message"]
    assert json.loads((tmp_path / "story.json").read_text())["generate"] == ["Mira grows above the waves."]


def test_index_a_new_folder_with_progress(tmp_path):
    footage = tmp_path / "new footage"
    assert cli.main(["toyworld", "library", str(footage), "--clips", "2", "--seed", "4", "--size", "64",
                     "--fps", "12", "--seconds", "1", "1.5"]) == 0
    s = Studio(StudioConfig(project=tmp_path / "fresh.json", size=SIZE, render=False))
    c = create_app(s).test_client()
    try:
        assert c.get("/api/status").get_json()["library"]["shots"] == 0
        post(c, "/api/script", {"script": "A shape moves."})
        assert post(c, "/api/index", {"folder": str(footage)})["state"] == "running"
        assert c.post("/api/index", json={"folder": str(footage)}).status_code == 409
        seen = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            st = c.get("/api/status").get_json()
            seen.append((st["index"]["done"], st["index"]["total"]))
            if st["index"]["state"] != "running":
                break
            time.sleep(0.2)
        assert st["index"]["state"] == "done", st["index"]
        assert st["index"]["done"] == st["index"]["total"] == 2
        assert st["library"]["shots"] >= 2 and st["library"]["folder"] == str(s.workdir / "library")
        sb = c.get("/api/storyboard").get_json()    # the script was re-planned on the new footage
        assert sb["units"][0]["shots"][0]["kind"] == "shot"
    finally:
        s.close()


def test_cli_bad_input_one_line(tmp_path, capsys):
    assert cli.main(["studio", "--library", str(tmp_path / "missing"), "--project", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    (tmp_path / "bad.json").write_text("{")
    assert cli.main(["studio", "--project", str(tmp_path / "bad.json")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert cli.main(["studio", "--port", "70000", "--project", str(tmp_path / "p.json")]) == 2
    capsys.readouterr()
    with socket.socket() as taken:             # another program holds the port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["studio", "--port", str(port), "--project", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in use" in err


# -- end to end in a real browser ---------------------------------------------------------------
def test_browser_end_to_end(toy_library, tmp_path):
    """`jvideo studio` as a user starts it; Chromium types a script, sees the storyboard, pins a
    candidate, exports and downloads the film; a screenshot is kept."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    proc = subprocess.Popen([sys.executable, "-m", "cli", "studio", "--library", str(toy_library),
                             "--project", str(tmp_path / "e2e.json"), "--port", "0", "--size", "160x90"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stack = contextlib.ExitStack()
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 180)   # MiniLM loads before the address
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("studio: http://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
        url = line.split()[1]
        browser = stack.enter_context(chromium())
        # The storyboard is redrawn after every answer: an element found just before may go stale.
        wait = WebDriverWait(browser, 60, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
        browser.get(url)
        box = wait.until(lambda b: b.find_element(By.ID, "script"))
        units = lambda b: b.find_elements(By.CSS_SELECTOR, "#storyboard .unit")  # noqa: E731
        box.send_keys("Mira grows above the waves by the sea.")
        wait.until(lambda b: len(units(b)) == 1)
        box.send_keys(" A purple star spins under the night sky.")
        wait.until(lambda b: len(units(b)) == 2 and "night sky." in units(b)[1].text)
        assert units(browser)[1].find_elements(By.CSS_SELECTOR, ".shots img")   # chosen shot's thumbnail

        def pin_another(b):
            cand = next(c for c in units(b)[1].find_elements(By.CSS_SELECTOR, ".candidate")
                        if "current" not in c.get_attribute("class"))
            shot = cand.get_attribute("data-shot")
            cand.find_element(By.CSS_SELECTOR, "button.pin").click()
            return shot
        shot_id = wait.until(pin_another)
        wait.until(lambda b: "pinned" in units(b)[1].get_attribute("class"))
        assert wait.until(lambda b: units(b)[1].find_element(
            By.CSS_SELECTOR, ".candidate.pinned").get_attribute("data-shot")) == shot_id
        # User text is shown as text, never parsed as markup (innerHTML would show "<b>").
        box.send_keys(" A star says &lt;b&gt; hello.")
        assert "&lt;b&gt;" in wait.until(lambda b: len(units(b)) == 3 and "hello." in units(b)[2].text
                                         and units(b)[2].text)
        browser.find_element(By.ID, "library-toggle").click()   # the library view searches
        browser.find_element(By.ID, "search").send_keys("a purple star")
        browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#results .result img")) >= 3)
        assert "purple star" in browser.find_element(By.CSS_SELECTOR, "#results .result").text
        browser.find_element(By.ID, "export").click()
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#exports a[data-format=srt]"))
        mp4 = WebDriverWait(browser, 120, poll_frequency=0.2,
                            ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, "#exports a[data-format=mp4]"))[0].get_attribute("href")
        wait.until(lambda b: b.execute_script("return document.getElementById('player').readyState") >= 1)
        browser.save_screenshot(str(tmp_path / "studio.png"))
        film = tmp_path / "downloaded.mp4"
        with urllib.request.urlopen(mp4, timeout=30) as r:
            film.write_bytes(r.read())
        assert float(probe(film)["format"]["duration"]) > 3.0
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors                      # no script error, no failed request
        saved = json.loads((tmp_path / "e2e.json").read_text())
        assert saved["pins"] == {"A purple star spins under the night sky.": int(shot_id)}
        assert (tmp_path / "studio.png").stat().st_size > 10_000
    finally:
        stack.close()
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_bench_studio_runs(tmp_path, capsys):
    """`jvideo bench studio` on a small synthetic library (the README's figures use 10,000 shots)."""
    assert cli.main(["bench", "studio", "--shots", "300", "--units", "6", "--repeats", "1",
                     "--workdir", str(tmp_path), "--json", str(tmp_path / "b.json")]) == 0
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    edits = [r for r in rows if r["name"].startswith("API:")]
    assert len(edits) == 6 and all(r["seconds"] > 0 for r in edits)
    assert "API: delete sentence" in capsys.readouterr().out


def run_job_once_more_if_hung(cmd: list[str], stdin: str, env: dict, timeout: float = 150) -> tuple[int, str, str]:
    """Run a job in its own process group; if it hangs, kill the whole group and run it once more.

    Seen once (2026-11-30): the job sat idle with 7 forked copies of itself until the timeout,
    and subprocess.run then waited forever on the pipes those copies held (the suite hung). A
    hang is killed with its group; a second hang, or any error exit, fails the test."""
    for attempt in range(2):
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, start_new_session=True)
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
            return proc.returncode, out, err
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    pytest.fail(f"{' '.join(cmd[1:4])} hung twice ({timeout:.0f} s each)")


def test_generated_shot_uses_the_cast_reference(tmp_path):
    """A Fountain script's [[cast ...]] reference conditions the studio's generated shot of that
    character, as in `jvideo film` (the shot is tagged with the character)."""
    pytest.importorskip("film.pipeline")
    refs = Path(__file__).resolve().parents[1] / "examples" / "film" / "refs"
    script = f"[[cast Mira: {refs}/mira.png]]\n\nEXT. SEA - DAY\n\nMira jumps over the waves.\n"
    request = {"script": script, "base": str(tmp_path),
               "jobs": [{"unit": 0, "visual": "Mira jumps over the waves (by day)", "characters": ["Mira"]}]}
    root = str(Path(__file__).resolve().parents[1])
    code, stdout, stderr = run_job_once_more_if_hung(
        [sys.executable, "-m", "studio.generate_job", "--cache", str(tmp_path / "shots"), "--steps", "2"],
        json.dumps(request), {**os.environ, "PYTHONPATH": root})
    assert code == 0, stderr
    shot = json.loads(stdout)["shots"]["0"]
    assert "Mira" in shot["tags"] and "generated" in shot["tags"]
