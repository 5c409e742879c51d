"""`jvideo bench kernels`: fused Jittor kernels vs the reference path, PyTorch eager and
torch.compile, measured side by side in one run.

For each op at DiT-S/2 (C=384, 6 heads) and DiT-XL/2 (C=1152, 16 heads) shapes, batch 8, 256
and 1024 tokens: median milliseconds after warm-up, speed-ups, achieved GB/s against a
STREAM-style triad measured in the same run (jt.code, OpenMP), GFLOP/s and extra memory for
attention; attention at jvideo's own short sequences too (tinyS: 16 tokens, tinyT: 17
positions); then one whole DiT block (kernels/block.py), forward and forward+backward.
Thread counts are set on both sides (OMP_NUM_THREADS before Jittor loads, torch.set_num_threads).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

SHAPES = {"S/2": (384, 6), "XL/2": (1152, 16)}  # hidden size, heads
BATCH = 8
IMPLS = ("fused", "unfused", "eager", "compile")


@dataclass
class Row:
    op: str
    model: str
    tokens: int
    shape: str
    ms: dict[str, float] = field(default_factory=dict)
    bytes_moved: int = 0          # compulsory traffic: inputs read once + outputs written once
    flops: float = 0.0
    extra_mem: dict[str, int] = field(default_factory=dict)
    max_err: float = 0.0          # fused vs eager, max abs difference
    triad_gbps: float = 0.0       # STREAM triad measured right after this row

    def speedup(self, other: str) -> float | None:
        if other in self.ms and "fused" in self.ms:
            return self.ms[other] / self.ms["fused"]
        return None


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="jvideo bench kernels", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer shapes and repeats (< 2 min)")
    p.add_argument("--json", metavar="F", help="write the results as JSON")
    p.add_argument("--plot", metavar="F.png", help="write a bar chart (speed-up over PyTorch eager)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for both sides")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement")
    p.add_argument("--omp-wait", choices=("passive", "active"), default="passive",
                   help="OMP_WAIT_POLICY for both sides (default passive: on a shared or "
                        "oversubscribed machine, spinning OpenMP workers starve the next region)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--ops", default="", help="comma-separated subset of ops and/or 'block' (default: all)")
    p.add_argument("--markdown", metavar="F.json", help="print a saved --json result as Markdown tables "
                   "and exit (measures nothing)")
    return p.parse_args(argv)


def set_threads(n: int, wait_policy: str) -> None:
    """Before Jittor and torch load: the same OpenMP threads and wait policy on both sides."""
    if "jittor" in sys.modules or "torch" in sys.modules:
        print("warning: Jittor or torch already loaded; --threads/--omp-wait may not apply",
              file=sys.stderr)
    os.environ["OMP_NUM_THREADS"] = str(n)
    os.environ["OMP_WAIT_POLICY"] = wait_policy.upper()


def interleaved_ms(cases: dict[str, tuple[Callable[[], object], Callable[[object], None]]],
                   warmup: int, repeats: int) -> dict[str, float]:
    """Median ms per case; the cases run round-robin, so load that drifts during the run (a
    shared machine) hits every implementation alike instead of whichever ran last."""
    for fn, sync in cases.values():
        for _ in range(warmup):
            sync(fn())
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for name, (fn, sync) in cases.items():
            t0 = time.perf_counter()
            sync(fn())
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        from kernels import runtime
        self.jt = runtime.import_jittor()
        import numpy as np
        import torch
        self.np, self.torch = np, torch
        torch.set_num_threads(args.threads)
        from kernels import ops, reference
        self.ops, self.ref = ops, reference
        self.rng = np.random.default_rng(0)
        self.repeats = args.repeats or (3 if args.quick else 7)
        self.warmup = 1 if args.quick else 2
        self.rows: list[Row] = []
        self.block_rows: list[dict] = []

    # -- timing helpers -------------------------------------------------------------------------
    def _sync_jt(self, out) -> None:
        outs = out if isinstance(out, (list, tuple)) else [out]
        for o in outs:
            o.sync()
        self.jt.sync_all(True)

    def jt_case(self, fn, fused: bool):
        def run():
            with self.ops.use_fused(fused):
                return fn()
        return run, self._sync_jt

    @staticmethod
    def torch_case(fn, no_grad: bool = True):
        def run():
            if no_grad:
                import torch
                with torch.no_grad():
                    return fn()
            return fn()
        return run, lambda out: None

    def arr(self, *shape):
        return self.rng.standard_normal(shape).astype("float32")

    # -- bandwidth probe ------------------------------------------------------------------------
    def triad_gbps(self, repeats: int | None = None) -> tuple[float, int]:
        """STREAM triad a = b + s c over 3 x 128 MiB in a jt.code OpenMP loop; GB/s, threads."""
        jt = self.jt
        n = 1 << 25
        if not hasattr(self, "_triad_in"):
            self._triad_in = jt.array(self.arr(n)), jt.array(self.arr(n))
        b, c = self._triad_in
        src = """
            const long n = in0_shape0;
            #pragma omp parallel for schedule(static)
            for (long i = 0; i < n; i++) out0_p[i] = in0_p[i] + 3.0f * in1_p[i];
            out1_p[0] = (float)omp_get_max_threads();
        """
        best = []
        threads = 0
        for _ in range((repeats or self.repeats) + 2):
            t0 = time.perf_counter()
            a, th = jt.code([(n,), (1,)], ["float32", "float32"], [b, c], cpu_header="#include <omp.h>",
                            cpu_src=src)
            a.sync()
            jt.sync_all(True)
            best.append(time.perf_counter() - t0)
            threads = int(th.numpy()[0])
        t = statistics.median(best[2:])
        return 3 * n * 4 / t / 1e9, threads

    # -- per-op measurements --------------------------------------------------------------------
    def measure(self, op: str, model: str, tokens: int, make: Callable, jfn: Callable, tfn: Callable,
                bytes_moved: int, flops: float = 0.0, extra_mem: dict | None = None, repeats=None) -> Row:
        jt, torch, np = self.jt, self.torch, self.np
        inputs = make()
        j_in = [jt.array(a) for a in inputs]
        t_in = [torch.tensor(a) for a in inputs]
        row = Row(op, model, tokens, "x".join(map(str, inputs[0].shape)), bytes_moved=bytes_moved,
                  flops=flops, extra_mem=extra_mem or {})
        cases = {"fused": self.jt_case(lambda: jfn(*j_in), True),
                 "unfused": self.jt_case(lambda: jfn(*j_in), False),
                 "eager": self.torch_case(lambda: tfn(*t_in))}
        if not self.args.no_compile:
            cfn = torch.compile(tfn, dynamic=False)
            cases["compile"] = self.torch_case(lambda: cfn(*t_in))
        row.ms = interleaved_ms(cases, self.warmup, repeats or self.repeats)
        with self.ops.use_fused(True):
            fused_out = jfn(*j_in).numpy()
        with torch.no_grad():
            eager_out = tfn(*t_in).numpy()
        row.max_err = float(np.abs(fused_out - eager_out).max())
        # bandwidth measured next to the row: the machine's load drifts during a run
        row.triad_gbps = self.triad_gbps(repeats=3)[0]
        jt.gc()
        self.rows.append(row)
        self.print_row(row)
        return row

    def run_ops(self) -> None:
        import torch.nn.functional as F
        ops = self.ops
        wanted = set(filter(None, self.args.ops.split(",")))
        configs = [("S/2", 256)] if self.args.quick else \
            [(m, n) for m in SHAPES for n in (256, 1024)]
        for model, N in configs:
            C, H = SHAPES[model]
            D = C // H
            B = BATCH
            act = B * N * C * 4
            specs = {
                "layer_norm": (lambda: [self.arr(B, N, C), self.arr(C), self.arr(C)],
                               lambda x, w, b: ops.layer_norm(x, w, b, eps=1e-6),
                               lambda x, w, b: F.layer_norm(x, (C,), w, b, eps=1e-6), 2 * act),
                "layernorm_modulate": (lambda: [self.arr(B, N, C), self.arr(B, C), self.arr(B, C)],
                                       lambda x, s, c: ops.layernorm_modulate(x, s, c),
                                       lambda x, s, c: F.layer_norm(x, (C,), eps=1e-6) * (1 + c[:, None]) + s[:, None],
                                       2 * act),
                "bias_gelu": (lambda: [self.arr(B, N, 4 * C), self.arr(4 * C)],
                              lambda x, b: ops.bias_gelu(x, b),
                              lambda x, b: F.gelu(x + b, approximate="tanh"), 2 * 4 * act),
                "gated_residual": (lambda: [self.arr(B, N, C), self.arr(B, C), self.arr(B, N, C)],
                                   lambda x, g, y: ops.gated_residual(x, g, y),
                                   lambda x, g, y: x + g[:, None] * y, 3 * act),
                "rms_norm": (lambda: [self.arr(B, N, H, D), self.arr(D)],
                             lambda x, w: ops.rms_norm(x, w),
                             lambda x, w: F.rms_norm(x, (D,), w, eps=1e-6), 2 * act),
                "group_norm_silu": (lambda: [self.arr(B, C, N), self.arr(C), self.arr(C)],
                                    lambda x, w, b: ops.group_norm(x, 32, w, b, silu=True),
                                    lambda x, w, b: F.silu(F.group_norm(x, 32, w, b, eps=1e-6)), 2 * act),
            }
            for name, (make, jfn, tfn, nbytes) in specs.items():
                if not wanted or name in wanted:
                    self.measure(name, model, N, make, jfn, tfn, nbytes)
            if not wanted or "attention" in wanted:
                self.measure_attention(model, B, H, N, D)
        if not wanted or "attention" in wanted:
            # jvideo's own sampling shapes (the shipped tiny Latte, 6 heads of 32, two guidance
            # branches): tinyS, spatial attention over a frame's 16 tokens for 17 frames; tinyT, temporal
            # attention over 17 positions for 16 tokens.
            for name, batch, n in (("tinyS", 2 * 17, 16), ("tinyT", 2 * 16, 17)):
                self.measure_attention(name, batch, 6, n, 32)

    def measure_attention(self, model: str, B: int, H: int, N: int, D: int) -> Row:
        """Self-attention (B, H, N, D); extra memory: the fused kernel's per-thread tiles, which
        it sizes to the problem (16 or 32 query rows, 32 / 64 / 128 keys), against the scores."""
        import torch.nn.functional as F
        ops = self.ops
        rows, cols = (16 if N <= 16 else 32), (32 if N <= 32 else 64 if N <= 64 else 128)
        Dp, Sp = (D + 15) // 16 * 16, (N + cols - 1) // cols * cols
        extra = {"fused": B * H * N * 4 + self.args.threads * (2 * rows * Dp + 2 * Sp * Dp + rows * cols) * 4,
                 "unfused": 2 * B * H * N * N * 4}
        return self.measure("attention", model, N,
                            lambda: [self.arr(B, H, N, D), self.arr(B, H, N, D), self.arr(B, H, N, D)],
                            lambda q, k, v: ops.attention(q, k, v),
                            lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
                            4 * B * N * H * D * 4, 4.0 * B * H * N * N * D, extra, repeats=max(2, self.repeats // 2))

    # -- whole block ----------------------------------------------------------------------------
    def run_block(self) -> None:
        from kernels.block import BlockConfig, JittorDiTBlock, init_weights, torch_block
        jt, torch, np = self.jt, self.torch, self.np
        configs = [("S/2", 256)] if self.args.quick else [("S/2", 256), ("S/2", 1024), ("XL/2", 256)]
        for model, N in configs:
            C, H = SHAPES[model]
            cfg = BlockConfig(C, H)
            w = init_weights(cfg)
            x, c = self.arr(BATCH, N, C), self.arr(BATCH, C)
            jb = JittorDiTBlock(cfg, w)
            jx, jc = jt.array(x), jt.array(c)
            tb = torch_block(cfg, w)
            tx, tc = torch.tensor(x, requires_grad=True), torch.tensor(c)
            params = jb.parameters() + [jx]
            res = {"model": model, "tokens": N, "batch": BATCH, "fwd": {}, "fwd_bwd": {}}
            reps = max(3, self.repeats // 2)
            with self.ops.use_fused(True):
                res["max_err"] = float(np.abs(jb(jx, jc).numpy() - tb(tx, tc).detach().numpy()).max())

            def fwd_bwd(m):
                def step():
                    tb.zero_grad(set_to_none=True)
                    tx.grad = None
                    m(tx, tc).sum().backward()
                return step
            fwd = {"fused": self.jt_case(lambda: jb(jx, jc), True),
                   "unfused": self.jt_case(lambda: jb(jx, jc), False),
                   "eager": self.torch_case(lambda: tb(tx, tc))}
            both = {"fused": self.jt_case(lambda: jt.grad(jb(jx, jc).sum(), params), True),
                    "unfused": self.jt_case(lambda: jt.grad(jb(jx, jc).sum(), params), False),
                    "eager": self.torch_case(fwd_bwd(tb), no_grad=False)}
            if not self.args.no_compile:
                cb = torch.compile(tb, dynamic=False)
                fwd["compile"] = self.torch_case(lambda: cb(tx, tc))
                both["compile"] = self.torch_case(fwd_bwd(cb), no_grad=False)
            res["fwd"] = interleaved_ms(fwd, self.warmup, reps)
            jt.gc()
            res["fwd_bwd"] = interleaved_ms(both, self.warmup, reps)
            jt.gc()
            self.block_rows.append(res)
            for phase in ("fwd", "fwd_bwd"):
                ms = res[phase]
                print(f"  block {model} N={N} {phase:8s} " + "  ".join(f"{k} {v:8.2f} ms" for k, v in ms.items())
                      + f"  eager/fused {ms['eager'] / ms['fused']:.2f}x"
                      + (f"  compile/fused {ms['compile'] / ms['fused']:.2f}x" if "compile" in ms else ""))
            sys.stdout.flush()

    # -- output ---------------------------------------------------------------------------------
    def print_header(self) -> None:
        print(f"{'op':20s} {'model':5s} {'N':>5s} " + " ".join(f"{k + ' ms':>11s}" for k in IMPLS)
              + f" {'vs eager':>8s} {'vs comp':>8s} {'GB/s':>7s} {'%BW':>5s} {'triad':>6s} {'GFLOP/s':>8s} {'err':>8s}")

    def print_row(self, row: Row) -> None:
        gbps = row.bytes_moved / (row.ms["fused"] / 1e3) / 1e9
        bw = f"{gbps:7.1f} {100 * gbps / row.triad_gbps:4.0f}%" if not row.flops else f"{'-':>7s} {'-':>5s}"
        cols = " ".join(f"{row.ms[k]:11.2f}" if k in row.ms else f"{'-':>11s}" for k in IMPLS)
        se, sc = row.speedup("eager"), row.speedup("compile")
        gf = f"{row.flops / (row.ms['fused'] / 1e3) / 1e9:8.1f}" if row.flops else f"{'':8s}"
        print(f"{row.op:20s} {row.model:5s} {row.tokens:5d} {cols} {se:7.2f}x "
              + (f"{sc:7.2f}x" if sc else f"{'-':>8s}")
              + f" {bw} {row.triad_gbps:6.1f} {gf} {row.max_err:8.1e}")
        sys.stdout.flush()

    def to_json(self) -> dict:
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["gbps_fused"] = r.bytes_moved / (r.ms["fused"] / 1e3) / 1e9
            d["bw_fraction"] = d["gbps_fused"] / r.triad_gbps
            d["speedup_vs_eager"] = r.speedup("eager")
            d["speedup_vs_compile"] = r.speedup("compile")
            if r.flops:
                d["gflops"] = {k: r.flops / (v / 1e3) / 1e9 for k, v in r.ms.items()}
            rows.append(d)
        return {"date_utc": self.date, "machine": self.machine, "threads": self.args.threads,
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
                "jittor_threads": self.jt_threads, "torch_threads": self.torch.get_num_threads(),
                "triad_gbps": self.bw, "load_before": self.load_before, "load_after": _loadavg(),
                "batch": BATCH, "repeats": self.repeats, "ops": rows, "block": self.block_rows}

    def run(self) -> dict:
        self.date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.machine = f"{platform.processor() or platform.machine()} {_cpu_name()}, {os.cpu_count()} cores"
        self.load_before = _loadavg()
        self.bw, self.jt_threads = self.triad_gbps()
        print(f"jvideo bench kernels  {self.date}  {self.machine}  load {self.load_before}")
        print(f"threads: jittor {self.jt_threads}, torch {self.torch.get_num_threads()}, "
              f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}  "
              f"triad bandwidth {self.bw:.1f} GB/s  batch {BATCH}  median of {self.repeats}")
        print("times in ms (lower is better); 'vs eager'/'vs comp' = PyTorch time / fused time; "
              "GB/s and %BW for the fused kernel (compulsory traffic) against the triad GB/s measured "
              "right after the row; err = max |fused - eager|; implementations timed round-robin")
        self.print_header()
        self.run_ops()
        if not self.args.ops or "block" in self.args.ops.split(","):
            print("DiT block (adaLN-Zero), batch 8:")
            self.run_block()
        return self.to_json()


def _loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _finish(tmp: str, path: str) -> None:
    """Give the temp file the usual mode (mkstemp makes it 0600), then move it into place."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def write_json(path: str, data: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    _finish(tmp, path)


def write_plot(path: str, data: dict) -> None:
    """Grouped bars: speed-up over PyTorch eager (log scale) per op and shape."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels, series = [], {k: [] for k in ("fused", "unfused", "compile")}
    for r in data["ops"]:
        labels.append(f"{r['op']}\n{r['model']} N={r['tokens']}")
        for k in series:
            series[k].append(r["ms"]["eager"] / r["ms"][k] if k in r["ms"] else 0.0)
    for b in data["block"]:
        for phase in ("fwd", "fwd_bwd"):
            labels.append(f"DiT block {phase}\n{b['model']} N={b['tokens']}")
            for k in series:
                series[k].append(b[phase]["eager"] / b[phase][k] if k in b[phase] else 0.0)
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(labels)), 5))
    width = 0.27
    xs = range(len(labels))
    names = {"fused": "Jittor fused", "unfused": "Jittor reference path", "compile": "torch.compile"}
    for i, (k, vals) in enumerate(series.items()):
        ax.bar([x + (i - 1) * width for x in xs], vals, width, label=names[k])
    ax.axhline(1.0, color="black", lw=0.8, label="PyTorch eager")
    ax.set_yscale("log")
    ax.set_ylabel("speed-up over PyTorch eager (x)")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_title(f"jvideo kernels, {data['date_utc']}, {data['threads']} threads, triad "
                 f"{data['triad_gbps']:.0f} GB/s, load {data['load_before']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    _finish(tmp, path)


def markdown(data: dict) -> str:
    """Markdown tables of a saved result (the README's table)."""
    out = [f"Measured {data['date_utc']} on {data['machine']}; {data['threads']} threads on both sides "
           f"(OMP_WAIT_POLICY={data.get('omp_wait_policy', '?')}); batch {data['batch']}; median of "
           f"{data['repeats']} round-robin repeats; load average {data['load_before']} at the start, "
           f"{data['load_after']} at the end. %BW: fused GB/s (compulsory traffic) over the STREAM "
           "triad measured right after the row.", "",
           "| op | model | N | fused ms | reference ms | eager ms | compile ms | vs eager | vs compile | GB/s | %BW | GFLOP/s |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["ops"]:
        ms = r["ms"]
        sc = f"{r['speedup_vs_compile']:.2f}x" if r.get("speedup_vs_compile") else "-"
        bw = ("-", "-") if r.get("flops") else (f"{r['gbps_fused']:.1f}", f"{100 * r['bw_fraction']:.0f}%")
        gf = f"{r['gflops']['fused']:.1f} (SDPA {r['gflops']['eager']:.1f})" if r.get("flops") else ""
        out.append(f"| {r['op']} | {r['model']} | {r['tokens']} | {ms['fused']:.2f} | {ms['unfused']:.2f} | "
                   f"{ms['eager']:.2f} | {ms.get('compile', float('nan')):.2f} | {r['speedup_vs_eager']:.2f}x | "
                   f"{sc} | {bw[0]} | {bw[1]} | {gf} |")
    out += ["", "| DiT block | N | pass | fused ms | reference ms | eager ms | compile ms | eager/fused | compile/fused |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for b in data["block"]:
        for phase in ("fwd", "fwd_bwd"):
            ms = b[phase]
            comp = f"{ms['compile'] / ms['fused']:.2f}x" if "compile" in ms else "-"
            out.append(f"| {b['model']} | {b['tokens']} | {phase} | {ms['fused']:.1f} | {ms['unfused']:.1f} | "
                       f"{ms['eager']:.1f} | {ms.get('compile', float('nan')):.1f} | "
                       f"{ms['eager'] / ms['fused']:.2f}x | {comp} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.markdown:
        try:
            with open(args.markdown) as f:
                print(markdown(json.load(f)))
        except (OSError, ValueError, KeyError) as e:
            print(f"jvideo bench kernels: cannot read {args.markdown}: {e}", file=sys.stderr)
            return 2
        return 0
    if args.threads < 1:
        print("jvideo bench kernels: --threads must be >= 1", file=sys.stderr)
        return 2
    for path in (args.json, args.plot):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            print(f"jvideo bench kernels: folder of {path} does not exist", file=sys.stderr)
            return 2
    set_threads(args.threads, args.omp_wait)
    data = Bench(args).run()
    if args.json:
        write_json(args.json, data)
        print(f"wrote {args.json}")
    if args.plot:
        write_plot(args.plot, data)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
