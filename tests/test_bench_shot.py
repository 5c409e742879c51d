"""`jvideo bench shot`: every way a shot is sampled, timed side by side, and what a held shot's
first pass costs (Generator.plate_steps)."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from jvideo.generation import bench_shot
from jvideo.generation.presets import SHIPPED_CHECKPOINT
from jvideo.generation.sample import Generator

ROOT = Path(__file__).resolve().parents[1]


def test_a_held_shot_samples_its_plate_in_plate_steps():
    """The held shot's first pass only gives the paste a plate: min(steps, plate_steps) DiT
    passes, then `steps` for the held pass; a text-only shot takes `steps` and is unchanged."""
    from jvideo.toyworld import character, reference_frame
    gen = Generator.load(SHIPPED_CHECKPOINT)
    calls = []

    class Counting:
        def __getattr__(self, name):
            return getattr(gen.dit, name)

        def __call__(self, *args, **kwargs):
            calls.append(1)
            return gen.dit(*args, **kwargs)

    counted = replace(gen, dit=Counting(), plate_steps=3)
    ref = reference_frame(np.random.default_rng(3), character("Pip").look, 64)
    prompt = "Pip moves to the right across the grass, close-up"
    counted.generate(prompt, ref, seed=1, frames=4, steps=6, hold=1.0)
    assert len(calls) == 3 + 6
    calls.clear()
    replace(counted, plate_steps=25).generate(prompt, ref, seed=1, frames=4, steps=6, hold=1.0)
    assert len(calls) == 6 + 6
    calls.clear()
    text_only = counted.generate(prompt, None, seed=1, frames=4, steps=6)
    assert len(calls) == 6
    assert np.array_equal(text_only, gen.generate(prompt, None, seed=1, frames=4, steps=6))


def test_bench_shot_times_every_arm_and_writes_json(tmp_path, capsys):
    out = tmp_path / "shot.json"
    assert bench_shot.main(["--frames", "4", "--steps", "2", "--repeat", "1", "--warmup", "0",
                            "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["arms"]) == {"text only", "held reference (default)", "held reference, before 2026-12-07",
                                "stated look, guided (default)", "stated look, unguided"}   # tiny-v21 has a look classifier
    assert all(r["median_s"] > 0 for r in res["arms"].values())
    assert (res["frames"], res["steps"], res["target_s"]) == (4, 2, 10.0)
    table = capsys.readouterr().out
    assert "x text only" in table and "held reference (default)" in table


def test_bench_shot_bad_input_is_one_line(tmp_path):
    for args, needle in ((["--repeat", "0"], "--repeat must be >= 1"),
                         (["--checkpoint", str(tmp_path / "none")], "none")):
        proc = subprocess.run([sys.executable, "-m", "cli", "bench", "shot", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert needle in proc.stderr.strip().splitlines()[-1]   # argparse prints its usage first
