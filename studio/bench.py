"""`jvideo bench studio`: how fast the storyboard follows an edit (issue target: 0.5 s for a
50-unit script on a 10,000-shot library).

A synthetic library of 10,000 shots (montage.bench's records: 6-word texts, random unit-norm
embeddings) is written to a real library folder; the studio opens it and a 50-sentence script
is planned once. Then each kind of edit (reword, add, delete, move) is sent to the real HTTP
API (Flask's test client: routing, JSON in and out) with a new sentence each time, so MiniLM
embeds it for real; after each measured edit the script goes back to the base text. Rendering
is off: it runs in the background and never holds up the storyboard.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = ("harbour boat dog beach market child forest river city night rain train bridge garden "
         "kitchen mountain snow street window horse field lamp road tower").split()


def build_library(folder: Path, n_shots: int, seed: int = 0) -> Path:
    """A library folder with n synthetic shots (no video files: planning never opens them)."""
    from montage.bench import synthetic_library
    from montage.library import Library, Shot

    records, vecs = synthetic_library(n_shots, seed=seed)
    rng = np.random.default_rng(seed)
    shots = [Shot(id=0, source=r.source, start=r.start, end=r.end, fps=24.0, width=854, height=480,
                  thumbnail="", lab=tuple(map(float, r.lab)), brightness=r.brightness,
                  sharpness=r.sharpness, motion=r.motion, camera=r.camera,
                  text=f"{r.text} {' '.join(rng.choice(WORDS, 2))}", tags=[]) for r in records]
    lib = Library.create(folder)
    try:
        lib.add_shots(shots, vecs)
    finally:
        lib.close()
    return folder


def sentence(rng: np.random.Generator, tag: str) -> str:
    words = list(rng.choice(WORDS, 4))
    return f"The {words[0]} near the {words[1]} and a {words[2]} by the {words[3]} ({tag})."


def bench_edits(workdir: Path, n_shots: int = 10_000, n_units: int = 50, repeats: int = 7) -> list[dict]:
    from .app import create_app
    from .engine import Studio, StudioConfig

    lib = workdir / f"lib{n_shots}"
    t = time.perf_counter()
    if not (lib / "library.sqlite").is_file():
        build_library(lib, n_shots)
    t_build = time.perf_counter() - t
    project = workdir / f"bench-{os.getpid()}.json"
    t = time.perf_counter()
    studio = Studio(StudioConfig(project=project, library=lib, render=False, autosave=False))
    t_open = time.perf_counter() - t
    studio.embedder.embed(["warm up"])    # the server loads MiniLM before it answers
    client = create_app(studio).test_client()
    rng = np.random.default_rng(3)
    base = [sentence(rng, f"s{i}") for i in range(n_units)]
    rows = [{"name": f"synthetic library of {n_shots} shots written (once)", "seconds": t_build},
            {"name": f"studio opens the library ({n_shots} shots -> shot table)", "seconds": t_open}]

    def post(lines: list[str]) -> tuple[float, float, dict]:
        t, c = time.perf_counter(), time.process_time()
        r = client.post("/api/script", json={"script": " ".join(lines)})
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        if r.status_code != 200:
            raise RuntimeError(f"studio answered {r.status_code}: {r.get_json()}")
        return wall, cpu, r.get_json()

    wall, cpu, sb = post(base)
    assert len(sb["units"]) == n_units, len(sb["units"])
    rows.append({"name": f"first plan of {n_units} sentences (each embedded by MiniLM)",
                 "seconds": wall, "cpu_s": cpu})
    mid, early, late = n_units // 2, max(1, n_units // 5), max(2, n_units * 4 // 5)
    edits = {
        f"reword sentence {mid} of {n_units}":
            lambda k: base[:mid - 1] + [sentence(rng, f"e{k}")] + base[mid:],
        "reword sentence 1 (all re-solved)": lambda k: [sentence(rng, f"f{k}")] + base[1:],
        "add a sentence at the end": lambda k: base + [sentence(rng, f"a{k}")],
        "add a sentence in the middle": lambda k: base[:mid] + [sentence(rng, f"m{k}")] + base[mid:],
        f"delete sentence {mid}": lambda k: base[:mid - 1] + base[mid:],
        f"move sentence {late} before sentence {early}":
            lambda k: base[:early - 1] + [base[late - 1]] + base[early - 1:late - 1] + base[late:],
    }
    for name, make in edits.items():
        walls, cpus, plans, starts = [], [], [], []
        for k in range(repeats):
            post(base)                       # back to the base plan (not measured)
            w, c, sb = post(make(k))
            walls.append(w)
            cpus.append(c)
            plans.append(sb["plan_seconds"])
            starts.append(sb["replanned_from"])
        rows.append({"name": f"API: {name} (from unit {starts[-1] + 1})",
                     "seconds": statistics.median(walls), "max_s": max(walls),
                     "cpu_s": statistics.median(cpus), "plan_s": statistics.median(plans),
                     "target_s": 0.5})
    studio.close()
    project.unlink(missing_ok=True)
    shutil.rmtree(studio.workdir, ignore_errors=True)
    return rows


def bench_browser(workdir: Path, n_shots: int = 10_000, n_units: int = 50, repeats: int = 5) -> list[dict]:
    """The same edits typed into the real page in headless Chromium against the real server:
    milliseconds from the input event until the storyboard shows the edit, measured in the page
    (this includes the page's 150 ms pause that waits for typing to stop)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from .browser import EDIT_AND_TIME_JS, chromium
    from .engine import StudioConfig
    from .server import start

    lib = workdir / f"lib{n_shots}"
    if not (lib / "library.sqlite").is_file():
        build_library(lib, n_shots)
    running = start(StudioConfig(project=workdir / f"browser-{os.getpid()}.json", library=lib,
                                 render=False, autosave=False), "127.0.0.1", 0)
    rng = np.random.default_rng(5)
    base = [sentence(rng, f"s{i}") for i in range(n_units)]
    rows = []
    try:
        with chromium() as b:
            b.get(running.url)
            WebDriverWait(b, 60).until(lambda d: d.find_element(By.ID, "script"))
            b.execute_async_script(EDIT_AND_TIME_JS, " ".join(base), base[-1][:-1])
            mid = n_units // 2
            edits = {
                f"reword sentence {mid}": lambda k, m: base[:mid - 1] + [m] + base[mid:],
                "reword sentence 1": lambda k, m: [m] + base[1:],
                "add a sentence at the end": lambda k, m: base + [m],
            }
            for name, make in edits.items():
                times = []
                for k in range(repeats):
                    b.execute_async_script(EDIT_AND_TIME_JS, " ".join(base), base[-1][:-1])
                    new = sentence(rng, f"b{k}")
                    ms = b.execute_async_script(EDIT_AND_TIME_JS, " ".join(make(k, new)), new[:-1])
                    times.append(ms / 1000)
                rows.append({"name": f"page: {name}, typed -> drawn (incl. 0.15 s pause)",
                             "seconds": statistics.median(times), "max_s": max(times), "target_s": 0.5})
    finally:
        running.stop()
        shutil.rmtree(running.studio.workdir, ignore_errors=True)
    return rows


def _table(rows: list[dict]) -> str:
    lines = [f"{'measurement':<58} {'median s':>9} {'max s':>7} {'cpu s':>7} {'plan s':>7} {'target':>7}  ok"]
    for r in rows:
        tgt = r.get("target_s")
        ok = "" if tgt is None else ("yes" if r.get("max_s", r["seconds"]) < tgt else "NO")
        f = lambda k: "" if r.get(k) is None else f"{r[k]:.3f}"  # noqa: E731
        lines.append(f"{r['name']:<58} {r['seconds']:>9.3f} {f('max_s'):>7} {f('cpu_s'):>7} "
                     f"{f('plan_s'):>7} {'' if tgt is None else f'< {tgt:g}':>7}  {ok}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="jvideo bench studio", description=__doc__.split("\n")[0])
    ap.add_argument("--shots", type=int, default=10_000)
    ap.add_argument("--units", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--workdir", type=Path, default=None, help="keeps the synthetic library between runs")
    ap.add_argument("--browser", action="store_true",
                    help="also time the edits in the real page in headless Chromium")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = ap.parse_args(argv)
    work = args.workdir or Path(tempfile.gettempdir()) / "jvideo-bench-studio"
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    rows = bench_edits(work, args.shots, args.units, args.repeats)
    if args.browser:
        rows += bench_browser(work, args.shots, args.units, max(3, args.repeats // 2))
    print(_table(rows))
    meta = {"cpus": os.cpu_count(), "load_avg_start": load, "load_avg_end": os.getloadavg()[0],
            "when_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    print(f"machine: {meta['cpus']} CPUs, load average {load:.1f} at start and "
          f"{meta['load_avg_end']:.1f} at end, {meta['when_utc']} UTC")
    if args.json:
        from montage.plan import write_text_atomic
        write_text_atomic(args.json, json.dumps({"rows": rows, **meta}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
