"""`jvideo bench distributed`: what Jittor's MPI data parallelism buys on this machine.

    jvideo bench distributed [--quick] [--ranks 2] [--json out.json]

Each measurement is a separate run of this module as a worker process:
* `1 process`: a plain run, OpenMP over all the cores it may use;
* `mpirun -np 1`: one rank, which Open MPI binds to one core;
* `mpirun -np N`: N ranks, one core each (the data-parallel run).
Scaling efficiency = throughput(N ranks) / (N x throughput(1 rank)): 100% when N ranks do N
times the work of one. `vs 1 process` compares with the plain run on the same machine. CPU
efficiency = CPU seconds of one rank / CPU seconds of all N ranks for the same work: the cost of
the parallel run itself, which other jobs on a shared machine hardly change.

Training: the video DiT's training step (forward, backward, gradient all-reduce, AdamW) at the
preset's shapes on synthetic latents and text tokens, the preset's global batch split over the
ranks; samples/s. Generation: `generate_shots` (one shot per call, shots split over ranks) with
the shipped checkpoint; shots/s. Each worker warms up (Jittor compiles ops on first use) before
the timed part, which starts and ends at a barrier. The load average is recorded beside each
figure: on a shared machine it explains more than the code does.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from jvideo.errors import JVideoError

PROMPTS = ("a red ball jumps in the desert", "a blue cube moves left in the forest",
           "a green star spins on the beach", "a yellow ring moves up in the city at night")


@dataclass
class BenchConfig:
    preset: str = "tiny"
    train_steps: int = 10
    train_warmup: int = 3
    shots: int = 4
    sample_steps: int = 10
    frames: int | None = None
    ranks: int = 2
    checkpoint: str = ""
    timeout_s: int = 1800


@dataclass
class Run:
    """One worker run: what was launched and what rank 0 measured."""
    task: str
    label: str
    ranks: int
    seconds: float
    items: int
    per_second: float
    cpu_seconds: list[float] = field(default_factory=list)   # per rank, timed part only
    load_before: float = 0.0
    load_after: float = 0.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, as every jvideo command
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = _Parser(prog="jvideo bench distributed", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="test preset, few steps and shots (a smoke run, not a measurement)")
    p.add_argument("--ranks", type=int, default=2, help="ranks of the data-parallel run (default 2)")
    p.add_argument("--train-steps", type=int, default=None, help="timed training steps (default 10)")
    p.add_argument("--shots", type=int, default=None, help="shots generated (default 4)")
    p.add_argument("--sample-steps", type=int, default=None, help="DDIM steps per shot (default 10)")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-generate", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="write the results here (atomically)")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> BenchConfig:
    from jvideo.generation.presets import SHIPPED_CHECKPOINT
    cfg = BenchConfig(checkpoint=str(SHIPPED_CHECKPOINT), ranks=args.ranks)
    if args.quick:
        cfg.preset, cfg.train_steps, cfg.train_warmup, cfg.shots, cfg.sample_steps, cfg.frames = "test", 4, 2, 2, 2, 4
    cfg.train_steps = args.train_steps or cfg.train_steps
    cfg.shots = args.shots or cfg.shots
    cfg.sample_steps = args.sample_steps or cfg.sample_steps
    if min(cfg.ranks, cfg.train_steps, cfg.shots, cfg.sample_steps) < 1:
        raise JVideoError("--ranks, --train-steps, --shots and --sample-steps must be at least 1")
    return cfg


# ---- launching workers ------------------------------------------------------------------

def mpirun_prefix(ranks: int) -> list[str]:
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise JVideoError("mpirun not found (apt-get install openmpi-bin libopenmpi-dev)")
    extra = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return [mpirun, *extra, "--oversubscribe", "-np", str(ranks)]


def launch(task: str, label: str, ranks: int | None, cfg: BenchConfig) -> Run:
    """ranks None: a plain process; else mpirun -np ranks. Returns rank 0's measurement."""
    with tempfile.TemporaryDirectory(prefix="jvideo-bench-dist-") as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "jvideo.distributed_bench", "--worker", task, json.dumps(asdict(cfg)), str(result)]
        if ranks is not None:
            cmd = mpirun_prefix(ranks) + cmd
        load_before = os.getloadavg()[0]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg.timeout_s,
                              cwd=str(Path(__file__).resolve().parents[1]))
        load_after = os.getloadavg()[0]
        if proc.returncode != 0 or not result.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise JVideoError(f"{label} ({task}) failed with exit {proc.returncode}: {tail[0]}")
        data = json.loads(result.read_text())
    return Run(task=task, label=label, ranks=data["ranks"], seconds=round(data["seconds"], 3), items=data["items"],
               per_second=round(data["items"] / data["seconds"], 3), cpu_seconds=data["cpu_seconds"],
               load_before=round(load_before, 2), load_after=round(load_after, 2))


# ---- workers (run inside the launched processes) ------------------------------------------

def _timed(fn, world) -> tuple[float, list[float]]:
    """Wall seconds of fn between two barriers on rank 0, and every rank's CPU seconds."""
    from jvideo import distributed as dist
    import numpy as np
    dist.barrier()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    cpu = time.process_time() - cpu
    dist.barrier()
    wall = time.perf_counter() - wall
    cpus = [float(x[0]) for x in dist.all_gather(np.array([cpu]))]
    return wall, cpus


def worker_train(cfg: BenchConfig) -> dict:
    import numpy as np

    from jvideo import distributed as dist
    from jvideo.generation.presets import get_preset
    from jvideo.generation.train import per_rank_preset
    from jvideo.generation.world_model import build_dit, init_for_training
    from kernels import runtime
    jt = runtime.import_jittor()
    world = dist.world()
    preset = get_preset(cfg.preset)
    b = per_rank_preset(preset, world.size).dit.batch
    jt.set_global_seed(preset.seed)
    dit = init_for_training(build_dit(preset))
    optimizer = jt.optim.AdamW(dit.parameters(), lr=1e-4, weight_decay=0.0)
    dist.broadcast_module(dit)
    dit.train()
    rng = np.random.default_rng(world.rank)
    c, s, t = preset.vae.latent_channels, preset.latent_size, preset.frames
    f32 = np.float32
    x = jt.array(rng.standard_normal((b, c, t + 1, s, s)).astype(f32))     # reference frame + clip
    target = jt.array(rng.standard_normal((b, c, t, s, s)).astype(f32))
    steps = jt.array(rng.integers(0, preset.timesteps, b).astype(f32))
    emb = jt.array(rng.standard_normal((b, preset.text_tokens, 384)).astype(f32))   # MiniLM token width
    mask = jt.array(np.ones((b, preset.text_tokens), f32))

    def step() -> None:
        err = dit(x, steps, emb, mask)[:, :, 1:] - target
        optimizer.step((err * err).mean())

    def run(n: int) -> None:
        for _ in range(n):
            step()
        jt.sync_all(True)

    run(cfg.train_warmup)
    wall, cpus = _timed(lambda: run(cfg.train_steps), world)
    return {"ranks": world.size, "seconds": wall, "items": cfg.train_steps * preset.dit.batch, "cpu_seconds": cpus}


def worker_generate(cfg: BenchConfig) -> dict:
    from jvideo import distributed as dist
    from jvideo.generation.batch import generate_shots
    from jvideo.generation.sample import Generator
    world = dist.world()
    gen = Generator.load(cfg.checkpoint)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(cfg.shots)]
    # Warm-up: every rank compiles its ops on one shot first, and embeds every prompt: otherwise
    # whichever run comes first also pays loading MiniLM (the embeddings are cached on disk for
    # the runs after it), which made the plain process look 2.5x slower than it is.
    gen.generate(PROMPTS[0], None, seed=0, frames=cfg.frames, steps=cfg.sample_steps)
    gen.text.encode(sorted(set(prompts)) + [""])

    def run() -> None:
        generate_shots(gen, prompts, [None] * cfg.shots, list(range(cfg.shots)), frames=cfg.frames,
                       steps=cfg.sample_steps, progress=False)

    wall, cpus = _timed(run, world)
    return {"ranks": world.size, "seconds": wall, "items": cfg.shots, "cpu_seconds": cpus}


def worker_main(task: str, cfg_json: str, result: str) -> int:
    from jvideo import distributed as dist
    from jvideo.generation.state import write_json
    cfg = BenchConfig(**json.loads(cfg_json))
    data = worker_train(cfg) if task == "train" else worker_generate(cfg)
    if dist.is_main():
        write_json(Path(result), data)
    return 0


# ---- the report -------------------------------------------------------------------------

def measure(cfg: BenchConfig, train: bool = True, generate: bool = True) -> dict:
    out: dict = {"config": asdict(cfg), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "cores": os.cpu_count(), "runs": []}
    tasks = (["train"] if train else []) + (["generate"] if generate else [])
    for task in tasks:
        runs = [launch(task, "1 process", None, cfg), launch(task, "mpirun -np 1", 1, cfg),
                launch(task, f"mpirun -np {cfg.ranks}", cfg.ranks, cfg)]
        one_rank, n_ranks, plain = runs[1], runs[2], runs[0]
        out["runs"] += [asdict(r) for r in runs]
        out[task] = {"scaling_efficiency": round(n_ranks.per_second / (cfg.ranks * one_rank.per_second), 3),
                     "speedup_vs_one_rank": round(n_ranks.per_second / one_rank.per_second, 3),
                     "speedup_vs_one_process": round(n_ranks.per_second / plain.per_second, 3),
                     # Work per CPU second, N ranks against one: the parallel overhead (all-reduce,
                     # duplicated work), much less sensitive to other jobs on the machine than wall time.
                     "cpu_efficiency": round(sum(one_rank.cpu_seconds) / sum(n_ranks.cpu_seconds), 3)}
    return out


def format_report(res: dict) -> str:
    cfg = res["config"]
    units = {"train": "samples/s", "generate": "shots/s"}
    what = {"train": f"DiT training step, {cfg['preset']} preset, {cfg['train_steps']} steps",
            "generate": f"generate_shots, {cfg['shots']} shots x {cfg['sample_steps']} DDIM steps, shipped checkpoint"}
    lines = [f"distributed benchmark, {res['date']}, {res['cores']} cores"]
    for task in ("train", "generate"):
        if task not in res:
            continue
        lines.append(f"{task}: {what[task]}")
        lines.append(f"  {'run':<16}{units[task]:>12}{'wall s':>9}  {'CPU s per rank':<18}{'load avg':>12}")
        for r in (r for r in res["runs"] if r["task"] == task):
            cpu = " ".join(f"{c:.1f}" for c in r["cpu_seconds"])
            lines.append(f"  {r['label']:<16}{r['per_second']:>12.3f}{r['seconds']:>9.2f}  {cpu:<18}"
                         f"{r['load_before']:>5.1f}->{r['load_after']:<5.1f}")
        s = res[task]
        lines.append(f"  scaling efficiency {s['scaling_efficiency'] * 100:.0f}% "
                     f"({s['speedup_vs_one_rank']:.2f}x one rank; {s['speedup_vs_one_process']:.2f}x one plain process); "
                     f"CPU efficiency {s['cpu_efficiency'] * 100:.0f}% (work per CPU second against one rank)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(argv or []))
    cfg = config_from(args)
    res = measure(cfg, train=not args.skip_train, generate=not args.skip_generate)
    print(format_report(res))
    if args.json:
        from jvideo.generation.state import write_json
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        from kernels import runtime
        runtime.configure()
        sys.exit(worker_main(sys.argv[2], sys.argv[3], sys.argv[4]))
    sys.exit(main(sys.argv[1:]))
