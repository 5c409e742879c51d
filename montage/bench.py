"""`jvideo bench montage`: planning, re-planning, rendering and indexing speed, measured in one run.

Targets (issue 6): plan 100 units against 10,000 shots < 1 s; re-plan after a one-sentence edit
< 0.2 s; render a 3-minute 854x480 film < 90 s on 2 cores; index >= 20x real time (part A's
benchmark function). Planning uses synthetic shot records with random unit-norm embeddings
(MiniLM is not timed: unit texts are embedded once and cached in a real run); rendering uses
synthetic lavfi footage written once into the work folder.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIM = 384


@dataclass
class SynthShot:
    id: int
    source: str
    start: float
    end: float
    lab: tuple
    brightness: float
    sharpness: float
    motion: float
    camera: str
    text: str


def synthetic_library(n: int, seed: int = 0, vocab: int = 2000, per_source: int = 8):
    """n shot records + (n, 384) unit embeddings; texts of 6 words from a `vocab`-word list."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(vocab)]
    shots = []
    for i in range(n):
        start = (i % per_source) * 6.0
        shots.append(SynthShot(
            id=i + 1, source=f"/footage/source_{i // per_source:05d}.mp4", start=start,
            end=start + float(rng.uniform(1.5, 9.0)),
            lab=tuple(rng.uniform([15, -40, -40], [90, 40, 40])), brightness=float(rng.uniform(0, 1)),
            sharpness=float(rng.uniform(0, 1)), motion=float(rng.uniform(0, 1)),
            camera=str(rng.choice(["static", "pan", "zoom"])),
            text=" ".join(rng.choice(words, 6))))
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return shots, v


def synthetic_units(shots, vecs, n: int, seed: int = 1):
    """n units that paraphrase random shots: their text shares words, their vector is near."""
    from .text import Unit, reading_seconds
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(shots), n, replace=False)
    units, uv = [], []
    for r in rows:
        words = shots[r].text.split()[:3] + ["the", "scene", "shows", f"x{rng.integers(1e6)}"]
        text = " ".join(rng.permutation(words))
        units.append(Unit(text=text, duration=reading_seconds(text) + float(rng.uniform(0, 3))))
        u = vecs[r] + 0.8 * rng.normal(size=DIM).astype(np.float32) / np.sqrt(DIM) * 8
        uv.append(u / np.linalg.norm(u))
    return units, np.stack(uv).astype(np.float32)


def _median_time(fn, repeats: int) -> tuple[float, object, float]:
    """Median wall seconds, the last result, and median CPU seconds of this process (less
    sensitive than wall time to other jobs on a shared machine)."""
    times, cpu, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times), out, statistics.median(cpu)


def bench_planning(n_shots: int = 10_000, n_units: int = 100, repeats: int = 7) -> list[dict]:
    from .plan import PlanConfig, ShotTable, plan
    from .text import Unit
    shots, vecs = synthetic_library(n_shots)
    units, uv = synthetic_units(shots, vecs, n_units)
    cfg = PlanConfig()
    t_table, table, c_table = _median_time(lambda: ShotTable.from_shots(shots, vecs), 3)
    t_plan, full, c_plan = _median_time(lambda: plan(units, table, uv, cfg), repeats)
    rows = [
        {"name": f"shot table ({n_shots} shots, once per library)", "seconds": t_table,
         "cpu_s": c_table, "target_s": None},
        {"name": f"plan {n_units} units / {n_shots} shots ({len(full.slots())} cuts, {full.solver})",
         "seconds": t_plan, "cpu_s": c_plan, "target_s": 1.0},
    ]
    for at in (n_units // 2, 0):
        edited = list(units)
        edited[at] = Unit(text="an edited sentence about w1 and w2", duration=units[at].duration + 0.7)
        uv2 = uv.copy()
        uv2[at] = vecs[7]
        t_re, re, c_re = _median_time(lambda: plan(edited, table, uv2, cfg, previous=full), repeats)
        ids = [s.shot_id for s in re.slots()]
        assert len(ids) == len(set(ids)), "re-plan reused a shot"
        what = "middle" if at else "first (worst case: everything re-solved)"
        rows.append({"name": f"re-plan after editing unit {at + 1} of {n_units} ({what}, {re.solver})",
                     "seconds": t_re, "cpu_s": c_re, "target_s": 0.2 if at else None})
    return rows


def render_footage(folder: Path, n_clips: int) -> list[Path]:
    """n_clips 20-second 854x480 clips of 3 shots each (part A's benchmark footage)."""
    from .indexer import make_benchmark_footage
    return make_benchmark_footage(folder, seconds=20.0 * n_clips, clip_s=20.0)


def bench_render(workdir: Path, film_seconds: float = 180.0, subtitles: bool = True,
                 transition: str = "cut", workers: int = 2) -> list[dict]:
    """Render a `film_seconds` 854x480 film cut from synthetic footage: cold cache, then after
    one edited sentence (warm cache)."""
    from .plan import PlanConfig, ShotTable, plan
    from .render import RenderConfig, probe, render_film
    from .text import Unit
    unit_s = 4.0
    n_units = int(round(film_seconds / unit_s))
    n_clips = max(1, int(np.ceil(n_units / 3)))
    t = time.perf_counter()
    clips = render_footage(workdir / "footage", n_clips)
    t_footage = time.perf_counter() - t
    third = 20.0 / 3
    shots = [SynthShot(id=3 * k + j + 1, source=str(c), start=j * third, end=(j + 1) * third,
                       lab=(50.0, 0.0, 0.0), brightness=0.5, sharpness=0.6, motion=0.2,
                       camera="static", text=f"clip {k} shot {j}")
             for k, c in enumerate(clips) for j in range(3)]
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(len(shots), DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    table = ShotTable.from_shots(shots, vecs)
    units = [Unit(text=f"Sentence number {i} of the benchmark film.", duration=unit_s) for i in range(n_units)]
    uv = vecs[:n_units]
    cfg = PlanConfig(pace="normal")
    p1 = plan(units, table, uv, cfg)
    rcfg = RenderConfig(subtitles=subtitles, transition=transition, workers=workers)
    cache = workdir / f"cache_{os.getpid()}_{time.time_ns()}"
    out = workdir / "bench_film.mp4"
    cpu0 = _child_cpu()
    r1 = render_film(p1, out, rcfg, cache)
    cpu1 = _child_cpu() - cpu0
    dur = float(probe(out)["format"]["duration"])
    units[n_units // 2] = Unit(text="An edited sentence in the middle.", duration=unit_s)
    p2 = plan(units, table, uv, cfg, previous=p1)
    cpu0 = _child_cpu()
    r2 = render_film(p2, out, rcfg, cache)
    cpu2 = _child_cpu() - cpu0
    for f in cache.glob("*"):
        f.unlink()
    cache.rmdir()
    label = f"{dur:.0f} s 854x480 film, {r1.segments} cuts, {transition}{', captions' if subtitles else ''}"
    return [
        {"name": f"footage for the render benchmark ({len(clips)} clips, once)", "seconds": t_footage, "target_s": None},
        {"name": f"render {label} (cold cache)", "seconds": r1.seconds,
         "target_s": 90.0 if film_seconds >= 180 else None, "ffmpeg_cpu_s": cpu1},
        {"name": f"re-render after a one-sentence edit ({len(r2.rendered)} segment re-encoded)",
         "seconds": r2.seconds, "target_s": None, "ffmpeg_cpu_s": cpu2},
    ]


def _child_cpu() -> float:
    """CPU seconds used by finished child processes (ffmpeg) so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bench_index(workdir: Path, seconds: float) -> list[dict]:
    from .indexer import benchmark_index_speed
    r = benchmark_index_speed(workdir, seconds=seconds)
    return [{"name": f"index {r['video_seconds']:.0f} s of 854x480 footage ({r['shots']} shots): "
                     f"{r['realtime_factor']:.1f}x real time (target >= 20x)",
             "seconds": r["wall_s"], "target_s": r["video_seconds"] / 20.0, "realtime_factor": r["realtime_factor"]}]


def _table(rows: list[dict]) -> str:
    lines = [f"{'measurement':<92} {'wall s':>9} {'cpu s':>8} {'target':>8}  ok"]
    for r in rows:
        tgt = r.get("target_s")
        ok = "" if tgt is None else ("yes" if r["seconds"] < tgt else "NO")
        cpu = r.get("cpu_s", r.get("ffmpeg_cpu_s"))
        lines.append(f"{r['name']:<92} {r['seconds']:>9.3f} {'' if cpu is None else f'{cpu:.3f}':>8} "
                     f"{'' if tgt is None else f'< {tgt:g}':>8}  {ok}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="jvideo bench montage", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a 30-second film and 20 s of indexing")
    ap.add_argument("--skip-render", action="store_true")
    ap.add_argument("--skip-index", action="store_true")
    ap.add_argument("--film-seconds", type=float, default=180.0)
    ap.add_argument("--transition", choices=["cut", "crossfade"], default="cut")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None, help="keeps the synthetic footage between runs")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = ap.parse_args(argv)
    film_s = 30.0 if args.quick else args.film_seconds
    work = args.workdir or Path(tempfile.gettempdir()) / "jvideo-bench-montage"
    work.mkdir(parents=True, exist_ok=True)
    rows = bench_planning()
    print(_table(rows), flush=True)
    if not args.skip_render:
        rows += bench_render(work / "render", film_s, transition=args.transition, workers=args.workers)
    if not args.skip_index:
        try:
            rows += bench_index(work / "index", 20.0 if args.quick else 60.0)
        except ImportError as err:
            print(f"index benchmark unavailable: {err}", file=sys.stderr)
    meta = {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "when_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    print()
    print(_table(rows))
    print(f"machine: {meta['cpus']} CPUs, load average {meta['load_avg'][0]:.1f} at start of report, {meta['when_utc']} UTC")
    if args.json:
        from .plan import write_text_atomic
        write_text_atomic(args.json, json.dumps({"rows": rows, **meta}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
