"""`jvideo bench model`: the Jittor model vs the same diffusers PyTorch model, same weights,
measured side by side in one run with the same thread count.

    jvideo bench model --arch dit-s-2 --batch 8 --threads 2 [--json out.json] [--profile]

Reports forward and (where it applies) training-step (fwd + bwd + AdamW) medians in ms,
the ratio torch/jittor (>1 means Jittor is faster), and the peak resident memory of each
phase (VmHWM, reset between phases). Weights: random, copied PyTorch -> Jittor through
save_pretrained/from_pretrained, so both sides compute the same function.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ARCHES = ("dit-s-2", "dit-xl-2", "latte-1", "vae")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="jvideo bench model", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=ARCHES, default="dit-s-2")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 8 for DiT-S/2, else 1)")
    p.add_argument("--size", type=int, default=None,
                   help="latent side for DiT/Latte (default 32), image side for the VAE (default 128)")
    p.add_argument("--frames", type=int, default=4, help="Latte frames (default 4)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads on both sides (default 2)")
    p.add_argument("--repeat", type=int, default=10, help="timed iterations per phase")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations (Jittor compiles here)")
    p.add_argument("--no-train", action="store_true", help="forward only")
    p.add_argument("--reference", action="store_true",
                   help="also time Jittor with the fused kernels switched off")
    p.add_argument("--profile", action="store_true", help="print Jittor's per-op profile of one forward")
    p.add_argument("--json", type=Path, default=None, help="write the results here (atomically)")
    args = p.parse_args(argv)
    if args.batch is None:
        args.batch = 8 if args.arch == "dit-s-2" else 1
    if args.size is None:
        args.size = 128 if args.arch == "vae" else 32
    for name in ("batch", "size", "frames", "threads", "repeat"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    return args


def set_threads(n: int) -> None:
    """Same thread count for OpenMP (Jittor, oneDNN) and PyTorch; must precede Jittor's import."""
    if "jittor" in sys.modules:
        print("warning: Jittor already imported; OMP_NUM_THREADS may not apply", file=sys.stderr)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    import torch
    torch.set_num_threads(n)


# ---- memory -----------------------------------------------------------------------------

def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- the models and their inputs --------------------------------------------------------

def build_reference(arch: str, size: int, frames: int = 16):
    """(diffusers model, kind) with random weights, the published configs."""
    import torch
    from diffusers import AutoencoderKL, DiTTransformer2DModel, LatteTransformer3DModel

    from jvideo.models import dit_config, latte_config, sd_vae_config
    torch.manual_seed(0)
    if arch.startswith("dit"):
        cfg = dit_config("DiT-S/2" if arch == "dit-s-2" else "DiT-XL/2", sample_size=size).to_dict()
        model = DiTTransformer2DModel(**_ctor_kwargs(cfg, ("timestep_freq_shift",)))
    elif arch == "latte-1":
        # diffusers adds the whole temporal table, so its length must equal the frame count
        cfg = latte_config("Latte-1", sample_size=max(size, 64), video_length=frames).to_dict()
        model = LatteTransformer3DModel(**_ctor_kwargs(cfg))
    else:
        cfg = sd_vae_config().to_dict()
        model = AutoencoderKL(**_ctor_kwargs(cfg, ("temporal_compression",)))
    with torch.no_grad():   # zero-initialised layers would make the work trivially sparse
        for p in model.parameters():
            if float(p.abs().max()) == 0.0:
                p.normal_(0, 0.02)
    return model


def _ctor_kwargs(cfg: dict, drop: tuple = ()) -> dict:
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()
            if not k.startswith("_") and k not in drop}


def make_inputs(arch: str, batch: int, size: int, frames: int, seed: int = 0) -> dict:
    import numpy as np
    rng = np.random.default_rng(seed)
    if arch.startswith("dit"):
        return dict(x=rng.standard_normal((batch, 4, size, size)).astype(np.float32),
                    t=rng.integers(0, 1000, batch), y=rng.integers(0, 1000, batch))
    if arch == "latte-1":
        return dict(x=rng.standard_normal((batch, 4, frames, size, size)).astype(np.float32),
                    t=rng.integers(0, 1000, batch), text=rng.standard_normal((batch, 16, 4096)).astype(np.float32))
    return dict(x=rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32))


def torch_forward(arch: str, model, inp: dict):
    import torch
    if arch.startswith("dit"):
        return model(inp["x"], inp["t"], inp["y"]).sample
    if arch == "latte-1":
        return model(inp["x"], inp["t"], inp["text"]).sample
    return model(inp["x"]).sample


def jittor_forward(arch: str, model, inp: dict):
    if arch.startswith("dit"):
        return model(inp["x"], inp["t"], inp["y"])
    if arch == "latte-1":
        return model(inp["x"], inp["t"], inp["text"])
    return model(inp["x"])


# ---- timing -----------------------------------------------------------------------------

def time_interleaved(fns: dict[str, Callable[[], None]], warmup: int, repeat: int) -> dict[str, dict]:
    """Time several functions in alternation (a, b, a, b, ...) so a busy machine slows them
    alike; the ratio of medians is what the benchmark reports. Peak RSS is measured in a
    separate single pass per function (VmHWM reset before it)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    out = {}
    for name, fn in fns.items():
        reset = reset_peak_rss()
        fn()
        out[name] = {"median_ms": round(statistics.median(times[name]), 2), "min_ms": round(min(times[name]), 2),
                     "peak_rss_mb": round(peak_rss_mb(), 1) if reset else None}
    return out


def run(args: argparse.Namespace) -> dict:
    set_threads(args.threads)
    import numpy as np
    import torch

    from kernels import ops, runtime
    jt = runtime.import_jittor()
    from jvideo.models import from_pretrained

    arch = args.arch
    ref = build_reference(arch, args.size, args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        ref.save_pretrained(tmp)
        ours = from_pretrained(tmp)
    ref.eval()
    inp = make_inputs(arch, args.batch, args.size, args.frames)
    t_inp = {k: torch.from_numpy(v) for k, v in inp.items()}
    j_inp = {k: jt.array(v) for k, v in inp.items()}

    # same function: check before timing
    with torch.no_grad():
        want = torch_forward(arch, ref, t_inp).numpy()
    got = jittor_forward(arch, ours, j_inp).numpy()
    max_abs = float(np.abs(got - want).max())

    def t_fwd():
        with torch.no_grad():
            torch_forward(arch, ref, t_inp)

    def j_fwd():
        with jt.no_grad():
            jittor_forward(arch, ours, j_inp).sync()
        jt.sync_all(True)

    results = {"arch": arch, "batch": args.batch, "size": args.size, "threads": args.threads,
               "frames": args.frames if arch == "latte-1" else None,
               "parameters_m": round(sum(p.numel() for p in ref.parameters()) / 1e6, 2),
               "max_abs_diff": max_abs, "phases": {}}
    ph = results["phases"]
    fwd = {"forward/torch": t_fwd, "forward/jittor": j_fwd}
    if args.reference:
        def j_fwd_unfused():
            with ops.use_fused(False):
                j_fwd()
        fwd["forward/jittor-unfused"] = j_fwd_unfused
    ph.update(time_interleaved(fwd, args.warmup, args.repeat))

    if not args.no_train and arch != "vae":
        ref.train()
        ours.train()
        t_opt = torch.optim.AdamW(ref.parameters(), lr=1e-4)
        j_opt = jt.optim.AdamW(ours.parameters(), lr=1e-4)
        target = np.random.default_rng(1).standard_normal(want.shape).astype(np.float32)
        t_target, j_target = torch.from_numpy(target), jt.array(target)

        def t_train():
            loss = ((torch_forward(arch, ref, t_inp) - t_target) ** 2).mean()
            t_opt.zero_grad(set_to_none=True)
            loss.backward()
            t_opt.step()

        def j_train():
            loss = ((jittor_forward(arch, ours, j_inp) - j_target) ** 2).mean()
            j_opt.step(loss)
            jt.sync_all(True)

        ph.update(time_interleaved({"train/torch": t_train, "train/jittor": j_train}, args.warmup, args.repeat))
        ours.eval()

    for kind in ("forward", "train"):
        if f"{kind}/torch" in ph:
            results[f"{kind}_speedup"] = round(ph[f"{kind}/torch"]["median_ms"] / ph[f"{kind}/jittor"]["median_ms"], 3)
    if args.profile:
        results["profile"] = profile_forward(jt, lambda: j_fwd())
    return results


def profile_forward(jt, fn: Callable[[], None], top: int = 12) -> list[list]:
    """Jittor's per-op profile of one forward: the `top` rows by total time."""
    fn()
    with jt.profile_scope() as report:
        fn()
    header, rows = report[0], report[1:]
    col = header.index("TotalTime") if "TotalTime" in header else -1
    rows = sorted(rows, key=lambda r: -float(r[col])) if col >= 0 else rows
    return [header] + rows[:top]


def format_table(res: dict) -> str:
    shape = f"batch {res['batch']}, size {res['size']}" + (f", {res['frames']} frames" if res["frames"] else "")
    lines = [f"{res['arch']} ({res['parameters_m']}M params, {shape}), {res['threads']} threads, "
             f"max |jittor - torch| = {res['max_abs_diff']:.2e}",
             f"{'phase':<26}{'median ms':>11}{'min ms':>10}{'peak RSS MB':>13}"]
    for name, r in res["phases"].items():
        rss = "-" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
        lines.append(f"{name:<26}{r['median_ms']:>11.1f}{r['min_ms']:>10.1f}{rss:>13}")
    for kind in ("forward", "train"):
        if f"{kind}_speedup" in res:
            lines.append(f"{kind}: jittor is {res[f'{kind}_speedup']:.2f}x torch eager")
    return "\n".join(lines)


def machine() -> dict:
    """The machine a benchmark ran on, for its JSON: CPU, cores, date (UTC)."""
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(argv or []))
    res = run(args)
    res["machine"] = machine()
    print(format_table(res))
    if "profile" in res:
        print("jittor profile (one forward):")
        for row in res["profile"]:
            print("  " + "  ".join(str(c)[:60] for c in row))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".bench.", dir=str(args.json.parent))
        with os.fdopen(fd, "w") as f:
            json.dump(res, f, indent=2, default=str)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
