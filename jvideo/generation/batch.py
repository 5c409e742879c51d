"""Many shots at once, divided across MPI ranks: the core of `jvideo generate --prompts` and of
the film pipeline.

Each shot is sampled alone (a batch of one) from its own seed. Batching several shots in one
call could change float results (matmul blocking depends on the batch), and then the way shots
fall on ranks would change the bytes; one shot per call makes the result independent of the
number of ranks: `mpirun -np N` gives exactly what one process gives.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jvideo import distributed as dist
from jvideo.errors import JVideoError
from kernels import runtime

from .presets import LOOK_SCALE


def generate_shots(generator, prompts: list[str], references: list[np.ndarray | None], seeds: list[int],
                   frames: int | None = None, steps: int = 25, cfg: float = 4.0,
                   progress: bool = True, ref_cfg: float = 1.0, hold: float = 0.0) -> list[np.ndarray]:
    """Generate one shot per prompt -> list of (T, H, W, 3) uint8, in the order of `prompts`.

    references[i]: (H, W, 3) uint8 identity reference of shot i, or None (text only).
    seeds[i]: the seed of shot i's starting noise; the same (prompt, reference, seed) always
    gives the same frames. Under mpirun the shots are split into contiguous blocks over the
    ranks and gathered back, so every rank returns the full list, identical to a one-process
    call. Every rank must call this with the same arguments.
    """
    n = len(prompts)
    if len(references) != n or len(seeds) != n:
        raise JVideoError(f"generate_shots: {n} prompts but {len(references)} references and {len(seeds)} seeds")
    frames = frames or generator.preset.frames
    size = generator.preset.size
    # Check every request on every rank first: a bad prompt fails the job before any work.
    for i, (prompt, ref) in enumerate(zip(prompts, references)):
        generator.check_request(prompt, frames, steps, cfg, ref_cfg, hold)
        if ref is not None and (ref.dtype != np.uint8 or ref.shape != (size, size, 3)):
            raise JVideoError(f"shot {i}: the reference must be ({size}, {size}, 3) uint8, got {ref.shape} {ref.dtype}")
    world = dist.world()
    start, stop = dist.bounds(n, world.rank, world.size)
    mine: list[np.ndarray] = []
    error: str | None = None
    bar = _bar(stop - start, world, progress)
    try:
        for i in range(start, stop):
            runtime.raise_if_interrupted()
            mine.append(generator.generate(prompts[i], references[i], seed=int(seeds[i]), frames=frames,
                                           steps=steps, cfg=cfg, ref_cfg=ref_cfg, hold=hold))
            bar.update(1)
    except Exception as err:  # reported on every rank below; a lone raise would hang the others
        if not world.distributed:
            raise
        error = str(err) if isinstance(err, JVideoError) else f"{type(err).__name__}: {err}"
    finally:
        bar.close()
    dist.fail_together(error)
    if not world.distributed:
        return mine
    block = np.stack(mine) if mine else np.zeros((0, frames, size, size, 3), np.uint8)
    shots = [shot for part in dist.all_gather(block) for shot in part]
    assert len(shots) == n
    return shots


def _bar(total: int, world: dist.World, progress: bool):
    from tqdm import tqdm
    desc = "shots" if not world.distributed else f"shots (rank 0 of {world.size})"
    return tqdm(total=total, desc=desc, unit="shot", dynamic_ncols=True,
                disable=not progress or not world.is_main)


# ---- `jvideo generate --prompts FILE --out-dir DIR` ---------------------------------------

@dataclass
class PromptLine:
    """A prompt of a prompts file: `line` is its 1-based line number (the files' names)."""
    line: int
    prompt: str


def read_prompts(path: Path) -> list[PromptLine]:
    """One prompt per line; blank lines and lines starting with '#' are skipped (their line
    numbers stay used, so editing one line never changes another prompt's seed or file)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JVideoError(f"{path}: prompts file not found") from None
    except UnicodeDecodeError:
        raise JVideoError(f"{path}: not a UTF-8 text file") from None
    prompts = [PromptLine(i + 1, line.strip()) for i, line in enumerate(text.splitlines())
               if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise JVideoError(f"{path}: no prompts (one per line)")
    return prompts


def shot_name(line: int) -> str:
    return f"shot-{line:04d}"


def write_shots(out_dir: Path, lines: list[PromptLine], shots: list[np.ndarray], seeds: list[int],
                settings: dict) -> list[Path]:
    """Write OUT/shot-LLLL.mp4 + .png per prompt and OUT/shots.json (each file atomically)."""
    from .media import frame_strip, write_mp4, write_png
    from .state import write_json
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    records = []
    for pl, frames, seed in zip(lines, shots, seeds):
        mp4 = out_dir / f"{shot_name(pl.line)}.mp4"
        write_mp4(frames, mp4)
        write_png(frame_strip(frames), mp4.with_suffix(".png"))
        written.append(mp4)
        records.append({"file": mp4.name, "line": pl.line, "prompt": pl.prompt, "seed": seed})
    write_json(out_dir / "shots.json", {**settings, "shots": records})
    return written


def run_prompts_file(checkpoint: str | Path, prompts_file: Path, out_dir: Path, identity: str | None = None,
                     seed: int = 0, frames: int | None = None, steps: int = 25, cfg: float = 4.0,
                     ref_cfg: float = 1.0, hold: float = 0.0, composite: bool = True,
                     look_scale: float = LOOK_SCALE) -> dict:
    """Generate every prompt of a file; rank 0 writes the shots. Returns a summary (all ranks).
    `composite`: Generator.composite (a held cut-out laid over the decoded frames); `look_scale`:
    Generator.look_scale (classifier guidance towards the stated look)."""
    lines = read_prompts(prompts_file)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise JVideoError(f"{out_dir}: exists and is not a folder")
    from .media import load_reference   # Jittor loads here: bad input is refused before
    from .sample import Generator
    gen = Generator.load(checkpoint)
    gen.composite = composite
    gen.look_scale = look_scale
    reference = load_reference(identity, gen.preset.size) if identity else None
    seeds = [seed + pl.line - 1 for pl in lines]   # base seed + line index
    for pl in lines:   # name the line of a bad prompt (generate_shots checks again, by index)
        try:
            gen.check_request(pl.prompt, frames or gen.preset.frames, steps, cfg, ref_cfg, hold)
        except JVideoError as err:
            raise JVideoError(f"{prompts_file} line {pl.line}: {err}") from None
    world = dist.world()
    start = time.time()
    shots = generate_shots(gen, [pl.prompt for pl in lines], [reference] * len(lines), seeds,
                           frames=frames, steps=steps, cfg=cfg, ref_cfg=ref_cfg, hold=hold)
    seconds = time.time() - start
    if world.is_main:
        settings = {"checkpoint": str(checkpoint), "identity": identity, "base_seed": seed,
                    "frames": frames or gen.preset.frames, "steps": steps, "cfg": cfg, "ref_cfg": ref_cfg,
                    "hold": hold, "composite": composite, "look_scale": gen.applied_look_scale}
        write_shots(out_dir, lines, shots, seeds, settings)
    dist.barrier()  # no rank reports success before the files exist
    return {"shots": len(shots), "seconds": seconds, "ranks": world.size, "out_dir": str(out_dir)}
